"""Checkpoint layouts: which directory entries are checkpoints, and of which step. Pure.

Steps are read from names (``ckpt-5``, ``checkpoint-500``, ``epoch=3-step=500.ckpt``,
``weights.05-0.32.weights.h5``); a name with no number has no step, and a file layout does not
follow it (``last.ckpt`` is rewritten in place under one name).

A layout *claims* directory entries (top level only): it says which checkpoint an entry belongs
to (its key), the step, and the entry's role. TensorFlow checkpoints are several files sharing
a prefix (``ckpt-5.index``, ``ckpt-5.data-00000-of-00001``); every other layout is one directory
or one file per checkpoint. Auto-detection picks a layout from the first entries that identify
one and keeps it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "COMMIT_MARKER",
    "DCP_MARKER",
    "HF_MARKER",
    "CheckpointPattern",
    "Claim",
    "Kind",
    "Layout",
    "Scheme",
    "SortKey",
    "dcp_scheme",
    "detect_scheme",
    "epoch_from_name",
    "looks_like_dcp",
    "scheme_for",
    "sort_key",
    "split_suffix",
    "step_from_name",
    "trailing_step",
]

COMMIT_MARKER = "commit_success.txt"  # Orbax's commit marker (written where rename is not atomic)
HF_MARKER = "trainer_state.json"  # the Hugging Face Trainer writes it into each checkpoint-<step>
DCP_MARKER = ".metadata"  # torch.distributed.checkpoint writes it last, after every shard
DCP_SIGNS = (DCP_MARKER, DCP_MARKER + ".tmp")  # names inside a directory that DCP writes
DCP_SHARD_SUFFIX = ".distcp"
_ORBAX_TMP = ".orbax-checkpoint-tmp"
KERAS_SUFFIXES = (".keras", ".weights.h5", ".h5")
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
_TF_INDEX = re.compile(r"(?P<key>.+)\.index", re.DOTALL)  # a prefix may hold any character
_TF_DATA = re.compile(r"(?P<key>.+)\.data-(?P<i>\d+)-of-(?P<n>\d+)", re.DOTALL)
_HF_DIR = re.compile(r"checkpoint-(?P<step>\d+)")
_ORBAX_ANY = re.compile(r"(?:(?P<prefix>.+)_)?(?P<step>\d+)")
_ORBAX_PREFIXED = re.compile(r"(?P<prefix>[A-Za-z][\w.-]*?)_(?P<step>\d+)")
# DCP step directories: step_100 (FSDP examples), step-100 (torchtitan), 100, epoch=3.
_DCP_DIR = re.compile(r"(?:[A-Za-z][\w.=-]*?)?(?P<step>\d+)")
_DASHED_DIR = re.compile(r"(?P<prefix>[A-Za-z][\w.]*?)-(?P<step>\d+)")


# -- steps from names -------------------------------------------------------------------------
# The rules, in order: a number after the word ``step``; else after ``epoch``; else the last
# integer once decimal numbers (metric values such as ``0.32``) are taken out.

SortKey = tuple[int, str]


def sort_key(step: int | None, key: str) -> SortKey:
    """Checkpoints are ordered by step, then by name; one without a step sorts first."""
    return (-1 if step is None else step, key)


# The word must not continue a longer word ("laststep_5" is not a step).
_STEP = re.compile(r"(?<![A-Za-z])step[=_-]?(\d+)", re.IGNORECASE)
_EPOCH = re.compile(r"(?<![A-Za-z])epoch[=_-]?(\d+)", re.IGNORECASE)
# Decimal numbers in names are metric values (val_loss=0.32, 1e-3), never the step.
_DECIMAL = re.compile(r"\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+", re.IGNORECASE)
_INTEGER = re.compile(r"\d+")
_TRAILING = re.compile(r"(?:^|[-_])(\d+)$")


def step_from_name(stem: str) -> int | None:
    """The step a checkpoint name carries (the rules above), or None.

    ``stem`` is the name without its extension.
    """
    found = _STEP.search(stem)
    if found:
        return int(found.group(1))
    found = _EPOCH.search(stem)
    if found:
        return int(found.group(1))
    integers = _INTEGER.findall(_DECIMAL.sub(" ", stem))
    return int(integers[-1]) if integers else None


def epoch_from_name(stem: str) -> int | None:
    """The epoch a name carries (``epoch=3``), or None."""
    found = _EPOCH.search(stem)
    return int(found.group(1)) if found else None


def trailing_step(name: str) -> int | None:
    """The number at the end of a name after ``-`` or ``_`` (``ckpt-5`` -> 5), or the whole name
    when it is a number (``"12"`` -> 12); None otherwise."""
    found = _TRAILING.search(name)
    return int(found.group(1)) if found else None


def split_suffix(name: str, suffixes: Iterable[str]) -> tuple[str, str] | None:
    """``(stem, suffix)`` for the longest of ``suffixes`` that ``name`` ends with (case ignored),
    or None. The stem must not be empty."""
    lowered = name.lower()
    best: str | None = None
    for suffix in suffixes:
        fits = lowered.endswith(suffix) and len(name) > len(suffix)
        if fits and (best is None or len(suffix) > len(best)):
            best = suffix
    if best is None:
        return None
    return name[: -len(best)], name[-len(best) :]


# -- layouts -----------------------------------------------------------------------------------


class Layout(str, enum.Enum):
    """The checkpoint layouts a follower knows (``layout=`` also takes a CheckpointPattern)."""

    AUTO = "auto"
    TENSORFLOW = "tensorflow"  # `checkpoint` state file + <prefix>.index / .data-*-of-*
    ORBAX = "orbax"  # step directories <step> or <prefix>_<step>
    HUGGINGFACE = "huggingface"  # checkpoint-<step> directories
    KERAS = "keras"  # .keras / .weights.h5 files
    TORCH = "torch"  # .pt / .pth / .ckpt / .safetensors files
    DCP = "dcp"  # torch.distributed.checkpoint step directories (.metadata written last)


class Kind(enum.Enum):
    TENSORFLOW = "tensorflow"
    DIRECTORY = "directory"
    FILE = "file"


@dataclass(frozen=True)
class CheckpointPattern:
    """A user-defined layout: entries whose name matches ``pattern`` are checkpoints.

    Args:
        pattern: a regular expression matched against the *whole* name of each entry in the
            checkpoint directory. The step is its group named ``step``, or its first group.
        kind: ``"file"`` (each checkpoint is one file) or ``"dir"`` (one directory).
        marker: for directories, a file inside whose presence means the checkpoint is complete
            (``"commit_success.txt"``). Without one, a directory counts as complete once nothing
            in it has changed for ``settle_secs``.

    Files are checked structurally where their format allows it (zip, safetensors, HDF5) and
    otherwise must not change for ``settle_secs``.
    """

    pattern: str | re.Pattern[str]
    kind: str = "file"
    marker: str | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = self.pattern
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' must be a valid regular expression: {exc}") from None
        elif isinstance(pattern, re.Pattern):
            compiled = pattern
        else:
            raise TypeError(f"'pattern' must be a str or re.Pattern; got {pattern!r}")
        if "step" not in compiled.groupindex and compiled.groups < 1:
            raise ValueError(
                f"'pattern' must have a group named 'step' or at least one group for the step; "
                f"got {compiled.pattern!r}"
            )
        if self.kind not in ("file", "dir"):
            raise ValueError(f"'kind' must be one of 'file', 'dir'; got {self.kind!r}")
        if self.marker is not None and (not isinstance(self.marker, str) or not self.marker):
            raise ValueError(f"'marker' must be None or a non-empty file name; got {self.marker!r}")
        if self.marker is not None and self.kind != "dir":
            raise ValueError(f"'marker' applies to kind='dir' only; got kind={self.kind!r}")
        object.__setattr__(self, "regex", compiled)


@dataclass(frozen=True)
class Claim:
    """An entry's place: the checkpoint it belongs to (``key``), its step and its role."""

    key: str
    step: int | None
    role: str  # "index" / "data" (TensorFlow), "dir", "file"
    shard: tuple[int, int] | None = None


