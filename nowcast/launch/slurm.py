"""`nowcast sweep`: one SLURM array task per params set, then the report job.

As in submitit, the sbatch command lines are built by pure functions from a `SweepSpec`
(`array_command`, `report_command`: no I/O, no environment), and `submit_sweep` does the rest:
validates the sets, writes the sweep folder (results/.sweeps/<time>/: one params file per task,
the list the array script reads, logs, jobs.yaml) and runs the commands.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from .. import results
from ..errors import NowcastError
from ..util import repo_file, write_text
from .params import ParamsSet, collect

SLURM_DIR = Path("experiments/slurm")
SWEEPS = ".sweeps"    # results/.sweeps/<stamp>/: params lists, expanded grid points, SLURM logs
DRY_RUN_ID = "DRYRUN"  # the array job id a dry run shows in the report job's dependency


@dataclass(frozen=True)
class SweepSpec:
    """Everything the sbatch command lines depend on. Unset options fall back to sbatch's own
    environment variables (SBATCH_PARTITION, SBATCH_TIMELIMIT, SBATCH_ACCOUNT, SBATCH_GRES)
    and then to the script headers."""
    tasks: int                   # array tasks: one per params set
    sweep_dir: Path              # results/.sweeps/<stamp>/ (logs/ inside)
    list_file: Path              # one params file per line, line i+1 for task i
    results_dir: str             # what the report job reads
    workdir: str                 # where the jobs start (relative paths in the params)
    python: str                  # the interpreter the jobs run nowcast with
    train_script: Path           # experiments/slurm/train_array.sbatch
    report_script: Path          # experiments/slurm/report.sbatch
    partition: Optional[str] = None
    gpus: Optional[str] = None   # GPUs per task: '1', '2', 'a100:1'; '0' or 'none' requests none
    time: Optional[str] = None
    account: Optional[str] = None
    cpus: Optional[int] = None   # CPUs per task
    sbatch_args: tuple[str, ...] = ()  # further sbatch options, for the array only


def _common(spec: SweepSpec) -> list[str]:
    out = [f"--chdir={spec.workdir}"]
    out += [f"--partition={spec.partition}"] if spec.partition else []
    out += [f"--account={spec.account}"] if spec.account else []
    out += [f"--time={spec.time}"] if spec.time else []
    return out


def array_command(spec: SweepSpec) -> list[str]:
    """The sbatch argv of the training array."""
    argv = ["sbatch", "--parsable", f"--array=0-{spec.tasks - 1}", *_common(spec),
            f"--output={spec.sweep_dir}/logs/%A_%a.out"]
    if spec.gpus is not None:
        argv.append("--gres=none" if str(spec.gpus) in ("0", "none") else f"--gres=gpu:{spec.gpus}")
    if spec.cpus is not None:
        argv.append(f"--cpus-per-task={spec.cpus}")
    return argv + [*spec.sbatch_args, f"--export=ALL,NOWCAST_PYTHON={spec.python}",
                   str(spec.train_script), str(spec.list_file)]


def report_command(spec: SweepSpec, array_id: str) -> list[str]:
    """The sbatch argv of the report job: after every array task has ended, in any state; the
    job is removed if the array never existed."""
    return ["sbatch", "--parsable", f"--dependency=afterany:{array_id}", "--kill-on-invalid-dep=yes",
            *_common(spec), f"--output={spec.sweep_dir}/logs/report-%j.out",
            f"--export=ALL,NOWCAST_PYTHON={spec.python}", str(spec.report_script), spec.results_dir]


def _run_sbatch(argv: list[str], dry_run: bool) -> str:
    """Print and run one sbatch command; its job id."""
    print("+ " + shlex.join(argv), flush=True)
    if dry_run:
        return DRY_RUN_ID
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise NowcastError(f"sbatch failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip().split(";")[0]  # --parsable: 'jobid[;cluster]'


def _new_sweep_dir(results_dir: str) -> Path:
    stamp = _time.strftime("%Y%m%d-%H%M%S")
    sweep, n = Path(results_dir) / SWEEPS / stamp, 1
    while sweep.exists():
        n += 1
        sweep = Path(results_dir) / SWEEPS / f"{stamp}-{n}"
    (sweep / "logs").mkdir(parents=True)
    (sweep / "params").mkdir()
    return sweep


def _write_params(sweep: Path, sets: list[ParamsSet]) -> Path:
    """One params file per task and the list the array script reads; the list file."""
    listed = []
    for i, ps in enumerate(sets):
        # Each task gets exactly what was validated: the set's values, overrides applied
        # (results_dir included), so that the task needs nothing else.
        file = sweep / "params" / f"{i:03d}-{_safe(ps.cfg.name or 'run')}.yaml"
        write_text(file, f"# {ps.source}\n" + yaml.safe_dump(ps.values, sort_keys=False))
        listed.append(str(file))
    return write_text(sweep / "params.txt", "\n".join(listed) + "\n")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name)[:80]


def submit_sweep(params_paths: list[str], results_dir: Optional[str] = None, partition: Optional[str] = None,
                 gpus: Optional[str] = None, time: Optional[str] = None, account: Optional[str] = None,
                 dry_run: bool = False, overrides: list[str] = (), report: bool = True,
                 cpus: Optional[int] = None, sbatch_args: list[str] = (), force: bool = False) -> dict:
    """Submit one SLURM array task per params set, then the report job (afterany on the array).

    Options as in SweepSpec. results_dir, when given, replaces every set's own results_dir; the
    report job reads it (else the first set's). Every set is validated before anything is
    written or submitted. A set whose completed results exist with the same resolved params is
    skipped (force=True submits it again), so that a sweep can be resumed; with nothing left,
    nothing is submitted. Returns the job ids and files (also written to jobs.yaml).
    """
    sets, skipped = skip_completed(collect(params_paths, overrides, results_dir), force)
    if not sets:
        print(f"nowcast sweep: nothing to submit: all {len(skipped)} set"
              f"{'s' * (len(skipped) != 1)} completed (--force submits them again)")
        return {"array": None, "report": None, "sweep_dir": None, "list": None, "tasks": [],
                "skipped": skipped}
    if not dry_run and shutil.which("sbatch") is None:
        raise NowcastError("sbatch not found: nowcast sweep needs a SLURM login node "
                           "(or use `nowcast run` to run the sets here)")
    results_dir = results_dir or sets[0].cfg.results_dir
    sweep = _new_sweep_dir(results_dir)
    spec = SweepSpec(
        tasks=len(sets), sweep_dir=sweep, list_file=_write_params(sweep, sets),
        results_dir=results_dir, workdir=os.getcwd(), python=sys.executable,
        train_script=repo_file(SLURM_DIR / "train_array.sbatch"),
        report_script=repo_file(SLURM_DIR / "report.sbatch"), partition=partition, gpus=gpus,
        time=time, account=account, cpus=cpus, sbatch_args=tuple(sbatch_args))
    array = _run_sbatch(array_command(spec), dry_run)
    out = {"array": array, "report": None, "sweep_dir": str(sweep), "list": str(spec.list_file),
           "tasks": [{"index": i, "source": ps.source, "name": ps.cfg.name,
                      "job_id": ps.cfg.job_id or f"{array}_{i}"} for i, ps in enumerate(sets)],
           "skipped": skipped}
    if report:
        out["report"] = _run_sbatch(report_command(spec, array), dry_run)
    write_text(sweep / "jobs.yaml", yaml.safe_dump(out, sort_keys=False))
    _print_summary(out, sets)
    return out


def _print_summary(out: dict, sets: list[ParamsSet]) -> None:
    n, k = len(sets), len(out["skipped"])
    print(f"nowcast sweep: array job {out['array']} ({n} task{'s' * (n != 1)}"
          f"{f'; {k} completed set' + 's' * (k != 1) + ' skipped' if k else ''}), "
          f"report job {out['report']}; logs in {out['sweep_dir']}/logs")
    for task in out["tasks"]:
        print(f"  {sets[task['index']].cfg.results_dir}/{task['job_id']}  <- {task['source']}")


def skip_completed(sets: list[ParamsSet], force: bool = False) -> tuple[list[ParamsSet], list[dict]]:
    """The sets still to run, and those skipped because their completed results exist (each
    results folder read once); force: none skipped."""
    if force:
        return sets, []
    done: dict[str, dict] = {}
    todo, skipped = [], []
    for ps in sets:
        root = ps.cfg.results_dir
        if root not in done:
            done[root] = results.completed_by_params(root)
        path = done[root].get(results.params_hash(ps.cfg))
        if path is None:
            todo.append(ps)
            continue
        print(f"nowcast sweep: {ps.source}: skipped, completed in {path}", flush=True)
        skipped.append({"source": ps.source, "name": ps.cfg.name, "results": str(path)})
    return todo, skipped


# --------------------------------------------------------------------------------------------
# what is queued: squeue, and the tasks of earlier sweeps
# --------------------------------------------------------------------------------------------

QUEUE_FORMAT = "%i|%T|%r"  # job id (<array>_<task> for array tasks), state, reason
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"}  # listed for a while after the end
WAITING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD")


def squeue_command() -> list[str]:
    """Our jobs, one line per array task (-r), pending tasks included."""
    return ["squeue", "--me", "--noheader", "--array", "--format", QUEUE_FORMAT]


def parse_queue(text: str) -> dict[str, str]:
    """squeue's lines -> {job id: 'RUNNING' | 'PENDING (Resources)' | ...}, ended jobs left out."""
    queue: dict[str, str] = {}
    for row in text.splitlines():
        job, _, rest = row.strip().partition("|")
        state, _, reason = rest.partition("|")
        if not job or not state or state in ENDED:
            continue
        waiting = state in WAITING and reason and reason != "None"
        queue[job] = f"{state} ({reason})" if waiting else state
    return queue


def queue_states() -> Optional[dict[str, str]]:
    """Our queued and running jobs; None where squeue is absent or does not answer (then
    nothing can be said from the queue)."""
    if shutil.which("squeue") is None:
        return None
    try:
        done = subprocess.run(squeue_command(), capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_queue(done.stdout) if done.returncode == 0 else None


def waiting(queue_state: Optional[str]) -> bool:
    return bool(queue_state) and queue_state.split(" ")[0] in WAITING


def sweep_tasks(results_dir: str | Path) -> list[dict]:
    """Every task submitted by a sweep into results_dir (its jobs.yaml files, oldest first):
    {job_id, name, source, array, log}; dry runs left out."""
    tasks = []
    for jobs in sorted(Path(results_dir, SWEEPS).glob("*/jobs.yaml")):
        try:
            sweep = yaml.safe_load(jobs.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(sweep, dict) or sweep.get("array") in (None, DRY_RUN_ID):
            continue
        for task in sweep.get("tasks") or []:
            if isinstance(task, dict) and task.get("job_id"):
                tasks.append({"job_id": str(task["job_id"]), "name": str(task.get("name") or ""),
                              "source": str(task.get("source") or ""), "array": str(sweep["array"]),
                              "log": str(jobs.parent / "logs" / f"{sweep['array']}_{task.get('index')}.out")})
    return tasks
