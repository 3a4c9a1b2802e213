"""The public surface: every public module's __all__ is real, is what dir() shows, names the public
module as its objects' home (so reprs and pickles never name a private path), and the core imports
no framework.

The public modules are found by walking the package (every module path without a component that
starts with "_"), so a new one is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import os
import pickle
import pkgutil
import re
import subprocess
import sys
import types

import pytest

import tickwork
from tickwork._public import is_private


def _public_modules() -> list[str]:
    """Every public module of tickwork, found without importing any (iter_modules reads paths)."""
    found = ["tickwork"]
    stack = [("tickwork", list(tickwork.__path__))]
    while stack:
        package, paths = stack.pop()
        for info in pkgutil.iter_modules(paths):
            if info.name.startswith("_"):
                continue
            name = f"{package}.{info.name}"
            found.append(name)
            if info.ispkg:
                stack.append((name, [os.path.join(path, info.name) for path in paths]))
    return sorted(found)


PUBLIC_MODULES = _public_modules()
_PRIVATE_PATH = re.compile(rb"tickwork(\.\w+)*\._")  # tickwork._clock, tickwork.integrations._x


def _load(name: str) -> types.ModuleType:
    """Import a public module; skip (saying which) only when a framework it needs is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing != "tickwork":
            pytest.skip(f"{name} needs {missing}, which is not installed")
        raise


def _is_api_object(obj: object) -> bool:
    """Classes and functions: the objects that carry a module of their own."""
    return isinstance(obj, type) or inspect.isfunction(obj)


def _own_doc(member: object) -> bool:
    """Whether a class attribute that is a method (of any kind) or a property carries its own
    docstring; True for anything else (an enum member, a constant, a dataclass field)."""
    if isinstance(member, staticmethod | classmethod):
        member = member.__func__
    if isinstance(member, property) or inspect.isfunction(member):
        return bool(member.__doc__ and member.__doc__.strip())
    return True


def test_the_walk_finds_the_known_public_modules() -> None:
    """The discovery is not vacuous: it finds the modules the docs name, and no private one."""
    expected = {
        "tickwork",
        "tickwork.testing",
        "tickwork.integrations",
        "tickwork.integrations.jax",
        "tickwork.integrations.torch",
        "tickwork.integrations.keras",
    }
    assert expected <= set(PUBLIC_MODULES)
    assert not [name for name in PUBLIC_MODULES if is_private(name)]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
