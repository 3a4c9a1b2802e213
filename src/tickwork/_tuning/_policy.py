"""The tuner's policy: a pure function from (state, measurement window) to (state, decision).

No threads, no clock, no I/O: :func:`start` makes the frozen :class:`PolicyState`, and
:func:`step` folds one :class:`Window` into it, returning the next state and a
:class:`Decision` (an :class:`Action`: discard, measure, probe, settle, stay, retune). The
two phases it moves between (searching, settled) and the rules of each are described in
``docs/tuner.md`` ("The algorithm").
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ._search import SearchConfig, choose, fit_overhead, next_probe
from ._window import Window

__all__ = ["Action", "Decision", "Estimate", "PolicyConfig", "PolicyState", "start", "step"]


class Action(str, enum.Enum):
    """What the policy did with a window."""

    DISCARD = "discard"  # the window is no evidence
    MEASURE = "measure"  # evidence added; not enough yet for an estimate
    PROBE = "probe"  # an estimate is complete; measure another spe next
    SETTLE = "settle"  # the search is over; the spe to keep
    STAY = "stay"  # settled, and the estimate gives no reason to move
    RETUNE = "retune"  # settled, but the throughput shifted for good: a new search


@dataclass(frozen=True)
class Decision:
    """The policy's answer to one window: what it did, the spe wanted from now on, and why.

    ``throughput`` is the estimate completed by this window (None when none was).
    """

    action: Action
    spe: int
    reason: str
    throughput: float | None = None


@dataclass(frozen=True)
class Estimate:
    """The evidence gathered at one spe: steps and seconds summed over windows, and their rates."""

    spe: int
    steps: int = 0
    seconds: float = 0.0
    rates: tuple[float, ...] = ()

    @property
    def windows(self) -> int:
        return len(self.rates)

    @property
    def throughput(self) -> float:
        """Steps per second over all its windows (0 without evidence)."""
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def relative_error(self) -> float:
        """Standard error of the mean window rate over that mean (inf below two windows)."""
        n = len(self.rates)
        if n < 2:
            return math.inf
        mean = sum(self.rates) / n
        if mean <= 0:
            return math.inf
        variance = sum((r - mean) ** 2 for r in self.rates) / (n - 1)
        return math.sqrt(variance / n) / mean

    def add(self, window: Window) -> Estimate:
        return replace(
            self,
            steps=self.steps + window.steps,
            seconds=self.seconds + window.seconds,
            rates=(*self.rates, window.throughput),
        )


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's parameters; see the module docs. ``candidates`` is increasing."""

    candidates: tuple[int, ...]
    windows: int = 4
    change_threshold: float = 0.1
    tolerance: float = 0.05
    max_call_seconds: float | None = 0.5
    min_calls: int = 4
    max_windows: int = 8
    max_error: float = 0.04
    shift_estimates: int = 3
    recheck_windows: int = 16
    climb: int = 4
    max_jump: int = 16

    @property
    def search(self) -> SearchConfig:
        return SearchConfig(tolerance=self.tolerance, climb=self.climb, max_jump=self.max_jump)


@dataclass(frozen=True)
class PolicyState:
    """Where the policy is: the spe it wants, what it measured, whether it has settled.

    ``measured`` holds this search's estimates, by increasing spe; ``pending`` the evidence being
    gathered at ``spe``; ``reference`` the throughput the settled value had when chosen; ``off``
    how many estimates in a row were off it by more than ``change_threshold``; ``compiled`` every
    spe ever measured (a runner has a program for each); ``rechecking`` that the value being
    measured is a settled choice's rival, measured again to decide between the two.
    """

    spe: int
    settled: bool = False
    rechecking: bool = False
    measured: tuple[Estimate, ...] = ()
    pending: Estimate | None = None
    reference: float | None = None
    off: int = 0
    compiled: frozenset[int] = field(default_factory=frozenset)


def start(spe: int, compiled: frozenset[int] = frozenset()) -> PolicyState:
    """A new search from ``spe``."""
    return PolicyState(spe=spe, compiled=compiled | {spe})


def _missing(estimate: Estimate, config: PolicyConfig, best: float | None) -> str | None:
    """What the estimate still lacks, or None when it is evidence enough.

    ``best`` is the best throughput measured in the search so far (None when settled or none):
    a probe that gives less than half of it in two windows is over at once, however long its
    calls, so that a disastrous value is left within a second or so.
    """
    if best is not None and estimate.windows >= 2 and estimate.throughput < best / 2:
        return None
    if estimate.windows < config.windows:
        return f"{estimate.windows}/{config.windows} windows at spe {estimate.spe}"
    calls = estimate.steps / estimate.spe
    if calls < config.min_calls and estimate.windows < config.max_windows:
        return f"{calls:.1f}/{config.min_calls} calls at spe {estimate.spe}"
    error = estimate.relative_error
    if estimate.windows < config.max_windows and error > config.max_error:
        return f"noise: relative error {error:.1%} > {config.max_error:.1%} at spe {estimate.spe}"
    return None


