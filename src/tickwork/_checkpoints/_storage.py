"""Where checkpoints live: a local directory (``os``) here, remote storage in :mod:`._fsspec`.

Both give the follower the same small interface: probe the directory, list it (top level),
stat one entry, read a few bytes of a file, test for a file inside a checkpoint directory, and
walk a checkpoint directory. Only regular files are opened, without blocking, and small files
are read with a size bound: a FIFO or a device never stalls or floods a follower.
"""

from __future__ import annotations

import abc
import errno
import logging
import os
import stat as stat_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._tfstate import is_url

__all__ = [
    "SMALL_FILE_LIMIT",
    "WALK_LIMIT",
    "Entry",
    "LocalStorage",
    "NotARegularFile",
    "Storage",
    "changed_names",
    "network_filesystem",
    "not_a_directory",
    "open_storage",
    "read_small_file",
    "unreadable_directory",
]

logger = logging.getLogger(__name__)

# A walk of one checkpoint directory stops after this many files (a safety bound, not a limit
# any real checkpoint reaches).
WALK_LIMIT = 100_000

_NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph",
        "glusterfs", "lustre", "gpfs", "beegfs", "panfs", "wekafs", "orangefs", "pvfs2",
        "davfs", "ocfs2", "gfs2", "virtiofs", "vboxsf", "vmhgfs",
    }
)  # fmt: skip
# FUSE filesystems that only ever show local writes (so inotify sees everything).
_LOCAL_FUSE = frozenset({"fuse.fuse-overlayfs", "fuse.lxcfs", "fuse.portal", "fuse.gvfsd-fuse"})


@dataclass(frozen=True)
class Entry:
    """One directory entry. ``size``/``mtime_ns``/``etag`` are None where the listing does not
    give them; ``error`` is set when the entry cannot be examined (a symlink loop, say)."""

    name: str
    is_dir: bool
    size: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None
    error: str | None = None

    @property
    def signature(self) -> tuple[object, ...]:
        """Changes when the entry changes (as far as its metadata tells)."""
        return (self.is_dir, self.size, self.mtime_ns, self.etag, self.error)


SMALL_FILE_LIMIT = 1 << 20
"""Bytes. A state file (TensorFlow's ``checkpoint``, the resume file) larger is refused."""


class NotARegularFile(OSError):
    """A file tickwork must read is a FIFO, a device or a socket, or is larger than it can be."""