class TestPublicModule:
    def test_every_export_exists_and_is_documented(self, name: str) -> None:
        """Each name in __all__ resolves; each class and function has a docstring."""
        module = _load(name)
        assert module.__doc__, f"{name} has no docstring"
        for export in module.__all__:
            obj = getattr(module, export)
            if _is_api_object(obj):
                assert obj.__doc__, f"{name}.{export} has no docstring"

    def test_every_public_method_is_documented(self, name: str) -> None:
        """Each public method, property, classmethod and staticmethod of an exported class that
        tickwork defines (itself or in a base class of its own) has a docstring of its own: the
        API reference shows it, and mkdocstrings does not fail on an empty one."""
        module = _load(name)
        undocumented = []
        for export in module.__all__:
            cls = getattr(module, export)
            if not isinstance(cls, type):
                continue
            for attr in dir(cls):
                if attr.startswith("_"):
                    continue
                owner = next(k for k in cls.__mro__ if attr in vars(k))
                if not owner.__module__.startswith("tickwork"):
                    continue  # inherited from a framework or the standard library
                if not _own_doc(vars(owner)[attr]):
                    undocumented.append(f"{name}.{export}.{attr}")
        assert not undocumented, undocumented

    def test_signatures_carry_no_private_test_seams(self, name: str) -> None:
        """No exported callable, class or public method takes an underscored parameter
        (``_storage=``, ``_events=``, ``_own_stop=``): fakes enter by patching a module-level
        factory, as watchfiles' tests do, not through the public signature."""
        module = _load(name)
        seams = []
        for export in module.__all__:
            obj = getattr(module, export)
            if not callable(obj):
                continue
            members = [obj]
            if isinstance(obj, type):
                public = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
                members += [v for v in public.values() if callable(v)]
            for member in members:
                try:
                    signature = inspect.signature(member)
                except (TypeError, ValueError):
                    continue  # a builtin, or a class without a signature of its own
                seams += [f"{export}({p})" for p in signature.parameters if p.startswith("_")]
        assert not seams, seams

    def test_all_is_sorted_and_unique(self, name: str) -> None:
        """__all__ lists each name once, sorted, so additions stay reviewable."""
        module = _load(name)
        assert list(module.__all__) == sorted(set(module.__all__))

    def test_dir_shows_what_all_says(self, name: str) -> None:
        """dir() lists the public names of __all__ and nothing else public (loaded public
        submodules aside): no helper or import leaks into the namespace."""
        module = _load(name)
        shown = {n for n in dir(module) if not n.startswith("_")}
        submodules = {n for n in shown if isinstance(getattr(module, n), types.ModuleType)} & {
            m.rsplit(".", 1)[-1] for m in PUBLIC_MODULES if m.startswith(f"{name}.")
        }
        assert shown - submodules == set(module.__all__)

    def test_exports_name_a_public_module_that_has_them(self, name: str) -> None:
        """Each exported class and function says it comes from a public tickwork module, and its
        __module__ and __qualname__ lead back to it (which is what pickle and reprs use)."""
        module = _load(name)
        for export in module.__all__:
            obj = getattr(module, export)
            if not _is_api_object(obj):
                continue
            home = obj.__module__
            if not home.startswith("tickwork"):
                continue  # re-exported from elsewhere (none now); its home is not ours to set
            assert not is_private(home), (name, export, home)
            found: object = importlib.import_module(home)
            for part in obj.__qualname__.split("."):
                found = getattr(found, part)
            assert found is obj, (name, export, home, obj.__qualname__)

    def test_classes_functions_and_records_pickle(self, name: str) -> None:
        """Every exported class and function pickles by reference to its public home; enum
        members and records that can be built from their defaults round-trip."""
        module = _load(name)
        for export in module.__all__:
            obj = getattr(module, export)
            if not _is_api_object(obj):
                continue
            data = pickle.dumps(obj)
            assert not _PRIVATE_PATH.search(data), (name, export, data)
            assert pickle.loads(data) is obj
            if isinstance(obj, type) and issubclass(obj, enum.Enum):
                for member in obj:
                    assert pickle.loads(pickle.dumps(member)) is member
            elif (
                isinstance(obj, type)
                and dataclasses.is_dataclass(obj)
                and all(
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                    for f in dataclasses.fields(obj)
                    if f.init
                )
            ):
                record = obj()
                assert pickle.loads(pickle.dumps(record)) == record


def test_reprs_name_the_public_path() -> None:
    """A class's repr and a method's qualified path say tickwork.X."""
    assert repr(tickwork.TimedThread) == "<class 'tickwork.TimedThread'>"
    assert tickwork.TimedThread.start.__module__ == "tickwork"
    assert repr(tickwork.Overrun) == "<enum 'Overrun'>"
    assert tickwork.TickStats.__module__ == "tickwork"
    assert pickle.loads(pickle.dumps(tickwork.TickStats(calls=3))).calls == 3


