"""Periodic threads, side by side: tickwork vs tf_keras's TimedThread and TF's LooperThread.

Run from the repository root in the bench venv (make bench-venv):

    .bench-venv/bin/python -m benchmarks.threads [--repeats 3] [--seconds 3]
    .bench-venv/bin/python -m benchmarks.threads --only cpu_per_tick --cpu-interval 0.002 \
        --seconds 4

(the second: only the CPU a tick costs, at a 2 ms interval, as issue 18 measured it).

Every measurement runs in a fresh interpreter (one contender, one scenario), so that one's
threads or imports never disturb another's. Measured, for a 10 ms interval and a 2 ms body (a
busy loop in Python, which holds the GIL as real work would):

* tick ratio: calls made in the run / calls an exact 10 ms grid makes in the same time;
* final drift: time of the last call - (time of the first call + (n - 1) * interval): how far
  behind its ideal time the n-th call came (lost calls show up here);
* lateness p50/p99: each call's start minus the due time of the grid slot it serves, where call
  i serves slot s_i = max(s_(i-1) + 1, floor((t_i - t_0) / interval)) (every slot served at most
  once; a drifting thread is charged by tick ratio and drift, not here);
  each with the main thread idle and with it CPU-bound in Python;
* stop to joined: from the stop request to the thread having ended, 60 s interval, thread idle;
* join after the last thread ends on its own (Coordinator only): from the end to join() returning;
* CPU per tick: process CPU time / calls, with an empty body, main thread idle, at
  ``--cpu-interval`` (10 ms unless given); from just before start() to after the thread was
  stopped and joined, so the thread's start and end are in it (the same for every contender).

The table gives the median of the runs and, in brackets, the lowest and highest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

INTERVAL = 0.010
BODY = 0.002
CONTENDERS = (
    "keras_timed_thread",
    "tf_looper_thread",
    "tickwork_timed_thread",
    "tickwork_timed_subclass",
    "tickwork_looper",
)
SCENARIOS = ("idle", "cpu", "stop", "cpu_per_tick")


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def cpu_bound_main(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):
            x += i * i


# -- contenders: each returns (start, stop_and_join) around a callback -----------------------------


def make(contender: str, interval: float, callback: Callable[[], None]) -> Any:
    if contender == "keras_timed_thread":
        from tf_keras.src.utils.timed_threads import TimedThread as KerasTimedThread

        class K(KerasTimedThread):  # type: ignore[misc]
            def on_interval(self) -> None:
                callback()

        t = K(interval)
        return t.start, lambda: (t.stop(), t.thread.join())
    if contender == "tf_looper_thread":
        from tensorflow.python.training.coordinator import Coordinator, LooperThread

        coord = Coordinator()
        looper = LooperThread(coord, interval, target=callback)
        return looper.start, lambda: (coord.request_stop(), coord.join([looper]))
    if contender == "tickwork_timed_thread":
        import tickwork

        timed = tickwork.every(interval, callback)
        return timed.start, lambda: timed.stop(wait=True)
    if contender == "tickwork_timed_subclass":  # the same shape as the keras contender
        import tickwork

        class T(tickwork.TimedThread):
            def on_interval(self) -> None:
                callback()

        subclassed = T(interval)
        return subclassed.start, lambda: subclassed.stop(wait=True)
    if contender == "tickwork_looper":
        import tickwork

        coord = tickwork.Coordinator()
        ticker = tickwork.LooperThread(coord, interval, target=callback)

        def stop_and_join() -> None:
            coord.request_stop()
            coord.join()

        return ticker.start, stop_and_join
    raise ValueError(contender)


def measure_ticks(contender: str, seconds: float, main_load: str) -> dict[str, float]:
    times: list[float] = []

    def callback() -> None:
        times.append(time.perf_counter())
        busy(BODY)

    start, stop = make(contender, INTERVAL, callback)
    start()
    # Run a little past the window so that a late last call is not cut off by the stop.
    if main_load == "cpu":
        cpu_bound_main(seconds + 0.1)
    else:
        time.sleep(seconds + 0.1)  # the benchmark's main thread may sleep; the library never does
    stop()
    first = times[0]
    # The window is the grid slots 0 .. ideal - 1 (ideal = seconds / interval); a call counts
    # in it when the slot it serves is in it.
    ideal = round(seconds / INTERVAL)
    window, lateness = [], []
    served = -1
    for t in times:
        served = max(served + 1, math.floor((t - first) / INTERVAL + 1e-9))
        if served >= ideal:
            break
        window.append(t)
        lateness.append(t - (first + served * INTERVAL))
    n = len(window)
    lateness.sort()
    return {
        "tick_ratio": n / ideal,
        "drift_ms": (window[-1] - (first + (n - 1) * INTERVAL)) * 1e3,
        "lateness_p50_ms": lateness[len(lateness) // 2] * 1e3,
        "lateness_p99_ms": lateness[min(len(lateness) - 1, int(0.99 * len(lateness)))] * 1e3,
    }


def measure_stop(contender: str) -> dict[str, float]:
    started = []
    start, stop = make(contender, 60.0, lambda: started.append(time.perf_counter()))
    start()
    while not started:
        time.sleep(0.001)
    time.sleep(0.05)
    t0 = time.perf_counter()
    stop()
    return {"stop_to_joined_ms": (time.perf_counter() - t0) * 1e3}


def measure_join_after_end(contender: str) -> dict[str, float]:
    """Coordinator.join() while its threads end on their own (no stop request)."""
    import threading

    if contender == "tf_looper_thread":
        from tensorflow.python.training.coordinator import Coordinator
    elif contender == "tickwork_looper":
        from tickwork import Coordinator
    else:
        return {}
    coord = Coordinator()
    ended: list[float] = []
    release = threading.Event()

    def work() -> None:
        release.wait()
        ended.append(time.perf_counter())

    thread = threading.Thread(target=work)
    thread.start()
    threading.Timer(0.3, release.set).start()
    coord.join([thread])
    return {"join_after_end_ms": (time.perf_counter() - ended[0]) * 1e3}


def measure_cpu(contender: str, seconds: float, interval: float) -> dict[str, float]:
    calls = [0]

    def callback() -> None:
        calls[0] += 1

    start, stop = make(contender, interval, callback)
    cpu0 = time.process_time()
    start()
    time.sleep(seconds)
    stop()
    return {"cpu_per_tick_us": (time.process_time() - cpu0) / calls[0] * 1e6}


def child(contender: str, what: str, seconds: float, cpu_interval: float) -> None:
    if what == "idle":
        out = measure_ticks(contender, seconds, "idle")
    elif what == "cpu":
        out = measure_ticks(contender, seconds, "cpu")
    elif what == "stop":
        out = measure_stop(contender) | measure_join_after_end(contender)
    else:
        out = measure_cpu(contender, seconds, cpu_interval)
    print(json.dumps(out))


def run_child(contender: str, what: str, seconds: float, cpu_interval: float) -> dict[str, float]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    argv = ["--child", contender, what, str(seconds), "--cpu-interval", str(cpu_interval)]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.threads", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    versions = []
    for mod in ("tensorflow", "tf_keras"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} missing")
    return (
        f"{os.cpu_count()} cores, {model}; Python {platform.python_version()}; "
        f"{', '.join(versions)}; load average before the run {load[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios, of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--cpu-interval",
        type=float,
        default=INTERVAL,
        help="interval of the cpu_per_tick scenario, seconds (default 0.010)",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, of {', '.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]), args.cpu_interval)
        return
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"--only takes scenarios of {', '.join(SCENARIOS)}; got {unknown}")
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown:
        parser.error(f"--contenders takes some of {', '.join(CONTENDERS)}; got {unknown}")
    print(f"machine: {machine()}")
    rows: dict[str, dict[str, list[float]]] = {c: {} for c in contenders}
    for _ in range(args.repeats):
        for contender in contenders:
            for what in scenarios:
                result = run_child(contender, what, args.seconds, args.cpu_interval)
                for key, value in result.items():
                    label = f"{what}:{key}" if what in ("idle", "cpu") else key
                    rows[contender].setdefault(label, []).append(value)
    labels = sorted({label for r in rows.values() for label in r})
    print(
        f"\nmedian [lowest-highest] of {args.repeats} runs ({args.seconds:g} s each; ticks: 10 ms "
        f"interval, 2 ms body; cpu_per_tick: {args.cpu_interval * 1e3:g} ms interval, empty body)"
    )
    print(f"load average after the run {os.getloadavg()[0]:.2f}")
    print("| measure | " + " | ".join(contenders) + " |")
    print("| --- |" + " --- |" * len(contenders))
    for label in labels:
        cells = []
        for contender in contenders:
            values = rows[contender].get(label)
            cells.append(
                f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"
                if values
                else "-"
            )
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
