"""TuningHistory: records, bounds, CSV/JSON export and the PNG plot."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from tickwork import TuningHistory, TuningRecord

from .spe_sim import saturating, simulate


def _record(time: float, decision: str = "measure", spe: int = 4) -> TuningRecord:
    return TuningRecord(
        time=time,
        spe=spe,
        throughput=812.5,
        steps=203,
        seconds=0.25,
        decision=decision,
        next_spe=spe,
        reason='a "quoted", comma',
    )


class TestRecords:
    def test_records_are_kept_in_order(self) -> None:
        """Records come back oldest first, as appended."""
        history = TuningHistory()
        for t in (0.25, 0.5, 0.75):
            history.append(_record(t))
        assert [r.time for r in history.records()] == [0.25, 0.5, 0.75]
        assert len(history) == 3
        assert [r.time for r in history] == [0.25, 0.5, 0.75]

    def test_bounded_history_drops_the_oldest_and_counts_them(self) -> None:
        """Past max_records the oldest records go, and `dropped` says how many."""
        history = TuningHistory(max_records=2)
        for t in (1.0, 2.0, 3.0, 4.0):
            history.append(_record(t))
        assert [r.time for r in history.records()] == [3.0, 4.0]
        assert history.dropped == 2

    def test_decisions_leave_out_routine_windows(self) -> None:
        """decisions() keeps probes, settles, re-tunes and events, not measure/discard/stay."""
        history = TuningHistory()
        for k, what in enumerate(["start", "measure", "discard", "probe", "stay", "settle"]):
            history.append(_record(float(k), what))
        assert [r.decision for r in history.decisions()] == ["start", "probe", "settle"]


class TestExport:
    def test_csv_round_trips(self, tmp_path: Path) -> None:
        """The CSV has a header of the record's fields and one row per record, quoting intact;
        the same text is written to a path."""
        history = TuningHistory()
        history.append(_record(0.25))
        history.append(_record(0.5, "probe", 16))
        path = tmp_path / "history.csv"
        text = history.to_csv(path)
        assert path.read_text(encoding="utf-8") == text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == [
            "time",
            "spe",
            "throughput",
            "steps",
            "seconds",
            "decision",
            "next_spe",
            "reason",
        ]
        assert rows[1]["decision"] == "probe"
        assert int(rows[1]["spe"]) == 16
        assert float(rows[0]["throughput"]) == 812.5
        assert rows[0]["reason"] == 'a "quoted", comma'

    def test_json_round_trips_to_a_file_object(self) -> None:
        """The JSON holds every record as an object, and the dropped count."""
        history = TuningHistory(max_records=1)
        history.append(_record(0.25))
        history.append(_record(0.5, "settle", 32))
        sink = io.StringIO()
        text = history.to_json(sink)
        assert sink.getvalue() == text
        payload = json.loads(text)
        assert payload["dropped"] == 1
        assert payload["records"] == [
            {
                "time": 0.5,
                "spe": 32,
                "throughput": 812.5,
                "steps": 203,
                "seconds": 0.25,
                "decision": "settle",
                "next_spe": 32,
                "reason": 'a "quoted", comma',
            }
        ]

    def test_plot_writes_a_png(self, tmp_path: Path) -> None:
        """A simulated run's history plots to a PNG file."""
        pytest.importorskip("matplotlib")
        run = simulate(saturating(1000.0, 1.0), 20.0, noise=0.05, seed=1)
        path = tmp_path / "tuning.png"
        run.history.plot(path, title="simulated")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000

    def test_plot_of_an_empty_history_still_writes(self) -> None:
        """An empty history gives an empty (but valid) plot in a binary file object."""
        pytest.importorskip("matplotlib")
        sink = io.BytesIO()
        TuningHistory().plot(sink)
        assert sink.getvalue()[:4] == b"\x89PNG"

    def test_plot_without_matplotlib_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without matplotlib the error says which extra to install."""
        for name in list(sys.modules):
            if name == "matplotlib" or name.startswith("matplotlib."):
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(ImportError, match=r"tickwork\[plot\]"):
            TuningHistory().plot(tmp_path / "x.png")
