"""The agreed step: every rank stops (or switches steps per execution) after the same step.

When a rank reads the first stop (or an spe entry) of the log, it answers with the last step it
had passed to ``should_stop_at`` (its *commit*), claiming ``ag/<index>/<rank>`` so that a key
someone else took shows, and reads every expected rank's answer (one blocked wait on all of them,
one read). Each answer is checked, its rank's nonce included: a value a rank did not write never
becomes a stop step. The step is the largest commit (:func:`._policy.agreed_step`).

It runs on the log reader's thread, so a rank blocked in a collective still answers and the
agreement cannot deadlock; a rank that dies meanwhile is dropped from the expected ranks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._errors import StoreRecordError
from ._policy import UNSET, agreed_step
from ._records import Commit, encode, parse_commit
from ._tracked import TrackedStore

if TYPE_CHECKING:
    from ._replica import Replica

__all__ = ["Agreement"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often a pending agreement looks for ranks that died meanwhile


class Agreement:
    """The agreements of one rank (see module docs)."""

    def __init__(self, replica: Replica) -> None:
        self._r = replica

    def _agree(self, kv: TrackedStore, index: int, mine: int | None) -> tuple[bool, int | None]:
        """Answer entry ``index`` with ``mine`` and read everyone's: (agreed, step)."""
        r = self._r
        key = r.keys.answer(index, r.rank)
        if not kv.claim(key, encode(Commit(step=mine, nonce=r.origin.nonce))):
            raise StoreRecordError(
                key,
                r.describe,
                f"rank {r.rank} could not answer: the key was already taken (another client "
                "writes under tickwork's keys)",
            )
        while True:
            with r.state:
                expected = r.log.expected_at(index, r.dead)
            names = [r.keys.answer(index, rank) for rank in expected]
            if kv.wait(names, POLL_SECONDS):
                break
            if r.fatal is not None or r.plan.stop_now:
                return False, None
        values = kv.get_many(names, present=True)
        commits = [
            parse_commit(raw, name, r.describe, r.peers.info[rank].nonce)
            for rank, name, raw in zip(expected, names, values, strict=True)
        ]
        return True, agreed_step([c.step for c in commits])

    def _agree_or_fail(
        self, kv: TrackedStore, index: int, mine: int | None
    ) -> tuple[bool, int | None]:
        """:meth:`_agree`, where a foreign answer stops the job (and is posted) instead."""
        try:
            return self._agree(kv, index, mine)
        except StoreRecordError as e:
            self._r.fail(e, post=True)
            return False, None

    def stop(self, kv: TrackedStore, index: int) -> None:
        """The first stop is entry ``index``: agree on the step every rank stops after."""
        r = self._r
        with r.state:
            if r.stop_commit is UNSET:
                r.stop_commit = r.position
            mine = r.stop_commit
        agreed, step = self._agree_or_fail(kv, index, mine)
        with r.state:
            if agreed:
                r.plan.stopping = True
                r.plan.stop_after = step
        r.stop_agreed.set()
        logger.debug("rank %d: stop agreed after step %r", r.rank, step)

    def spe(self, kv: TrackedStore, index: int, value: int) -> None:
        """Entry ``index`` brings steps per execution ``value``: agree where it applies."""
        r = self._r
        with r.state:
            r.spe_dirty = True
            r.spe_pending += 1
            r.spe_ready.clear()
            mine = r.position
        agreed, step = self._agree_or_fail(kv, index, mine)
        with r.state:
            if agreed:
                r.plan.switches.append((step, value))
            r.spe_pending -= 1
            if r.spe_pending == 0:
                r.spe_ready.set()
        if r.on_spe is not None:
            r.on_spe(value)

    def spe_at(self, step: int) -> int:
        """The steps per execution for the call that starts at ``step`` (main thread)."""
        r = self._r
        if r.spe_dirty:
            return self._spe_slow(step)
        r.position = step
        if r.spe_dirty:  # set by the watcher meanwhile (mypy cannot know)
            return self._spe_slow(step)  # type: ignore[unreachable]
        return r.spe_value

    def _spe_slow(self, step: int) -> int:
        r = self._r
        r.wait_agreed(r.spe_ready, "steps per execution")
        with r.state:
            value = r.plan.spe_at(step)
            if r.spe_pending == 0 and all(
                after is None or step > after for after, _ in r.plan.switches
            ):
                r.spe_value = value
                r.spe_dirty = False
            return value
