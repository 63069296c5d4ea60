"""`nowcast sweep`: one SLURM array task per params set, then the report job.

As in submitit, the sbatch command lines are built by pure functions from a `SweepSpec`
(`array_command`, `report_command`: no I/O, no environment), and `submit_sweep` does the rest:
validates the sets, writes the sweep folder (results/.sweeps/<time>/: one params file per task,
the list the array script reads, logs, jobs.yaml) and runs the commands. Several processes per
task (`Launch`: --gpus-per-task / --procs-per-task, --nodes): the task starts them with the srun
line of `srun_command`, each rank's torch variables from `rank_env` (docs/multi_gpu.md).
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
from typing import Mapping, Optional

import yaml

from .. import results
from ..jobenv import SLURM_VARS, task_key
from ..errors import NowcastError, one_line
from ..limits import DEFAULT_TIMEOUT_S, collective_timeout
from ..util import repo_file, write_text
from .params import ParamsSet, collect, grid_size
from .queue import DRY_RUN_ID, SWEEPS

SLURM_DIR = Path("experiments/slurm")
OURS = ("SBATCH_GPUS_PER_TASK", "SBATCH_NODES")  # read by sweep_launch, kept from sbatch itself
MASTER_PORTS = (20000, 10000)  # MASTER_PORT: 20000 + a number from the job id, below Linux's
                               # ephemeral ports (32768-60999)


@dataclass(frozen=True)
class Launch:
    """The processes one array task trains with (docs/multi_gpu.md): `per_node` on each of
    `nodes` nodes, one srun task each, one GPU each (`gpus`: NCCL; `gpu_type` e.g. a100) or CPU
    processes (gloo); collectives time out after `timeout_s`. Not in the params: the same
    run on more processes has the same params (and the same loss curve)."""
    per_node: int = 1
    nodes: int = 1
    gpus: bool = False
    gpu_type: Optional[str] = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def processes(self) -> int:
        return self.per_node * self.nodes

    def sbatch_options(self) -> list[str]:
        """Nodes, one SLURM task per process, and GPUs per node (or none)."""
        gpu = f"gpu:{self.gpu_type}:{self.per_node}" if self.gpu_type else f"gpu:{self.per_node}"
        return [f"--nodes={self.nodes}", f"--ntasks-per-node={self.per_node}",
                f"--gres={gpu}" if self.gpus else "--gres=none"]

    def task_args(self) -> list[str]:
        """What `nowcast task` is told (the array script passes them on)."""
        return ["--procs-per-node", str(self.per_node), "--nodes", str(self.nodes),
                "--collective-timeout", f"{self.timeout_s:g}"]




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
    launch: Optional[Launch] = None  # several processes per task (else one, as the header says)


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
    if spec.launch is not None:
        argv += spec.launch.sbatch_options()
    elif spec.gpus is not None:
        argv.append("--gres=none" if str(spec.gpus) in ("0", "none") else f"--gres=gpu:{spec.gpus}")
    if spec.cpus is not None:
        argv.append(f"--cpus-per-task={spec.cpus}")  # per process
    return argv + [*spec.sbatch_args, f"--export=ALL,NOWCAST_PYTHON={spec.python}",
                   str(spec.train_script), str(spec.list_file),
                   *(spec.launch.task_args() if spec.launch is not None else [])]


def report_command(spec: SweepSpec, array_id: str) -> list[str]:
    """The sbatch argv of the report job: after every array task has ended, in any state; the
    job is removed if the array never existed."""
    return ["sbatch", "--parsable", f"--dependency=afterany:{array_id}", "--kill-on-invalid-dep=yes",
            *_common(spec), f"--output={spec.sweep_dir}/logs/report-%j.out",
            f"--export=ALL,NOWCAST_PYTHON={spec.python}", str(spec.report_script), spec.results_dir]


# --------------------------------------------------------------------------------------------
# several processes per task: srun, one task per process (docs/multi_gpu.md)
# --------------------------------------------------------------------------------------------

def sweep_launch(gpus_per_task: Optional[str] = None, procs_per_task: Optional[int] = None,
                 nodes: Optional[int] = None, timeout_s: Optional[float] = None,
                 env: Mapping[str, str] = {}) -> Optional[Launch]:  # noqa: B006 (read only)
    """The Launch of `nowcast sweep --gpus-per-task N|TYPE:N | --procs-per-task N [--nodes M]`;
    SBATCH_GPUS_PER_TASK and SBATCH_NODES in env stand in for options not given. None: one
    process per task, as before."""
    if gpus_per_task is not None and procs_per_task is not None:
        raise NowcastError("--gpus-per-task and --procs-per-task exclude each other")
    if procs_per_task is None:
        gpus_per_task = gpus_per_task or env.get("SBATCH_GPUS_PER_TASK") or None
    nodes_given = nodes if nodes is not None else env.get("SBATCH_NODES") or None
    if gpus_per_task is None and procs_per_task is None:
        if nodes_given is not None:
            raise NowcastError("--nodes needs --gpus-per-task N or --procs-per-task N (processes per node)")
        return None
    if gpus_per_task is not None:
        gpu_type, _, count = str(gpus_per_task).rpartition(":")  # N or TYPE:N
    else:
        gpu_type, count = "", procs_per_task
    per_node, nodes_n = _positive(count, "processes per node"), _positive(nodes_given or 1, "--nodes")
    return Launch(per_node, nodes_n, gpus=gpus_per_task is not None, gpu_type=gpu_type or None,
                  timeout_s=collective_timeout(timeout_s))


def _positive(value, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise NowcastError(f"{what}: a whole number of at least 1, got {value!r}")
    return number


def sbatch_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment sbatch runs in: without the variables sweep_launch reads in its own sense
    (sbatch would take SBATCH_GPUS_PER_TASK as GPUs per process, on top of --gres)."""
    return {k: v for k, v in env.items() if k not in OURS}


