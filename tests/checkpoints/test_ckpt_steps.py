"""Reading steps from checkpoint names."""

from __future__ import annotations

import pytest

from tickwork._checkpoints._layouts import (
    epoch_from_name,
    split_suffix,
    step_from_name,
    trailing_step,
)


class TestStepFromName:
    @pytest.mark.parametrize(
        ("stem", "step"),
        [
            ("step=123", 123),
            ("epoch=3-step=500", 500),
            ("epoch=3-step=500-v1", 500),
            ("model_step_100", 100),
            ("ckpt_42", 42),
            ("model-step-7", 7),
            ("STEP12", 12),
            ("weights.05-0.32", 5),  # Keras {epoch:02d}-{val_loss:.2f}
            ("model-epoch=02-val_loss=0.32", 2),
            ("epoch=3", 3),
            ("resnet50_epoch3", 3),
            ("model_100", 100),
            ("run2024_ckpt_42", 42),
            ("lr1e-3_ckpt_9", 9),
        ],
    )
    def test_reads_the_step(self, stem: str, step: int) -> None:
        """The step comes from `step`, else `epoch`, else the last integer outside decimals."""
        assert step_from_name(stem) == step

    @pytest.mark.parametrize("stem", ["last", "best", "model", "laststep", "val_loss=0.32"])
    def test_no_number_no_step(self, stem: str) -> None:
        """Names without a usable number (last.ckpt, best.keras) have no step."""
        assert step_from_name(stem) is None

    def test_epoch_is_read_separately(self) -> None:
        """The epoch of a Lightning name is available beside its step."""
        assert epoch_from_name("epoch=3-step=500") == 3
        assert epoch_from_name("step=500") is None


class TestTrailingStep:
    @pytest.mark.parametrize(
        ("name", "step"),
        [("ckpt-5", 5), ("model.ckpt-1000", 1000), ("12", 12), ("checkpoint_7", 7), ("ckpt", None)],
    )
    def test_trailing_number(self, name: str, step: int | None) -> None:
        """TensorFlow prefixes and Orbax step names end in their step."""
        assert trailing_step(name) == step


class TestSplitSuffix:
    def test_longest_suffix_wins(self) -> None:
        """`.weights.h5` is matched before `.h5`, ignoring case."""
        assert split_suffix("w_3.weights.h5", (".h5", ".weights.h5")) == ("w_3", ".weights.h5")
        assert split_suffix("M_3.PT", (".pt",)) == ("M_3", ".PT")

    def test_no_suffix_or_empty_stem(self) -> None:
        """A name that is only the suffix, or has another suffix, does not match."""
        assert split_suffix(".pt", (".pt",)) is None
        assert split_suffix("a.txt", (".pt",)) is None
