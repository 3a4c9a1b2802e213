"""Run in a fresh interpreter per Keras backend (KERAS_BACKEND is read when keras is imported).

Prints one JSON object of observations on its last line; tests/integrations/test_keras.py
asserts on them. Not a test module itself (pytest does not collect a leading underscore).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import keras
import numpy as np

from tickwork.integrations.keras import probe_steps_per_execution, set_steps_per_execution

BATCHES = 32
BATCH_SIZE = 16


def build(spe: int) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=spe,
    )
    return model


class CallLog(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped (Any)
    """Records the batch index fit() reports after each call, per epoch."""

    def __init__(self, change_to: int | None = None, rebuild: bool = False) -> None:
        super().__init__()
        self.change_to, self.rebuild = change_to, rebuild
        self.epochs: list[list[int]] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epochs.append([])

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.epochs[-1].append(batch)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.change_to is not None and epoch == 0:
            self.model.steps_per_execution = self.change_to
            if self.rebuild:
                self.model.make_train_function(force=True)


def iterations(model: Any) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def error_of(fn: Any) -> dict[str, Any] | None:
    try:
        fn()
    except Exception as exc:
        return {
            "type": type(exc).__name__,
            "message": str(exc),
            "notes": list(getattr(exc, "__notes__", [])),
        }
    return None


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((BATCHES * BATCH_SIZE, 784), dtype=np.float32)
    y = rng.integers(0, 10, BATCHES * BATCH_SIZE)
    out: dict[str, Any] = {"backend": keras.backend.backend(), "keras": keras.__version__}

    # 1. Assigning model.steps_per_execution from a callback during fit(), with and without
    #    rebuilding the train function.
    for rebuild in (False, True):
        model, log = build(1), CallLog(change_to=4, rebuild=rebuild)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            error = error_of(
                lambda m=model, cb=log: m.fit(
                    x, y, batch_size=BATCH_SIZE, epochs=2, verbose=0, callbacks=[cb]
                )
            )
        out[f"midfit_rebuild_{rebuild}"] = {
            "error": error,
            "calls_per_epoch": [len(e) for e in log.epochs],
            "epoch2_batches": log.epochs[1][:4] if len(log.epochs) > 1 else [],
            "iterations": iterations(model),
            "ran_out_of_data": any("ran out of data" in str(w.message) for w in caught),
        }

    # 2. set_steps_per_execution between fit() calls.
    model = build(1)
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0)
    before = iterations(model)
    error = error_of(lambda: set_steps_per_execution(model, 4))
    log = CallLog()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, callbacks=[log])
    out["between_fits"] = {
        "error": error,
        "spe_after": model.steps_per_execution,
        "batches_reported": log.epochs[0],
        "iterations_added": iterations(model) - before,
        "ran_out_of_data": any("ran out of data" in str(w.message) for w in caught),
    }

    # 3. The probe.
    candidates = (1,) if keras.backend.backend() == "torch" else (1, 4)
    result = probe_steps_per_execution(
        build, x, y, candidates=candidates, steps=16, rounds=2, batch_size=BATCH_SIZE
    )
    out["probe"] = {
        "best": result.best,
        "throughput": {str(k): v for k, v in result.throughput.items()},
        "warmup_seconds": {str(k): v for k, v in result.warmup_seconds.items()},
        "rounds": len(result.rounds),
        "backend": result.backend,
    }
    out["probe_refused"] = error_of(
        lambda: probe_steps_per_execution(
            build, x, y, candidates=(1, 2), steps=8, rounds=1, batch_size=BATCH_SIZE
        )
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
