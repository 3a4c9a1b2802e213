"""A griffe extension for the docs site: the Sphinx roles in tickwork's docstrings become Markdown.

tickwork's docstrings name other objects the way Sphinx does (:class:`FollowOptions`,
:meth:`~tickwork.SidecarEvaluator.stop`), which is also how they read in ``help()`` and an IDE.
mkdocstrings renders Markdown, where such a role would show as ``:class:`` text. This extension
rewrites each role before mkdocstrings renders the docstring:

* a name that resolves, in the docstring's own scope, to an object the API reference shows (a name
  in a public module's ``__all__``, or a public member of one) becomes a cross-reference to its
  public path, so a name that stops resolving fails the strict build;
* a name from outside tickwork (the standard library's, a framework's) or of a private helper
  becomes inline code;
* a name that resolves to nothing (``tickwork.Nope``, a method the class does not have) is logged
  as a warning, which fails the strict build.

A line ending in the reStructuredText ``::`` (a literal block follows) ends in ``:``: the
indented block after it is already a Markdown code block.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from typing import Any

import griffe

# The public modules, as in the API reference pages (docs/api/*.md).
PUBLIC_MODULES = (
    "tickwork",
    "tickwork.distributed",
    "tickwork.integrations",
    "tickwork.integrations.jax",
    "tickwork.integrations.keras",
    "tickwork.integrations.lightning",
    "tickwork.integrations.torch",
    "tickwork.integrations.transformers",
    "tickwork.testing",
)

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj):`([^`]+)`")
_TITLED = re.compile(r"^(.*?)\s*<([^>]+)>$")
_LITERAL_INTRO = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)


class Unresolved(LookupError):
    """A role names something in tickwork that does not exist."""


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring in the ``tickwork`` package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "tickwork":
            return
        collection = loader.modules_collection
        shown = public_paths(collection)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj, collection, shown)


def public_paths(collection: griffe.ModulesCollection) -> dict[str, str]:
    """Canonical path -> the public path the reference shows it under, for every exported
    object and its public members (inherited ones included)."""
    shown: dict[str, str] = {}
    for module_path in PUBLIC_MODULES:
        module = collection[module_path]
        shown.setdefault(module.path, module_path)
        for export in module.exports or ():
            name = export if isinstance(export, str) else export.name
            target = _final(module.members[name])
            public = f"{module_path}.{name}"
            shown.setdefault(target.path, public)
            if isinstance(target, griffe.Class):
                for member_name, member in target.all_members.items():
                    if not member_name.startswith("_"):
                        shown.setdefault(_final(member).path, f"{public}.{member_name}")
    return shown


def rewrite(
    text: str, scope: griffe.Object, collection: griffe.ModulesCollection, shown: dict[str, str]
) -> str:
    """The docstring ``text`` with its roles as Markdown (see the module docstring)."""

    def replace(match: re.Match[str]) -> str:
        content = match.group(1)
        titled = _TITLED.match(content)
        title, target = (titled.group(1), titled.group(2)) if titled else (None, content)
        short = target.startswith("~")
        target = target.lstrip("~.")
        display = title or (target.rsplit(".", 1)[-1] if short else target)
        try:
            path = resolve(target, scope, collection)
        except Unresolved:
            griffe.logger.warning(
                f"{scope.path}: the docstring names {target!r}, which does not exist"
            )
            path = None
        if path is not None and path in shown:
            return f"[`{display}`][{shown[path]}]"
        return f"`{display}`"

    return _LITERAL_INTRO.sub(r"\1:", _ROLE.sub(replace, text))


def resolve(target: str, scope: griffe.Object, collection: griffe.ModulesCollection) -> str | None:
    """The canonical path of the object ``target`` names from ``scope``; None when it is outside
    tickwork (the standard library, a builtin, a framework).

    Raises:
        Unresolved: ``target`` names something in tickwork (or an unknown bare name) that does
            not exist.
    """
    first, *rest = target.split(".")
    if first == "tickwork":
        path = "tickwork"
    else:
        try:
            path = _resolve_name(first, scope)
        except griffe.NameResolutionError:
            if first in vars(builtins) or rest:
                return None  # a builtin, or a dotted path from outside (threading.Event)
            raise Unresolved(target) from None
        if path.split(".")[0] != "tickwork":
            return None  # an import from the standard library or a framework
    try:
        obj = _final(collection[path])
        for part in rest:
            members = obj.all_members if isinstance(obj, griffe.Class) else obj.members
            obj = _final(members[part])
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        raise Unresolved(target) from None
    return str(obj.path)


def _resolve_name(name: str, scope: griffe.Object) -> str:
    """The path ``name`` stands for in ``scope``: a member of the enclosing class (inherited ones
    included, which griffe's own resolution leaves out), else what griffe resolves."""
    enclosing: griffe.Object | None = scope
    while enclosing is not None and not isinstance(enclosing, griffe.Module):
        if isinstance(enclosing, griffe.Class) and name in enclosing.all_members:
            return str(_final(enclosing.all_members[name]).path)
        enclosing = enclosing.parent
    return scope.resolve(name)


def _final(obj: Any) -> Any:
    """An alias's final target, or the object itself."""
    return obj.final_target if isinstance(obj, griffe.Alias) else obj


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and every object defined inside it (not the names it merely imports)."""
    yield obj
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue
        yield from _walk(member)
