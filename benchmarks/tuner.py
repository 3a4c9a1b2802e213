"""Steps-per-execution tuning, side by side: tickwork vs tf_keras's StepsPerExecutionTuner.

Run from the repository root in the bench venv (make bench-venv):

    .bench-venv/bin/python -m benchmarks.tuner            # about 5 minutes
    .bench-venv/bin/python -m benchmarks.tuner --quick    # about 2 minutes, 20 s tuner runs
    .bench-venv/bin/python -m benchmarks.tuner --repeats 2 --append   # each tuner twice

The workload is the seed's custom training loop (tf_keras's StepsPerExecutionTuner docs): a
Dense 64-64-10 Keras model, SGD, batch 64, MNIST-shaped random data, a tf.Variable holding
steps-per-execution and a tf.function that runs that many steps with tf.range. Keras 3 on the
TensorFlow backend builds the model for every contender; only the tuner differs.

Every measurement runs in a fresh interpreter:

* fixed spe 1/2/4/8/16/64/512: steps/s over ``--fixed-seconds`` per value and round; rounds go
  up then down the list (so slow drifts of the machine's load fall on every value alike), half of
  them before the tuner runs and half after, and each value's figure is the mean over rounds.
  The best of them is "the best fixed throughput".
* each tuner, from spe 1, for ``--seconds``: the loop records (time, optimizer.iterations, spe)
  after every call. From that trace: *time to 90% / 95%* = the end of the first 1 s window whose
  throughput reaches that fraction of the best fixed throughput; *mean fraction* = steps in the
  whole run / (run time x best fixed throughput); *choice fraction* = the same with the fixed
  sweep's throughput at the spe of each call (log-interpolated between the fixed values) in place
  of what the call achieved: the worth of the tuner's choices, without the machine's load swings
  during the run; *final spe*; *spe changes* and *values used* (distinct values, each a
  compilation for a runner that compiles per value).

With ``--append`` the section is appended to benchmarks/RESULTS.md; the machine (nproc, CPU model,
versions) and the load average before and after are part of it, since other work shares the
machine.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

FIXED = (1, 2, 4, 8, 16, 64, 512)
TUNERS = {
    "tf_keras_default": "tf_keras tuner, defaults (interval=5, change_spe_interval=10)",
    "tf_keras_fast": "tf_keras tuner, interval=0.5, change_spe_interval=2",
    "tickwork_default": "tickwork tuner, defaults (interval=0.25, change_spe_interval=4)",
}
OUT = Path("benchmarks") / "out"


# -- the workload (runs in the child) --------------------------------------------------------------


def build_workload() -> tuple[Any, Any, Any]:
    """The seed's loop; returns (optimizer, spe variable, train_once)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = keras.layers.Dense(10, name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    optimizer = keras.optimizers.SGD(learning_rate=1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(0)
    x_train = rng.random((8192, 784), dtype=np.float32)
    y_train = rng.integers(0, 10, 8192)
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).repeat().batch(64)
    iterator = iter(dataset)
    steps_per_execution = tf.Variable(
        1, dtype="int64", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
    )

    function: Callable[[Callable[..., None]], Callable[..., None]] = tf.function  # a typed edge

    @function
    def step_fn(iterator: Any) -> None:
        batch_data, labels = next(iterator)
        with tf.GradientTape() as tape:
            logits = model(batch_data, training=True)
            loss_value = loss_fn(labels, logits)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))

    @function
    def multi_step_train_fn(iterator: Any, steps_per_execution: Any) -> None:
        for _ in tf.range(steps_per_execution):
            step_fn(iterator)

    def train_once() -> None:
        multi_step_train_fn(iterator, steps_per_execution)

    train_once()  # trace
    return optimizer, steps_per_execution, train_once


def child_fixed(seconds: float, rounds: int, offset: int) -> dict[str, Any]:
    optimizer, spe, train_once = build_workload()
    rates: dict[int, list[float]] = {s: [] for s in FIXED}
    for r in range(rounds):
        order = FIXED if (r + offset) % 2 == 0 else tuple(reversed(FIXED))
        for value in order:
            spe.assign(value)
            train_once()  # the call in flight at the change
            n0, t0 = int(optimizer.iterations.numpy()), time.monotonic()
            while time.monotonic() - t0 < seconds:
                train_once()
            n1, t1 = int(optimizer.iterations.numpy()), time.monotonic()
            rates[value].append((n1 - n0) / (t1 - t0))
    return {"rates": {str(k): v for k, v in rates.items()}}


