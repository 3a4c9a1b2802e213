"""Checkpoint following: tickwork beside TensorFlow's checkpoints_iterator, in one run.

Run from the repository root in the bench venv (``make bench-venv``)::

    .bench-venv/bin/python -m benchmarks.checkpoints [--quick]

Local part: a real ``tf.train.CheckpointManager`` saves 40 checkpoints, one every 20-400 ms
(uniform, seeded), into a directory that already holds 10 or 10,000 checkpoints. Followers
run at the same time, each in its own thread, on the same directory:

* ``tf.train.checkpoints_iterator`` (TensorFlow's, polls once a second, newest only);
* tickwork with ``skip_to_latest=True`` (TensorFlow's semantics);
* tickwork with ``skip_to_latest=False`` (every checkpoint), a consumer that returns at once;
* tickwork with ``skip_to_latest=False``, a consumer that takes 200 ms per checkpoint.

For each: detection latency (save() returned -> checkpoint yielded, over the ones yielded),
staleness (save() returned -> the consumer first holds this checkpoint or a newer one, over all
40; a consumer still busy with an older one is stale), missed (never yielded). Then, alone:
idle CPU (CPU seconds per second over 5 s while waiting on a directory where nothing happens),
how long each takes to end once its stop is set (TensorFlow: ``timeout=1`` and ``timeout_fn``,
its way to end a wait), and timeout accuracy (``timeout=T`` on an idle directory).

S3 part: the same 40 checkpoints uploaded to a moto S3 server (started here, on a free port)
with s3fs, followed by tickwork (``skip_to_latest=False``, ``poll_interval=0.05``).

Prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf
from tensorflow.python.training.checkpoint_utils import (
    checkpoints_iterator as tf_checkpoints_iterator,
)

import tickwork
from tickwork._checkpoints._consumer import ResumePoint, save_resume

tf.get_logger().setLevel("ERROR")

SAVES = 40
STOP_SAMPLES = 7
GAP = (0.020, 0.400)
SEED = 3
SLOW_CONSUMER = 0.200


@dataclass
class Consumer:
    name: str
    yielded: list[tuple[int, float]] = field(default_factory=list)  # (step, time yielded)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def ms(value: float) -> str:
    return "n/a" if value != value else f"{value * 1000:.0f}"


# -- writing ---------------------------------------------------------------------------------------


def prepopulate(directory: Path, count: int) -> int:
    """``count`` real TF checkpoints (hard links of one), listed in the state file."""
    variable = tf.Variable(0.0)
    seed_dir = directory.parent / (directory.name + "-seed")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(seed_dir), 1)
    prefix = Path(manager.save())
    directory.mkdir()
    paths = []
    for step in range(1, count + 1):
        for part in prefix.parent.glob(prefix.name + ".*"):
            os.link(part, directory / part.name.replace(prefix.name, f"ckpt-{step}", 1))
        paths.append(f"ckpt-{step}")
    tf.compat.v1.train.update_checkpoint_state(
        str(directory), paths[-1], all_model_checkpoint_paths=paths
    )
    shutil.rmtree(seed_dir)
    return count


def train(
    directory: Path,
    first: int,
    saved: dict[int, float],
    done: threading.Event,
    durations: list[float] | None = None,
) -> None:
    """40 saves by a real CheckpointManager, 20-400 ms apart; records when each returned."""
    variable = tf.Variable(0.0)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=variable), str(directory), max_to_keep=None
    )
    rng = random.Random(SEED)
    for i in range(SAVES):
        time.sleep(rng.uniform(*GAP))
        variable.assign(float(i))
        started = time.monotonic()
        manager.save(checkpoint_number=first + i)
        saved[first + i] = time.monotonic()
        if durations is not None:
            durations.append(saved[first + i] - started)
    done.set()


# -- following -------------------------------------------------------------------------------------


def follow(
    consumer: Consumer,
    checkpoints: Iterable[str],
    last_step: int,
    step_of: Callable[[str], int],
    work: float = 0.0,
) -> None:
    for path in checkpoints:
        step = step_of(path)
        consumer.yielded.append((step, time.monotonic()))
        if step >= last_step:
            return
        if work:
            time.sleep(work)


def tf_step(path: str) -> int:
    return int(path.rsplit("-", 1)[1])


def summarise(consumer: Consumer, saved: dict[int, float]) -> dict[str, str]:
    # Times are from save() returning. CheckpointManager writes the state file before it
    # returns, so a fast follower can yield slightly earlier: those count as 0.
    yielded_at = dict(consumer.yielded)
    latency = [max(0.0, yielded_at[s] - saved[s]) for s in yielded_at if s in saved]
    staleness = []
    for step, at in saved.items():
        caught = [t for s, t in consumer.yielded if s >= step]
        if caught:
            staleness.append(max(0.0, min(caught) - at))
    missed = sum(1 for step in saved if step not in yielded_at)
    return {
        "follower": consumer.name,
        "latency p50 ms": ms(percentile(latency, 0.5)),
        "latency p99 ms": ms(percentile(latency, 0.99)),
        "staleness p50 ms": ms(percentile(staleness, 0.5)),
        "staleness max ms": ms(max(staleness) if staleness else float("nan")),
        "missed": f"{missed} of {len(saved)}",
    }


def local_run(root: Path, present: int) -> tuple[list[dict[str, str]], float]:
    directory = root / f"run-{present}"
    first = prepopulate(directory, present) + 1
    last = first + SAVES - 1
    # Each tickwork follower resumes after the checkpoints already there (its own resume file).
    states = [root / f"resume-{present}-{i}.json" for i in range(3)]
    for state in states:
        point = ResumePoint(f"ckpt-{first - 1}", first - 1, "")
        save_resume(str(state), str(directory), "tensorflow", point)
    consumers = [
        Consumer("tf.train.checkpoints_iterator"),
        Consumer("tickwork skip_to_latest=True"),
        Consumer("tickwork skip_to_latest=False"),
        Consumer(f"tickwork skip_to_latest=False, {SLOW_CONSUMER * 1000:.0f} ms consumer"),
    ]
    iterators = [
        tickwork.checkpoints_iterator(directory, timeout=30, skip_to_latest=skip, state_file=state)
        for skip, state in zip((True, False, False), states, strict=True)
    ]
    for it in iterators:
        assert it.follower.start(timeout=60), "follower did not start"
    threads = [
        threading.Thread(
            target=follow,
            args=(consumers[0], tf_checkpoints_iterator(str(directory), timeout=5), last, tf_step),
        )
    ]
    for consumer, it, work in zip(consumers[1:], iterators, (0.0, 0.0, SLOW_CONSUMER), strict=True):
        threads.append(
            threading.Thread(target=follow, args=(consumer, it, last, lambda c: c.step, work))
        )
    saved: dict[int, float] = {}
    durations: list[float] = []
    done = threading.Event()
    for thread in threads:
        thread.start()
    train(directory, first, saved, done, durations)
    for thread in threads:
        thread.join(120)
    for it in iterators:
        it.close()
    # TF's iterator yields what is newest when it starts: drop what came before training.
    for consumer in consumers:
        consumer.yielded = [(s, t) for s, t in consumer.yielded if s >= first]
    return [summarise(c, saved) for c in consumers], percentile(durations, 0.5)


def idle_cpu(directory: Path, seconds: float) -> dict[str, tuple[float, float, float]]:
    """Per follower: CPU seconds per second while it waits on a directory where nothing happens,
    then how long it takes to end once its stop is set (p50 and max of STOP_SAMPLES, seconds)."""
    results = {}

    def measure(name: str, run: Callable[[Any], None], make_stop: Callable[[], Any]) -> None:
        used = 0.0
        latencies = []
        for attempt in range(STOP_SAMPLES):
            stop = make_stop()
            thread = threading.Thread(target=run, args=(stop,), daemon=True)
            thread.start()
            time.sleep(1.0 if attempt == 0 else random.uniform(0.3, 1.3))  # settle; any phase
            if attempt == 0:
                cpu, wall = time.process_time(), time.monotonic()
                time.sleep(seconds)
                used = (time.process_time() - cpu) / (time.monotonic() - wall)
            began = time.monotonic()
            if isinstance(stop, tickwork.Coordinator):
                stop.request_stop()
            else:
                stop.set()
            thread.join(10)
            latencies.append(time.monotonic() - began)
        results[name] = (used, percentile(latencies, 0.5), max(latencies))

    def tf_run(stop: threading.Event, timeout: float) -> None:
        # TensorFlow's way to end a wait: timeout_fn, asked after each `timeout` without one.
        for _ in tf_checkpoints_iterator(str(directory), timeout=timeout, timeout_fn=stop.is_set):
            pass

    def tw_run(stop: Any, watch: str) -> None:
        for _ in tickwork.checkpoints_iterator(directory, stop=stop, watch=watch):
            pass

    for timeout in (2, 1):
        measure(
            f"tf.train.checkpoints_iterator (timeout={timeout}, timeout_fn)",
            lambda stop, timeout=timeout: tf_run(stop, timeout),  # type: ignore[misc]
            threading.Event,
        )
    measure(
        "tickwork (events), stop=threading.Event",
        lambda stop: tw_run(stop, "events"),
        threading.Event,
    )
    measure(
        "tickwork (events), stop=tickwork.Coordinator",
        lambda stop: tw_run(stop, "events"),
        tickwork.Coordinator,
    )
    measure(
        "tickwork (poll, 1 s), stop=threading.Event",
        lambda stop: tw_run(stop, "poll"),
        threading.Event,
    )
    return results


def timeout_accuracy(
    directory: Path, timeouts: Iterable[float]
) -> list[tuple[float, float, float]]:
    """(requested, TensorFlow's, tickwork's): seconds from the wait's start to the end."""
    rows = []
    for requested in timeouts:
        measured = []
        for it in (
            iter(tf_checkpoints_iterator(str(directory), timeout=requested)),
            tickwork.checkpoints_iterator(directory, timeout=requested),
        ):
            next(it)  # the checkpoint already there
            start = time.monotonic()
            for _ in it:
                pass
            measured.append(time.monotonic() - start)
        rows.append((requested, measured[0], measured[1]))
    return rows


