"""What the tuner measured and decided, kept for inspection and export (CSV, JSON, PNG plot).

One :class:`TuningRecord` per measurement window (with the policy's decision about it) and one per
event that changed the spe without a window (the start, a clamp by ``max_spe``, a value assigned by
someone else). :class:`TuningHistory` is thread-safe and bounded; the plot needs matplotlib (the
``plot`` extra), imported only when a plot is asked for.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import IO, Any

__all__ = ["TuningHistory", "TuningRecord"]

# Records kept by default: at 4 windows a second, more than an hour and a half of training.
DEFAULT_MAX_RECORDS = 25_000

PathOrFile = str | os.PathLike[str] | IO[str]


@dataclass(frozen=True)
class TuningRecord:
    """One line of a tuner's history.

    Attributes:
        time: seconds since the tuner was created (monotonic clock), at the end of the window.
        spe: the steps-per-execution in effect during the window.
        throughput: steps per second measured in the window (0.0 for an event without a window).
        steps: steps counted in the window.
        seconds: the window's duration.
        decision: what was done: ``discard``, ``measure``, ``probe``, ``settle``, ``stay``,
            ``retune`` for a window; ``start``, ``clamp``, ``external``, ``set`` for an event.
        next_spe: the steps-per-execution assigned after it.
        reason: why, in words (for a discarded window: what it straddled).
    """

    time: float
    spe: int
    throughput: float
    steps: int
    seconds: float
    decision: str
    next_spe: int
    reason: str


_FIELDS = tuple(f.name for f in fields(TuningRecord))


class TuningHistory:
    """The records of one tuner, oldest first; the oldest are dropped past ``max_records``."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._records: deque[TuningRecord] = deque(maxlen=max_records)
        self._dropped = 0

    def append(self, record: TuningRecord) -> None:
        """Add a record at the end (the tuner does); the oldest goes past ``max_records``."""
        with self._lock:
            if len(self._records) == self._records.maxlen:
                self._dropped += 1
            self._records.append(record)

    def records(self) -> tuple[TuningRecord, ...]:
        """A snapshot of the records, oldest first."""
        with self._lock:
            return tuple(self._records)

    @property
    def dropped(self) -> int:
        """How many of the oldest records were dropped to keep the history bounded."""
        with self._lock:
            return self._dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[TuningRecord]:
        return iter(self.records())

    def decisions(self) -> tuple[TuningRecord, ...]:
        """Only the records where the spe changed or a search ended (probe/settle/retune/events)."""
        return tuple(r for r in self.records() if r.decision not in ("discard", "measure", "stay"))

    # -- export -----------------------------------------------------------------------------------

    def to_csv(self, path: PathOrFile | None = None) -> str:
        """The records as CSV with a header row; also written to ``path`` (a path or a text file)
        when given. Returns the text."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in self.records():
            writer.writerow(asdict(record))
        return _write(path, buffer.getvalue())

    def to_json(self, path: PathOrFile | None = None) -> str:
        """The records as a JSON object ``{"records": [...], "dropped": n}``; also written to
        ``path`` when given. Returns the text."""
        with self._lock:
            payload: dict[str, Any] = {
                "records": [asdict(r) for r in self._records],
                "dropped": self._dropped,
            }
        return _write(path, json.dumps(payload, indent=1) + "\n")

    def plot(self, path: str | os.PathLike[str] | IO[bytes], *, title: str | None = None) -> None:
        """Draw throughput and spe against time into a PNG file (needs ``tickwork[plot]``).

        Measured windows are dots (hollow when discarded), the spe in effect a step line on a
        log2 axis, and the decisions that moved it vertical marks.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            from matplotlib.ticker import ScalarFormatter
        except ImportError as exc:
            raise ImportError(
                "TuningHistory.plot() needs matplotlib: pip install 'tickwork[plot]'"
            ) from exc
        records = self.records()
        figure = Figure(figsize=(9, 5.5), layout="constrained")
        FigureCanvasAgg(figure)
        rate_axes, spe_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        used = [r for r in records if r.steps > 0 and r.decision != "discard"]
        dropped = [r for r in records if r.steps > 0 and r.decision == "discard"]
        rate_axes.plot(
            [r.time for r in used], [r.throughput for r in used], "o", ms=3, label="window"
        )
        if dropped:
            rate_axes.plot(
                [r.time for r in dropped],
                [r.throughput for r in dropped],
                "o",
                ms=3,
                mfc="none",
                color="0.6",
                label="discarded window",
            )
        rate_axes.set_ylabel("steps / s")
        rate_axes.grid(alpha=0.3)
        rate_axes.legend(loc="lower right", fontsize="small")
        if records:
            times = [records[0].time - records[0].seconds] + [r.time for r in records]
            values = [records[0].spe] + [r.next_spe for r in records]
            spe_axes.step(times, values, where="post")
            spe_axes.set_yscale("log", base=2)
            spe_axes.yaxis.set_major_formatter(ScalarFormatter())
        for record in records:
            if record.decision in ("probe", "settle", "retune"):
                color = {"probe": "0.7", "settle": "green", "retune": "red"}[record.decision]
                for axes in (rate_axes, spe_axes):
                    axes.axvline(record.time, color=color, lw=0.8, ls=":")
        spe_axes.set_ylabel("steps per execution")
        spe_axes.set_xlabel("seconds")
        spe_axes.grid(alpha=0.3)
        rate_axes.set_title(title or "steps-per-execution tuning")
        if isinstance(path, str | os.PathLike):
            figure.savefig(os.fspath(path), format="png", dpi=110)
        else:
            figure.savefig(path, format="png", dpi=110)

    def __repr__(self) -> str:
        return f"<TuningHistory {len(self)} records>"


def _write(path: PathOrFile | None, text: str) -> str:
    if path is None:
        return text
    if isinstance(path, str | os.PathLike):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        path.write(text)
    return text
