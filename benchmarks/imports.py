"""What `import tickwork` costs, in fresh interpreters (issue 18, item 4).

Run from the repository root, in any environment where tickwork imports (its sources first on the
path, e.g. PYTHONPATH=src):

    python -m benchmarks.imports [--runs 15] [--module tickwork]

Each run is a new interpreter started with ``-X importtime -c "import tickwork"``; the figure is
the cumulative time Python reports for the module (its own imports included, what the interpreter
had imported at start-up excluded). Bytecode is written once before the runs (one warm-up run
without PYTHONDONTWRITEBYTECODE), so the runs measure importing, not compiling. Reported: the
median, lowest and highest over the runs; of the median run, the share of tickwork's own modules
(the sum of their self times) and the slowest imports under it; and which heavy modules the import
pulled in.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys

_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
# Modules a program that only wants a TimedThread should not pay for.
WATCHED = (
    "typing",
    "logging",
    "tickwork._checkpoints",
    "tickwork._tuning",
    "tickwork._done_marker",
    "dataclasses",
    "inspect",
    "json",
    "uuid",
    "socket",
    "datetime",
    "numpy",
)


def one_run(module: str, env: dict[str, str]) -> tuple[float, list[tuple[int, int, int, str]]]:
    """(cumulative microseconds of ``module``, the (self, cumulative, depth, name) of every import
    under it, itself included at depth 0)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    rows = []
    for line in out.stderr.splitlines():
        match = _LINE.match(line)
        if match is not None:
            own, cumulative, indent, name = match.groups()
            rows.append((int(own), int(cumulative), (len(indent) - 1) // 2, name))
    # Python lists an import's imports just before it, one level deeper.
    ends = [i for i, row in enumerate(rows) if row[2] == 0 and row[3] == module]
    if not ends:
        raise RuntimeError(f"no importtime line for {module!r} in:\n{out.stderr[-2000:]}")
    start = ends[0]
    while start > 0 and rows[start - 1][2] > 0:
        start -= 1
    return rows[ends[0]][1], rows[start : ends[0] + 1]


def loaded_after_import(module: str, env: dict[str, str]) -> list[str]:
    code = f"import sys, {module}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    loaded = set(out.stdout.split())
    return [w for w in WATCHED if any(m == w or m.startswith(w + ".") for m in loaded)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--module", default="tickwork")
    parser.add_argument("--top", type=int, default=8, help="slowest imports listed")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    one_run(args.module, env)  # writes the bytecode
    load = os.getloadavg()[0]
    runs = [one_run(args.module, env) for _ in range(args.runs)]
    totals = sorted(total for total, _ in runs)
    median = statistics.median(totals)
    _, rows = min(runs, key=lambda run: abs(run[0] - median))
    own = sum(self_us for self_us, _, _, name in rows if name.split(".")[0] == args.module)
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"Python {platform.python_version()}; load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(
        f"import {args.module}: median {median / 1e3:.1f} ms, lowest {totals[0] / 1e3:.1f}, "
        f"highest {totals[-1] / 1e3:.1f} ({args.runs} fresh interpreters, -X importtime)"
    )
    print(f"  of which {args.module}'s own modules (self times, median run): {own / 1e3:.1f} ms")
    print("  slowest imports under it (cumulative ms, median run):")
    under = [row for row in rows if row[2] > 0]
    for _, cumulative, depth, name in sorted(under, key=lambda row: -row[1])[: args.top]:
        print(f"    {cumulative / 1e3:6.1f}  {name} (depth {depth})")
    watched = loaded_after_import(args.module, env)
    print(f"  heavy modules imported: {', '.join(watched) if watched else 'none'}")


if __name__ == "__main__":
    main()
