"""What SLURM says about our jobs (squeue) and which tasks earlier sweeps submitted (their
jobs.yaml): what `nowcast status` joins to the results folders. No torch, no model: a login
node answers at once.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional

import yaml

from .. import yamlio
from ..jobenv import task_key
from ..util import read_data_text

SWEEPS = ".sweeps"    # results/.sweeps/<stamp>/: params lists, expanded grid points, SLURM logs
DRY_RUN_ID = "DRYRUN"  # the array job id a dry run shows in the report job's dependency

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
        try:  # bounded as every file of a results root (size, nesting, no FIFO waited on)
            sweep = yamlio.load(read_data_text(jobs))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if not isinstance(sweep, dict) or sweep.get("array") in (None, DRY_RUN_ID):
            continue
        for task in sweep.get("tasks") or []:
            if isinstance(task, dict) and task.get("job_id"):
                tasks.append({"job_id": str(task["job_id"]), "name": str(task.get("name") or ""),
                              "source": str(task.get("source") or ""), "array": str(sweep["array"]),
                              "log": str(jobs.parent / "logs" / f"{task_key(sweep['array'], task.get('index'))}.out")})
    return tasks
