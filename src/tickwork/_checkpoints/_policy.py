"""The follower's decisions, as pure functions of what it has observed.

* Is a checkpoint complete?  :func:`decide_file`, :func:`decide_directory`,
  :func:`decide_tensorflow` turn observations (structure of files, markers, names in the state
  file, how long nothing has changed) into a :class:`Verdict`.
* Which checkpoint is handed out next?  :func:`choose_next`.
* What does a deletion count as?  :func:`classify_deletion`.
* How long until the next poll?  :func:`next_poll_interval`.

Nothing here touches a file, a thread or a clock, so each rule is tested by building its inputs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ._formats import FileCheck, Structure
from ._layouts import Scheme

__all__ = [
    "SortKey",
    "Status",
    "Verdict",
    "choose_next",
    "classify_deletion",
    "decide_directory",
    "decide_file",
    "decide_tensorflow",
    "next_poll_interval",
    "sort_key",
]

SortKey = tuple[int, str]
_K = TypeVar("_K", bound=Hashable)


def sort_key(step: int | None, key: str) -> SortKey:
    """Checkpoints are ordered by step, then by name; one without a step sorts first."""
    return (-1 if step is None else step, key)


class Status(enum.Enum):
    UNKNOWN = "unknown"  # not assessed yet
    PENDING = "pending"  # present, not complete (yet)
    COMPLETE = "complete"
    BROKEN = "broken"  # can never be handed out as it is (corrupt, symlink loop)


@dataclass(frozen=True)
class Verdict:
    """An assessment. ``recheck_in``: for PENDING, seconds after which it is worth looking again
    even without a change (a settle period ending, a marker to poll for); None: on change only.
    ``whole``: its files are all written, only the commit is missing (a TensorFlow checkpoint
    not yet named in the state file); deleting it then loses a finished checkpoint."""

    status: Status
    reason: str
    recheck_in: float | None = None
    whole: bool = False


def decide_file(check: FileCheck, quiet_for: float | None, settle: float) -> Verdict:
    """A single-file checkpoint: complete when its structure says so; for formats that record
    nothing, when it has not changed for ``settle`` seconds (``quiet_for``: how long it has been
    unchanged, None when first seen just now)."""
    if check.structure is Structure.COMPLETE:
        return Verdict(Status.COMPLETE, check.reason)
    if check.structure is Structure.INCOMPLETE:
        return Verdict(Status.PENDING, check.reason)
    if check.structure is Structure.CORRUPT:
        return Verdict(Status.BROKEN, f"{check.format}: {check.reason}")
    return _settled(quiet_for, settle, check.reason)


def _settled(quiet_for: float | None, settle: float, what: str) -> Verdict:
    quiet = 0.0 if quiet_for is None else quiet_for
    if quiet >= settle:
        return Verdict(Status.COMPLETE, f"{what}; unchanged for {quiet:.3g} s")
    return Verdict(
        Status.PENDING, f"{what}; waiting until unchanged for {settle:g} s", settle - quiet
    )


def decide_directory(
    scheme: Scheme,
    *,
    marker_present: bool,
    atomic_rename: bool,
    files: Sequence[FileCheck],
    quiet_for: float | None,
    settle: float,
    marker_poll: float,
) -> Verdict:
    """A checkpoint directory.

    Complete when its commit marker is there, or (Orbax, on a local filesystem where the writer
    renames the finished directory into place) as soon as it has its final name; a scheme that
    requires its marker waits for it (rechecked every ``marker_poll`` s, since the follower does
    not watch inside checkpoint directories). Otherwise once nothing in it has changed for
    ``settle`` seconds. Where the scheme checks files, every checkable file inside must be
    complete too (a corrupt one breaks the checkpoint).
    """
    for check in files:
        if check.structure is Structure.CORRUPT:
            return Verdict(Status.BROKEN, f"{check.format} file inside: {check.reason}")
    waiting = [c for c in files if c.structure is Structure.INCOMPLETE]
    if marker_present or (scheme.trust_rename and atomic_rename):
        if waiting:
            return Verdict(Status.PENDING, f"file inside incomplete: {waiting[0].reason}", 0.05)
        how = f"{scheme.marker} present" if marker_present else "renamed into place"
        return Verdict(Status.COMPLETE, how)
    if scheme.marker_required:
        return Verdict(Status.PENDING, f"waiting for {scheme.marker}", marker_poll)
    if waiting:
        return Verdict(Status.PENDING, f"file inside incomplete: {waiting[0].reason}", marker_poll)
    return _settled(quiet_for, settle, "directory")


def decide_tensorflow(
    *,
    has_index: bool,
    shards: Collection[tuple[int, int]],
    named: bool,
    newer_named: bool,
) -> Verdict:
    """A TensorFlow checkpoint (``<prefix>.index`` plus ``<prefix>.data-<i>-of-<n>``).

    Complete when all its files exist and the state file names it, or names a newer checkpoint
    (TensorFlow writes the state file after the checkpoint's files, one save after another, so a
    newer named checkpoint means this one was finished).

    It counts as ``whole`` (for deletions) once its index exists: TensorFlow writes the index
    after the data, so a pending one with an index is being deleted, not written.
    """
    if not has_index:
        return Verdict(Status.PENDING, "no .index file yet")
    counts = {n for _, n in shards}
    if len(counts) > 1:
        return Verdict(Status.BROKEN, f"data shards disagree on their count: {sorted(counts)}")
    if not counts:
        return Verdict(Status.PENDING, "no data shard yet", whole=True)
    total = counts.pop()
    missing = total - len({i for i, _ in shards if 0 <= i < total})
    if missing:
        return Verdict(Status.PENDING, f"{missing} of {total} data shards missing", whole=True)
    if named:
        return Verdict(Status.COMPLETE, "named in the state file, files present")
    if newer_named:
        return Verdict(Status.COMPLETE, "files present, a newer checkpoint is named")
    return Verdict(Status.PENDING, "files present, not yet named in the state file", whole=True)


def choose_next(
    order: Sequence[tuple[SortKey, _K]],
    status_of: Callable[[_K], Status],
    *,
    skip_to_latest: bool,
    high_water: SortKey | None,
) -> tuple[_K | None, list[_K]]:
    """The checkpoint to hand out next, and the ones it passes over.

    ``order``: the open checkpoints (not yet handed out or passed over), ascending by sort key.
    ``status_of`` may assess lazily; it is called only for the checkpoints looked at.

    ``skip_to_latest=False``: the first complete checkpoint in step order; nothing is passed
    over (a pending one does not hold back a complete newer one: it is handed out when it
    completes). ``skip_to_latest=True``: the newest complete checkpoint above ``high_water``
    (the last one handed out); every open checkpoint older than it is passed over.
    """
    if not skip_to_latest:
        for _, key in order:
            if status_of(key) is Status.COMPLETE:
                return key, []
        return None, []
    for index in range(len(order) - 1, -1, -1):
        position, key = order[index]
        if high_water is not None and position <= high_water:
            break
        if status_of(key) is Status.COMPLETE:
            return key, [k for _, k in order[:index]]
    return None, []


def classify_deletion(
    status: Status, *, skip_to_latest: bool, newer_open: bool, whole: bool = False
) -> str | None:
    """What the deletion of an open (not yet handed out) checkpoint counts as.

    ``"deleted"`` (it was due and the consumer never got it), ``"skipped"`` (with
    ``skip_to_latest``, a newer one would have been handed out instead), or None (it never was
    complete). A checkpoint not yet assessed counts as complete: it was listed with its final
    name; so does one that was ``whole`` (all written, not yet committed).
    """
    if status is Status.BROKEN or (status is Status.PENDING and not whole):
        return None
    if skip_to_latest and newer_open:
        return "skipped"
    return "deleted"


def next_poll_interval(
    current: float, *, base: float, maximum: float, changed: bool, factor: float = 2.0
) -> float:
    """Polling backs off while nothing changes (times ``factor``, up to ``maximum``) and returns
    to ``base`` as soon as something does."""
    if changed:
        return base
    return min(maximum, max(base, current * factor))