def srun_command(launch: Launch, rank_argv: list[str], cpus: Optional[int] = None) -> list[str]:
    """The srun argv that starts the ranks of one task, one SLURM task per process. srun passes
    the task's signals on to every rank; --kill-on-bad-exit ends the others when a rank exits
    with an error (a rank leaves only after rank 0 has written the folder: end_together)."""
    return ["srun", f"--nodes={launch.nodes}", f"--ntasks-per-node={launch.per_node}",
            *([f"--cpus-per-task={cpus}"] if cpus else []),  # Slurm 22.05: not inherited
            "--kill-on-bad-exit=1", "--label", *rank_argv]


def hostnames_command(nodelist: str) -> list[str]:
    """The hosts of SLURM_JOB_NODELIST, one a line; the first is MASTER_ADDR."""
    return ["scontrol", "show", "hostnames", nodelist]


def master_port(job_id: str, restart: str | int = 0) -> int:
    """MASTER_PORT from the job id (the same for every rank; a requeued run takes the next)."""
    first, span = MASTER_PORTS
    return first + (int(job_id) + 7919 * int(restart or 0)) % span


def rank_env(env: Mapping[str, str], rendezvous: str) -> dict[str, str]:
    """torch's env:// variables of one srun task, from SLURM's (SLURM_PROCID, SLURM_NTASKS,
    SLURM_LOCALID) and the rendezvous HOST:PORT."""
    names = {ours: SLURM_VARS[ours] for ours in ("procid", "ntasks", "localid")}
    missing = [var for var in names.values() if var not in env]
    if missing:
        raise NowcastError(f"nowcast task --rendezvous runs under srun: {', '.join(missing)} not set")
    host, _, port = rendezvous.rpartition(":")
    return {"RANK": env[names["procid"]], "WORLD_SIZE": env[names["ntasks"]],
            "LOCAL_RANK": env[names["localid"]], "MASTER_ADDR": host, "MASTER_PORT": port}


def _run_sbatch(argv: list[str], dry_run: bool) -> str:
    """Print and run one sbatch command; its job id."""
    print("+ " + shlex.join(argv), flush=True)
    if dry_run:
        return DRY_RUN_ID
    done = subprocess.run(argv, capture_output=True, text=True, env=sbatch_env(os.environ))
    if done.returncode != 0:  # sbatch's lines joined: one line, as every nowcast error
        said = " / ".join(line.strip() for line in (done.stderr or done.stdout).splitlines()
                          if line.strip())
        raise NowcastError(f"sbatch failed: {one_line(said) or f'exit status {done.returncode}'}")
    return done.stdout.strip().split(";")[0]  # --parsable: 'jobid[;cluster]'


def _new_sweep_dir(results_dir: str, logs: bool = True) -> Path:
    """results/.sweeps/<stamp>/ with params/ and, for a real submission, logs/ (sbatch writes
    there; a dry run submits nothing and gets none)."""
    stamp = _time.strftime("%Y%m%d-%H%M%S")
    sweep, n = Path(results_dir) / SWEEPS / stamp, 1
    while sweep.exists():
        n += 1
        sweep = Path(results_dir) / SWEEPS / f"{stamp}-{n}"
    (sweep / "params").mkdir(parents=True)
    if logs:
        (sweep / "logs").mkdir()
    return sweep


def _write_params(sweep: Path, sets: list[ParamsSet]) -> Path:
    """One params file per task and the list the array script reads; the list file."""
    listed = []
    for i, ps in enumerate(sets):
        # Each task gets exactly what was validated: the set's values, overrides applied
        # (results_dir included), so that the task needs nothing else.
        file = sweep / "params" / f"{i:03d}-{_safe(ps.cfg.name or 'run')}.yaml"
        # the source as one escaped line: a file name with a newline could write YAML here
        write_text(file, f"# {one_line(ps.source)}\n" + yaml.safe_dump(ps.values, sort_keys=False))
        listed.append(str(file))
    return write_text(sweep / "params.txt", "\n".join(listed) + "\n")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name)[:80]


