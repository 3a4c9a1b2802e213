"""Is this checkpoint complete? The assessment of one candidate, and the record of each.

:func:`decide_file`, :func:`decide_directory` and :func:`decide_tensorflow` are pure: they turn
observations (the structure of files, from :mod:`._formats`; markers; names in the state file;
how long nothing has changed) into an :class:`Assessment`. :class:`Judge` gathers those
observations from storage (a stat, a few bytes at the start and end of a file, one marker
lookup, a walk of one checkpoint directory), keeps each candidate's assessment and knows which
ones are pending and when each is worth looking at again. It neither lists nor waits.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from .._clock import Clock
from .._errors import ErrorLog, LogThrottle
from ._checkpoint import Counters
from ._directory import Candidate, Directory, Update
from ._formats import FileCheck, Structure, check_file
from ._layouts import DCP_MARKER, Kind, Scheme, SortKey, dcp_scheme, looks_like_dcp
from ._storage import Entry, Storage

__all__ = [
    "Assessment",
    "Judge",
    "Status",
    "decide_directory",
    "decide_file",
    "decide_tensorflow",
]

logger = logging.getLogger(__name__)

# Files inside checkpoint directories whose structure is worth checking: every file the formats
# the follower knows need (JSON written in place by the Hugging Face Trainer, weights, pickled
# torch.distributed.checkpoint metadata).
_CHECKED_INSIDE = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".keras",
    ".h5",
    ".hdf5",
    ".json",
)


def _checked_inside(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(_CHECKED_INSIDE) or lowered.rsplit("/", 1)[-1] == DCP_MARKER


class Status(enum.Enum):
    UNKNOWN = "unknown"  # not assessed yet
    PENDING = "pending"  # present, not complete (yet)
    COMPLETE = "complete"
    BROKEN = "broken"  # can never be handed out as it is (corrupt, symlink loop)


@dataclass(frozen=True)
class Assessment:
    """An assessment. ``recheck_in``: for PENDING, seconds after which it is worth looking again
    even without a change (a settle period ending, a marker to poll for); None: on change only.
    ``whole``: its files are all written, only the commit is missing (a TensorFlow checkpoint
    not yet named in the state file); deleting it then loses a finished checkpoint."""

    status: Status
    reason: str
    recheck_in: float | None = None
    whole: bool = False


def decide_file(check: FileCheck, quiet_for: float | None, settle: float) -> Assessment:
    """A single-file checkpoint: complete when its structure says so; for formats that record
    nothing, when it has not changed for ``settle`` seconds (``quiet_for``: how long it has been
    unchanged, None when first seen just now)."""
    if check.structure is Structure.COMPLETE:
        return Assessment(Status.COMPLETE, check.reason)
    if check.structure is Structure.INCOMPLETE:
        return Assessment(Status.PENDING, check.reason)
    if check.structure is Structure.CORRUPT:
        return Assessment(Status.BROKEN, f"{check.format}: {check.reason}")
    return _settled(quiet_for, settle, check.reason)


def _settled(quiet_for: float | None, settle: float, what: str) -> Assessment:
    quiet = 0.0 if quiet_for is None else quiet_for
    if quiet >= settle:
        return Assessment(Status.COMPLETE, f"{what}; unchanged for {quiet:.3g} s")
    return Assessment(
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
) -> Assessment:
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
            return Assessment(Status.BROKEN, f"{check.format} file inside: {check.reason}")
    waiting = [c for c in files if c.structure is Structure.INCOMPLETE]
    if marker_present or (scheme.trust_rename and atomic_rename):
        if waiting:
            return Assessment(Status.PENDING, f"file inside incomplete: {waiting[0].reason}", 0.05)
        how = f"{scheme.marker} present" if marker_present else "renamed into place"
        return Assessment(Status.COMPLETE, how)
    if scheme.marker_required:
        return Assessment(Status.PENDING, f"waiting for {scheme.marker}", marker_poll)
    if waiting:
        return Assessment(
            Status.PENDING, f"file inside incomplete: {waiting[0].reason}", marker_poll
        )
    return _settled(quiet_for, settle, "directory")


def decide_tensorflow(
    *,
    has_index: bool,
    shards: Collection[tuple[int, int]],
    named: bool,
    newer_named: bool,
) -> Assessment:
    """A TensorFlow checkpoint (``<prefix>.index`` plus ``<prefix>.data-<i>-of-<n>``).

    Complete when all its files exist and the state file names it, or names a newer checkpoint
    (TensorFlow writes the state file after the checkpoint's files, one save after another, so a
    newer named checkpoint means this one was finished).

    It counts as ``whole`` (for deletions) once its index exists: TensorFlow writes the index
    after the data, so a pending one with an index is being deleted, not written.
    """
    if not has_index:
        return Assessment(Status.PENDING, "no .index file yet")
    counts = {n for _, n in shards}
    if len(counts) > 1:
        return Assessment(Status.BROKEN, f"data shards disagree on their count: {sorted(counts)}")
    if not counts:
        return Assessment(Status.PENDING, "no data shard yet", whole=True)
    total = counts.pop()
    missing = total - len({i for i, _ in shards if 0 <= i < total})
    if missing:
        return Assessment(Status.PENDING, f"{missing} of {total} data shards missing", whole=True)
    if named:
        return Assessment(Status.COMPLETE, "named in the state file, files present")
    if newer_named:
        return Assessment(Status.COMPLETE, "files present, a newer checkpoint is named")
    return Assessment(Status.PENDING, "files present, not yet named in the state file", whole=True)


@dataclass(eq=False)
class _Record:
    """What is known of one candidate's completeness."""

    status: Status = Status.UNKNOWN
    reason: str = ""
    recheck_at: float | None = None
    signature: object = None  # what was last seen of it (for settling)
    changed_at: float | None = None  # clock time the signature last changed
    reported: bool = False  # its rejection was logged
    gone: bool = False  # found missing while assessed; forgotten at the next round
    failed: bool = False  # the last assessment failed (an OSError): nothing was seen
    whole: bool = False  # its files were all written at some point (see Assessment.whole)
    # Files inside found whole, by name, with the signature they were whole with (not re-read).
    whole_files: dict[str, object] = field(default_factory=dict)


