"""The follower's model of a checkpoint directory: entries, candidates and their completeness.

The tracker is fed entry names (from filesystem events) or whole listings (from polls), groups
entries into candidate checkpoints through the layout's scheme, assesses each candidate's
completeness (the decisions themselves live in :mod:`._policy`) and keeps the *open* candidates
(not yet handed out or passed over) sorted by step. It neither waits nor runs threads.

Assessment is eager for candidates that changed after start and lazy for the ones found at
start (so following a directory that already holds 10,000 checkpoints does not read them all).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable, Mapping

from .._clock import Clock
from .._errors import ErrorLog
from ._assess import Candidate, Settings, assess
from ._checkpoint import Checkpoint
from ._counters import Counters
from ._layouts import CheckpointPattern, Kind, Layout, Scheme, detect_scheme, scheme_for
from ._policy import SortKey, Status, Verdict, choose_next, classify_deletion, sort_key
from ._storage import Entry, Storage
from ._tfstate import StateFileError, TFNames

__all__ = ["Candidate", "Tracker"]

# How many keys of removed checkpoints are remembered, so that a deletion is counted once however
# many events name it.
_EPHEMERALS_KEPT = 4096

logger = logging.getLogger(__name__)


class Tracker:
    """Entries and candidates of one checkpoint directory (see the module docs)."""

    def __init__(
        self,
        storage: Storage,
        *,
        layout: Layout | CheckpointPattern,
        state_filename: str,
        settle: float,
        clock: Clock,
        counters: Counters,
        errors: ErrorLog,
        skip_to_latest: bool,
        floor: SortKey | None,
        pending_recheck: float,
        marker_poll: float,
    ) -> None:
        self.storage = storage
        self._state_filename = state_filename
        self._marker_required = storage.protocol in ("gs", "gcs")
        self.scheme: Scheme | None = None
        if layout is not Layout.AUTO:
            self.scheme = scheme_for(
                layout,
                state_filename=state_filename,
                commit_marker_required=self._marker_required,
            )
        self._settings = Settings(settle=settle, marker_poll=marker_poll)
        self._clock = clock
        self._counters = counters
        self._errors = errors
        self._skip_to_latest = skip_to_latest
        self._floor = floor
        self._pending_recheck = pending_recheck
        self.entries: dict[str, Entry] = {}
        self.candidates: dict[str, Candidate] = {}
        self.order: list[tuple[SortKey, str]] = []  # open candidates
        self._all: list[tuple[SortKey, str]] = []  # every candidate
        self._eager = False
        self._vanished: set[str] = set()
        self._ephemerals: dict[str, None] = {}  # keys of removed checkpoints (insertion order)
        self._member_of: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._pending: set[str] = set()
        self._state_dirty = False
        self.tf_names = TFNames()

    # -- feeding ----------------------------------------------------------------------------------

    def apply_listing(self, listing: Mapping[str, Entry]) -> bool:
        """Bring the model in line with a full listing; True when anything changed."""
        changed = [name for name in self.entries if name not in listing]
        for name, entry in listing.items():
            old = self.entries.get(name)
            remote_change = (
                self.storage.remote and old is not None and old.signature != entry.signature
            )
            if (
                old is None
                or old.is_dir != entry.is_dir
                or old.error != entry.error
                or remote_change
            ):
                changed.append(name)
        if self.scheme is not None and self.scheme.kind is Kind.TENSORFLOW:
            self._state_dirty = self._state_dirty or self._state_filename in listing
        self._update({name: listing.get(name) for name in changed})
        return bool(changed)

    def apply_changes(self, names: Iterable[str]) -> bool:
        """Look at the entries ``names`` again (they changed); True when any did."""
        updates = {name: self.storage.stat(name) for name in set(names)}
        self._update(updates)
        return bool(updates)

    def _update(self, updates: Mapping[str, Entry | None]) -> None:
        for name, entry in updates.items():
            if entry is None:
                self.entries.pop(name, None)
            else:
                self.entries[name] = entry
        if self.scheme is None:
            self.scheme = detect_scheme(
                ((n, e.is_dir) for n, e in updates.items() if e is not None),
                state_filename=self._state_filename,
                commit_marker_required=self._marker_required,
            )
            if self.scheme is None:
                return
            logger.info("checkpoint layout of %r: %s", self.storage.directory, self.scheme.layout)
            # Claim everything seen before the layout was known, and what just vanished.
            updates = {**self.entries, **updates}
        for name, entry in updates.items():
            self._touch(name, entry)

    def _touch(self, name: str, entry: Entry | None) -> None:
        scheme = self.scheme
        assert scheme is not None
        if scheme.kind is Kind.TENSORFLOW and name == self._state_filename:
            self._state_dirty = True
            return
        known = self._member_of.get(name)
        claim = None if entry is None else scheme.claim(name, entry.is_dir)
        if known is not None and (claim is None or claim.key != known):
            self._drop_member(name, known)
        if entry is None and known is None and self._eager:
            self._ephemeral(scheme, name)
        if claim is None:
            return
        candidate = self.candidates.get(claim.key)
        if candidate is None:
            candidate = Candidate(claim.key, claim.step, sort_key(claim.step, claim.key))
            self.candidates[claim.key] = candidate
            bisect.insort(self._all, (candidate.order, candidate.key))
            if self._floor is not None and candidate.order <= self._floor:
                candidate.is_open = False
            else:
                bisect.insort(self.order, (candidate.order, candidate.key))
        candidate.members[name] = claim
        self._member_of[name] = claim.key
        if candidate.status is not Status.UNKNOWN or self._eager:
            self._dirty.add(claim.key)

    def _ephemeral(self, scheme: Scheme, name: str) -> None:
        """An event named a checkpoint that was deleted before it could be looked at (saved and
        removed by max_to_keep between two looks): it is counted, once, like any deletion."""
        claim = scheme.claim(name, False) or scheme.claim(name, True)
        if claim is None or claim.role == "data":
            return
        known = self.candidates.get(claim.key)
        if known is not None:  # its index came and went: it was written, it is being deleted
            known.whole = known.whole or claim.key not in self._ephemerals
            return
        order = sort_key(claim.step, claim.key)
        if (self._floor is not None and order <= self._floor) or claim.key in self._ephemerals:
            return
        self._remember_removed(claim.key)
        newer = bool(self._all) and self._all[-1][0] > order
        if self._skip_to_latest and newer:
            self._counters.add(skipped=1)
            return
        self._counters.add(deleted_before_reached=1)
        logger.warning(
            "checkpoint %r (step %s) was deleted before it could be examined",
            self.storage.join(claim.key),
            claim.step,
        )

    def _remember_removed(self, key: str) -> None:
        self._ephemerals[key] = None
        if len(self._ephemerals) > _EPHEMERALS_KEPT:
            del self._ephemerals[next(iter(self._ephemerals))]

    def start_eager(self) -> None:
        """From now on candidates that change are assessed at once (see the module docs)."""
        self._eager = True

    def _drop_member(self, name: str, key: str) -> None:
        self._member_of.pop(name, None)
        candidate = self.candidates.get(key)
        if candidate is None:
            return
        candidate.members.pop(name, None)
        if candidate.members:
            self._dirty.add(key)
            return
        del self.candidates[key]
        del self._all[bisect.bisect_left(self._all, (candidate.order, key))]
        counted = key in self._ephemerals  # its deletion was counted when its index vanished
        self._remember_removed(key)  # later events naming it are not a new deletion
        self._dirty.discard(key)
        self._pending.discard(key)
        if not candidate.is_open:
            return
        index = bisect.bisect_left(self.order, (candidate.order, key))
        newer_open = index < len(self.order) - 1
        del self.order[index]
        verdict = classify_deletion(
            candidate.status,
            skip_to_latest=self._skip_to_latest,
            newer_open=newer_open,
            whole=candidate.whole,
        )
        if counted:
            return
        if verdict == "deleted":
            self._counters.add(deleted_before_reached=1)
            logger.warning(
                "checkpoint %r (step %s) was deleted before it was handed out",
                self.storage.join(key),
                candidate.step,
            )
        elif verdict == "skipped":
            self._counters.add(skipped=1)

    # -- the TensorFlow state file ----------------------------------------------------------------

    def _read_state(self) -> None:
        self._state_dirty = False
        raw = self.storage.read_bytes(self._state_filename)
        if raw is None:
            return
        names = self.tf_names
        before = names.max_named
        try:
            changed = names.update(raw, self.storage.directory, remote=self.storage.remote)
        except (StateFileError, UnicodeDecodeError) as exc:
            self._counters.add(rejected=1)
            logger.warning(
                "ignoring the unreadable state file %r: %s",
                self.storage.join(self._state_filename),
                exc,
                exc_info=True,
            )
            return
        if changed is None:
            return
        self._dirty.update(key for key in changed if key in self.candidates)
        newest = names.max_named
        if newest is not None and newest != before:
            # Only pending candidates can change; unassessed ones see it when assessed.
            self._dirty.update(k for k in self._pending if self.candidates[k].order < newest)

    # -- assessing --------------------------------------------------------------------------------

    def process(self, *, recheck_pending: bool = False) -> None:
        """Read the state file if it changed, then assess every changed candidate and every
        pending one that is due (all pending ones with ``recheck_pending``)."""
        self._drop_vanished()
        if self._state_dirty:
            self._guard(self._read_state, self._state_filename)
        now = self._clock.now()
        for key in self._pending:
            candidate = self.candidates[key]
            due = candidate.recheck_at is not None and now >= candidate.recheck_at
            if recheck_pending or due:
                self._dirty.add(key)
        while self._dirty:
            key = self._dirty.pop()
            if key in self.candidates:
                self._assess(self.candidates[key])

    def _drop_vanished(self) -> None:
        """Drop the candidates found deleted while assessed (not during choose_next's walk)."""
        if self._vanished:
            gone, self._vanished = self._vanished, set()
            self._update(dict.fromkeys(gone))

    def status(self, key: str) -> Status:
        """The candidate's status, assessing it first if it was never assessed or is dirty."""
        candidate = self.candidates[key]
        if candidate.gone:
            return Status.PENDING
        # A pending one is looked at again before a newer one is handed out: it may have
        # completed without an event (a file written inside a checkpoint directory).
        if candidate.status is Status.UNKNOWN or key in self._dirty or key in self._pending:
            self._dirty.discard(key)
            self._assess(candidate)
        return Status.PENDING if candidate.gone else candidate.status

    def next_recheck(self) -> float | None:
        """The earliest time a pending candidate is due to be looked at again."""
        times = [self.candidates[k].recheck_at for k in self._pending]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _guard(self, action: Callable[[], None], what: str) -> bool:
        try:
            action()
        except OSError as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            logger.warning(
                "error examining %r in %r; will look again: %s",
                what,
                self.storage.directory,
                exc,
                exc_info=True,
            )
            return False
        return True

    def _assess(self, candidate: Candidate) -> None:
        scheme = self.scheme
        assert scheme is not None
        verdicts: list[Verdict | None] = []

        def look() -> None:
            try:
                verdict = assess(
                    candidate,
                    scheme=scheme,
                    storage=self.storage,
                    listed=self.entries.get(candidate.key),
                    tf_names=self.tf_names,
                    settings=self._settings,
                    now=self._clock.now(),
                )
            except FileNotFoundError:  # deleted while being read, or a file inside it was
                if self.storage.stat(candidate.key) is not None:
                    raise
                verdict = None
            verdicts.append(verdict)

        if not self._guard(look, candidate.key):
            self._set(candidate, Verdict(Status.PENDING, "error", self._pending_recheck))
        elif verdicts[0] is None:  # deleted since it was listed; dropped at the next process()
            candidate.gone = True
            self._vanished.add(candidate.key)
        else:
            self._set(candidate, verdicts[0])

    def _set(self, candidate: Candidate, verdict: Verdict) -> None:
        candidate.whole = candidate.whole or verdict.whole or verdict.status is Status.COMPLETE
        candidate.status = verdict.status
        candidate.reason = verdict.reason
        if verdict.status is Status.PENDING:
            delay = self._pending_recheck if verdict.recheck_in is None else verdict.recheck_in
            candidate.recheck_at = self._clock.now() + max(0.0, delay)
            self._pending.add(candidate.key)
            return
        candidate.recheck_at = None
        self._pending.discard(candidate.key)
        if verdict.status is Status.BROKEN and not candidate.reported:
            candidate.reported = True
            self._counters.add(rejected=1)
            logger.warning(
                "%r is not a usable checkpoint and will not be handed out: %s",
                self.storage.join(candidate.key),
                verdict.reason,
            )

    # -- choosing ---------------------------------------------------------------------------------

    def choose(self, *, skip_to_latest: bool, high_water: SortKey | None) -> Candidate | None:
        """The next candidate to hand out (see :func:`._policy.choose_next`); the ones it passes
        over are closed and counted as skipped."""
        key, passed = choose_next(
            self.order, self.status, skip_to_latest=skip_to_latest, high_water=high_water
        )
        if key is None:
            self._drop_vanished()
            return None
        chosen = self.candidates[key]
        if passed:
            counted = sum(
                1 for k in passed if self.candidates[k].status in (Status.COMPLETE, Status.UNKNOWN)
            )
            for k in passed:
                self.candidates[k].is_open = False
                self._pending.discard(k)
            del self.order[: len(passed)]
            self._counters.add(skipped=counted)
        self.close(chosen)
        self._drop_vanished()
        return chosen

    def close(self, candidate: Candidate) -> None:
        """Take a candidate out of the open set (it was handed out)."""
        if not candidate.is_open:
            return
        candidate.is_open = False
        index = bisect.bisect_left(self.order, (candidate.order, candidate.key))
        if index < len(self.order) and self.order[index][1] == candidate.key:
            del self.order[index]

    def latest(self) -> Candidate | None:
        """The newest complete candidate, open or not; for TensorFlow, the one the state file's
        ``model_checkpoint_path`` names (when complete), as ``tf.train.latest_checkpoint``."""
        scheme = self.scheme
        if scheme is not None and scheme.kind is Kind.TENSORFLOW:
            found = self.candidates.get(self.tf_names.latest or "")
            if found is not None and self.status(found.key) is Status.COMPLETE:
                return found
            return None
        everything: list[tuple[SortKey, str]] = self._all
        found_key, _passed = choose_next(
            everything, self.status, skip_to_latest=True, high_water=None
        )
        if found_key is None:
            return None
        return self.candidates[found_key]

    def checkpoint(self, candidate: Candidate) -> Checkpoint:
        """The :class:`Checkpoint` a candidate is handed out as."""
        scheme = self.scheme
        assert scheme is not None
        join = self.storage.join
        if scheme.kind is Kind.TENSORFLOW:
            path = self.tf_names.named.get(candidate.key) or join(candidate.key)
            roles = candidate.members
            files = [join(n) for n in sorted(roles, key=lambda n: (roles[n].role != "index", n))]
        else:
            path = join(candidate.key)
            files = [path]
        return Checkpoint(path, step=candidate.step, layout=scheme.layout, files=files)

    def reset(self) -> None:
        """The directory is gone: every entry counts as deleted."""
        self._update(dict.fromkeys(self.entries))
