"""The `tickwork demo` command: a real run succeeds, and a failing part makes it exit 1."""

from __future__ import annotations

import subprocess
import sys

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


def test_the_demo_trains_and_succeeds() -> None:
    """The demo trains to the accuracy bar, stops every thread and exits 0 with a summary."""
    result = run_cli("demo", "--steps", "1500", "--report-every", "0.05")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1500 of 1500" in result.stdout
    assert "demo-progress" in result.stdout
    assert "demo ok" in result.stdout


@pytest.mark.parametrize("part", ["loader", "report"])
def test_a_failing_part_makes_the_demo_exit_1(part: str) -> None:
    """An exception in a loader thread or in the progress TimedThread is reported; exit 1."""
    result = run_cli("demo", "--steps", "3000", "--report-every", "0.01", "--inject-failure", part)
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
