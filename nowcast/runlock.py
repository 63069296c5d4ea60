"""One writer per results folder: an exclusive lock file in results/.running-<job_id>/.

The lock is a file created with O_CREAT | O_EXCL (atomic on local filesystems and on NFS v3+,
the shared filesystems of clusters), holding who took it: host, pid (with its start time) and
SLURM ids (`jobenv.identity`). A second run with the same job id is refused with one line
naming the holder. A lock is stale, and taken over, when its holder is known to be gone: a dead
pid on this host, or an earlier run of this same SLURM job (a requeued job restarts with the
same job id and a higher restart count). Anything else, a live process or one on another host
that cannot be checked, holds the folder until results.complete_run / fail_run /
mark_preempted release it (or a person removes the file).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

from .errors import NowcastError
from .paths import JobPaths
from .jobenv import identity, process_alive


def _read(lock: Path) -> Optional[dict]:
    """The holder recorded in a lock file; {} for an unreadable one; None when there is none."""
    try:
        holder = json.loads(lock.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _gone(holder: dict, me: dict) -> bool:
    """Whether the holder is known to have ended (see the module text)."""
    if holder.get("host") == me["host"] and holder.get("pid") is not None:
        return not process_alive(holder.get("pid"), holder.get("pid_started"))
    theirs, mine = holder.get("slurm") or {}, me["slurm"]
    same_job = isinstance(theirs, dict) and mine.get("job_id") and theirs.get("job_id") == mine["job_id"]
    return bool(same_job) and theirs.get("restart_count", "0") != mine.get("restart_count", "0")


def describe(holder: dict) -> str:
    slurm = holder.get("slurm") if isinstance(holder.get("slurm"), dict) else {}
    job = f", SLURM job {slurm['job_id']}" if slurm.get("job_id") else ""
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{job}, "
            f"since {holder.get('since', '?')}")


def acquire(folder: Path) -> None:
    """Take the folder's lock, or raise NowcastError naming its holder."""
    lock, me = JobPaths(folder).lock, identity()
    record = dict(me, since=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    for _ in range(3):  # a stale lock is removed and the creation tried again
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(lock)
            if holder is None:
                continue  # released in between
            if not _gone(holder, me):
                raise NowcastError(f"{folder} is in use by {describe(holder)}: a run with this "
                                   f"job id is going on (if it is not, remove {lock})") from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return
    raise NowcastError(f"{lock}: could not take the lock (another run keeps taking it)")


def release(folder: Path) -> None:
    (JobPaths(folder).lock).unlink(missing_ok=True)


def holder(folder: Path) -> Optional[dict]:
    """Who else holds the folder's lock and may still be running; None when it is free, stale
    or held by this process."""
    found, me = _read(JobPaths(folder).lock), identity()
    if found is None or _gone(found, me):
        return None
    return None if (found.get("host"), found.get("pid")) == (me["host"], me["pid"]) else found
