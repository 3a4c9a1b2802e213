"""Every ```python block in README.md and docs/*.md runs, so the documentation tells the truth.

Each block runs in a temporary directory, in a fresh namespace that a *setup* fills with the
stand-ins it names (a model, a training step, a checkpoint directory); a setup may then check
what the block did. Markdown comments just before a block (invisible when rendered) say how:

* ``<!-- docs-setup: NAME -->``: the setup (default ``plain``: nothing but ``import tickwork``);
* ``<!-- docs-requires: MODULE -->``: an optional package it needs (skipped, saying so, without);
* ``<!-- skip: REASON -->``: it cannot run here (multi-process, a GPU, a real cluster); the
  reason is reported as the skip's.

Waits run on virtual time: the clock every tickwork object uses by default is replaced by one
whose timed waits return at once with the time moved to their end, so ``timeout=600`` costs
nothing and nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import linecache
import re
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tickwork
import tickwork._clock
from tickwork import Clock, Waitable
from tickwork._clock import MONOTONIC as _MONOTONIC

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REAL_WAIT = 30.0  # real seconds a wait without a timeout may take before the test fails

_FENCE = re.compile(r"^```python\s*$")
_MARK = re.compile(r"^<!--\s*(skip|docs-setup|docs-requires):\s*(.*?)\s*-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    marks: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract(path: Path) -> list[Block]:
    """The python blocks of one markdown file, with the marks on the lines just above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not _FENCE.match(lines[i]):
            i += 1
            continue
        marks: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (match := _MARK.match(lines[j])):
            marks[match.group(1)] = match.group(2)
            j -= 1
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        blocks.append(Block(path, i + 1, "\n".join(lines[i + 1 : end]) + "\n", marks))
        i = end + 1
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in extract(path)]


