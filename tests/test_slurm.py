"""The SLURM path for real, on the single-node cluster of .ci/slurm-up.sh (root, Debian Slurm).

A three-task sweep (smoke params; one set whose data file exists but is corrupt, so that it
fails at run time; the smoke set with PredRNN's ST-LSTM) plus the report job: the good tasks
complete, the bad one is marked failed with its error, and the report job still runs after all
(afterany) and builds the report.

    .ci/slurm-up.sh && SLURM_CONF=/tmp/nowcast-slurm/slurm.conf pytest -m slurm tests/test_slurm.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest
import yaml

from conftest import predrnn_smoke, simvp_smoke
from nowcast import status
from nowcast.cli import build_parser
from nowcast.config import without_unused
from nowcast.launch import slurm

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "params" / "smoke.yaml"
SLURM_DIR = Path(os.environ.get("NOWCAST_SLURM_DIR", "/tmp/nowcast-slurm"))

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _unavailable(reason: str):
    """Skip where no cluster can run; in CI (CI=true, where .ci/run starts one) fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run should have started the cluster)")
    pytest.skip(reason)


def _cluster_conf() -> str:
    if os.geteuid() != 0:
        _unavailable("SLURM test: needs root (the local single-node cluster runs jobs as root)")
    missing = [c for c in ("sbatch", "squeue", "scontrol", "sinfo") if shutil.which(c) is None]
    if missing:
        _unavailable(f"SLURM test: {', '.join(missing)} not installed "
                    "(apt-get install slurmctld slurmd slurm-client munge; then .ci/slurm-up.sh)")
    conf = os.environ.get("SLURM_CONF") or str(SLURM_DIR / "slurm.conf")
    if not Path(conf).is_file():
        _unavailable(f"SLURM test: no cluster configuration at {conf}: start one with .ci/slurm-up.sh")
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          env=dict(os.environ, SLURM_CONF=conf), timeout=30)
    if done.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in done.stdout.split()):
        _unavailable(f"SLURM test: cluster not up (sinfo: {done.stdout.strip() or done.stderr.strip()}); "
                    "start it with .ci/slurm-up.sh")
    return conf


def _squeue(ids: list[str], fmt: str = "%i %T") -> list[str]:
    done = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", fmt], capture_output=True,
                          text=True, timeout=30)
    return [line for line in done.stdout.splitlines() if line.strip()]


HOLD_PLUGIN = """
# tests/test_slurm.py: loaded at start-up by every Python of the job (PYTHONPATH): training
# waits before optimiser step {step} until {gate} exists
import os, time
import nowcast.training as training
_step_once = training.Trainer.train_step
def train_step(self, step, stage):
    while step == {step} and not os.path.exists({gate!r}):
        time.sleep(0.1)
    return _step_once(self, step, stage)
training.Trainer.train_step = train_step
"""


