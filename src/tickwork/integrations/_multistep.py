"""What every multi-step runner shares, framework-free.

A *multi-step runner* runs ``n`` training steps per call, where ``n`` is read at each call from a
:class:`~tickwork._tuning._spe.StepsPerExecution` holder. It exposes the three things
``StepsPerExecutionTuner`` needs (see :class:`SpeRunner`) and accounts for what each new ``n``
costs (a compilation, a graph capture) in a :class:`CompileLog`.

Each distinct ``n`` is compiled once, so a runner offers few of them (:attr:`SpeRunner.candidates`,
powers of two) and runs any other ``n`` as a sequence of calls of those sizes (:func:`decompose`):
13 steps run as calls of 8, 4 and 1, which costs no compilation.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from .._clock import Clock, check_clock
from .._tuning._spe import StepsPerExecution
from .._validate import check_int, check_nonnegative

__all__ = [
    "CompileLog",
    "CompileRecord",
    "InFlight",
    "RunnerBase",
    "SpeRunner",
    "StepCount",
    "as_spe_holder",
    "check_max_steps",
    "choose_spe",
    "decompose",
    "powers_of_two",
    "take",
]

_T = TypeVar("_T")


def powers_of_two(maximum: int, *, argument: str = "max_spe") -> tuple[int, ...]:
    """``(1, 2, 4, ...)`` up to and including the largest power of two <= ``maximum``."""
    top = check_int(argument, maximum, minimum=1)
    return tuple(1 << k for k in range(top.bit_length()))


def decompose(n: int, sizes: Sequence[int]) -> list[int]:
    """Split ``n`` steps into calls of the given compiled sizes, largest first.

    ``sizes`` must include 1 so every ``n`` can be made. With powers of two this is the binary
    expansion of ``n`` (at most ``log2(max)+1`` calls), and ``n`` above the largest size repeats
    it: ``decompose(13, (1, 2, 4, 8)) == [8, 4, 1]``, ``decompose(20, (1, 2, 4, 8)) == [8, 8, 4]``.
    """
    remaining = check_int("n", n, minimum=0)
    ordered = sorted(set(sizes), reverse=True)
    if not ordered or ordered[-1] != 1:
        raise ValueError(f"'sizes' must include 1 so that any n can be run; got {tuple(sizes)!r}")
    calls: list[int] = []
    for size in ordered:
        count, remaining = divmod(remaining, size)
        calls.extend([size] * count)
    return calls


def check_max_steps(max_steps: int | None) -> int | None:
    """None, or an int >= 0 (a bound on the steps one call may run, e.g. steps left in an epoch)."""
    if max_steps is None:
        return None
    return check_int("max_steps", max_steps, minimum=0)


def as_spe_holder(spe: int | StepsPerExecution) -> StepsPerExecution:
    """The holder a runner reads: ``spe`` itself, or a new holder starting at the int ``spe``."""
    if isinstance(spe, StepsPerExecution):
        return spe
    return StepsPerExecution(check_int("spe", spe, minimum=1))


def choose_spe(throughput: Mapping[int, float], tolerance: float = 0.05) -> int:
    """The smallest spe whose throughput is within ``tolerance`` of the best one measured.

    A larger spe delays callbacks, logging, stop requests and checkpoints, so a value that is not
    measurably faster is not chosen: ``choose_spe({1: 600, 8: 1150, 64: 1200}, 0.05) == 8``.
    """
    tol = check_nonnegative("tolerance", tolerance)
    if tol >= 1:
        raise ValueError(f"'tolerance' must be a finite number in [0, 1); got {tolerance!r}")
    if not throughput:
        raise ValueError("'throughput' must hold at least one measurement; got none")
    for spe, rate in throughput.items():
        check_int("spe", spe, minimum=1)
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate >= 0):
            raise ValueError(f"throughput of spe {spe} must be a finite number >= 0; got {rate!r}")
    best = max(throughput.values())
    return min(spe for spe, rate in throughput.items() if rate >= (1 - tol) * best)


@dataclass(frozen=True)
class CompileRecord:
    """One compilation (or graph capture) a runner paid for.

    ``spe`` is the number of steps the compiled call runs; ``seconds`` how long building it took
    (tracing, lowering, compiling, capturing; for a capture also the eager warm-up steps);
    ``started`` when it began, on the runner's clock, so a throughput window that overlaps it can
    be recognised; ``signature`` describes the input shapes it was built for (a new batch shape
    is a new compilation).
    """

    spe: int
    seconds: float
    started: float
    signature: str


class CompileLog:
    """A thread-safe record of a runner's compilations, read by the tuner and by benchmarks."""

    __slots__ = ("_lock", "_records")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CompileRecord] = []

    def add(self, record: CompileRecord) -> None:
        """Record one compilation (the runner does this)."""
        with self._lock:
            self._records.append(record)

    @property
    def records(self) -> tuple[CompileRecord, ...]:
        """Every compilation so far, oldest first."""
        with self._lock:
            return tuple(self._records)

    def compiled(self) -> tuple[int, ...]:
        """The spe values compiled so far, increasing."""
        return tuple(sorted({record.spe for record in self.records}))

    def seconds_by_spe(self) -> dict[int, float]:
        """Total compilation seconds per spe value (several when batch shapes changed)."""
        totals: dict[int, float] = {}
        for record in self.records:
            totals[record.spe] = totals.get(record.spe, 0.0) + record.seconds
        return totals

    def total_seconds(self) -> float:
        """Seconds spent compiling so far, every spe value together."""
        return sum(record.seconds for record in self.records)

    def __repr__(self) -> str:
        return f"CompileLog(compiled={self.compiled()}, seconds={self.total_seconds():.3f})"