def child_tuner(which: str, seconds: float) -> dict[str, Any]:
    optimizer, spe, train_once = build_workload()
    if which.startswith("tf_keras"):
        from tf_keras.src.utils.steps_per_execution_tuning import StepsPerExecutionTuner as Anchor

        args = {} if which == "tf_keras_default" else {"interval": 0.5, "change_spe_interval": 2}
        tuner: Any = Anchor(optimizer, spe, **args)
    else:
        from tickwork import StepsPerExecutionTuner

        tuner = StepsPerExecutionTuner(optimizer, spe)
    n0 = int(optimizer.iterations.numpy())
    trace: list[tuple[float, int, int]] = [(0.0, 0, int(spe.numpy()))]
    t0 = time.monotonic()
    tuner.start()
    while True:
        current = int(spe.numpy())
        train_once()
        t = time.monotonic() - t0
        trace.append((t, int(optimizer.iterations.numpy()) - n0, current))
        if t >= seconds:
            break
    tuner.stop()
    result: dict[str, Any] = {"trace": trace}
    if which == "tickwork_default":
        OUT.mkdir(parents=True, exist_ok=True)
        tuner.history.to_csv(OUT / "tuner_history.csv")
        try:
            tuner.history.plot(OUT / "tuner_history.png", title="tickwork tuner, seed's loop")
            result["plot"] = str(OUT / "tuner_history.png")
        except ImportError as exc:
            result["plot"] = f"not drawn: {exc}"
        result["decisions"] = [
            (round(r.time, 2), r.decision, r.spe, r.next_spe) for r in tuner.history.decisions()
        ]
    return result


# -- analysis (runs in the parent) -----------------------------------------------------------------


def steps_at(trace: list[list[float]], t: float) -> float:
    """Cumulative steps at time t, linear between the recorded call ends."""
    times = [p[0] for p in trace]
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return trace[0][1]
    if i >= len(trace):
        return trace[-1][1]
    (ta, sa, _), (tb, sb, _) = trace[i - 1], trace[i]
    return sa + (sb - sa) * (t - ta) / (tb - ta) if tb > ta else sb


def fixed_curve(means: dict[int, float], spe: int) -> float:
    """Steps/s at ``spe`` from the fixed sweep, interpolated on a log scale between its values."""
    keys = sorted(means)
    if spe <= keys[0]:
        return means[keys[0]] * spe / keys[0] if spe < keys[0] else means[keys[0]]
    if spe >= keys[-1]:
        return means[keys[-1]]
    low = max(k for k in keys if k <= spe)
    high = min(k for k in keys if k >= spe)
    if low == high:
        return means[low]
    f = math.log(spe / low) / math.log(high / low)
    return means[low] * (1 - f) + means[high] * f


def analyse(trace: list[list[float]], means: dict[int, float], seconds: float) -> dict[str, Any]:
    best = max(means.values())

    def time_to(fraction: float) -> float | None:
        t = 1.0
        while t <= seconds + 1e-9:
            if steps_at(trace, t) - steps_at(trace, t - 1.0) >= fraction * best:
                return t
            t += 0.05
        return None

    spes = [int(p[2]) for p in trace[1:]]
    changes = sum(1 for a, b in itertools.pairwise(spes) if a != b)
    # The value of the choices alone: the fixed sweep's throughput at the spe of each call,
    # weighted by the call's duration. The machine's load during the run does not enter it.
    chosen = 0.0
    for (ta, _, _), (tb, _, spe) in itertools.pairwise(trace):
        chosen += (min(tb, seconds) - min(ta, seconds)) * fixed_curve(means, int(spe))
    return {
        "t90": time_to(0.90),
        "t95": time_to(0.95),
        "mean_fraction": steps_at(trace, seconds) / (seconds * best),
        "choice_fraction": chosen / (seconds * best),
        "final_spe": spes[-1] if spes else None,
        "changes": changes,
        "values": sorted(set(spes)),
    }


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.tuner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    versions = ", ".join(
        f"{name} {version(name)}" for name in ("tensorflow-cpu", "keras", "tf-keras", "tickwork")
    )
    return f"{os.cpu_count()} cores (nproc), {cpu}, Python {platform.python_version()}, {versions}"


