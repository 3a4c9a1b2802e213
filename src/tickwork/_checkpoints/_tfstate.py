"""TensorFlow's ``checkpoint`` state file, read without TensorFlow.

TensorFlow's savers keep a small text-format protobuf (``CheckpointState``) beside the
checkpoints::

    model_checkpoint_path: "ckpt-3"
    all_model_checkpoint_paths: "ckpt-1"
    all_model_checkpoint_paths: "ckpt-2"
    all_model_checkpoint_paths: "ckpt-3"
    all_model_checkpoint_timestamps: 1700000000.5
    last_preserved_timestamp: 1699999990.1

:func:`parse_checkpoint_state` reads that format (strings in single or double quotes with C
escapes, adjacent strings joined, ``#`` comments, list syntax for repeated fields) and, like
TensorFlow, refuses unknown fields and a state without ``model_checkpoint_path``.
:func:`resolve_prefix` turns a recorded path into the one TensorFlow returns.
"""

from __future__ import annotations

import os
import posixpath
import re
import string
from dataclasses import dataclass, field

from ._layouts import SortKey, sort_key, trailing_step

__all__ = [
    "DEFAULT_STATE_FILENAME",
    "StateFileError",
    "TFCheckpointState",
    "TFNames",
    "is_url",
    "parse_checkpoint_state",
    "resolve_prefix",
]

DEFAULT_STATE_FILENAME = "checkpoint"

_STRING_FIELDS = {"model_checkpoint_path": False, "all_model_checkpoint_paths": True}
_FLOAT_FIELDS = {"all_model_checkpoint_timestamps": True, "last_preserved_timestamp": False}

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[-+]?(?:inf(?:inity)?|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?", re.I)
_SIMPLE_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
    "'": 39,
    '"': 34,
    "?": 63,
}


class StateFileError(ValueError):
    """The state file is not a valid ``CheckpointState``; the message says where and why."""


@dataclass(frozen=True)
class TFCheckpointState:
    """The fields of a ``CheckpointState``, paths as recorded (relative or absolute)."""

    model_checkpoint_path: str
    all_model_checkpoint_paths: tuple[str, ...] = ()
    all_model_checkpoint_timestamps: tuple[float, ...] = ()
    last_preserved_timestamp: float | None = None


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> StateFileError:
        line = self.text.count("\n", 0, self.pos) + 1
        column = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return StateFileError(f"line {line}, column {column}: {message}")

    def skip_space(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch.isspace():
                self.pos += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            else:
                return

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, ch: str) -> bool:
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def ident(self) -> str:
        self.skip_space()
        found = _IDENT.match(self.text, self.pos)
        if not found:
            raise self.error(f"expected a field name; got {self.text[self.pos : self.pos + 20]!r}")
        self.pos = found.end()
        return found.group(0)

    def number(self) -> float:
        self.skip_space()
        found = _NUMBER.match(self.text, self.pos)
        if not found:
            raise self.error(f"expected a number; got {self.text[self.pos : self.pos + 20]!r}")
        self.pos = found.end()
        return float(found.group(0).rstrip("fF"))

    def string(self) -> str:
        """One or more adjacent quoted strings, joined and decoded as UTF-8."""
        data = bytearray()
        if self.peek() not in ("'", '"'):
            found = self.text[self.pos : self.pos + 20]
            raise self.error(f"expected a quoted string; got {found!r}")
        while self.peek() in ("'", '"'):
            self._quoted(data)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"string is not valid UTF-8: {exc}") from None

    def _quoted(self, data: bytearray) -> None:
        text = self.text
        quote = text[self.pos]
        self.pos += 1
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error("string not closed before the end of the line")
            ch = text[self.pos]
            self.pos += 1
            if ch == quote:
                return
            if ch != "\\":
                data += ch.encode("utf-8")
                continue
            if self.pos >= len(text):
                raise self.error("escape at the end of the file")
            esc = text[self.pos]
            self.pos += 1
            if esc in _SIMPLE_ESCAPES:
                data.append(_SIMPLE_ESCAPES[esc])
            elif esc in "01234567":
                digits = esc
                while len(digits) < 3 and self.pos < len(text) and text[self.pos] in "01234567":
                    digits += text[self.pos]
                    self.pos += 1
                value = int(digits, 8)
                if value > 255:
                    raise self.error(f"octal escape \\{digits} is not a byte")
                data.append(value)
            elif esc in "xX":
                found = re.match(r"[0-9A-Fa-f]{1,2}", text[self.pos :])
                if not found:
                    raise self.error("\\x escape without hex digits")
                self.pos += found.end()
                data.append(int(found.group(0), 16))
            elif esc in "uU":
                width = 4 if esc == "u" else 8
                digits = text[self.pos : self.pos + width]
                if len(digits) != width or not all(c in string.hexdigits for c in digits):
                    raise self.error(f"\\{esc} escape needs {width} hex digits")
                self.pos += width
                try:
                    data += chr(int(digits, 16)).encode("utf-8")
                except (ValueError, UnicodeEncodeError):
                    raise self.error(f"\\{esc}{digits} is not a character") from None
            else:
                raise self.error(f"unknown escape \\{esc}")


