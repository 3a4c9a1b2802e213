"""Every type a public signature names has a public home, as a type checker sees the signatures.

mypy itself reads tickwork's sources (``follow_imports=skip``: no framework is read) and this
test walks what it found: every name a public module exports, every public member of every
exported class (and of the classes it inherits from), and every type in their signatures,
attributes and type aliases. Each tickwork class found there must be exported by a public
module, so a user can import what a signature names (``tickwork.FollowSettings``, not
``tickwork._checkpoints._options.FollowSettings``) and find it in the API reference.

The walk is checked on a small package planted with the cases it must flag (a private class
returned, taken, held as an attribute, reached through an alias, a TypedDict in ``**kwargs``).
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from mypy import build, nodes
from mypy import types as mt
from mypy.find_sources import create_source_list
from mypy.options import Options

import tickwork

# Dunder members whose signatures a user meets (a class's other underscored names are private).
_SHOWN_DUNDERS = {"__init__", "__call__", "__enter__", "__exit__", "__iter__", "__next__"}


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[1:])


def _types_in(typ: mt.Type | None, seen: set[int] | None = None) -> Iterator[str]:
    """The full names of the classes a type mentions, aliases expanded; a type variable's bound is
    not one (``def __enter__(self: T) -> T`` returns the caller's own class)."""
    if typ is None:
        return
    seen = set() if seen is None else seen
    if id(typ) in seen:
        return
    seen.add(id(typ))
    inner: list[mt.Type] = []
    if isinstance(typ, mt.TypeAliasType):
        inner = [*typ.args, mt.get_proper_type(typ)]
    elif isinstance(typ, mt.Instance):
        yield typ.type.fullname
        inner = list(typ.args)
    elif isinstance(typ, mt.TypedDictType):
        yield typ.fallback.type.fullname
        inner = list(typ.items.values())
    elif isinstance(typ, mt.CallableType):
        inner = [*typ.arg_types, typ.ret_type]
    elif isinstance(typ, mt.Overloaded | mt.UnionType | mt.TupleType):
        inner = list(typ.items)
    elif isinstance(typ, mt.TypeType):
        inner = [typ.item]
    elif isinstance(typ, mt.UnpackType):
        inner = [typ.type]
    elif isinstance(typ, mt.LiteralType):
        inner = [typ.fallback]
    for item in inner:
        yield from _types_in(item, seen)


def _without_self(typ: mt.Type | None, static: bool) -> mt.Type | None:
    """A method's type as a caller sees it: the first parameter (self, cls) is the class itself."""
    if isinstance(typ, mt.CallableType) and not static and typ.arg_types:
        return typ.copy_modified(
            arg_types=typ.arg_types[1:], arg_kinds=typ.arg_kinds[1:], arg_names=typ.arg_names[1:]
        )
    if isinstance(typ, mt.Overloaded):
        items = [_without_self(item, static) for item in typ.items]
        return mt.Overloaded([item for item in items if isinstance(item, mt.CallableType)])
    return typ


def _signature(node: nodes.SymbolNode | None, method: bool) -> mt.Type | None:
    if isinstance(node, nodes.Decorator):
        typ = node.var.type or node.func.type
        return _without_self(typ, node.func.is_static) if method else typ
    if isinstance(node, nodes.FuncDef | nodes.OverloadedFuncDef):
        return _without_self(node.type, node.is_static) if method else node.type
    if isinstance(node, nodes.Var):
        return node.type
    if isinstance(node, nodes.TypeAlias):
        return node.target
    return None


def unhomed_types(package_dir: Path, package: str) -> dict[str, list[str]]:
    """Each class of ``package`` that a public signature names and no public module exports,
    with where it was met."""
    options = Options()
    options.follow_imports = "skip"  # the frameworks are not read: their types are Any here
    options.ignore_missing_imports = True
    options.incremental = False
    options.python_version = (3, 11)
    result = build.build(create_source_list([str(package_dir)], options), options)
    public = [
        name
        for name in result.files
        if (name == package or name.startswith(f"{package}.")) and not _is_private(name)
    ]
    assert public, f"mypy found no module of {package} in {package_dir}"
    exported: set[str] = set()
    api: list[tuple[str, nodes.SymbolNode]] = []
    for module in public:
        for name, symbol in result.files[module].names.items():
            node = symbol.node
            if name.startswith("_") or not symbol.module_public or node is None:
                continue
            if isinstance(node, nodes.MypyFile) or not node.fullname.startswith(package):
                continue
            api.append((f"{module}.{name}", node))
            if isinstance(node, nodes.TypeInfo | nodes.TypeAlias):
                exported.add(node.fullname)
    met: dict[str, list[str]] = {}

    def meet(where: str, typ: mt.Type | None) -> None:
        for fullname in _types_in(typ):
            if fullname.startswith(f"{package}.") and fullname not in exported:
                met.setdefault(fullname, []).append(where)

    for where, node in api:
        if not isinstance(node, nodes.TypeInfo):
            meet(where, _signature(node, method=False))
            continue
        for info in node.mro:
            if not info.fullname.startswith(f"{package}."):
                continue
            for member, symbol in info.names.items():
                if member.startswith("_") and member not in _SHOWN_DUNDERS:
                    continue
                meet(f"{where}.{member}", _signature(symbol.node, method=True))
    return met


def test_every_type_a_public_signature_names_is_exported() -> None:
    found = unhomed_types(Path(tickwork.__file__).parent, "tickwork")
    assert not found, "\n".join(f"{name}: {sorted(set(where))}" for name, where in found.items())


_PLANTED = {
    "__init__.py": """
        from ._impl import Public as Public, make as make, take as take, Holder as Holder
        from ._impl import configure as configure, PublicBase as PublicBase
        __all__ = ["Holder", "Public", "PublicBase", "configure", "make", "take"]
    """,
    "_impl.py": """
        from typing import TypeAlias, TypedDict
        from typing_extensions import Unpack

        class Public: ...
        class Returned: ...
        class Taken: ...
        class Held: ...
        class Aliased: ...
        class Inherited: ...
        class Settings(TypedDict, total=False):
            a: int
        Alias: TypeAlias = "Aliased | None"

        def make() -> Returned | None: ...
        def take(x: Taken, y: Public) -> Public: ...
        def configure(**kw: Unpack[Settings]) -> None: ...
        class Holder:
            held: Held
            def __init__(self, a: Alias) -> None: ...
            def _private(self) -> Public: ...
        class _Base:
            def inherited(self) -> Inherited: ...
        class PublicBase(_Base): ...
    """,
}


def test_the_walk_flags_each_kind_of_private_type(tmp_path: Path) -> None:
    """Not vacuous: a planted package's private classes are found wherever a signature names them,
    and its exported class is not."""
    package = tmp_path / "planted"
    package.mkdir()
    for name, text in _PLANTED.items():
        (package / name).write_text(textwrap.dedent(text))
    found = unhomed_types(package, "planted")
    assert sorted(found) == [
        f"planted._impl.{name}"
        for name in ("Aliased", "Held", "Inherited", "Returned", "Settings", "Taken")
    ], found
    assert found["planted._impl.Inherited"] == ["planted.PublicBase.inherited"]


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("FollowSettings", "tickwork"),
        ("CoordinatorLike", "tickwork"),
        ("Waitable", "tickwork"),
        ("LinkOptions", "tickwork.integrations"),
        ("LinkSettings", "tickwork.integrations"),
    ],
)
def test_the_types_of_arguments_are_importable(name: str, module: str) -> None:
    """The types that stop= and **settings parameters name are imported from their public home."""
    home = importlib.import_module(module)
    assert getattr(home, name).__module__ == module