class JumpClock(Clock):
    """Virtual time: a timed wait returns at once (unless its stop is set) and moves the time to
    its end; a wait without a timeout waits, in real time and bounded, for its stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def wait(self, stop: Waitable | None, timeout: float | None) -> bool:
        if stop is not None and stop.is_set():
            return True
        if timeout is None:
            if stop is None:
                raise ValueError("a wait needs a stop signal or a timeout; got neither")
            if not stop.wait(REAL_WAIT):
                raise TimeoutError(f"a docs example waited {REAL_WAIT} s for {stop!r}")
            return True
        # Give other threads a moment (real time), so a jump never starves the code it waits on.
        if (stop or threading.Event()).wait(0.001):
            return True
        with self._lock:
            self._now += max(timeout, 0.0)
        return False


# -- setups: stand-ins for what an example takes from its surroundings ---------------------------

Setup = Callable[[Path], tuple[dict[str, Any], Callable[[dict[str, Any]], None]]]
SETUPS: dict[str, Setup] = {}


def setup(name: str) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        SETUPS[name] = fn
        return fn

    return register


def _nothing_to_check(namespace: dict[str, Any]) -> None:
    pass


class Counter:
    """A step counter, read as ``optimizer.iterations`` (an int)."""

    def __init__(self) -> None:
        self.iterations = 0


class Model:
    """A model whose fit(), evaluate() and load_weights() record that they were called."""

    def __init__(self) -> None:
        self.optimizer = Counter()
        self.calls: list[str] = []

    def fit(self, *args: object, **kwargs: object) -> None:
        self.calls.append("fit")
        self.optimizer.iterations += 10

    def evaluate(self, *args: object, **kwargs: object) -> dict[str, float]:
        self.calls.append("evaluate")
        return {"loss": 0.5}

    def load_weights(self, path: str) -> None:
        self.calls.append(f"load {Path(path).name}")


@setup("plain")
def _plain(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    return {}, _nothing_to_check


@setup("threads")
def _threads(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    calls: list[str] = []
    namespace = {
        "model": Model(),
        "report_metrics": lambda: calls.append("report"),
        "report": lambda: calls.append("report"),
        "train": lambda: calls.append("train"),
    }

    def check(ns: dict[str, Any]) -> None:
        assert "report" in calls, "the periodic function never ran"

    return namespace, check


@setup("coordinator")
def _coordinator(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """The loader fills a bounded queue that training never empties, so it is blocked waiting
    for room when the stop (Ctrl-C's request_stop) comes at the 20th step: the example must
    still end cleanly (no queue.Full from coord.join(), no loader left running)."""
    calls: dict[str, int] = {"load_batch": 0, "log_metrics": 0, "train_step": 0}
    namespace: dict[str, Any] = {}

    def load_batch() -> int:
        calls["load_batch"] += 1
        return calls["load_batch"]

    def log_metrics() -> None:
        calls["log_metrics"] += 1

    def train_step(batches: Any = None) -> None:
        calls["train_step"] += 1
        if batches is not None and calls["train_step"] == 1:
            limit = time.monotonic() + REAL_WAIT
            while not batches.full():  # the loader is then blocked on a full queue
                assert time.monotonic() < limit, "the loader never filled the queue"
                time.sleep(0.001)  # a bounded look at another thread's progress
        if calls["train_step"] == 20:
            namespace["coord"].request_stop()

    namespace.update(load_batch=load_batch, log_metrics=log_metrics, train_step=train_step)

    def check(ns: dict[str, Any]) -> None:
        assert calls["train_step"] == 20
        assert calls["load_batch"] >= 9  # 8 on the queue, one waiting for room at the stop
        assert calls["log_metrics"] > 0
        assert not ns["loader"].is_alive()

    return namespace, check


def _write_torch_checkpoints(directory: Path, steps: list[int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for step in steps:
        data = io.BytesIO()
        with zipfile.ZipFile(data, "w") as archive:
            archive.writestr("archive/data.pkl", b"weights")
        (directory / f"model_step_{step}.pt").write_bytes(data.getvalue())


@setup("checkpoints")
def _checkpoints(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """runs/a holds checkpoints 100, 200, 300; training is done (and writes a DONE marker)."""
    _write_torch_checkpoints(tmp / "runs" / "a", [100, 200, 300])
    (tmp / "runs" / "a" / "DONE").write_text("")
    seen: list[str] = []
    model = Model()
    namespace = {
        "training_done": lambda: True,
        "evaluate": lambda checkpoint: seen.append(Path(checkpoint).name),
        "model": model,
        "data": None,
        "log_metrics": lambda evaluation: None,
    }

    def check(ns: dict[str, Any]) -> None:
        loaded = [c.removeprefix("load ") for c in model.calls if c.startswith("load ")]
        names = seen or loaded
        expected = [f"model_step_{s}.pt" for s in (100, 200, 300)]
        assert names == expected or names == expected[-1:], names

    return namespace, check


@setup("sidecar-with-training")
def _sidecar_with_training(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """train() writes checkpoints 1, 2, 3 into ckpt_dir; evaluate records each."""
    ckpt_dir = tmp / "ckpts"
    ckpt_dir.mkdir()
    results: list[object] = []
    namespace = {
        "ckpt_dir": str(ckpt_dir),
        "evaluate": lambda checkpoint: checkpoint.step,
        "log_metrics": results.append,
        "train": lambda: _write_torch_checkpoints(ckpt_dir, [1, 2, 3]),
    }

    def check(ns: dict[str, Any]) -> None:
        assert [r.value for r in results] == [1, 2, 3]  # type: ignore[attr-defined]

    return namespace, check


class Variable:
    """An spe target: ``assign(n)``, read with ``int()``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def assign(self, value: int) -> None:
        self.value = int(value)

    def __int__(self) -> int:
        return self.value


@setup("tuner")
def _tuner(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """A training loop whose multi-step function runs int(spe) steps per call."""
    optimizer = Counter()

    def multi_step_train_fn(iterator: object, spe: Any) -> None:
        optimizer.iterations += int(spe.numpy()) if hasattr(spe, "numpy") else int(spe)

    namespace = {
        "optimizer": optimizer,
        "steps_per_execution": Variable(1),
        "multi_step_train_fn": multi_step_train_fn,
        "iterator": None,
        "steps": 200,
        "epochs": 2,
        "steps_per_epoch": 100,
    }

    def check(ns: dict[str, Any]) -> None:
        assert optimizer.iterations >= 200
        assert ns["tuner"].history is not None
        assert not ns["tuner"].is_alive()

    return namespace, check


@setup("tensorflow-tuner")
def _tensorflow_tuner(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    namespace, check = _tuner(tmp)
    namespace["tf"] = importlib.import_module("tensorflow")
    return namespace, check


@setup("runner")
def _runner(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """A multi-step runner's contract (counter, spe, candidates) without a framework."""

    class Runner:
        spe = tickwork.StepsPerExecution(1)
        candidates = (1, 2, 4, 8)

        def counter(self) -> int:
            return 0

    def check(ns: dict[str, Any]) -> None:
        assert ns["tuner"].candidates == (1, 2, 4, 8)

    return {"runner": Runner()}, check


@setup("jax-runner")
def _jax_runner(tmp: Path) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """A one-parameter JAX training step over 40 batches."""
    jnp = importlib.import_module("jax.numpy")

    def train_step(state: Any, batch: Any) -> tuple[Any, Any]:
        return state - 0.01 * batch, state.sum()

    namespace = {
        "train_step": train_step,
        "state": jnp.zeros(2),
        "batches": [jnp.ones(2)] * 40,
        "StepsPerExecutionTuner": tickwork.StepsPerExecutionTuner,
    }

    def check(ns: dict[str, Any]) -> None:
        assert ns["runner"].counter() == 40

    return namespace, check


# -- the test ---------------------------------------------------------------------------------


@pytest.fixture
def virtual_time(monkeypatch: pytest.MonkeyPatch) -> JumpClock:
    """Every tickwork module's default clock becomes one JumpClock."""
    clock = JumpClock()
    real = _MONOTONIC
    for export in tickwork.__all__:  # import what `import tickwork` leaves for its first use
        getattr(tickwork, export)
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "tickwork" and getattr(module, "MONOTONIC", None) is real:
            monkeypatch.setattr(module, "MONOTONIC", clock)
    return clock


def test_every_block_is_found_and_every_mark_is_known() -> None:
    """The extraction is not vacuous, and each block names a setup that exists."""
    assert len(BLOCKS) >= 10
    assert {b.path.name for b in BLOCKS} >= {"README.md", "checkpoints.md", "tuner.md"}
    for block in BLOCKS:
        assert block.marks.get("docs-setup", "plain") in SETUPS, block.id


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_runs(
    block: Block,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    virtual_time: JumpClock,
) -> None:
    """The block runs to its end in a temporary directory, and does what its setup expects."""
    if "skip" in block.marks:
        pytest.skip(f"{block.id}: {block.marks['skip']}")
    if "docs-requires" in block.marks:
        for module in block.marks["docs-requires"].split(","):
            pytest.importorskip(module.strip(), reason=f"{block.id} needs {module.strip()}")
    monkeypatch.chdir(tmp_path)
    namespace, check = SETUPS[block.marks.get("docs-setup", "plain")](tmp_path)
    namespace.update({"__name__": "__docs__", "tickwork": tickwork})
    filename = f"<{block.id}>"  # tracebacks show the block's lines
    linecache.cache[filename] = (len(block.code), None, block.code.splitlines(True), filename)
    code = compile(block.code, filename, "exec")
    exec(code, namespace)
    check(namespace)


# -- the README away from the repository -------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _source_url() -> str:
    """The source repository's address, as pyproject.toml's ``project.urls`` gives it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with (ROOT / "pyproject.toml").open("rb") as file:
        url: str = tomllib.load(file)["project"]["urls"]["Source"]
    return url.rstrip("/")


def test_readme_links_work_outside_the_repository() -> None:
    """A package index shows the README without the repository around it: every link in it is
    absolute (or an anchor in the page), and each one into the source repository names a file
    that exists here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = _LINK.findall(text)
    assert len(links) >= 10
    relative = [link for link in links if not re.match(r"(https?|mailto):|#", link)]
    assert not relative, relative
    prefix = f"{_source_url()}/blob/main/"
    into_repo = [link for link in links if link.startswith(prefix)]
    assert into_repo
    missing = [link for link in into_repo if not (ROOT / link.removeprefix(prefix)).is_file()]
    assert not missing, missing