@dataclass(frozen=True)
class Scheme:
    """A layout made concrete: how entries are claimed and how completeness is decided.

    ``marker``: a file inside a checkpoint directory that commits it. ``marker_required``: the
    directory is complete only with it (Hugging Face, patterns with a marker; Orbax on GCS).
    ``trust_rename``: locally the writer renames the finished directory into place (Orbax).
    ``check_files``: the checkable files inside a directory must be complete too.
    ``dcp_possible``: detected from names that torch.distributed.checkpoint directories share
    with Orbax's (``step_100``, ``100``); a directory whose contents show DCP's files turns the
    scheme into the DCP one (see :func:`dcp_scheme`), and an empty one is not complete.
    """

    layout: str
    kind: Kind
    regex: re.Pattern[str] | None = None
    suffixes: tuple[str, ...] = ()
    marker: str | None = None
    marker_required: bool = False
    trust_rename: bool = False
    check_files: bool = False
    dcp_possible: bool = False
    state_filename: str = "checkpoint"

    def claim(self, name: str, is_dir: bool) -> Claim | None:
        """Which checkpoint the entry ``name`` belongs to, or None when it is not part of one."""
        if not name or name.startswith("."):
            return None
        if self.kind is Kind.TENSORFLOW:
            return None if is_dir else _claim_tensorflow(name)
        if self.kind is Kind.DIRECTORY:
            if not is_dir or _ORBAX_TMP in name:
                return None
            return _claim_regex(self.regex, name, "dir")
        if is_dir:
            return None
        if self.regex is not None:
            return _claim_regex(self.regex, name, "file")
        parts = split_suffix(name, self.suffixes)
        if parts is None:
            return None
        step = step_from_name(parts[0])
        return None if step is None else Claim(name, step, "file")