class Judge:
    """Assesses the candidates of a :class:`Directory` and keeps their records.

    Assessment is eager for candidates that changed after following started and lazy for the
    ones found at start (so a directory that already holds 10,000 checkpoints is not read whole).
    """

    def __init__(
        self,
        directory: Directory,
        *,
        settle: float,
        marker_poll: float,
        pending_recheck: float,
        clock: Clock,
        counters: Counters,
        errors: ErrorLog,
    ) -> None:
        self._directory = directory
        self._storage: Storage = directory.storage
        self._settle = settle
        self._marker_poll = marker_poll
        self._pending_recheck = pending_recheck
        self._clock = clock
        self._counters = counters
        self._errors = errors
        # A checkpoint failing to be examined at every look: in full first, then summaries.
        self._failures = 0
        self.error_log = LogThrottle(logger, "examining a checkpoint", level=logging.WARNING)
        self._records: dict[str, _Record] = {}
        self._dirty: set[str] = set()
        self._pending: set[str] = set()
        self._vanished: set[str] = set()

    def note(self, update: Update) -> None:
        """Take in what a change to the directory did (removed candidates are forgotten)."""
        for candidate, _counted in update.removed:
            self._records.pop(candidate.key, None)
            self._dirty.discard(candidate.key)
            self._pending.discard(candidate.key)
        for key in update.written:
            self._record(key).whole = True
        eager = self._directory.eager
        for key in update.touched:
            record = self._records.get(key)
            if eager or (record is not None and record.status is not Status.UNKNOWN):
                self._dirty.add(key)
        self._dirty.update(update.shrunk)
        self._dirty.update(update.named)
        newest = update.named_newest
        if newest is not None:  # only pending ones can change; the rest see it when assessed
            candidates = self._directory.candidates
            self._dirty.update(k for k in self._pending if candidates[k].order < newest)

    def take_vanished(self) -> set[str]:
        """The candidates found deleted while assessed (for :meth:`Directory.forget`)."""
        gone, self._vanished = self._vanished, set()
        return gone

    def process(self, *, recheck_pending: bool = False) -> None:
        """Assess every changed candidate and every pending one that is due (all pending ones
        with ``recheck_pending``)."""
        now = self._clock.now()
        for key in self._pending:
            due_at = self._records[key].recheck_at
            if recheck_pending or (due_at is not None and now >= due_at):
                self._dirty.add(key)
        candidates = self._directory.candidates
        while self._dirty:
            key = self._dirty.pop()
            if key in candidates:
                self._assess(candidates[key])

    def status(self, candidate: Candidate) -> Status:
        """The candidate's status, assessing it first if it was never assessed or changed."""
        record = self._record(candidate.key)
        if record.gone:
            return Status.PENDING
        if record.status is Status.UNKNOWN or candidate.key in self._dirty:
            self._dirty.discard(candidate.key)
            self._assess(candidate)
        return Status.PENDING if record.gone else record.status

    def look_again(self, candidate: Candidate) -> tuple[Status, float | None]:
        """Assess ``candidate`` afresh: its status and the clock time it was last seen to
        change. The time is None where nothing was seen: its layout's completeness does not
        watch for changes, the look failed, or it was deleted (a checkpoint being deleted is
        not one its writer left behind: its removal is counted when the listing drops it)."""
        self._dirty.discard(candidate.key)
        self._assess(candidate)
        record = self._record(candidate.key)
        if record.gone:
            return Status.PENDING, None
        return record.status, None if record.failed else record.changed_at

    def gone(self, key: str) -> bool:
        """Whether ``key`` was found deleted when last assessed (until the listing drops it)."""
        record = self._records.get(key)
        return record is not None and record.gone

    def passed_over(self, keys: Collection[str]) -> None:
        """``keys`` will not be handed out: stop looking at them again while pending."""
        self._pending.difference_update(keys)

    def known_status(self, key: str) -> Status:
        """The status last assessed (UNKNOWN when never), without assessing."""
        record = self._records.get(key)
        return Status.UNKNOWN if record is None else record.status

    def reason(self, key: str) -> str:
        """Why the candidate has the status it has (as last assessed)."""
        record = self._records.get(key)
        return "" if record is None else record.reason

    def whole(self, key: str) -> bool:
        record = self._records.get(key)
        return record is not None and record.whole

    def next_recheck(self) -> float | None:
        """The earliest time a pending candidate is due to be looked at again."""
        due = [t for k in self._pending if (t := self._records[k].recheck_at) is not None]
        return min(due) if due else None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _record(self, key: str) -> _Record:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record()
        return record

    def _assess(self, candidate: Candidate) -> None:
        scheme = self._directory.scheme
        assert scheme is not None
        record = self._record(candidate.key)
        record.failed = False
        try:
            try:
                found = self._look(candidate, record, scheme)
            except FileNotFoundError:  # deleted while being read, or a file inside it was
                if self._storage.stat(candidate.key) is not None:
                    raise
                found = None
        except OSError as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            self._failures += 1
            record.failed = True
            where = self._storage.join(candidate.key)
            self.error_log.failed(where, exc, self._failures, self._clock.now(), "will look again")
            found = Assessment(Status.PENDING, "error", self._pending_recheck)
        if found is None:  # deleted since it was listed; forgotten at the next round
            record.gone = True
            self._vanished.add(candidate.key)
            return
        record.whole = record.whole or found.whole or found.status is Status.COMPLETE
        record.status = found.status
        record.reason = found.reason
        if found.status is Status.PENDING:
            delay = self._pending_recheck if found.recheck_in is None else found.recheck_in
            record.recheck_at = self._clock.now() + max(0.0, delay)
            self._pending.add(candidate.key)
            return
        record.recheck_at = None
        self._pending.discard(candidate.key)
        if found.status is Status.BROKEN and not record.reported:
            record.reported = True
            self._counters.add(rejected=1)
            logger.warning(
                "%r is not a usable checkpoint and will not be handed out: %s",
                self._storage.join(candidate.key),
                found.reason,
            )

    def _look(self, candidate: Candidate, record: _Record, scheme: Scheme) -> Assessment | None:
        """The assessment of ``candidate`` from storage; None when it was deleted."""
        storage = self._storage
        if scheme.kind is Kind.TENSORFLOW:
            entries = self._directory.entries
            unreadable = [
                f"{name}: {entry.error}"
                for name in sorted(candidate.members)
                if (entry := entries.get(name)) is not None and entry.error is not None
            ]
            if unreadable:  # a symlink loop, a FIFO: the files cannot be what TF wrote
                return Assessment(Status.BROKEN, "; ".join(unreadable))
            claims = candidate.members.values()
            tf_names = self._directory.tf_names
            newest: SortKey | None = tf_names.max_named
            return decide_tensorflow(
                has_index=any(c.role == "index" for c in claims),
                shards=[c.shard for c in claims if c.shard is not None],
                named=candidate.key in tf_names.named,
                newer_named=newest is not None and candidate.order < newest,
            )
        entry = self._directory.entry_for(candidate.key)
        if entry is None:
            entry = storage.stat(candidate.key)
        if entry is None:
            return None
        if entry.error is not None:
            return Assessment(Status.BROKEN, entry.error)
        now = self._clock.now()
        if scheme.kind is Kind.FILE:
            check = _check(storage, candidate.key, entry.size)
            return decide_file(check, _quiet_for(record, entry.signature, now), self._settle)
        if scheme.dcp_possible:  # Orbax's names; DCP uses them too: look inside
            inside = storage.walk(candidate.key)
            if not inside:  # Orbax renames a full directory into place; DCP makes it first
                return Assessment(Status.PENDING, "empty directory", self._marker_poll)
            if looks_like_dcp(e.name for e in inside):
                assert scheme.regex is not None
                scheme = dcp_scheme(scheme.regex)
                self._directory.refine(scheme)
        return _assess_directory(
            candidate, record, scheme, storage, self._settle, self._marker_poll, now
        )


