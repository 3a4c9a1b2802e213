"""The framework-free parts every multi-step runner shares (tickwork.integrations._multistep)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import tickwork.integrations as integrations
from tickwork._tuning._spe import StepsPerExecution
from tickwork.integrations._multistep import (
    CompileLog,
    CompileRecord,
    InFlight,
    StepCount,
    as_spe_holder,
    check_max_steps,
    choose_spe,
    decompose,
    powers_of_two,
    take,
)


class TestPowersOfTwo:
    def test_up_to_and_including_the_largest_power_not_above_the_maximum(self) -> None:
        """powers_of_two(n) lists 1, 2, 4, ... up to the largest power of two <= n."""
        assert powers_of_two(1) == (1,)
        assert powers_of_two(8) == (1, 2, 4, 8)
        assert powers_of_two(100) == (1, 2, 4, 8, 16, 32, 64)

    @pytest.mark.parametrize("bad", [0, -4])
    def test_a_maximum_below_one_is_refused_with_the_argument_named(self, bad: int) -> None:
        """max_spe < 1 is a ValueError that names the argument, the rule and the value."""
        with pytest.raises(ValueError, match=rf"'max_spe' must be an int >= 1; got {bad}"):
            powers_of_two(bad)

    def test_a_float_maximum_is_refused(self) -> None:
        """A float max_spe is a TypeError, not silently truncated."""
        with pytest.raises(TypeError, match=r"'max_spe' must be an int >= 1; got 8\.0"):
            powers_of_two(8.0)  # type: ignore[arg-type]


class TestDecompose:
    @pytest.mark.parametrize(
        ("n", "calls"),
        [(0, []), (1, [1]), (8, [8]), (13, [8, 4, 1]), (20, [8, 8, 4]), (7, [4, 2, 1])],
    )
    def test_largest_calls_first(self, n: int, calls: list[int]) -> None:
        """n steps split into calls of the compiled sizes, largest first (binary expansion)."""
        assert decompose(n, (1, 2, 4, 8)) == calls

    def test_every_n_sums_back_and_uses_at_most_popcount_calls_below_twice_the_maximum(
        self,
    ) -> None:
        """For every n < 2*max the calls add up to n and number popcount(n)."""
        sizes = powers_of_two(64)
        for n in range(128):
            calls = decompose(n, sizes)
            assert sum(calls) == n
            assert len(calls) == bin(n).count("1")

    def test_sizes_without_one_are_refused(self) -> None:
        """Without a size of 1 some n cannot be made: that is a ValueError naming 'sizes'."""
        with pytest.raises(ValueError, match="'sizes' must include 1"):
            decompose(3, (2, 4))


class TestChooseSpe:
    def test_smallest_within_tolerance_of_the_best(self) -> None:
        """The smallest spe within the tolerance of the best throughput wins, not the fastest."""
        assert choose_spe({1: 600.0, 8: 1150.0, 64: 1200.0}, 0.05) == 8
        assert choose_spe({1: 600.0, 8: 1100.0, 64: 1200.0}, 0.05) == 64

    def test_zero_tolerance_takes_the_best(self) -> None:
        """With tolerance 0 the fastest spe is chosen (the smallest among equals)."""
        assert choose_spe({1: 5.0, 2: 9.0, 4: 9.0, 8: 8.0}, 0.0) == 2

    @pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
    def test_tolerance_outside_zero_one_is_refused(self, bad: float) -> None:
        """tolerance must be a finite number in [0, 1)."""
        with pytest.raises(ValueError, match="'tolerance' must be a finite number"):
            choose_spe({1: 1.0}, bad)

    def test_empty_and_non_finite_measurements_are_refused(self) -> None:
        """No measurement, or a NaN one, is a ValueError saying which."""
        with pytest.raises(ValueError, match="at least one measurement"):
            choose_spe({}, 0.05)
        with pytest.raises(ValueError, match="throughput of spe 2 must be a finite number"):
            choose_spe({1: 1.0, 2: float("nan")}, 0.05)


class TestCompileLog:
    def test_records_totals_and_compiled_values(self) -> None:
        """The log keeps every record and sums seconds per spe (a new shape is a new record)."""
        log = CompileLog()
        log.add(CompileRecord(4, 0.5, 10.0, "a"))
        log.add(CompileRecord(1, 0.25, 11.0, "a"))
        log.add(CompileRecord(4, 0.5, 12.0, "b"))
        assert [r.spe for r in log.records] == [4, 1, 4]
        assert log.compiled() == (1, 4)
        assert log.seconds_by_spe() == {4: 1.0, 1: 0.25}
        assert log.total_seconds() == 1.25


class Token:
    def __init__(self) -> None:
        self.done = False
        self.waited = False


class TestInFlight:
    @staticmethod
    def _make(limit: int) -> tuple[InFlight[Token], StepCount]:
        count = StepCount()

        def wait(token: Token) -> None:
            token.waited = token.done = True

        return InFlight(limit, count, ready=lambda t: t.done, wait=wait), count

    def test_waits_only_beyond_the_limit(self) -> None:
        """Unfinished calls queue up to the limit; the next launch waits for the oldest."""
        calls, count = self._make(2)
        tokens = [Token() for _ in range(3)]
        calls.launched(tokens[0], 4)
        calls.launched(tokens[1], 2)
        assert (len(calls), count()) == (2, 0)
        calls.launched(tokens[2], 1)
        assert (len(calls), count()) == (2, 4)
        assert [t.waited for t in tokens] == [True, False, False]
        calls.drain()
        assert (len(calls), count()) == (0, 7)

    def test_finished_calls_are_counted_without_waiting(self) -> None:
        """A call whose token is ready is counted at the next launch, in launch order."""
        calls, count = self._make(5)
        first, second, third = Token(), Token(), Token()
        calls.launched(first, 3)
        calls.launched(second, 3)
        second.done = True  # the first is not: nothing may be counted out of order
        calls.launched(third, 3)
        assert count() == 0
        first.done = True
        calls.launched(Token(), 1)
        assert count() == 6
        assert not first.waited
        assert not second.waited

    def test_limit_zero_waits_for_every_call(self) -> None:
        """With limit 0 every launch is waited for and counted at once."""
        calls, count = self._make(0)
        calls.launched(Token(), 8)
        assert (len(calls), count()) == (0, 8)

    def test_a_negative_limit_is_refused(self) -> None:
        """The limit is an int >= 0, named after the runner's argument."""
        with pytest.raises(ValueError, match="'max_in_flight' must be an int >= 0; got -1"):
            self._make(-1)


