"""Steps per execution per framework: what n steps per call gains here, on the CPU.

The seed's workload everywhere: an MLP 784-64-64-10 (ReLU), SGD (lr 1e-3), batch 64, random data
(256 distinct batches, cycled). For each spe it reports the compile seconds and steps/s of each
timed round (rounds interleave the spe values, so a burst of load from another process hits them
alike) and the best round.

* JAX: tickwork.integrations.jax.MultiStepRunner (lax.scan over stacked batches), plus a plain
  ``jax.jit(step)`` loop (one call per step, no runner) as the baseline.
* PyTorch: MultiStepRunner in eager mode (the usual imperative step), in compile mode with that
  imperative step (graph breaks at backward() and optimizer.step()), and in compile mode with a
  torch.func step that compiles to one graph. The inductor cache is a fresh directory per run, so
  compile seconds are cold. CUDA graphs need a GPU and are not measured.
* Keras 3: tickwork.integrations.keras.probe_steps_per_execution on each backend, one fresh
  interpreter per backend (the torch backend refuses spe > 1).

Run from the repository root in the bench venv (``make bench-venv``)::

    .bench-venv/bin/python -m benchmarks.frameworks            # prints a Markdown section
    .bench-venv/bin/python -m benchmarks.frameworks --append   # ... and appends it to RESULTS.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Before any framework is imported: cold inductor compiles, quiet TensorFlow.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="tickwork-inductor-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import _workloads
from benchmarks._workloads import BATCH, CLASSES, DISTINCT_BATCHES, HIDDEN, INPUTS, LR

RESULTS = Path(__file__).with_name("RESULTS.md")
SPE_VALUES = (1, 2, 4, 8, 16, 64)

Row = dict[str, Any]


def _rounds(runners: dict[int, Any], rounds: int, seconds: float) -> dict[int, list[float]]:
    rates: dict[int, list[float]] = {spe: [] for spe in runners}
    for index in range(rounds):
        order = list(runners) if index % 2 == 0 else list(reversed(runners))
        for spe in order:
            rates[spe].append(_workloads.steps_per_second(runners[spe], seconds))
    return rates


def _rows(workload: str, runners: dict[int, Any], rates: dict[int, list[float]]) -> list[Row]:
    return [
        {
            "workload": workload,
            "spe": spe,
            "compile_s": runners[spe].compile_log.total_seconds(),
            "rates": rates[spe],
        }
        for spe in runners
    ]


# JAX ------------------------------------------------------------------------------------------


def bench_jax(rounds: int, seconds: float) -> list[Row]:
    import jax

    block_until_ready: Callable[[Any], Any] = jax.block_until_ready  # jax leaves it unannotated

    from tickwork.integrations.jax import MultiStepRunner

    init, step = _workloads.jax_mlp()
    batches = _workloads.numpy_batches()

    class PlainLoop:  # one jitted call per step, no runner: the baseline
        def __init__(self) -> None:
            self.params, self.steps, self.source = init(), 0, itertools.cycle(batches)
            self.step = jax.jit(step)
            started = time.perf_counter()
            self.params, loss = self.step(self.params, next(self.source))
            block_until_ready(loss)
            self.compile_seconds = time.perf_counter() - started

        def run(self) -> int:
            self.params, self.loss = self.step(self.params, next(self.source))
            self.steps += 1
            return 1

        def sync(self) -> None:
            block_until_ready(self.params)

        def counter(self) -> int:
            return self.steps

    plain = PlainLoop()
    runners = {}
    for spe in SPE_VALUES:
        runner = MultiStepRunner(step, init(), itertools.cycle(batches), max_spe=64, spe=spe)
        runner.precompile([spe])
        runners[spe] = runner
    rates = _rounds(runners, rounds, seconds)
    baseline = _rounds({1: plain}, rounds, seconds)[1]
    rows = [
        {
            "workload": "jax.jit(step), 1 call/step",
            "spe": 1,
            "compile_s": plain.compile_seconds,
            "rates": baseline,
        }
    ]
    return rows + _rows("jax MultiStepRunner (lax.scan)", runners, rates)


# PyTorch --------------------------------------------------------------------------------------


def bench_torch(rounds: int, seconds: float, compile_max: int, threads: int) -> list[Row]:
    import torch

    from tickwork.integrations.torch import MultiStepRunner

    default_threads = torch.get_num_threads()
    batches = _workloads.torch_batches()
    imperative_step = _workloads.torch_imperative_step
    functional_step = _workloads.torch_functional_step

    def make(step: Callable[[Any], Any], mode: str, spe: int) -> Any:
        runner = MultiStepRunner(step, itertools.cycle(batches), mode=mode, spe=spe, max_spe=64)
        runner.run()  # compile mode: the first call compiles
        return runner

    rows: list[Row] = []
    if threads != default_threads:
        # torch's OpenMP threads spin at barriers: on a loaded 2-core machine a descheduled one
        # stalls the others, so the default thread count is measured once, then `threads` used.
        plain = {1: make(imperative_step(), "eager", 1)}
        rows += _rows(
            f"torch eager, {default_threads} threads (default)",
            plain,
            _rounds(plain, rounds, seconds),
        )
        torch.set_num_threads(threads)
    eager = {spe: make(imperative_step(), "eager", spe) for spe in SPE_VALUES}
    rows += _rows("torch eager (backward + SGD.step)", eager, _rounds(eager, rounds, seconds))
    values = [spe for spe in SPE_VALUES if spe <= compile_max]
    functional = {spe: make(functional_step(), "compile", spe) for spe in values}
    rows += _rows(
        "torch compile, torch.func step", functional, _rounds(functional, rounds, seconds)
    )
    broken = {spe: make(imperative_step(), "compile", spe) for spe in (1, 8) if spe <= compile_max}
    rows += _rows("torch compile, imperative step", broken, _rounds(broken, rounds, seconds))
    return rows


# Keras 3 --------------------------------------------------------------------------------------


def bench_keras(rounds: int, torch_threads: int) -> tuple[list[Row], list[str]]:
    """Probes on the backend KERAS_BACKEND names (one per fresh interpreter)."""
    import keras

    from tickwork.integrations.keras import probe_steps_per_execution

    def build(spe: int) -> Any:
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [
                keras.Input((INPUTS,)),
                keras.layers.Dense(HIDDEN, activation="relu"),
                keras.layers.Dense(HIDDEN, activation="relu"),
                keras.layers.Dense(CLASSES),
            ]
        )
        net.compile(
            optimizer=keras.optimizers.SGD(LR),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=spe,
        )
        return net

    x, y = _workloads.data()
    backend = keras.backend.backend()
    refused = None
    candidates: tuple[int, ...] = SPE_VALUES
    if backend == "torch":
        import torch

        torch.set_num_threads(torch_threads)
        candidates = (1,)
        try:
            build(2).fit(x, y, batch_size=BATCH, epochs=1, steps_per_epoch=2, verbose=0)
        except ValueError as exc:
            refused = str(exc)
    result = probe_steps_per_execution(
        build, x, y, candidates=candidates, steps=DISTINCT_BATCHES, rounds=rounds, batch_size=BATCH
    )
    rows = [
        {
            "workload": f"keras fit(), {backend} backend",
            "spe": n,
            "compile_s": result.warmup_seconds[n],
            "rates": [r[n] for r in result.rounds],
        }
        for n in candidates
    ]
    notes = [f"keras {backend}: probe_steps_per_execution picked {result.best}"]
    if refused:
        notes.append(f"keras {backend}: compile(steps_per_execution=2) then fit(): {refused}")
    if backend == "torch":
        notes.append(f"keras torch: torch.set_num_threads({torch_threads})")
    return rows, notes


# Report ---------------------------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("jax", "jaxlib", "torch", "tensorflow-cpu", "keras", "numpy"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (absent)")
    return ", ".join(found)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| workload | spe | compile s | steps/s per round | median | best | median x spe 1 |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    base: dict[str, float] = {}
    for row in rows:
        median = statistics.median(row["rates"])
        base.setdefault(row["workload"], median)
        rounds = " / ".join(f"{rate:.0f}" for rate in row["rates"])
        lines.append(
            f"| {row['workload']} | {row['spe']} | {row['compile_s']:.2f} | {rounds} | "
            f"{median:.0f} | {max(row['rates']):.0f} | {median / base[row['workload']]:.2f} |"
        )
    return lines


def _jax_note(rows: list[Row]) -> str:
    plain = statistics.median(rows[0]["rates"])
    best = max(rows[1:], key=lambda row: statistics.median(row["rates"]))
    fastest = statistics.median(best["rates"])
    return (
        f"jax, medians: the runner's fastest spe ({best['spe']}, {fastest:.0f} steps/s) is "
        f"x{fastest / plain:.2f} the plain jax.jit loop ({plain:.0f} steps/s); the runner at "
        f"spe 1 is x{statistics.median(rows[1]['rates']) / plain:.2f} of it"
    )


SECTIONS = ("jax", "torch", "keras-tensorflow", "keras-jax", "keras-torch")


def _section(section: str, args: argparse.Namespace) -> dict[str, Any]:
    notes: list[str] = []
    if section == "jax":
        rows = bench_jax(args.rounds, args.seconds)
        notes.append(_jax_note(rows))
    elif section == "torch":
        rows = bench_torch(args.rounds, args.seconds, args.torch_compile_max, args.torch_threads)
        notes.append(f"torch: torch.set_num_threads({args.torch_threads}) after the first row")
    else:
        rows, notes = bench_keras(args.rounds, args.torch_threads)
    return {"rows": rows, "notes": notes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--torch-compile-max",
        type=int,
        default=16,
        help="largest spe measured in torch compile mode (compile time grows "
        "with spe: dynamo unrolls the loop)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch.set_num_threads for the torch measurements (default threads measured once)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=["jax", "torch", "keras"])
    parser.add_argument("--append", action="store_true", help="append the report to RESULTS.md")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.section:
        print(json.dumps(_section(args.section, args)))
        return

    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    for section in SECTIONS:
        if section.split("-")[0] in args.skip:
            continue
        # Each framework in a fresh interpreter: none shares threads or caches with another.
        env = {**os.environ}
        if section.startswith("keras-"):
            env["KERAS_BACKEND"] = section.removeprefix("keras-")
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.frameworks", "--section", section,
             *(argv if argv is not None else sys.argv[1:])],
            env=env, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"section {section} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows += result["rows"]
        notes += result["notes"]
    load_after = os.getloadavg()
    command = "python -m benchmarks.frameworks " + " ".join(argv or sys.argv[1:])
    report = [
        "",
        f"## Steps per execution per framework (issue 4), {time.strftime('%Y-%m-%d %H:%M')}",
        f"Command: `{command.strip()}` (bench venv), {time.perf_counter() - started:.0f} s.",
        f"Machine: {os.cpu_count()} CPUs ({_cpu()}), Python {platform.python_version()}, "
        f"{_versions()}.",
        "Load average (1/5/15 min) before: "
        + "/".join(f"{v:.2f}" for v in load_before)
        + ", after: "
        + "/".join(f"{v:.2f}" for v in load_after)
        + ". The machine is shared with other engineers' work; rounds interleave the spe values.",
        f"Workload: MLP {INPUTS}-{HIDDEN}-{HIDDEN}-{CLASSES}, SGD lr {LR}, batch {BATCH}, random "
        f"data ({DISTINCT_BATCHES} batches cycled); {args.rounds} rounds of {args.seconds} s per "
        "spe (Keras: rounds of one fit() of 256 steps, timed from the end of its first call); "
        "ratios use medians, since a round can be slowed by other jobs. "
        "'compile s' is the compilation (JAX), the first call (torch.compile: compiling plus its "
        "steps) or the first call of the warm-up fit() (Keras).",
        "",
        *_table(rows),
    ]
    if notes:
        report += ["", *[f"- {note}" for note in notes]]
    text = "\n".join(report) + "\n"
    print(text)
    if args.append:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write(text)


if __name__ == "__main__":
    main()
