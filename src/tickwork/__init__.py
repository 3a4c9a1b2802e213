"""tickwork: the work that runs beside a training loop, for any framework.

Timed threads that do not drift (:class:`TimedThread`, :func:`every`), a coordinator that stops a
group of threads and carries every exception (:class:`Coordinator`, :class:`LooperThread`,
:func:`stop_on_signals`, :func:`stoppable_put` for a loader on a bounded queue), on one
monotonic clock (:class:`Clock`).

Checkpoint following for every framework (:func:`checkpoints_iterator`,
:func:`wait_for_new_checkpoint`, :func:`latest_checkpoint`, :class:`CheckpointFollower`):
TensorFlow's API, event-driven, never early, never missing a checkpoint when asked; and a
:class:`SidecarEvaluator` that evaluates every checkpoint beside training, retrying failures and
ending when training is done; training tells it so, and how it ended, with
:func:`mark_training_done`. Their ``on_progress=`` hook reports what they do as typed
:class:`ProgressEvent` objects (for a progress bar or your own log lines).
"""

from ._clock import Clock as Clock
from ._clock import MonotonicClock as MonotonicClock
from ._coordinator import Coordinator as Coordinator
from ._looper import LooperThread as LooperThread
from ._public import publish as _publish
from ._queues import stoppable_put as stoppable_put
from ._schedule import Overrun as Overrun
from ._signals import SignalStop as SignalStop
from ._signals import stop_on_signals as stop_on_signals
from ._timed_thread import OnError as OnError
from ._timed_thread import TimedThread as TimedThread
from ._timed_thread import every as every

# Checkpoint following, the training-end marker, the tuner and the TickStats record (a dataclass:
# dataclasses imports inspect) are imported on first use of any of these names (all of them at
# once), not by `import tickwork`: a program that only wants a TimedThread does not pay for them
# (issue 18). Each name and the private module that defines it:
_LAZY = {
    "CheckpointIterator": "._checkpoints._api",
    "checkpoints_iterator": "._checkpoints._api",
    "latest_checkpoint": "._checkpoints._api",
    "wait_for_new_checkpoint": "._checkpoints._api",
    "Checkpoint": "._checkpoints._checkpoint",
    "FollowerStats": "._checkpoints._checkpoint",
    "Evaluation": "._checkpoints._evaluation",
    "Outcome": "._checkpoints._evaluation",
    "SidecarStats": "._checkpoints._evaluation",
    "CheckpointFollower": "._checkpoints._follower",
    "CheckpointPattern": "._checkpoints._layouts",
    "Layout": "._checkpoints._layouts",
    "FollowOptions": "._checkpoints._options",
    "FollowSettings": "._checkpoints._options",
    "Watch": "._checkpoints._options",
    "CheckpointFound": "._checkpoints._progress",
    "Evaluated": "._checkpoints._progress",
    "Evaluating": "._checkpoints._progress",
    "FollowingEnded": "._checkpoints._progress",
    "ProgressEvent": "._checkpoints._progress",
    "Waiting": "._checkpoints._progress",
    "SidecarEvaluator": "._checkpoints._sidecar",
    "EndReason": "._checkpoints._sidecar_policy",
    "TrainingEnd": "._done_marker",
    "TrainingStatus": "._done_marker",
    "clear_done_marker": "._done_marker",
    "mark_training_done": "._done_marker",
    "read_training_end": "._done_marker",
    "TickStats": "._tick_stats",
    "TuningHistory": "._tuning._history",
    "TuningRecord": "._tuning._history",
    "StepsPerExecution": "._tuning._spe",
    "StepsPerExecutionTuner": "._tuning._tuner",
    "CoordinatorLike": "._protocols",  # typing.Protocols: typing is not imported up front
    "Waitable": "._protocols",
}

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:  # what type checkers and editors see; at run time, _LAZY
    from ._checkpoints._api import CheckpointIterator as CheckpointIterator
    from ._checkpoints._api import checkpoints_iterator as checkpoints_iterator
    from ._checkpoints._api import latest_checkpoint as latest_checkpoint
    from ._checkpoints._api import wait_for_new_checkpoint as wait_for_new_checkpoint
    from ._checkpoints._checkpoint import Checkpoint as Checkpoint
    from ._checkpoints._checkpoint import FollowerStats as FollowerStats
    from ._checkpoints._evaluation import Evaluation as Evaluation
    from ._checkpoints._evaluation import Outcome as Outcome
    from ._checkpoints._evaluation import SidecarStats as SidecarStats
    from ._checkpoints._follower import CheckpointFollower as CheckpointFollower
    from ._checkpoints._layouts import CheckpointPattern as CheckpointPattern
    from ._checkpoints._layouts import Layout as Layout
    from ._checkpoints._options import FollowOptions as FollowOptions
    from ._checkpoints._options import FollowSettings as FollowSettings
    from ._checkpoints._options import Watch as Watch
    from ._checkpoints._progress import CheckpointFound as CheckpointFound
    from ._checkpoints._progress import Evaluated as Evaluated
    from ._checkpoints._progress import Evaluating as Evaluating
    from ._checkpoints._progress import FollowingEnded as FollowingEnded
    from ._checkpoints._progress import ProgressEvent as ProgressEvent
    from ._checkpoints._progress import Waiting as Waiting
    from ._checkpoints._sidecar import SidecarEvaluator as SidecarEvaluator
    from ._checkpoints._sidecar_policy import EndReason as EndReason
    from ._done_marker import TrainingEnd as TrainingEnd
    from ._done_marker import TrainingStatus as TrainingStatus
    from ._done_marker import clear_done_marker as clear_done_marker
    from ._done_marker import mark_training_done as mark_training_done
    from ._done_marker import read_training_end as read_training_end
    from ._protocols import CoordinatorLike as CoordinatorLike
    from ._protocols import Waitable as Waitable
    from ._tick_stats import TickStats as TickStats
    from ._tuning._history import TuningHistory as TuningHistory
    from ._tuning._history import TuningRecord as TuningRecord
    from ._tuning._spe import StepsPerExecution as StepsPerExecution
    from ._tuning._tuner import StepsPerExecutionTuner as StepsPerExecutionTuner

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it from here)

__all__ = [
    "Checkpoint",
    "CheckpointFollower",
    "CheckpointFound",
    "CheckpointIterator",
    "CheckpointPattern",
    "Clock",
    "Coordinator",
    "CoordinatorLike",
    "EndReason",
    "Evaluated",
    "Evaluating",
    "Evaluation",
    "FollowOptions",
    "FollowSettings",
    "FollowerStats",
    "FollowingEnded",
    "Layout",
    "LooperThread",
    "MonotonicClock",
    "OnError",
    "Outcome",
    "Overrun",
    "ProgressEvent",
    "SidecarEvaluator",
    "SidecarStats",
    "SignalStop",
    "StepsPerExecution",
    "StepsPerExecutionTuner",
    "TickStats",
    "TimedThread",
    "TrainingEnd",
    "TrainingStatus",
    "TuningHistory",
    "TuningRecord",
    "Waitable",
    "Waiting",
    "Watch",
    "checkpoints_iterator",
    "clear_done_marker",
    "every",
    "latest_checkpoint",
    "mark_training_done",
    "read_training_end",
    "stop_on_signals",
    "stoppable_put",
    "wait_for_new_checkpoint",
]

# Exports name `tickwork` as their module (reprs, pickles); dir(tickwork) lists __all__; the names
# of _LAZY are resolved by the module __getattr__ this installs.
_publish(globals(), lazy=_LAZY)
