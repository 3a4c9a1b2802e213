"""The docs site (mkdocs.yml) builds with ``mkdocs build --strict``, and its API reference shows
every public name.

``--strict`` turns every warning into a failure: a link to a page or an anchor that does not
exist, a cross-reference (``[Checkpoint][tickwork.Checkpoint]``, or a ``:class:`` role in a
docstring, see docs/_ext/sphinx_roles.py) that resolves to nothing, a snippet file that is
missing. A public name without a docstring is caught by tests/test_exports.py (mkdocstrings
itself does not fail on one); the names missing from the reference are caught here.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tickwork"
BUILD_TIMEOUT = 300.0  # seconds; a build takes about 5 s on this project's 2 cores

sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import sphinx_roles  # noqa: E402  (the docs site's griffe extension, not a package)


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` for ``config`` into ``site`` in a fresh interpreter."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once from the repository's own mkdocs.yml."""
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def public_modules() -> dict[str, list[str]]:
    """Every public module and its ``__all__``, read from the source (no framework imported)."""
    found: dict[str, list[str]] = {}
    for path in [SRC / "__init__.py", *SRC.rglob("*.py")]:
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exports: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
            ):
                exports = list(ast.literal_eval(node.value))
        found[".".join(parts)] = exports
    return found


PUBLIC = public_modules()


def test_the_public_modules_are_found() -> None:
    """The walk is not vacuous, and agrees with pkgutil on which modules are public."""
    assert {"tickwork", "tickwork.distributed", "tickwork.testing"} <= set(PUBLIC)
    assert len(PUBLIC["tickwork"]) >= 30
    top = {f"tickwork.{m.name}" for m in pkgutil.iter_modules([str(SRC)]) if m.name[0] != "_"}
    assert top <= set(PUBLIC)


def test_every_public_module_has_a_reference_page() -> None:
    """Each public module is rendered by a ``::: module`` line of a page in docs/api/, and the
    docstring extension knows it as public (so roles naming its objects become links)."""
    rendered = {
        match.group(1)
        for page in (ROOT / "docs" / "api").glob("*.md")
        for match in re.finditer(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.M)
    }
    assert rendered == set(PUBLIC)
    assert set(sphinx_roles.PUBLIC_MODULES) == set(PUBLIC)


def test_the_site_builds_strict_and_shows_every_public_name(site: Path) -> None:
    """The strict build passes, and every name of every public ``__all__`` has its entry (an
    anchor named by its public path) in the API reference."""
    html = "".join(page.read_text(encoding="utf-8") for page in (site / "api").rglob("*.html"))
    anchors = set(re.findall(r'id="(tickwork[\w.]*)"', html))
    missing = [
        f"{module}.{name}"
        for module, names in PUBLIC.items()
        for name in names
        if f"{module}.{name}" not in anchors
    ]
    assert not missing, missing
    assert set(PUBLIC) <= anchors


def test_the_site_has_the_guides_the_benchmarks_and_the_readme_intro(site: Path) -> None:
    """Each guide in docs/ is a page; the benchmarks page and the home page pull in
    benchmarks/RESULTS.md and the README's introduction (snippets), not copies of them."""
    for guide in (ROOT / "docs").glob("*.md"):
        page = "index.html" if guide.stem == "index" else f"{guide.stem}/index.html"
        assert (site / page).is_file(), guide.name
    benchmarks = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert "Benchmark results" in benchmarks
    assert "--8&lt;--" not in benchmarks
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "the work that runs beside a training loop" in home
    assert ":class:" not in (site / "api" / "tickwork" / "index.html").read_text(encoding="utf-8")


def test_a_broken_link_or_reference_fails_the_build(tmp_path: Path) -> None:
    """The strict build is not vacuous: a link to a missing page, a cross-reference to a missing
    name and a docstring role naming a missing method each fail it, by name."""
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", work / "README.md")
    shutil.copytree(ROOT / "docs", work / "docs")
    shutil.copytree(ROOT / "benchmarks", work / "benchmarks", ignore=shutil.ignore_patterns("*.py"))
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    with (work / "docs" / "design.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the missing page](no-such-page.md) and [Nope][tickwork.Nope].\n")
    testing = work / "src" / "tickwork" / "testing.py"
    testing.write_text(
        testing.read_text(encoding="utf-8").replace(
            '"""Test helpers for code built on tickwork.',
            '"""Test helpers for code built on tickwork (:meth:`FakeClock.no_such_method`).',
        ),
        encoding="utf-8",
    )
    result = build(work / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "no-such-page.md" in output
    assert "tickwork.Nope" in output
    assert "FakeClock.no_such_method" in output