# -- S3 --------------------------------------------------------------------------------------------


def s3_run(root: Path) -> dict[str, str]:
    import s3fs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    process = subprocess.Popen(
        [server or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
        }
        writer = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)
        writer.mkdir("bench")
        local = root / "s3-source"
        variable = tf.Variable(0.0)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(local), None)
        consumer = Consumer("tickwork on S3 (moto), skip_to_latest=False, poll 50 ms")
        saved: dict[int, float] = {}
        it = tickwork.checkpoints_iterator(
            "s3://bench/run",
            timeout=30,
            skip_to_latest=False,
            poll_interval=0.05,
            max_poll_interval=0.05,
            storage_options=options,
        )
        thread = threading.Thread(target=follow, args=(consumer, it, SAVES, lambda c: c.step))
        thread.start()
        rng = random.Random(SEED)
        for i in range(1, SAVES + 1):
            time.sleep(rng.uniform(*GAP))
            prefix = Path(manager.save(checkpoint_number=i))
            for part in sorted(
                prefix.parent.glob(prefix.name + ".*"), key=lambda p: p.suffix == ".index"
            ):
                writer.put_file(str(part), f"bench/run/{part.name}")
            writer.put_file(str(local / "checkpoint"), "bench/run/checkpoint")
            saved[i] = time.monotonic()
        thread.join(120)
        it.close()
        return summarise(consumer, saved)
    finally:
        process.terminate()
        process.wait(10)