def hold_training(tmp_path: Path, monkeypatch, step: int = 3) -> Path:
    """Every process of the next job holds its training before step `step` until the returned
    gate file exists: a signal sent before the gate opens finds the run still training,
    however fast the machine (no race between the signal and the end of training)."""
    plugin, gate = tmp_path / "hold-plugin", tmp_path / "gate"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text(HOLD_PLUGIN.format(step=step, gate=str(gate)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(plugin), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return gate


def signal_when_checkpointed(array: str, running: Path, gate: Path, *scancel: str) -> None:
    """Wait for the run's first checkpoint (it is then held before its next steps), signal the
    task (`scancel *scancel`), then open the gate."""
    deadline = time.time() + 600
    while not (running / "checkpoint.pt").is_file():
        assert time.time() < deadline, "no checkpoint appeared"
        assert _squeue([array]), "the task ended before it was signalled"
        time.sleep(0.5)
    subprocess.run(["scancel", *scancel], check=True, timeout=30)
    time.sleep(1)  # the signal is delivered (and noted) while the run is held
    gate.touch()


def wait_gone(array: str, running: Optional[Path] = None, seconds: float = 600) -> None:
    """Until the array has left the queue (and, if given, the running folder is gone)."""
    deadline = time.time() + seconds
    while _squeue([array]) or (running is not None and running.exists()):
        assert time.time() < deadline, f"still queued: {_squeue([array])}"
        time.sleep(2)


def _on_cluster_with_smoke(tmp_path: Path, monkeypatch, name: str, **changes) -> Path:
    """The cluster's configuration in the environment, the repository as working folder, and
    a params file: the smoke set named `name`, checkpointing every 2 steps of 4 sequences,
    with `changes`."""
    monkeypatch.setenv("SLURM_CONF", _cluster_conf())
    monkeypatch.chdir(ROOT)
    values = dict(yaml.safe_load(SMOKE.read_text()), name=name, batch_size=4, checkpoint_every=2,
                  **changes)
    params = tmp_path / f"{name}.yaml"
    params.write_text(yaml.safe_dump(values))
    return params


def _cli_has(command: str) -> bool:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return command in sub.choices


def test_sweep_with_a_failing_task_and_the_report_job(tmp_path, monkeypatch):
    conf = _cluster_conf()
    monkeypatch.setenv("SLURM_CONF", conf)
    monkeypatch.chdir(ROOT)

    corrupt = tmp_path / "corrupt.npz"  # exists (validation passes), unreadable at run time
    corrupt.write_bytes(b"PK\x03\x04 not a zip archive " * 50)
    values = yaml.safe_load(SMOKE.read_text())
    values.update(name="corrupt-data", dataset="npz", data_file=str(corrupt))
    values = without_unused(values)  # Moving MNIST's fields mean nothing to a data file
    bad = tmp_path / "corrupt-data.yaml"
    bad.write_text(yaml.safe_dump(values))
    results = tmp_path / "results"
    monkeypatch.setenv("NOWCAST_REPORT_OUT", str(tmp_path / "report"))  # not the checkout's
    monkeypatch.setenv("NOWCAST_SLIDES_OUT", str(tmp_path / "slides"))

    predrnn = predrnn_smoke(tmp_path)  # the second recurrent family through the sweep path
    simvp = simvp_smoke(tmp_path)      # and the recurrent-free one
    out = slurm.submit_sweep([str(SMOKE), str(bad), str(predrnn), str(simvp)], str(results),
                              gpus="0", cpus=1, time="00:15:00")
    array, report = out["array"], out["report"]
    assert array.isdigit() and report.isdigit()
    dependency = _squeue([report], "%E")
    assert not dependency or f"afterany:{array}" in dependency[0]

    deadline = time.time() + 600
    while _squeue([array, report]):
        assert time.time() < deadline, f"jobs still queued: {_squeue([array, report])}"
        time.sleep(2)

    logs = Path(out["sweep_dir"]) / "logs"
    def log(name: str) -> str:
        path = logs / name
        return path.read_text() if path.is_file() else f"(no {path})"

    good, failed = results / f"{array}_0", results / f"{array}_1"
    assert good.is_dir(), log(f"{array}_0.out")
    status = json.loads((good / "status.json").read_text())
    assert status["status"] == "completed", log(f"{array}_0.out")
    for name in ["params.yaml", "metrics.json", "history.csv", "env.json", "loss.png",
                 "test_strip.png", "model.pt", "train.ipynb"]:
        assert (good / name).is_file(), name
    env = json.loads((good / "env.json").read_text())
    assert env["slurm"]["array_job_id"] == array and env["slurm"]["array_task_id"] == "0"

    assert failed.is_dir(), log(f"{array}_1.out")
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and "corrupt.npz" in status["error"], status
    assert (failed / "train.ipynb").is_file()  # the executed notebook shows the traceback
    third = results / f"{array}_2"
    assert json.loads((third / "status.json").read_text())["status"] == "completed", log(f"{array}_2.out")
    assert yaml.safe_load((third / "params.yaml").read_text())["architecture"] == "predrnn"
    fourth = results / f"{array}_3"
    assert json.loads((fourth / "status.json").read_text())["status"] == "completed", log(f"{array}_3.out")
    assert yaml.safe_load((fourth / "params.yaml").read_text())["architecture"] == "simvp"
    assert not list(results.glob(".running-*"))

    report_log = log(f"report-{report}.out")
    assert "report: status" in report_log, report_log  # the report job ran after both tasks
    if _cli_has("report"):  # the report builds and shows the failed run with its error
        assert "report: status 0" in report_log, report_log
        html = (tmp_path / "report" / "report.html").read_text()
        assert "corrupt-data" in html and "failed" in html and "BadZipFile" in html


def test_preempted_task_checkpoints_requeues_and_resumes(tmp_path, monkeypatch):
    """SIGUSR1 to the batch script (what #SBATCH --signal=B:USR1@120 sends before the time
    limit): the run checkpoints, the script requeues the task, the requeued task resumes in the
    same folder (same array ids) and completes."""
    params = _on_cluster_with_smoke(tmp_path, monkeypatch, "long-smoke", train_sequences=96)
    results = tmp_path / "results"
    gate = hold_training(tmp_path, monkeypatch)
    out = slurm.submit_sweep([str(params)], str(results), gpus="0", cpus=1, time="00:15:00",
                              report=False)
    array = out["array"]
    running = results / f".running-{array}_0"
    signal_when_checkpointed(array, running, gate, "--signal=USR1", "--batch", f"{array}_0")
    wait_gone(array, running)
    final = results / f"{array}_0"
    log = (Path(out["sweep_dir"]) / "logs" / f"{array}_0.out").read_text()
    assert final.is_dir(), log
    status = json.loads((final / "status.json").read_text())
    assert status["status"] == "completed" and status["attempts"] == 2, log
    assert "requeueing" in log and "restart 1" in log, log
    env = json.loads((final / "env.json").read_text())
    assert env["slurm"].get("restart_count") == "1"


def test_cancelled_task_stops_for_good_and_a_resubmission_resumes_it(tmp_path, monkeypatch):
    """scancel (SIGTERM to every process of the task): the run checkpoints and stops, the task
    is not requeued, status.json says it was cancelled (resumable), and the set submitted
    again with its job id resumes from the checkpoint."""
    params = _on_cluster_with_smoke(tmp_path, monkeypatch, "cancel-smoke", train_sequences=400)
    results = tmp_path / "results"
    options = dict(gpus="0", cpus=1, time="00:15:00", report=False)
    gate = hold_training(tmp_path, monkeypatch)
    out = slurm.submit_sweep([str(params)], str(results), **options)
    array = out["array"]
    job = f"{array}_0"
    running = results / f".running-{job}"
    signal_when_checkpointed(array, running, gate, job)
    wait_gone(array)
    log = (Path(out["sweep_dir"]) / "logs" / f"{job}.out").read_text()
    assert running.is_dir() and not (results / job).exists(), log
    state = json.loads((running / "status.json").read_text())
    assert state["status"] == "preempted" and state["stopped_by"] == "cancel", (state, log)
    assert (running / "checkpoint.pt").is_file(), log
    assert "requeueing" not in log and "restart 1" not in log, log
    assert f"--set job_id={job}" in log, log  # the task says how to resume

    again = slurm.submit_sweep([str(params)], str(results), overrides=[f"job_id={job}"], **options)
    wait_gone(again["array"])
    log = (Path(again["sweep_dir"]) / "logs" / f"{again['array']}_0.out").read_text()
    final = results / job
    assert final.is_dir() and not running.exists(), log
    state = json.loads((final / "status.json").read_text())
    assert state["status"] == "completed" and state["attempts"] == 2, (state, log)


def test_status_follows_a_sweep_and_a_resubmitted_sweep_skips_completed_sets(tmp_path, monkeypatch):
    """`nowcast status` on a real queue: a held task shows as pending (with squeue's reason),
    then running, then completed with its headline metric; the same sweep submitted again
    submits nothing."""
    conf = _cluster_conf()
    monkeypatch.setenv("SLURM_CONF", conf)
    monkeypatch.chdir(ROOT)
    results = tmp_path / "results"
    options = dict(gpus="0", cpus=1, time="00:15:00", report=False)
    out = slurm.submit_sweep([str(SMOKE)], str(results), sbatch_args=["--hold"], **options)
    array = out["array"]
    job = f"{array}_0"
    try:
        (row,) = status.collect_rows([results])
        assert (row.job_id, row.state, row.name) == (job, "pending", "smoke"), row
        assert "JobHeldUser" in (row.queue or ""), row
    finally:
        subprocess.run(["scontrol", "release", array], check=True, timeout=30)

    seen = set()
    deadline = time.time() + 600
    while _squeue([array]):
        assert time.time() < deadline, f"still queued: {_squeue([array])}"
        seen |= {r.state for r in status.collect_rows([results])}
        time.sleep(1)
    log = (Path(out["sweep_dir"]) / "logs" / f"{job}.out").read_text()
    assert "running" in seen and "stale" not in seen, (seen, log)
    # the task's log has its progress lines (the final one always: which stages a poll
    # catches before it depends on the machine's speed)
    assert "  smoke  " in log and "step 8/8 (100%)" in log, log
    (row,) = status.collect_rows([results])
    assert (row.job_id, row.state) == (job, "completed"), (row, log)
    assert row.result and "MSE/frame" in row.result

    again = slurm.submit_sweep([str(SMOKE)], str(results), **options)
    assert again["array"] is None and again["tasks"] == []
    assert again["skipped"] == [{"source": str(SMOKE), "name": "smoke", "results": str(results / job)}]
