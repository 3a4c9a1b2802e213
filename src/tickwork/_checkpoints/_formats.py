"""Is a single checkpoint file complete? Structural checks of the formats that record it.

A file that is still being written, or whose writer was killed, must never be handed out. The
filesystem cannot say so (a killed writer's descriptors are closed by the kernel exactly like a
finished writer's), but the formats can:

zip (``torch.save`` since PyTorch 1.6, Lightning ``.ckpt``, Keras ``.keras``)
    The end-of-central-directory record is the last thing written, and it gives the offset and
    size of the central directory before it (zip64 records for large archives).
safetensors
    An 8-byte header length, a JSON header, then the tensors; the header's largest
    ``data_offsets`` end tells the exact file size.
HDF5 (Keras ``.weights.h5`` / ``.h5``)
    The superblock's file-consistency flags are set while a writer has the file open and cleared
    at close, and its end-of-file address gives the size once closed.

JSON (Hugging Face's ``trainer_state.json``, ``config.json``: written in place)
    The whole file parses (a prefix of a JSON object or array never does).
pickle (torch.distributed.checkpoint's ``.metadata``)
    The opcodes read without executing anything (:func:`pickletools.genops`) end with STOP
    exactly at the end of the file.

Anything else (the legacy pickle ``torch.save`` format, unknown files) is
:attr:`Structure.UNCHECKABLE`; the follower then waits until the file has not changed for
``settle_secs``.

The binary checks read a few bytes through ``read_at(offset, size)``; JSON and pickle files are
read whole, up to a bound (larger ones are uncheckable).
"""

from __future__ import annotations