def submit_sweep(params_paths: list[str], results_dir: Optional[str] = None, partition: Optional[str] = None,
                 gpus: Optional[str] = None, time: Optional[str] = None, account: Optional[str] = None,
                 dry_run: bool = False, overrides: list[str] = (), report: bool = True,
                 cpus: Optional[int] = None, sbatch_args: list[str] = (), force: bool = False,
                 gpus_per_task: Optional[str] = None, procs_per_task: Optional[int] = None,
                 nodes: Optional[int] = None, collective_timeout: Optional[float] = None) -> dict:
    """Submit one SLURM array task per params set, then the report job (afterany on the array).

    Options as in SweepSpec; gpus_per_task / procs_per_task / nodes / collective_timeout: the
    processes of each task (sweep_launch). results_dir, when given, replaces every set's own results_dir; the
    report job reads it (else the first set's). Every set is validated before anything is
    written or submitted. A set whose completed results exist with the same resolved params is
    skipped (force=True submits it again), so that a sweep can be resumed; with nothing left,
    nothing is submitted. Returns the job ids and files (also written to jobs.yaml).
    """
    launch = sweep_launch(gpus_per_task, procs_per_task, nodes, collective_timeout, os.environ)
    check_array_size(params_paths, None if dry_run else max_array_size())
    if launch is not None and gpus is not None:
        raise NowcastError("--gpus asks for one process per task: with --gpus-per-task or "
                           "--procs-per-task, leave it out")
    sets, skipped = skip_completed(collect(params_paths, overrides, results_dir), force)
    _check_divisible(sets, launch)
    if not sets:
        print(f"nowcast sweep: nothing to submit: all {len(skipped)} set"
              f"{'s' * (len(skipped) != 1)} completed (--force submits them again)")
        return {"array": None, "report": None, "sweep_dir": None, "list": None, "tasks": [],
                "skipped": skipped}
    if not dry_run and shutil.which("sbatch") is None:
        raise NowcastError("sbatch not found: nowcast sweep needs a SLURM login node "
                           "(or use `nowcast run` to run the sets here)")
    results_dir = results_dir or sets[0].cfg.results_dir
    if one_line(results_dir) != str(results_dir):  # one path a line in params.txt and sbatch
        raise NowcastError(f"results folder {one_line(results_dir)}: a newline or control "
                           f"character in it would split the task list; choose another name")
    sweep = _new_sweep_dir(results_dir, logs=not dry_run)
    spec = SweepSpec(
        tasks=len(sets), sweep_dir=sweep, list_file=_write_params(sweep, sets),
        results_dir=results_dir, workdir=os.getcwd(), python=sys.executable,
        train_script=repo_file(SLURM_DIR / "train_array.sbatch"),
        report_script=repo_file(SLURM_DIR / "report.sbatch"), partition=partition, gpus=gpus,
        time=time, account=account, cpus=cpus, sbatch_args=tuple(sbatch_args), launch=launch)
    try:
        array = _run_sbatch(array_command(spec), dry_run)
    except NowcastError:  # nothing was submitted: no sweep folder is left behind
        shutil.rmtree(sweep, ignore_errors=True)
        raise
    out = {"array": array, "report": None, "sweep_dir": str(sweep), "list": str(spec.list_file),
           "tasks": [{"index": i, "source": ps.source, "name": ps.cfg.name,
                      "job_id": ps.cfg.job_id or task_key(array, i)} for i, ps in enumerate(sets)],
           "skipped": skipped}
    if report:
        out["report"] = _run_sbatch(report_command(spec, array), dry_run)
    write_text(sweep / "jobs.yaml", yaml.safe_dump(out, sort_keys=False))
    _print_summary(out, sets)
    return out


def max_array_size() -> Optional[int]:
    """This cluster's MaxArraySize (`scontrol show config`: array indices run 0 to one less),
    None where scontrol cannot say."""
    try:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.M)
    return int(found.group(1)) if found else None


def check_array_size(params_paths: list[str], limit: Optional[int]) -> None:
    """One array task per set: refused before any set is validated when the sets outnumber
    the indices the cluster allows."""
    if limit is None:
        return
    n = sum(grid_size(p) for p in params_paths if Path(p).is_file())
    if n > limit:
        raise NowcastError(f"{n:,} params sets: this cluster's MaxArraySize is {limit:,} (array "
                           f"indices 0-{limit - 1:,}); submit them in parts")


def _check_divisible(sets: list[ParamsSet], launch: Optional[Launch]) -> None:
    """Each process trains on an equal share of the global batch: refused before submitting."""
    if launch is None:  # one process per task: any batch size divides
        return
    n = launch.processes
    for ps in sets:
        if ps.cfg.batch_size % n:
            raise NowcastError(f"{ps.source}: batch_size {ps.cfg.batch_size} is not divisible by "
                               f"the {n} processes of each task (processes per node x nodes)")


def _print_summary(out: dict, sets: list[ParamsSet]) -> None:
    n, k = len(sets), len(out["skipped"])
    print(f"nowcast sweep: array job {out['array']} ({n} task{'s' * (n != 1)}"
          f"{f'; {k} completed set' + 's' * (k != 1) + ' skipped' if k else ''}), "
          + (f"report job {out['report']}" if out["report"] else "no report job")
          + (f"; logs in {out['sweep_dir']}/logs" if Path(out["sweep_dir"], "logs").is_dir()
             else f"; dry run: commands and params in {out['sweep_dir']}"))
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
