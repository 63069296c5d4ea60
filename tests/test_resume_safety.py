"""Nothing lost: an interrupted run stays resumable (Ctrl-C, a full disk while checkpointing, a
corrupt checkpoint), two runs never share a folder, and a completed folder holds no leftovers.

Interruptions are made at a fixed training step (a patched batch source sends the signal), so
no test depends on how fast the machine trains.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY
from nowcast import runlock
from nowcast.checkpoint import previous
from nowcast.paths import JobPaths
from nowcast.config import load_config
from nowcast.errors import NowcastError, RunStopped
from nowcast.experiment import run_experiment

ROOT = Path(__file__).resolve().parents[1]

# `nowcast train` whose training batch of step STEP sends SIGINT (Ctrl-C) COUNT times first.
INTERRUPT_AT = """
import os, signal, sys
from nowcast.data.moving_mnist import MovingMNIST
STEP, COUNT = int(sys.argv[1]), int(sys.argv[2])
original = MovingMNIST.train_batch
def train_batch(self, step, *args, **kwargs):
    if step == STEP:
        for _ in range(COUNT):
            os.kill(os.getpid(), signal.SIGINT)
    return original(self, step, *args, **kwargs)
MovingMNIST.train_batch = train_batch
from nowcast.cli import main
sys.exit(main(sys.argv[3:]))
"""


def status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_keeps_the_run_resumable(tmp_path, params, presses):
    """One Ctrl-C: checkpoint at the next step and stop; two: stop at once, keeping the last
    checkpoint. Either way the folder is in progress (not failed) and resumes."""
    results = tmp_path / "r"
    argv = ["train", "-c", str(params), "--results", str(results), "--job-id", "c", "-q"]
    done = subprocess.run([sys.executable, "-c", INTERRUPT_AT, "5", str(presses), *argv],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 3, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nowcast: stopped (interrupt)"), lines
    assert "--job-id c" in lines[0]
    running = results / ".running-c"
    assert not (results / "c").exists()
    state = status(running)
    assert state["status"] == "preempted" and state["stopped_by"] == "interrupt"
    step = torch.load(running / JobPaths.CHECKPOINT, weights_only=True)["step"]
    # one press: the checkpoint of the step after it; two: the last one before it is kept
    assert step in (5, 6) if presses == 1 else 0 < step <= 5
    again = subprocess.run([sys.executable, "-m", "nowcast", *argv], capture_output=True,
                           text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert status(results / "c")["status"] == "completed" and status(results / "c")["attempts"] == 2


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tiny_values, monkeypatch, capsys):
    saves = []
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        saves.append(obj.get("step") if isinstance(obj, dict) else None)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save)
    cfg = load_config(values=dict(tiny_values, job_id="full"))
    with pytest.raises(RunStopped, match="checkpoint.pt could not be written .No space left"):
        run_experiment(cfg, progress=False)
    running = Path(tiny_values["results_dir"]) / ".running-full"
    state = status(running)
    assert state["status"] == "preempted" and state["stopped_by"] == "write_error"
    assert torch.load(running / JobPaths.CHECKPOINT, weights_only=True)["step"] == saves[0]
    assert not list(running.glob(".*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)  # space again: the run resumes and completes
    path = run_experiment(load_config(values=dict(tiny_values, job_id="full")), progress=False)
    assert status(path)["status"] == "completed" and status(path)["attempts"] == 2


def test_full_disk_while_writing_the_outputs_keeps_the_run_resumable(tiny_values, monkeypatch):
    """Issue 56 item 9: a full disk at loss_median.png failed the run (and a rerun was refused);
    every write failure during the outputs now stops it resumable, as at the checkpoint."""
    from nowcast import figures
    real = figures.loss_median_plot

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(figures, "loss_median_plot", full)
    cfg = load_config(values=dict(tiny_values, job_id="outs"))
    with pytest.raises(RunStopped, match="outputs could not be written .*No space left on device"):
        run_experiment(cfg, progress=False)
    running = Path(tiny_values["results_dir"]) / ".running-outs"
    state = status(running)
    assert state["status"] == "preempted" and state["stopped_by"] == "write_error"
    monkeypatch.setattr(figures, "loss_median_plot", real)
    path = run_experiment(load_config(values=dict(tiny_values, job_id="outs")), progress=False)
    assert status(path)["status"] == "completed" and (path / JobPaths.LOSS_MEDIAN_PNG).is_file()
    whole = run_experiment(load_config(values=dict(tiny_values, job_id="whole")), progress=False)
    assert json.loads((path / "metrics.json").read_text())["mean"] == \
        json.loads((whole / "metrics.json").read_text())["mean"]


def test_a_final_name_taken_while_the_run_trained_keeps_it_resumable(tiny_values, monkeypatch):
    """Issue 56 item 10: `mkdir results/X` while X trained left .running-X saying completed,
    its checkpoints deleted and its lock left. Now it stays in progress, preempted, with its
    checkpoints, and completes once the name is free."""
    from nowcast import results
    real = results.complete_run

    def taken(run_dir, notebook=None):
        (Path(tiny_values["results_dir"]) / "taken").mkdir()  # made while the run trained
        return real(run_dir, notebook)
    monkeypatch.setattr("nowcast.experiment.results.complete_run", taken)
    with pytest.raises(RunStopped, match="taken was made while the run went on"):
        run_experiment(load_config(values=dict(tiny_values, job_id="taken")), progress=False)
    running = Path(tiny_values["results_dir"]) / ".running-taken"
    state = status(running)
    assert state["status"] == "preempted" and state["stopped_by"] == "write_error"
    assert (running / JobPaths.CHECKPOINT).is_file() and (running / "model.pt").is_file()
    assert not runlock.holder(running)
    monkeypatch.setattr("nowcast.experiment.results.complete_run", real)
    (Path(tiny_values["results_dir"]) / "taken").rmdir()
    path = run_experiment(load_config(values=dict(tiny_values, job_id="taken")), progress=False)
    assert status(path)["status"] == "completed" and not (path / JobPaths.CHECKPOINT).exists()


def test_file_size_limit_while_checkpointing(tmp_path, params):
    """A real short write (RLIMIT_FSIZE; torch reports it as a RuntimeError), through the CLI."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
            "from nowcast.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "train", "-c", str(params), "--results",
                           str(tmp_path / "r"), "--job-id", "fs", "-q",
                           "--set", "hidden_sizes=[16, 16]"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 3, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "stopped (write_error)" in lines[0] and "checkpoint.pt" in lines[0]
    assert status(tmp_path / "r" / ".running-fs")["stopped_by"] == "write_error"