def _assess_directory(
    candidate: Candidate,
    record: _Record,
    scheme: Scheme,
    storage: Storage,
    settle: float,
    marker_poll: float,
    now: float,
) -> Assessment:
    name = candidate.key
    marker_present = scheme.marker is not None and storage.exists(f"{name}/{scheme.marker}")
    trusted = scheme.trust_rename and storage.atomic_rename
    files: list[Entry] = []
    checks: list[FileCheck] = []
    quiet: float | None = None
    if marker_present or not (trusted or scheme.marker_required):
        files = storage.walk(name)
        if scheme.check_files:
            checks = _check_inside(storage, record, files)
        quiet = _quiet_for(record, tuple((*e.signature, e.name) for e in files), now)
    else:  # waiting for its marker: what it holds is still watched for change (Queue's
        # "unchanged since a newer one appeared": its writer died or moved on)
        _quiet_for(record, tuple((*e.signature, e.name) for e in storage.walk(name)), now)
    return decide_directory(
        scheme,
        marker_present=marker_present,
        atomic_rename=storage.atomic_rename,
        files=checks,
        quiet_for=quiet,
        settle=settle,
        marker_poll=marker_poll,
    )


def _check_inside(storage: Storage, record: _Record, files: Sequence[Entry]) -> list[FileCheck]:
    """The checks of the checkable files inside a directory; a file found whole before and not
    changed since is not read again."""
    known = record.whole_files
    checks: list[FileCheck] = []
    for inner in files:
        if inner.size is None or inner.error is not None or not _checked_inside(inner.name):
            continue
        if known.get(inner.name) == inner.signature:
            continue
        check = _check(storage, inner.name, inner.size)
        if check.structure is Structure.COMPLETE:
            known[inner.name] = inner.signature
        else:
            known.pop(inner.name, None)
        checks.append(check)
    return checks


def _check(storage: Storage, relpath: str, size: int | None) -> FileCheck:
    def read_at(offset: int, length: int) -> bytes:
        return storage.read_at(relpath, offset, length)

    return check_file(relpath, size or 0, read_at)


def _quiet_for(record: _Record, signature: object, now: float) -> float | None:
    """How long the candidate has looked the same; None when it changed just now."""
    if record.changed_at is None or record.signature != signature:
        record.signature = signature
        record.changed_at = now
        return None
    return now - record.changed_at
