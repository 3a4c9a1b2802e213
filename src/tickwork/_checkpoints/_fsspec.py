"""Remote checkpoint directories through fsspec (``s3://``, ``gs://``, ``memory://``, ...).

Listings bypass fsspec's listing caches every time (the filesystem is created with
``use_listings_cache=False`` and ``skip_instance_cache=True``, and each call invalidates the path
first): a stale cache is how followers of object stores freeze.
"""

from __future__ import annotations

import errno
import posixpath
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ._storage import (
    SMALL_FILE_LIMIT,
    WALK_LIMIT,
    Entry,
    NotARegularFile,
    Storage,
    not_a_directory,
    unreadable_directory,
)

__all__ = ["FsspecStorage"]


def _mtime_ns(info: Mapping[str, Any]) -> int | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value * 1e9)
        if isinstance(value, str) and value:
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                continue
    return None


class FsspecStorage(Storage):
    """A directory (prefix) on remote storage, through fsspec."""

    remote = True
    atomic_rename = False

    def __init__(self, directory: str, storage_options: Mapping[str, Any] | None = None) -> None:
        try:
            import fsspec  # the optional extra, imported where it is needed
        except ImportError as exc:
            raise ImportError(
                f"following a remote checkpoint directory ({directory!r}) needs fsspec: "
                "pip install 'tickwork[remote]' (or 'tickwork[s3]' for s3://)"
            ) from exc
        options = dict(storage_options or {})
        options.setdefault("use_listings_cache", False)
        options.setdefault("skip_instance_cache", True)
        self.directory = directory
        self.fs, path = fsspec.core.url_to_fs(directory, **options)
        self.root: str = str(path).rstrip("/")
        protocol = self.fs.protocol
        self.protocol = protocol[0] if isinstance(protocol, (tuple, list)) else str(protocol)

    def join(self, name: str) -> str:
        return f"{self.directory.rstrip('/')}/{name}"

    def _full(self, relpath: str) -> str:
        return self.root + "/" + relpath

    def _entry(self, info: Mapping[str, Any], name: str) -> Entry:
        etag = info.get("ETag", info.get("etag", info.get("md5Hash")))
        size = info.get("size")
        return Entry(
            name,
            info.get("type") == "directory",
            int(size) if isinstance(size, int) else None,
            _mtime_ns(info),
            str(etag) if etag is not None else None,
        )

    def probe(self) -> bool:
        self.fs.invalidate_cache(self.root)
        try:
            info = self.fs.info(self.root)
        except FileNotFoundError:
            return False
        except PermissionError:
            raise unreadable_directory(
                self.directory, f"access to {self.directory!r} denied"
            ) from None
        if info.get("type") != "directory":
            raise not_a_directory(self.directory)
        return True

    def listdir(self) -> dict[str, Entry]:
        self.fs.invalidate_cache(self.root)
        entries: dict[str, Entry] = {}
        for info in self.fs.ls(self.root, detail=True):
            name = posixpath.basename(str(info["name"]).rstrip("/"))
            if name and str(info["name"]).rstrip("/") != self.root:
                entries[name] = self._entry(info, name)
        return entries

    def stat(self, name: str) -> Entry | None:
        full = self._full(name)
        self.fs.invalidate_cache(full)
        try:
            return self._entry(self.fs.info(full), name)
        except FileNotFoundError:
            return None

    def read_at(self, relpath: str, offset: int, size: int) -> bytes:
        if size <= 0 or offset < 0:
            return b""
        data = self.fs.cat_file(self._full(relpath), start=offset, end=offset + size)
        return bytes(data)

    def read_bytes(self, name: str) -> bytes | None:
        full = self._full(name)
        try:
            with self.fs.open(full, "rb") as file:
                data = bytes(file.read(SMALL_FILE_LIMIT + 1))
        except FileNotFoundError:
            return None
        if len(data) > SMALL_FILE_LIMIT:
            raise NotARegularFile(errno.EFBIG, f"larger than {SMALL_FILE_LIMIT} bytes", full)
        return data

    def exists(self, relpath: str) -> bool:
        full = self._full(relpath)
        self.fs.invalidate_cache(full)
        return bool(self.fs.exists(full))

    def walk(self, name: str) -> list[Entry]:
        full = self._full(name)
        self.fs.invalidate_cache(full)
        found = self.fs.find(full, detail=True)
        entries = []
        for path, info in sorted(found.items()):
            rel = name + "/" + str(path)[len(full) :].lstrip("/")
            entries.append(self._entry(info, rel))
            if len(entries) >= WALK_LIMIT:
                break
        return entries

    def __repr__(self) -> str:
        return f"FsspecStorage({self.directory!r})"
