"""Seeing every run (issue 16): the progress record (nowcast/progress.py), the state derived
from it (stale: a running run whose process is gone), `nowcast status` (nowcast/status.py:
rows, table, JSON, --watch, squeue joined in), the progress line of `nowcast run`
(launch/watch.py) and the report's runs table. Progress records are written through the
Progress API (as training writes them) or by hand; no test depends on speed."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from nowcast import progress, results, status, util
from nowcast.paths import RUNNING_PREFIX, JobPaths
from nowcast.publish.fragments import STATUS_LABEL
from nowcast.cli import main
from nowcast.launch import queue
from nowcast.launch.watch import ProgressLines
from nowcast.publish import fragments

HOST = socket.gethostname()


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- the progress record ------------------------------------------------------------------------

def test_progress_writes_are_throttled_by_wall_time_not_steps(tmp_path):
    clock = Clock()
    p = progress.Progress(tmp_path, batch_size=4, interval=2.0, heartbeat=0, clock=clock)
    p.start()
    p.on_step(step=1, total=100, loss=torch.tensor(0.5))  # the first call starts the train stage
    record = json.loads((tmp_path / JobPaths.PROGRESS).read_text())
    assert record["stage"] == "train" and record["step"] == 1 and record["total_steps"] == 100
    clock.t += 1.0
    assert not p.update(11, loss=torch.tensor(0.4))  # within the interval: nothing written
    assert json.loads((tmp_path / JobPaths.PROGRESS).read_text())["step"] == 1
    clock.t += 1.5
    assert p.update(21, loss=torch.tensor(0.25))
    record = json.loads((tmp_path / JobPaths.PROGRESS).read_text())
    assert record["step"] == 21 and record["loss"] == 0.25   # a tensor, stored as a number
    assert record["seq_per_s"] == pytest.approx(20 / 2.5 * 4)  # 20 steps in 2.5 s, 4 per batch
    assert record["eta_s"] == pytest.approx(79 / 8, abs=0.1)
    assert record["heartbeat"] == clock.t
    p.on_step(step=21, total=100, val_loss=0.3)  # a validation: written at once
    assert json.loads((tmp_path / JobPaths.PROGRESS).read_text())["val_loss"] == 0.3
    p.close()


def test_heartbeats_do_not_move_the_eta(tmp_path):
    clock = Clock()
    p = progress.Progress(tmp_path, interval=0, heartbeat=0, clock=clock)
    p.start_training(total_steps=100)
    clock.t += 10
    p.update(10)                      # 1 step/s: 90 s left
    clock.t += 5
    p._write()                        # what the heartbeat thread does
    record = json.loads((tmp_path / JobPaths.PROGRESS).read_text())
    assert record["heartbeat"] == clock.t and progress.eta_left(record, clock.t) == 85


def test_every_update_writes_with_interval_zero(tmp_path):
    p = progress.Progress(tmp_path, interval=0, heartbeat=0)
    p.start_training(total_steps=3)
    assert all(p.update(s, loss=0.1) for s in (1, 2, 3))
    assert json.loads((tmp_path / JobPaths.PROGRESS).read_text())["step"] == 3


def test_time_budget_caps_the_eta(tmp_path):
    clock = Clock()
    p = progress.Progress(tmp_path, interval=0, heartbeat=0, clock=clock)
    p.on_step(step=0, total=1000, time_left=60)  # the training loop's call: 60 s of budget
    clock.t += 10
    p.update(10)  # 1 step/s: 990 s by steps, but 50 s of budget left
    assert p.record["eta_s"] == 50


def test_record_names_its_writer(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "101")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "104")
    p = progress.Progress(tmp_path, heartbeat=0)
    p.start()
    record = json.loads((tmp_path / JobPaths.PROGRESS).read_text())
    assert record["host"] == HOST and record["pid"] == os.getpid()
    assert record["slurm"]["array_job_id"] == "101" and progress.slurm_key(record) == "101_2"
    assert progress.Progress(None).path is None  # other DDP ranks: nothing written


def test_heartbeat_thread_keeps_a_silent_record_fresh(tmp_path):
    with progress.Progress(tmp_path, heartbeat=0.05) as p:
        first = p.record["heartbeat"]
        deadline = time.time() + 10
        while json.loads((tmp_path / JobPaths.PROGRESS).read_text())["heartbeat"] == first:
            assert time.time() < deadline, "no heartbeat"
            time.sleep(0.02)
    assert p._thread is None


# --- runs in every state --------------------------------------------------------------------------

def make_run(root: Path, job_id: str, state: str, running: bool = False, record: dict | None = None,
             metrics: dict | None = None, error: str | None = None) -> Path:
    folder = root / (f"{RUNNING_PREFIX}{job_id}" if running else job_id)
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps(
        {"status": state, "job_id": job_id, "name": f"name-{job_id}", "error": error}))
    (folder / "params.yaml").write_text(yaml.safe_dump({"name": f"name-{job_id}", "protocol": "none"}))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if record is not None:
        (folder / JobPaths.PROGRESS).write_text(json.dumps(record))
    return folder


def record(pid, host=HOST, age=3600.0, **extra) -> dict:
    return {**dict(stage="train", step=30, total_steps=120, seq_per_s=12.5, loss=0.25,
                   val_loss=None, eta_s=90.0, heartbeat=time.time() - age, host=host, pid=pid),
            **extra}


@pytest.fixture
def dead_pid():
    """The pid of a process that has ended (a child, killed and reaped)."""
    child = subprocess.Popen(["sleep", "60"])
    child.kill()
    child.wait()
    return child.pid


@pytest.fixture
def all_states(tmp_path, dead_pid):
    root = tmp_path / "results"
    make_run(root, "c1", "completed", metrics={"headline": ["mse_frame", "ssim"], "protocol": "none",
                                               "mean": {"mse_frame": 39.2, "ssim": 0.4533}},
             record=record(dead_pid, stage="outputs", step=120))
    make_run(root, "f1", "failed", error="BadZipFile: File is not a zip file\nmore", record=record(dead_pid))
    make_run(root, "r1", "running", running=True, record=record(os.getpid()))  # alive, old heartbeat
    make_run(root, "s1", "running", running=True, record=record(dead_pid))      # killed
    make_run(root, "p1", "preempted", running=True, record=record(dead_pid),
             error="stopped at step 30; checkpoint saved")
    return root


def test_each_state_is_derived_from_status_and_record(all_states):
    states = {r.job_id: r.state for r in results.find_runs([all_states])}
    assert states == {"c1": "completed", "f1": "failed", "r1": "running", "s1": "stale",
                      "p1": "preempted"}


def test_stale_needs_both_an_old_heartbeat_and_no_live_process(dead_pid):
    now = time.time()
    rec = {"pid": dead_pid, "host": HOST}
    assert progress.derive_state("running", rec, now - 2, now, HOST) == "running"  # just ended
    assert progress.derive_state("running", rec, now - 3600, now, HOST) == "stale"
    alive = {"pid": os.getpid(), "host": HOST}
    assert progress.derive_state("running", alive, now - 3600, now, HOST) == "running"
    # another host: the heartbeat's age alone tells
    there = {"pid": os.getpid(), "host": "node-elsewhere"}
    assert progress.derive_state("running", there, now - 30, now, HOST) == "running"
    assert progress.derive_state("running", there, now - 3600, now, HOST) == "stale"
    # listed by squeue: alive; SLURM job gone: stale after the short grace
    assert progress.derive_state("running", there, now - 3600, now, HOST, queue="RUNNING") == "running"
    assert progress.derive_state("running", there, now - 2 * progress.DEAD_GRACE_S, now, HOST,
                                 queue="") == "stale"
    # a reused pid (another process's start time) is not the run's process
    reused = {"pid": os.getpid(), "host": HOST, "pid_started": 1.0}
    assert progress.derive_state("running", reused, now - 3600, now, HOST) == "stale"
    assert progress.derive_state("failed", rec, now - 3600, now, HOST) == "failed"
    # a heartbeat from the future (issue 56 item 13): on this host with a dead pid, stale; on
    # another host's clock (skew) it is still the age alone that tells, and a future age is young
    assert progress.derive_state("running", rec, now + 86400, now, HOST) == "stale"
    assert progress.derive_state("running", alive, now + 86400, now, HOST) == "running"
    assert progress.derive_state("running", there, now + 60, now, HOST) == "running"


def test_a_run_without_a_record_goes_stale_by_its_status_file(tmp_path):
    folder = make_run(tmp_path, "old", "running", running=True)  # from before progress records
    assert results.read_run(folder).state == "running"
    os.utime(folder / "status.json", (time.time() - 3600,) * 2)
    assert results.read_run(folder).state == "stale"


def test_status_rows_table_and_order(all_states, dead_pid):
    rows = status.build_rows(results.find_runs([all_states]))
    assert [r.state for r in rows] == ["running", "preempted", "stale", "failed", "completed"]
    by = {r.job_id: r for r in rows}
    assert by["c1"].result == "MSE/frame 39.2, SSIM 0.4533" and by["c1"].error is None
    assert by["f1"].error == "BadZipFile: File is not a zip file"
    assert by["r1"].step == 30 and by["r1"].total_steps == 120 and by["r1"].eta_s == 0.0
    assert f"process {dead_pid}" in by["s1"].error and by["s1"].eta_s is None
    assert by["p1"].error.startswith("stopped at step 30")
    text = status.format_table(rows, [str(all_states)])
    assert "1 running, 1 preempted, 1 stale, 1 failed, 1 completed" in text.splitlines()[0]
    assert "JOB" in text and "30/120 (25%)" in text and "MSE/frame 39.2" in text


def test_status_json_for_scripts(all_states, capsys):
    assert main(["status", "--results", str(all_states), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["job_id"]: r["state"] for r in rows}["s1"] == "stale"
    assert set(rows[0]) >= {"job_id", "name", "protocol", "state", "step", "total_steps",
                            "seq_per_s", "loss", "eta_s", "result", "error", "queue"}


def test_status_table_from_the_command_line(all_states, capsys):
    assert main(["status", "--results", str(all_states)]) == 0
    out = capsys.readouterr().out
    assert "stale" in out and "name-r1" in out and "BadZipFile" in out


def test_watch_redraws_until_ctrl_c(all_states):
    out, calls = io.StringIO(), []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    assert status.show_status([all_states], watch=0.5, stream=out, sleep=sleep) == 0
    assert calls == [0.5, 0.5] and out.getvalue().count("nowcast status:") == 2
    assert "\x1b[2J" not in out.getvalue()  # not a terminal: no screen clearing


# --- SLURM: the queue joined in --------------------------------------------------------------------

def test_parse_squeue_lines():
    text = "101_0|RUNNING|None\n101_1|PENDING|Resources\n101_2|COMPLETED|None\n105|PENDING|None\n"
    assert queue.parse_queue(text) == {"101_0": "RUNNING", "101_1": "PENDING (Resources)",
                                       "105": "PENDING"}
    assert queue.waiting("PENDING (Resources)") and not queue.waiting("RUNNING")
    assert queue.squeue_command()[:2] == ["squeue", "--me"]


def _sweep(root: Path, array: str, n: int) -> None:
    sweep = root / queue.SWEEPS / "20250101-000000"
    (sweep / "logs").mkdir(parents=True)
    (sweep / "jobs.yaml").write_text(yaml.safe_dump({"array": array, "report": "200", "tasks": [
        {"index": i, "source": f"p{i}.yaml", "name": f"set{i}", "job_id": f"{array}_{i}"}
        for i in range(n)]}))


def test_sweep_tasks_and_squeue_states_join_the_table(tmp_path):
    root = tmp_path / "results"
    _sweep(root, "101", 4)
    slurm_ids = {"slurm": {"array_job_id": "101", "array_task_id": "0", "job_id": "101"}}
    make_run(root, "101_0", "running", running=True, record=record(4242, host="node7", **slurm_ids))
    other = {"slurm": {"array_job_id": "101", "array_task_id": "3", "job_id": "104"}}
    make_run(root, "101_3", "running", running=True, record=record(4242, host="node7", **other))
    runs, tasks = results.find_runs([root]), queue.sweep_tasks(root)
    states = {"101_0": "RUNNING", "101_1": "PENDING (Resources)"}
    rows = {r.job_id: r for r in status.build_rows(runs, tasks, states)}
    assert rows["101_0"].state == "running" and rows["101_0"].queue == "RUNNING"  # despite its age
    assert rows["101_1"].state == "pending" and rows["101_1"].name == "set1"
    assert rows["101_2"].state == "lost" and "101_2.out" in rows["101_2"].error
    assert rows["101_3"].state == "stale" and "no longer queued" in rows["101_3"].error
    unknown = {r.job_id: r.state for r in status.build_rows(runs, tasks, None)}
    assert unknown["101_1"] == "submitted" and unknown["101_3"] == "stale"  # by heartbeat age


def test_status_asks_squeue_when_a_sweep_is_there(tmp_path, monkeypatch, capsys):
    root = tmp_path / "results"
    _sweep(root, "101", 2)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "squeue").write_text("#!/usr/bin/env bash\necho '101_0|RUNNING|None'\n"
                                   "echo '101_1|PENDING|Priority'\n")
    (bindir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert main(["status", "--results", str(root), "--json"]) == 0
    rows = {r["job_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["101_0"]["state"] == "running" and rows["101_1"]["queue"] == "PENDING (Priority)"


# --- the progress line and the report ----------------------------------------------------------------

def test_progress_line_text():
    now = 1000.0
    rec = dict(stage="train", step=30, total_steps=120, seq_per_s=12.5, loss=0.25, val_loss=0.3,
               eta_s=130.0, heartbeat=now - 5)
    assert progress.line("demo", rec, now) == \
        "demo  train  step 30/120 (25%)  12.5 seq/s  loss 0.25  val 0.3  ETA 2 min"
    assert progress.line("demo", {"stage": "data"}, now) == "demo  data"
    assert util.duration(3725) == "1 h 02 min" and util.duration(None) == ""
    assert util.duration(44.6) == "45 s" and util.duration(3490) == "58 min"


def test_progress_lines_print_changes_plain_when_not_a_terminal(tmp_path):
    root = tmp_path / "results"
    folder = root / ".running-j1"
    folder.mkdir(parents=True)
    out, clock = io.StringIO(), Clock()
    lines = ProgressLines(root, "j1", "demo", stream=out, every=30, clock=clock)
    p = progress.Progress(folder, interval=0, heartbeat=0)
    p.start()
    lines.show()                       # stage 'starting'
    p.start_training(total_steps=10)
    lines.show()                       # a new stage: printed at once
    p.update(3, loss=0.5)
    lines.show()                       # same stage, too soon: not printed
    clock.t += 31
    lines.show()
    lines.show()                       # unchanged: not printed again
    p.update(10, loss=0.25)
    lines.show(final=True)             # the end: printed
    printed = out.getvalue().splitlines()
    assert [x.split()[1] for x in printed] == ["starting", "train", "train", "train"]
    assert "step 3/10" in printed[2] and "step 10/10 (100%)" in printed[3]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_updates_in_place_on_a_terminal(tmp_path):
    folder = tmp_path / "results" / ".running-j1"
    folder.mkdir(parents=True)
    out = Terminal()
    p = progress.Progress(folder, interval=0, heartbeat=0)
    p.start_training(total_steps=10)
    with ProgressLines(tmp_path / "results", "j1", "demo", stream=out, poll=3600):
        p.update(4, loss=0.5)
    text = out.getvalue()
    assert text.startswith("\r  demo  train  step 4/10") and text.endswith("\x1b[K\n")
    assert text.count("\n") == 1


def test_watch_clears_the_screen_on_a_terminal(all_states):
    out = Terminal()

    def sleep(seconds):
        raise KeyboardInterrupt

    assert status.show_status([all_states], watch=1, stream=out, sleep=sleep) == 0
    assert out.getvalue().startswith(status.CLEAR + "nowcast status:")


def test_report_runs_table_shows_the_same_states(all_states):
    runs = results.find_runs([all_states])
    table = fragments.runs_table(runs)
    assert "**stale** (process gone)" in table and "preempted (resumable)" in table
    assert "1 stale" in fragments.summary(runs)


def test_every_state_is_named_once_and_shown_everywhere():
    """progress.py names the states; the status table orders all of them, the report labels
    every state a results folder can be in."""
    folder_states = set(progress.STATES) | {progress.STALE}
    assert set(status.STATE_ORDER) == folder_states | set(progress.QUEUE_STATES)
    assert len(status.STATE_ORDER) == len(set(status.STATE_ORDER))
    assert set(STATUS_LABEL) == folder_states


def test_status_prints_names_and_errors_as_data():
    """Issue 37: a newline in status.json's name forged table rows; ANSI escapes reached the
    terminal. Every cell is one printable line."""
    from nowcast.status import Row, table_lines
    rows = [Row("a", "evil\nb  forged  row", "none", "failed", error="\x1b[31mred\x1b[0m\r"),
            Row("b", "fine", "none", "completed")]
    lines = table_lines(rows)
    assert len(lines) == 3 and all(line.isprintable() for line in lines)
    assert "evil\\nb  forged  row" in lines[1] and "\\x1b[31mred\\x1b[0m\\r" in lines[1]


def test_the_resume_hint_pastes_as_one_literal_argument_each():
    """Issue 37: the printed resume hint was not shell-quoted: `--set hidden_sizes=[4, 4]`
    split in two, and an id with $(...) ran as shell code when pasted."""
    import shlex
    from nowcast.experiment import resume_command
    hint = resume_command("params/my set.yaml", ["hidden_sizes=[4, 4]"], "x$(touch pwned)", "res dir")
    assert shlex.split(hint) == ["nowcast", "train", "-c", "params/my set.yaml", "--set",
                                 "hidden_sizes=[4, 4]", "--job-id", "x$(touch pwned)",
                                 "--results", "res dir"]


def test_status_on_a_full_disk_a_closed_stdout_a_huge_watch_or_an_ascii_terminal(tmp_path):
    """Third faults pass, item 16: each of these was a traceback."""
    import shutil
    import subprocess
    import sys
    reference = Path(__file__).resolve().parents[1] / "reference_results" / "knmi-30-60-persistence"
    root = tmp_path / "results"
    shutil.copytree(reference, root / "r")
    state = json.loads((root / "r" / "status.json").read_text())
    (root / "r" / "status.json").write_text(json.dumps(dict(state, name="Niederschlag-Vorhersage-ä€")))
    cmd = [sys.executable, "-m", "nowcast", "status", "--results", str(root)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "nowcast: error: standard output: cannot write the status (No space left on device)"]
    done = subprocess.run(cmd, stdout=None, stderr=subprocess.PIPE, text=True, close_fds=True,
                          preexec_fn=lambda: __import__("os").close(1))
    assert done.returncode == 2 and "standard output is closed" in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run(cmd + ["--watch", "1e12"], capture_output=True, text=True)
    assert done.returncode == 2 and "--watch must be between 0.5 and 86400" in done.stderr
    env = dict(__import__("os").environ, PYTHONIOENCODING="ascii")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "Vorhersage-\\xe4\\u20ac" in done.stdout, done.stderr[-1000:]