import enum
import io
import json
import pickletools
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DCP_METADATA", "FileCheck", "ReadAt", "Structure", "check_file"]

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, size)``: up to ``size`` bytes of the file from ``offset``."""

_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_ZIP_CENTRAL = b"PK\x01\x02"
_EOCD_SIZE = 22
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_EOCD_SIZE = 56
_MAX_COMMENT = 0xFFFF
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SAFETENSORS_MAX_HEADER = 100_000_000  # what the safetensors library itself accepts
_ZIP_SUFFIXES = (".pt", ".pth", ".ckpt", ".keras")
_WHOLE_READ_MAX = 64 << 20  # JSON and pickle files up to this size are read whole and parsed
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint writes it last (to .tmp, renamed)
_HDF5_SUFFIXES = (".h5", ".hdf5")


class Structure(str, enum.Enum):
    """What a file's own structure says about its completeness."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # being written, or its writer died; may never complete
    CORRUPT = "corrupt"  # cannot become a valid file by being written further
    UNCHECKABLE = "uncheckable"  # the format records nothing that can be checked


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file: its structure, the format recognised, and why."""

    structure: Structure
    format: str
    reason: str


def _u16(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<H", data, at)[0])


def _u32(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", data, at)[0])


def _u64(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<Q", data, at)[0])


def _find_eocd(size: int, read_at: ReadAt) -> tuple[int, bytes] | None:
    """The offset and bytes of the end-of-central-directory record that ends the file."""
    tail = read_at(max(0, size - _EOCD_SIZE), _EOCD_SIZE)
    if len(tail) == _EOCD_SIZE and tail[:4] == _ZIP_EOCD and _u16(tail, 20) == 0:
        return size - _EOCD_SIZE, tail
    # A comment follows the record: search backwards through the largest possible one.
    start = max(0, size - _EOCD_SIZE - _MAX_COMMENT)
    window = read_at(start, size - start)
    at = window.rfind(_ZIP_EOCD)
    while at >= 0:
        if at + _EOCD_SIZE <= len(window) and at + _EOCD_SIZE + _u16(window, at + 20) == len(
            window
        ):
            return start + at, window[at : at + _EOCD_SIZE]
        at = window.rfind(_ZIP_EOCD, 0, at)
    return None


def _check_zip(size: int, read_at: ReadAt) -> FileCheck:
    found = _find_eocd(size, read_at)
    if found is None:
        return FileCheck(Structure.INCOMPLETE, "zip", "no end-of-central-directory record yet")
    eocd_at, eocd = found
    entries, cd_size, cd_offset = _u16(eocd, 10), _u32(eocd, 12), _u32(eocd, 16)
    cd_end = eocd_at
    locator = read_at(eocd_at - _ZIP64_LOCATOR_SIZE, _ZIP64_LOCATOR_SIZE)
    has_zip64 = eocd_at >= _ZIP64_LOCATOR_SIZE and locator[:4] == _ZIP64_LOCATOR
    needs_zip64 = entries == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset)
    if needs_zip64 and not has_zip64:
        return FileCheck(Structure.CORRUPT, "zip", "zip64 sizes without a zip64 locator")
    if has_zip64:  # torch.save always writes zip64 records, whatever the archive's size
        record_at = _u64(locator, 8)
        record = read_at(record_at, _ZIP64_EOCD_SIZE)
        if len(record) < _ZIP64_EOCD_SIZE or record[:4] != _ZIP64_EOCD:
            return FileCheck(Structure.CORRUPT, "zip", "zip64 locator points at no zip64 record")
        entries, cd_size, cd_offset = _u64(record, 32), _u64(record, 40), _u64(record, 48)
        cd_end = record_at
    if cd_offset + cd_size != cd_end:
        return FileCheck(
            Structure.CORRUPT,
            "zip",
            f"central directory ({cd_size} bytes at {cd_offset}) does not end at the "
            f"end record ({cd_end})",
        )
    if entries and read_at(cd_offset, 4) != _ZIP_CENTRAL:
        return FileCheck(Structure.CORRUPT, "zip", "no central directory where the end says")
    return FileCheck(Structure.COMPLETE, "zip", f"complete zip archive, {entries} entries")


def _check_safetensors(size: int, read_at: ReadAt) -> FileCheck:
    header_len = _u64(read_at(0, 8), 0)
    if header_len > _SAFETENSORS_MAX_HEADER:
        return FileCheck(Structure.CORRUPT, "safetensors", f"header length {header_len} too big")
    if size < 8 + header_len:
        return FileCheck(Structure.INCOMPLETE, "safetensors", "header not fully written")
    raw = read_at(8, header_len)
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        end = 0
        for key, info in header.items():
            if key == "__metadata__":
                continue
            offsets = info["data_offsets"]
            if not (isinstance(offsets, list) and len(offsets) == 2):
                raise ValueError(f"bad data_offsets for {key!r}")
            end = max(end, int(offsets[1]))
    except (ValueError, KeyError, TypeError) as exc:
        if not raw.strip(b"\x00 "):
            return FileCheck(Structure.INCOMPLETE, "safetensors", "header not written yet")
        return FileCheck(Structure.CORRUPT, "safetensors", f"unreadable header: {exc}")
    expected = 8 + header_len + end
    if size < expected:
        return FileCheck(Structure.INCOMPLETE, "safetensors", f"{size} of {expected} bytes written")
    if size > expected:
        return FileCheck(
            Structure.CORRUPT, "safetensors", f"{size} bytes where the header says {expected}"
        )
    return FileCheck(Structure.COMPLETE, "safetensors", f"complete, {expected} bytes")


def _check_hdf5(size: int, at: int, read_at: ReadAt) -> FileCheck:
    block = read_at(at, 96)
    if len(block) < 12:
        return FileCheck(Structure.INCOMPLETE, "hdf5", "superblock not written yet")
    version = block[8]
    if version in (0, 1):
        offsets_size, flags = block[13], _u32(block, 20)
        first = 24 if version == 0 else 28
        eof_at = first + 2 * offsets_size  # after the base and free-space addresses
    elif version in (2, 3):
        offsets_size, flags = block[9], block[11]
        eof_at = 12 + 2 * offsets_size  # after the base and superblock-extension addresses
    else:
        return FileCheck(Structure.UNCHECKABLE, "hdf5", f"superblock version {version}")
    if offsets_size not in (2, 4, 8) or len(block) < eof_at + offsets_size:
        return FileCheck(Structure.CORRUPT, "hdf5", f"size of offsets {offsets_size}")
    if flags:
        return FileCheck(Structure.INCOMPLETE, "hdf5", "open for writing (consistency flags set)")
    # The end-of-file address counts from the start of the file, user block included (what the
    # HDF5 library writes, whatever the base address).
    eof = int.from_bytes(block[eof_at : eof_at + offsets_size], "little")
    if eof == (1 << (8 * offsets_size)) - 1:
        return FileCheck(Structure.INCOMPLETE, "hdf5", "end-of-file address undefined")
    if eof > size:
        return FileCheck(Structure.INCOMPLETE, "hdf5", f"{size} of {eof} bytes written")
    return FileCheck(Structure.COMPLETE, "hdf5", f"closed, {eof} bytes")


def _read_whole(size: int, read_at: ReadAt) -> bytes | None:
    """The file's bytes, or None when it is too big to parse or shorter than its size says."""
    if size > _WHOLE_READ_MAX:
        return None
    data = read_at(0, size)
    return data if len(data) == size else None