def _stopped_run(tiny_values, job_id: str, steps: int) -> Path:
    cfg = load_config(values=dict(tiny_values, job_id=job_id))
    with pytest.raises(RunStopped):
        run_experiment(cfg, progress=False, finalize=False, stop_after_steps=steps)
    return Path(tiny_values["results_dir"]) / f".running-{job_id}"


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tiny_values, capsys):
    running = _stopped_run(tiny_values, "cor", 7)
    ckpt = running / JobPaths.CHECKPOINT
    assert previous(ckpt).is_file()
    kept = torch.load(previous(ckpt), weights_only=True)["step"]
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated, as by a crash of the filesystem
    path = run_experiment(load_config(values=dict(tiny_values, job_id="cor")), progress=False)
    assert status(path)["status"] == "completed"
    err = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]
    assert len(err) == 1 and f"resuming from checkpoint.prev.pt (step {kept})" in err[0]


def test_no_readable_checkpoint_starts_again(tiny_values, capsys):
    running = _stopped_run(tiny_values, "none", 7)
    for f in (running / JobPaths.CHECKPOINT, previous(running / JobPaths.CHECKPOINT)):
        f.write_bytes(b"garbage")
    path = run_experiment(load_config(values=dict(tiny_values, job_id="none")), progress=False)
    assert status(path)["status"] == "completed"
    assert "training starts again from step 0" in capsys.readouterr().err


def test_leftover_temporary_files_do_not_reach_a_completed_folder(tiny_values):
    running = _stopped_run(tiny_values, "tmp", 2)
    for name in (".error.txt.tmp", ".status.json.4242.tmp", ".checkpoint.pt.77.tmp"):
        (running / name).write_text("half-written by a process that was killed")
    path = run_experiment(load_config(values=dict(tiny_values, job_id="tmp")), progress=False)
    assert status(path)["status"] == "completed"
    assert sorted(p.name for p in path.glob(".*")) == [], "leftovers in a completed folder"


