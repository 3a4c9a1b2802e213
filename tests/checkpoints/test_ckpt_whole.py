"""Whole files inside checkpoint directories (JSON, DCP's pickled .metadata), the DCP layout
and its detection, the step-order promise and the accounting, on scripted storage."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from ckpt_helpers import MemoryStorage, fakes, safetensors_bytes, zip_bytes

from tickwork import CheckpointFollower, Layout
from tickwork._checkpoints._formats import Structure, check_file
from tickwork._checkpoints._layouts import Claim, detect_scheme, scheme_for
from tickwork._checkpoints._storage import Entry
from tickwork.testing import FakeClock

METADATA = pickle.dumps({"state_dict_metadata": {"w": list(range(50))}}, protocol=4)
TRAINER_STATE = json.dumps({"global_step": 1, "log_history": [{"loss": 1.5}] * 5}).encode()


def check(name: str, data: bytes) -> Structure:
    return check_file(name, len(data), lambda at, n: data[at : at + n]).structure


def follower(storage: MemoryStorage, clock: FakeClock, **options: Any) -> CheckpointFollower:
    options.setdefault("watch", "poll")
    options.setdefault("skip_to_latest", False)
    with fakes(storage):
        return CheckpointFollower(storage.directory, clock=clock, **options)


def drain(f: CheckpointFollower) -> list[int | None]:
    steps = []
    while (found := f.next_checkpoint(timeout=0)) is not None:
        steps.append(found.step)
    return steps


class TestFormats:
    @pytest.mark.parametrize("cut", [0, 1, 10, len(TRAINER_STATE) // 2, len(TRAINER_STATE) - 1])
    def test_json_cut_anywhere_is_incomplete(self, cut: int) -> None:
        """A JSON file written in place: what is there so far never parses."""
        assert check("checkpoint-1/trainer_state.json", TRAINER_STATE[:cut]) is Structure.INCOMPLETE

    def test_whole_json_is_complete_however_short(self) -> None:
        assert check("c/trainer_state.json", TRAINER_STATE) is Structure.COMPLETE
        assert check("c/config.json", b"{}") is Structure.COMPLETE

    @pytest.mark.parametrize("cut", [1, 2, 20, len(METADATA) // 2, len(METADATA) - 1])
    def test_metadata_pickle_cut_anywhere_is_incomplete(self, cut: int) -> None:
        assert check("step_1/.metadata", METADATA[:cut]) is Structure.INCOMPLETE

    def test_metadata_pickle(self) -> None:
        """Whole: complete; bytes after its STOP, or no pickle header: corrupt."""
        assert check("step_1/.metadata", METADATA) is Structure.COMPLETE
        assert check("step_1/.metadata", METADATA + b"junk") is Structure.CORRUPT
        assert check("step_1/.metadata", b"not a pickle at all") is Structure.CORRUPT
        assert check("step_1/.metadata", b"") is Structure.INCOMPLETE


class TestDcpLayout:
    def test_torchtitan_names_are_dcp(self) -> None:
        scheme = detect_scheme([("step-100", True)])
        assert scheme is not None
        assert scheme.layout == "dcp"
        assert scheme.claim("step-100", True) == Claim("step-100", 100, "dir")

    @pytest.mark.parametrize("name", ["step_100", "100"])
    def test_orbax_names_may_be_dcp(self, name: str) -> None:
        scheme = detect_scheme([(name, True)])
        assert scheme is not None
        assert (scheme.layout, scheme.dcp_possible) == ("orbax", True)
        assert not scheme_for(Layout.ORBAX).dcp_possible

    def test_explicit_layout_claims_step_directories(self) -> None:
        scheme = scheme_for(Layout.DCP)
        assert scheme.claim("step_7", True) == Claim("step_7", 7, "dir")
        assert scheme.claim("step_7", False) is None
        assert scheme.claim(".hidden_7", True) is None

    @pytest.mark.parametrize("name", ["step_1", "1", "step-1"])
    def test_shards_without_metadata_are_pending(self, name: str) -> None:
        """Auto-detected from any DCP name: shards alone pending; .metadata cut, pending;
        whole, complete, and the layout is DCP."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.mkdir(name)
        with follower(storage, clock) as f:
            assert drain(f) == []  # empty: DCP creates the directory first
            storage.write(f"{name}/__0_0.distcp", b"\x01" * 4096)
            clock.advance(1.0)
            assert drain(f) == []
            storage.write(f"{name}/.metadata", METADATA[:-3])
            clock.advance(1.0)
            assert drain(f) == []
            assert f.pending == 1
            storage.write(f"{name}/.metadata", METADATA)
            clock.advance(1.0)
            assert drain(f) == [1]
            assert f.layout == "dcp"

    def test_orbax_directory_is_still_orbax(self) -> None:
        """A directory renamed into place by Orbax (no DCP file inside) is complete at once."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("step_1/_CHECKPOINT_METADATA", b"{}")
        storage.write("step_1/default/manifest.ocdbt", b"\x00" * 64)
        with follower(storage, clock) as f:
            assert drain(f) == [1]
            assert f.layout == "orbax"


class TestHuggingFaceWhole:
    def test_trainer_state_at_zero_bytes_is_pending(self) -> None:
        """trainer_state.json present but empty, or half written: pending; whole: complete."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/model.safetensors", safetensors_bytes())
        storage.write("checkpoint-1/optimizer.pt", zip_bytes())
        storage.write("checkpoint-1/trainer_state.json", b"")
        with follower(storage, clock) as f:
            assert drain(f) == []
            storage.write("checkpoint-1/trainer_state.json", TRAINER_STATE[:40])
            clock.advance(1.0)
            assert drain(f) == []
            storage.write("checkpoint-1/trainer_state.json", TRAINER_STATE)
            clock.advance(1.0)
            assert drain(f) == [1]

    def test_an_older_pending_checkpoint_holds_back_a_newer_complete_one(self) -> None:
        """checkpoint-8 is handed out before checkpoint-10, always."""
        storage, clock = MemoryStorage(), FakeClock()
        for step in (8, 10):
            storage.write(f"checkpoint-{step}/model.safetensors", safetensors_bytes())
        storage.write("checkpoint-10/trainer_state.json", TRAINER_STATE)
        with follower(storage, clock) as f:
            assert drain(f) == []
            storage.write("checkpoint-8/trainer_state.json", TRAINER_STATE)
            clock.advance(1.0)
            assert drain(f) == [8, 10]

    def test_pending_deleted_is_counted(self) -> None:
        """Rotation deletes a checkpoint the follower never saw complete: counted and logged;
        yielded + deleted adds up to what was written."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/model.safetensors", safetensors_bytes())
        storage.write("checkpoint-1/trainer_state.json", b"")
        for step in (2, 3):
            storage.write(f"checkpoint-{step}/model.safetensors", safetensors_bytes())
            storage.write(f"checkpoint-{step}/trainer_state.json", TRAINER_STATE)
        with follower(storage, clock) as f:
            assert drain(f) == []
            storage.remove("checkpoint-1")
            clock.advance(1.0)
            assert drain(f) == [2, 3]
            stats = f.statistics()
            assert (stats.yielded, stats.deleted_before_reached, stats.skipped) == (2, 1, 0)

    def test_pending_passed_over_counts_as_skipped(self) -> None:
        """With skip_to_latest, a pending one passed over by a newer complete one is skipped."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/trainer_state.json", b"")
        storage.write("checkpoint-2/trainer_state.json", TRAINER_STATE)
        with follower(storage, clock, skip_to_latest=True) as f:
            assert drain(f) == [2]
            assert f.statistics().skipped == 1

    def test_a_checkpoint_that_never_completes_is_passed_over_2_s_after_a_newer_one(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A writer killed mid-save (the job restarted and saving again) holds the newer ones
        back until a newer one has been complete for abandon_secs (2 s); then the incomplete one
        is passed over (one warning, counted as rejected) and the newer ones come in order."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/trainer_state.json", b"")
        storage.write("checkpoint-2/trainer_state.json", TRAINER_STATE)
        storage.write("checkpoint-3/trainer_state.json", TRAINER_STATE)
        with follower(storage, clock) as f:
            assert drain(f) == []
            clock.advance(1.5)
            assert drain(f) == []
            assert "taken to have died" not in caplog.text
            clock.advance(1.0)
            assert drain(f) == [2, 3]
            stats = f.statistics()
            assert (stats.yielded, stats.rejected, stats.deleted_before_reached) == (2, 1, 0)
            clock.advance(60.0)
            assert drain(f) == []
        warnings = [r for r in caplog.records if "taken to have died" in r.getMessage()]
        assert len(warnings) == 1
        assert "checkpoint-1" in warnings[0].getMessage()

    def test_one_unchanged_since_a_newer_one_appeared_is_passed_over_at_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The writer died mid-save and, restarted, wrote a newer one: the incomplete one has
        not changed since the newer one appeared, so it is passed over as soon as the newer one
        is complete, without waiting abandon_secs (set to a minute here)."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/trainer_state.json", b"")
        with follower(storage, clock, abandon_secs=60.0) as f:
            assert drain(f) == []
            clock.advance(5.0)
            assert drain(f) == []
            storage.write("checkpoint-2/trainer_state.json", TRAINER_STATE)
            clock.advance(1.0)  # one poll: it appears, complete
            assert drain(f) == [2]
            assert f.statistics().rejected == 1
        assert "has not changed since the newer" in caplog.text

    def test_one_still_changing_when_a_newer_one_appears_is_waited_for(self) -> None:
        """The incomplete one changed in the same look that found the newer one: its writer may
        be alive, so it keeps its place and comes first once complete (within abandon_secs)."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/trainer_state.json", b"")
        with follower(storage, clock) as f:
            assert drain(f) == []
            clock.advance(5.0)
            storage.write("checkpoint-1/trainer_state.json", b"{")
            storage.write("checkpoint-2/trainer_state.json", TRAINER_STATE)
            clock.advance(1.0)
            assert drain(f) == []
            storage.write("checkpoint-1/trainer_state.json", TRAINER_STATE)
            clock.advance(1.0)
            assert drain(f) == [1, 2]
            assert f.statistics().rejected == 0

    def test_one_that_changed_just_before_a_newer_one_appeared_is_waited_for(self) -> None:
        """Seen changing half a second before the newer one appeared (less than the 1 s quiet
        that "moved on" needs: the follower sees changes late): not passed over at once."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/trainer_state.json", b"")
        with follower(storage, clock, poll_interval=0.5) as f:
            assert drain(f) == []
            clock.advance(5.0)
            storage.write("checkpoint-1/trainer_state.json", b"{")
            clock.advance(0.5)
            assert drain(f) == []
            storage.write("checkpoint-2/trainer_state.json", TRAINER_STATE)
            clock.advance(0.5)
            assert drain(f) == []
            clock.advance(2.0)  # abandon_secs after the newer one was complete
            assert drain(f) == [2]
            assert f.statistics().rejected == 1

    def test_one_deleted_while_a_newer_one_is_complete_is_counted_deleted(self) -> None:
        """Rotation (save_total_limit) deletes an incomplete one the follower has seen unchanged
        for long, just as the newer one appears: the fresh look finds it gone. It was not left
        behind by a dead writer: counted as deleted before reached, not rejected."""

        class Rotating(MemoryStorage):
            rotate = False

            def stat(self, name: str) -> Entry | None:
                if self.rotate and name.startswith("checkpoint-1"):
                    self.remove("checkpoint-1")  # between the listing and the fresh look
                return super().stat(name)

            def read_bytes(self, name: str) -> bytes | None:
                if self.rotate and name.startswith("checkpoint-1"):
                    self.remove("checkpoint-1")
                return super().read_bytes(name)

        storage, clock = Rotating(), FakeClock()
        storage.write("checkpoint-1/trainer_state.json", b"")
        with follower(storage, clock, abandon_secs=60.0) as f:
            assert drain(f) == []
            clock.advance(5.0)
            assert drain(f) == []
            storage.write("checkpoint-2/trainer_state.json", TRAINER_STATE)
            storage.rotate = True
            clock.advance(1.0)  # one poll: checkpoint-2 appears, complete
            found = drain(f)
            clock.advance(1.0)  # the next poll's listing no longer has checkpoint-1
            found += drain(f)
            assert found == [2]
            stats = f.statistics()
            assert (stats.rejected, stats.deleted_before_reached) == (0, 1)

    def test_an_incomplete_one_with_nothing_newer_ready_is_waited_for(self) -> None:
        """Held back only a pending newer one: the old one is not given up, however long."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("checkpoint-1/trainer_state.json", b"")
        storage.write("checkpoint-2/trainer_state.json", b"")
        with follower(storage, clock) as f:
            assert drain(f) == []
            clock.advance(600.0)
            assert drain(f) == []
            storage.write("checkpoint-1/trainer_state.json", TRAINER_STATE)
            clock.advance(1.0)
            assert drain(f) == [1]
            assert f.statistics().rejected == 0
