"""The public surface: every name in tickwork.__all__ is real, and the core imports no framework."""

from __future__ import annotations

import subprocess
import sys

import tickwork


def test_every_export_exists_and_is_documented() -> None:
    """Each public name resolves and has a docstring."""
    for name in tickwork.__all__:
        obj = getattr(tickwork, name)
        assert obj.__doc__, f"tickwork.{name} has no docstring"


def test_all_is_sorted_and_unique() -> None:
    """__all__ lists each name once, sorted, so additions stay reviewable."""
    assert list(tickwork.__all__) == sorted(set(tickwork.__all__))


def test_public_names_have_public_module_paths_only_via_tickwork() -> None:
    """Private modules are not part of the API: exported objects come from tickwork._*."""
    for name in tickwork.__all__:
        obj = getattr(tickwork, name)
        # A constant (an instance) has no __module__ of its own: its class is what pickles name.
        owner = obj if hasattr(obj, "__qualname__") else type(obj)
        module = owner.__module__
        assert isinstance(module, str), (name, module)
        assert module == "tickwork" or module.startswith("tickwork."), (name, module)


def test_the_core_imports_no_framework_and_no_extra() -> None:
    """import tickwork pulls in neither a framework nor an optional extra."""
    code = (
        "import sys, tickwork, tickwork.testing\n"
        "heavy = {'tensorflow', 'torch', 'jax', 'keras', 'numpy', 'watchfiles', 'fsspec', "
        "'click', 'rich', 'matplotlib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
