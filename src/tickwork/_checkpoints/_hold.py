"""Holding a checkpoint: hard links that keep its files alive while the consumer reads them.

Training deletes old checkpoints (``max_to_keep``) whenever it likes, including the one an
evaluator is loading. With ``hold=True`` the follower hard-links every file of the checkpoint it
hands out into a hold directory and hands out that copy; deleting the original then only removes
a name, and the data stays until the hold is released (when the consumer moves on). It costs no
copying and no space until the training deletes its own copy.

Where it cannot work, and why:

* remote storage (``s3://``, ``gs://``...): object stores have no hard links. The follower
  refuses ``hold=True`` there; keep checkpoints longer, or use object versioning.
* a hold directory on another filesystem than the checkpoints: hard links cannot cross
  filesystems (checked at start, and refused).
* filesystems without hard links (some FUSE mounts): the first hold fails with the OS error.
* a file rewritten *in place* (truncated and written again under the same name): a hard link is
  the same file, so it changes too. Writers that replace files by renaming (TensorFlow, Orbax,
  Keras) or write new names per step are fine.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import socket
from collections.abc import Sequence

from ._checkpoint import Checkpoint

__all__ = ["HOLD_DIRNAME", "Holder"]

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
