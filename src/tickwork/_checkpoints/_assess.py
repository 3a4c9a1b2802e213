"""Assessing one candidate checkpoint: gather the facts from storage, let the policy decide.

The facts are cheap to gather and independent of how many checkpoints exist: a stat, a few
bytes at the start and end of a file, one marker lookup, or a walk of one checkpoint directory
(only while it waits to settle, or to check the weights inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._formats import FileCheck, check_file
from ._layouts import Claim, Kind, Scheme
from ._policy import (
    SortKey,
    Status,
    Verdict,
    decide_directory,
    decide_file,
    decide_tensorflow,
)
from ._storage import Entry, Storage
from ._tfstate import TFNames

__all__ = ["Candidate", "Settings", "assess"]

# Files inside checkpoint directories whose structure is worth checking.
_CHECKED_INSIDE = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".keras", ".h5", ".hdf5")


@dataclass(eq=False)
class Candidate:
    """One checkpoint as far as it has been seen."""

    key: str
    step: int | None
    order: SortKey
    members: dict[str, Claim] = field(default_factory=dict)
    status: Status = Status.UNKNOWN
    reason: str = ""
    is_open: bool = True  # not yet handed out or passed over
    recheck_at: float | None = None
    signature: object = None  # what was last seen of it (for settling)
    changed_at: float | None = None  # clock time the signature last changed
    reported: bool = False  # its rejection was logged
    gone: bool = False  # found missing while assessed; dropped at the tracker's next process()
    whole: bool = False  # its files were all written at some point (see Verdict.whole)


@dataclass(frozen=True)
class Settings:
    settle: float
    marker_poll: float


def assess(
    candidate: Candidate,
    *,
    scheme: Scheme,
    storage: Storage,
    listed: Entry | None,
    tf_names: TFNames,
    settings: Settings,
    now: float,
) -> Verdict | None:
    """The verdict on ``candidate``; None when it turns out to have been deleted.

    ``listed``: its entry from the last listing, used for remote storage (where the listing is
    fresh and a stat is a request); locally the entry is stat'ed again. Raises OSError when the
    storage fails (the tracker logs it and looks again later).
    """
    if scheme.kind is Kind.TENSORFLOW:
        claims = candidate.members.values()
        newest = tf_names.max_named
        return decide_tensorflow(
            has_index=any(c.role == "index" for c in claims),
            shards=[c.shard for c in claims if c.shard is not None],
            named=candidate.key in tf_names.named,
            newer_named=newest is not None and candidate.order < newest,
        )
    entry = listed if storage.remote else None
    if entry is None:
        entry = storage.stat(candidate.key)
    if entry is None:
        return None
    if entry.error is not None:
        return Verdict(Status.BROKEN, entry.error)
    if scheme.kind is Kind.FILE:
        check = _check(storage, candidate.key, entry.size)
        quiet = _quiet_for(candidate, entry.signature, now)
        return decide_file(check, quiet, settings.settle)
    return _assess_directory(candidate, scheme, storage, settings, now)


def _assess_directory(
    candidate: Candidate, scheme: Scheme, storage: Storage, settings: Settings, now: float
) -> Verdict:
    name = candidate.key
    marker_present = scheme.marker is not None and storage.exists(f"{name}/{scheme.marker}")
    trusted = scheme.trust_rename and storage.atomic_rename
    files: list[Entry] = []
    checks: list[FileCheck] = []
    quiet: float | None = None
    if marker_present or not (trusted or scheme.marker_required):
        files = storage.walk(name)
        if scheme.check_files:
            checks = [
                _check(storage, inner.name, inner.size)
                for inner in files
                if inner.name.lower().endswith(_CHECKED_INSIDE) and inner.size is not None
            ]
        quiet = _quiet_for(candidate, tuple((*e.signature, e.name) for e in files), now)
    return decide_directory(
        scheme,
        marker_present=marker_present,
        atomic_rename=storage.atomic_rename,
        files=checks,
        quiet_for=quiet,
        settle=settings.settle,
        marker_poll=settings.marker_poll,
    )


def _check(storage: Storage, relpath: str, size: int | None) -> FileCheck:
    def read_at(offset: int, length: int) -> bytes:
        return storage.read_at(relpath, offset, length)

    return check_file(relpath, size or 0, read_at)


def _quiet_for(candidate: Candidate, signature: object, now: float) -> float | None:
    """How long the candidate has looked the same; None when it changed just now."""
    if candidate.changed_at is None or candidate.signature != signature:
        candidate.signature = signature
        candidate.changed_at = now
        return None
    return now - candidate.changed_at
