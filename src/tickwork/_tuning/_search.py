"""Where to measure next, and what to settle on: pure functions of the throughputs measured so far.

:func:`next_probe` returns the candidate to measure next and why (None: the search is over),
:func:`choose` the smallest value within ``tolerance`` of the best measured, :func:`fit_overhead`
the per-call overhead model ``s / (c + s t)`` fitted to the largest values measured. Each probe is
a candidate not measured yet, so a search ends after at most as many probes as candidates; what it
settles on is decided by measurements alone. The model and the three stages of the search (climb,
find the peak, find the smallest good value) are described in ``docs/tuner.md``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["OverheadFit", "SearchConfig", "choose", "fit_overhead", "next_probe"]

# A compiled candidate is preferred over a new one up to this far (in octaves) from the target.
COMPILED_BONUS_OCTAVES = 0.5


@dataclass(frozen=True)
class SearchConfig:
    """The search's parameters (see the module docs)."""

    tolerance: float = 0.05
    climb: int = 4
    max_jump: int = 16


@dataclass(frozen=True)
class OverheadFit:
    """Seconds per step = ``per_step + per_call / spe``, fitted to measurements."""

    per_step: float
    per_call: float

    def throughput(self, spe: float) -> float:
        return 1.0 / (self.per_step + self.per_call / spe)

    @property
    def plateau(self) -> float:
        """The throughput an unbounded spe would reach (needs ``per_step > 0``)."""
        return 1.0 / self.per_step

    def spe_for(self, fraction: float) -> float:
        """The spe at which throughput reaches ``fraction`` (< 1) of the plateau."""
        return self.per_call * fraction / (self.per_step * (1.0 - fraction))


def fit_overhead(points: Mapping[int, float]) -> OverheadFit | None:
    """Least-squares fit of the overhead model to ``{spe: throughput}``; None below 2 points."""
    usable = [(1.0 / spe, 1.0 / rate) for spe, rate in points.items() if rate > 0]
    if len(usable) < 2:
        return None
    mean_x = sum(x for x, _ in usable) / len(usable)
    mean_y = sum(y for _, y in usable) / len(usable)
    sxx = sum((x - mean_x) ** 2 for x, _ in usable)
    if sxx <= 0:
        return None
    per_call = sum((x - mean_x) * (y - mean_y) for x, y in usable) / sxx
    return OverheadFit(per_step=mean_y - per_call * mean_x, per_call=per_call)


def _pick(options: Sequence[int], target: float, compiled: Collection[int]) -> int:
    """The option closest to ``target`` on a log scale, compiled ones preferred; ties go low."""

    def cost(option: int) -> tuple[float, int]:
        distance = abs(math.log2(option / target))
        if option in compiled:
            distance -= COMPILED_BONUS_OCTAVES
        return (round(distance, 9), option)  # rounding lets exact ties go low

    return min(options, key=cost)


def _best(measured: Mapping[int, float]) -> int:
    """The spe with the highest throughput (the smallest one among equals)."""
    return max(sorted(measured), key=lambda spe: measured[spe])


def _climb(
    measured: Mapping[int, float],
    above: Sequence[int],
    config: SearchConfig,
    compiled: Collection[int],
) -> tuple[int, str] | None:
    ordered = sorted(measured)
    top = ordered[-1]
    rate = measured[top]
    half = config.tolerance / 2
    fit = fit_overhead({spe: measured[spe] for spe in ordered[-3:]})
    if fit is None:
        target = float(top * config.climb)
        why = f"climb x{config.climb} from {top}"
    elif fit.per_call <= 0:
        return None  # no per-call overhead left to amortise
    elif fit.per_step <= 0:
        target = float(top * config.climb)
        why = f"climb x{config.climb} from {top}: throughput rises faster than the model allows"
    else:
        if rate >= (1 - half) * fit.plateau:
            return None
        wanted = fit.spe_for(1 - half)
        target = min(max(wanted, above[0]), float(top * config.max_jump))
        why = (
            f"model: plateau ~{fit.plateau:.0f} steps/s, {1 - half:.1%} of it from spe "
            f"~{wanted:.0f}; {top} gives {rate / fit.plateau:.1%}"
        )
    return _pick(above, target, compiled), why


