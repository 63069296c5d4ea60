"""Several processes per SLURM array task (docs/multi_gpu.md): srun starts one process per GPU
(here: per CPU, gloo), rank 0 runs the notebook and writes the folder.

The command lines are pure functions, checked here without a cluster (multi-node ones cannot
run on the single-node test cluster). The tests marked `slurm` run on the cluster of
.ci/slurm-up.sh (2 CPUs: one 2-process task at a time) and skip with a message without it:

    eval "$(.ci/slurm-up.sh --env)" && pytest tests/test_slurm_ddp.py
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nowcast.cli import build_parser
from nowcast.errors import NowcastError
from nowcast.launch import slurm
from nowcast.launch.slurm import Launch, SweepSpec
from test_slurm import _cluster_conf, hold_training, signal_when_checkpointed, wait_gone

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "params" / "smoke.yaml"


# --------------------------------------------------------------------------------------------
# command lines (no cluster)
# --------------------------------------------------------------------------------------------

def _spec(tmp_path, **kw) -> SweepSpec:
    return SweepSpec(tasks=3, sweep_dir=tmp_path / "sweep", list_file=tmp_path / "params.txt",
                     results_dir="results", workdir="/work", python="/venv/bin/python",
                     train_script=Path("train_array.sbatch"), report_script=Path("report.sbatch"),
                     **kw)


def test_multi_node_array_command(tmp_path):
    """2 nodes x 4 GPUs: one SLURM task per GPU, the GPUs per node as gres, CPUs per process,
    and nowcast task told how many processes to start (after the list file)."""
    launch = Launch(per_node=4, nodes=2, gpus=True, gpu_type="a100", timeout_s=120)
    argv = slurm.array_command(_spec(tmp_path, cpus=8, launch=launch))
    assert argv[:3] == ["sbatch", "--parsable", "--array=0-2"]
    assert {"--nodes=2", "--ntasks-per-node=4", "--gres=gpu:a100:4", "--cpus-per-task=8"} <= set(argv)
    assert argv[-8:] == ["train_array.sbatch", str(tmp_path / "params.txt"), "--procs-per-node", "4",
                         "--nodes", "2", "--collective-timeout", "120"]
    assert not any(a.startswith("--gres=gpu:1") for a in argv)
    cpu = slurm.array_command(_spec(tmp_path, launch=Launch(per_node=2)))
    assert {"--nodes=1", "--ntasks-per-node=2", "--gres=none"} <= set(cpu)
    single = slurm.array_command(_spec(tmp_path, gpus="1"))  # one process: as before
    assert "--gres=gpu:1" in single and not any(a.startswith("--ntasks") for a in single)
    assert single[-1] == str(tmp_path / "params.txt")


def test_srun_command_rendezvous_and_rank_environment():
    launch = Launch(per_node=4, nodes=2, gpus=True, timeout_s=60)
    rank = ["/venv/bin/python", "-m", "nowcast", "task", "p.yaml", "--rendezvous", "node07:20123"]
    assert slurm.srun_command(launch, rank, cpus=8) == [
        "srun", "--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=8", "--kill-on-bad-exit=1",
        "--label", *rank]
    assert slurm.hostnames_command("node[07-08]") == ["scontrol", "show", "hostnames", "node[07-08]"]
    port = slurm.master_port("123456")
    assert port == slurm.master_port("123456") and 20000 <= port < 30000
    assert slurm.master_port("123456", "1") != port  # a requeued run does not wait for the old port
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "9"}
    assert slurm.rank_env(env, "node07:20123") == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node07",
        "MASTER_PORT": "20123"}
    with pytest.raises(NowcastError, match="SLURM_PROCID"):
        slurm.rank_env({}, "node07:20123")


def test_sweep_launch_from_options_and_sbatch_variables():
    assert slurm.sweep_launch() is None
    assert slurm.sweep_launch(env={"SBATCH_GPUS_PER_TASK": "4", "SBATCH_NODES": "2"}) == \
        Launch(per_node=4, nodes=2, gpus=True)
    assert slurm.sweep_launch("a100:2", env={"SBATCH_GPUS_PER_TASK": "4"}) == \
        Launch(per_node=2, gpus=True, gpu_type="a100")
    assert slurm.sweep_launch(procs_per_task=2, timeout_s=30, env={"SBATCH_GPUS_PER_TASK": "4"}) == \
        Launch(per_node=2, timeout_s=30)
    for bad in [dict(gpus_per_task="2", procs_per_task=2), dict(nodes=2), dict(procs_per_task=0),
                dict(gpus_per_task="two"), dict(procs_per_task=2, timeout_s=0)]:
        with pytest.raises(NowcastError):
            slurm.sweep_launch(**bad)
    # sbatch itself would read SBATCH_GPUS_PER_TASK as GPUs per process: not passed on
    assert slurm.sbatch_env({"SBATCH_GPUS_PER_TASK": "4", "SBATCH_NODES": "2", "A": "1"}) == {"A": "1"}


def test_sweep_dry_run_multi_node_and_batch_division(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = build_parser().parse_args(["sweep", str(SMOKE), "--gpus-per-task", "4", "--nodes", "2",
                                      "--collective-timeout", "90", "--results", str(tmp_path),
                                      "--dry-run", "--no-report"])
    assert args.func(args) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("+ sbatch"))
    assert "--nodes=2 --ntasks-per-node=4 --gres=gpu:4" in line
    assert line.endswith("--procs-per-node 4 --nodes 2 --collective-timeout 90")
    with pytest.raises(NowcastError, match="batch_size 8 is not divisible by the 3 processes"):
        slurm.submit_sweep([str(SMOKE)], str(tmp_path), procs_per_task=3, dry_run=True)
    with pytest.raises(NowcastError, match="--gpus"):
        slurm.submit_sweep([str(SMOKE)], str(tmp_path), gpus="1", gpus_per_task="2", dry_run=True)
    script = (ROOT / "experiments" / "slurm" / "train_array.sbatch").read_text()
    assert '"$PY" -m nowcast task "$PARAMS" "$@"' in script  # the options reach nowcast task


# --------------------------------------------------------------------------------------------
# on the cluster: 2 processes (CPU, gloo)
# --------------------------------------------------------------------------------------------

# 48 steps: time to be signalled after step 2; fp32: one process and two agree to float
# rounding in the reference arithmetic (bf16 autocast, what auto picks on an AMX CPU, rounds
# each shard's activations on its own)
VALUES = dict(yaml.safe_load(SMOKE.read_text()), name="ddp-smoke", train_sequences=192,
              batch_size=4, checkpoint_every=2, precision="fp32")
OPTIONS = dict(procs_per_task=2, cpus=1, time="00:15:00", report=False)


def _losses(folder: Path) -> list[float]:
    with open(folder / "batch_losses.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _log(out: dict) -> str:
    path = Path(out["sweep_dir"]) / "logs" / f"{out['array']}_0.out"
    return path.read_text() if path.is_file() else f"(no {path})"


@pytest.fixture(scope="module")
def params_and_reference(tmp_path_factory) -> tuple[Path, list[float]]:
    """The params and the loss curve of one process (nowcast train here, not on the cluster)."""
    _cluster_conf()  # skips (before training) where no cluster can run
    folder = tmp_path_factory.mktemp("ddp")
    params = folder / "ddp-smoke.yaml"
    params.write_text(yaml.safe_dump(VALUES))
    done = subprocess.run([sys.executable, "-m", "nowcast", "train", "-c", str(params), "-q",
                           "--results", str(folder / "r"), "--job-id", "one"], capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return params, _losses(folder / "r" / "one")


@pytest.mark.slurm
@pytest.mark.slow
def test_two_processes_in_a_task_match_one(tmp_path, monkeypatch, params_and_reference):
    monkeypatch.setenv("SLURM_CONF", _cluster_conf())
    monkeypatch.chdir(ROOT)
    params, reference = params_and_reference
    results = tmp_path / "results"
    out = slurm.submit_sweep([str(params)], str(results), **OPTIONS)
    job = f"{out['array']}_0"
    wait_gone(out["array"], results / f".running-{job}")
    log, final = _log(out), results / job
    assert json.loads((final / "status.json").read_text())["status"] == "completed", log
    assert "on 2 processes" in log and "srun" in log, log
    assert json.loads((final / "env.json").read_text())["processes"] == 2
    assert _losses(final) == pytest.approx(reference, rel=1e-4, abs=1e-6)
    assert (final / "train.ipynb").is_file() and not list(final.glob("rank-*.error"))
    assert sorted(p.name for p in results.iterdir()) == [".sweeps", job]  # rank 1 wrote nothing


@pytest.mark.slurm
@pytest.mark.slow
def test_usr1_stops_every_rank_requeues_and_resumes_to_the_same_result(tmp_path, monkeypatch,
                                                                       params_and_reference):
    """SIGUSR1 to the batch script: nowcast task passes it to srun, srun to both ranks; they
    agree on the step to stop at, rank 0 saves the checkpoint, the task requeues itself and the
    requeued task resumes on 2 processes to the loss curve of an uninterrupted run."""
    monkeypatch.setenv("SLURM_CONF", _cluster_conf())
    monkeypatch.chdir(ROOT)
    params, reference = params_and_reference
    results = tmp_path / "results"
    gate = hold_training(tmp_path, monkeypatch)
    out = slurm.submit_sweep([str(params)], str(results), **OPTIONS)
    job = f"{out['array']}_0"
    running = results / f".running-{job}"
    signal_when_checkpointed(out["array"], running, gate, "--signal=USR1", "--batch", job)
    wait_gone(out["array"], running)
    log, final = _log(out), results / job
    state = json.loads((final / "status.json").read_text())
    assert state["status"] == "completed" and state["attempts"] == 2, (state, log)
    assert "requeueing" in log and "restart 1" in log, log
    assert _losses(final) == pytest.approx(reference, rel=1e-4, abs=1e-6)


PLUGIN = textwrap.dedent('''
    # test_slurm_ddp: loaded at start-up by every Python of the job (PYTHONPATH); only rank 1
    # of srun's processes fails, at its third step, while rank 0 waits in the step's all-reduce.
    import os
    if os.environ.get("SLURM_PROCID") == "1":
        import nowcast.training as training
        step_once = training.Trainer.train_step
        def train_step(self, step, stage):
            if step == 2:
                raise RuntimeError("rank 1 made to fail at step 2 (test plugin)")
            return step_once(self, step, stage)
        training.Trainer.train_step = train_step
''')


@pytest.mark.slurm
@pytest.mark.slow
def test_a_failing_rank_fails_the_task_by_collective_timeout(tmp_path, monkeypatch,
                                                             params_and_reference):
    """Rank 1 raises mid-training: it writes its error into the folder and waits; rank 0 times
    out in its collective (20 s), fails the run naming rank 1's error, and the task ends,
    long before its time limit."""
    monkeypatch.setenv("SLURM_CONF", _cluster_conf())
    monkeypatch.chdir(ROOT)
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text(PLUGIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(plugin), *filter(None, [os.environ.get("PYTHONPATH")])]))
    params, _ = params_and_reference
    results = tmp_path / "results"
    out = slurm.submit_sweep([str(params)], str(results), collective_timeout=20, **OPTIONS)
    job = f"{out['array']}_0"
    wait_gone(out["array"], results / f".running-{job}")
    log, final = _log(out), results / job
    state = json.loads((final / "status.json").read_text())
    assert state["status"] == "failed", (state, log)
    assert state["error"].startswith("rank 1 failed: RuntimeError: rank 1 made to fail at step 2"), state
    assert "(rank 0: " in state["error"] and "timed out" in state["error"].lower(), state  # gloo's
    error = (final / "rank-1.error").read_text()
    assert "Traceback" in error and "made to fail" in error
    assert "TIME LIMIT" not in log and "finished with status 1" in log, log
    assert (final / "train.ipynb").is_file()  # the executed notebook of rank 0
