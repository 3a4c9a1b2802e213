"""Which checkpoint comes next: the open candidates in step order, and the choice.

:func:`choose_next` and :func:`classify_deletion` are pure. :class:`Queue` keeps the *open*
candidates (not yet handed out or passed over) sorted by step, chooses with the judge's
statuses (assessing lazily: only the candidates the choice looks at), closes what it hands out
or passes over, and counts what a deletion of an open candidate means.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from .._clock import Clock
from ._checkpoint import Counters
from ._completeness import Judge, Status
from ._directory import Candidate, Directory, Update
from ._layouts import Kind, SortKey

__all__ = ["Queue", "choose_next", "classify_deletion"]

logger = logging.getLogger(__name__)

_K = TypeVar("_K", bound=Hashable)

QUIET_BEFORE_NEWER = 1.0
"""Seconds an incomplete checkpoint must have been seen unchanged before a newer one appeared
to be passed over at once (the follower sees a change up to an event batch or a poll late; a
writer that died and restarted takes longer than this to save again)."""


class Queue:
    """The open candidates of a :class:`Directory`, ascending by step (see the module docs)."""

    def __init__(
        self,
        directory: Directory,
        judge: Judge,
        *,
        skip_to_latest: bool,
        floor: SortKey | None,
        counters: Counters,
        clock: Clock,
        abandon_secs: float,
    ) -> None:
        self._clock = clock
        self._abandon = abandon_secs
        self._blocked: tuple[str, float] | None = None  # key, since a newer one was complete
        self._directory = directory
        self._judge = judge
        self._skip_to_latest = skip_to_latest
        self._floor = floor
        self._counters = counters
        self._open: list[tuple[SortKey, str]] = []
        self._appeared: dict[str, float] = {}  # open key -> clock time it was first listed
        self._high_water: SortKey | None = floor

    def note(self, update: Update) -> None:
        """Open the candidates that appeared (above the resume floor) and count the open ones
        that were deleted (call before :meth:`Judge.note`, which forgets their statuses)."""
        for candidate, counted in update.removed:
            self._removed(candidate, counted)
        now = self._clock.now()
        for candidate in update.added:
            if self._floor is None or candidate.order > self._floor:
                bisect.insort(self._open, (candidate.order, candidate.key))
                self._appeared[candidate.key] = now

    def _removed(self, candidate: Candidate, counted: bool) -> None:
        index = bisect.bisect_left(self._open, (candidate.order, candidate.key))
        if index >= len(self._open) or self._open[index][1] != candidate.key:
            return  # not open: handed out or passed over already
        newer_open = index < len(self._open) - 1
        del self._open[index]
        self._appeared.pop(candidate.key, None)
        if counted:
            return
        status = self._judge.known_status(candidate.key)
        verdict = classify_deletion(
            status, skip_to_latest=self._skip_to_latest, newer_open=newer_open
        )
        if self._blocked is not None and self._blocked[0] == candidate.key:
            self._blocked = None
        if verdict == "deleted":
            self._counters.add(deleted_before_reached=1)
            logger.warning(
                "checkpoint %r (step %s) was deleted before it was handed out%s",
                self._directory.storage.join(candidate.key),
                candidate.step,
                " (while still pending)" if status is Status.PENDING else "",
            )
        elif verdict == "skipped":
            self._counters.add(skipped=1)

    def choose(self) -> Candidate | None:
        """The next candidate to hand out (see :func:`choose_next`), closed; the ones it passes
        over are closed too and counted as skipped."""
        candidates = self._directory.candidates
        key, passed = choose_next(
            self._open,
            lambda k: self._judge.status(candidates[k]),
            skip_to_latest=self._skip_to_latest,
            high_water=self._high_water,
        )
        if key is None:
            if self._note_blocked():
                return self.choose()
            return None
        self._blocked = None
        chosen = candidates[key]
        if passed:  # a pending one passed over will not be handed out either: skipped too
            known = self._judge.known_status
            counted = sum(1 for k in passed if known(k) is not Status.BROKEN)
            del self._open[: len(passed)]
            for k in passed:
                self._appeared.pop(k, None)
            self._judge.passed_over(passed)
            self._counters.add(skipped=counted)
        index = bisect.bisect_left(self._open, (chosen.order, key))
        if index < len(self._open) and self._open[index][1] == key:
            del self._open[index]
        self._appeared.pop(key, None)
        return chosen

    def _note_blocked(self) -> bool:
        """In step order, the oldest open checkpoint holds back the newer ones while pending. A
        writer killed mid-save leaves one that never completes, and a writer that has completed a
        newer one has evidently moved on. The pending one is passed over (logged, counted as
        rejected) and True is returned, so that the caller chooses again, when a newer one is
        complete and either the pending one had not changed for :data:`QUIET_BEFORE_NEWER` when
        that newer one appeared and has not since (a fresh look: at once), or the newer one has
        been complete for ``abandon_secs``
        (``FollowOptions.abandon_secs``: whatever the pending one does). True is also returned,
        passing nothing over, when the fresh look finds the pending one no longer pending. One
        the fresh look finds deleted is not passed over: a deletion is counted as such when the
        listing drops it."""
        if self._skip_to_latest or len(self._open) < 2:
            self._blocked = None
            return False
        known = self._judge.known_status
        head = next((k for _, k in self._open if known(k) is not Status.BROKEN), None)
        if head is None or known(head) is not Status.PENDING:
            self._blocked = None
            return False
        candidates = self._directory.candidates
        ready = next(
            (
                k
                for _, k in self._open
                if k != head and self._judge.status(candidates[k]) is Status.COMPLETE
            ),
            None,
        )
        if ready is None:
            self._blocked = None
            return False  # nothing newer is ready: keep waiting for this one
        now = self._clock.now()
        if self._blocked is None or self._blocked[0] != head:
            self._blocked = (head, now)
        _key, since = self._blocked
        status, changed = self._judge.look_again(candidates[head])
        if status is not Status.PENDING:
            self._blocked = None
            return True  # complete or broken after all: choose again, in order
        if self._judge.gone(head):
            return False  # being deleted (rotation): counted when the listing drops it
        appeared = self._appeared.get(ready)
        moved_on = (
            changed is not None
            and appeared is not None
            and changed <= appeared - QUIET_BEFORE_NEWER
        )
        if not moved_on and now - since < self._abandon:
            return False
        self._blocked = None
        index = next(i for i, (_, k) in enumerate(self._open) if k == head)
        del self._open[index]
        self._appeared.pop(head, None)
        self._judge.passed_over([head])
        self._counters.add(rejected=1)
        if moved_on:
            newer = self._directory.storage.join(ready)
            why = f"has not changed since the newer {newer!r} appeared"
        else:
            why = f"was still incomplete {now - since:.1f} s after a newer one was complete"
        logger.warning(
            "checkpoint %r %s; its writer is taken to have died mid-save or moved on: passed "
            "over (counted as rejected): %s",
            self._directory.storage.join(head),
            why,
            self._judge.reason(head),
        )
        return True

    def handed_out(self, candidate: Candidate) -> None:
        """Nothing at or below ``candidate`` is handed out from now on (``skip_to_latest``)."""
        if self._high_water is None or candidate.order > self._high_water:
            self._high_water = candidate.order

    def latest(self) -> Candidate | None:
        """The newest complete candidate, open or not; for TensorFlow, the one the state file's
        ``model_checkpoint_path`` names (when complete), as ``tf.train.latest_checkpoint``."""
        directory, judge = self._directory, self._judge
        scheme = directory.scheme
        if scheme is not None and scheme.kind is Kind.TENSORFLOW:
            found = directory.candidates.get(directory.tf_names.latest or "")
            if found is not None and judge.status(found) is Status.COMPLETE:
                return found
            return None
        candidates = directory.candidates
        key, _passed = choose_next(
            directory.every,
            lambda k: judge.status(candidates[k]),
            skip_to_latest=True,
            high_water=None,
        )
        return None if key is None else candidates[key]


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

    ``skip_to_latest=False``: the oldest open checkpoint, once it is complete; nothing is passed
    over, and nothing newer is handed out while an older one is pending (being written: order
    by step is a promise, so the consumer waits for it, or for its deletion). Broken ones
    (rejected, never handed out) do not hold back the rest. ``skip_to_latest=True``: the newest
    complete checkpoint above ``high_water`` (the last one handed out); every open checkpoint
    older than it is passed over.
    """
    if not skip_to_latest:
        for _, key in order:
            status = status_of(key)
            if status is Status.COMPLETE:
                return key, []
            if status is not Status.BROKEN:  # pending: nothing newer before it
                return None, []
        return None, []
    for index in range(len(order) - 1, -1, -1):
        position, key = order[index]
        if high_water is not None and position <= high_water:
            break
        if status_of(key) is Status.COMPLETE:
            return key, [k for _, k in order[:index]]
    return None, []


def classify_deletion(status: Status, *, skip_to_latest: bool, newer_open: bool) -> str | None:
    """What the deletion of an open (not yet handed out) checkpoint counts as.

    ``"deleted"`` (the consumer never got it), ``"skipped"`` (with ``skip_to_latest``, a newer
    one would have been handed out instead), or None for a broken one (counted as rejected
    already). A pending one counts too, whatever it was waiting for: a checkpoint the consumer
    was waiting for (or had not yet seen complete: the writer deletes finished checkpoints only)
    ends up yielded, skipped, deleted or rejected, always exactly one of them.
    """
    if status is Status.BROKEN:
        return None
    if skip_to_latest and newer_open:
        return "skipped"
    return "deleted"
