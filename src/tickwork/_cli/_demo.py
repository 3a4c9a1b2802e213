"""``tickwork demo``: a real (small) training run with all of tickwork around it.

* Two data-loader threads (LooperThread, back to back) fill a bounded queue, under a Coordinator;
  SIGTERM/SIGINT request a clean stop (``stop_on_signals``).
* The training loop runs in calls of ``spe`` steps. Each call ends with a metrics sync (the loss
  on a fixed probe batch, published for the reporter): a real per-call cost, which running more
  steps per call amortises. A StepsPerExecutionTuner picks ``spe`` from the measured throughput.
* Every ``checkpoint_every`` steps the weights are saved (``.npz``, written in place). A
  SidecarEvaluator follows the directory and scores every checkpoint on held-out data as it
  appears; it never sees a half-written file and misses none.
* A TimedThread (``every``) reports progress on a fixed-rate schedule.
* At the end: the evaluator finishes what is left, every thread stops, and a summary says what each
  did. The exit status is 1 if anything failed, a checkpoint went unevaluated, or the model did
  not learn.
"""

from __future__ import annotations

import contextlib
import math
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console

from .. import (
    Checkpoint,
    CheckpointPattern,
    Coordinator,
    LooperThread,
    SidecarEvaluator,
    StepsPerExecution,
    StepsPerExecutionTuner,
    TickStats,
    every,
    stop_on_signals,
)
from .._naming import THREAD_PREFIX, thread_name
from ._demo_config import DemoConfig
from ._demo_report import summary
from ._toy import Array, Blobs, Mlp

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

# The model must reach this held-out accuracy for the demo to count as a success.
MIN_ACCURACY = 0.8
_QUEUE_WAIT_SECONDS = 0.05  # how often a blocked loader/trainer looks at the stop request
_CHECKPOINTS = CheckpointPattern(r"model_step_(?P<step>\d+)\.npz")
_PROBE_SIZE = 512  # samples in the per-call metrics sync


class InjectedFailure(RuntimeError):
    """Raised on purpose by --inject-failure."""


@dataclass
class DemoResult:
    steps: int = 0
    seconds: float = 0.0
    loss: float = float("nan")
    accuracy: float = 0.0
    spe: int = 1
    checkpoints_written: list[int] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tuner: StepsPerExecutionTuner | None = None
    evaluator: SidecarEvaluator[float] | None = None
    threads: dict[str, TickStats] = field(default_factory=dict)
    workdir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class _Progress:
    lock: threading.Lock = field(default_factory=threading.Lock)
    step: int = 0
    loss: float = float("nan")


Batch = tuple[Array, npt.NDArray[np.int64]]


def _loader(
    coord: Coordinator,
    batches: queue.Queue[Batch],
    data: Blobs,
    seed: int,
    size: int,
    fail_after: int | None,
) -> LooperThread:
    rng = np.random.default_rng(seed)
    made = [0]

    def produce() -> None:
        if fail_after is not None and made[0] >= fail_after:
            raise InjectedFailure(f"loader {seed}: injected failure after {made[0]} batches")
        item = data.batch(rng, size)
        while not coord.should_stop():
            try:
                batches.put(item, timeout=_QUEUE_WAIT_SECONDS)
            except queue.Full:
                continue
            made[0] += 1
            return

    thread = LooperThread(coord, None, target=produce)
    thread.name = thread_name(f"demo-loader-{seed}")
    return thread


def _save(model: Mlp, directory: Path, step: int) -> None:
    weights = {"w1": model.w1, "b1": model.b1, "w2": model.w2, "b2": model.b2}
    np.savez(directory / f"model_step_{step}.npz", **weights)


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="tickwork-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_demo(config: DemoConfig, console: Console) -> DemoResult:
    """Run the demo; print progress and a summary to ``console``; return what happened."""
    with _workdir(config.workdir) as workdir:
        result = _run(config, console, workdir)
        summary(console, config, result, MIN_ACCURACY)
        return result


