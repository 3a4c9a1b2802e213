"""`tickwork follow`: a command per checkpoint, end to end against real directories being
written while it follows them, in a subprocess; and its pure parts (substitution, exit status)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tickwork import Checkpoint, EndReason, SidecarStats
from tickwork._cli._command import substitute
from tickwork._cli._follow_run import exit_status

LIMIT = 90.0  # seconds a follow run may take; reached only when something is wrong
FOLLOW = [sys.executable, "-c", "import sys, tickwork._cli as c; sys.exit(c.main())"]


def zip_bytes(step: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/step", str(step))
    return buffer.getvalue()


def save(directory: Path, step: int) -> None:
    """A torch-style checkpoint, written beside its final name and renamed into place."""
    temporary = directory / f".tmp-{step}"
    temporary.write_bytes(zip_bytes(step))
    os.replace(temporary, directory / f"model_step_{step}.pt")


# The child starts with Python's own SIGINT handler whatever this run inherited: from a background
# job SIGINT comes ignored, and stop_on_signals (like Python) leaves an ignored SIGINT ignored.
_FOLLOW = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "import tickwork._cli as c; sys.exit(c.main())"
)


def start_follow(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _FOLLOW, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"tickwork follow did not end:\n{out}\n{err}")
    return process.returncode, out, err


def train(directory: Path, steps: range, *, marker: bool = True, gap: float = 0.05) -> None:
    """Save checkpoints while `tickwork follow` runs, then the done marker."""
    for step in steps:
        save(directory, step)
        time.sleep(gap)  # the cadence of a (fast) training run, not a wait for a result
    if marker:
        (directory / "DONE").touch()


# The command evaluated per checkpoint: reads the zip, records what it was given.
EVALUATE = textwrap.dedent(
    """
    import os, sys, zipfile
    path, step, log = sys.argv[1], sys.argv[2], sys.argv[3]
    inside = zipfile.ZipFile(path).read("archive/step").decode()
    with open(log, "a") as out:
        out.write(f"{step} {inside} {os.environ['TICKWORK_ATTEMPT']}\\n")
    print(f"evaluated step {step}")
    fail = os.environ.get("FAIL_STEP")
    sys.exit(3 if fail == step else 0)
    """
)


class TestEndToEnd:
    def test_every_checkpoint_runs_the_command_then_the_marker_ends_it(
        self, tmp_path: Path
    ) -> None:
        """While training writes checkpoints, each runs the command once, in step order, with
        {checkpoint} and {step} substituted; the done marker ends the run with status 0."""
        run, log = tmp_path / "run", tmp_path / "log"
        run.mkdir()
        process = start_follow(
            "follow", str(run), "--done-marker", "DONE", "--",
            sys.executable, "-c", EVALUATE, "{checkpoint}", "{step}", str(log),
        )  # fmt: skip
        writer = threading.Thread(target=train, args=(run, range(1, 9)))
        writer.start()
        code, out, err = finish(process)
        writer.join()
        assert code == 0, out + err
        assert log.read_text().splitlines() == [f"{s} {s} 1" for s in range(1, 9)]
        assert "✓ step 8  model_step_8.pt" in out
        assert "evaluated step 3" in out  # the command's output is shown
        assert "ended: training is done (done marker) and every checkpoint was evaluated" in out

    def test_text_with_square_brackets_is_printed_as_it_is(self, tmp_path: Path) -> None:
        """Data is never rich markup: a marker whose error holds gloo's ``[/__w/...:553]``, a
        directory, a command and a failing command's output with brackets are printed as they
        are, and the run ends as it should (exit 1: one evaluation failed), not with a
        MarkupError."""
        import tickwork

        run, log = tmp_path / "run[bold]", tmp_path / "log"
        run.mkdir()
        train(run, range(1, 3), marker=False, gap=0)
        error = RuntimeError(
            "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection "
            "closed by peer [bold]"
        )
        tickwork.mark_training_done(run, error=error, step=2)
        env = dict(os.environ, FAIL_STEP="2")
        process = subprocess.Popen(
            [
                *FOLLOW, "follow", str(run), "--done-marker", "DONE", "--max-attempts", "1",
                "--", sys.executable, "-c", EVALUATE + "\nprint('[/red] out')",
                "{checkpoint}", "{step}", str(log),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        code, out, err = finish(process)
        assert code == 1, out + err
        assert "MarkupError" not in out + err
        assert "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553]" in out
        assert "closed by peer [bold]" in out
        assert str(run) in out
        assert "training failed at step 2" in out

    def test_a_failing_command_is_retried_reported_and_exits_1(self, tmp_path: Path) -> None:
        """A command failing for one checkpoint is retried, then reported; the others are
        evaluated and the exit status is 1."""
        run, log = tmp_path / "run", tmp_path / "log"
        run.mkdir()
        train(run, range(1, 4), gap=0)
        env = dict(os.environ, FAIL_STEP="2")
        process = subprocess.Popen(
            [
                sys.executable, "-c", "import sys, tickwork._cli as c; sys.exit(c.main())",
                "follow", str(run), "--done-marker", "DONE", "--max-attempts", "2",
                "--backoff", "0", "--quiet", "--",
                sys.executable, "-c", EVALUATE, "{checkpoint}", "{step}", str(log),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        code, out, err = finish(process)
        assert code == 1, out + err
        assert log.read_text().splitlines() == ["1 1 1", "2 2 1", "2 2 2", "3 3 1"]
        assert "attempt 1 of 2 failed ('python" in out
        assert "step 2  model_step_2.pt  failed after 2 attempts" in out
        # The last line tells the truth: not "every checkpoint was evaluated".
        assert "every checkpoint was evaluated" not in out
        assert "ended: training is done (done marker);" in out
        assert "; 1 checkpoint failed every attempt (exit status 1)" in out
        assert "evaluated step 1" not in out  # --quiet
        assert "Traceback" not in err  # the CLI reports failed commands itself

    def test_a_stall_exits_3(self, tmp_path: Path) -> None:
        """No new checkpoint for --stall seconds ends the run with status 3."""
        save(tmp_path, 1)
        code, out, err = finish(start_follow("follow", str(tmp_path), "--stall", "1", "--", "true"))
        assert code == 3, out + err
        assert "ended: no new checkpoint within --stall: training seems to have died" in out

    def test_command_timeout_fails_the_attempt(self, tmp_path: Path) -> None:
        """A command running past --command-timeout is terminated and counts as failed."""
        save(tmp_path, 1)
        (tmp_path / "DONE").touch()
        process = start_follow(
            "follow", str(tmp_path), "--done-marker", "DONE", "--max-attempts", "1",
            "--command-timeout", "0.5", "--", sys.executable, "-c", "import time; time.sleep(60)",
        )  # fmt: skip
        code, out, err = finish(process)
        assert code == 1, out + err
        assert "ran past --command-timeout (0.5 s)" in out

    def test_a_directory_that_never_appears_is_said(self, tmp_path: Path) -> None:
        """Following a directory that does not exist warns once that it does not exist yet, and
        --timeout ends the run saying nothing was found because it never appeared."""
        missing = tmp_path / "typo"
        code, out, err = finish(
            start_follow("follow", str(missing), "--timeout", "1", "--", "true")
        )
        assert code == 0, out + err
        assert err.count("does not exist yet") == 1, err
        assert (
            "ended: no new checkpoint within --timeout; nothing was found: the directory "
            f"{missing} never appeared"
        ) in " ".join(out.split())

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_signal_stops_cleanly_and_a_restart_resumes(
        self, tmp_path: Path, signum: signal.Signals
    ) -> None:
        """SIGTERM or SIGINT ends the command (and what it started) and exits 128 + N; the
        checkpoint it was evaluating is evaluated again by a restart with the same
        --state-file, the finished one is not."""
        run, state, log, pids = (
            tmp_path / "run",
            tmp_path / "state.json",
            tmp_path / "log",
            tmp_path / "pids",
        )
        run.mkdir()
        save(run, 1)
        save(run, 2)
        script = tmp_path / "evaluate.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import os, sys, time
                step = sys.argv[1]
                with open({str(log)!r}, "a") as out:
                    out.write(step + "\\n")
                if step == "2":
                    with open({str(pids)!r}, "w") as out:
                        out.write(str(os.getpid()))
                    time.sleep(120)
                """
            )
        )
        # sh -c: the evaluating process is a grandchild, which the stop must reach too.
        command = ["sh", "-c", '"$0" "$1" "$2"', sys.executable, str(script), "{step}"]
        process = start_follow("follow", str(run), "--state-file", str(state), "--", *command)
        limit = time.monotonic() + LIMIT
        while not (pids.exists() and pids.read_text()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < limit, "the command for step 2 never started"
            time.sleep(0.05)  # a bounded look for an external process's file
        process.send_signal(signum)
        code, out, err = finish(process)
        assert code == 128 + signum, out + err
        assert f"ended: stopped by {signum.name} (exit status {128 + signum})" in out
        pid = int(pids.read_text())
        assert not _alive(pid), "the command outlived the stop"
        assert log.read_text().split() == ["1", "2"]
        (run / "DONE").touch()
        record = "import sys; open(sys.argv[2], 'a').write(sys.argv[1])"
        restarted = start_follow(
            "follow", str(run), "--state-file", str(state), "--done-marker", "DONE",
            "--", sys.executable, "-c", record, "{step}", str(log),
        )  # fmt: skip
        code, out, err = finish(restarted)
        assert code == 0, out + err
        assert log.read_text().split() == ["1", "2", "2"]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


class TestUsage:
    def test_poll_interval_0_is_accepted_as_the_library_accepts_it(self, tmp_path: Path) -> None:
        """--poll-interval 0 (back to back, which FollowOptions accepts) is not a usage error."""
        code, out, err = finish(
            start_follow("follow", str(tmp_path), "--poll-interval", "0", "--timeout", "0",
                         "--", "true")
        )  # fmt: skip
        assert code == 0, out + err
        assert "ended: no new checkpoint within --timeout" in out

    def test_the_docs_list_every_layout(self) -> None:
        """docs/checkpoints.md's --layout row names every layout the CLI accepts (dcp too)."""
        from tickwork import Layout

        docs = (Path(__file__).resolve().parents[1] / "docs" / "checkpoints.md").read_text()
        row = next(line for line in docs.splitlines() if line.startswith("| `--layout "))
        listed = row.split("`")[1].removeprefix("--layout ").split("\\|")
        assert listed == [layout.value for layout in Layout]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["follow", "DIR"], "Missing argument 'COMMAND...'"),
            (["follow", "DIR", "--storage-options", "{", "--", "true"], "must be a JSON object"),
            (["follow", "DIR", "--max-attempts", "0", "--", "true"], "0 is not in the range"),
            (
                ["follow", "DIR", "--backoff", "5", "--backoff-max", "1", "--", "true"],
                "'backoff_max' must be >= backoff (5.0); got 1.0",
            ),
            (["follow", "FILE", "--", "true"], "'checkpoint_dir' must be a directory"),
            (["follow", "DIR", "--done-marker", "a/b", "--", "true"], "'done_marker' must be"),
            (  # at the start, not after --timeout: a typo in the program name shows at once
                ["follow", "DIR", "--timeout", "60", "--", "no-such-program-4b1e", "x"],
                "the command 'no-such-program-4b1e' was not found on PATH",
            ),
            (["follow", "DIR", "--", "./not-here/eval.sh"], "is not an executable file"),
            (["follow", "DIR", "--stall", "nan", "--", "true"], "Invalid value for '--stall'"),
            (["follow", "DIR", "--timeout", "inf", "--", "true"], "Invalid value for '--timeout'"),
            (["follow", "DIR", "--backoff-factor", "nan", "--", "true"], "'--backoff-factor'"),
            (["follow", "DIR", "python", "-u", "eval.py"], "put -- before the command"),
        ],
    )
    def test_bad_usage_exits_2_with_a_message(
        self, tmp_path: Path, args: list[str], message: str
    ) -> None:
        """Bad options, a file for the directory, or no command: status 2, a clear message,
        no traceback."""
        (tmp_path / "file").write_text("x")
        args = [{"DIR": str(tmp_path), "FILE": str(tmp_path / "file")}.get(a, a) for a in args]
        code, out, err = finish(start_follow(*args))
        assert code == 2, out + err
        assert message in out + err
        assert "Traceback" not in err


