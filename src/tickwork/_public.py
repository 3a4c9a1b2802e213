"""What a public namespace shows, and the module its objects say they come from.

Every public module (``tickwork``, ``tickwork.testing``, ``tickwork.integrations`` and its
framework modules) ends with ``publish(globals())``: its exports then name it as their module, so
a repr, a traceback or a pickle says ``tickwork.TimedThread``, never ``tickwork._timed_thread``
(trio's ``fixup_module_metadata`` does the same), and ``dir()`` on it lists what ``__all__``
lists.

``tickwork`` itself imports some of its exports lazily (``publish(globals(), lazy=...)``): the
first use of one imports its group (checkpoints, tuning, ...) and gives them their public home. A
public submodule that imports one of their private modules directly gives them the same home first
(see :func:`publish`), so that whatever route leads to them, they name ``tickwork``.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable, Mapping, MutableMapping

__all__ = ["is_private", "publish"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import Any


def is_private(module_name: str) -> bool:
    """True for a tickwork module that is not part of the API (a path component starts with _)."""
    parts = module_name.split(".")
    return parts[0] == "tickwork" and any(part.startswith("_") for part in parts[1:])


def publish(namespace: MutableMapping[str, Any], lazy: Mapping[str, str] | None = None) -> None:
    """Make the module whose globals are ``namespace`` show what its ``__all__`` says.

    Each class and function in ``__all__`` that was defined in a private tickwork module gets
    this module as ``__module__`` (the methods and nested classes defined in a class too), and
    its exported name as ``__name__``/``__qualname__``. An object that already names a public
    module keeps it (the first public module to export it wins). ``dir()`` of the module lists
    ``__all__``, its public submodules that are loaded, and its dunder names.

    ``lazy`` maps names of ``__all__`` that are not imported yet to the module that defines each
    (``"._sub._module"``, relative to this package): the module gets a ``__getattr__`` that, on
    the first use of one, imports every module of its group (``._sub``), and then gives their
    home to every lazy export whose module is imported by then. Lazy exports (of ``tickwork``)
    whose modules an import has loaded already get their home before this module's exports
    get theirs, so the package stays the home of what it exports.
    """
    module_name = str(namespace["__name__"])
    exported = tuple(namespace["__all__"])
    lazy = dict(lazy or {})
    _settle_loaded()
    seen: set[int] = set()
    for name in exported:
        if name not in lazy:
            _fix(namespace[name], module_name, name, seen)
    namespace["__dir__"] = _lister(module_name, exported)
    if lazy:
        _LAZY_EXPORTS[module_name] = (namespace, lazy)
        namespace["__getattr__"] = _lazy_getattr(module_name)


# Modules with lazy exports: name -> (their globals, export -> defining module).
_LAZY_EXPORTS: dict[str, tuple[MutableMapping[str, Any], dict[str, str]]] = {}
_lazy_lock = threading.Lock()


def _lazy_getattr(module_name: str) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        namespace, lazy = _LAZY_EXPORTS[module_name]
        if name not in lazy:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        _resolve(module_name, group=_group(lazy[name]))
        return namespace[name]

    return __getattr__


def _group(where: str) -> str:
    """What is imported together: ``"._checkpoints._api"`` -> ``"._checkpoints"``."""
    return "." + where.split(".")[1]


def _resolve(module_name: str, *, group: str | None) -> None:
    """Put lazy exports of ``module_name`` in its namespace, with their public home: those of
    ``group`` (importing their modules), and every one whose module is imported already."""
    namespace, lazy = _LAZY_EXPORTS[module_name]
    if group is not None:  # outside the lock: an import takes the import system's locks
        for where in lazy.values():
            if _group(where) == group:
                importlib.import_module(module_name + where)
    with _lazy_lock:  # one thread fixes at a time
        seen: set[int] = set()
        for name, where in lazy.items():
            # where: "._x._y", relative to the package
            module = sys.modules.get(module_name + where)
            if name in namespace or module is None:
                continue
            obj = getattr(module, name)
            _fix(obj, module_name, name, seen)
            namespace[name] = obj


def _settle_loaded() -> None:
    """Give every lazy export whose module is imported already its public home."""
    for module_name in list(_LAZY_EXPORTS):
        _resolve(module_name, group=None)


def _lister(module_name: str, exported: tuple[str, ...]) -> Callable[[], list[str]]:
    def __dir__() -> list[str]:
        members = vars(sys.modules[module_name])
        submodules = [
            key
            for key, value in members.items()
            if isinstance(value, types.ModuleType)
            and not key.startswith("_")
            and value.__name__ == f"{module_name}.{key}"
        ]
        dunders = [key for key in members if key.startswith("__")]
        return sorted({*exported, *submodules, *dunders})

    return __dir__


def _fix(obj: object, module_name: str, qualname: str, seen: set[int]) -> None:
    if id(obj) in seen or not isinstance(obj, type | types.FunctionType):
        return
    seen.add(id(obj))
    current = getattr(obj, "__module__", None)
    if not isinstance(current, str) or not is_private(current):
        return
    original = obj.__qualname__
    obj.__module__ = module_name
    if "." not in qualname:
        obj.__name__ = qualname
    obj.__qualname__ = qualname
    if isinstance(obj, type):
        for attr, value in vars(obj).items():
            for member in _functions_in(value):
                # Only what the class body defined: not a function it merely holds.
                if getattr(member, "__qualname__", "") == f"{original}.{member.__name__}":
                    _fix(member, module_name, f"{qualname}.{member.__name__}", seen)
            if isinstance(value, type) and value.__qualname__ == f"{original}.{attr}":
                _fix(value, module_name, f"{qualname}.{attr}", seen)


def _functions_in(value: object) -> list[Any]:
    """The functions a class attribute holds: itself, or those of a static/class method or a
    property."""
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if isinstance(value, property):
        return [
            f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType)
        ]
    return [value] if isinstance(value, types.FunctionType) else []
