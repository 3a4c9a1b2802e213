"""A deterministic simulation of a training loop under the tuner's core, for policy tests.

The loop runs at ``curve(spe, t)`` steps per second (times an optional noise factor per tick),
with a per-step counter; each new spe may cost ``compile_s`` seconds without steps the first time it
is used. No threads, no sleeps: time is a number.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tickwork._tuning._core import TuningCore
from tickwork._tuning._history import TuningHistory
from tickwork._tuning._policy import PolicyConfig

Curve = Callable[[int, float], float]


def saturating(plateau: float, half: float) -> Curve:
    """Throughput ``plateau * s / (s + half)``: the per-call overhead model."""
    return lambda spe, _t: plateau * spe / (spe + half)


def peaked(plateau: float, half: float, peak: float) -> Curve:
    """Saturating, then falling beyond ``peak`` (cache spills, a prefetch buffer running dry)."""
    return lambda spe, _t: plateau * spe / (spe + half) / (1 + (spe / peak) ** 2)


def shifting(before: Curve, after: Curve, at: float) -> Curve:
    """``before`` until time ``at``, ``after`` from then on."""
    return lambda spe, t: before(spe, t) if t < at else after(spe, t)


def powers_of_two(top: int = 1 << 16) -> tuple[int, ...]:
    return tuple(1 << k for k in range(top.bit_length()) if 1 << k <= top)


@dataclass
class Run:
    """What a simulation did: the spe at each tick, the throughput achieved, the core."""

    core: TuningCore
    history: TuningHistory
    times: list[float] = field(default_factory=list)
    spes: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    assigned: list[int] = field(default_factory=list)

    def final_spe(self) -> int:
        return self.spes[-1]

    def mean_rate(self, start: float = 0.0, end: float = math.inf) -> float:
        picked = [r for t, r in zip(self.times, self.rates, strict=True) if start <= t < end]
        return sum(picked) / len(picked)


def simulate(
    curve: Curve,
    seconds: float,
    *,
    config: PolicyConfig | None = None,
    interval: float = 0.25,
    start_spe: int = 1,
    min_spe: int = 1,
    ceiling: Callable[[float], int | None] = lambda _t: None,
    noise: float = 0.0,
    drift: float = 0.0,
    compile_s: float = 0.0,
    per_call: bool = False,
    seed: int = 0,
) -> Run:
    """Run the core against ``curve`` for ``seconds`` of simulated time, one tick per interval.

    ``noise`` is the relative standard deviation of independent per-tick noise; ``drift`` that of a
    slowly varying factor (correlation time about a second), as other jobs on the machine cause.
    """
    rng = random.Random(seed)
    config = config or PolicyConfig(candidates=powers_of_two())
    history = TuningHistory()
    core = TuningCore(config, interval=interval, min_spe=min_spe, history=history, origin=0.0)
    run = Run(core, history)
    spe = start_spe
    count = 0.0
    dead = 0.0  # seconds of compilation left
    seen = {spe}
    first = core.begin(0.0, 0, spe, ceiling(0.0))
    if first is not None:
        spe = first
    t = 0.0
    ticks = round(seconds / interval)
    slow = 0.0
    keep = math.exp(-interval / 1.0)
    for k in range(1, ticks + 1):
        t = k * interval
        slow = keep * slow + math.sqrt(1 - keep * keep) * drift * rng.gauss(0.0, 1.0)
        rate = curve(spe, t) * (1 + noise * rng.gauss(0.0, 1.0) + slow)
        busy = max(0.0, interval - dead)
        dead = max(0.0, dead - interval)
        count += max(rate, 0.0) * busy
        run.times.append(t)
        run.spes.append(spe)
        run.rates.append(max(rate, 0.0) * busy / interval)
        shown = int(count) // spe * spe if per_call else int(count)
        new = core.tick(t, shown, ceiling(t), spe)
        if new is not None:
            run.assigned.append(new)
            spe = new
            if spe not in seen:
                seen.add(spe)
                dead = compile_s
    return run
