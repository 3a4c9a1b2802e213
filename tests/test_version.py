"""The version is written once, in src/tickwork/__init__.py; the packaging reads it from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.version import Version

import tickwork

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="pyproject.toml is read with tomllib (3.11+)")


def test_the_version_is_a_pep_440_version() -> None:
    """tickwork.__version__ parses as a release version and round-trips."""
    assert str(Version(tickwork.__version__)) == tickwork.__version__


def test_pyproject_takes_the_version_from_the_package() -> None:
    """pyproject.toml has no version of its own: hatch reads __version__ from __init__.py."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    source = pyproject["tool"]["hatch"]["version"]["path"]
    assert source == "src/tickwork/__init__.py"
    text = (ROOT / source).read_text(encoding="utf-8")
    # hatch's default pattern: one `__version__ = "..."` assignment.
    found = re.findall(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, flags=re.MULTILINE)
    assert found == [tickwork.__version__]


class TestChangelog:
    def _types(self) -> set[str]:
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        return {t["directory"] for t in pyproject["tool"]["towncrier"]["type"]}

    def test_fragments_are_named_for_towncrier_and_say_something(self) -> None:
        """Each fragment in changelog.d/ is `<issue>.<type>.md` or `+<slug>.<type>.md` with a
        type the towncrier configuration knows, and is not empty."""
        types = self._types()
        fragments = [p for p in (ROOT / "changelog.d").iterdir() if p.name != "README.md"]
        assert fragments, "changelog.d/ holds no fragment"
        for path in fragments:
            match = re.fullmatch(r"(\d+|\+[\w-]+)\.(\w+)\.md", path.name)
            assert match, f"{path.name}: not <issue>.<type>.md or +<slug>.<type>.md"
            assert match.group(2) in types, f"{path.name}: type not in {sorted(types)}"
            assert path.read_text(encoding="utf-8").strip(), f"{path.name} is empty"

    def test_the_changelog_has_the_marker_towncrier_writes_below(self) -> None:
        """towncrier inserts releases after its start string; without it a build would fail."""
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        start = pyproject["tool"]["towncrier"]["start_string"]
        assert start in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
