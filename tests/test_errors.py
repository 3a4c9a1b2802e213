"""How the failures of a repeating callback are logged: a pure policy, no thread."""

from __future__ import annotations

import logging

import pytest

from tickwork._errors import (
    FULL_LOGS,
    SUMMARY_SECONDS,
    LogKind,
    LogThrottle,
    log_kind,
    summary_rule,
)
from tickwork.testing import FakeClock


@pytest.mark.parametrize("count", range(1, FULL_LOGS + 1))
def test_the_first_failures_are_logged_in_full(count: int) -> None:
    """Failures 1..5 get their traceback, however close together."""
    assert log_kind(count, 0.0, 0.0) is LogKind.FULL


def test_then_quiet_until_a_power_of_ten_or_a_minute() -> None:
    """After the first five: quiet while the last line is recent, a summary at 10, 100, 1000
    and whenever SUMMARY_SECONDS have passed since the last line."""
    assert log_kind(6, 1.0, 0.0) is LogKind.QUIET
    assert log_kind(9, 1.0, 0.0) is LogKind.QUIET
    for count in (10, 100, 1000, 10**6):
        assert log_kind(count, 1.0, 0.0) is LogKind.SUMMARY
    assert log_kind(11, 1.0, 0.0) is LogKind.QUIET
    assert log_kind(110, 1.0, 0.0) is LogKind.QUIET
    assert log_kind(7, SUMMARY_SECONDS, 0.0) is LogKind.SUMMARY
    assert log_kind(7, SUMMARY_SECONDS - 0.5, 0.0) is LogKind.QUIET
    assert log_kind(7, 0.0, None) is LogKind.SUMMARY


class TestTheLogSaysWhatItDoes:
    """The line that announces the summaries states the rule the throttle then follows."""

    def _drive(
        self, clock: FakeClock, failures: int, period: float
    ) -> list[tuple[int, float, logging.LogRecord]]:
        """A callback failing every ``period`` clock seconds, ``failures`` times: the lines
        logged, with the failure count and the clock time of each."""
        logger = logging.getLogger("tickwork.tests.throttle")
        lines: list[tuple[int, float, logging.LogRecord]] = []
        count = 0

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append((count, clock.now(), record))

        handler = Collect()
        logger.addHandler(handler)
        logger.propagate = False
        try:
            throttle = LogThrottle(logger, "on_interval()")
            error = ValueError("boom")
            for count in range(1, failures + 1):
                throttle.failed("owner", error, count, clock.now(), "going on")
                clock.advance(period)
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
        return lines

    def test_the_announcement_states_the_rule(self) -> None:
        """The last full line says which summary lines come: the 10th, 100th, 1000th failure
        and otherwise at most one every SUMMARY_SECONDS."""
        lines = self._drive(FakeClock(), FULL_LOGS, 0.001)
        assert len(lines) == FULL_LOGS
        last = lines[-1][2].getMessage()
        assert summary_rule() in last
        assert "10th, 100th, 1000th" in summary_rule()
        assert f"at most one line every {SUMMARY_SECONDS:g} s" in summary_rule()

    def test_failing_every_millisecond_gives_the_lines_announced(self) -> None:
        """A callback failing every millisecond for 130 s: five lines in full, then summaries at
        the 10th, 100th, 1000th and 10000th failure (within the first 10 s, as announced), then
        one a minute at most until the next power of ten: at 70 s, then 100,000 at 100 s."""
        clock = FakeClock()
        lines = self._drive(clock, 130_000, 0.001)
        counts = [count for count, _, _ in lines]
        assert counts[:9] == [1, 2, 3, 4, 5, 10, 100, 1000, 10_000]
        assert counts[10:] == [100_000]
        assert 70_000 <= counts[9] <= 70_001  # 60 s after the 10,000th (float sums of 1 ms)
        times = [when for _, when, _ in lines]
        summaries = lines[FULL_LOGS:]
        for (count, when, _), before in zip(summaries, times[FULL_LOGS - 1 :], strict=False):
            power_of_ten = str(count).rstrip("0") == "1"
            assert power_of_ten or when - before >= SUMMARY_SECONDS, (count, when, before)
        assert all(record.exc_info is None for _, _, record in summaries)
        assert "has failed 1000 times" in summaries[2][2].getMessage()
