"""The follower's decisions, tested as pure functions."""

from __future__ import annotations

import pytest

from tickwork import Layout
from tickwork._checkpoints._completeness import (
    Status,
    decide_directory,
    decide_file,
    decide_tensorflow,
)
from tickwork._checkpoints._formats import FileCheck, Structure
from tickwork._checkpoints._layouts import scheme_for, sort_key
from tickwork._checkpoints._next import choose_next, classify_deletion
from tickwork._checkpoints._watching import next_poll_interval

COMPLETE = FileCheck(Structure.COMPLETE, "zip", "ok")
INCOMPLETE = FileCheck(Structure.INCOMPLETE, "zip", "writing")
CORRUPT = FileCheck(Structure.CORRUPT, "zip", "bad")
UNCHECKABLE = FileCheck(Structure.UNCHECKABLE, "pickle", "legacy")


class TestDecideFile:
    def test_structure_decides_where_it_can(self) -> None:
        """Complete, incomplete and corrupt structures map to complete, pending, broken."""
        assert decide_file(COMPLETE, None, 1.0).status is Status.COMPLETE
        assert decide_file(INCOMPLETE, 100.0, 1.0).status is Status.PENDING
        assert decide_file(CORRUPT, 100.0, 1.0).status is Status.BROKEN

    def test_uncheckable_files_must_settle(self) -> None:
        """Without a structure to check, a file is complete once unchanged for `settle`."""
        first = decide_file(UNCHECKABLE, None, 1.0)
        assert first.status is Status.PENDING
        assert first.recheck_in == pytest.approx(1.0)
        assert decide_file(UNCHECKABLE, 0.25, 1.0).recheck_in == pytest.approx(0.75)
        assert decide_file(UNCHECKABLE, 1.0, 1.0).status is Status.COMPLETE
        assert decide_file(UNCHECKABLE, None, 0.0).status is Status.COMPLETE


class TestDecideDirectory:
    def decide(self, layout: Layout, **facts: object) -> Status:
        options: dict[str, object] = {
            "marker_present": False,
            "atomic_rename": True,
            "files": (),
            "quiet_for": None,
            "settle": 1.0,
            "marker_poll": 0.05,
        }
        options.update(facts)
        return decide_directory(scheme_for(layout), **options).status  # type: ignore[arg-type]

    def test_orbax_local_is_complete_once_renamed(self) -> None:
        """Locally Orbax renames the finished directory into place: its name is enough."""
        assert self.decide(Layout.ORBAX) is Status.COMPLETE

    def test_orbax_on_object_stores(self) -> None:
        """Without atomic rename an Orbax directory needs its marker, or must settle."""
        assert self.decide(Layout.ORBAX, atomic_rename=False) is Status.PENDING
        assert (
            self.decide(Layout.ORBAX, atomic_rename=False, marker_present=True) is Status.COMPLETE
        )
        assert self.decide(Layout.ORBAX, atomic_rename=False, quiet_for=2.0) is Status.COMPLETE
        gcs = scheme_for(Layout.ORBAX, commit_marker_required=True)
        verdict = decide_directory(
            gcs,
            marker_present=False,
            atomic_rename=False,
            files=(),
            quiet_for=100.0,
            settle=1.0,
            marker_poll=0.05,
        )
        assert verdict.status is Status.PENDING

    def test_huggingface_needs_its_marker_and_complete_files(self) -> None:
        """trainer_state.json commits a Hugging Face checkpoint, if its weights are complete."""
        assert self.decide(Layout.HUGGINGFACE, quiet_for=100.0) is Status.PENDING
        assert self.decide(Layout.HUGGINGFACE, marker_present=True, files=[COMPLETE]) is (
            Status.COMPLETE
        )
        assert self.decide(Layout.HUGGINGFACE, marker_present=True, files=[INCOMPLETE]) is (
            Status.PENDING
        )
        assert self.decide(Layout.HUGGINGFACE, marker_present=True, files=[CORRUPT]) is (
            Status.BROKEN
        )


class TestDecideTensorflow:
    def test_named_with_all_files(self) -> None:
        """Complete once named in the state file with the index and every shard present."""
        verdict = decide_tensorflow(
            has_index=True, shards=[(0, 2), (1, 2)], named=True, newer_named=False
        )
        assert verdict.status is Status.COMPLETE

    @pytest.mark.parametrize(
        ("facts", "reason"),
        [
            ({"has_index": False, "shards": [(0, 1)], "named": True}, "no .index"),
            ({"has_index": True, "shards": [], "named": True}, "no data shard"),
            ({"has_index": True, "shards": [(0, 2)], "named": True}, "1 of 2 data shards"),
            ({"has_index": True, "shards": [(0, 1)], "named": False}, "not yet named"),
        ],
    )
    def test_not_yet(self, facts: dict[str, object], reason: str) -> None:
        """A missing file, shard or name keeps it pending."""
        verdict = decide_tensorflow(newer_named=False, **facts)  # type: ignore[arg-type]
        assert verdict.status is Status.PENDING
        assert reason in verdict.reason

    def test_a_newer_named_checkpoint_completes_older_ones(self) -> None:
        """When the state names a newer checkpoint, this one's save had finished."""
        verdict = decide_tensorflow(has_index=True, shards=[(0, 1)], named=False, newer_named=True)
        assert verdict.status is Status.COMPLETE

    def test_disagreeing_shards_are_broken(self) -> None:
        """Shards that disagree on their count are never complete."""
        verdict = decide_tensorflow(
            has_index=True, shards=[(0, 1), (0, 2)], named=True, newer_named=False
        )
        assert verdict.status is Status.BROKEN


