"""tickwork.integrations.keras on real Keras 3, one fresh interpreter per backend.

KERAS_BACKEND is read when keras is imported, so each backend runs ``_keras_worker.py`` in a
subprocess once and the tests assert on what it observed. Some tests pin down Keras's own
behaviour that docs/frameworks.md and the module docs state; if a Keras release changes it, they
fail and the docs need revisiting.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tickwork.integrations._multistep import choose_spe

pytestmark = pytest.mark.keras

WORKER = Path(__file__).with_name("_keras_worker.py")
SPE_BACKENDS = ["tensorflow", "jax"]


@pytest.fixture(scope="module", params=["tensorflow", "jax", "torch"])
def observed(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the worker saw on one backend."""
    pytest.importorskip("keras")
    env = {**os.environ, "KERAS_BACKEND": request.param, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == request.param
    return result


@pytest.mark.slow
@pytest.mark.timeout(900)
class TestKerasBehaviour:
    def test_assigning_spe_from_a_callback_during_fit_changes_nothing(
        self, observed: dict[str, Any]
    ) -> None:
        """model.steps_per_execution = 4 in on_epoch_end: the next epoch still runs 1 per call."""
        seen = observed["midfit_rebuild_False"]
        assert seen["error"] is None
        assert seen["calls_per_epoch"] == [32, 32]
        assert seen["epoch2_batches"] == [0, 1, 2, 3]

    def test_rebuilding_from_a_callback_during_fit_breaks_its_accounting(
        self, observed: dict[str, Any]
    ) -> None:
        """A rebuilt train function runs 4 per call while fit() counts 1: wrong indices, no data.

        On torch Keras refuses the value outright.
        """
        seen = observed["midfit_rebuild_True"]
        if observed["backend"] == "torch":
            assert seen["error"]["type"] == "ValueError"
            assert "must be 1 with the PyTorch backend" in seen["error"]["message"]
            return
        assert seen["error"] is None
        assert seen["calls_per_epoch"] == [32, 8]
        assert seen["epoch2_batches"] == [0, 1, 2, 3]  # would be 3, 7, 11, 15 if fit() knew
        assert seen["ran_out_of_data"] is True


@pytest.mark.slow
@pytest.mark.timeout(900)
class TestSetStepsPerExecution:
    def test_between_fit_calls_the_next_fit_runs_n_per_call(self, observed: dict[str, Any]) -> None:
        """After set_steps_per_execution(model, 4) the next fit() runs and reports 4 per call.

        On torch (Keras 3.15) the ValueError says so, and the model keeps spe 1 and trains.
        """
        seen = observed["between_fits"]
        if observed["backend"] == "torch":
            assert seen["error"]["type"] == "ValueError"
            assert any("the model keeps 1" in note for note in seen["error"]["notes"])
            assert seen["spe_after"] == 1
            assert seen["batches_reported"] == list(range(32))
        else:
            assert seen["error"] is None
            assert seen["spe_after"] == 4
            assert seen["batches_reported"] == [3, 7, 11, 15, 19, 23, 27, 31]
        assert seen["iterations_added"] == 32
        assert seen["ran_out_of_data"] is False


@pytest.mark.slow
@pytest.mark.timeout(900)
class TestProbe:
    def test_measures_every_candidate_and_picks_by_the_rule(self, observed: dict[str, Any]) -> None:
        """Every candidate gets a finite positive throughput; best follows choose_spe."""
        probe = observed["probe"]
        candidates = [1] if observed["backend"] == "torch" else [1, 4]
        throughput = {int(k): v for k, v in probe["throughput"].items()}
        assert sorted(throughput) == candidates
        assert sorted(int(k) for k in probe["warmup_seconds"]) == candidates
        assert all(math.isfinite(v) and v > 0 for v in throughput.values())
        assert all(v >= 0 for v in probe["warmup_seconds"].values())
        assert probe["best"] == choose_spe(throughput, 0.05)
        assert probe["rounds"] == 2
        assert probe["backend"] == observed["backend"]

    def test_a_value_the_backend_refuses_fails_the_probe_with_context(
        self, observed: dict[str, Any]
    ) -> None:
        """Candidates (1, 2) probe fine where spe is supported; torch's refusal is raised."""
        refused = observed["probe_refused"]
        if observed["backend"] in SPE_BACKENDS:
            assert refused is None
        else:
            assert refused["type"] == "ValueError"
            assert any("warm-up fit() of steps_per_execution=2" in n for n in refused["notes"])


class TestArguments:
    """Argument checks, in this interpreter (they run before any fit())."""

    @pytest.fixture(autouse=True)
    def _keras(self) -> None:
        pytest.importorskip("keras")

    def test_set_refuses_a_bad_value_and_an_uncompiled_model(self) -> None:
        """steps_per_execution must be an int >= 1, and the model compiled."""
        from tickwork.integrations.keras import set_steps_per_execution

        with pytest.raises(ValueError, match="'steps_per_execution' must be an int >= 1; got 0"):
            set_steps_per_execution(SimpleNamespace(compiled=True), 0)
        with pytest.raises(ValueError, match="'model' must be a compiled Keras model"):
            set_steps_per_execution(SimpleNamespace(compiled=False), 2)

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"candidates": ()}, ValueError, "'candidates' must hold at least one value"),
            ({"candidates": (1, 0)}, ValueError, "'candidates' must be an int >= 1; got 0"),
            ({"candidates": (1, 2, 2)}, ValueError, "'candidates' must not repeat a value"),
            ({"steps": 0}, ValueError, "'steps' must be an int >= 1; got 0"),
            ({"rounds": 0}, ValueError, "'rounds' must be an int >= 1; got 0"),
            ({"tolerance": -1}, ValueError, "'tolerance' must be a finite number >= 0"),
            ({"epochs": 3}, ValueError, "'epochs' and 'steps_per_epoch' are set by the probe"),
        ],
    )
    def test_probe_refuses_bad_arguments(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Each bad argument is named with its rule and value, before anything is built."""
        from tickwork.integrations.keras import probe_steps_per_execution

        def build(n: int) -> Any:
            raise AssertionError("nothing is built when an argument is bad")

        with pytest.raises(error, match=message):
            probe_steps_per_execution(build, None, **kwargs)

    def test_probe_refuses_a_build_that_ignores_n(self) -> None:
        """build(n) must return a model compiled with steps_per_execution=n."""
        from tickwork.integrations.keras import probe_steps_per_execution

        with pytest.raises(ValueError, match=r"compiled with steps_per_execution=1; got 7"):
            probe_steps_per_execution(lambda n: SimpleNamespace(steps_per_execution=7), None)
        with pytest.raises(TypeError, match="'build' must be a callable"):
            probe_steps_per_execution(3, None)  # type: ignore[arg-type]
