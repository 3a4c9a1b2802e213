"""The done marker: training tells the evaluator, wherever it runs, that it has ended, and how.

:func:`mark_training_done` writes a small JSON file into the checkpoint directory, after the last
checkpoint is on disk; a :class:`tickwork.SidecarEvaluator` given ``done_marker=`` (or
``tickwork follow --done-marker``) evaluates what is complete, then ends. :func:`read_training_end`
reads it back (a marker written by something else, an empty file say, reads as status
``unknown``); :func:`clear_done_marker` removes a stale one when training starts again.

Written atomically, so a reader never sees half a marker:

* a local directory (a path or ``file://``): a temporary file beside it (a dot name, which no
  layout follows), flushed and fsynced, renamed into place with ``os.replace``, and the directory
  fsynced;
* object stores through fsspec (``s3://``, ``gs://``, ``az://``, ``memory://``, ...): one
  ``pipe_file`` call, a single PUT, which an object store makes visible whole or not at all;
* other fsspec filesystems (``sftp://``, ``hdfs://``, ...): a temporary file beside it, then
  ``fs.mv``: atomic where the backend renames, a copy and a delete where it cannot.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._checkpoints._fsspec import FsspecStorage
from ._checkpoints._sidecar_policy import check_done_marker
from ._checkpoints._storage import LocalStorage, Storage, open_storage

__all__ = [
    "DEFAULT_DONE_MARKER",
    "TrainingEnd",
    "TrainingStatus",
    "clear_done_marker",
    "mark_training_done",
    "read_training_end",
]

logger = logging.getLogger(__name__)

DEFAULT_DONE_MARKER = "DONE"
"""The marker's file name when none is given (pass the same to ``done_marker=``)."""

_FORMAT = 1
# Where one PUT makes the whole object visible at once (or not at all).
_OBJECT_STORES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2", "memory"}
)
# The longest error message kept in a marker (a marker is a signal, not a log).
_MAX_MESSAGE = 4000


class TrainingStatus(str, enum.Enum):
    """How training ended: ``completed`` (ran to its end), ``failed`` (raised), ``stopped``
    (asked to stop early: a signal, a Coordinator, early stopping). ``unknown``: the marker was
    not written by tickwork (an empty file, say)."""

    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TrainingEnd:
    """What a done marker says. ``time`` is ISO 8601 in UTC; ``details`` holds what the writer
    added (the integrations record their final checkpoint there)."""

    status: TrainingStatus
    step: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    host: str | None = None
    pid: int | None = None
    time: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    rank: int | None = None  # the rank the error was raised on (distributed training)

    def describe(self) -> str:
        """One line for people: ``training failed at step 12 on host-a: ValueError: boom``
        (``on rank 1 (host-a)`` when the error came from a rank of a distributed job)."""
        if self.status is TrainingStatus.UNKNOWN:
            return "the done marker does not say how training ended"
        text = f"training {self.status.value}"
        if self.step is not None:
            text += f" at step {self.step}"
        if self.rank is not None:
            text += f" on rank {self.rank}"
            if self.host:
                text += f" ({self.host})"
        elif self.host:
            text += f" on {self.host}"
        if self.error_type:
            text += f": {self.error_type}"
            if self.error_message:
                text += f": {self.error_message}"
        return text

    def to_json(self) -> str:
        """The marker's text: a JSON object that :func:`read_training_end` reads back."""
        payload = {
            "format": _FORMAT,
            "status": self.status.value,
            "step": self.step,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "host": self.host,
            "pid": self.pid,
            "time": self.time,
            "details": dict(self.details),
        }
        if self.rank is not None:
            payload["rank"] = self.rank
        return json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingEnd:
        """Parse a marker; one not in tickwork's format reads as status ``unknown``."""
        try:
            payload = json.loads(data.decode("utf-8"))
        except ValueError:
            return cls(TrainingStatus.UNKNOWN)
        if not isinstance(payload, dict):
            return cls(TrainingStatus.UNKNOWN)
        try:
            status = TrainingStatus(payload.get("status"))
        except ValueError:
            status = TrainingStatus.UNKNOWN
        step = payload.get("step")
        pid = payload.get("pid")
        rank = payload.get("rank")
        details = payload.get("details")

        def text(key: str) -> str | None:
            value = payload.get(key)
            return value if isinstance(value, str) else None

        return cls(
            status,
            step=step if isinstance(step, int) and not isinstance(step, bool) else None,
            error_type=text("error_type"),
            error_message=text("error_message"),
            host=text("host"),
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            time=text("time"),
            details=details if isinstance(details, dict) else {},
            rank=rank if isinstance(rank, int) and not isinstance(rank, bool) else None,
        )


def _remote_origin(error: BaseException) -> tuple[str, str, str, int, int | None] | None:
    """(type, message, host, pid, rank) of an error raised on another rank, else None."""
    import sys

    errors = sys.modules.get("tickwork.distributed._errors")
    if errors is None or not isinstance(error, errors.RemoteError):
        return None
    rank = error.rank if error.rank >= 0 else None
    return error.type_name, error.message, error.host, error.pid, rank


def _status(status: object, error: BaseException | None) -> TrainingStatus:
    if status is None:
        return TrainingStatus.FAILED if error is not None else TrainingStatus.COMPLETED
    try:
        chosen = TrainingStatus(status)
    except ValueError:
        chosen = None
    if chosen is None or chosen is TrainingStatus.UNKNOWN:
        raise ValueError(
            f"'status' must be None, 'completed', 'failed' or 'stopped'; got {status!r}"
        )
    return chosen


