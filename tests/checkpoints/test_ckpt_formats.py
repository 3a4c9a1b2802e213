"""Structural completeness checks of single checkpoint files."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
from ckpt_helpers import safetensors_bytes, zip_bytes

from tickwork._checkpoints._formats import FileCheck, Structure, check_file


def check(name: str, data: bytes) -> FileCheck:
    return check_file(name, len(data), lambda offset, size: data[offset : offset + size])


class TestZip:
    def test_complete_archive(self) -> None:
        """A zip that ends with its end-of-central-directory record is complete."""
        result = check("m_1.pt", zip_bytes())
        assert result.structure is Structure.COMPLETE
        assert result.format == "zip"

    def test_every_truncation_is_incomplete(self) -> None:
        """However much of the archive has been written, short of all, it is not complete."""
        data = zip_bytes(entries=2, payload=64)
        verdicts = {check("m_1.pt", data[:cut]).structure for cut in range(len(data))}
        assert Structure.COMPLETE not in verdicts
        assert verdicts <= {Structure.INCOMPLETE, Structure.UNCHECKABLE}

    def test_archive_with_comment(self) -> None:
        """The end record is found behind an archive comment."""
        assert check("m.keras", zip_bytes(comment=b"x" * 300)).structure is Structure.COMPLETE

    def test_zip64_archive(self) -> None:
        """Large-archive (zip64) end records are followed to the central directory."""
        buffer = io.BytesIO()
        with (
            zipfile.ZipFile(buffer, "w") as archive,
            archive.open("big", "w", force_zip64=True) as member,
        ):
            member.write(b"x" * 1000)
        data = buffer.getvalue()
        # Force zip64 central-directory fields the way writers of >4 GiB archives do.
        eocd = data.rfind(b"PK\x05\x06")
        cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
        record = struct.pack(
            "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, cd_size, cd_offset
        )
        locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd, 1)
        end = bytearray(data[eocd:])
        struct.pack_into("<HHII", end, 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        rebuilt = data[:eocd] + record + locator + bytes(end)
        assert check("m.pt", rebuilt).structure is Structure.COMPLETE
        assert check("m.pt", rebuilt[: eocd + len(record)]).structure is Structure.INCOMPLETE

    def test_inconsistent_end_record_is_corrupt(self) -> None:
        """An end record whose central directory does not end where it starts is corrupt."""
        data = bytearray(zip_bytes())
        eocd = data.rfind(b"PK\x05\x06")
        struct.pack_into("<I", data, eocd + 16, 3)
        assert check("m.pt", bytes(data)).structure is Structure.CORRUPT


class TestSafetensors:
    def test_complete_and_truncated(self) -> None:
        """Complete exactly at the size the header announces; incomplete before."""
        data = safetensors_bytes()
        assert check("m.safetensors", data).structure is Structure.COMPLETE
        for cut in (0, 5, 8, 20, len(data) - 1):
            assert check("m.safetensors", data[:cut]).structure is Structure.INCOMPLETE

    def test_real_library_file(self, tmp_path: Path) -> None:
        """A file written by the safetensors library itself passes."""
        from safetensors.numpy import save_file

        path = tmp_path / "model.safetensors"
        save_file({"w": np.ones((3, 4), dtype=np.float32), "b": np.zeros(7, np.int64)}, path)
        data = path.read_bytes()
        assert check("model.safetensors", data).structure is Structure.COMPLETE
        assert check("model.safetensors", data[:-1]).structure is Structure.INCOMPLETE

    def test_garbage_header_and_trailing_bytes_are_corrupt(self) -> None:
        """A header that is not JSON, or bytes beyond the announced size, are corrupt."""
        data = safetensors_bytes()
        assert check("m.safetensors", data + b"\x00").structure is Structure.CORRUPT
        bad = struct.pack("<Q", 4) + b"nope" + b"\x00" * 8
        assert check("m.safetensors", bad).structure is Structure.CORRUPT
        huge = struct.pack("<Q", 10**12) + b"{}" + b"\x00" * 8
        assert check("m.safetensors", huge).structure is Structure.CORRUPT


class TestHdf5:
    def _file(self, path: Path) -> None:
        with h5py.File(path, "w") as f:
            f.create_dataset("w", data=np.arange(5000, dtype=np.float64))

    def test_closed_file_is_complete(self, tmp_path: Path) -> None:
        """A closed HDF5 file (clear consistency flags, end address = size) is complete."""
        path = tmp_path / "w.weights.h5"
        self._file(path)
        assert check(path.name, path.read_bytes()).structure is Structure.COMPLETE

    def test_open_file_is_incomplete(self, tmp_path: Path) -> None:
        """While a writer has the file open its consistency flags say so."""
        path = tmp_path / "w.weights.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("w", data=np.arange(5000, dtype=np.float64))
            f.flush()
            assert check(path.name, path.read_bytes()).structure is Structure.INCOMPLETE

    def test_truncated_file_is_incomplete(self, tmp_path: Path) -> None:
        """A closed file cut short (its writer copied it partly) is incomplete."""
        path = tmp_path / "w.h5"
        self._file(path)
        data = path.read_bytes()
        for cut in (0, 4, 100, len(data) // 2, len(data) - 1):
            assert check("w.h5", data[:cut]).structure is Structure.INCOMPLETE

    def test_user_block(self, tmp_path: Path) -> None:
        """The superblock is also found after a user block."""
        path = tmp_path / "w.h5"
        with h5py.File(path, "w", userblock_size=512) as f:
            f.create_dataset("w", data=np.arange(10))
        data = bytearray(path.read_bytes())
        data[:8] = b"userdata"
        assert check("w.h5", bytes(data)).structure is Structure.COMPLETE

    def test_newer_superblock(self, tmp_path: Path) -> None:
        """Files written with the latest format (superblock v2/v3) are checked too."""
        path = tmp_path / "w.h5"
        with h5py.File(path, "w", libver="latest") as f:
            f.create_dataset("w", data=np.arange(10))
        data = path.read_bytes()
        assert check("w.h5", data).structure is Structure.COMPLETE
        assert check("w.h5", data[: len(data) - 1]).structure is Structure.INCOMPLETE


class TestOthers:
    def test_legacy_pickle_cannot_be_checked(self) -> None:
        """The pre-1.6 torch.save format (a pickle stream) records no completeness."""
        data = pickle.dumps({"w": list(range(100))}, protocol=2)
        result = check("m_1.pt", data)
        assert result.structure is Structure.UNCHECKABLE
        assert result.format == "pickle"

    def test_short_or_blank_files_are_incomplete(self) -> None:
        """Nothing, or zeros only (preallocated), is never complete."""
        assert check("a.bin", b"").structure is Structure.INCOMPLETE
        assert check("a.bin", b"1234").structure is Structure.INCOMPLETE
        assert check("a.bin", b"\x00" * 100).structure is Structure.INCOMPLETE
        assert check("a.h5", b"\x00" * 100).structure is Structure.INCOMPLETE

    def test_keras_file_must_be_zip(self) -> None:
        """A .keras file that is not a zip archive is corrupt."""
        assert check("m.keras", b"not a zip at all").structure is Structure.CORRUPT

    def test_unknown_format(self) -> None:
        """Other content is uncheckable (the follower waits for it to settle)."""
        assert check("m.bin", b"some binary payload").structure is Structure.UNCHECKABLE
