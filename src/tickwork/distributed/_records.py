"""What crosses the store, as typed records, and the checks that every value read is put through.

Everything read from the store is input: another client (a second job on the same store, a tool,
a hostile peer) may have written any bytes under tickwork's keys. Each reader here parses one
value and either returns a record whose every field has the right type and range, or raises
:class:`~._errors.StoreRecordError` naming the key, the store and the rule broken. Nothing read
from the store is trusted beyond what these functions check.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, final

from ._errors import StoreRecordError

__all__ = [
    "MAX_PHASE",
    "MAX_RECORD_BYTES",
    "Beat",
    "Commit",
    "Dead",
    "Entry",
    "Left",
    "Origin",
    "PeerInfo",
    "Spe",
    "StallAnswer",
    "Stalled",
    "Stop",
    "encode",
    "encode_origin",
    "parse_beat",
    "parse_bell",
    "parse_commit",
    "parse_entry",
    "parse_peer",
    "parse_stall_answer",
]

MAX_RECORD_BYTES = 256 * 1024
"""The largest value tickwork reads (an error record is at most ~41 kB of text)."""

MAX_STEP = 2**63 - 1
MAX_PHASE = 64
"""The longest phase name (``Coordinator.phase``), in characters."""
_SIGNAL_NAME = re.compile(r"SIG[A-Z0-9]{1,12}")
_MAX_TEXT = 64 * 1024


@final
@dataclass(frozen=True, kw_only=True)
class Origin:
    """Who posted an entry: its rank, host, process id and the rank's rendezvous nonce."""

    rank: int
    host: str
    pid: int
    nonce: str


@final
@dataclass(frozen=True, kw_only=True)
class Stop:
    """A stop request. ``error``: the reported exception's record (see ``_errors.error_record``);
    ``signal``: the signal's name when a signal caused it."""

    origin: Origin
    error: dict[str, Any] | None = None
    signal: str | None = None


@final
@dataclass(frozen=True, kw_only=True)
class Dead:
    """``rank`` sent no heartbeat for ``silent_for`` seconds (seen by ``origin``)."""

    origin: Origin
    rank: int
    silent_for: float


@final
@dataclass(frozen=True, kw_only=True)
class Left:
    """``origin`` closed its Coordinator normally."""

    origin: Origin


@final
@dataclass(frozen=True, kw_only=True)
class Spe:
    """A new steps-per-execution ``value``, proposed by ``origin``."""

    origin: Origin
    value: int


@final
@dataclass(frozen=True, kw_only=True)
class Stalled:
    """``origin`` found the job stalled: every rank writes its report (see ``_stall``)."""

    origin: Origin
    rank: int
    seconds: float
    timeout: float


@final
@dataclass(frozen=True, kw_only=True)
class StallAnswer:
    """A rank's part of a stall report: its step and its main thread's innermost frames."""

    step: int | None
    stack: tuple[str, ...]


Entry = Stop | Dead | Left | Spe | Stalled


@final
@dataclass(frozen=True, kw_only=True)
class PeerInfo:
    """What a rank writes at the rendezvous."""

    host: str
    pid: int
    world_size: int
    nonce: str


@final
@dataclass(frozen=True, kw_only=True)
class Beat:
    """One heartbeat: a counter that moves, the step the rank last passed (None: none yet) and
    the first step it passed (so that a peer knows a step was completed even when every step
    so far fell between two of its reads)."""

    count: int
    step: int | None
    first: int | None = None
    busy_ms: int | None = None  # the main thread's busy milliseconds so far (see _pace)
    phase: str | None = None  # the phase the rank is in (Coordinator.phase), None outside any


@final
@dataclass(frozen=True, kw_only=True)
class Commit:
    """A rank's answer in an agreement: the last step it had passed when it learned of the
    entry (None: it tracks no steps), tagged with its rendezvous nonce."""

    step: int | None
    nonce: str