# -- report ----------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("tensorflow-cpu", "watchfiles", "fsspec", "s3fs", "moto")
    )
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {versions}, "
        f"tickwork {tickwork.__version__}"
    )


def table(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 present only, no S3")
    parser.add_argument(
        "--idle-only", action="store_true", help="only idle CPU, stop latency and timeouts"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    out = [
        "## Checkpoint following (issue 3)",
        "",
        "Command: `.bench-venv/bin/python -m benchmarks.checkpoints`"
        + (" --quick" if args.quick else "")
        + (" --idle-only" if args.idle_only else ""),
        "",
        f"Machine: {machine()}. Load average at start: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + " (other engineers share the machine).",
        "",
        f"{SAVES} checkpoints saved by tf.train.CheckpointManager, {GAP[0] * 1000:.0f}-"
        f"{GAP[1] * 1000:.0f} ms apart; all followers at once on the same directory.",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for present in () if args.idle_only else (10,) if args.quick else (10, 10_000):
            rows, save_time = local_run(root, present)
            out += ["", f"### {present} checkpoints already present", ""]
            out += [
                f"save() took {ms(save_time)} ms (p50); times are counted from its return "
                "(detections during save() count as 0).",
                "",
                table(rows),
            ]
        idle_dir = root / "run-10"
        if args.idle_only:
            prepopulate(idle_dir, 10)
        cpu = idle_cpu(idle_dir, 5.0)
        out += ["", "### Idle CPU (5 s, nothing written) and stop latency", ""]
        out += [
            f"| follower | CPU s per s | stop set -> loop ended, p50 ms ({STOP_SAMPLES} stops) "
            "| max ms |",
            "| --- | --- | --- | --- |",
        ]
        out += [
            f"| {name} | {used:.4f} | {p50 * 1000:.1f} | {worst * 1000:.1f} |"
            for name, (used, p50, worst) in cpu.items()
        ]
        out += ["", "### Timeout accuracy (idle directory)", ""]
        out += ["| timeout s | TensorFlow returned after s | tickwork returned after s |"]
        out += ["| --- | --- | --- |"]
        for requested, theirs, ours in timeout_accuracy(idle_dir, (0.25, 1.0, 2.0)):
            out.append(f"| {requested:g} | {theirs:.3f} | {ours:.3f} |")
        if not (args.quick or args.idle_only):
            out += ["", "### S3 (moto server, s3fs)", "", table([s3_run(root)])]
    load_after = os.getloadavg()
    out += ["", "Load average at the end: " + ", ".join(f"{x:.2f}" for x in load_after) + "."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
