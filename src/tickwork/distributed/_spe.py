"""One steps-per-execution for every rank: decided on one rank, applied everywhere at one step."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._tuning._spe import _to_int
from .._validate import check_int
from ._records import Spe
from ._replica import replica_of

if TYPE_CHECKING:
    from ._coordinator import Coordinator

__all__ = ["SharedStepsPerExecution"]


class SharedStepsPerExecution:
    """A steps-per-execution value shared by every rank of a :class:`Coordinator`.

    On the deciding rank (``decider``, default 0) it is the ``spe_variable`` of a
    :class:`tickwork.StepsPerExecutionTuner`: each ``assign(n)`` becomes an entry of the job's
    event log. Every rank (the decider too) asks :meth:`value_at` at the start of each call and
    gets the same value at the same step: a new value applies from the first call starting
    past the largest step any rank had reached when it learned of it (the same agreement as
    ``should_stop_at``). Every rank must call ``value_at`` with the same steps::

        spe = SharedStepsPerExecution(coord)
        if coord.rank == 0:
            StepsPerExecutionTuner(lambda: step, spe).start()
        while not coord.should_stop_at(step):
            n = spe.value_at(step)
            run_steps(n)            # collectives inside
            step += n

    Construct it on every rank with the same ``initial``, before any rank assigns.
    """

    def __init__(self, coord: Coordinator, initial: int = 1, *, decider: int = 0) -> None:
        self._initial = check_int("initial", initial, minimum=1)
        self._decider = check_int("decider", decider, minimum=0)
        if decider >= coord.world_size:
            raise ValueError(
                f"'decider' must be a rank < world_size={coord.world_size}; got {decider!r}"
            )
        self._coord = coord
        self._replica = replica = replica_of(coord)
        if replica.on_spe is not None:
            raise RuntimeError("this Coordinator already has a SharedStepsPerExecution")
        self._lock = threading.Lock()
        self._assigned = self._initial
        replica.on_spe = self._received
        replica.plan.initial_spe = self._initial
        replica.spe_value = self._initial

    @property
    def decider(self) -> int:
        """The rank whose tuner decides (the only one that may :meth:`assign`)."""
        return self._decider

    @property
    def value(self) -> int:
        """On the decider: the last value assigned; elsewhere: the last value received."""
        return self._assigned

    def numpy(self) -> int:
        """The current value, as :attr:`value` (for code written for a TensorFlow variable)."""
        return self._assigned

    def __int__(self) -> int:
        return self._assigned

    def assign(self, value: Any) -> None:
        """Propose ``value`` to every rank (only on the deciding rank)."""
        if self._coord.rank != self._decider:
            raise RuntimeError(
                f"only rank {self._decider} (the decider) may assign steps per execution; this is "
                f"rank {self._coord.rank}"
            )
        number = check_int("value", _to_int(value, "'value'"), minimum=1)
        with self._lock:
            if number == self._assigned:
                return
            self._assigned = number
        replica = self._replica
        replica.sender.enqueue(Spe(origin=replica.origin, value=number), None)

    def _received(self, value: int) -> None:
        if self._coord.rank != self._decider:
            self._assigned = value

    def value_at(self, step: int) -> int:
        """The steps per execution for the call that starts at ``step`` (same on every rank)."""
        return self._replica.agreement.spe_at(step)

    def __repr__(self) -> str:
        return f"SharedStepsPerExecution({self._assigned}, decider={self._decider})"
