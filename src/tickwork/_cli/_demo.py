"""``tickwork demo``: a real (small) training run with tickwork's threads around it.

* Two data-loader threads (LooperThread, back to back) fill a bounded queue, under a Coordinator.
* The training loop runs in the main thread inside ``coord.stop_on_exception()``; SIGTERM/SIGINT
  request a clean stop (``stop_on_signals``).
* A TimedThread (``every``) reports progress on a fixed-rate schedule.
* At the end: a clean stop, ``coord.join()``, and a summary of what every thread did. The exit
  status is 1 if any thread failed or the model did not learn.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.table import Table

from .. import Coordinator, LooperThread, TickStats, every, stop_on_signals
from ._toy import Blobs, Mlp

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

# The model must reach this held-out accuracy for the demo to count as a success.
MIN_ACCURACY = 0.8
_QUEUE_WAIT_SECONDS = 0.05  # how often a blocked loader/trainer looks at the stop request


class InjectedFailure(RuntimeError):
    """Raised on purpose by --inject-failure."""


@dataclass(frozen=True)
class DemoConfig:
    steps: int = 15000
    seed: int = 0
    batch: int = 128
    report_every: float = 0.5
    loaders: int = 2
    inject_failure: str | None = None


@dataclass
class DemoResult:
    steps: int = 0
    seconds: float = 0.0
    loss: float = float("nan")
    accuracy: float = 0.0
    failures: list[str] = field(default_factory=list)
    thread_stats: dict[str, TickStats] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class _Progress:
    lock: threading.Lock = field(default_factory=threading.Lock)
    step: int = 0
    loss: float = float("nan")


def _loader(
    coord: Coordinator,
    batches: queue.Queue[tuple[object, object]],
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
    thread.name = f"demo-loader-{seed}"
    return thread


def run_demo(config: DemoConfig, console: Console) -> DemoResult:
    """Run the demo; print progress and a summary to ``console``; return what happened."""
    data = Blobs.make(config.seed)
    model = Mlp(
        features=data.centers.shape[1],
        hidden=64,
        classes=len(data.centers),
        seed=config.seed,
        lr=0.05,
    )
    coord = Coordinator()
    batches: queue.Queue[tuple[object, object]] = queue.Queue(maxsize=16)
    progress = _Progress()
    result = DemoResult()
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

    def show() -> None:
        with progress.lock:
            step, loss = progress.step, progress.loss
        rate = step / max(time.monotonic() - started, 1e-9)
        console.print(
            f"step {step:>6}/{config.steps}  loss {loss:6.3f}  {rate:8.0f} steps/s  "
            f"queue {batches.qsize():>2}"
        )

    def report() -> None:
        if config.inject_failure == "report" and progress.step > 0:
            raise InjectedFailure("reporter: injected failure")
        show()

    reporter = every(config.report_every, report, name="demo-progress")
    console.rule("tickwork demo: numpy MLP, 2 loader threads, a progress TimedThread")
    with stop_on_signals(coord), reporter:
        for thread in loaders:
            thread.start()
        with coord.stop_on_exception():
            while progress.step < config.steps and not coord.should_stop():
                try:
                    x, y = batches.get(timeout=_QUEUE_WAIT_SECONDS)
                except queue.Empty:
                    continue
                loss = model.train_step(x, y)  # type: ignore[arg-type]
                with progress.lock:
                    progress.step += 1
                    progress.loss = loss
        coord.request_stop()
        try:
            coord.join(loaders, stop_grace_period_secs=10)
        except Exception as exc:  # a thread's failure, re-raised here: report it
            result.failures.append(f"{type(exc).__name__}: {exc}")
    show()  # the final state, after every thread has stopped
    try:
        reporter.raise_errors()
    except Exception as exc:
        result.failures.append(f"progress reporter: {type(exc).__name__}: {exc}")

    result.seconds = time.monotonic() - started
    result.steps = progress.step
    result.loss = progress.loss
    x_test, y_test = data.batch(np.random.default_rng(config.seed + 999), 4000)
    result.accuracy = model.accuracy(x_test, y_test)
    if result.steps < config.steps and not result.failures:
        result.failures.append(f"stopped early at step {result.steps} of {config.steps}")
    if result.accuracy < MIN_ACCURACY:
        result.failures.append(
            f"held-out accuracy {result.accuracy:.3f} is under {MIN_ACCURACY} (did not learn)"
        )
    result.thread_stats = {"demo-progress": reporter.statistics()} | {
        t.name: t.statistics() for t in loaders
    }
    _summary(console, config, result)
    return result


def _summary(console: Console, config: DemoConfig, result: DemoResult) -> None:
    table = Table(title="training", show_header=False)
    table.add_row("steps", f"{result.steps} of {config.steps}")
    table.add_row("time", f"{result.seconds:.2f} s ({result.steps / result.seconds:.0f} steps/s)")
    table.add_row("final batch loss", f"{result.loss:.3f}")
    table.add_row("held-out accuracy", f"{result.accuracy:.3f} (needs {MIN_ACCURACY})")
    console.print(table)

    threads = Table(title="threads")
    for column in ("thread", "calls", "errors", "missed", "lateness p50", "lateness p99"):
        threads.add_column(column, justify="left" if column == "thread" else "right")
    for name, stats in result.thread_stats.items():
        timed = name == "demo-progress"
        threads.add_row(
            name,
            str(stats.calls),
            str(stats.errors),
            str(stats.missed) if timed else "-",
            f"{stats.lateness_p50 * 1e3:.2f} ms" if timed else "-",
            f"{stats.lateness_p99 * 1e3:.2f} ms" if timed else "-",
        )
    console.print(threads)