class StepCount:
    """A step counter written by the training thread and read by any other one.

    Reads are plain int reads (atomic); the lock orders increments from more than one writer.
    """

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self, steps: int) -> None:
        with self._lock:
            self._value += steps

    def __call__(self) -> int:
        return self._value


class InFlight(Generic[_T]):
    """Calls launched on an asynchronous device and not yet known to have finished.

    Each call leaves a *token* (an output array, an event). A call's steps are counted once its
    token is ready; calls finish in launch order (each depends on the state the previous one
    left). Ready tokens are retired without waiting; the host waits only when more than ``limit``
    calls are queued, so it stays at most ``limit`` calls ahead of the device and the counter
    trails the steps launched by at most those calls. Waiting on every call instead (limit 0)
    costs a thread hand-off per call, which on a loaded machine can cost more than the step.
    """

    __slots__ = ("_count", "_limit", "_queue", "_ready", "_wait")

    def __init__(
        self,
        limit: int,
        count: StepCount,
        ready: Callable[[_T], bool],
        wait: Callable[[_T], object],
        *,
        argument: str = "max_in_flight",
    ) -> None:
        self._limit = check_int(argument, limit, minimum=0)
        self._count = count
        self._ready = ready
        self._wait = wait
        self._queue: collections.deque[tuple[_T, int]] = collections.deque()

    def launched(self, token: _T, steps: int) -> None:
        """A call of ``steps`` steps was launched; ``token`` becomes ready when it finishes."""
        self._queue.append((token, steps))
        while self._queue:
            if self._ready(self._queue[0][0]):
                self._retire_oldest(wait=False)
            elif len(self._queue) > self._limit:
                self._retire_oldest(wait=True)
            else:
                break

    def drain(self) -> None:
        """Wait for every queued call and count it."""
        while self._queue:
            self._retire_oldest(wait=True)

    def __len__(self) -> int:
        return len(self._queue)

    def _retire_oldest(self, *, wait: bool) -> None:
        token, steps = self._queue[0]
        if wait:
            self._wait(token)
        self._queue.popleft()
        self._count.add(steps)


