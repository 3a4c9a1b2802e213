"""What a public namespace shows, and the module its objects say they come from.

Every public module (``tickwork``, ``tickwork.testing``, ``tickwork.integrations`` and its
framework modules) ends with ``publish(globals())``: its exports then name it as their module, so
a repr, a traceback or a pickle says ``tickwork.TimedThread``, never ``tickwork._timed_thread``
(trio's ``fixup_module_metadata`` does the same), and ``dir()`` on it lists what ``__all__``
lists.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["is_private", "publish"]


def is_private(module_name: str) -> bool:
    """True for a tickwork module that is not part of the API (a path component starts with _)."""
    parts = module_name.split(".")
    return parts[0] == "tickwork" and any(part.startswith("_") for part in parts[1:])


def publish(namespace: MutableMapping[str, Any]) -> None:
    """Make the module whose globals are ``namespace`` show what its ``__all__`` says.

    Each class and function in ``__all__`` that was defined in a private tickwork module gets
    this module as ``__module__`` (the methods and nested classes defined in a class too), and
    its exported name as ``__name__``/``__qualname__``. An object that already names a public
    module keeps it (the first public module to export it wins). ``dir()`` of the module lists
    ``__all__``, its public submodules that are loaded, and its dunder names.
    """
    module_name = str(namespace["__name__"])
    exported = tuple(namespace["__all__"])
    seen: set[int] = set()
    for name in exported:
        _fix(namespace[name], module_name, name, seen)
    namespace["__dir__"] = _lister(module_name, exported)


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
    if id(obj) in seen or not (isinstance(obj, type) or inspect.isfunction(obj)):
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
        return [f for f in (value.fget, value.fset, value.fdel) if inspect.isfunction(f)]
    return [value] if inspect.isfunction(value) else []
