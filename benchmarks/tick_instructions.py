"""User-space instructions a tick costs, counted by valgrind (issue 18, item 3).

CPU time per tick (benchmarks/threads.py) is what a user pays, but on a shared machine its noise
is larger than the difference between two loops. The instructions a tick executes in user space
are counted exactly: each contender runs under ``valgrind --tool=callgrind`` for two durations,
and (instructions of the longer - of the shorter) / (ticks of the longer - of the shorter) is the
cost of one tick, start-up and imports cancelled out. The kernel's part (the timed futex wait and
the wake-up, the same for every contender here) is not in it.

    python -m benchmarks.tick_instructions [--interval 0.002] [--seconds 1 4]

Run from the repository root with tickwork importable (PYTHONPATH=src). The keras contender is
tf_keras's TimedThread loop, copied (``while not event.is_set(): self.on_interval();
event.wait(interval)``), since TensorFlow's import under valgrind takes too long; the rest is
tickwork's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

CONTENDERS = ("keras_loop", "tickwork_every", "tickwork_timed_subclass")

CHILD = """
import sys, threading, time
which, interval, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
calls = [0]


def callback():
    calls[0] += 1


if which == "keras_loop":  # tf_keras.src.utils.timed_threads.TimedThread, its loop as it is
    class Keras:
        def __init__(self):
            self.thread_stop_event = threading.Event()

        def on_interval(self):
            callback()

        def _call_on_interval(self):
            while not self.thread_stop_event.is_set():
                self.on_interval()
                self.thread_stop_event.wait(interval)

    keras = Keras()
    thread = threading.Thread(target=keras._call_on_interval, daemon=True)
    start = thread.start

    def stop():
        keras.thread_stop_event.set()
        thread.join()
else:
    import tickwork

    if which == "tickwork_every":
        timed = tickwork.every(interval, callback)
    else:
        class Timed(tickwork.TimedThread):
            def on_interval(self):
                callback()

        timed = Timed(interval)
    start = timed.start

    def stop():
        timed.stop(wait=True)
start()
time.sleep(seconds)
stop()
print("CALLS", calls[0])
"""


def count(contender: str, interval: float, seconds: float, workdir: str) -> tuple[int, int]:
    """(instructions, ticks) of one run under callgrind."""
    script = os.path.join(workdir, "tick_child.py")
    with open(script, "w") as f:
        f.write(CHILD)
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={os.path.join(workdir, 'callgrind.out')}",
            sys.executable,
            script,
            contender,
            str(interval),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    calls = re.search(r"^CALLS (\d+)$", out.stdout, re.MULTILINE)
    collected = re.search(r"Collected : (\d+)", out.stderr)
    if calls is None or collected is None:
        raise RuntimeError(f"{contender}: no count in\n{out.stdout}\n{out.stderr[-2000:]}")
    return int(collected.group(1)), int(calls.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.002)
    parser.add_argument("--seconds", type=float, nargs=2, default=(1.0, 4.0))
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    short, long = args.seconds
    print(f"user-space instructions per tick, {args.interval * 1e3:g} ms interval, empty body")
    print("| contender | instructions per tick | ticks (short, long run) |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as workdir:
        for contender in args.contenders.split(","):
            ins_short, ticks_short = count(contender, args.interval, short, workdir)
            ins_long, ticks_long = count(contender, args.interval, long, workdir)
            per_tick = (ins_long - ins_short) / (ticks_long - ticks_short)
            print(f"| {contender} | {per_tick:,.0f} | {ticks_short}, {ticks_long} |")


if __name__ == "__main__":
    main()