def test_the_core_imports_no_framework_and_no_extra() -> None:
    """import tickwork pulls in neither a framework nor an optional extra."""
    code = (
        "import sys, tickwork, tickwork.testing, tickwork.integrations\n"
        "heavy = {'tensorflow', 'torch', 'jax', 'keras', 'numpy', 'watchfiles', 'fsspec', "
        "'click', 'rich', 'matplotlib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


# What `import tickwork` alone must not import (issue 18, item 4): the checkpoint machinery, the
# tuner, the training-end marker, the TickStats record, and the standard library modules only
# they need (typing too: the core names its Protocols under TYPE_CHECKING, see _protocols; and
# logging, imported by a module's first record, see _log). Checked by what is in sys.modules, not
# by timing.
_NOT_ON_IMPORT = (
    "typing",
    "logging",
    "tickwork._checkpoints",
    "tickwork._tuning",
    "tickwork._done_marker",
    "tickwork._tick_stats",
    "dataclasses",
    "inspect",
    "json",
    "uuid",
    "socket",
    "datetime",
    "tensorflow",
    "torch",
    "jax",
    "keras",
    "numpy",
    "watchfiles",
    "fsspec",
)


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


class TestLazyImport:
    def test_import_tickwork_leaves_the_checkpoint_machinery_and_the_tuner_unimported(
        self,
    ) -> None:
        """`import tickwork` imports the thread core only; the rest waits for its first use."""
        code = (
            "import sys, tickwork\n"
            f"watched = {_NOT_ON_IMPORT!r}\n"
            "print(sorted(w for w in watched for m in sys.modules "
            "if m == w or m.startswith(w + '.')))\n"
        )
        assert _run(code) == "[]"

    def test_a_thread_can_be_run_and_measured_without_them(self) -> None:
        """Starting, stopping and even reading statistics() of a TimedThread imports no
        checkpoint or tuning module; the TickStats it returns names tickwork as its home."""
        code = (
            "import sys, tickwork, pickle\n"
            "t = tickwork.every(0.001, lambda: None)\n"
            "with t:\n"
            "    pass\n"
            "stats = t.statistics()\n"
            "print(type(stats).__module__, type(stats).__qualname__)\n"
            "print(b'tickwork._' in pickle.dumps(stats))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('tickwork._checkpoints', "
            "'tickwork._tuning', 'tickwork._done_marker'))))\n"
        )
        assert _run(code).splitlines() == ["tickwork TickStats", "False", "[]"]

    def test_every_public_name_resolves_in_a_fresh_interpreter(self) -> None:
        """Each name of tickwork.__all__ resolves (a first use imports its group), names
        tickwork as its home, and `from tickwork import *` brings them all."""
        code = (
            "import tickwork, types\n"
            "bad = []\n"
            "for name in tickwork.__all__:\n"
            "    obj = getattr(tickwork, name)\n"
            "    if isinstance(obj, (type, types.FunctionType)) and obj.__module__ != 'tickwork':\n"
            "        bad.append((name, obj.__module__))\n"
            "namespace = {}\n"
            "exec('from tickwork import *', namespace)\n"
            "missing = sorted(set(tickwork.__all__) - set(namespace))\n"
            "print(bad, missing)\n"
        )
        assert _run(code) == "[] []"

    def test_a_first_use_imports_only_its_group(self) -> None:
        """tickwork.StepsPerExecutionTuner imports the tuner, not the checkpoint machinery."""
        code = (
            "import sys, tickwork\n"
            "tickwork.StepsPerExecutionTuner\n"
            "print('tickwork._tuning._tuner' in sys.modules, "
            "any(m.startswith('tickwork._checkpoints') for m in sys.modules))\n"
        )
        assert _run(code) == "True False"

    def test_a_private_route_still_gives_the_public_home(self) -> None:
        """A public submodule that imports a lazily exported class through its private module
        (tickwork.integrations imports the steps-per-execution holder) leaves it naming
        tickwork, as when `import tickwork` imported everything."""
        code = (
            "import tickwork.integrations\n"
            "from tickwork._tuning._spe import StepsPerExecution\n"
            "print(StepsPerExecution.__module__, repr(StepsPerExecution))\n"
        )
        assert _run(code) == "tickwork <class 'tickwork.StepsPerExecution'>"

    def test_an_unknown_name_is_an_attribute_error(self) -> None:
        """A name tickwork does not export raises AttributeError naming it (so hasattr and
        `from tickwork import submodule` behave)."""
        with pytest.raises(AttributeError, match="'no_such_name'"):
            tickwork.no_such_name  # type: ignore[attr-defined]  # noqa: B018
