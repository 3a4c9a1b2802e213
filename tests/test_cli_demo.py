"""The `tickwork demo` command: a real run succeeds, and a failing part makes it exit 1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tickwork._cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys, tickwork._cli as c; sys.exit(c.main())", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_demo_trains_and_succeeds(tmp_path: Path) -> None:
    """The demo trains to the accuracy bar, tunes spe, evaluates every checkpoint it wrote, stops
    every thread, exits 0 with a summary, and keeps its files in --workdir."""
    result = run_cli(
        "demo",
        "--steps",
        "6000",
        "--checkpoint-every",
        "1500",
        "--report-every",
        "0.05",
        "--workdir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6000 of 6000" in result.stdout
    assert "StepsPerExecutionTuner decisions" in result.stdout
    assert re.search(r"never evaluated\s*│\s*0\s*│", result.stdout), result.stdout
    assert "demo ok" in result.stdout
    assert "nan" not in result.stdout  # before the first measurement it says "warming up"
    checkpoints = sorted((tmp_path / "checkpoints").glob("model_step_*.npz"))
    assert len(checkpoints) >= 4
    assert (tmp_path / "tuner_history.csv").read_text().startswith("time,")
    assert (tmp_path / "tuner_history.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("part", ["loader", "report", "evaluator"])
def test_a_failing_part_makes_the_demo_exit_1(part: str) -> None:
    """An exception in a loader thread, the progress TimedThread or the evaluator (a checkpoint
    that fails every attempt) is reported; exit 1."""
    result = run_cli(
        "demo",
        "--steps",
        "3000",
        "--checkpoint-every",
        "1000",
        "--report-every",
        "0.01",
        "--inject-failure",
        part,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "demo failed" in result.stdout
    assert "injected failure" in result.stdout + result.stderr


def test_without_the_cli_extra_the_script_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With click missing, `tickwork` exits 2 and names the extra to install."""
    monkeypatch.setitem(sys.modules, "click", None)
    monkeypatch.delitem(sys.modules, "tickwork._cli._app", raising=False)
    assert main(["demo"]) == 2
    assert "pip install 'tickwork[cli]'" in capsys.readouterr().err


_IMPORTS_AFTER_HELP = """
import sys
import tickwork._cli as c
code = c.main(sys.argv[1:])
assert code == 0, code
print("numpy" in sys.modules)
"""


@pytest.mark.parametrize("args", [["--help"], ["follow", "--help"], ["demo", "--help"]])
def test_the_command_line_starts_without_numpy(args: list[str]) -> None:
    """numpy (the `demo` extra) is imported only when `tickwork demo` runs: `--help` and `follow`
    start without it."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_AFTER_HELP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "False", done.stdout


def test_without_the_demo_extra_the_demo_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With numpy missing, `tickwork demo` exits 2 with one line naming the `demo` extra."""
    monkeypatch.setitem(sys.modules, "numpy", None)
    for name in ("tickwork._cli._demo", "tickwork._cli._toy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'tickwork[cli,demo]'" in err
    assert len(err.strip().splitlines()) == 1, err
