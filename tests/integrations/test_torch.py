"""tickwork.integrations.torch.MultiStepRunner on real PyTorch (CPU build).

The CUDA-graph path cannot run here (no GPU): it is tested against ``FakeGraphs``, a stand-in for
CUDA whose capture executes nothing and whose replay re-runs the captured work on the static
buffers, which is what makes a graph replay train on the batches copied in.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tickwork._tuning._spe import StepsPerExecution  # noqa: E402
from tickwork.integrations import SpeRunner, _torch_graphs  # noqa: E402
from tickwork.integrations.torch import MultiStepRunner  # noqa: E402

pytestmark = pytest.mark.torch

Batch = tuple[Any, Any]


class Trainer:
    """A tiny classifier and SGD, with the imperative step the runner calls."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.calls = 0

    def step(self, batch: Batch) -> Any:
        self.calls += 1
        x, y = batch
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def params(self) -> list[Any]:
        return [p.detach().clone() for p in self.model.parameters()]


def _batches(count: int, size: int = 4, seed: int = 0) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.rand(size, 8, generator=generator),
            torch.randint(0, 3, (size,), generator=generator),
        )
        for _ in range(count)
    ]


def _eager_params(batches: list[Batch]) -> tuple[list[Any], Any]:
    trainer = Trainer()
    loss = None
    for batch in batches:
        loss = trainer.step(batch)
    return trainer.params(), loss


def _assert_same(a: list[Any], b: list[Any], tol: float = 1e-6) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


class FakeEvent:
    """Reports itself unfinished until synchronized, so counting is deterministic."""

    def __init__(self) -> None:
        self.synchronized = False

    def query(self) -> bool:
        return self.synchronized

    def synchronize(self) -> None:
        self.synchronized = True


