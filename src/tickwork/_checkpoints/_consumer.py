"""The consumer's side of following: the hold on the checkpoint in use (:class:`Holder`) and the
resume file recording the last one finished (:func:`load_resume`, :func:`save_resume`).

A hold hard-links every file of the checkpoint handed out into a hold directory and hands out
that copy, so training deleting it (``max_to_keep``) removes only a name. It works on local
filesystems only: object stores have no hard links (refused), links cannot cross filesystems
(checked at start), and a file rewritten *in place* changes in the hold too.

The resume file is a small JSON document, replaced atomically (written beside itself, flushed,
renamed over the old one), so a crash leaves either the old or the new record::

    {"format": "tickwork.checkpoints/1", "checkpoint_dir": "/runs/a",
     "layout": "tensorflow", "done": {"key": "ckpt-5", "step": 5, "path": "/runs/a/ckpt-5"}}
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import ErrorLog
from ._checkpoint import Checkpoint, Counters
from ._storage import read_small_file

__all__ = [
    "FORMAT",
    "HOLD_DIRNAME",
    "Holder",
    "ResumeFile",
    "ResumeFileError",
    "ResumePoint",
    "load_resume",
    "save_resume",
]

logger = logging.getLogger(__name__)

HOLD_DIRNAME = ".tickwork-hold"


def _raise(error: OSError) -> None:
    raise error


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Holder:
    """Makes and releases holds in ``hold_dir`` (default: ``.tickwork-hold`` inside the
    checkpoint directory, which every supported layout ignores)."""

    def __init__(self, checkpoint_dir: str, hold_dir: str | None) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.hold_dir = hold_dir or os.path.join(checkpoint_dir, HOLD_DIRNAME)
        self._host = socket.gethostname().replace("-", "_") or "host"
        self._tag = f"{self._host}-{os.getpid()}"
        self._count = itertools.count()
        self._prepared = False

    def prepare(self) -> None:
        """Create the hold directory and check that hard links can reach it (once the checkpoint
        directory exists). Raises OSError naming ``hold_dir`` when they cannot."""
        if self._prepared:
            return
        os.makedirs(self.hold_dir, exist_ok=True)
        source_device = os.stat(self.checkpoint_dir).st_dev
        if os.stat(self.hold_dir).st_dev != source_device:
            raise OSError(
                errno.EXDEV,
                f"'hold_dir' must be on the same filesystem as the checkpoints (hard links cannot "
                f"cross filesystems); got {self.hold_dir!r}",
            )
        self._remove_stale()
        self._prepared = True

    def _remove_stale(self) -> None:
        """Remove holds left by dead processes of this host (their pid is in the name)."""
        if os.name != "posix":
            return
        for name in os.listdir(self.hold_dir):
            host, _, rest = name.partition("-")
            pid_text = rest.partition("-")[0]
            if host != self._host or not pid_text.isdigit():
                continue
            pid = int(pid_text)
            if pid == os.getpid() or not _pid_alive(pid):
                logger.info("removing a hold left by process %d: %s", pid, name)
                shutil.rmtree(os.path.join(self.hold_dir, name), ignore_errors=True)

    def hold(self, checkpoint: Checkpoint, members: Sequence[str]) -> Checkpoint:
        """Hard-link ``members`` (entry names in the checkpoint directory) and return the held
        checkpoint. FileNotFoundError when the checkpoint was deleted meanwhile (nothing is left
        behind)."""
        self.prepare()
        base = os.path.join(self.hold_dir, f"{self._tag}-{next(self._count)}")
        os.makedirs(base)
        files: list[str] = []
        try:
            for name in members:
                files.extend(self._link(name, base))
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        held = os.path.join(base, checkpoint.name)
        return Checkpoint(
            held,
            step=checkpoint.step,
            layout=checkpoint.layout,
            files=sorted(files),
            source=checkpoint.source,
        )

    def _link(self, name: str, base: str) -> list[str]:
        source = os.path.join(self.checkpoint_dir, name)
        target = os.path.join(base, name)
        if not os.path.isdir(source):
            os.link(source, target)
            return [target]
        if not os.path.exists(source):
            raise FileNotFoundError(errno.ENOENT, "checkpoint deleted before it was held", source)
        for root, _dirs, names in os.walk(source, onerror=_raise):
            into = os.path.join(target, os.path.relpath(root, source))
            os.makedirs(into, exist_ok=True)
            for file in names:
                os.link(os.path.join(root, file), os.path.join(into, file))
        if not os.path.isdir(source):
            raise FileNotFoundError(errno.ENOENT, "checkpoint deleted while being held", source)
        return [target]

    def release(self, checkpoint: Checkpoint) -> None:
        """Remove a hold made by :meth:`hold` (errors are logged, never raised)."""
        if not checkpoint.held:
            return
        base = os.path.dirname(checkpoint.path)
        if os.path.dirname(base) != self.hold_dir:
            return
        try:
            shutil.rmtree(base)
        except FileNotFoundError:
            pass
        except OSError:
            logger.warning("could not release the hold %r", base, exc_info=True)

    def __repr__(self) -> str:
        return f"Holder({self.hold_dir!r})"


# -- the resume file -------------------------------------------------------------------------------

FORMAT = "tickwork.checkpoints/1"


class ResumeFileError(ValueError):
    """The resume file cannot be used; the message says why."""


@dataclass(frozen=True)
class ResumePoint:
    """The last checkpoint finished: its key (name), step and path."""

    key: str
    step: int | None
    path: str


def load_resume(path: str, checkpoint_dir: str) -> ResumePoint | None:
    """The point recorded in ``path``; None when the file does not exist.

    Raises :class:`ResumeFileError` when it is unreadable, not a resume file, or was written for
    another checkpoint directory.
    """
    try:
        raw = read_small_file(path)
        if raw is None:
            return None
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResumeFileError(f"cannot read resume file {path!r}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ResumeFileError(f"resume file {path!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResumeFileError(f"{path!r} is not a tickwork resume file (format {FORMAT!r})")
    recorded_dir = data.get("checkpoint_dir")
    if recorded_dir != checkpoint_dir:
        raise ResumeFileError(
            f"resume file {path!r} records checkpoint_dir {recorded_dir!r}, not "
            f"{checkpoint_dir!r}; use one resume file per checkpoint directory"
        )
    done = data.get("done")
    if done is None:
        return None
    if not isinstance(done, dict):
        raise ResumeFileError(f"resume file {path!r}: 'done' must be an object; got {done!r}")
    key, step, where = done.get("key"), done.get("step"), done.get("path")
    if not isinstance(key, str) or not isinstance(where, str):
        raise ResumeFileError(f"resume file {path!r}: 'done' lacks its key or path: {done!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise ResumeFileError(f"resume file {path!r}: 'step' must be an int or null; got {step!r}")
    return ResumePoint(key, step, where)


def save_resume(path: str, checkpoint_dir: str, layout: str | None, point: ResumePoint) -> None:
    """Record ``point`` in ``path``, atomically."""
    record = {
        "format": FORMAT,
        "checkpoint_dir": checkpoint_dir,
        "layout": layout,
        "done": {"key": point.key, "step": point.step, "path": point.path},
    }
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(record, file, indent=1)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # directories cannot be opened on some systems; the rename is done
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # not every filesystem syncs directories; the rename itself is atomic
    finally:
        os.close(descriptor)


class ResumeFile:
    """The follower's ``state_file``: what it loads at start and records after each checkpoint;
    a failure is logged, counted and kept, never raised (the follower starts afresh, or goes on)."""

    def __init__(
        self, path: str, checkpoint_dir: str, errors: ErrorLog, counters: Counters
    ) -> None:
        self.path = path
        self._directory = checkpoint_dir
        self._errors = errors
        self._counters = counters

    def load(self) -> ResumePoint | None:
        try:
            point = load_resume(self.path, self._directory)
        except ResumeFileError as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            logger.error("starting afresh: %s", exc, exc_info=True)
            return None
        if point is not None:
            logger.info(
                "resuming after checkpoint %r (step %s) recorded in %r",
                point.path,
                point.step,
                self.path,
            )
        return point

    def save(self, layout: str | None, point: ResumePoint) -> None:
        try:
            save_resume(self.path, self._directory, layout, point)
        except OSError as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            logger.error("could not record progress in %r", self.path, exc_info=True)
