"""PyTorch: run n training steps per call, where that pays.

PyTorch runs eagerly: a Python loop around ``step_fn`` already is "one step per call", and
running n of them per call gains nothing by itself (keras PR #23234 says the same of its torch
backend). n steps per call pays only when the n steps become one unit the host launches once:

* ``mode="compile"``: ``torch.compile`` of the n-step loop, one compiled function per n. It pays on
  a CPU for a step that compiles without graph breaks (``torch.func`` gradients and an in-place
  update); a step calling ``loss.backward()`` and ``optimizer.step()`` breaks the graph at each
  and gained nothing here. Dynamo unrolls the loop, so compile time grows with n: keep
  ``max_spe`` small (default 8).
* ``mode="cuda_graph"``: the n steps captured in one CUDA graph, replayed per call with the next n
  batches copied into static input buffers (PyTorch's whole-network capture recipe). Written with
  care and tested on a CPU against a stand-in for CUDA; NOT RUN ON A GPU (see docs/frameworks.md).
* ``mode="eager"``: the plain loop, for parity (and the fallback): n steps per call, no gain.

``mode="auto"`` picks ``cuda_graph`` for a CUDA ``device`` and ``eager`` otherwise: whether
``compile`` pays depends on the step, so it is never picked for you. Measure it
(``python -m benchmarks.frameworks``)::

    from tickwork.integrations.torch import MultiStepRunner

    def train_step(batch):                  # updates the model in place, returns e.g. the loss
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    runner = MultiStepRunner(train_step, loader, mode="auto", device="cuda")
    tuner = StepsPerExecutionTuner(runner.counter, runner.spe, candidates=runner.candidates)
    while runner.run():
        ...
"""

from __future__ import annotations

import enum
import logging
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from .._clock import Clock
from .._errors import add_note
from .._public import publish as _publish
from .._tuning._spe import StepsPerExecution
from .._validate import check_choice
from . import _torch_graphs
from ._multistep import CompileRecord, RunnerBase, decompose

__all__ = ["MultiStepRunner", "TorchStepFn"]

logger = logging.getLogger(__name__)

TorchStepFn = Callable[[Any], Any]
"""One training step: ``step_fn(batch) -> output``, updating the model and optimizer in place."""


class _Mode(enum.Enum):
    AUTO = "auto"
    EAGER = "eager"
    COMPILE = "compile"
    CUDA_GRAPH = "cuda_graph"


class _OnCaptureError(enum.Enum):
    RAISE = "raise"
    EAGER = "eager"


_DEFAULT_MAX_SPE = {_Mode.EAGER: 64, _Mode.COMPILE: 8, _Mode.CUDA_GRAPH: 64}


def _run_steps(step_fn: TorchStepFn, batches: tuple[Any, ...]) -> Any:
    output = None
    for batch in batches:
        output = step_fn(batch)
    return output


def _loop_function(size: int) -> Callable[[TorchStepFn, tuple[Any, ...]], Any]:
    # A code object of its own per n: dynamo keeps its compiled variants (and its recompile limit)
    # per code object, so the n-step loops never evict one another.
    code = _run_steps.__code__.replace(co_name=f"_run_{size}_steps")
    return types.FunctionType(code, _run_steps.__globals__, code.co_name)