def _allowed(config: PolicyConfig, ceiling: int | None, rates: dict[int, float]) -> Sequence[int]:
    """The candidates a search may probe: up to the caller's ceiling, and none whose steps would
    take longer than ``max_call_seconds`` per call at the per-step cost the overhead model fits to
    the largest values measured (a call of a huge spe delays callbacks, logging, stop requests and
    checkpoints by its whole duration). The fixed per-call cost comes on top: a loop whose every
    call is slow anyway may still amortise it. Without a fit (one value measured) only the
    ceiling applies; the climb factor bounds the next step."""
    limit = ceiling
    if config.max_call_seconds is not None and len(rates) >= 2:
        largest = sorted(rates)[-3:]
        fit = fit_overhead({spe: rates[spe] for spe in largest})
        if fit is not None and fit.per_step > 0:
            by_time = max(1, math.floor(config.max_call_seconds / fit.per_step))
            limit = by_time if limit is None else min(limit, by_time)
    if limit is None:
        return config.candidates
    return [spe for spe in config.candidates if spe <= limit] or list(config.candidates[:1])


def _search(
    state: PolicyState, estimate: Estimate, config: PolicyConfig, ceiling: int | None
) -> tuple[PolicyState, Decision]:
    measured = _merge(state.measured, estimate)
    rates = {e.spe: e.throughput for e in measured}
    here = f"spe {estimate.spe}: {estimate.throughput:.0f} steps/s"
    noise = {e.spe: _finite(e.relative_error) for e in measured}
    allowed = _allowed(config, ceiling, rates)
    probe = next_probe(rates, allowed, config.search, state.compiled, noise)
    if probe is not None:
        spe, why = probe
        decided = replace(state, spe=spe, measured=measured, pending=None)
        return decided, Decision(Action.PROBE, spe, f"{here}; {why}", estimate.throughput)
    return _settle(state, measured, estimate, config, "")


def _settle(
    state: PolicyState,
    measured: tuple[Estimate, ...],
    estimate: Estimate,
    config: PolicyConfig,
    prefix: str,
) -> tuple[PolicyState, Decision]:
    """End a search (or a re-check): the smallest value within tolerance of the best."""
    rates = {e.spe: e.throughput for e in measured}
    chosen = choose(rates, config.tolerance)
    settled = replace(
        state,
        spe=chosen,
        settled=True,
        rechecking=False,
        measured=measured,
        pending=None,
        reference=rates[chosen],
        off=0,
    )
    why = (
        f"{prefix}spe {estimate.spe}: {estimate.throughput:.0f} steps/s; settle on {chosen} "
        f"({rates[chosen]:.0f} steps/s), the smallest within {config.tolerance:.0%} of the best "
        f"of {len(rates)} measured"
    )
    return settled, Decision(Action.SETTLE, chosen, why, estimate.throughput)


def _spe_key(estimate: Estimate) -> int:
    return estimate.spe


def _merge(measured: tuple[Estimate, ...], estimate: Estimate) -> tuple[Estimate, ...]:
    """``measured`` with ``estimate`` added to the evidence at its spe."""
    merged = estimate
    for known in measured:
        if known.spe == estimate.spe:
            merged = Estimate(
                estimate.spe,
                steps=known.steps + estimate.steps,
                seconds=known.seconds + estimate.seconds,
                rates=(*known.rates, *estimate.rates)[-_KEPT_RATES:],
            )
    others = (e for e in measured if e.spe != estimate.spe)
    return tuple(sorted((*others, merged), key=_spe_key))


# Window rates kept per estimate once settled (they only serve the noise figure).
_KEPT_RATES = 64


def _robust_choice(
    rates: dict[int, float], errors: dict[int, float], current: int, tolerance: float
) -> tuple[int, int | None]:
    """:func:`choose`, but ``current`` is kept unless the choice moves whichever way its noise went.

    The current value's throughput is taken one standard error (its own and the best other's,
    combined) above and below its estimate; only if both give the same other choice is it taken.
    This keeps near-equal values from taking turns on noise. Returns the choice and, when the
    noise leaves it open, the rival that the other side of the noise would choose.
    """
    if current not in rates:
        return choose(rates, tolerance), None
    others = [spe for spe in rates if spe != current]
    if not others:
        return current, None
    best_other = max(others, key=lambda spe: rates[spe])
    spread = math.hypot(_finite(errors.get(current)), _finite(errors.get(best_other)))
    high = choose({**rates, current: rates[current] * (1 + spread)}, tolerance)
    low = choose({**rates, current: rates[current] * (1 - spread)}, tolerance)
    if high == low:
        return high, None
    return current, (low if high == current else high)


def _finite(error: float | None) -> float:
    """A relative error usable in arithmetic: an unknown one counts as 5%."""
    if error is None or not math.isfinite(error):
        return _UNKNOWN_ERROR
    return error


