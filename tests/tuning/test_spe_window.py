"""WindowMaker: counter samples become windows, and the ones that are no evidence are marked."""

from __future__ import annotations

import pytest

from tickwork._tuning._window import Discard, Window, WindowMaker


def _run(maker: WindowMaker, samples: list[tuple[float, int]]) -> list[Window]:
    out: list[Window] = []
    for now, count in samples:
        out.extend(maker.sample(now, count))
    return out


class TestWindow:
    def test_throughput_is_steps_over_seconds(self) -> None:
        """A window's throughput is its steps divided by its duration."""
        assert Window(1.0, 1.5, 100, 4).throughput == pytest.approx(200.0)

    def test_zero_duration_has_zero_throughput(self) -> None:
        """A window of no duration reports 0 steps/s rather than dividing by zero."""
        assert Window(2.0, 2.0, 10, 1).throughput == 0.0


class TestSteadyCounting:
    def test_first_window_is_warmup_then_windows_are_evidence(self) -> None:
        """At the start the call in progress is partial: the first window is warm-up, the rest are
        evidence, handed out one sample late."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 4)
        out = _run(maker, [(0.25 * k, 100 * k) for k in range(1, 6)])
        assert [w.discard for w in out] == [Discard.WARMUP, None, None, None]
        assert [w.steps for w in out] == [100] * 4
        assert out[1].start == pytest.approx(0.25)
        assert out[1].end == pytest.approx(0.5)

    def test_window_is_held_until_the_next_one_closes(self) -> None:
        """A closed window is not handed out before the next window closes."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 1)
        assert maker.sample(0.25, 50) == []
        assert len(maker.sample(0.5, 100)) == 1

    def test_ticks_without_steps_extend_the_window(self) -> None:
        """With a counter that moves once per call, ticks that see no step keep the window open,
        so a window spans whole calls."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 64)
        samples = [(0.25, 0), (0.5, 64), (0.75, 64), (1.0, 128), (1.25, 128), (1.5, 192)]
        samples += [(1.75, 192), (2.0, 256)]
        out = _run(maker, samples)
        assert [(w.start, w.end, w.steps) for w in out] == [
            (0.0, 0.5, 64),
            (0.5, 1.0, 64),
            (1.0, 1.5, 64),
        ]
        assert out[0].discard is Discard.WARMUP
        assert out[1].discard is None
        assert out[1].throughput == pytest.approx(128.0)


class TestChange:
    def test_warmup_lasts_until_old_plus_new_steps_have_run(self) -> None:
        """After a change from 8 to 32, windows are discarded until 40 steps have run since the
        change, the window that crosses that mark included."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 8)
        _run(maker, [(0.25, 100), (0.5, 200)])
        assert [w.spe for w in maker.change(0.5, 200, 32)] == [8]
        out = _run(maker, [(0.75, 220), (1.0, 260), (1.25, 400), (1.5, 540), (1.75, 680)])
        assert [(w.spe, w.discard) for w in out] == [
            (32, Discard.WARMUP),
            (32, Discard.WARMUP),
            (32, None),
            (32, None),
        ]

    def test_slow_value_with_a_per_step_counter_warms_up_in_two_windows(self) -> None:
        """A change from 8 to 512 at 20 steps/s: the counter would need 26 s to move 520 steps,
        but after the old call's 8 steps only one more window is warm-up."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 8)
        _run(maker, [(0.25, 100), (0.5, 200)])
        maker.change(0.5, 200, 512)
        out = _run(maker, [(0.5 + 0.25 * k, 205 + 5 * k) for k in range(1, 7)])
        assert [w.discard for w in out] == [Discard.WARMUP, Discard.WARMUP, None, None, None]

    def test_change_hands_out_the_held_window(self) -> None:
        """The window held for look-ahead is handed out at a change, with its own spe."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 2)
        _run(maker, [(0.25, 50), (0.5, 100), (0.75, 150)])
        flushed = maker.change(0.75, 150, 4)
        assert [(w.spe, w.steps, w.discard) for w in flushed] == [(2, 50, None)]

    def test_change_mid_window_marks_the_partial_window(self) -> None:
        """A change between samples cuts the open window and marks it 'spe change'."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 2)
        _run(maker, [(0.25, 50)])
        flushed = maker.change(0.4, 80, 4)
        assert flushed[-1].discard is Discard.SPE_CHANGE
        assert (flushed[-1].steps, flushed[-1].spe) == (30, 2)
        assert maker.spe == 4


class TestPause:
    def test_pause_discards_the_window_before_during_and_after(self) -> None:
        """No steps for 2 s (an evaluation): the window in which it began, the one spanning it and
        the first one after it are discarded; later windows are evidence again."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 1)
        samples = [(0.25, 100), (0.5, 200), (0.75, 300), (1.0, 340)]  # pause begins near 0.85
        samples += [(0.25 * k, 340) for k in range(5, 13)]  # nothing until 3.0
        samples += [(3.25, 400), (3.5, 500), (3.75, 600), (4.0, 700)]
        out = _run(maker, samples)
        reasons = [(w.end, w.discard) for w in out]
        assert reasons == [
            (0.25, Discard.WARMUP),
            (0.5, None),
            (0.75, None),
            (1.0, Discard.PAUSE),  # the pause began in it
            (3.25, Discard.PAUSE),  # it spans the pause
            (3.5, Discard.PAUSE),  # the first after it
            (3.75, None),
        ]

    def test_a_long_call_is_not_a_pause(self) -> None:
        """With calls of 0.6 s and a per-call counter, 0.75 s without a step is a call, not a
        pause: the windows stay evidence."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 512)
        samples = []
        count = 0
        for k in range(1, 25):
            now = 0.25 * k
            if k % 3 == 0:
                count += 512
            samples.append((now, count))
        out = _run(maker, samples)
        assert [w.discard for w in out[1:]] == [None] * (len(out) - 1)
        assert all(w.throughput == pytest.approx(512 / 0.75) for w in out[1:])

    def test_idle_start_is_a_pause(self) -> None:
        """Training that starts 5 s after the tuner: the window that spans the wait is discarded."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 1)
        out = _run(maker, [(0.25 * k, 0) for k in range(1, 21)] + [(5.25, 100), (5.5, 200)])
        assert [w.discard for w in out] == [Discard.PAUSE]


class TestBoundaryAndReset:
    def test_boundary_discards_the_open_window_only(self) -> None:
        """mark_boundary() discards the window open at that moment and no other."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 0, 1)
        _run(maker, [(0.25, 100), (0.5, 200)])
        maker.mark_boundary()
        out = _run(maker, [(0.75, 300), (1.0, 400), (1.25, 500)])
        assert [(w.end, w.discard) for w in out] == [
            (0.5, None),
            (0.75, Discard.BOUNDARY),
            (1.0, None),
        ]

    def test_counter_going_backwards_is_a_reset(self) -> None:
        """A counter that goes back (a new optimizer) yields a 'reset' window and warm-up again."""
        maker = WindowMaker(0.25)
        maker.begin(0.0, 1000, 1)
        out = _run(maker, [(0.25, 1100), (0.5, 1200), (0.75, 5), (1.0, 105), (1.25, 205)])
        assert [w.discard for w in out] == [
            Discard.WARMUP,
            None,
            Discard.RESET,
            Discard.WARMUP,
        ]