class TestSmallPieces:
    def test_step_count_adds_from_several_threads(self) -> None:
        """Increments from several threads are never lost."""
        count = StepCount()

        def add() -> None:
            for _ in range(10_000):
                count.add(1)

        threads = [threading.Thread(target=add) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert count() == 40_000

    def test_spe_holder_is_shared_or_created(self) -> None:
        """A given holder is used as is; an int makes a new holder; 0 is refused."""
        holder = StepsPerExecution(3)
        assert as_spe_holder(holder) is holder
        assert int(as_spe_holder(5)) == 5
        with pytest.raises(ValueError, match="'spe' must be an int >= 1; got 0"):
            as_spe_holder(0)

    def test_max_steps_is_none_or_non_negative(self) -> None:
        """max_steps is None or an int >= 0."""
        assert check_max_steps(None) is None
        assert check_max_steps(0) == 0
        with pytest.raises(ValueError, match="'max_steps' must be an int >= 0; got -1"):
            check_max_steps(-1)

    def test_take_serves_pushed_back_items_first(self) -> None:
        """take() returns peeked items before new ones, and fewer when the source ends."""
        source = iter(range(5))
        pushback = [-1]
        assert take(source, 3, pushback) == [-1, 0, 1]
        assert pushback == []
        assert take(source, 10, pushback) == [2, 3, 4]
        assert take(source, 2, pushback) == []


def test_package_exports_are_real_and_framework_free() -> None:
    """Every name in tickwork.integrations.__all__ exists, and importing it loads no framework."""
    for name in integrations.__all__:
        assert getattr(integrations, name) is not None
    code = (
        "import sys, tickwork, tickwork.integrations; "
        "print(sorted(m for m in ('jax', 'torch', 'keras', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