def _signature(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return f"{batch.dtype}{list(batch.shape)}@{batch.device}"
    if isinstance(batch, dict):
        return "{" + ", ".join(f"{k!r}: {_signature(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (tuple, list)):
        return f"{type(batch).__name__}(" + ", ".join(_signature(v) for v in batch) + ")"
    return repr(batch)


class _Graph:
    """One captured n-step graph: its static input slots, its replay and its static output."""

    __slots__ = ("output", "replay", "slots")

    def __init__(self, slots: list[Any], replay: Callable[[], None], output: Any) -> None:
        self.slots = slots
        self.replay = replay
        self.output = output


class MultiStepRunner(RunnerBase[_torch_graphs.Event]):
    """Runs ``int(spe)`` steps of ``step_fn`` per :meth:`run`, in calls of ``candidates`` steps.

    ``batches`` is an iterable of batches (tensors, or tuples/lists/dicts of them). The tuner's
    contract: :meth:`counter` (steps completed), :attr:`spe` (read at each call),
    :attr:`candidates` (powers of two up to ``max_spe``; default 8 for ``compile``, 64 otherwise)
    and :attr:`compile_log` (for ``compile`` a record's seconds are those of the first call,
    compiling plus its n steps; for ``cuda_graph`` those of the warm-up steps plus the capture).

    ``compile_options`` are passed to ``torch.compile`` (default ``dynamic=False``).
    For ``cuda_graph``: ``device`` is where the static input buffers live (batches are copied
    there); ``step_fn`` must be capturable (static shapes, no host synchronisation such as
    ``.item()``, an optimizer that supports capture, e.g. ``Adam(capturable=True)``, and
    ``optimizer.zero_grad(set_to_none=True)`` at its start); the first call for each n runs its n
    steps eagerly on a side stream (the warm-up, real training steps) and then captures them.
    ``on_capture_error="eager"`` logs a failed capture and goes on in eager mode
    (:attr:`fallback_error` keeps the exception); the default ``"raise"`` raises it.
    The output of a replay lives in the graph's static buffers: clone it to keep it.
    ``max_in_flight`` bounds how many replays may be queued on the GPU before :meth:`run` waits
    (their steps are counted once their events complete).
    """

    def __init__(
        self,
        step_fn: TorchStepFn,
        batches: Iterable[Any],
        *,
        mode: str = "auto",
        device: str | torch.device | None = None,
        max_spe: int | None = None,
        spe: int | StepsPerExecution = 1,
        compile_options: Mapping[str, Any] | None = None,
        on_capture_error: str = "raise",
        max_in_flight: int = 2,
        clock: Clock | None = None,
    ) -> None:
        if not callable(step_fn):
            raise TypeError(f"'step_fn' must be a callable batch -> output; got {step_fn!r}")
        requested = check_choice("mode", mode, _Mode)
        try:
            self._device = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"'device' must name a torch device; got {device!r}") from exc
        if requested is _Mode.AUTO:
            requested = _Mode.CUDA_GRAPH if self._device.type == "cuda" else _Mode.EAGER
        if compile_options is not None and not isinstance(compile_options, Mapping):
            raise TypeError(f"'compile_options' must be None or a mapping; got {compile_options!r}")
        if compile_options and requested is not _Mode.COMPILE:
            raise ValueError(
                f"'compile_options' apply to mode='compile' only; mode is {requested.value!r}"
            )
        self._on_capture_error = check_choice("on_capture_error", on_capture_error, _OnCaptureError)
        self._backend: _torch_graphs.GraphBackend | None = None
        if requested is _Mode.CUDA_GRAPH:
            self._backend = _torch_graphs.make_backend(self._device)
        self._mode = requested
        super().__init__(
            batches,
            max_spe=_DEFAULT_MAX_SPE[requested] if max_spe is None else max_spe,
            spe=spe,
            max_in_flight=max_in_flight,
            clock=clock,
            ready=lambda event: bool(event.query()),
            wait=lambda event: event.synchronize(),
        )
        self._step_fn = step_fn
        self._compile_options: dict[str, Any] = {"dynamic": False, **(compile_options or {})}
        self._compiled: dict[tuple[int, str], Callable[[TorchStepFn, tuple[Any, ...]], Any]] = {}
        self._graphs: dict[tuple[int, str], _Graph] = {}
        self._fallback_error: BaseException | None = None

    @property
    def mode(self) -> str:
        """The mode in use: ``"eager"``, ``"compile"`` or ``"cuda_graph"`` (after ``auto``)."""
        return self._mode.value

    @property
    def fallback_error(self) -> BaseException | None:
        """The capture error that made the runner fall back to eager mode, if one did."""
        return self._fallback_error

    def run(self, max_steps: int | None = None) -> int:
        """Run the next ``int(spe)`` steps (at most ``max_steps``); return how many ran.

        Fewer run when ``batches`` runs out; 0 means it has.
        """
        batches = self._steps_wanted(max_steps)
        done = 0
        while done < len(batches):
            if self._mode is _Mode.EAGER:  # also after a failed capture, for the rest
                for batch in batches[done:]:
                    self._output = self._step_fn(batch)
                self._finished(len(batches) - done)
                break
            size = decompose(len(batches) - done, self._candidates)[0]  # the largest call that fits
            chunk = tuple(batches[done : done + size])
            done += size
            if self._mode is _Mode.COMPILE:
                self._output = self._compiled_call(size, chunk)
                self._finished(size)
            else:
                self._graph_call(size, chunk)
        return len(batches)

    # torch.compile ------------------------------------------------------------------------------

    def _compiled_call(self, size: int, chunk: tuple[Any, ...]) -> Any:
        signature = _signature(chunk[0])
        key = (size, signature)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled(self._step_fn, chunk)
        compiled = torch.compile(_loop_function(size), **self._compile_options)
        started = self._clock.now()
        output = compiled(self._step_fn, chunk)
        seconds = self._clock.now() - started
        self._compiled[key] = compiled
        self._compile_log.add(CompileRecord(size, seconds, started, signature))
        logger.debug("compiled a %d-step loop in %.3f s for %s", size, seconds, signature)
        return output

    # CUDA graphs --------------------------------------------------------------------------------

    def _graph_call(self, size: int, chunk: tuple[Any, ...]) -> None:
        backend = self._backend
        assert backend is not None  # mode is cuda_graph
        key = (size, _signature(chunk[0]))
        graph = self._graphs.get(key)
        if graph is None:
            self._capture(backend, key, chunk)
            return
        for slot, batch in zip(graph.slots, chunk, strict=True):
            _torch_graphs.tree_copy(slot, batch)
        graph.replay()
        self._output = graph.output
        self._launched(backend.event(), size)

    def _capture(
        self, backend: _torch_graphs.GraphBackend, key: tuple[int, str], chunk: tuple[Any, ...]
    ) -> None:
        size, signature = key
        step_fn = self._step_fn
        started = self._clock.now()
        slots = [
            _torch_graphs.tree_map(lambda t: torch.empty_like(t, device=backend.device), batch)
            for batch in chunk
        ]
        for slot, batch in zip(slots, chunk, strict=True):
            _torch_graphs.tree_copy(slot, batch)
        # The warm-up: these n steps train on this chunk for real (and initialise lazy state such
        # as optimizer moments), so the capture below adds no step of its own.
        with backend.side_stream():
            for slot in slots:
                self._output = step_fn(slot)
        self._launched(backend.event(), size)
        try:
            replay, output = backend.capture(lambda: _run_steps(step_fn, tuple(slots)))
        except Exception as exc:
            add_note(exc, f"capturing {size} steps for {signature}; its {size} warm-up steps ran")
            if self._on_capture_error is _OnCaptureError.RAISE:
                raise
            logger.warning(
                "CUDA graph capture of %d steps failed; running eagerly from now on",
                size,
                exc_info=exc,
            )
            self._fallback_error = exc
            self._mode = _Mode.EAGER
            return
        seconds = self._clock.now() - started
        self._graphs[key] = _Graph(slots, replay, output)
        self._compile_log.add(CompileRecord(size, seconds, started, signature))
        logger.debug("captured a %d-step CUDA graph in %.3f s for %s", size, seconds, signature)

    def __repr__(self) -> str:
        return (
            f"MultiStepRunner(mode={self.mode!r}, spe={int(self._spe)}, "
            f"candidates={self._candidates}, completed={self.counter()})"
        )


_publish(globals())