class TestMessages:
    def test_an_error_is_one_line_on_a_narrow_terminal_naming_the_path_once(
        self, tmp_path: Path
    ) -> None:
        """A usage error is printed as one line, however narrow the terminal, and says its path
        once (no '[Errno 20]' prefix, no path repeated after the message)."""
        path = tmp_path / "a-file-with-a-rather-long-name-instead-of-a-directory"
        path.write_text("x")
        process = subprocess.run(
            [*FOLLOW, "follow", str(path), "--", "true"],
            capture_output=True,
            text=True,
            timeout=LIMIT,
            env={**os.environ, "COLUMNS": "30"},
        )
        assert process.returncode == 2
        lines = process.stderr.strip().splitlines()
        assert len(lines) == 1, process.stderr
        assert lines[0].count(str(path)) == 1
        assert "'checkpoint_dir' must be a directory" in lines[0]
        assert "Errno" not in lines[0]


class TestPureParts:
    def test_placeholders_are_replaced_as_text(self) -> None:
        """{checkpoint}, {step}, {dir} and {name} are replaced; other braces stay."""
        checkpoint = Checkpoint("/runs/a/ckpt-5", step=5)
        args = ["eval", "--w={checkpoint}", "{step}", '{"dir": "{dir}"}', "{name}", "{other}"]
        assert substitute(args, checkpoint, "/runs/a") == [
            "eval", "--w=/runs/a/ckpt-5", "5", '{"dir": "/runs/a"}', "ckpt-5", "{other}",
        ]  # fmt: skip

    def test_without_placeholders_the_path_is_appended(self) -> None:
        """A command naming no placeholder gets the checkpoint's path as its last argument."""
        checkpoint = Checkpoint("/runs/a/ckpt-5", step=5)
        assert substitute(["eval.sh", "-v"], checkpoint, "/runs/a") == [
            "eval.sh",
            "-v",
            "/runs/a/ckpt-5",
        ]

    def test_a_checkpoint_without_a_step_gives_an_empty_step(self) -> None:
        """{step} of a checkpoint whose name has no step is empty, not 'None'."""
        assert substitute(["{step}"], Checkpoint("/x/last"), "/x") == [""]

    @pytest.mark.parametrize(
        ("stats", "signals", "status"),
        [
            (SidecarStats(evaluated=3, end_reason=EndReason.DONE), [], 0),
            (SidecarStats(evaluated=3, end_reason=EndReason.TIMEOUT), [], 0),
            (SidecarStats(failed=1, end_reason=EndReason.DONE), [], 1),
            (SidecarStats(failed=1, end_reason=EndReason.STOPPED), [signal.SIGINT], 1),
            (SidecarStats(end_reason=EndReason.STOPPED), [signal.SIGINT], 130),
            (SidecarStats(end_reason=EndReason.STOPPED), [signal.SIGTERM], 143),
            (SidecarStats(end_reason=EndReason.STALLED), [], 3),
            (SidecarStats(failed=2, end_reason=EndReason.STALLED), [], 1),
        ],
    )
    def test_exit_status(self, stats: SidecarStats, signals: list[int], status: int) -> None:
        """Failures give 1, then a signal 128+N, then a stall 3; otherwise 0."""
        assert exit_status(stats, signals) == status


