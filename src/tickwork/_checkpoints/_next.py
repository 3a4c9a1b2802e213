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

from ._checkpoint import Counters
from ._completeness import Judge, Status
from ._directory import Candidate, Directory, Update
from ._layouts import Kind, SortKey

__all__ = ["Queue", "choose_next", "classify_deletion"]

logger = logging.getLogger(__name__)

_K = TypeVar("_K", bound=Hashable)


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
    ) -> None:
        self._directory = directory
        self._judge = judge
        self._skip_to_latest = skip_to_latest
        self._floor = floor
        self._counters = counters
        self._open: list[tuple[SortKey, str]] = []
        self._high_water: SortKey | None = floor

    def note(self, update: Update) -> None:
        """Open the candidates that appeared (above the resume floor) and count the open ones
        that were deleted (call before :meth:`Judge.note`, which forgets their statuses)."""
        for candidate, counted in update.removed:
            self._removed(candidate, counted)
        for candidate in update.added:
            if self._floor is None or candidate.order > self._floor:
                bisect.insort(self._open, (candidate.order, candidate.key))

    def _removed(self, candidate: Candidate, counted: bool) -> None:
        index = bisect.bisect_left(self._open, (candidate.order, candidate.key))
        if index >= len(self._open) or self._open[index][1] != candidate.key:
            return  # not open: handed out or passed over already
        newer_open = index < len(self._open) - 1
        del self._open[index]
        if counted:
            return
        verdict = classify_deletion(
            self._judge.known_status(candidate.key),
            skip_to_latest=self._skip_to_latest,
            newer_open=newer_open,
            whole=self._judge.whole(candidate.key),
        )
        if verdict == "deleted":
            self._counters.add(deleted_before_reached=1)
            logger.warning(
                "checkpoint %r (step %s) was deleted before it was handed out",
                self._directory.storage.join(candidate.key),
                candidate.step,
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
            return None
        chosen = candidates[key]
        if passed:
            known = self._judge.known_status
            counted = sum(1 for k in passed if known(k) in (Status.COMPLETE, Status.UNKNOWN))
            del self._open[: len(passed)]
            self._judge.passed_over(passed)
            self._counters.add(skipped=counted)
        index = bisect.bisect_left(self._open, (chosen.order, key))
        if index < len(self._open) and self._open[index][1] == key:
            del self._open[index]
        return chosen

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
