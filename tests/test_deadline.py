"""run_until: one piece of work in its own thread, waited for until a deadline on the clock."""

from __future__ import annotations

import threading

from tickwork._deadline import Outcome, run_until
from tickwork.testing import FakeClock

REAL_WAIT = 30.0  # real seconds; generous, since a loaded machine may be slow to schedule


class TestRunUntil:
    def test_work_that_returns_in_time_gives_its_result(self, clock: FakeClock) -> None:
        """The result comes back, finished, in a thread named with the tickwork prefix."""
        names: list[str] = []

        def work() -> int:
            names.append(threading.current_thread().name)
            return 42

        outcome = run_until(work, deadline=clock.now() + 10, clock=clock, name="save")
        assert (outcome.finished, outcome.overran, outcome.result, outcome.error) == (
            True,
            False,
            42,
            None,
        )
        assert names == ["tickwork:save"]

    def test_work_that_raises_returns_the_error_unswallowed(self, clock: FakeClock) -> None:
        """The exception the work raised is handed back, the very object."""
        boom = ValueError("disk full")

        def work() -> None:
            raise boom

        outcome = run_until(work, deadline=clock.now() + 10, clock=clock, name="save")
        assert outcome.finished
        assert outcome.error is boom

    def test_an_overrun_sets_cancelled_and_leaves_the_thread(self, clock: FakeClock) -> None:
        """Past the deadline the caller goes on: cancelled is set, the thread still runs."""
        release = threading.Event()
        cancelled = threading.Event()
        result: list[Outcome] = []

        def waiter() -> None:
            result.append(
                run_until(
                    lambda: release.wait(REAL_WAIT),
                    deadline=clock.now() + 5,
                    clock=clock,
                    name="slow save",
                    cancelled=cancelled,
                )
            )

        caller = threading.Thread(target=waiter)
        caller.start()
        clock.wait_for_sleepers(1)
        clock.advance(5)
        caller.join(REAL_WAIT)
        outcome = result[0]
        assert outcome.overran
        assert cancelled.is_set()
        assert outcome.thread.is_alive()
        release.set()
        outcome.thread.join(REAL_WAIT)
        assert not outcome.thread.is_alive()