def encode(record: Entry | PeerInfo | Beat | Commit | StallAnswer) -> str:
    """The JSON text of a record (compact; what the parsers below accept)."""
    if isinstance(record, StallAnswer):
        data: dict[str, Any] = {"step": record.step, "stack": list(record.stack)}
    elif isinstance(record, PeerInfo):
        data = {
            "host": record.host,
            "pid": record.pid,
            "world_size": record.world_size,
            "nonce": record.nonce,
        }
    elif isinstance(record, Beat):
        data = {"n": record.count, "step": record.step}
        if record.first is not None:
            data["first"] = record.first
        if record.busy_ms is not None:
            data["busy"] = record.busy_ms
        if record.phase is not None:
            data["phase"] = record.phase
    elif isinstance(record, Commit):
        data = {"step": record.step, "nonce": record.nonce}
    else:
        o = record.origin
        data = {"rank": o.rank, "host": o.host, "pid": o.pid, "nonce": o.nonce}
        if isinstance(record, Stop):
            data.update(kind="stop", error=record.error, signal=record.signal)
        elif isinstance(record, Dead):
            data.update(kind="dead", dead=record.rank, silent_for=record.silent_for)
        elif isinstance(record, Left):
            data["kind"] = "left"
        elif isinstance(record, Stalled):
            data.update(
                kind="stall", stalled=record.rank, seconds=record.seconds, timeout=record.timeout
            )
        else:
            data.update(kind="spe", value=record.value)
    return json.dumps(data, separators=(",", ":"))


class _Reader:
    """Field checks for one value; every failure names the key and the store."""

    def __init__(self, raw: str | None, key: str, store: str, what: str) -> None:
        self.key = key
        self.store = store
        if raw is None:
            raise self.fail(f"{what} is missing")
        if len(raw) > MAX_RECORD_BYTES:
            raise self.fail(
                f"{what} must be at most {MAX_RECORD_BYTES} bytes; got {len(raw)} bytes"
            )
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise self.fail(f"{what} must be JSON; got {_clip(raw)} ({e})") from None
        if not isinstance(data, dict):
            raise self.fail(f"{what} must be a JSON object; got {_clip(raw)}")
        self.data: dict[str, Any] = data

    def fail(self, reason: str) -> StoreRecordError:
        return StoreRecordError(self.key, self.store, reason)

    def integer(self, name: str, low: int, high: int, *, optional: bool = False) -> Any:
        value = self.data.get(name)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(f"'{name}' must be an int in [{low}, {high}]; got {_clip(value)}")
        return value

    def text(self, name: str, limit: int = 256, *, optional: bool = False) -> Any:
        value = self.data.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise self.fail(
                f"'{name}' must be a str of at most {limit} characters; got {_clip(value)}"
            )
        return value

    def origin(self, world: int) -> Origin:
        return Origin(
            rank=self.integer("rank", 0, world - 1),
            host=self.text("host"),
            pid=self.integer("pid", 0, 2**31),
            nonce=self.text("nonce", 64),
        )


def parse_entry(raw: str | None, key: str, store: str, world: int) -> Entry:
    """The event-log entry at ``key``, checked (see the module docs)."""
    r = _Reader(raw, key, store, "an event-log entry")
    kind = r.data.get("kind")
    origin = r.origin(world)
    if kind == "stop":
        signal = r.text("signal", 16, optional=True)
        if signal is not None and not _SIGNAL_NAME.fullmatch(signal):
            raise r.fail(f"'signal' must be a signal's name (SIGTERM, ...); got {_clip(signal)}")
        return Stop(origin=origin, error=_error_record(r, world), signal=signal)
    if kind == "dead":
        return Dead(
            origin=origin,
            rank=r.integer("dead", 0, world - 1),
            silent_for=_seconds(r, "silent_for"),
        )
    if kind == "left":
        return Left(origin=origin)
    if kind == "spe":
        return Spe(origin=origin, value=r.integer("value", 1, 2**31))
    if kind == "stall":
        return Stalled(
            origin=origin,
            rank=r.integer("stalled", 0, world - 1),
            seconds=_seconds(r, "seconds"),
            timeout=_seconds(r, "timeout"),
        )
    raise r.fail(f"'kind' must be one of 'stop', 'dead', 'left', 'spe', 'stall'; got {_clip(kind)}")


