"""How a checkpoint directory is followed: :class:`FollowOptions`, one frozen record.

Built once (by :func:`tickwork.checkpoints_iterator`, :func:`tickwork.wait_for_new_checkpoint`,
:class:`tickwork.SidecarEvaluator`, ``tickwork follow``, or by the user) and passed whole to the
follower. Its field defaults are the defaults of every one of those; nothing restates them.
"""

from __future__ import annotations

import difflib
import enum
import functools
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypedDict, TypeVar, cast

from .._validate import check_choice, check_nonnegative, check_optional_nonnegative
from ._layouts import CheckpointPattern, Layout

__all__ = [
    "DEFAULTS",
    "FollowOptions",
    "FollowSettings",
    "Watch",
    "follow_options",
    "takes_settings",
]


class Watch(str, enum.Enum):
    """How a local directory is watched: ``"events"`` (filesystem events), ``"poll"`` (a listing
    every ``poll_interval``), ``"auto"`` (events, except on network filesystems or without
    watchfiles). Remote (fsspec) directories are always polled."""

    AUTO = "auto"
    EVENTS = "events"
    POLL = "poll"


@dataclass(frozen=True)
class FollowOptions:
    """The settings of a :class:`tickwork.CheckpointFollower` (each checked when built).

    ``layout``: ``"auto"`` (detected from the first entries that identify one), ``"tensorflow"``,
    ``"orbax"``, ``"huggingface"``, ``"keras"``, ``"torch"``, ``"dcp"``, or a
    :class:`CheckpointPattern`.
    ``skip_to_latest``: True hands out the newest complete checkpoint each time (TensorFlow's
    behaviour, older ones counted as skipped); False every complete checkpoint once, in step order.
    ``state_file``: a local JSON file recording the last checkpoint finished; a restarted follower
    goes on after it. ``hold``: hard-link each checkpoint handed out into ``hold_dir`` (default
    ``<checkpoint_dir>/.tickwork-hold``, same filesystem) and hand out that copy; local directories
    only. ``watch``: see :class:`Watch`. ``poll_interval``: seconds between listings when polling; 0
    lists back to back (TensorFlow's ``seconds_to_sleep=0``; each look checks the stop).
    Event-driven watching does not poll, so there 0 changes nothing: each change is reacted to at
    once, and a missing directory is looked for every 0.1 s, with no busy loop.
    ``max_poll_interval``: remote directories back off to this while nothing changes (default ``10 *
    poll_interval``; locally ``poll_interval``). ``settle_secs``: a file whose format records
    nothing about its completeness, or a directory with no commit marker, counts as complete once
    unchanged this long. ``latest_filename``: the TensorFlow state file's name (default
    ``"checkpoint"``). ``storage_options``: passed to fsspec for remote directories.
    ``abandon_secs``: in step order (``skip_to_latest=False``), an incomplete checkpoint holds back
    the newer ones. When a newer one is complete and the incomplete one has not changed since the
    newer one appeared, or once a newer one has been complete ``abandon_secs``, its writer is taken
    to have died mid-save or moved on, and the incomplete one is passed over (logged, counted as
    rejected). Default 2; a writer that is alive completes a checkpoint before the next one.
    """

    layout: Layout | CheckpointPattern = Layout.AUTO
    skip_to_latest: bool = True
    state_file: str | None = None
    hold: bool = False
    hold_dir: str | None = None
    watch: Watch = Watch.AUTO
    poll_interval: float = 1.0
    max_poll_interval: float | None = None
    settle_secs: float = 1.0
    latest_filename: str | None = None
    storage_options: Mapping[str, Any] | None = None
    abandon_secs: float = 2.0

    def __post_init__(self) -> None:
        put = object.__setattr__
        if not isinstance(self.layout, CheckpointPattern):
            put(self, "layout", check_choice("layout", self.layout, Layout))
        for flag in ("skip_to_latest", "hold"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"'{flag}' must be a bool; got {getattr(self, flag)!r}")
        for path in ("state_file", "hold_dir"):
            value = getattr(self, path)
            if value is not None:
                if not isinstance(value, (str, os.PathLike)):
                    raise TypeError(f"'{path}' must be a path or None; got {value!r}")
                put(self, path, os.fspath(value))
        put(self, "watch", check_choice("watch", self.watch, Watch))
        # 0 is back to back, as TensorFlow's seconds_to_sleep=0 (see the class docs).
        poll = check_nonnegative("poll_interval", self.poll_interval)
        put(self, "poll_interval", poll)
        ceiling = check_optional_nonnegative("max_poll_interval", self.max_poll_interval)
        if ceiling is not None and ceiling < poll:
            raise ValueError(
                f"'max_poll_interval' must be >= poll_interval ({poll!r}); "
                f"got {self.max_poll_interval!r}"
            )
        put(self, "settle_secs", check_nonnegative("settle_secs", self.settle_secs))
        put(self, "abandon_secs", check_nonnegative("abandon_secs", self.abandon_secs))
        name = self.latest_filename
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"'latest_filename' must be a file name; got {name!r}")
        if self.storage_options is not None and not isinstance(self.storage_options, Mapping):
            raise TypeError(
                f"'storage_options' must be a mapping or None; got {self.storage_options!r}"
            )