def commit() -> str:
    """The commit of the working tree measured (with '+changes' when it has uncommitted ones)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unknown ({exc})"
    return head + ("+changes" if dirty else "")


def fmt_time(value: float | None, seconds: float) -> str:
    return f"{value:.1f} s" if value is not None else f"not within {seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 s tuner runs, 1 fixed round")
    parser.add_argument("--seconds", type=float, help="tuner run length (default 60)")
    parser.add_argument("--fixed-seconds", type=float, help="per fixed value and round (3)")
    parser.add_argument("--rounds", type=int, help="rounds over the fixed values (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each tuner (default 1)")
    parser.add_argument("--append", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    fixed_seconds = args.fixed_seconds or (2.0 if args.quick else 3.0)
    rounds = args.rounds or (1 if args.quick else 2)

    if args.child == "fixed":
        print(json.dumps(child_fixed(fixed_seconds, rounds, args.offset)))
        return
    if args.child:
        print(json.dumps(child_tuner(args.child, seconds)))
        return

    command = " ".join(["python -m benchmarks.tuner", *sys.argv[1:]])
    load_before = os.getloadavg()
    started = time.monotonic()
    passed = [f"--seconds={seconds}", f"--fixed-seconds={fixed_seconds}", f"--rounds={rounds}"]
    # Half the fixed rounds before the tuners and half after, so that a change of the machine's
    # load during the run weighs on the reference as on the tuners.
    before = max(1, rounds // 2)
    after = rounds - before
    sweeps = [run_child(["--child=fixed", *passed, f"--rounds={before}"], timeout=600)]
    runs: dict[str, list[dict[str, Any]]] = {which: [] for which in TUNERS}
    for repeat in range(args.repeats):
        for which in TUNERS:
            runs[which].append(run_child([f"--child={which}", *passed], timeout=seconds + 300))
            print(which, "run", repeat + 1, "done", flush=True)
    if after:
        more = ["--child=fixed", *passed, f"--rounds={after}", f"--offset={before}"]
        sweeps.append(run_child(more, timeout=600))
    load_after = os.getloadavg()
    means = {
        spe: statistics.mean(r for sweep in sweeps for r in sweep["rates"][str(spe)])
        for spe in FIXED
    }
    best_spe = max(means, key=lambda k: means[k])
    best = means[best_spe]
    print("fixed spe:", {k: round(v) for k, v in means.items()}, flush=True)
    results = {
        which: [analyse(r["trace"], means, seconds) for r in runs[which]] for which in TUNERS
    }
    for which in TUNERS:
        print(which, results[which], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "tuner_traces.json", "w", encoding="utf-8") as handle:
        traces = {k: [r["trace"] for r in v] for k, v in runs.items()}
        json.dump({"fixed": means, "traces": traces}, handle)
    elapsed = time.monotonic() - started

    lines = [
        "",
        f"## Steps-per-execution tuning (issue 4): tickwork vs tf_keras, {date.today()}",
        "",
        f"Command (repository root, bench venv from `make bench-venv`): `{command}`, "
        f"tickwork at commit {commit()}.",
        "",
        f"Machine: {machine()}. Shared with other sessions working in parallel: load average "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1/5/15 min) before "
        f"the run, {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} after; the "
        f"run took {elapsed:.0f} s.",
        "",
        "The seed's loop (Dense 64-64-10, SGD, batch 64, random MNIST-shaped data, tf.Variable "
        "spe, tf.function with tf.range), each measurement in a fresh interpreter. Definitions in "
        "the module docstring of `benchmarks/tuner.py`.",
        "",
        f"Fixed spe, steps/s (mean of {rounds} round(s) of {fixed_seconds:g} s each, "
        f"{before} before the tuner runs and {after} after): "
        + ", ".join(f"{k}: {means[k]:.0f}" for k in sorted(means))
        + f". Best fixed: {best:.0f} steps/s at spe {best_spe}.",
        "",
        f"| tuner ({seconds:.0f} s from spe 1) | time to 90% | time to 95% | mean fraction "
        "| choice fraction | final spe | spe changes | values used |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for which, label in TUNERS.items():
        for number, m in enumerate(results[which], start=1):
            run = f" (run {number})" if args.repeats > 1 else ""
            lines.append(
                f"| {label}{run} | {fmt_time(m['t90'], seconds)} | {fmt_time(m['t95'], seconds)} "
                f"| {m['mean_fraction']:.2f} | {m['choice_fraction']:.2f} "
                f"| {m['final_spe']} | {m['changes']} "
                f"| {', '.join(map(str, m['values']))} |"
            )
    for number, run_result in enumerate(runs["tickwork_default"], start=1):
        decisions = run_result.get("decisions", [])
        lines += [
            "",
            f"tickwork's decisions, run {number} (time s, what, spe before, after): "
            + "; ".join(f"{t} {what} {a}->{b}" for t, what, a, b in decisions[:30])
            + (" ..." if len(decisions) > 30 else ""),
        ]
    lines.append("")
    section = "\n".join(lines)
    print(section)
    plot = runs["tickwork_default"][-1].get("plot")
    if plot:
        print(f"history plot: {plot}")
    if args.append:
        with open(Path("benchmarks") / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write(section)


if __name__ == "__main__":
    main()
