"""The errors a cross-rank Coordinator raises, and how an exception crosses the wire.

An exception is never pickled: what crosses the store is a JSON record of its type's qualified
name, ``str(exc)``, the formatted traceback text (at most :data:`MAX_TRACEBACK_CHARS`), and the
rank, host name and process id that raised it. Other ranks raise it as a :class:`RemoteError`.
"""

from __future__ import annotations

import os
import socket
import traceback
from typing import Any

__all__ = [
    "DistributedError",
    "FinalCheckpointError",
    "RankDiedError",
    "RemoteError",
    "StallError",
    "StoreRecordError",
    "StoreUnreachableError",
    "error_record",
]

MAX_TRACEBACK_CHARS = 32_000
MAX_MESSAGE_CHARS = 8_000


class DistributedError(RuntimeError):
    """Base of the errors tickwork.distributed raises."""


class RemoteError(DistributedError):
    """An exception reported on another rank, rebuilt from its JSON record.

    Attributes: ``type_name`` (qualified name of the original type), ``message`` (its ``str``),
    ``rank``, ``host``, ``pid`` and ``remote_traceback`` (the formatted traceback text).
    """

    def __init__(
        self,
        type_name: str,
        message: str,
        rank: int,
        host: str,
        pid: int,
        remote_traceback: str,
    ) -> None:
        self.type_name = type_name
        self.message = message
        self.rank = rank
        self.host = host
        self.pid = pid
        self.remote_traceback = remote_traceback
        text = f"{type_name}: {message} (raised on rank {rank}, host {host}, pid {pid})"
        if remote_traceback:
            text += f"\n\nTraceback on rank {rank}:\n{remote_traceback.rstrip()}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.type_name, self.message, self.rank, self.host, self.pid, self.remote_traceback),
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RemoteError:
        """Rebuild the error from the JSON record the failing rank wrote to the store."""
        return cls(
            str(record.get("type", "Exception")),
            str(record.get("message", "")),
            int(record.get("rank", -1)),
            str(record.get("host", "?")),
            int(record.get("pid", -1)),
            str(record.get("traceback", "")),
        )


class RankDiedError(DistributedError):
    """A rank stopped sending heartbeats for longer than the timeout (killed, frozen, lost)."""

    def __init__(self, rank: int, host: str, silent_for: float, timeout: float, by: int) -> None:
        self.rank = rank
        self.host = host
        self.silent_for = silent_for
        self.timeout = timeout
        self.by = by
        if by == rank:
            super().__init__(
                f"rank {rank} (host {host}, this process) could not send a heartbeat for "
                f"{silent_for:.1f} s (heartbeat_timeout={timeout:g} s): it was frozen (SIGSTOP, "
                "a suspended VM) or starved of the CPU, so its peers have declared it dead; the "
                "job cannot go on with it"
            )
            return
        super().__init__(
            f"rank {rank} (host {host}) sent no heartbeat for {silent_for:.1f} s "
            f"(heartbeat_timeout={timeout:g} s, noticed by rank {by}): it died, froze or lost "
            "the network; the job cannot go on without it"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.rank, self.host, self.silent_for, self.timeout, self.by))


class StallError(DistributedError):
    """The job made no progress for ``stall_timeout`` while every rank was alive.

    ``rank``: the rank that holds the job back (None when it could not be told); ``reason``: why
    that rank; ``seconds`` and ``timeout``: how long the job stood still, against what bound;
    ``report``: the path of this rank's report (stacks of all its threads), or None.
    """

    def __init__(
        self, rank: int | None, reason: str, seconds: float, timeout: float, report: str | None
    ) -> None:
        self.rank = rank
        self.reason = reason
        self.seconds = seconds
        self.timeout = timeout
        self.report = report
        who = "no rank could be named" if rank is None else f"rank {rank} holds it back"
        where = "" if report is None else f"; every thread's stack in {report}"
        super().__init__(
            f"the job made no progress for {seconds:.1f} s (stall_timeout={timeout:g} s): {who} "
            f"({reason}){where}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.rank, self.reason, self.seconds, self.timeout, self.report),
        )


class StoreUnreachableError(DistributedError):
    """The key-value store failed or stopped answering: no rank can be coordinated any more."""


class StoreRecordError(DistributedError):
    """A value under tickwork's keys is not one tickwork wrote: the wrong type, a field out of
    range, too large, or another rank's answer written by someone else. ``key``: where it was
    read; ``store``: the store's description; ``reason``: the rule it broke and the value."""

    def __init__(self, key: str, store: str, reason: str) -> None:
        self.key = key
        self.store = store
        self.reason = reason
        super().__init__(f"{key!r} on {store}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.store, self.reason))


class FinalCheckpointError(DistributedError):
    """The final checkpoint after a preemption overran its deadline, failed or was skipped."""


def _type_name(kind: type[BaseException]) -> str:
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def error_record(exc: BaseException, rank: int) -> dict[str, Any]:
    """The JSON-able record of ``exc`` (see module docs)."""
    if isinstance(exc, RemoteError):  # forwarded: keep where it came from
        return {
            "type": exc.type_name,
            "message": exc.message,
            "rank": exc.rank,
            "host": exc.host,
            "pid": exc.pid,
            "traceback": exc.remote_traceback,
        }
    kind = type(exc)
    try:
        message = str(exc)
    except Exception as e:  # a broken __str__ must not lose the report
        message = f"<str() failed: {type(e).__name__}>"
    text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return {
        "type": _type_name(kind),
        "message": message[:MAX_MESSAGE_CHARS],
        "rank": rank,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "traceback": text,
    }
