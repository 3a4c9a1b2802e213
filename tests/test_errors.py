"""How the failures of a repeating callback are logged: a pure policy, no thread."""

from __future__ import annotations

import pytest

from tickwork._errors import FULL_LOGS, SUMMARY_SECONDS, LogKind, log_kind


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