def parse_checkpoint_state(text: str) -> TFCheckpointState:
    """Parse the text of a ``checkpoint`` state file.

    Raises :class:`StateFileError` (naming the line and column) for anything TensorFlow's
    ``text_format.Merge`` would refuse, and for a state without ``model_checkpoint_path``
    (TensorFlow raises ValueError there).
    """
    reader = _Reader(text)
    strings: dict[str, list[str]] = {name: [] for name in _STRING_FIELDS}
    floats: dict[str, list[float]] = {name: [] for name in _FLOAT_FIELDS}
    while reader.peek():
        start = reader.pos
        name = reader.ident()
        if name not in _STRING_FIELDS and name not in _FLOAT_FIELDS:
            reader.pos = start
            raise reader.error(f"CheckpointState has no field named {name!r}")
        if not reader.take(":"):
            raise reader.error(f"expected ':' after {name!r}")
        repeated = _STRING_FIELDS.get(name, _FLOAT_FIELDS.get(name, False))
        read = reader.string if name in _STRING_FIELDS else reader.number
        values: list[str] | list[float] = strings[name] if name in strings else floats[name]
        if repeated and reader.take("["):
            if not reader.take("]"):
                while True:
                    values.append(read())  # type: ignore[arg-type]
                    if reader.take("]"):
                        break
                    if not reader.take(","):
                        raise reader.error("expected ',' or ']' in a list")
        else:
            values.append(read())  # type: ignore[arg-type]
        if not reader.take(","):
            reader.take(";")
    model = strings["model_checkpoint_path"]
    if not model or not model[-1]:
        raise StateFileError("the state has no model_checkpoint_path")
    preserved = floats["last_preserved_timestamp"]
    return TFCheckpointState(
        model_checkpoint_path=model[-1],
        all_model_checkpoint_paths=tuple(strings["all_model_checkpoint_paths"]),
        all_model_checkpoint_timestamps=tuple(floats["all_model_checkpoint_timestamps"]),
        last_preserved_timestamp=preserved[-1] if preserved else None,
    )


def is_url(path: str) -> bool:
    """True for ``scheme://...`` paths (fsspec URLs)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path) is not None


def resolve_prefix(checkpoint_dir: str, recorded: str, *, remote: bool) -> str:
    """The path TensorFlow returns for a recorded checkpoint path.

    Locally that is TensorFlow's own rule: an absolute path as recorded, a relative one joined to
    the directory as given (``os.path.join``). For a remote directory the join uses ``/`` and a
    recorded URL counts as absolute.
    """
    if remote:
        if is_url(recorded) or recorded.startswith("/"):
            return recorded
        return posixpath.join(checkpoint_dir, recorded)
    if os.path.isabs(recorded):
        return recorded
    return os.path.join(checkpoint_dir, recorded)


@dataclass
class TFNames:
    """What the state file has named so far in a followed directory.

    A checkpoint once named stays named (TensorFlow drops old names as it deletes their files).
    ``max_named``: the highest checkpoint ever named; ``latest``: the key of the state's
    ``model_checkpoint_path`` now.
    """

    named: dict[str, str] = field(default_factory=dict)  # key (prefix basename) -> path
    latest: str | None = None
    outside: set[str] = field(default_factory=set)  # recorded paths outside the directory
    max_named: SortKey | None = None
    _raw: bytes | None = None

    def update(self, raw: bytes, directory: str, *, remote: bool) -> set[str] | None:
        """Read a new version of the state file; the keys newly named (None when ``raw`` is the
        version read last). Raises StateFileError (or UnicodeDecodeError) when it is corrupt.

        A recorded path outside ``directory`` (``/elsewhere/ckpt-2``, ``../x/ckpt-2``) names no
        checkpoint of this directory: it is not named, and goes to :attr:`outside`."""
        if raw == self._raw:
            return None
        self._raw = raw
        state = parse_checkpoint_state(raw.decode("utf-8"))
        changed: set[str] = set()
        self.outside = set()
        for recorded in (*state.all_model_checkpoint_paths, state.model_checkpoint_path):
            path = resolve_prefix(directory, recorded, remote=remote)
            key = _inside(directory, path, remote=remote)
            if key is None:
                self.outside.add(recorded)
                continue
            if self.named.get(key) != path:
                self.named[key] = path
                changed.add(key)
            order = sort_key(trailing_step(key), key)
            if self.max_named is None or order > self.max_named:
                self.max_named = order
        latest = resolve_prefix(directory, state.model_checkpoint_path, remote=remote)
        self.latest = _inside(directory, latest, remote=remote)
        return changed


def _inside(directory: str, path: str, *, remote: bool) -> str | None:
    """The key (base name) of ``path`` when it lies directly in ``directory``, else None."""
    if remote:
        parent, key = posixpath.split(posixpath.normpath(path))
        same = parent == posixpath.normpath(directory.rstrip("/"))
    else:
        parent, key = os.path.split(os.path.normpath(path))
        same = parent == os.path.normpath(directory)
    return key if key and same else None