def next_probe(
    measured: Mapping[int, float],
    allowed: Sequence[int],
    config: SearchConfig,
    compiled: Collection[int] = (),
    noise: Mapping[int, float] | None = None,
) -> tuple[int, str] | None:
    """The next spe to measure and why, or None when the search is over.

    ``measured`` maps each spe measured in this search to its throughput (it must not be empty);
    ``allowed`` is the increasing sequence of values the search may probe now; ``noise`` the
    relative standard error of each measurement, where known: a climb goes on only on a gain
    larger than the noise.
    """
    if not measured:
        raise ValueError("'measured' must hold at least one throughput; got none")
    ordered = sorted(measured)
    best = _best(measured)
    top = ordered[-1]
    # 1. Climb while the largest value measured is the best, and clearly better than a value at
    #    least two octaves below it (by half the tolerance, plus the noise of both): a curve that
    #    keeps rising slowly gains little per octave, yet much over several.
    flat = little = False
    if len(ordered) >= 2:
        previous = max((spe for spe in ordered if spe * 4 <= top), default=ordered[-2])
        known = noise or {}
        spread = math.hypot(known.get(top, 0.0), known.get(previous, 0.0))
        flat = measured[top] < (1 + config.tolerance / 2 + spread) * measured[previous]
        little = measured[top] < (1 + config.tolerance + spread) * measured[previous]
    above = [spe for spe in allowed if spe > top]
    if best == top and above and not flat:
        climb = _climb(measured, above, config, compiled)
        if climb is not None:
            return climb
    if best == top and little:
        # Flat, or less than the tolerance gained, across a wide step, and no climb further: the
        # curve has peaked, or plateaued, in between (a narrow peak can hide between two values
        # that measure alike); a probe in the middle tells which.
        gap = [spe for spe in allowed if previous < spe < top and spe not in measured]
        if gap:
            probe = _pick(gap, math.sqrt(previous * top), compiled)
            why = "flat" if flat else f"less than {config.tolerance:.0%} gained"
            return probe, f"{why} from {previous} to {top}: look for a peak between"
    # 2. A value above the best measures lower: the curve is not the model's (which only rises),
    #    it peaks, and the peak may lie on either side of the best, between it and its measured
    #    neighbours.
    threshold = (1 - config.tolerance) * measured[best]
    upper = next((spe for spe in ordered if spe > best), None)
    if upper is not None:
        lower = max((spe for spe in ordered if spe < best), default=None)
        for low, high in ((best, upper), (lower, best)):
            if low is None:
                continue
            gap = [spe for spe in allowed if low < spe < high and spe not in measured]
            if gap:
                probe = _pick(gap, math.sqrt(low * high), compiled)
                return probe, f"throughput falls after {best}: peak search between {low} and {high}"
    # 3. The smallest value within tolerance of the best.
    good = min(spe for spe in ordered if measured[spe] >= threshold)
    below = max((spe for spe in ordered if spe < good), default=None)
    gap = [
        spe
        for spe in allowed
        if spe < good and (below is None or spe > below) and spe not in measured
    ]
    if not gap:
        return None
    if below is None:
        target = good / config.climb
        why = f"{good} is within {config.tolerance:.0%} of the best; try smaller"
    else:
        target = math.sqrt(below * good)
        why = f"smallest within {config.tolerance:.0%} of the best lies in ({below}, {good}]"
    return _pick(gap, target, compiled), why


def choose(measured: Mapping[int, float], tolerance: float) -> int:
    """The smallest spe whose throughput is within ``tolerance`` of the best measured."""
    if not measured:
        raise ValueError("'measured' must hold at least one throughput; got none")
    threshold = (1 - tolerance) * measured[_best(measured)]
    return min(spe for spe in measured if measured[spe] >= threshold)