def _run(config: DemoConfig, console: Console, workdir: Path) -> DemoResult:
    data = Blobs.make(config.seed)
    model = Mlp(
        features=data.centers.shape[1],
        hidden=64,
        classes=len(data.centers),
        seed=config.seed,
        lr=0.05,
    )
    x_test, y_test = data.batch(np.random.default_rng(config.seed + 999), 4000)
    x_probe, y_probe = data.batch(np.random.default_rng(config.seed + 998), _PROBE_SIZE)
    ckpt_dir = workdir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    coord = Coordinator()
    batches: queue.Queue[Batch] = queue.Queue(maxsize=64)
    progress = _Progress()
    result = DemoResult(workdir=workdir if config.workdir is not None else None)
    started = time.monotonic()

    loaders = [
        _loader(
            coord,
            batches,
            data,
            config.seed + 100 + i,
            config.batch,
            200 if config.inject_failure == "loader" and i == 0 else None,
        )
        for i in range(config.loaders)
    ]
    spe = StepsPerExecution(1)
    tuner = StepsPerExecutionTuner(
        lambda: progress.step, spe, max_spe=lambda: max(1, config.steps - progress.step)
    )

    first_step: list[int | None] = []

    def evaluate(checkpoint: Checkpoint) -> float:
        if config.inject_failure == "evaluator":  # the first checkpoint fails every attempt
            if not first_step:
                first_step.append(checkpoint.step)
            if checkpoint.step == first_step[0]:
                raise InjectedFailure(f"evaluator: injected failure on {checkpoint}")
        with np.load(checkpoint) as weights:
            scored = Mlp(
                features=data.centers.shape[1],
                hidden=64,
                classes=len(data.centers),
                seed=config.seed,
                lr=0.0,
            )
            scored.w1, scored.b1 = weights["w1"], weights["b1"]
            scored.w2, scored.b2 = weights["w2"], weights["b2"]
        return scored.accuracy(x_test, y_test)

    evaluator: SidecarEvaluator[float] = SidecarEvaluator(
        ckpt_dir,
        evaluate,
        layout=_CHECKPOINTS,
        name="demo-eval",
        max_attempts=2,
        backoff=0.1,
        stop=coord,
    )

    def show() -> None:
        with progress.lock:
            step, loss = progress.step, progress.loss
        rate = step / max(time.monotonic() - started, 1e-9)
        done = evaluator.statistics()
        if step == 0 or math.isnan(loss):  # nothing measured yet: say so, not "nan"
            measured = "warming up: no step measured yet".ljust(32)
        else:
            measured = f"loss {loss:5.3f}  {rate:5.0f} steps/s"
        console.print(
            f"step {step:>6}/{config.steps}  {measured}  "
            f"spe {int(spe):>3}  evaluated {done.evaluated:>2}",
            no_wrap=True,
        )

    def report() -> None:
        if config.inject_failure == "report" and progress.step > 0:
            raise InjectedFailure("reporter: injected failure")
        show()

    def next_batch() -> Batch | None:
        while not coord.should_stop():
            try:
                return batches.get(timeout=_QUEUE_WAIT_SECONDS)
            except queue.Empty:
                continue
        return None

    def train_call(n: int) -> bool:
        """n steps, then the per-call metrics sync; False when a stop cut it short."""
        for _ in range(n):
            batch = next_batch()
            if batch is None:
                return False
            model.train_step(*batch)
            with progress.lock:
                progress.step += 1
        probe_loss = model.loss(x_probe, y_probe)
        with progress.lock:
            progress.loss = probe_loss
        return True

    reporter = every(config.report_every, report, name="tickwork:demo-progress")
    console.rule("tickwork demo: numpy MLP; loaders, tuner, checkpoints, sidecar evaluator")
    next_checkpoint = config.checkpoint_every
    with stop_on_signals(coord), reporter:
        for thread in loaders:
            thread.start()
        evaluator.start()
        tuner.start()
        try:
            with coord.stop_on_exception():
                while progress.step < config.steps and not coord.should_stop():
                    if not train_call(min(int(spe), config.steps - progress.step)):
                        break
                    if progress.step >= next_checkpoint or progress.step == config.steps:
                        _save(model, ckpt_dir, progress.step)
                        result.checkpoints_written.append(progress.step)
                        next_checkpoint = progress.step + config.checkpoint_every
        finally:
            tuner.stop()
            if coord.should_stop():
                evaluator.stop(wait=True, timeout=30)
            elif not evaluator.finish(timeout=60):
                result.failures.append("the evaluator did not finish within 60 s")
            coord.request_stop()
        try:
            coord.join(loaders, stop_grace_period_secs=10)
        except Exception as exc:  # a thread's failure, re-raised here: report it
            result.failures.append(f"{type(exc).__name__}: {exc}")
    show()  # the final state, after every thread has stopped

    for name, source in (
        ("progress reporter", reporter),
        ("tuner", tuner),
        ("evaluator", evaluator),
    ):
        try:
            source.raise_errors()
        except Exception as exc:
            result.failures.append(f"{name}: {type(exc).__name__}: {exc}")

    result.seconds = time.monotonic() - started
    result.steps = progress.step
    result.loss = progress.loss
    result.spe = int(spe)
    result.accuracy = model.accuracy(x_test, y_test)
    result.tuner = tuner
    result.evaluator = evaluator
    result.evaluations = [
        (e.step or 0, float(e.value)) for e in evaluator.results() if e.ok and e.value is not None
    ]
    result.threads = {"demo-progress": reporter.statistics()} | {
        t.name.removeprefix(THREAD_PREFIX): t.statistics() for t in loaders
    }
    if config.workdir is not None:
        tuner.history.to_csv(config.workdir / "tuner_history.csv")
        try:
            tuner.history.plot(config.workdir / "tuner_history.png")
        except ImportError as exc:  # the plot extra is optional: say so in the summary
            result.notes.append(f"tuner plot not drawn: {exc}")
    if result.steps < config.steps and not result.failures:
        result.failures.append(f"stopped early at step {result.steps} of {config.steps}")
    evaluated = {step for step, _ in result.evaluations}
    missed = [s for s in result.checkpoints_written if s not in evaluated]
    if missed and not result.failures:
        result.failures.append(f"checkpoints never evaluated: steps {missed}")
    if result.accuracy < MIN_ACCURACY:
        result.failures.append(
            f"held-out accuracy {result.accuracy:.3f} is under {MIN_ACCURACY} (did not learn)"
        )
    return result