def _whole_or_why(kind: str, size: int, read_at: ReadAt) -> bytes | FileCheck:
    """The whole file, or why it cannot be judged by its whole contents (yet)."""
    if size == 0:
        return FileCheck(Structure.INCOMPLETE, kind, "empty (being written)")
    data = _read_whole(size, read_at)
    if data is None:
        if size > _WHOLE_READ_MAX:
            return FileCheck(Structure.UNCHECKABLE, kind, f"{size} bytes: too big to parse")
        return FileCheck(Structure.INCOMPLETE, kind, "shorter than its size says")
    return data


def _check_json(size: int, read_at: ReadAt) -> FileCheck:
    data = _whole_or_why("json", size, read_at)
    if isinstance(data, FileCheck):
        return data
    try:
        json.loads(data)
    except ValueError as exc:  # a file written in place: what is there so far does not parse
        return FileCheck(Structure.INCOMPLETE, "json", f"not whole JSON yet: {exc}")
    return FileCheck(Structure.COMPLETE, "json", f"whole JSON, {size} bytes")


def _check_pickle(size: int, read_at: ReadAt) -> FileCheck:
    data = _whole_or_why("pickle", size, read_at)
    if isinstance(data, FileCheck):
        return data
    if data[:1] != b"\x80":
        return FileCheck(Structure.CORRUPT, "pickle", "no pickle protocol header")
    end = -1
    try:
        for opcode, _arg, position in pickletools.genops(io.BytesIO(data)):
            if opcode.name == "STOP" and position is not None:
                end = position + 1
                break
    except ValueError as exc:  # genops raises ValueError for truncated or unknown opcodes
        return FileCheck(Structure.INCOMPLETE, "pickle", f"truncated: {exc}")
    if end < 0:
        return FileCheck(Structure.INCOMPLETE, "pickle", "no STOP opcode yet")
    if end != size:
        return FileCheck(Structure.CORRUPT, "pickle", f"STOP at {end} of {size} bytes")
    return FileCheck(Structure.COMPLETE, "pickle", f"whole pickle, {size} bytes")


def check_file(name: str, size: int, read_at: ReadAt) -> FileCheck:
    """What the structure of file ``name`` (``size`` bytes) says about its completeness."""
    lowered = name.lower()
    if lowered.endswith(".json"):
        return _check_json(size, read_at)
    if lowered.rsplit("/", 1)[-1] == DCP_METADATA:
        return _check_pickle(size, read_at)
    if size < 8:
        return FileCheck(Structure.INCOMPLETE, "unknown", f"only {size} bytes")
    head = read_at(0, 16)
    if len(head) < 8:
        return FileCheck(Structure.INCOMPLETE, "unknown", "shorter than its size says")
    if head[:4] in (_ZIP_LOCAL, _ZIP_EOCD):
        return _check_zip(size, read_at)
    if lowered.endswith(".safetensors"):
        return _check_safetensors(size, read_at)
    if head[:8] == _HDF5_SIGNATURE:
        return _check_hdf5(size, 0, read_at)
    blank = not head.strip(b"\x00")
    if lowered.endswith(_HDF5_SUFFIXES):
        at = 512  # a user block shifts the superblock to 512, 1024, 2048, ...
        while at + 8 <= size and at <= 1 << 20:
            if read_at(at, 8) == _HDF5_SIGNATURE:
                return _check_hdf5(size, at, read_at)
            at *= 2
        if blank:
            return FileCheck(Structure.INCOMPLETE, "hdf5", "no superblock yet")
        return FileCheck(Structure.CORRUPT, "hdf5", "no HDF5 signature")
    if blank:
        return FileCheck(Structure.INCOMPLETE, "unknown", "starts with zero bytes")
    if lowered.endswith(".keras"):
        return FileCheck(Structure.CORRUPT, "zip", ".keras file that is not a zip archive")
    if lowered.endswith(_ZIP_SUFFIXES) and head[:1] == b"\x80":
        return FileCheck(Structure.UNCHECKABLE, "pickle", "legacy (non-zip) torch.save format")
    return FileCheck(Structure.UNCHECKABLE, "unknown", "format records no completeness")
