"""Who runs where (after submitit's JobEnvironment): the SLURM variables nowcast reads, named
once; the one rule for a job's key as squeue shows it ('<array>_<task>', else '<job>'); and
the identity of a process (host, pid and its start time, SLURM ids) with its liveness.

    slurm()                 {"job_id": "103", "array_job_id": "101", "array_task_id": "2", ...}
    job_key(slurm())        "101_2"  (results.resolve_job_id, progress records, squeue rows)
    identity()              what a progress record and a lock say of their writer

Imports nothing of nowcast: `nowcast status` reads records through it without torch.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping, Optional

from .errors import MissingDependency
from .util import optional_import

# our name -> SLURM's variable
SLURM_VARS = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "restart_count": "SLURM_RESTART_COUNT",  # a requeued job keeps its id; this counts up
    "partition": "SLURM_JOB_PARTITION",
    "nodelist": "SLURM_JOB_NODELIST",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "procid": "SLURM_PROCID",     # an srun task's rank, of ntasks, on its node localid
    "ntasks": "SLURM_NTASKS",
    "localid": "SLURM_LOCALID",
}
# what a writer's identity records (progress.json, the lock, env.json)
RECORDED = ("job_id", "array_job_id", "array_task_id", "restart_count", "partition", "nodelist")


def slurm(env: Optional[Mapping[str, str]] = None, keys=RECORDED) -> dict[str, str]:
    """The SLURM variables of `keys` that are set (env: os.environ), under our names."""
    env = os.environ if env is None else env
    return {k: env[SLURM_VARS[k]] for k in keys if env.get(SLURM_VARS[k])}


def task_key(array: Any, task: Any) -> str:
    """An array task as squeue's %i shows it."""
    return f"{array}_{task}"


def job_key(ids: Mapping[str, Any]) -> Optional[str]:
    """'<array>_<task>' for an array task, '<job>' for a plain job, None outside SLURM
    (ids: slurm()'s dict, or one read back from a record)."""
    if ids.get("array_job_id") and ids.get("array_task_id") is not None:
        return task_key(ids["array_job_id"], ids["array_task_id"])
    return str(ids["job_id"]) if ids.get("job_id") else None


def _psutil() -> Any:
    """psutil (ipykernel's own dependency) when installed, else None: only the pid-reuse
    check needs it."""
    try:
        return optional_import("psutil", "notebooks")
    except MissingDependency:
        return None


def process_started(pid: int) -> Optional[float]:
    """When process `pid` started (seconds since the epoch); None when unknown."""
    psutil = _psutil()
    try:
        return None if psutil is None else float(psutil.Process(pid).create_time())
    except Exception:  # psutil.Error: no such process, access denied
        return None


def process_alive(pid: Any, started: Any = None) -> bool:
    """Whether process `pid` runs on this host, and is the same process (started at `started`,
    when recorded: pids are reused)."""
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except (TypeError, ValueError, ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if isinstance(started, (int, float)):
        now_started = process_started(pid)
        return now_started is None or abs(now_started - started) < 1.0
    return True


def identity() -> dict:
    """Who writes a record: host, pid (with its start time) and SLURM ids."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "pid_started": process_started(os.getpid()), "slurm": slurm()}
