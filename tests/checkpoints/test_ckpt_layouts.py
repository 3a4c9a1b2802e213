"""Which directory entries are checkpoints, and auto-detection of the layout."""

from __future__ import annotations

import re

import pytest

from tickwork import CheckpointPattern, Layout
from tickwork._checkpoints._layouts import Claim, Kind, detect_scheme, scheme_for


class TestTensorflowClaims:
    def test_index_and_data_files_share_their_prefix(self) -> None:
        """`ckpt-5.index` and its data shards belong to checkpoint `ckpt-5`, step 5."""
        scheme = scheme_for(Layout.TENSORFLOW)
        assert scheme.claim("ckpt-5.index", False) == Claim("ckpt-5", 5, "index")
        assert scheme.claim("ckpt-5.data-00001-of-00002", False) == Claim(
            "ckpt-5", 5, "data", (1, 2)
        )
        assert scheme.claim("model.ckpt-1000.index", False) == Claim(
            "model.ckpt-1000", 1000, "index"
        )

    @pytest.mark.parametrize(
        "name", ["checkpoint", "checkpoint.tmp1a2b", "ckpt-5.meta", "events.out", ".hidden.index"]
    )
    def test_other_files_are_not_checkpoints(self, name: str) -> None:
        """The state file, its temporaries, graphs and hidden files are not claimed."""
        assert scheme_for(Layout.TENSORFLOW).claim(name, False) is None

    def test_directories_are_not_claimed(self) -> None:
        """TensorFlow's temporary shard directories are ignored."""
        assert scheme_for(Layout.TENSORFLOW).claim("ckpt-5_temp.index", True) is None


class TestDirectoryClaims:
    def test_orbax_step_directories(self) -> None:
        """Orbax `<step>` and `<prefix>_<step>` directories; temporaries and files are not."""
        scheme = scheme_for(Layout.ORBAX)
        assert scheme.claim("12", True) == Claim("12", 12, "dir")
        assert scheme.claim("checkpoint_7", True) == Claim("checkpoint_7", 7, "dir")
        assert scheme.claim("12.orbax-checkpoint-tmp-1700000000", True) is None
        assert scheme.claim("checkpoint_7.orbax-checkpoint-tmp-17", True) is None
        assert scheme.claim("12", False) is None

    def test_orbax_with_a_known_prefix(self) -> None:
        """A detected prefix restricts the names followed."""
        scheme = scheme_for(Layout.ORBAX, orbax_prefix="ckpt")
        assert scheme.claim("ckpt_3", True) == Claim("ckpt_3", 3, "dir")
        assert scheme.claim("other_3", True) is None
        assert scheme_for(Layout.ORBAX, orbax_prefix="").claim("ckpt_3", True) is None

    def test_huggingface_directories(self) -> None:
        """`checkpoint-<step>` directories, committed by trainer_state.json."""
        scheme = scheme_for(Layout.HUGGINGFACE)
        assert scheme.claim("checkpoint-500", True) == Claim("checkpoint-500", 500, "dir")
        assert scheme.claim("tmp-checkpoint-500", True) is None
        assert scheme.marker == "trainer_state.json"
        assert scheme.marker_required

    def test_orbax_commit_marker_requirement(self) -> None:
        """On GCS an Orbax step directory needs commit_success.txt; elsewhere rename commits."""
        assert scheme_for(Layout.ORBAX, commit_marker_required=True).marker_required
        local = scheme_for(Layout.ORBAX)
        assert not local.marker_required
        assert local.trust_rename


