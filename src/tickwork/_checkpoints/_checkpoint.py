"""What a follower hands out (:class:`Checkpoint`) and what it has done (:class:`FollowerStats`,
counted by :class:`Counters`)."""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Checkpoint", "Counters", "FollowerStats"]


def _rebuild(
    path: str, step: int | None, layout: str, files: tuple[str, ...], source: str
) -> Checkpoint:
    return Checkpoint(path, step=step, layout=layout, files=files, source=source)


class Checkpoint(str):
    """A checkpoint's path, as a ``str``, that also tells its step.

    It is the string TensorFlow would return (for TensorFlow layouts, the checkpoint *prefix*
    such as ``"train/ckpt-5"``; for a step directory or a single file, its path), so code written
    for ``tf.train.checkpoints_iterator`` keeps working. It also carries:

    ``step``
        The step the checkpoint was saved at, read from its name (``ckpt-5``, ``checkpoint-500``,
        ``epoch=3-step=500.ckpt``, ...); the epoch where the name gives only an epoch; None when
        the name carries no number.
    ``layout``
        The layout it was found in: ``"tensorflow"``, ``"orbax"``, ``"huggingface"``,
        ``"keras"``, ``"torch"`` or ``"pattern"``.
    ``files``
        The paths that make it up: a TensorFlow checkpoint's ``.index`` and data shards, or the
        single directory or file.
    ``source``
        Where the training wrote it. It differs from the path only when the follower holds the
        checkpoint (``hold=True``): the path is then the held copy, safe from deletion.
    """

    step: int | None
    layout: str
    files: tuple[str, ...]
    source: str

    def __new__(
        cls,
        path: str,
        *,
        step: int | None = None,
        layout: str = "pattern",
        files: Sequence[str] = (),
        source: str | None = None,
    ) -> Checkpoint:
        self = super().__new__(cls, path)
        self.step = step
        self.layout = layout
        self.files = tuple(files)
        self.source = path if source is None else source
        return self

    @property
    def path(self) -> str:
        """The path as a plain ``str``."""
        return str.__str__(self)

    @property
    def name(self) -> str:
        """The last component of the path (``ckpt-5``, ``checkpoint-500``, ``model_3.keras``)."""
        return posixpath.basename(self.path.replace("\\", "/").rstrip("/"))

    @property
    def held(self) -> bool:
        """True when the path is a held copy (see ``hold=``), not where the training wrote it."""
        return self.source != self.path

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.path, self.step, self.layout, self.files, self.source))

    def __repr__(self) -> str:
        held = f", source={self.source!r}" if self.held else ""
        return f"Checkpoint({self.path!r}, step={self.step!r}, layout={self.layout!r}{held})"


@dataclass(frozen=True)
class FollowerStats:
    """What a checkpoint follower has done so far (a snapshot; it does not change).

    ``yielded``
        Checkpoints handed to the consumer.
    ``skipped``
        Complete checkpoints passed over because a newer one was handed out instead
        (``skip_to_latest=True``, TensorFlow's behaviour).
    ``deleted_before_reached``
        Checkpoints that were due to be handed out but were deleted (by ``max_to_keep``, say)
        before the consumer got to them. Each one is also logged.
    ``rejected``
        Entries that look like checkpoints but never will be: corrupt files, symlink loops,
        unreadable state files. Each one is logged.
    ``errors``
        Errors met while looking (listing failures, unreadable files); each is logged with its
        traceback and the follower goes on.
    ``pending``
        Checkpoints present now but not yet complete (being written).
    ``scans``
        Full listings of the directory (one per poll; on the event-driven path only at start, after
        the directory reappears and as a periodic safety net).
    ``change_batches``
        Batches of filesystem events handled (event-driven path only).
    ``mode``
        How the directory is watched: ``"events"``, ``"poll"`` or ``"remote"`` (polling through
        fsspec), or ``"waiting"`` before the directory exists.
    ``layout``
        The layout in use, once known.
    ``last_step``
        The step of the last checkpoint handed out.
    ``resumed_from``
        The step recorded in the state file at start, when resuming.
    ``missing``
        True while the directory does not exist: it has not appeared yet (logged once, as a
        warning) or it is gone. It is looked for again and again, and followed once it appears.
    """

    yielded: int = 0
    skipped: int = 0
    deleted_before_reached: int = 0
    rejected: int = 0
    errors: int = 0
    pending: int = 0
    scans: int = 0
    change_batches: int = 0
    mode: str = "waiting"
    layout: str | None = None
    last_step: int | None = None
    resumed_from: int | None = None
    missing: bool = False


_NAMES = (
    "yielded",
    "skipped",
    "deleted_before_reached",
    "rejected",
    "errors",
    "scans",
    "change_batches",
)


class Counters:
    """Counts what a follower did; read from any thread with :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_NAMES, 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