def _step(step: object) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(
            f"'step' must be an int or None; got {step!r} of type {type(step).__name__}"
        )
    return int(step.__index__())  # numpy and torch integers too


def _name(name: object) -> str:
    if name is None:
        raise ValueError("'name' must be a file name inside checkpoint_dir (no '/'); got None")
    marker = check_done_marker(name)
    assert marker is not None
    return marker


def _open(
    checkpoint_dir: str | os.PathLike[str], storage_options: Mapping[str, Any] | None
) -> Storage:
    return open_storage(os.fspath(checkpoint_dir), storage_options)


def _write_local(directory: str, name: str, data: bytes) -> None:
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, name)
    temporary = os.path.join(directory, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; the rename is what matters
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse to fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _write_fsspec(storage: FsspecStorage, name: str, data: bytes) -> str:
    fs, final = storage.fs, f"{storage.root}/{name}"
    if storage.protocol in _OBJECT_STORES:
        fs.pipe_file(final, data)
        return "one PUT"
    temporary = f"{storage.root}/.{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fs.makedirs(storage.root, exist_ok=True)
    fs.pipe_file(temporary, data)
    fs.mv(temporary, final)
    return "temporary file and fs.mv"


def mark_training_done(
    checkpoint_dir: str | os.PathLike[str],
    status: TrainingStatus | str | None = None,
    *,
    error: BaseException | None = None,
    step: int | None = None,
    name: str = DEFAULT_DONE_MARKER,
    details: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    rank: int | None = None,
) -> TrainingEnd:
    """Write the done marker ``checkpoint_dir/name``: training has ended. Call it after the last
    checkpoint is on disk, on the process that saves.

    ``status`` defaults to ``failed`` when ``error`` is given, else ``completed``; ``error``'s type
    and message go into the marker (a :class:`tickwork.distributed.RemoteError`, an error raised
    on another rank, gives the original type, message, host, pid and rank). ``rank``: the rank
    that raised ``error`` in a distributed job. ``step`` is the last step trained.
    ``checkpoint_dir`` is a local path or an fsspec URL (``s3://bucket/run``, with
    ``storage_options`` as for the evaluator). The write is atomic (see the module docs); an
    existing marker is replaced.
    Returns what was written::

        try:
            train()
        except BaseException as exc:
            tickwork.mark_training_done(run_dir, error=exc, step=step)
            raise
        tickwork.mark_training_done(run_dir, step=step)
    """
    if error is not None and not isinstance(error, BaseException):
        raise TypeError(f"'error' must be an exception or None; got {error!r}")
    chosen = _status(status, error)
    marker = _name(name)
    if details is not None and not isinstance(details, Mapping):
        raise TypeError(f"'details' must be a mapping or None; got {details!r}")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise ValueError(f"'rank' must be an int >= 0 or None; got {rank!r}")
    error_type, message, host, pid = None, None, socket.gethostname(), os.getpid()
    if error is not None:
        error_type, message = type(error).__qualname__, str(error)
        remote = _remote_origin(error)
        if remote is not None:
            error_type, message, host, pid, rank = remote
    end = TrainingEnd(
        chosen,
        step=_step(step),
        error_type=error_type,
        error_message=None if message is None else message[:_MAX_MESSAGE],
        host=host,
        pid=pid,
        time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        details=dict(details or {}),
        rank=rank,
    )
    data = end.to_json().encode("utf-8")
    storage = _open(checkpoint_dir, storage_options)
    try:
        if isinstance(storage, LocalStorage):
            _write_local(storage.directory, marker, data)
            how = "os.replace"
        elif isinstance(storage, FsspecStorage):
            how = _write_fsspec(storage, marker, data)
        else:  # pragma: no cover - open_storage makes one of the two
            raise TypeError(f"cannot write a done marker to {storage!r}")
    finally:
        storage.close()
    logger.info("done marker %s written (%s): %s", storage.join(marker), how, end.describe())
    return end


def read_training_end(
    checkpoint_dir: str | os.PathLike[str],
    name: str = DEFAULT_DONE_MARKER,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> TrainingEnd | None:
    """What the done marker ``checkpoint_dir/name`` says; None while there is none."""
    marker = _name(name)
    storage = _open(checkpoint_dir, storage_options)
    try:
        data = storage.read_bytes(marker)
    finally:
        storage.close()
    return None if data is None else TrainingEnd.from_bytes(data)


def clear_done_marker(
    checkpoint_dir: str | os.PathLike[str],
    name: str = DEFAULT_DONE_MARKER,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> bool:
    """Remove a done marker left by an earlier run (call it when training starts, before an
    evaluator is started for this run). True when there was one."""
    marker = _name(name)
    storage = _open(checkpoint_dir, storage_options)
    try:
        if isinstance(storage, LocalStorage):
            try:
                os.unlink(storage.join(marker))
            except FileNotFoundError:
                return False
        elif isinstance(storage, FsspecStorage):
            full = f"{storage.root}/{marker}"
            if not storage.exists(marker):
                return False
            storage.fs.rm_file(full)
        else:  # pragma: no cover - open_storage makes one of the two
            raise TypeError(f"cannot remove a done marker from {storage!r}")
    finally:
        storage.close()
    logger.info("removed the done marker %s left by an earlier run", storage.join(marker))
    return True