ORDER = tuple((sort_key(s, f"c{s}"), f"c{s}") for s in (1, 2, 3, 4))


class TestChooseNext:
    order = ORDER

    def test_never_miss_waits_for_the_oldest_pending_one(self) -> None:
        """Without skipping, nothing newer comes while an older one is pending."""
        statuses = {"c1": Status.PENDING, "c2": Status.COMPLETE, "c3": Status.COMPLETE}
        statuses["c4"] = Status.COMPLETE
        assert choose_next(
            self.order, statuses.__getitem__, skip_to_latest=False, high_water=None
        ) == (None, [])
        statuses["c1"] = Status.COMPLETE
        assert choose_next(
            self.order, statuses.__getitem__, skip_to_latest=False, high_water=None
        ) == ("c1", [])

    def test_never_miss_goes_past_broken_ones(self) -> None:
        """A broken checkpoint (never handed out) does not hold back the next complete one."""
        statuses = {"c1": Status.BROKEN, "c2": Status.COMPLETE, "c3": Status.PENDING}
        statuses["c4"] = Status.COMPLETE
        assert choose_next(
            self.order, statuses.__getitem__, skip_to_latest=False, high_water=None
        ) == ("c2", [])

    def test_skip_to_latest_takes_the_newest_and_passes_over_the_rest(self) -> None:
        """With skipping, the newest complete one is taken; all older open ones are passed."""
        statuses = {"c1": Status.COMPLETE, "c2": Status.COMPLETE, "c3": Status.COMPLETE}
        statuses["c4"] = Status.PENDING
        key, passed = choose_next(
            self.order,
            statuses.__getitem__,
            skip_to_latest=True,
            high_water=None,
        )
        assert (key, passed) == ("c3", ["c1", "c2"])

    def test_skip_to_latest_never_goes_back(self) -> None:
        """Nothing at or below the last checkpoint handed out is chosen when skipping."""
        statuses = dict.fromkeys(("c1", "c2", "c3", "c4"), Status.COMPLETE)
        key, _ = choose_next(
            self.order,
            statuses.__getitem__,  # type: ignore[arg-type]
            skip_to_latest=True,
            high_water=sort_key(4, "c4"),
        )
        assert key is None

    def test_lazy_assessment_looks_only_as_far_as_needed(self) -> None:
        """Only the checkpoints examined are assessed (newest first when skipping)."""
        looked: list[str] = []

        def status_of(key: str) -> Status:
            looked.append(key)
            return Status.COMPLETE

        choose_next(self.order, status_of, skip_to_latest=True, high_water=None)
        assert looked == ["c4"]

    def test_order_is_by_step_not_name(self) -> None:
        """Step 10 sorts after step 9 (names would not); a stepless one sorts first."""
        assert sort_key(9, "ckpt-9") < sort_key(10, "ckpt-10")
        assert sort_key(None, "model") < sort_key(0, "a")


class TestDeletionAndBackoff:
    def test_deletion_counts(self) -> None:
        """A deleted checkpoint that was due counts as deleted; superseded ones as skipped."""
        assert (
            classify_deletion(Status.COMPLETE, skip_to_latest=False, newer_open=True) == "deleted"
        )
        assert (
            classify_deletion(Status.UNKNOWN, skip_to_latest=False, newer_open=False) == "deleted"
        )
        assert classify_deletion(Status.COMPLETE, skip_to_latest=True, newer_open=True) == "skipped"
        assert (
            classify_deletion(Status.COMPLETE, skip_to_latest=True, newer_open=False) == "deleted"
        )
        # Pending (being written, or not yet seen complete): counted all the same.
        assert (
            classify_deletion(Status.PENDING, skip_to_latest=False, newer_open=False) == "deleted"
        )
        assert classify_deletion(Status.PENDING, skip_to_latest=True, newer_open=True) == "skipped"
        assert classify_deletion(Status.BROKEN, skip_to_latest=False, newer_open=False) is None

    def test_backoff(self) -> None:
        """Idle polls double the interval up to the ceiling; a change resets it."""
        interval = 1.0
        seen = []
        for _ in range(6):
            interval = next_poll_interval(interval, base=1.0, maximum=10.0, changed=False)
            seen.append(interval)
        assert seen == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
        assert next_poll_interval(10.0, base=1.0, maximum=10.0, changed=True) == 1.0
