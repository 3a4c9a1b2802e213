"""The resume file: which checkpoint a consumer finished last, so a restart goes on from there.

A small JSON file, replaced atomically (written beside itself, flushed to disk, renamed over the
old one), so a crash leaves either the old or the new record, never half of one::

    {"format": "tickwork.checkpoints/1", "checkpoint_dir": "/runs/a",
     "layout": "tensorflow", "done": {"key": "ckpt-5", "step": 5, "path": "/runs/a/ckpt-5"}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

__all__ = ["FORMAT", "ResumeFileError", "ResumePoint", "load_resume", "save_resume"]

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
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return None
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