def _claim_regex(regex: re.Pattern[str] | None, name: str, role: str) -> Claim | None:
    assert regex is not None
    found = regex.fullmatch(name)
    if not found:
        return None
    text = found.group("step") if "step" in regex.groupindex else found.group(1)
    try:
        step = int(text) if text is not None else None
    except ValueError:
        step = None
    return Claim(name, step, role)


def _claim_tensorflow(name: str) -> Claim | None:
    found = _TF_INDEX.fullmatch(name)
    if found:
        key = found.group("key")
        return Claim(key, trailing_step(key), "index")
    found = _TF_DATA.fullmatch(name)
    if found:
        key = found.group("key")
        shard = (int(found.group("i")), int(found.group("n")))
        return Claim(key, trailing_step(key), "data", shard)
    return None


def scheme_for(
    layout: Layout | CheckpointPattern,
    *,
    state_filename: str = "checkpoint",
    commit_marker_required: bool = False,
    orbax_prefix: str | None = None,
) -> Scheme:
    """The scheme for an explicit layout. ``commit_marker_required``: Orbax directories need
    ``commit_success.txt`` (on GCS, where Orbax commits that way)."""
    if isinstance(layout, CheckpointPattern):
        return Scheme(
            "pattern",
            Kind.DIRECTORY if layout.kind == "dir" else Kind.FILE,
            regex=layout.regex,
            marker=layout.marker,
            marker_required=layout.marker is not None,
            check_files=True,
        )
    if layout is Layout.TENSORFLOW:
        return Scheme("tensorflow", Kind.TENSORFLOW, state_filename=state_filename)
    if layout is Layout.ORBAX:
        if orbax_prefix is None:
            regex = _ORBAX_ANY
        elif orbax_prefix == "":
            regex = re.compile(r"(?P<step>\d+)")
        else:
            regex = re.compile(re.escape(orbax_prefix) + r"_(?P<step>\d+)")
        return Scheme(
            "orbax",
            Kind.DIRECTORY,
            regex=regex,
            marker=COMMIT_MARKER,
            marker_required=commit_marker_required,
            trust_rename=True,
        )
    if layout is Layout.HUGGINGFACE:
        return Scheme(
            "huggingface",
            Kind.DIRECTORY,
            regex=_HF_DIR,
            marker=HF_MARKER,
            marker_required=True,
            check_files=True,
        )
    if layout is Layout.DCP:
        return dcp_scheme(_DCP_DIR)
    if layout is Layout.KERAS:
        return Scheme("keras", Kind.FILE, suffixes=KERAS_SUFFIXES)
    if layout is Layout.TORCH:
        return Scheme("torch", Kind.FILE, suffixes=TORCH_SUFFIXES)
    raise ValueError(f"no scheme for layout {layout!r}")  # AUTO is resolved by detect_scheme


