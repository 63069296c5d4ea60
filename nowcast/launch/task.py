"""One SLURM array task (`nowcast task`, from experiments/slurm/train_array.sbatch): its params
set through papermill (local.run_one), or with several processes started by srun (`run_ranks`:
rank 0 runs the notebook, the others train beside it as `rank_worker`s; docs/multi_gpu.md).
The exit status tells the batch script what to do: 0, errors.EXIT_REQUEUE (requeue me),
errors.EXIT_STOPPED (resumable, not requeued) or 1.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .. import jobenv, results
from ..config import Config
from ..errors import EXIT_REQUEUE, EXIT_STOPPED, NowcastError, RunStopped, described
from ..experiment import run_experiment
from ..paths import JobPaths
from ..stopping import install_preemption_handler
from .local import SignalForwarder, fail_unmarked, run_one
from .params import ParamsSet, collect
from .slurm import Launch, hostnames_command, master_port, rank_env, srun_command


def task_main(params: str, results_dir: Optional[str] = None, launch: Optional[Launch] = None,
              rendezvous: Optional[str] = None) -> int:
    """One SLURM array task: run one params file; exit EXIT_REQUEUE to ask for a requeue (SLURM's
    warning signal), EXIT_STOPPED when cancelled (SIGTERM) or otherwise stopped for good.

    launch with several processes: start them with srun (run_ranks). rendezvous (HOST:PORT):
    this process is one of them; rank 0 runs the notebook, the others train beside it."""
    sets = collect([params], results_dir=results_dir)
    if len(sets) != 1:
        raise NowcastError(f"{params}: an array task runs one params set, got {len(sets)}")
    if rendezvous is not None:
        timeout_s = (launch or Launch()).timeout_s
        os.environ.update(rank_env(os.environ, rendezvous))  # the kernel inherits them
        if os.environ["RANK"] != "0":
            return rank_worker(sets[0], timeout_s)
        status, path = run_one(sets[0], progress=True, collective_timeout_s=timeout_s)
        return {"completed": 0, "preempted": EXIT_REQUEUE}.get(status, 1)  # the launcher decides
    if launch is not None and launch.processes > 1:
        status, path = run_ranks(sets[0], params, results_dir, launch)
    else:
        status, path = run_one(sets[0], progress=True)  # plain progress lines in the task's log
    reason = results.stop_reason(path) if status == "preempted" else None
    if status == "preempted" and reason != "preemption":
        # scancel (SIGTERM), Ctrl-C or a checkpoint that could not be written: resumable, but
        # stopped for good (a resubmission with this job id resumes it)
        print(f"nowcast: stopped ({reason}), not requeued; to resume: "
              f"nowcast sweep {params} --set job_id={JobPaths(path).job_id}", flush=True)
        return EXIT_STOPPED
    return {"completed": 0, "preempted": EXIT_REQUEUE}.get(status, 1)


# --------------------------------------------------------------------------------------------
# several processes per task (srun)
# --------------------------------------------------------------------------------------------

def run_ranks(ps: ParamsSet, params: str, results_dir: Optional[str], launch: Launch) -> tuple[str, Path]:
    """Start the task's processes with srun, one SLURM task each, and wait; this task's signals
    go to srun, which passes them on to every rank. The outcome is what the results folder
    says (rank 0 writes it), whatever the ranks' exit statuses."""
    ids = jobenv.slurm(keys=("job_id", "restart_count", "nodelist", "cpus_per_task"))
    job, restart = ids.get("job_id"), ids.get("restart_count", "0")
    if not job:
        raise NowcastError("several processes per task need SLURM (srun); here, use "
                           "torchrun --nproc_per_node N -m nowcast train")
    job_id = results.resolve_job_id(ps.cfg)
    results.ensure_new(ps.cfg.results_dir, job_id)
    rendezvous = f"{_first_host(ids.get('nodelist', ''))}:{master_port(job, restart)}"
    rank = [sys.executable, "-m", "nowcast", "task", params, *([results_dir] if results_dir else []),
            "--rendezvous", rendezvous, "--collective-timeout", f"{launch.timeout_s:g}"]
    cpus = ids.get("cpus_per_task")
    argv = srun_command(launch, rank, int(cpus) if cpus and cpus.isdigit() else None)
    print(f"nowcast: {ps.source} -> {Path(ps.cfg.results_dir) / job_id} on {launch.processes} "
          f"processes\n+ {shlex.join(argv)}", flush=True)
    with SignalForwarder():
        code = subprocess.Popen(argv).wait()
    return _ranks_outcome(ps.cfg, job_id, code)


def _first_host(nodelist: str) -> str:
    """MASTER_ADDR: the first host of the job's nodes (scontrol expands host[1-4] lists)."""
    try:
        done = subprocess.run(hostnames_command(nodelist), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise NowcastError(f"scontrol show hostnames {nodelist!r}: {e}") from None
    hosts = done.stdout.split()
    if done.returncode != 0 or not hosts:
        raise NowcastError(f"scontrol show hostnames {nodelist!r}: {done.stderr.strip() or 'no hosts'}")
    return hosts[0]


def _ranks_outcome(cfg: Config, job_id: str, code: int) -> tuple[str, Path]:
    """(status, folder) once srun has ended: the folder rank 0 left, failed here when no rank
    recorded an end (a rank killed, rank 0 among them)."""
    root = Path(cfg.results_dir)
    running, final = JobPaths.running(root, job_id).folder, JobPaths.completed(root, job_id).folder
    for folder in (final, running):
        run = results.read_run(folder) if folder.is_dir() else None
        if run is not None and run.status in ("completed", "failed", "preempted"):
            return run.status, folder
    why = f"the ranks ended (srun exit status {code}) without recording an end"
    path = fail_unmarked(cfg, job_id, why)
    error = why if path is None else results.read_run(path).error
    print(f"nowcast: FAILED {path or running}: {error}", file=sys.stderr, flush=True)
    return "failed", path or running


def rank_worker(ps: ParamsSet, timeout_s: float) -> int:
    """A rank > 0 of a task: trains beside rank 0, which runs the notebook and writes the
    folder; a failure is written to rank-<k>.error there (run_experiment) and ends the others
    within the collective timeout. Exits as rank 0 does (0, EXIT_REQUEUE, EXIT_STOPPED, 1)."""
    cfg = dataclasses.replace(ps.cfg, job_id=results.resolve_job_id(ps.cfg))
    install_preemption_handler()
    try:
        run_experiment(cfg, finalize=False, progress=False, collective_timeout_s=timeout_s)
    except RunStopped as e:
        return EXIT_REQUEUE if e.reason == "preemption" else EXIT_STOPPED
    except KeyboardInterrupt:
        return EXIT_STOPPED
    except Exception as e:  # noqa: BLE001 (recorded in the folder; one line in the log)
        print(f"nowcast: rank {os.environ.get('RANK')}: {described(e)}",
              file=sys.stderr, flush=True)
        return 1
    return 0