DEFAULTS = FollowOptions()


class FollowSettings(TypedDict, total=False):
    """The keyword arguments that :class:`FollowOptions` takes (for ``**settings``)."""

    layout: Layout | str | CheckpointPattern
    skip_to_latest: bool
    state_file: str | os.PathLike[str] | None
    hold: bool
    hold_dir: str | os.PathLike[str] | None
    watch: Watch | str
    poll_interval: float
    max_poll_interval: float | None
    settle_secs: float
    latest_filename: str | None
    storage_options: Mapping[str, Any] | None
    abandon_secs: float


def follow_options(
    options: FollowOptions | None,
    settings: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> FollowOptions:
    """The record to follow with: ``options`` itself, or one built from ``settings`` (over the
    caller's own ``defaults``); both at once is a TypeError."""
    if options is None:
        return FollowOptions(**{**(defaults or {}), **settings})
    if not isinstance(options, FollowOptions):
        raise TypeError(f"'options' must be a tickwork.FollowOptions or None; got {options!r}")
    if settings:
        raise TypeError(
            "'options' and separate follow settings exclude each other; got options= and "
            + ", ".join(f"{name}=" for name in settings)
        )
    return options


_F = TypeVar("_F", bound=Callable[..., Any])


def _annotation(hint: object) -> object:
    return getattr(hint, "__forward_arg__", hint)  # a TypedDict keeps its hints as ForwardRefs


def unknown_keyword(owner: str, name: str, accepted: Iterable[str]) -> TypeError:
    """The error for a keyword ``owner`` does not take, naming the owner (not the record the
    settings are passed on to) and the closest keyword it does take."""
    close = difflib.get_close_matches(name, sorted(accepted), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return TypeError(f"{owner} got an unexpected keyword argument {name!r}{hint}")


def takes_settings(**defaults: object) -> Callable[[_F], _F]:
    """Show ``**settings`` in the signature (``help()``, ``inspect``) as the keyword-only
    arguments of :class:`FollowOptions`, with their defaults (or the caller's ``defaults``), and
    refuse a keyword that is neither a setting nor an argument of the function, naming the
    function and the closest keyword (``done_maker`` -> ``done_marker``) rather than leaving
    :class:`FollowOptions` to be blamed for it."""

    def decorate(func: _F) -> _F:
        signature = inspect.signature(func)
        params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = next((i for i, p in enumerate(params) if p.name == "options"), len(params))
        settings = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults.get(f.name, f.default if f.default is not MISSING else None),
                annotation=_annotation(FollowSettings.__annotations__[f.name]),
            )
            for f in fields(FollowOptions)
        ]
        shown = signature.replace(parameters=[*params[:at], *settings, *params[at:]])
        accepted = frozenset(shown.parameters)
        qualname = func.__qualname__
        owner = (
            qualname[: -len(".__init__")] if qualname.endswith(".__init__") else qualname
        ) + "()"

        @functools.wraps(func)
        def checked(*args: Any, **kwargs: Any) -> Any:
            for name in kwargs:
                if name not in accepted:
                    raise unknown_keyword(owner, name, accepted - {"self"})
            return func(*args, **kwargs)

        checked.__signature__ = shown  # type: ignore[attr-defined]
        return cast(_F, checked)

    return decorate
