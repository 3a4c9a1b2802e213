"""``python -m tickwork`` runs the command line, and the sdist holds only what it should."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_python_m_tickwork_is_the_command_line() -> None:
    """``python -m tickwork --help`` prints the CLI's usage and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "tickwork", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    assert "follow" in done.stdout


def test_the_sdist_leaves_out_what_a_test_run_leaves_behind(tmp_path: Path) -> None:
    """A built sdist holds src/ and tests/ but no .hypothesis/, caches or venvs."""
    probe = ROOT / ".hypothesis" / "sdist-probe"
    probe.mkdir(parents=True, exist_ok=True)  # as a test run leaves it
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        probe.rmdir()
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(n.endswith("src/tickwork/__init__.py") for n in names)
    assert any("/tests/" in n for n in names)
    for unwanted in (".hypothesis", ".venv", "__pycache__", ".mypy_cache", "/site/"):
        assert not [n for n in names if unwanted in n], unwanted