HOLD = """
import sys, time
from nowcast.config import load_config
from nowcast.results import start_run
start_run(load_config(sys.argv[3], [f"job_id={sys.argv[1]}", f"results_dir={sys.argv[2]}"]))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_run_with_the_same_job_id_is_refused(tmp_path, params):
    results = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "j", str(results), str(params)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = subprocess.run([sys.executable, "-m", "nowcast", "train", "-c", str(params),
                               "--results", str(results), "--job-id", "j", "-q"],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
        assert lines[0].startswith("nowcast: error: ") and f"pid {holder.pid} on " in lines[0]
        assert status(results / ".running-j")["status"] == "running"  # the holder's, untouched
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed): its lock is stale and the next run takes the folder over
    path = run_experiment(load_config(params, [f"results_dir={results}", "job_id=j"]), progress=False)
    assert status(path)["status"] == "completed" and status(path)["attempts"] == 2
    assert not (path / JobPaths.LOCK).exists()


def test_lock_of_another_host_is_respected_and_same_job_restart_is_stale(tmp_path, monkeypatch):
    folder = tmp_path / ".running-x"
    folder.mkdir()
    lock = folder / JobPaths.LOCK
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "slurm": {"job_id": "7"}}))
    with pytest.raises(NowcastError, match="in use by pid 1 on elsewhere, SLURM job 7"):
        runlock.acquire(folder)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # requeued: the earlier run of job 7 ended
    runlock.acquire(folder)
    assert json.loads(lock.read_text())["host"] == socket.gethostname()
    runlock.release(folder)
    assert not lock.exists()


def test_dead_holder_on_this_host_is_stale(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    folder = tmp_path / ".running-y"
    folder.mkdir()
    (folder / JobPaths.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    runlock.acquire(folder)
    assert json.loads((folder / JobPaths.LOCK).read_text())["pid"] == os.getpid()


def test_a_checkpoint_of_another_model_is_refused_and_the_run_kept(tiny_values):
    """Issue 37: resuming from a checkpoint of another architecture (size mismatch) failed the
    run with a traceback. Now nothing is loaded, the folder stays resumable (preempted,
    stopped_by checkpoint_mismatch), and the error names the first tensor that differs."""
    running = _stopped_run(tiny_values, "mix", 3)
    other = _stopped_run(dict(tiny_values, hidden_sizes=[4, 4]), "other", 3)
    ckpt = running / JobPaths.CHECKPOINT
    ckpt.write_bytes((other / JobPaths.CHECKPOINT).read_bytes())
    with pytest.raises(RunStopped, match=r"holds another model's weights \('cells.0.peephole' is \[3, 4, 1, 1\]"):
        run_experiment(load_config(values=dict(tiny_values, job_id="mix")), progress=False)
    state = status(running)
    assert state["status"] == "preempted" and state["stopped_by"] == "checkpoint_mismatch"
    assert not (running / JobPaths.LOCK).exists() and ckpt.read_bytes() == (other / JobPaths.CHECKPOINT).read_bytes()


def test_a_full_disk_that_cannot_even_record_the_stop_leaves_the_run_resumable(tiny_values, monkeypatch):
    """Issue 37: a full disk while model.pt was written, and then status.json: a double
    traceback, status.json left 'running' with its lock. Now one RunStopped, the lock
    released; the same params resume once there is space."""
    real_save, real_write = torch.save, Path.write_text
    full = {"on": False}

    def save(obj, f, *args, **kwargs):
        if full["on"] or JobPaths.MODEL in str(f):
            full["on"] = True
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    def write_text(self, *args, **kwargs):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(RunStopped, match="status.json could not be updated .No space left") as e:
        run_experiment(load_config(values=dict(tiny_values, job_id="disk")), progress=False)
    assert e.value.reason == "write_error" and "model.pt could not be written" in str(e.value)
    running = Path(tiny_values["results_dir"]) / ".running-disk"
    assert not (running / JobPaths.LOCK).exists()
    monkeypatch.setattr(torch, "save", real_save)
    monkeypatch.setattr(Path, "write_text", real_write)
    path = run_experiment(load_config(values=dict(tiny_values, job_id="disk")), progress=False)
    assert status(path)["status"] == "completed" and status(path)["attempts"] == 2


@pytest.mark.parametrize("damage", ['"x"', "1e400", "[1]", "-3", "true"])
def test_a_damaged_attempts_count_does_not_stop_a_resume(tiny_values, damage):
    """Third faults pass, item 11: int(...) of a damaged status.json field was a traceback."""
    running = _stopped_run(tiny_values, "dmg", 2)
    state = json.loads((running / "status.json").read_text())
    text = json.dumps(state).replace(f'"attempts": {state["attempts"]}', f'"attempts": {damage}')
    (running / "status.json").write_text(text)
    path = run_experiment(load_config(values=dict(tiny_values, job_id="dmg")), progress=False)
    assert status(path)["status"] == "completed" and status(path)["attempts"] == 1


@pytest.mark.parametrize("when", ["before scoring", "after scoring"])
def test_a_stop_after_the_last_step_stops_resumable_and_the_resume_scores(tiny_values, monkeypatch, when):
    """Third faults pass, item 12: SIGTERM during test scoring or outputs was ignored (the run
    completed, exit 0). Now the run stops there, preempted by `cancel`, and a resume scores it."""
    import signal
    from nowcast import experiment, stopping
    real_train, real_score = experiment.train, experiment.score_test_split

    def then_signal(*a, **k):
        out = (real_train if when == "before scoring" else real_score)(*a, **k)
        monkeypatch.setattr(stopping, "_stop_requested", signal.SIGTERM)
        return out
    monkeypatch.setattr(experiment, "train" if when == "before scoring" else "score_test_split", then_signal)
    cfg = load_config(values=dict(tiny_values, job_id="late"))
    with pytest.raises(RunStopped):
        run_experiment(cfg, progress=False)
    running = Path(tiny_values["results_dir"]) / ".running-late"
    state = status(running)
    assert state["status"] == "preempted" and state["stopped_by"] == "cancel"
    monkeypatch.setattr(stopping, "_stop_requested", None)
    monkeypatch.setattr(experiment, "train", real_train)
    monkeypatch.setattr(experiment, "score_test_split", real_score)
    path = run_experiment(load_config(values=dict(tiny_values, job_id="late")), progress=False)
    assert status(path)["status"] == "completed" and status(path)["attempts"] == 2
    whole = run_experiment(load_config(values=dict(tiny_values, job_id="whole")), progress=False)
    a = json.loads((path / "metrics.json").read_text())["mean"]
    b = json.loads((whole / "metrics.json").read_text())["mean"]
    assert a == b  # the resumed run scored the same model
