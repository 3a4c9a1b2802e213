"""The structural types of tickwork's arguments (typing.Protocol), kept out of ``import tickwork``.

``typing`` costs a few milliseconds to import. The modules that ``import tickwork`` loads name
these types in annotations only (under ``TYPE_CHECKING``) and check arguments by duck typing;
``tickwork.Waitable`` and ``tickwork.CoordinatorLike`` are among the package's lazily imported
names.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias, runtime_checkable

__all__ = ["CoordinatorLike", "ForkAware", "StopSignal", "Waitable"]


@runtime_checkable
class Waitable(Protocol):
    """Anything that can be waited on for a stop: :class:`threading.Event` is one."""

    def is_set(self) -> bool:
        """True once the stop has been requested."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set (True) or ``timeout`` seconds pass (False); None waits for ever."""


class CoordinatorLike(Protocol):
    """A coordinator as a stop signal: tickwork's :class:`~tickwork.Coordinator` (local or
    :class:`~tickwork.distributed.Coordinator`) or TensorFlow's ``tf.train.Coordinator``."""

    def should_stop(self) -> bool:
        """True once a stop has been requested."""
        ...

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (True) or ``timeout`` seconds pass (False)."""
        ...


StopSignal: TypeAlias = "Waitable | CoordinatorLike | None"
"""What a ``stop=`` argument accepts (checked at run time by ``_clock.as_waitable``)."""


class ForkAware(Protocol):
    """An object that :func:`tickwork._fork.track` keeps fork-safe."""

    def _running_thread_names(self) -> list[str]:
        """In the parent, just before fork: the names of the threads this object has running."""
        ...

    def _after_fork_in_child(self) -> None:
        """In the child: fresh locks, and no thread counted as running."""
        ...
