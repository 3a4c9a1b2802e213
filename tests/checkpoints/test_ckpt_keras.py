"""Keras 3 checkpoints (.keras archives and .weights.h5 files) written by real Keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tickwork
from tickwork._checkpoints._formats import Structure, check_file

keras = pytest.importorskip("keras")

pytestmark = pytest.mark.keras


def model() -> object:
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    net.compile(optimizer="sgd", loss="mse")
    return net


def fit(net: object, callback: object, epochs: int = 3) -> None:
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    net.fit(x, x[:, :1], epochs=epochs, batch_size=16, verbose=0, callbacks=[callback])  # type: ignore[attr-defined]


def test_model_checkpoint_archives(tmp_path: Path) -> None:
    """Every .keras archive ModelCheckpoint writes is followed in epoch order and loads."""
    fit(model(), keras.callbacks.ModelCheckpoint(str(tmp_path / "model_{epoch:02d}.keras")))
    with tickwork.checkpoints_iterator(tmp_path, timeout=0, skip_to_latest=False) as found:
        paths = list(found)
    assert [p.step for p in paths] == [1, 2, 3]
    assert {p.layout for p in paths} == {"keras"}
    assert keras.models.load_model(paths[-1]) is not None


def test_weights_files(tmp_path: Path) -> None:
    """.weights.h5 files (HDF5) are followed and load back into the model."""
    net = model()
    callback = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "w.{epoch:02d}.weights.h5"), save_weights_only=True
    )
    fit(net, callback)
    latest = tickwork.latest_checkpoint(tmp_path)
    assert latest is not None
    assert latest.step == 3
    net.load_weights(latest)  # type: ignore[attr-defined]


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_partial_copies_are_never_complete(tmp_path: Path, suffix: str) -> None:
    """No prefix of a real Keras file passes the structural check."""
    net = model()
    path = tmp_path / f"m_1{suffix}"
    if suffix == ".keras":
        net.save(path)  # type: ignore[attr-defined]
    else:
        net.save_weights(path)  # type: ignore[attr-defined]
    data = path.read_bytes()
    assert check_file(path.name, len(data), lambda o, s: data[o : o + s]).structure is (
        Structure.COMPLETE
    )
    for cut in range(0, len(data), max(1, len(data) // 200)):
        part = data[:cut]
        verdict = check_file(path.name, len(part), lambda o, s, d=part: d[o : o + s])  # type: ignore[misc]
        assert verdict.structure is not Structure.COMPLETE, cut
