"""A writer killed mid-save, then restarted: how long a step-order follower holds the newer ones.

Run from the repository root (any venv with tickwork importable; no framework needed)::

    PYTHONPATH=src python -m benchmarks.cut_writer [--runs 10]

Each run, on a fresh local directory (the default event watcher): ``checkpoint-1`` holds half a
safetensors file and no ``trainer_state.json`` (its writer was SIGKILLed mid-save). A
``CheckpointFollower(skip_to_latest=False, layout="huggingface")`` (default ``abandon_secs=2``)
looks at it; 1.5 s later (the restart) the writer saves ``checkpoint-2`` (weights, then the trainer
state last). Measured: from the trainer state written to ``checkpoint-2`` handed out.

Two cases: ``moved on`` (``checkpoint-1`` untouched since: passed over at once) and ``still
changing`` (``checkpoint-1`` rewritten, still cut, right after ``checkpoint-2`` was made: its
writer may be alive, so only the ``abandon_secs`` bound passes it over).

Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import tempfile
import time
from pathlib import Path

from tickwork import CheckpointFollower

TRAINER_STATE = '{"global_step": 2, "log_history": []}'


def safetensors_bytes(size: int = 4096) -> bytes:
    tensor = {"dtype": "F32", "shape": [size], "data_offsets": [0, 4 * size]}
    header = {"__metadata__": {"format": "pt"}, "w": tensor}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\x00" * (4 * size)


def one_run(root: Path, *, touch_pending: bool) -> float:
    """Seconds from checkpoint-2's last file written to checkpoint-2 handed out."""
    whole = safetensors_bytes()
    cut = root / "checkpoint-1"
    cut.mkdir(parents=True)
    (cut / "model.safetensors").write_bytes(whole[: len(whole) // 2])
    with CheckpointFollower(str(root), skip_to_latest=False, layout="huggingface") as follower:
        if follower.next_checkpoint(timeout=0.5) is not None:
            raise AssertionError("the cut checkpoint was handed out")
        time.sleep(1.0)
        newer = root / "checkpoint-2"
        newer.mkdir()
        if touch_pending:
            (cut / "model.safetensors").write_bytes(whole[: len(whole) // 3])
        (newer / "model.safetensors").write_bytes(whole)
        (newer / "trainer_state.json").write_text(TRAINER_STATE)
        written = time.monotonic()
        found = follower.next_checkpoint(timeout=30)
        took = time.monotonic() - written
        if found is None or not found.path.endswith("checkpoint-2"):
            raise AssertionError(f"expected checkpoint-2, got {found}")
        if follower.statistics().rejected != 1:
            raise AssertionError(f"expected 1 rejected: {follower.statistics()}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for case, touch in (("moved on", False), ("still changing", True)):
        times = []
        for index in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                times.append(one_run(Path(tmp) / f"run{index}", touch_pending=touch))
        rows.append(
            f"| {case} | {statistics.median(times) * 1000:.0f} ms | "
            f"{min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms | {args.runs} |"
        )
    print("| case | median | range | runs |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
