"""Helpers for the checkpoint-following tests: a scripted in-memory storage, a scripted event
backend, the patch that puts them in place of the real ones, and builders of checkpoint files."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import struct
import threading
import zipfile
from collections import Counter
from collections.abc import Collection, Iterator
from typing import Any
from unittest import mock

from tickwork import Waitable
from tickwork._checkpoints import _follower, _sidecar
from tickwork._checkpoints._events import EventBackend
from tickwork._checkpoints._storage import Entry, Storage


@contextlib.contextmanager
def fakes(storage: Storage | None = None, events: EventBackend | None = None) -> Iterator[None]:
    """While the block runs, followers and evaluators made in it use ``storage`` instead of
    opening their directory, and ``events`` as their event backend (as watchfiles' tests do:
    the module-level factories are patched, the public signatures carry no test seams). Both
    are resolved when the follower is made, so it keeps them after the block."""
    with contextlib.ExitStack() as stack:
        if storage is not None:

            def open_fake(directory: object, options: Any = None) -> Storage:
                return storage

            for module in (_follower, _sidecar):
                stack.enter_context(mock.patch.object(module, "open_storage", open_fake))
        if events is not None:
            stack.enter_context(
                mock.patch.object(_follower, "default_backend", return_value=events)
            )
        yield


class MemoryStorage(Storage):
    """A checkpoint directory held in memory, with every call counted.

    ``files`` maps relative paths (``name`` or ``name/inner``) to bytes; ``dirs`` holds directory
    paths. ``exists_dir`` False means the checkpoint directory itself does not exist yet.
    """

    def __init__(self, *, remote: bool = False, protocol: str = "file") -> None:
        self.directory = "mem://run" if remote else "/mem/run"
        self.remote = remote
        self.protocol = protocol
        self.atomic_rename = not remote
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self.loops: set[str] = set()
        self.exists_dir = True
        self.is_file = False
        self.calls: Counter[str] = Counter()
        self.mtimes: dict[str, int] = {}
        self._tick = 0

    # -- scripting --------------------------------------------------------------------------------

    def write(self, path: str, data: bytes) -> None:
        parent = path.rpartition("/")[0]
        while parent:
            self.dirs.add(parent)
            parent = parent.rpartition("/")[0]
        self.files[path] = data
        self._tick += 1
        self.mtimes[path] = self._tick

    def mkdir(self, path: str) -> None:
        self.dirs.add(path)
        self._tick += 1
        self.mtimes[path] = self._tick

    def remove(self, name: str) -> None:
        for path in [p for p in self.files if p == name or p.startswith(name + "/")]:
            del self.files[path]
        for path in [p for p in self.dirs if p == name or p.startswith(name + "/")]:
            self.dirs.discard(path)

    def rename(self, old: str, new: str) -> None:
        for path in [p for p in self.files if p == old or p.startswith(old + "/")]:
            self.files[new + path[len(old) :]] = self.files.pop(path)
        for path in [p for p in self.dirs if p == old or p.startswith(old + "/")]:
            self.dirs.discard(path)
            self.dirs.add(new + path[len(old) :])

    # -- Storage ----------------------------------------------------------------------------------

    def join(self, name: str) -> str:
        return f"{self.directory}/{name}"

    def probe(self) -> bool:
        self.calls["probe"] += 1
        if self.is_file:
            raise NotADirectoryError(f"'checkpoint_dir' must be a directory; got a file: {self}")
        return self.exists_dir

    def listdir(self) -> dict[str, Entry]:
        self.calls["listdir"] += 1
        if not self.exists_dir:
            raise FileNotFoundError(self.directory)
        names: dict[str, Entry] = {}
        for path in self.files:
            if "/" not in path:
                names[path] = self._entry(path)
        for path in self.dirs:
            if "/" not in path:
                names[path] = self._entry(path)
        for name in self.loops:
            names[name] = Entry(name, False, error="Too many levels of symbolic links")
        return names

    def _entry(self, path: str) -> Entry:
        if path in self.dirs:
            return Entry(path, True, 0, self.mtimes.get(path))
        data = self.files[path]
        return Entry(path, False, len(data), self.mtimes.get(path), etag=str(hash(data)))

    def stat(self, name: str) -> Entry | None:
        self.calls["stat"] += 1
        if name in self.loops:
            return Entry(name, False, error="Too many levels of symbolic links")
        if name in self.files or name in self.dirs:
            return self._entry(name)
        return None

    def read_at(self, relpath: str, offset: int, size: int) -> bytes:
        self.calls["read_at"] += 1
        if relpath not in self.files:
            raise FileNotFoundError(relpath)
        return self.files[relpath][offset : offset + size]

    def read_bytes(self, name: str) -> bytes | None:
        self.calls["read_bytes"] += 1
        return self.files.get(name)

    def exists(self, relpath: str) -> bool:
        self.calls["exists"] += 1
        return relpath in self.files or relpath in self.dirs

    def walk(self, name: str) -> list[Entry]:
        self.calls["walk"] += 1
        return [self._entry(p) for p in sorted(self.files) if p.startswith(name + "/")]

    def __repr__(self) -> str:
        return f"MemoryStorage({self.directory!r})"


class ScriptedEvents:
    """An event backend that replays the batches a test pushes (as watchfiles tests itself).

    ``watch()`` yields an empty batch at once (the watch is in place), then each pushed batch of
    paths; an exception pushed with :meth:`fail` is raised there. It ends soon after its stop
    signal is set (looked at every 5 ms of real time).
    """

    def __init__(self, directory: str = "/mem/run") -> None:
        self.directory = directory
        self._batches: queue.Queue[Collection[str] | BaseException] = queue.Queue()
        self.started = threading.Event()
        self.ended = threading.Event()

    def push(self, *names: str) -> None:
        """One batch: ``names`` changed (entry names; ``""`` is the directory itself)."""
        self._batches.put({f"{self.directory}/{n}" if n else self.directory for n in names})

    def fail(self, error: BaseException) -> None:
        self._batches.put(error)

    def watch(self, directory: str, stop: Waitable) -> Iterator[Collection[str]]:
        self.started.set()
        try:
            yield set()
            while not stop.is_set():
                try:
                    item = self._batches.get(timeout=0.005)
                except queue.Empty:
                    continue
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.ended.set()


# -- checkpoint file builders ---------------------------------------------------------------------


def zip_bytes(entries: int = 3, payload: int = 256, comment: bytes = b"") -> bytes:
    """A complete zip archive (what torch.save and Keras write)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(entries):
            archive.writestr(f"archive/data/{i}", bytes(range(256)) * (payload // 256 + 1))
        archive.comment = comment
    return buffer.getvalue()


def safetensors_bytes(tensors: int = 2, size: int = 64) -> bytes:
    """A complete safetensors file of float32 zeros."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for i in range(tensors):
        header[f"t{i}"] = {
            "dtype": "F32",
            "shape": [size],
            "data_offsets": [offset, offset + 4 * size],
        }
        offset += 4 * size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\x00" * offset


def tf_state(model: str, *paths: str) -> bytes:
    """A TensorFlow ``checkpoint`` state file."""
    lines = [f'model_checkpoint_path: "{model}"']
    lines += [f'all_model_checkpoint_paths: "{p}"' for p in (paths or (model,))]
    return ("\n".join(lines) + "\n").encode()


def write_tf(storage: MemoryStorage, step: int, *, shards: int = 1, name: str = "ckpt") -> str:
    """The files of TensorFlow checkpoint ``<name>-<step>`` (state file not touched)."""
    prefix = f"{name}-{step}"
    for i in range(shards):
        storage.write(f"{prefix}.data-{i:05d}-of-{shards:05d}", b"data")
    storage.write(f"{prefix}.index", b"index")
    return prefix