class FakeGraphs:
    """CUDA stand-in: capture executes nothing (state is restored), replay re-runs the work."""

    def __init__(self, trainer: Trainer, fail: bool = False) -> None:
        self.device = torch.device("cpu")
        self.trainer = trainer
        self.fail = fail
        self.captures = 0
        self.replays = 0
        self.side_streams = 0
        self.events: list[FakeEvent] = []

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        self.side_streams += 1
        yield

    def capture(self, fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captures += 1
        saved = copy.deepcopy(
            (self.trainer.model.state_dict(), self.trainer.optimizer.state_dict())
        )
        output = fn()  # learn the outputs, then undo: a real capture runs no kernel
        self.trainer.model.load_state_dict(saved[0])
        self.trainer.optimizer.load_state_dict(saved[1])
        static_output = output.clone()

        def replay() -> None:
            self.replays += 1
            static_output.copy_(fn())

        return replay, static_output

    def event(self) -> FakeEvent:
        event = FakeEvent()
        self.events.append(event)
        return event


@pytest.fixture
def fake_graphs(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeGraphs]:
    """Make mode='cuda_graph' use a FakeGraphs for the given trainer."""

    def install(trainer: Trainer, fail: bool = False) -> FakeGraphs:
        fake = FakeGraphs(trainer, fail)
        monkeypatch.setattr(_torch_graphs, "make_backend", lambda device: fake)
        return fake

    return install


class TestEager:
    @pytest.mark.parametrize("spe", [1, 3, 8])
    def test_trains_like_a_plain_loop(self, spe: int) -> None:
        """Eager mode runs spe steps per call and trains exactly like a plain loop."""
        batches = _batches(17)
        trainer = Trainer()
        runner = MultiStepRunner(trainer.step, batches, spe=spe)
        assert runner.mode == "eager"
        ran = []
        while step_count := runner.run():
            ran.append(step_count)
        assert ran == [spe] * (17 // spe) + ([17 % spe] if 17 % spe else [])
        assert runner.counter() == runner.steps_dispatched == 17
        params, loss = _eager_params(batches)
        _assert_same(trainer.params(), params, tol=0)
        torch.testing.assert_close(runner.output, loss, rtol=0, atol=0)

    def test_spe_and_max_steps_are_read_at_each_call(self) -> None:
        """A new spe applies from the next call; max_steps bounds one call."""
        trainer = Trainer()
        spe = StepsPerExecution(2)
        runner = MultiStepRunner(trainer.step, _batches(12), spe=spe)
        assert runner.run() == 2
        spe.assign(5)
        assert runner.run(max_steps=3) == 3
        assert runner.run() == 5
        assert runner.run() == 2
        assert runner.run() == 0
        assert runner.counter() == 12


# Dynamo reads .grad of intermediate tensors while it traces a step that calls backward(); torch
# warns about that itself. It is not the step's doing, so it is not an error here.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
class TestCompile:
    def test_each_loop_size_is_compiled_once_by_dynamo(self) -> None:
        """compile mode hands each n-step loop to torch.compile once and trains like eager."""
        graphs = 0

        def counting_backend(gm: Any, example_inputs: Any) -> Any:
            nonlocal graphs
            graphs += 1
            return gm.forward

        batches = _batches(40)
        trainer = Trainer()
        runner = MultiStepRunner(
            trainer.step, batches, mode="compile", spe=7,
            compile_options={"backend": counting_backend},
        )  # fmt: skip
        assert runner.candidates == (1, 2, 4, 8)
        assert runner.run() == 7
        assert runner.compile_log.compiled() == (1, 2, 4)
        compiled_graphs = graphs
        assert compiled_graphs > 0
        while runner.run():
            pass
        assert runner.counter() == 40
        assert graphs == compiled_graphs  # 40 = 5 x (4 + 2 + 1) + 4 + 1: nothing new to compile
        assert len(runner.compile_log.records) == 3
        _assert_same(trainer.params(), _eager_params(batches)[0], tol=1e-5)

    @pytest.mark.slow
    @pytest.mark.timeout(900)
    def test_inductor_compiles_a_functional_multi_step_loop_on_cpu(self) -> None:
        """The real inductor backend compiles a torch.func step looped n times; it trains right."""
        from torch.func import functional_call, grad_and_value

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        reference = {k: v.clone() for k, v in params.items()}

        def loss_fn(p: dict[str, Any], x: Any, y: Any) -> Any:
            return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

        grad_fn = grad_and_value(loss_fn)

        def make_step(p: dict[str, Any]) -> Callable[[Batch], Any]:
            def step(batch: Batch) -> Any:
                grads, loss = grad_fn(p, *batch)
                with torch.no_grad():
                    for key in p:
                        p[key].sub_(0.1 * grads[key])
                return loss

            return step

        batches = _batches(6)
        runner = MultiStepRunner(make_step(params), batches, mode="compile", spe=2)
        while runner.run():
            pass
        assert runner.counter() == 6
        assert runner.compile_log.compiled() == (2,)
        eager_step = make_step(reference)
        for batch in batches:
            eager_step(batch)
        for key in params:
            torch.testing.assert_close(params[key], reference[key], rtol=1e-4, atol=1e-5)


class TestCudaGraphPath:
    def test_replays_train_on_the_batches_copied_in(self, fake_graphs: Any) -> None:
        """First call per n: warm-up steps then a capture; later calls copy batches and replay."""
        batches = _batches(21)
        trainer = Trainer()
        fake = fake_graphs(trainer)
        runner = MultiStepRunner(trainer.step, batches, mode="cuda_graph", spe=4)
        assert runner.mode == "cuda_graph"
        while runner.run():
            pass
        runner.sync()
        # 21 = 5 calls of 4 (one capture, four replays) + 1 (one capture)
        assert (fake.captures, fake.replays, fake.side_streams) == (2, 4, 2)
        assert runner.compile_log.compiled() == (1, 4)
        assert runner.counter() == runner.steps_dispatched == 21
        params, loss = _eager_params(batches)
        _assert_same(trainer.params(), params)
        torch.testing.assert_close(runner.output, loss)

    def test_counts_a_call_once_its_event_has_completed(self, fake_graphs: Any) -> None:
        """Steps count once their call's event completes; at most max_in_flight calls queue."""
        trainer = Trainer()
        fake = fake_graphs(trainer)
        runner = MultiStepRunner(
            trainer.step, _batches(16), mode="cuda_graph", spe=4, max_in_flight=2
        )
        assert runner.run() == 4  # warm-up + capture: one call in flight
        assert runner.run() == 4  # replay: two in flight
        assert (runner.steps_dispatched, runner.counter()) == (8, 0)
        assert runner.run() == 4  # a third: the host waits for the first
        assert (runner.steps_dispatched, runner.counter()) == (12, 4)
        assert [e.synchronized for e in fake.events] == [True, False, False]
        runner.sync()
        assert runner.counter() == 12
        assert all(e.synchronized for e in fake.events)

    def test_a_failed_capture_falls_back_to_eager_when_asked(
        self, fake_graphs: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """on_capture_error='eager' logs the failure, keeps it, and trains every batch once."""
        batches = _batches(10)
        trainer = Trainer()
        fake_graphs(trainer, fail=True)
        runner = MultiStepRunner(
            trainer.step, batches, mode="cuda_graph", spe=4, on_capture_error="eager"
        )
        with caplog.at_level(logging.WARNING, logger="tickwork.integrations.torch"):
            while runner.run():
                pass
        runner.sync()
        assert runner.mode == "eager"
        assert isinstance(runner.fallback_error, RuntimeError)
        assert any(r.exc_info and "capture" in r.getMessage() for r in caplog.records)
        assert runner.counter() == 10
        assert trainer.calls == 10  # the warm-up steps were the training steps; none repeated
        _assert_same(trainer.params(), _eager_params(batches)[0])

    def test_a_failed_capture_raises_by_default(self, fake_graphs: Any) -> None:
        """By default a capture error propagates, noting that the warm-up steps ran."""
        trainer = Trainer()
        fake_graphs(trainer, fail=True)
        runner = MultiStepRunner(trainer.step, _batches(4), mode="cuda_graph", spe=4)
        with pytest.raises(RuntimeError, match="stream is capturing") as info:
            runner.run()
        assert any("4 warm-up steps ran" in note for note in getattr(info.value, "__notes__", []))
        assert runner.fallback_error is None

    def test_without_cuda_the_graph_mode_is_refused(self) -> None:
        """On a machine without CUDA, cuda_graph (explicit or picked by auto) says why not."""
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        with pytest.raises(ValueError, match=r"needs a CUDA device.*is_available\(\) is False"):
            MultiStepRunner(Trainer().step, [], mode="cuda_graph")
        with pytest.raises(ValueError, match="got device='cuda'"):
            MultiStepRunner(Trainer().step, [], mode="auto", device="cuda")


class TestContract:
    def test_auto_is_eager_on_a_cpu_and_candidates_depend_on_the_mode(self) -> None:
        """auto picks eager for a CPU device; compile defaults to max_spe 8, others to 64."""
        step = Trainer().step
        eager = MultiStepRunner(step, [])
        assert (eager.mode, eager.candidates[-1]) == ("eager", 64)
        compiled = MultiStepRunner(step, [], mode="compile")
        assert (compiled.mode, compiled.candidates) == ("compile", (1, 2, 4, 8))
        assert MultiStepRunner(step, [], max_spe=16).candidates[-1] == 16
        assert isinstance(eager, SpeRunner)
        assert isinstance(eager.counter(), int)
        assert isinstance(eager.spe, StepsPerExecution)

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"mode": "graph"}, ValueError, "'mode' must be one of 'auto', 'eager', 'compile'"),
            ({"on_capture_error": "ignore"}, ValueError, "'on_capture_error' must be one of"),
            ({"max_spe": 0}, ValueError, "'max_spe' must be an int >= 1; got 0"),
            ({"spe": 0}, ValueError, "'spe' must be an int >= 1; got 0"),
            ({"max_in_flight": -1}, ValueError, "'max_in_flight' must be an int >= 0; got -1"),
            ({"device": "nowhere"}, ValueError, "'device' must name a torch device"),
            ({"compile_options": 3}, TypeError, "'compile_options' must be None or a mapping"),
            (
                {"compile_options": {"fullgraph": True}},
                ValueError,
                "'compile_options' apply to mode='compile' only",
            ),
        ],
    )
    def test_bad_arguments_are_named(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Each bad argument is refused with its name, the rule and the value."""
        with pytest.raises(error, match=message):
            MultiStepRunner(Trainer().step, [], **kwargs)

    def test_bad_step_fn_batches_and_max_steps_are_named(self) -> None:
        """A non-callable step, a non-iterable source and a negative max_steps are refused."""
        with pytest.raises(TypeError, match="'step_fn' must be a callable"):
            MultiStepRunner(42, [])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'batches' must be an iterable"):
            MultiStepRunner(Trainer().step, 42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="'max_steps' must be an int >= 0; got -2"):
            MultiStepRunner(Trainer().step, []).run(max_steps=-2)