class TestFileClaims:
    @pytest.mark.parametrize(
        ("layout", "name", "step"),
        [
            (Layout.TORCH, "epoch=3-step=500.ckpt", 500),
            (Layout.TORCH, "model_step_100.pt", 100),
            (Layout.TORCH, "ckpt_42.pth", 42),
            (Layout.TORCH, "model-9.safetensors", 9),
            (Layout.KERAS, "model_03.keras", 3),
            (Layout.KERAS, "weights.05-0.32.weights.h5", 5),
        ],
    )
    def test_step_from_the_name(self, layout: Layout, name: str, step: int) -> None:
        """Files of the layout's extensions with a step in their name are checkpoints."""
        assert scheme_for(layout).claim(name, False) == Claim(name, step, "file")

    @pytest.mark.parametrize("name", ["last.ckpt", "best.pt", "notes.txt", "m_1.pt.tmp"])
    def test_stepless_or_foreign_files_are_not(self, name: str) -> None:
        """Names without a step and other extensions are not followed."""
        assert scheme_for(Layout.TORCH).claim(name, False) is None


class TestPattern:
    def test_named_group_or_first_group_is_the_step(self) -> None:
        """A user pattern matches whole names; its `step` group (or first group) is the step."""
        named = scheme_for(CheckpointPattern(r"run\d+-(?P<step>\d+)\.bin"))
        assert named.claim("run2-40.bin", False) == Claim("run2-40.bin", 40, "file")
        assert named.claim("xrun2-40.bin", False) is None
        first = scheme_for(CheckpointPattern(re.compile(r"snap(\d+)"), kind="dir", marker="DONE"))
        assert first.kind is Kind.DIRECTORY
        assert first.claim("snap8", True) == Claim("snap8", 8, "dir")
        assert first.marker_required

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"pattern": r"no-group"}, ValueError, "group named 'step'"),
            ({"pattern": r"(unclosed"}, ValueError, "valid regular expression"),
            ({"pattern": 5}, TypeError, "'pattern' must be"),
            ({"pattern": r"(\d+)", "kind": "folder"}, ValueError, "'kind' must be one of"),
            ({"pattern": r"(\d+)", "marker": "DONE"}, ValueError, "kind='dir' only"),
            ({"pattern": r"(\d+)", "kind": "dir", "marker": ""}, ValueError, "'marker'"),
        ],
    )
    def test_bad_patterns_name_the_argument(
        self, kwargs: dict[str, object], error: type[Exception], message: str
    ) -> None:
        """Mistakes are refused at once, naming the argument."""
        with pytest.raises(error, match=message):
            CheckpointPattern(**kwargs)  # type: ignore[arg-type]


class TestDetection:
    def detect(self, *entries: tuple[str, bool]) -> str | None:
        scheme = detect_scheme(entries)
        return None if scheme is None else scheme.layout

    def test_each_layout_is_recognised(self) -> None:
        """Each layout is recognised from its typical entries."""
        assert self.detect(("checkpoint", False)) == "tensorflow"
        assert self.detect(("ckpt-1.index", False)) == "tensorflow"
        assert self.detect(("checkpoint-10", True)) == "huggingface"
        assert self.detect(("10", True)) == "orbax"
        assert self.detect(("5.orbax-checkpoint-tmp-99", True)) == "orbax"
        assert self.detect(("model_01.keras", False)) == "keras"
        assert self.detect(("epoch=0-step=10.ckpt", False)) == "torch"
        assert self.detect(("ckpt_10", True)) == "orbax"

    def test_nothing_recognisable(self) -> None:
        """Unrelated entries (logs, stepless files) leave the layout undecided."""
        assert self.detect(("events.out.tfevents", False), ("last.ckpt", False)) is None
        assert self.detect() is None

    def test_precedence(self) -> None:
        """TensorFlow beats everything; files beat `<prefix>_<step>` directories."""
        assert self.detect(("m_1.pt", False), ("checkpoint", False)) == "tensorflow"
        assert self.detect(("version_0", True), ("m_1.pt", False)) == "torch"
        assert self.detect(("m_1.pt", False), ("checkpoint-3", True)) == "huggingface"

    def test_detected_prefix_is_kept(self) -> None:
        """`<prefix>_<step>` detection follows that prefix only."""
        scheme = detect_scheme([("ckpt_10", True)])
        assert scheme is not None
        assert scheme.claim("ckpt_11", True) is not None
        assert scheme.claim("logs_1", True) is None
