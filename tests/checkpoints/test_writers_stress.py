"""The real writers, followed beside training, many times: races show only under load.

Every run asserts the promises (:func:`writers.problems`): step order, completeness at yield time
(each checkpoint is loaded with the library's own loader when handed out) and accounting
(yielded + deleted before reached == written). ``TICKWORK_STRESS_RUNS`` (default 1) sets the
runs per writer; the heavy frameworks (Lightning, Keras, TensorFlow, Orbax) run a third as many
(at least one). Nothing is retried: a run that breaks a promise fails the test, and the summary
line says how many of the runs did. Figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import writers
from writers import Outcome, problems

pytestmark = [
    pytest.mark.slow,
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def runs(heavy: bool = False) -> int:
    raw = os.environ.get("TICKWORK_STRESS_RUNS", "1")
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(f"TICKWORK_STRESS_RUNS must be an int >= 1; got {raw!r}") from None
    if count < 1:
        raise ValueError(f"TICKWORK_STRESS_RUNS must be an int >= 1; got {raw!r}")
    return max(1, count // 3) if heavy else count


pytestmark.append(pytest.mark.timeout(max(120, 60 * runs())))  # scaled with the runs


def repeat(
    name: str,
    tmp_path: Path,
    run: Callable[[Path, int], Outcome],
    *,
    heavy: bool = False,
    deletions: bool = False,
) -> None:
    total = runs(heavy)
    broken: list[str] = []
    for index in range(total):
        directory = tmp_path / f"run{index}"
        found = problems(run(directory, index), deletions=deletions)
        if found:
            broken.append(f"run {index}: {'; '.join(found)}")
    print(f"\nstress {name}: runs={total} failures={len(broken)}")  # the figures (-s)
    assert not broken, f"{len(broken)} of {total} runs broke a promise:\n" + "\n".join(broken)


def need(module: str) -> None:
    if not writers.importable(module):
        pytest.skip(f"needs {module}")


@pytest.mark.parametrize("name", ["step_{}", "step-{}", "{}"])
def test_dcp(tmp_path: Path, name: str) -> None:
    """torch.distributed.checkpoint.save step directories, auto-detected as DCP."""
    need("torch")

    def run(directory: Path, _index: int) -> Outcome:
        outcome = writers.run_dcp(directory, steps=6, name=name)
        assert outcome.layout == "dcp"
        return outcome

    repeat(f"dcp[{name}]", tmp_path, run)


@pytest.mark.parametrize("save_steps", [1, 2])
def test_trainer_every_checkpoint_in_order(tmp_path: Path, save_steps: int) -> None:
    """The Hugging Face Trainer saving every 1-2 steps: all, in step order, each loads."""
    need("transformers")
    repeat(
        f"huggingface[save_steps={save_steps}]",
        tmp_path,
        lambda d, _i: writers.run_huggingface(d, save_steps=save_steps),
    )


@pytest.mark.parametrize("hold", [False, True])
def test_trainer_rotation_adds_up(tmp_path: Path, hold: bool) -> None:
    """save_total_limit=2 and a slow consumer: yielded + deleted before reached == written."""
    need("transformers")
    repeat(
        f"huggingface[save_total_limit=2,hold={hold}]",
        tmp_path,
        lambda d, _i: writers.run_huggingface(
            d, save_steps=1, save_total_limit=2, hold=hold, slow=0.3
        ),
        deletions=True,
    )


@pytest.mark.parametrize("kind", ["torch", "safetensors"])
def test_killed_mid_write(tmp_path: Path, kind: str) -> None:
    """torch.save / safetensors killed anywhere in the file (a seeded random point per run)."""
    need("torch")
    if kind == "safetensors":
        need("safetensors")

    def run(directory: Path, index: int) -> Outcome:
        fraction = random.Random(index).uniform(0.01, 0.999)
        directory.mkdir()
        return writers.run_killed_file(directory, kind, fraction)

    repeat(f"killed[{kind}]", tmp_path, run)


def test_lightning(tmp_path: Path) -> None:
    need("lightning")
    repeat("lightning", tmp_path, lambda d, _i: writers.run_lightning(d), heavy=True)


@pytest.mark.keras
def test_keras(tmp_path: Path) -> None:
    need("keras")
    repeat("keras", tmp_path, lambda d, _i: writers.run_keras(d), heavy=True)


@pytest.mark.tensorflow
def test_tensorflow(tmp_path: Path) -> None:
    need("tensorflow")
    repeat("tensorflow", tmp_path, lambda d, _i: writers.run_tensorflow(d), heavy=True)


@pytest.mark.jax
def test_orbax(tmp_path: Path) -> None:
    need("orbax.checkpoint")

    def run(directory: Path, _index: int) -> Outcome:
        outcome = writers.run_orbax(directory)
        assert outcome.layout == "orbax"  # looked inside: not DCP
        return outcome

    repeat("orbax", tmp_path, run, heavy=True)