def _seconds(r: _Reader, name: str) -> float:
    value = r.data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise r.fail(f"'{name}' must be a number of seconds; got {_clip(value)}")
    if not (math.isfinite(value) and 0 <= value <= 10**9):
        raise r.fail(f"'{name}' must be a finite number in [0, 1e9]; got {value!r}")
    return float(value)


def parse_stall_answer(raw: str | None, key: str, store: str) -> StallAnswer:
    """A rank's part of a stall report at ``key``, checked."""
    r = _Reader(raw, key, store, "a stall answer")
    stack = r.data.get("stack")
    if (
        not isinstance(stack, list)
        or len(stack) > 64
        or not all(isinstance(f, str) and len(f) <= 512 for f in stack)
    ):
        raise r.fail(f"'stack' must be a list of at most 64 short strings; got {_clip(stack)}")
    return StallAnswer(step=r.integer("step", -1, MAX_STEP, optional=True), stack=tuple(stack))


def _error_record(r: _Reader, world: int) -> dict[str, Any] | None:
    error = r.data.get("error")
    if error is None:
        return None
    if not isinstance(error, dict):
        raise r.fail(f"'error' must be null or an object; got {_clip(error)}")
    inner = _Reader(json.dumps(error), r.key, r.store, "'error'")
    return {
        "type": inner.text("type", 512),
        "message": inner.text("message", _MAX_TEXT),
        "rank": inner.integer("rank", -1, world - 1),
        "host": inner.text("host"),
        "pid": inner.integer("pid", -1, 2**31),
        "traceback": inner.text("traceback", _MAX_TEXT),
    }


def encode_origin(origin: Origin) -> str:
    """The JSON text of who rang a bell (see :mod:`._watcher`)."""
    data = {"rank": origin.rank, "host": origin.host, "pid": origin.pid, "nonce": origin.nonce}
    return json.dumps(data, separators=(",", ":"))


def parse_bell(raw: str | None, key: str, store: str, world: int) -> Origin:
    """Who rang the bell at ``key``, checked."""
    return _Reader(raw, key, store, "a bell").origin(world)


def parse_peer(raw: str | None, key: str, store: str) -> PeerInfo:
    """A rank's rendezvous record at ``key``, checked."""
    r = _Reader(raw, key, store, "a rendezvous record")
    return PeerInfo(
        host=r.text("host"),
        pid=r.integer("pid", 0, 2**31),
        world_size=r.integer("world_size", 1, 2**20),
        nonce=r.text("nonce", 64),
    )


def parse_beat(raw: str | None, key: str, store: str) -> Beat:
    """A heartbeat at ``key``, checked."""
    r = _Reader(raw, key, store, "a heartbeat")
    return Beat(
        count=r.integer("n", 0, MAX_STEP),
        step=r.integer("step", -1, MAX_STEP, optional=True),
        first=r.integer("first", -1, MAX_STEP, optional=True),
        busy_ms=r.integer("busy", 0, MAX_STEP, optional=True),
        phase=r.text("phase", MAX_PHASE, optional=True),
    )


def parse_commit(raw: str | None, key: str, store: str, nonce: str) -> Commit:
    """An agreement answer at ``key`` that must carry ``nonce`` (its rank's), checked: a value
    that rank did not write never becomes a stop step."""
    r = _Reader(raw, key, store, "an agreement answer")
    commit = Commit(step=r.integer("step", -1, MAX_STEP, optional=True), nonce=r.text("nonce", 64))
    if commit.nonce != nonce:
        raise r.fail(
            f"the answer was not written by its rank (nonce {_clip(commit.nonce)}, the rank's "
            f"is {nonce!r}): another client writes under tickwork's keys"
        )
    return commit


def _clip(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
