"""The tuner on the JAX and PyTorch runners, against each workload's best fixed spe.

Run from the repository root in the bench venv (make bench-venv):

    .bench-venv/bin/python -m benchmarks.tuner_runners   # --seconds 60 --fixed-seconds 1 --rounds 4

The seed's workload (benchmarks/_workloads.py: MLP 784-64-64-10, SGD, batch 64) on
``tickwork.integrations.jax.MultiStepRunner`` (lax.scan) and on
``tickwork.integrations.torch.MultiStepRunner`` in eager mode (torch at 1 thread), each workload
in a fresh interpreter:

* fixed spe over the runner's candidates (1, 2, 4, ..., 64): steps/s over ``--fixed-seconds`` per
  value and round, rounds alternating up and down, half of them before the tuning run and half
  after it (throughput drifts on a shared machine); the best mean is "the best fixed throughput";
* the tuner with its defaults and ``candidates=runner.candidates``, from spe 1, on a fresh runner
  that has compiled nothing (the compilations are part of what the tuner pays), for
  ``--seconds``, recording (time, steps, spe) after every call. The trace is analysed by
  benchmarks/tuner.py's ``analyse``, so the figures mean what they mean for the TensorFlow
  tuner benchmark: *time to 90% / 95%* = the end of the first 1 s window whose throughput reaches
  that fraction of the best fixed; *mean fraction* = steps in the run / (run time x best fixed);
  *choice fraction* = the fixed sweep's throughput at each call's spe, weighted by the call's
  time (the worth of the choices without the load swings); *final spe*; *values used*;
  *compile s* = the runner's compile log.

torch.compile mode is not measured here: each spe costs 9-27 s of compilation on this CPU
(benchmarks/frameworks.py), more than a tuning run should spend.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

from benchmarks import _workloads
from benchmarks.tuner import analyse


def _fixed(
    runners: dict[int, Any], rates: dict[int, list[float]], rounds: range, seconds: float
) -> None:
    for index in rounds:
        order = list(runners) if index % 2 == 0 else list(reversed(runners))
        for spe in order:
            rates[spe].append(_workloads.steps_per_second(runners[spe], seconds))


def _tune(make: Any, seconds: float) -> tuple[list[list[float]], Any]:
    """The tuner from spe 1 on a fresh runner; the trace is (time, steps, spe) after every call,
    as benchmarks/tuner.py records it."""
    from tickwork import StepsPerExecutionTuner

    runner = make(1)
    tuner = StepsPerExecutionTuner(runner.counter, runner.spe, candidates=runner.candidates)
    trace: list[list[float]] = [[0.0, 0, 1]]
    started = time.perf_counter()
    with tuner:
        while trace[-1][0] < seconds:
            spe = int(runner.spe)
            runner.run()
            trace.append([time.perf_counter() - started, runner.counter(), spe])
    runner.sync()
    return trace, runner


def child(workload: str, seconds: float, fixed_seconds: float, rounds: int) -> dict[str, Any]:
    if workload == "jax":
        from tickwork.integrations.jax import MultiStepRunner as JaxRunner

        init, step = _workloads.jax_mlp()
        batches = _workloads.numpy_batches()

        def make(spe: int) -> Any:
            return JaxRunner(step, init(), itertools.cycle(batches), max_spe=64, spe=spe)

        label = "JAX MultiStepRunner (lax.scan)"
    else:
        import torch

        from tickwork.integrations.torch import MultiStepRunner as TorchRunner

        torch.set_num_threads(1)
        batches = _workloads.torch_batches()

        def make(spe: int) -> Any:
            return TorchRunner(
                _workloads.torch_imperative_step(),
                itertools.cycle(batches),
                mode="eager",
                max_spe=64,
                spe=spe,
            )

        label = "PyTorch MultiStepRunner, eager, 1 thread"
    candidates = tuple(make(1).candidates)
    runners = {spe: make(spe) for spe in candidates}
    rates: dict[int, list[float]] = {spe: [] for spe in candidates}
    # Throughput drifts on a shared machine: half the fixed rounds before the tuner, half after.
    before = (rounds + 1) // 2
    _fixed(runners, rates, range(before), fixed_seconds)
    trace, runner = _tune(make, seconds)
    _fixed(runners, rates, range(before, rounds), fixed_seconds)
    fixed = {spe: sum(r) / len(r) for spe, r in rates.items()}
    best_spe = max(fixed, key=fixed.__getitem__)
    result = analyse(trace, fixed, seconds) | {"compile_s": runner.compile_log.total_seconds()}
    # JSON keys are strings: send the sweep as pairs.
    return {"label": label, "fixed": sorted(fixed.items()), "best_spe": best_spe} | result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fixed-seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--skip", choices=["jax", "torch"], action="append", default=[])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds, args.fixed_seconds, args.rounds)))
        return
    load = os.getloadavg()
    rows = []
    for workload in ("jax", "torch"):
        if workload in args.skip:
            continue
        command = [
            sys.executable,
            "-m",
            "benchmarks.tuner_runners",
            "--child",
            workload,
            "--seconds",
            str(args.seconds),
            "--fixed-seconds",
            str(args.fixed_seconds),
            "--rounds",
            str(args.rounds),
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    after = os.getloadavg()

    def seconds(value: float | None) -> str:
        return "not reached" if value is None else f"{value:.1f} s"

    print("## Steps-per-execution tuning on the JAX and PyTorch runners (issue 4)\n")
    print(
        "Command: `.bench-venv/bin/python -m benchmarks.tuner_runners "
        f"--seconds {args.seconds:g} --fixed-seconds {args.fixed_seconds:g} "
        f"--rounds {args.rounds}`\n"
    )
    print(
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{load[0]:.2f} before, {after[0]:.2f} after.\n"
    )
    print(
        "| workload | fixed spe, steps/s | best fixed | tuner: time to 90% | to 95% | "
        "mean fraction | choice fraction | final spe | values used | compile s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        sweep = dict(row["fixed"])
        fixed = ", ".join(f"{spe}: {rate:.0f}" for spe, rate in sweep.items())
        best = f"{sweep[row['best_spe']]:.0f} at {row['best_spe']}"
        print(
            f"| {row['label']} | {fixed} | {best} | {seconds(row['t90'])} | "
            f"{seconds(row['t95'])} | {row['mean_fraction']:.2f} | "
            f"{row['choice_fraction']:.2f} | {row['final_spe']} | "
            f"{', '.join(map(str, row['values']))} | {row['compile_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