def dcp_scheme(regex: re.Pattern[str]) -> Scheme:
    """The torch.distributed.checkpoint scheme for directories named by ``regex``: complete once
    its ``.metadata`` is there and whole (DCP writes it after every shard)."""
    return Scheme(
        "dcp",
        Kind.DIRECTORY,
        regex=regex,
        marker=DCP_MARKER,
        marker_required=True,
        check_files=True,
    )


def looks_like_dcp(names: Iterable[str]) -> bool:
    """Whether the names of files inside a directory are torch.distributed.checkpoint's."""
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if base in DCP_SIGNS or base.endswith(DCP_SHARD_SUFFIX):
            return True
    return False


def _evidence(name: str, is_dir: bool, state_filename: str) -> tuple[int, str | None] | None:
    """How strongly an entry points at a layout: (rank, orbax prefix); lower rank wins."""
    if name.startswith("."):
        return None
    if not is_dir:
        if name == state_filename or _claim_tensorflow(name) is not None:
            return (0, None)
        parts = split_suffix(name, KERAS_SUFFIXES)
        if parts is not None and step_from_name(parts[0]) is not None:
            return (3, None)
        parts = split_suffix(name, TORCH_SUFFIXES)
        if parts is not None and step_from_name(parts[0]) is not None:
            return (4, None)
        return None
    if _HF_DIR.fullmatch(name):
        return (1, None)
    if name.isdigit():
        return (2, "")
    if _ORBAX_TMP in name:
        return (2, None)
    found = _ORBAX_PREFIXED.fullmatch(name)
    if found:
        return (5, found.group("prefix"))
    found = _DASHED_DIR.fullmatch(name)
    if found:  # not Orbax's naming; torchtitan's DCP step-<n>
        return (6, found.group("prefix"))
    return None


_RANKED = {
    0: Layout.TENSORFLOW,
    1: Layout.HUGGINGFACE,
    2: Layout.ORBAX,
    3: Layout.KERAS,
    4: Layout.TORCH,
    5: Layout.ORBAX,
    6: Layout.DCP,
}


def detect_scheme(
    entries: Iterable[tuple[str, bool]],
    *,
    state_filename: str = "checkpoint",
    commit_marker_required: bool = False,
) -> Scheme | None:
    """The layout the entries ``(name, is_dir)`` point at, or None when none does yet.

    In order of precedence: a TensorFlow state file or ``.index`` file; Hugging Face
    ``checkpoint-<step>`` directories; Orbax numbered (or temporary) step directories; Keras
    files; PyTorch files; Orbax ``<prefix>_<step>`` directories; ``<prefix>-<step>``
    directories (torch.distributed.checkpoint, as torchtitan names them). Orbax's names are
    also DCP's: such a scheme is ``dcp_possible`` and turns DCP when a directory shows it.
    """
    best: tuple[int, str | None] | None = None
    for name, is_dir in entries:
        found = _evidence(name, is_dir, state_filename)
        if found is not None and (best is None or found[0] < best[0]):
            best = found
            if best[0] == 0:
                break
    if best is None:
        return None
    rank, prefix = best
    if rank == 6:
        assert prefix is not None
        return dcp_scheme(re.compile(re.escape(prefix) + r"-(?P<step>\d+)"))
    scheme = scheme_for(
        _RANKED[rank],
        state_filename=state_filename,
        commit_marker_required=commit_marker_required,
        orbax_prefix=prefix,
    )
    if scheme.layout == "orbax":
        scheme = dataclasses.replace(scheme, dcp_possible=True)
    return scheme
