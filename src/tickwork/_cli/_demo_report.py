"""The demo's summary: what training, the tuner, the evaluator and each thread did."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ._demo import DemoConfig, DemoResult

__all__ = ["summary"]

_SHOWN_DECISIONS = ("start", "probe", "settle", "retune", "clamp")
_MAX_ROWS = 12


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " ..."


def summary(console: Console, config: DemoConfig, result: DemoResult, min_accuracy: float) -> None:
    training = Table(title="training", show_header=False)
    rate = result.steps / result.seconds if result.seconds > 0 else 0.0
    training.add_row("steps", f"{result.steps} of {config.steps}")
    training.add_row("time", f"{result.seconds:.1f} s ({rate:.0f} steps/s)")
    training.add_row("final probe loss", f"{result.loss:.3f}")
    training.add_row("held-out accuracy", f"{result.accuracy:.3f} (needs {min_accuracy})")
    training.add_row("steps per execution at the end", str(result.spe))
    console.print(training)

    if result.tuner is not None:
        tuning = Table(title="StepsPerExecutionTuner decisions")
        for column in ("t (s)", "decision", "spe", "steps/s", "why"):
            tuning.add_column(column, overflow="fold")
        rows = [r for r in result.tuner.history.records() if r.decision in _SHOWN_DECISIONS]
        for record in rows[:_MAX_ROWS]:
            tuning.add_row(
                f"{record.time:.1f}",
                record.decision,
                f"{record.spe} -> {record.next_spe}",
                f"{record.throughput:.0f}" if record.throughput else "-",
                _shorten(record.reason, 120),
            )
        if len(rows) > _MAX_ROWS:
            tuning.add_row("", f"... {len(rows) - _MAX_ROWS} more", "", "", "")
        console.print(tuning)

    if result.evaluator is not None:
        stats = result.evaluator.statistics()
        evaluation = Table(title="checkpoints and the SidecarEvaluator", show_header=False)
        evaluation.add_row("written during training", str(len(result.checkpoints_written)))
        evaluation.add_row(
            "evaluated", f"{stats.evaluated} (failed {stats.failed}, retries {stats.retries})"
        )
        evaluated = {step for step, _ in result.evaluations}
        missed = [s for s in result.checkpoints_written if s not in evaluated]
        evaluation.add_row("never evaluated", str(len(missed)))
        curve = ", ".join(f"{step}: {accuracy:.3f}" for step, accuracy in result.evaluations)
        evaluation.add_row("accuracy by step", curve or "-")
        ended = stats.end_reason.value if stats.end_reason is not None else "-"
        evaluation.add_row("evaluator ended", ended)
        console.print(evaluation)

    threads = Table(title="threads")
    for column in ("thread", "calls", "errors", "missed", "lateness p50", "lateness p99"):
        threads.add_column(column, justify="left" if column == "thread" else "right")
    for name, tick in result.threads.items():
        timed = name == "demo-progress"
        threads.add_row(
            name,
            str(tick.calls),
            str(tick.errors),
            str(tick.missed) if timed else "-",
            f"{tick.lateness_p50 * 1e3:.2f} ms" if timed else "-",
            f"{tick.lateness_p99 * 1e3:.2f} ms" if timed else "-",
        )
    console.print(threads)
    if result.workdir is not None:
        console.print(f"checkpoints and the tuner's history are in {result.workdir}")
    for note in result.notes:
        console.print(note)
