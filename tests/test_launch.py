"""nowcast run / nowcast sweep (nowcast/launch/), without a cluster: a fake sbatch records
what would be submitted; the sbatch command lines are checked exactly; local runs go through
papermill for real (marked slow)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nowcast import results
from nowcast.cli import main
from nowcast.launch import local, params, slurm
from nowcast.config import load_config, to_yaml, without_unused
from nowcast.errors import EXIT_REQUEUE, NowcastError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "params" / "smoke.yaml"
GRID = ROOT / "params" / "grids" / "example.yaml"


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_collect_expands_grids_and_keeps_order():
    sets = params.collect([SMOKE, GRID])
    assert [s.cfg.name for s in sets][:2] == ["smoke", "example-filter_size=3-loss=bce"]
    assert len(sets) == 5
    assert sets[2].cfg.loss == "mse" and sets[2].cfg.filter_size == 3


def test_collect_applies_overrides_and_results_dir(tmp_path):
    (ps,) = params.collect([SMOKE], ["seed=3"], str(tmp_path))
    assert ps.cfg.seed == 3 and ps.cfg.results_dir == str(tmp_path)
    assert ps.values["seed"] == 3 and ps.values["results_dir"] == str(tmp_path)


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """An sbatch on PATH that logs its arguments and answers job ids 101, 102, ..."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sbatch.log"
    script = bindir / "sbatch"
    script.write_text(f"""#!/usr/bin/env bash
n=$(( $(wc -l < {log} 2>/dev/null || echo 0) + 101 ))
echo "$*" >> {log}
echo "$n"
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_submit_sweep_submits_array_then_dependent_report(tmp_path, fake_sbatch, in_root, capsys):
    res = str(tmp_path / "results")
    out = slurm.submit_sweep([str(SMOKE), str(GRID)], res, partition="gpu", gpus="2",
                              time="01:00:00", account="proj")
    calls = fake_sbatch.read_text().splitlines()
    assert len(calls) == 2
    array, report = calls
    assert "--array=0-4" in array and "--partition=gpu" in array and "--gres=gpu:2" in array
    assert "--time=01:00:00" in array and "--account=proj" in array
    assert "experiments/slurm/train_array.sbatch" in array
    assert "--dependency=afterany:101" in report and "--kill-on-invalid-dep=yes" in report
    assert "experiments/slurm/report.sbatch" in report and "--gres" not in report
    assert out["array"] == "101" and out["report"] == "102"
    assert [t["job_id"] for t in out["tasks"]] == [f"101_{i}" for i in range(5)]
    listed = Path(out["list"]).read_text().split()
    assert len(listed) == 5
    # each listed file holds exactly the validated set
    for path, task in zip(listed, out["tasks"]):
        cfg = load_config(path)
        assert cfg.name == task["name"] and cfg.results_dir == res
    printed = capsys.readouterr().out
    assert "101" in printed and "102" in printed


def test_submit_sweep_validates_everything_before_submitting(tmp_path, fake_sbatch, in_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("filter_size: 4\n")
    with pytest.raises(NowcastError, match="filter_size"):
        slurm.submit_sweep([str(SMOKE), str(bad)], str(tmp_path / "results"))
    assert not fake_sbatch.exists()
    assert not (tmp_path / "results").exists()


def test_submit_sweep_dry_run_submits_nothing(tmp_path, fake_sbatch, in_root, capsys):
    out = slurm.submit_sweep([str(SMOKE)], str(tmp_path / "results"), gpus="0", dry_run=True)
    assert not fake_sbatch.exists()
    printed = capsys.readouterr().out
    assert "sbatch" in printed and "--gres=none" in printed and out["array"] == "DRYRUN"
    assert not (Path(out["sweep_dir"]) / "logs").exists()   # nothing ran: no empty log folder
    assert f"dry run: commands and params in {out['sweep_dir']}" in printed


def test_submit_sweep_without_report_says_so(tmp_path, fake_sbatch, in_root, capsys):
    out = slurm.submit_sweep([str(SMOKE)], str(tmp_path / "results"), report=False)
    printed = capsys.readouterr().out
    assert out["report"] is None and "no report job" in printed and "None" not in printed
    assert (Path(out["sweep_dir"]) / "logs").is_dir()


def _completed_folder(res: Path, name: str, cfg) -> Path:
    """A completed results folder of cfg's params (as results.find_completed recognises)."""
    done = res / name
    done.mkdir(parents=True)
    (done / "params.yaml").write_text(to_yaml(cfg))
    (done / "status.json").write_text(json.dumps({"status": "completed"}))
    (done / "metrics.json").write_text(json.dumps({"mean": {}}))
    return done


def test_submit_sweep_skips_completed_sets_and_resumes(tmp_path, fake_sbatch, in_root, capsys):
    res = tmp_path / "results"
    done = _completed_folder(res, "earlier", load_config(SMOKE, [f"results_dir={res}"]))
    out = slurm.submit_sweep([str(SMOKE), str(GRID)], str(res))
    array = fake_sbatch.read_text().splitlines()[0]
    # smoke is done, and so is the grid point with smoke's params (names do not count)
    assert "--array=0-2" in array
    assert [(s["name"], s["results"]) for s in out["skipped"]] == [
        ("smoke", str(done)), ("example-filter_size=3-loss=bce", str(done))]
    assert [t["name"] for t in out["tasks"]] == [
        "example-filter_size=3-loss=mse", "example-filter_size=5-loss=bce", "example-filter_size=5-loss=mse"]
    assert len(Path(out["list"]).read_text().split()) == 3
    printed = capsys.readouterr().out
    assert "skipped, completed in" in printed and "2 completed sets skipped" in printed
    assert yaml.safe_load((Path(out["sweep_dir"]) / "jobs.yaml").read_text())["skipped"] == out["skipped"]

    # nothing left: nothing submitted, and it says so
    fake_sbatch.unlink()
    out = slurm.submit_sweep([str(SMOKE)], str(res))
    assert out["array"] is None and out["tasks"] == [] and not fake_sbatch.exists()
    assert "nothing to submit" in capsys.readouterr().out
    assert len(list((res / slurm.SWEEPS).iterdir())) == 1  # no sweep folder for nothing

    # --force submits it again
    assert main(["sweep", str(SMOKE), "--results", str(res), "--force", "--no-report"]) == 0
    assert "--array=0-0" in fake_sbatch.read_text()


def _spec(**options) -> slurm.SweepSpec:
    return slurm.SweepSpec(tasks=3, sweep_dir=Path("/r/.sweeps/s"), list_file=Path("/r/.sweeps/s/params.txt"),
                           results_dir="/r", workdir="/w", python="/venv/bin/python",
                           train_script=Path("/c/train_array.sbatch"),
                           report_script=Path("/c/report.sbatch"), **options)


def test_sbatch_commands_are_built_from_their_inputs_alone():
    spec = _spec(partition="gpu", gpus="0", time="01:00:00", account="proj", cpus=2,
                 sbatch_args=("--mem=8G",))
    assert slurm.array_command(spec) == [
        "sbatch", "--parsable", "--array=0-2", "--chdir=/w", "--partition=gpu", "--account=proj",
        "--time=01:00:00", "--output=/r/.sweeps/s/logs/%A_%a.out", "--gres=none",
        "--cpus-per-task=2", "--mem=8G", "--export=ALL,NOWCAST_PYTHON=/venv/bin/python",
        "/c/train_array.sbatch", "/r/.sweeps/s/params.txt"]
    assert slurm.report_command(spec, "123") == [
        "sbatch", "--parsable", "--dependency=afterany:123", "--kill-on-invalid-dep=yes",
        "--chdir=/w", "--partition=gpu", "--account=proj", "--time=01:00:00",
        "--output=/r/.sweeps/s/logs/report-%j.out", "--export=ALL,NOWCAST_PYTHON=/venv/bin/python",
        "/c/report.sbatch", "/r"]


def test_sbatch_commands_leave_unset_options_to_sbatch():
    assert slurm.array_command(_spec()) == [
        "sbatch", "--parsable", "--array=0-2", "--chdir=/w", "--output=/r/.sweeps/s/logs/%A_%a.out",
        "--export=ALL,NOWCAST_PYTHON=/venv/bin/python", "/c/train_array.sbatch",
        "/r/.sweeps/s/params.txt"]
    assert "--gres=gpu:a100:2" in slurm.array_command(_spec(gpus="a100:2"))


def test_task_subcommand_has_its_own_help():
    done = subprocess.run([sys.executable, "-m", "nowcast", "task", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: nowcast task" in done.stdout and "params" in done.stdout
    listed = subprocess.run([sys.executable, "-m", "nowcast", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120).stdout
    commands = [line.split()[0] for line in listed.splitlines() if line.startswith("    ")]
    assert "sweep" in commands and "task" not in commands and "SUPPRESS" not in listed


def test_a_run_marked_preempted_is_kept_for_resuming(tmp_path):
    """The launcher reads the run's status (set by run_experiment), not the error's text."""
    cfg = load_config(SMOKE, [f"results_dir={tmp_path}", "job_id=j1"])
    running = results.start_run(cfg)
    results.mark_preempted(running, "stopped at step 4")
    status, path = local._conclude(cfg, "j1", tmp_path / "none.ipynb", RuntimeError("kernel stopped"),
                                   signalled=False)
    assert (status, path) == ("preempted", running)
    results.start_run(cfg)  # running again, then failing for another reason: failed
    status, path = local._conclude(cfg, "j1", tmp_path / "none.ipynb", RuntimeError("Preempted?"),
                                   signalled=False)
    assert status == "failed" and path == tmp_path / "j1"


def test_sbatch_scripts_are_portable():
    for name in ["train_array.sbatch", "report.sbatch"]:
        text = (ROOT / "experiments" / "slurm" / name).read_text()
        assert "/home/" not in text and "/work/" not in text and "/scratch" not in text
        assert "#SBATCH --partition" not in text and "#SBATCH --account" not in text
    train = (ROOT / "experiments" / "slurm" / "train_array.sbatch").read_text()
    assert "#SBATCH --signal=B:USR1@120" in train and "#SBATCH --requeue" in train
    assert "#SBATCH --gres=gpu:1" in train and "scontrol requeue" in train
    assert '"$PY" -m nowcast task' in train
    subprocess.run(["bash", "-n", str(ROOT / "experiments" / "slurm" / "train_array.sbatch")], check=True)


def test_run_local_skips_completed_sets(tmp_path, monkeypatch, capsys):
    res = tmp_path / "results"
    cfg = load_config(SMOKE, [f"results_dir={res}"])
    done = res / "earlier"
    done.mkdir(parents=True)
    (done / "params.yaml").write_text(to_yaml(cfg))
    (done / "status.json").write_text(json.dumps({"status": "completed"}))
    (done / "metrics.json").write_text(json.dumps({"mean": {}}))  # a completed run has scores

    def must_not_run(*a, **k):
        raise AssertionError("a completed set was run again")

    monkeypatch.setattr(local, "run_one", must_not_run)
    assert local.run_local([str(SMOKE)], str(res), []) == 0
    assert "skipped" in capsys.readouterr().out
    # another value of one parameter is another set: it runs
    ran = []
    monkeypatch.setattr(local, "run_one", lambda ps, **k: ran.append(ps) or ("completed", None))
    assert local.run_local([str(SMOKE)], str(res), ["seed=1"]) == 0
    assert len(ran) == 1


def test_run_local_skips_a_set_completed_earlier_in_the_same_call(tmp_path, monkeypatch, capsys):
    """Two identical sets in one `nowcast run`: the second finds the first's completed folder
    and is skipped."""
    res = tmp_path / "results"
    ran = []

    def complete(ps, **k):
        ran.append(ps)
        return "completed", _completed_folder(res, f"run{len(ran)}", ps.cfg)

    monkeypatch.setattr(local, "run_one", complete)
    assert local.run_local([str(SMOKE), str(SMOKE)], str(res), []) == 0
    assert len(ran) == 1
    assert f"nowcast: {SMOKE}: skipped, completed in {res / 'run1'}" in capsys.readouterr().out
    assert local.run_local([str(SMOKE), str(SMOKE)], str(res), [], force=True) == 0
    assert len(ran) == 3  # force: both run again


@pytest.mark.parametrize("sent,expected", [(signal.SIGUSR1, "SIGUSR1"), (signal.SIGTERM, "SIGTERM"),
                                           (signal.SIGINT, "SIGTERM")])
def test_forwarder_passes_signals_to_child_processes(tmp_path, sent, expected):
    marker = tmp_path / "got"
    child = subprocess.Popen([sys.executable, "-c", f"""
import signal, time, pathlib
for s in (signal.SIGUSR1, signal.SIGTERM):
    signal.signal(s, lambda n, f: pathlib.Path({str(marker)!r}).write_text(signal.Signals(n).name))
pathlib.Path({str(marker)!r} + ".ready").write_text("")
time.sleep(20)
"""])
    try:
        for _ in range(100):
            if Path(str(marker) + ".ready").exists():
                break
            time.sleep(0.05)
        with local.SignalForwarder() as forwarder:
            os.kill(os.getpid(), sent)
            for _ in range(100):
                if marker.exists():
                    break
                time.sleep(0.05)
        assert forwarder.received == sent
        assert marker.read_text() == expected
    finally:
        child.kill()
        child.wait()


# --- for real, through papermill --------------------------------------------------------------

@pytest.mark.slow
def test_run_local_runs_notebook_into_results_and_then_skips(tmp_path, in_root, capsys):
    res = tmp_path / "results"
    assert local.run_local([str(SMOKE)], str(res), []) == 0
    # the run's progress lines (plain lines: not a terminal), not papermill's cell counter;
    # which stages a poll catches depends on the machine's speed, the final step count does not
    printed = capsys.readouterr().out
    assert "  smoke  " in printed and "step 8/8 (100%)" in printed, printed
    assert "seq/s" in printed and "loss " in printed and "Executing" not in printed
    (run,) = [p for p in res.iterdir() if not p.name.startswith(".")]
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert (run / "train.ipynb").is_file() and (run / "metrics.json").is_file()
    assert not any(p.name.startswith(".running-") for p in res.iterdir())
    nb = json.loads((run / "train.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    # again: skipped, no second folder
    assert local.run_local([str(SMOKE)], str(res), [], progress=False) == 0
    assert len([p for p in res.iterdir() if not p.name.startswith(".")]) == 1


def _corrupt_npz(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 this is not a zip archive " * 20)
    return path


@pytest.mark.slow
def test_run_local_marks_a_failing_run_failed_with_its_notebook(tmp_path, in_root):
    res = tmp_path / "results"
    data = _corrupt_npz(tmp_path / "corrupt.npz")
    bad = tmp_path / "corrupt-data.yaml"
    values = without_unused(dict(yaml.safe_load(SMOKE.read_text()), name="corrupt-data",
                                 dataset="npz", data_file=str(data)))
    bad.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}))
    assert local.run_local([str(bad), str(SMOKE)], str(res), [], progress=False) == 1
    runs = {json.loads((p / "status.json").read_text())["name"]: p
            for p in res.iterdir() if not p.name.startswith(".")}
    failed = json.loads((runs["corrupt-data"] / "status.json").read_text())
    assert failed["status"] == "failed" and "corrupt.npz" in failed["error"]
    assert (runs["corrupt-data"] / "train.ipynb").is_file()
    # the failure did not stop the next set
    assert json.loads((runs["smoke"] / "status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_task_checkpoints_on_sigusr1_and_resumes(tmp_path, in_root):
    """Preemption without a cluster: the array task gets SIGUSR1 mid-training (as from
    #SBATCH --signal=B:USR1@120 via the batch script), exits 75 leaving a checkpoint in
    results/.running-<job_id>/, and the same task started again resumes and completes."""
    res = tmp_path / "results"
    params = tmp_path / "long.yaml"
    values = yaml.safe_load(SMOKE.read_text())
    values.update(name="long", train_sequences=96, checkpoint_every=2, batch_size=4)
    params.write_text(yaml.safe_dump(values))
    env = dict(os.environ, SLURM_ARRAY_JOB_ID="4242", SLURM_ARRAY_TASK_ID="0", SLURM_JOB_ID="4243")
    cmd = [sys.executable, "-m", "nowcast", "task", str(params), str(res)]
    running = res / ".running-4242_0"
    task = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.time() + 600  # a safety net, not a speed requirement
        while not (running / "checkpoint.pt").exists():
            assert task.poll() is None, task.stdout.read()
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.5)
        task.send_signal(signal.SIGUSR1)
        out, _ = task.communicate(timeout=600)
    finally:
        if task.poll() is None:
            task.kill()
    assert task.returncode == EXIT_REQUEUE, out
    assert (running / "checkpoint.pt").is_file()
    assert json.loads((running / "status.json").read_text())["status"] == "preempted"
    assert not (res / "4242_0").exists()

    again = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    status = json.loads((res / "4242_0" / "status.json").read_text())
    assert status["status"] == "completed" and status["attempts"] == 2
    assert (res / "4242_0" / "train.ipynb").is_file()


def test_run_local_resumes_a_killed_or_stopped_run_of_the_same_params(tmp_path, monkeypatch, capsys):
    """Issue 37: `nowcast run` after kill -9 started a new folder from step 0 and left the old
    one stale for ever. The same command finds the in-progress folder of the same params that
    no live process holds, and resumes it; one a live process holds is left alone."""
    res = tmp_path / "results"
    cfg = load_config(SMOKE, [f"results_dir={res}"])
    killed = res / ".running-20261202-010101-abcdef12"
    killed.mkdir(parents=True)
    (killed / "params.yaml").write_text(to_yaml(cfg))
    (killed / "status.json").write_text(json.dumps({"status": "running"}))
    (killed / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 7,
                                               "pid_started": 1.0}))  # kill -9: a dead holder
    ids = []
    monkeypatch.setattr(local, "run_one", lambda ps, job_id=None, **k: ids.append(job_id) or ("completed", None))
    assert local.run_local([str(SMOKE)], str(res), []) == 0
    assert ids == ["20261202-010101-abcdef12"]
    assert "resuming its stopped run 20261202-010101-abcdef12" in capsys.readouterr().out
    # other params: a new run; a folder held by a live process (this one): a new run too
    assert local.run_local([str(SMOKE)], str(res), ["seed=1"]) == 0 and ids[-1] is None
    (killed / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    assert local.run_local([str(SMOKE)], str(res), []) == 0 and ids[-1] is None


def test_the_stop_hint_of_run_is_the_same_command_quoted():
    command = local.run_command(["params/a b.yaml"], "my results", ["hidden_sizes=[4, 4]", "name=$(x)"])
    assert command == ("nowcast run 'params/a b.yaml' --results 'my results' --set "
                       "'hidden_sizes=[4, 4]' --set 'name=$(x)'")
    assert shlex.split(command)[2:] == ["params/a b.yaml", "--results", "my results", "--set",
                                        "hidden_sizes=[4, 4]", "--set", "name=$(x)"]


def test_a_plan_line_starts_a_line_of_its_own_on_a_terminal():
    """make demo printed 'modelnowcast: demo-filter-3: ...': the plan line glued to the
    watcher's progress line drawn in place."""
    from nowcast.progress import CLEAR_LINE, own_line

    class Tty:
        def isatty(self):
            return True
    assert own_line("nowcast: x: 8 steps", Tty()) == f"\r{CLEAR_LINE}nowcast: x: 8 steps"
    assert own_line("nowcast: x: 8 steps", object()) == "nowcast: x: 8 steps"


def test_a_refused_submission_is_one_line_and_leaves_no_sweep_folder(tmp_path, monkeypatch):
    """Issue 56 item 19: `sweep --partition nosuch` printed sbatch's two lines and left an
    unsubmitted .sweeps/<stamp>/ behind."""
    from types import SimpleNamespace
    from nowcast.errors import NowcastError
    from nowcast.launch import slurm
    monkeypatch.setattr(slurm.shutil, "which", lambda name: "/usr/bin/sbatch")
    monkeypatch.setattr(slurm.subprocess, "run", lambda *a, **k: SimpleNamespace(
        returncode=1, stdout="", stderr="sbatch: error: invalid partition specified: nosuch\n"
                                        "sbatch: error: Batch job submission failed\n"))
    with pytest.raises(NowcastError) as err:
        slurm.submit_sweep([str(SMOKE)], results_dir=str(tmp_path / "r"),
                           partition="nosuch")
    assert str(err.value) == ("sbatch failed: sbatch: error: invalid partition specified: nosuch / "
                              "sbatch: error: Batch job submission failed")
    assert not list((tmp_path / "r").glob(".sweeps/*"))


def test_a_grid_too_large_is_refused_before_any_point_is_validated(tmp_path, monkeypatch):
    """Issue 56 item 20: a grid of 90,000 points validated for minutes in silence, and no sweep
    compared its tasks with SLURM's MaxArraySize."""
    from nowcast.errors import NowcastError
    from nowcast.launch import params, slurm
    grid = tmp_path / "big.yaml"
    grid.write_text(f"base: {SMOKE}\naxes: {{seed: {list(range(300))}, filter_size: {list(range(300))}}}\n")
    monkeypatch.setattr(params, "load_config", lambda *a, **k: pytest.fail("validated"))
    with pytest.raises(NowcastError, match="90,000 grid points; at most 10,000"):
        params.collect([grid])
    small = tmp_path / "small.yaml"
    small.write_text(f"base: {SMOKE}\naxes: {{seed: [0, 1, 2]}}\n")
    assert params.grid_size(small) == 3 and params.grid_size(SMOKE) == 1
    with pytest.raises(NowcastError, match="4 params sets: this cluster's MaxArraySize is 3"):
        slurm.check_array_size([str(small), str(SMOKE)], 3)
    slurm.check_array_size([str(small), str(SMOKE)], 4)
    monkeypatch.setattr(slurm.subprocess, "run", lambda *a, **k: type(
        "Done", (), {"stdout": "MaxJobCount = 10000\nMaxArraySize = 1001\n"})())
    assert slurm.max_array_size() == 1001
