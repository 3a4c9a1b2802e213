"""PyTorch and Lightning checkpoints written by real torch.save and safetensors."""

from __future__ import annotations

from pathlib import Path

import pytest

import tickwork
from tickwork._checkpoints._formats import Structure, check_file

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


def state(step: int) -> dict[str, object]:
    return {"step": step, "weights": torch.full((64, 64), float(step))}


@pytest.mark.parametrize(
    "names",
    [
        ["epoch=0-step=100.ckpt", "epoch=1-step=200.ckpt", "epoch=10-step=1100.ckpt"],
        ["model_step_100.pt", "model_step_200.pt", "model_step_1100.pt"],
        ["ckpt_100.pth", "ckpt_200.pth", "ckpt_1100.pth"],
    ],
)
def test_saved_files_in_step_order(tmp_path: Path, names: list[str]) -> None:
    """Lightning-style and plain names are followed by step, and torch.load reads them."""
    for name in reversed(names):
        torch.save(state(int(name.split("_")[-1].split("=")[-1].split(".")[0])), tmp_path / name)
    with tickwork.checkpoints_iterator(tmp_path, timeout=0, skip_to_latest=False) as found:
        paths = list(found)
    assert [p.step for p in paths] == [100, 200, 1100]
    assert torch.load(paths[-1], weights_only=True)["step"] == 1100


def test_truncated_torch_files_are_never_complete(tmp_path: Path) -> None:
    """No prefix of a real torch.save archive passes the structural check."""
    path = tmp_path / "m_1.pt"
    torch.save(state(1), path)
    data = path.read_bytes()
    assert check_file(path.name, len(data), lambda o, s: data[o : o + s]).structure is (
        Structure.COMPLETE
    )
    for cut in range(0, len(data), max(1, len(data) // 300)):
        part = data[:cut]
        verdict = check_file(path.name, len(part), lambda o, s, d=part: d[o : o + s])  # type: ignore[misc]
        assert verdict.structure is not Structure.COMPLETE, cut


def test_safetensors(tmp_path: Path) -> None:
    """safetensors files are followed; a cut copy is not."""
    from safetensors.torch import save_file

    save_file({"w": torch.ones(10, 10)}, tmp_path / "model-5.safetensors")
    data = (tmp_path / "model-5.safetensors").read_bytes()
    (tmp_path / "model-6.safetensors").write_bytes(data[:-7])
    latest = tickwork.latest_checkpoint(tmp_path)
    assert latest is not None
    assert latest.step == 5


def test_legacy_format_waits_to_settle(tmp_path: Path) -> None:
    """The legacy (pickle) format cannot be checked: it is handed out once settled."""
    torch.save(state(3), tmp_path / "m_3.pt", _use_new_zipfile_serialization=False)
    with tickwork.CheckpointFollower(tmp_path, settle_secs=0.3, watch="events") as follower:
        assert follower.next_checkpoint(timeout=0) is None
        found = follower.next_checkpoint(timeout=30)
        assert found is not None
        assert found.step == 3
        assert torch.load(found, weights_only=True)["step"] == 3
