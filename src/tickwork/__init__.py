"""tickwork: the work that runs beside a training loop, for any framework.

Timed threads that do not drift (:class:`TimedThread`, :func:`every`), a coordinator that stops a
group of threads and carries every exception (:class:`Coordinator`, :class:`LooperThread`,
:func:`stop_on_signals`), on one monotonic clock (:class:`Clock`).
"""

from ._clock import Clock as Clock
from ._clock import MonotonicClock as MonotonicClock
from ._clock import Waitable as Waitable
from ._coordinator import Coordinator as Coordinator
from ._looper import LooperThread as LooperThread
from ._schedule import Overrun as Overrun
from ._signals import SignalStop as SignalStop
from ._signals import stop_on_signals as stop_on_signals
from ._ticker import TickStats as TickStats
from ._timed_thread import OnError as OnError
from ._timed_thread import TimedThread as TimedThread
from ._timed_thread import every as every

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "Coordinator",
    "LooperThread",
    "MonotonicClock",
    "OnError",
    "Overrun",
    "SignalStop",
    "TickStats",
    "TimedThread",
    "Waitable",
    "every",
    "stop_on_signals",
]

# Steps-per-execution tuning (issue 4).
from ._tuning._history import TuningHistory as TuningHistory
from ._tuning._history import TuningRecord as TuningRecord
from ._tuning._spe import StepsPerExecution as StepsPerExecution
from ._tuning._tuner import StepsPerExecutionTuner as StepsPerExecutionTuner

__all__ += ["StepsPerExecution", "StepsPerExecutionTuner", "TuningHistory", "TuningRecord"]
__all__.sort()