def _open_regular(path: str) -> int:
    """A descriptor of the regular file ``path``, opened without blocking (a FIFO would block an
    open() for ever); NotARegularFile for anything else."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat_module.S_ISREG(mode):
            kind = "a directory" if stat_module.S_ISDIR(mode) else "a FIFO, device or socket"
            raise NotARegularFile(errno.EINVAL, f"not a regular file ({kind})", path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_small_file(path: str, limit: int = SMALL_FILE_LIMIT) -> bytes | None:
    """The whole regular file ``path`` (at most ``limit`` bytes); None when it does not exist.
    NotARegularFile when it is not a regular file or is larger than ``limit``."""
    try:
        descriptor = _open_regular(path)
    except FileNotFoundError:
        return None
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise NotARegularFile(errno.EFBIG, f"larger than {limit} bytes", path)
    return data


def changed_names(old: Mapping[str, Entry], new: Mapping[str, Entry], *, remote: bool) -> list[str]:
    """The names a new listing changes: gone, new, or a different kind or error (remotely, where
    a listing is all there is to see, any change of size, time or etag too)."""
    changed = [name for name in old if name not in new]
    for name, entry in new.items():
        before = old.get(name)
        if (
            before is None
            or before.is_dir != entry.is_dir
            or before.error != entry.error
            or (remote and before.signature != entry.signature)
        ):
            changed.append(name)
    return changed


class Storage(abc.ABC):
    """A checkpoint directory. ``directory`` is the path as the user gave it."""

    directory: str
    remote: bool
    protocol: str
    atomic_rename: bool  # a directory renamed into place appears complete at once

    @abc.abstractmethod
    def join(self, name: str) -> str:
        """The path of ``name`` in the directory, as handed out (TensorFlow's join locally)."""

    @abc.abstractmethod
    def probe(self) -> bool:
        """True when the directory exists, False when it does not (yet).

        Raises NotADirectoryError or PermissionError, naming ``checkpoint_dir``, when it exists
        but is not a directory that can be listed.
        """

    @abc.abstractmethod
    def listdir(self) -> dict[str, Entry]:
        """The top-level entries; FileNotFoundError when the directory is gone."""

    @abc.abstractmethod
    def stat(self, name: str) -> Entry | None:
        """The entry ``name`` (following symlinks), None when it does not exist."""

    @abc.abstractmethod
    def read_at(self, relpath: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` of the file ``relpath`` (``name``, ``name/inner``)."""

    @abc.abstractmethod
    def read_bytes(self, name: str) -> bytes | None:
        """The whole small file ``name`` (at most SMALL_FILE_LIMIT bytes); None when it does not
        exist; NotARegularFile when it is not a regular file or is larger."""

    @abc.abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether ``relpath`` (``name/inner``) exists."""

    @abc.abstractmethod
    def walk(self, name: str) -> list[Entry]:
        """The files under directory ``name``, recursively, named relative to the directory
        (``name/sub/file``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the storage holds."""


def not_a_directory(path: str) -> NotADirectoryError:
    return NotADirectoryError(
        errno.ENOTDIR, f"'checkpoint_dir' must be a directory; got a file: {path!r}", path
    )


def unreadable_directory(path: str, why: str) -> PermissionError:
    return PermissionError(
        errno.EACCES, f"'checkpoint_dir' must be a directory that can be listed; {why}", path
    )


class LocalStorage(Storage):
    """A directory on a filesystem this machine mounts."""

    remote = False
    protocol = "file"
    atomic_rename = True

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def join(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def probe(self) -> bool:
        path = self.directory
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return False
        except PermissionError:
            raise unreadable_directory(path, f"cannot reach {path!r} (permission denied)") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise unreadable_directory(path, f"{path!r} is a symbolic link loop") from None
            raise
        if not stat_module.S_ISDIR(info.st_mode):
            raise not_a_directory(path)
        try:
            with os.scandir(path):
                pass
        except PermissionError:
            raise unreadable_directory(path, f"cannot list {path!r} (permission denied)") from None
        return True

    def listdir(self) -> dict[str, Entry]:
        entries: dict[str, Entry] = {}
        with os.scandir(self.directory) as scan:
            for item in scan:
                try:
                    entries[item.name] = Entry(item.name, item.is_dir())
                except OSError as exc:
                    entries[item.name] = Entry(item.name, False, error=f"{exc.strerror or exc}")
        return entries

    def stat(self, name: str) -> Entry | None:
        try:
            info = os.stat(self.join(name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            return Entry(name, False, error=f"{exc.strerror or exc}")
        mode = info.st_mode
        if not (stat_module.S_ISDIR(mode) or stat_module.S_ISREG(mode)):
            return Entry(name, False, error="not a regular file (a FIFO, device or socket)")
        return Entry(name, stat_module.S_ISDIR(mode), info.st_size, info.st_mtime_ns, None)

    def read_at(self, relpath: str, offset: int, size: int) -> bytes:
        if size <= 0 or offset < 0:
            return b""
        with os.fdopen(_open_regular(self.join(relpath)), "rb") as file:
            file.seek(offset)
            return file.read(size)

    def read_bytes(self, name: str) -> bytes | None:
        return read_small_file(self.join(name))

    def exists(self, relpath: str) -> bool:
        return os.path.exists(self.join(relpath))

    def walk(self, name: str) -> list[Entry]:
        found: list[Entry] = []
        top = self.join(name)
        for root, _dirs, files in os.walk(top):
            rel_root = os.path.relpath(root, self.directory)
            for file in files:
                rel = os.path.join(rel_root, file)
                entry = self.stat(rel)
                if entry is not None:
                    found.append(entry)
                if len(found) >= WALK_LIMIT:
                    return found
        return found

    def __repr__(self) -> str:
        return f"LocalStorage({self.directory!r})"


def open_storage(
    directory: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> Storage:
    """Local storage for plain paths and ``file://`` URLs, fsspec for every other URL.

    ``directory`` (the user's ``checkpoint_dir``) must be a non-empty path.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"'checkpoint_dir' must be a str or os.PathLike; got {directory!r}")
    checkpoint_dir = os.fspath(directory)
    if not isinstance(checkpoint_dir, str) or not checkpoint_dir:
        raise ValueError(f"'checkpoint_dir' must be a non-empty path; got {directory!r}")
    if is_url(checkpoint_dir):
        if checkpoint_dir.startswith("file://"):
            if storage_options:
                raise ValueError(
                    "'storage_options' applies to remote directories only; got "
                    f"{dict(storage_options)!r} for {checkpoint_dir!r}"
                )
            return LocalStorage(checkpoint_dir[len("file://") :])
        from ._fsspec import FsspecStorage

        return FsspecStorage(checkpoint_dir, storage_options)
    if storage_options:
        raise ValueError(
            "'storage_options' applies to remote directories (s3://, gs://, ...) only; got "
            f"{dict(storage_options)!r} for the local path {checkpoint_dir!r}"
        )
    return LocalStorage(checkpoint_dir)


def _unescape_mount(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def network_filesystem(path: str, mountinfo: str | None = None) -> str | None:
    """The filesystem type when ``path`` lies on a network filesystem (where inotify does not see
    other machines' writes), else None. Linux only (reads ``/proc/self/mountinfo``); None
    elsewhere. ``mountinfo`` may be given as text (for tests)."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as file:
                mountinfo = file.read()
        except OSError:
            return None
    real = os.path.realpath(path)  # resolves the part that exists; a missing rest is kept
    best_point, best_type = "", ""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = _unescape_mount(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and len(point) >= len(best_point):
            best_point, best_type = point, tail[0]
    if best_type in _NETWORK_FILESYSTEMS:
        return best_type
    if best_type.startswith("fuse.") and best_type not in _LOCAL_FUSE:
        return best_type
    return None