_UNKNOWN_ERROR = 0.05


def _check(
    state: PolicyState, estimate: Estimate, config: PolicyConfig, ceiling: int | None
) -> tuple[PolicyState, Decision]:
    reference = state.reference or estimate.throughput
    change = estimate.throughput / reference - 1
    here = (
        f"spe {estimate.spe}: {estimate.throughput:.0f} steps/s, {change:+.1%} from {reference:.0f}"
    )
    if abs(change) <= config.change_threshold:
        # Consistent with what it was chosen on: more evidence for the same value. With it the
        # choice may change (a lucky first measurement made it look better than it is).
        measured = _merge(state.measured, estimate)
        rates = {e.spe: e.throughput for e in measured}
        errors = {e.spe: e.relative_error for e in measured}
        windows = {e.spe: e.windows for e in measured}
        chosen, rival = _robust_choice(rates, errors, state.spe, config.tolerance)
        if chosen != state.spe:
            decided = replace(
                state, spe=chosen, measured=measured, pending=None, reference=rates[chosen], off=0
            )
            why = (
                f"{here}; at {rates[state.spe]:.0f} steps/s over all its windows, {chosen} "
                f"({rates[chosen]:.0f} steps/s) is now the smallest within "
                f"{config.tolerance:.0%} of the best: moving there"
            )
            return decided, Decision(Action.SETTLE, chosen, why, estimate.throughput)
        recheck = min(windows[state.spe] // 2, config.recheck_windows)
        others = [spe for spe in rates if spe != state.spe]
        best_other = max(others, key=rates.__getitem__) if others else None
        thin = [v for v in (rival, best_other) if v is not None and windows[v] < recheck]
        if rival is not None and thin:
            # The choice is within the noise, and the rival, or the best value that the tolerance
            # is measured from, stands on less evidence (and older): measure it again rather than
            # trust it or ignore it. On a machine whose load drifts, old estimates are biased.
            again = min(thin, key=windows.__getitem__)
            decided = replace(
                state,
                spe=again,
                settled=False,
                rechecking=True,
                measured=measured,
                pending=None,
                off=0,
            )
            why = (
                f"{here}; {state.spe} or {rival} is within the noise: measure {again} "
                f"({rates[again]:.0f} steps/s on {windows[again]} windows) again"
            )
            return decided, Decision(Action.PROBE, again, why, estimate.throughput)
        decided = replace(state, measured=measured, pending=None, reference=rates[state.spe], off=0)
        return decided, Decision(Action.STAY, state.spe, here, estimate.throughput)
    off = state.off + 1
    if off < config.shift_estimates:
        decided = replace(state, pending=None, off=off)
        why = f"{here} ({off}/{config.shift_estimates} in a row before a re-tune)"
        return decided, Decision(Action.STAY, state.spe, why, estimate.throughput)
    fresh = start(state.spe, state.compiled)
    searched, decision = _search(fresh, estimate, config, ceiling)
    why = f"throughput shifted for {off} estimates in a row; new search. {decision.reason}"
    return searched, Decision(Action.RETUNE, decision.spe, why, estimate.throughput)


def step(
    state: PolicyState, window: Window, config: PolicyConfig, ceiling: int | None = None
) -> tuple[PolicyState, Decision]:
    """Take one measurement window into account.

    ``ceiling`` is the largest spe allowed right now (the caller's ``max_spe``), or None: a search
    only probes values up to it. The choice among measured values ignores it (a ceiling such as
    the steps left in an epoch is often temporary), so the decision's ``spe`` is what the policy
    wants; the caller assigns it bounded by the ceiling, and windows at a clamped value are not
    evidence for it.
    """
    compiled = state.compiled if window.spe in state.compiled else state.compiled | {window.spe}
    state = replace(state, compiled=compiled)
    if window.discard is not None:
        why = f"window discarded ({window.discard.value})"
        return state, Decision(Action.DISCARD, state.spe, why)
    if window.spe != state.spe:
        why = f"window at spe {window.spe}, not the {state.spe} being measured"
        return state, Decision(Action.DISCARD, state.spe, why)
    if window.steps <= 0 or window.seconds <= 0:
        return state, Decision(Action.DISCARD, state.spe, "window without steps or duration")
    pending = (state.pending or Estimate(state.spe)).add(window)
    searching = not state.settled and not state.rechecking and state.measured
    best = max(e.throughput for e in state.measured) if searching else None
    missing = _missing(pending, config, best)
    if missing is not None:
        return replace(state, pending=pending), Decision(Action.MEASURE, state.spe, missing)
    if state.settled:
        return _check(state, pending, config, ceiling)
    if state.rechecking:
        measured = _merge(state.measured, pending)
        return _settle(state, measured, pending, config, "re-checked ")
    return _search(state, pending, config, ceiling)