class TestTerminal:
    def test_on_a_terminal_a_live_status_line_is_drawn(self, tmp_path: Path) -> None:
        """With a terminal, the run draws a live status line (what is evaluated, the counts)
        beside the per-checkpoint lines, and removes it at the end."""
        from rich.console import Console

        from tickwork._cli._follow_run import FollowConfig, follow

        save(tmp_path, 1)
        (tmp_path / "DONE").touch()
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=True, width=120, highlight=False)
        config = FollowConfig(
            directory=str(tmp_path),
            command=(sys.executable, "-c", "import time; time.sleep(1.5)"),  # several redraws
            options={"done_marker": "DONE"},
        )
        assert follow(config, console) == 0
        drawn = screen.getvalue()
        assert "evaluating step 1 (attempt 1)" in drawn
        assert "0 evaluated, 0 failed, 0 retried" in drawn
        assert "step 1  model_step_1.pt" in drawn
        assert "\x1b[?25h" in drawn  # the cursor is given back when the live line ends

    def test_the_status_line_says_the_directory_does_not_exist_yet(self, tmp_path: Path) -> None:
        """While the directory is missing, the live status line says so (not just "waiting")."""
        from rich.console import Console

        from tickwork._cli._follow_run import FollowConfig, follow

        missing = tmp_path / "later"
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=True, width=200, highlight=False)
        config = FollowConfig(directory=str(missing), command=("true",), options={"timeout": 1})
        assert follow(config, console) == 0
        assert f"waiting for {missing} to appear (it does not exist yet)" in screen.getvalue()


class TestCommandRunner:
    def test_a_command_ignoring_sigterm_is_killed_and_that_is_said(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A stop sends the command SIGTERM; one that ignores it gets SIGKILL after the grace
        period, with a warning naming the command and the signal."""
        from tickwork._cli._command import CommandInterrupted, CommandRunner

        stop = threading.Event()
        ignore = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)"
        )

        def on_line(checkpoint: Checkpoint, line: str) -> None:
            if line == "ready":
                stop.set()

        runner = CommandRunner(
            [sys.executable, "-c", ignore], str(tmp_path), stop=stop, on_line=on_line,
            kill_grace=0.2,
        )  # fmt: skip
        started = time.monotonic()
        with (
            caplog.at_level("WARNING", logger="tickwork"),
            pytest.raises(CommandInterrupted, match="terminated by a stop"),
        ):
            runner(Checkpoint(str(tmp_path / "model_step_1.pt"), step=1))
        assert time.monotonic() - started < 30
        (line,) = [r.getMessage() for r in caplog.records if "SIGKILL" in r.getMessage()]
        assert "was still running 0.2 s after SIGTERM: sent SIGKILL" in line
        assert os.path.basename(sys.executable) in line