@runtime_checkable
class SpeRunner(Protocol):
    """What a multi-step runner offers ``StepsPerExecutionTuner``.

    ``counter()`` returns the training steps completed so far; ``spe`` is the holder the runner
    reads at each call (the tuner assigns it); ``candidates`` the increasing spe values the
    runner runs in one compiled call each; ``compile_log`` what each new value cost::

        tuner = StepsPerExecutionTuner(runner.counter, runner.spe, candidates=runner.candidates)
    """

    @property
    def spe(self) -> StepsPerExecution:
        """The holder the runner reads at each call; the tuner assigns it."""

    @property
    def candidates(self) -> tuple[int, ...]:
        """The increasing spe values the runner runs, one compiled call each."""

    @property
    def compile_log(self) -> CompileLog:
        """What each new spe value cost to compile."""

    def counter(self) -> int:
        """Training steps completed so far."""


def take(source: Iterator[_T], count: int, pushback: list[_T]) -> list[_T]:
    """Up to ``count`` items: first those pushed back (by a peek), then from ``source``."""
    items = pushback[:count]
    del pushback[:count]
    while len(items) < count:
        try:
            items.append(next(source))
        except StopIteration:
            break
    return items


class RunnerBase(Generic[_T]):
    """What the JAX and PyTorch runners share: the tuner's contract and the step accounting.

    A subclass pulls batches with :meth:`_steps_wanted`, counts what it launches with
    :meth:`_launched` (or, for a call that has already finished, :meth:`_finished`) and records
    compilations in :attr:`compile_log`. ``ready(token)``/``wait(token)`` tell whether a launched
    call has finished and wait for it (see :class:`InFlight`).
    """

    def __init__(
        self,
        batches: Iterable[Any],
        *,
        max_spe: int,
        spe: int | StepsPerExecution,
        max_in_flight: int,
        clock: Clock | None,
        ready: Callable[[_T], bool],
        wait: Callable[[_T], object],
    ) -> None:
        try:
            self._batches = iter(batches)
        except TypeError:
            raise TypeError(f"'batches' must be an iterable of batches; got {batches!r}") from None
        self._candidates = powers_of_two(max_spe)
        self._spe = as_spe_holder(spe)
        self._clock = check_clock(clock)
        self._pushback: list[Any] = []
        self._compile_log = CompileLog()
        self._completed = StepCount()
        self._dispatched = 0
        self._in_flight: InFlight[_T] = InFlight(max_in_flight, self._completed, ready, wait)
        self._output: Any = None

    # The tuner's contract -------------------------------------------------------------------

    def counter(self) -> int:
        """Training steps completed so far (behind :attr:`steps_dispatched` by the calls queued
        on the device, at most ``max_in_flight``)."""
        return self._completed()

    @property
    def spe(self) -> StepsPerExecution:
        """The steps-per-execution holder read at each ``run()``."""
        return self._spe

    @property
    def candidates(self) -> tuple[int, ...]:
        """The spe values run in one compiled call each: 1, 2, 4, ... up to ``max_spe``."""
        return self._candidates

    @property
    def compile_log(self) -> CompileLog:
        """Every compilation (or capture): spe, seconds, when it started, the batch shapes."""
        return self._compile_log

    # Training -----------------------------------------------------------------------------------

    @property
    def output(self) -> Any:
        """What the step returned for the last step run (None before the first ``run()``)."""
        return self._output

    @property
    def steps_dispatched(self) -> int:
        """Steps launched so far, completed or not."""
        return self._dispatched

    def sync(self) -> None:
        """Wait until every launched step has completed (then ``counter() == steps_dispatched``)."""
        self._in_flight.drain()

    def _steps_wanted(self, max_steps: int | None) -> list[Any]:
        """The batches of the next call: ``int(spe)`` of them, at most ``max_steps``."""
        n = int(self._spe)
        limit = check_max_steps(max_steps)
        if limit is not None:
            n = min(n, limit)
        return take(self._batches, n, self._pushback) if n else []

    def _launched(self, token: _T, steps: int) -> None:
        """A call of ``steps`` steps was launched; it counts once ``token`` is ready."""
        self._dispatched += steps
        self._in_flight.launched(token, steps)

    def _finished(self, steps: int) -> None:
        """``steps`` steps ran synchronously: launched and completed."""
        self._dispatched += steps
        self._completed.add(steps)
