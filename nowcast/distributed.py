"""Data-parallel processes: joining the process group, which rank this is, and what keeps the
ranks of one run together: the same stop step, the same end, and each rank's error in the folder.

A launcher describes the processes with torch's env:// variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT): torchrun (`torchrun --nproc_per_node N -m nowcast
train`), or `nowcast task --rendezvous` under srun, which maps SLURM's ids onto them
(launch.slurm.rank_env). The backend is NCCL on GPUs, gloo on CPUs (docs/multi_gpu.md).

- Collectives time out after `timeout_s` (`--collective-timeout`; default DEFAULT_TIMEOUT_S): a
  rank that fails or hangs ends its peers' wait, not the job's time limit.
- A stop signal reaches every rank at a slightly different moment; `strongest_signal` makes them
  stop at the same step (an all-reduce at every step boundary; the strongest signal wins), and
  `rank0_flag` gives every rank rank 0's time-budget decision.
- `end_together`: ranks > 0 wait (gloo, no short timeout) until rank 0 has written the folder,
  so that no rank leaves while rank 0 still writes (srun --kill-on-bad-exit ends the others
  when one exits with an error); rank 0 waits for the others at most END_WAIT_FACTOR timeouts.
- `write_rank_error`: a failing rank writes rank-<k>.error (its traceback) into the running
  folder; `rank_failure` is the one line status.json says: the first failing rank > 0 first.
"""

from __future__ import annotations

import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from .errors import NowcastError, described, first_line
from .limits import DEFAULT_TIMEOUT_S, collective_timeout
from .paths import JobPaths
from .stopping import STRENGTH

END_WAIT = timedelta(days=7)  # ranks > 0 wait this long for rank 0 (its outputs take what they take)
END_WAIT_FACTOR = 2           # rank 0 waits 2 timeouts + END_SLACK_S for ranks stuck in a collective
END_SLACK_S = 30.0


class _Groups:
    """The side groups of this process's process group (set by init_distributed)."""
    vote: Any = None   # gloo, the collective timeout: stop votes, the budget flag (None: default)
    end: Any = None    # gloo, END_WAIT: the end of a run
    timeout_s: float = DEFAULT_TIMEOUT_S


def init_distributed(device_type: str, timeout_s: Optional[float] = None) -> bool:
    """Join the process group torchrun / srun describe (WORLD_SIZE > 1); NCCL on GPU, gloo on CPU.
    Collectives time out after timeout_s (collective_timeout: default DEFAULT_TIMEOUT_S)."""
    timeout_s = collective_timeout(timeout_s)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    _Groups.timeout_s = timeout_s
    timeout = timedelta(seconds=_Groups.timeout_s)
    nccl = device_type == "cuda"
    if nccl:  # a timed-out collective raises in the rank instead of killing it unannounced
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
    dist.init_process_group(backend="nccl" if nccl else "gloo", timeout=timeout)
    _Groups.vote = dist.new_group(backend="gloo", timeout=timeout) if nccl else None
    _Groups.end = dist.new_group(backend="gloo", timeout=END_WAIT)
    return True


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def end_together() -> Optional[str]:
    """Every rank's last collective, then the process group is left. Ranks > 0 wait for rank 0
    (END_WAIT); rank 0 waits for the others at most END_WAIT_FACTOR timeouts + END_SLACK_S (a
    rank stuck in a collective needs one timeout to get here). Returns None, or one line
    naming what went wrong (the run's outcome is already recorded: never raises)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    problem = None
    try:
        if dist.get_rank() == 0:
            wait = timedelta(seconds=END_WAIT_FACTOR * _Groups.timeout_s + END_SLACK_S)
            dist.monitored_barrier(group=_Groups.end, timeout=wait, wait_all_ranks=True)
        else:
            dist.monitored_barrier(group=_Groups.end)
    except RuntimeError as e:
        problem = first_line(e)
    try:
        dist.destroy_process_group()
    except RuntimeError:
        pass
    _Groups.vote = _Groups.end = None
    return problem


# --------------------------------------------------------------------------------------------
# stopping at the same step
# --------------------------------------------------------------------------------------------

def strongest_signal(local: Optional[int]) -> Optional[int]:
    """The stop signal to act on at this step boundary: the strongest (stopping.STRENGTH) that
    any rank noted, None for none. Every rank calls it at the same step (an all-reduce on the
    CPU: no device synchronisation), so all of them stop at the same step."""
    vote = torch.tensor([STRENGTH.get(local, 0)], dtype=torch.int32)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX, group=_Groups.vote)
    return next((s for s, v in STRENGTH.items() if v == int(vote.item())), None)


def rank0_flag(flag: bool) -> bool:
    """Rank 0's `flag` on every rank (a broadcast on the CPU: no device synchronisation)."""
    value = torch.tensor([int(flag)], dtype=torch.int32)
    dist.broadcast(value, src=0, group=_Groups.vote)
    return bool(value.item())


# --------------------------------------------------------------------------------------------
# each rank's error
# --------------------------------------------------------------------------------------------

def write_rank_error(run_dir: Path, rank: int, error: BaseException) -> None:
    """rank-<k>.error in the running folder: the rank's traceback. Never creates the folder
    (rank 0 may have renamed it already) and never raises: the error itself is what matters."""
    path = JobPaths(run_dir).rank_error(rank)
    text = f"rank {rank} on {os.uname().nodename}:\n" + "".join(traceback.format_exception(error))
    try:
        if Path(run_dir).is_dir():
            path.write_text(text)
    except OSError as e:
        print(f"nowcast: rank {rank}: could not write {path}: {e}", file=sys.stderr)


def rank_errors(run_dir: Path) -> dict[int, str]:
    """{rank: the last line of its traceback (the exception)} of the ranks > 0 that wrote one."""
    found: dict[int, str] = {}
    prefix, suffix = JobPaths.RANK_ERROR.split("{rank}")
    for path in JobPaths(run_dir).rank_errors():
        rank = path.name[len(prefix):-len(suffix)]
        lines = [line for line in _read(path).splitlines() if line.strip()]
        if rank.isdigit() and int(rank) > 0 and lines:
            found[int(rank)] = lines[-1].strip()
    return found


def rank_failure(run_dir: Path, error: BaseException | str) -> BaseException | str:
    """What status.json says of a failed run with several ranks: a rank > 0's own error first
    (rank 0 then usually only timed out waiting for it), rank 0's after it; error itself when
    no other rank wrote one."""
    others = rank_errors(run_dir)
    if not others:
        return error
    own = first_line(error) if isinstance(error, str) else described(error)
    first = min(others)
    pattern = JobPaths.RANK_ERROR.format(rank="*")
    more = f"; {len(others) - 1} more rank error(s) in {pattern}" if len(others) > 1 else ""
    return f"rank {first} failed: {others[first]} (rank 0: {own}){more}"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def synchronised_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Under several processes, BatchNorm layers (SimVP's translators) as SyncBatchNorm: the
    statistics of the whole global batch, as one process computes them, so that a data-parallel
    run keeps the single-process loss curve. torch synchronises them on GPUs only: on CPU
    processes a model with BatchNorm is refused in one line."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    if device.type != "cuda":
        raise NowcastError(f"{type(model).__name__} normalises with BatchNorm, which torch "
                           f"synchronises across processes on GPUs only: train it in one CPU "
                           f"process (or on GPUs)")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def loss_rows(losses: list[torch.Tensor], end_step: int, stage_index: int, world: int) -> list[dict]:
    """Batch losses to host once per validation/checkpoint (no per-step synchronisation)."""
    if not losses:
        return []
    values = torch.stack(losses).float()
    if world > 1:  # the global batch's loss is the mean over processes' equal shards
        dist.all_reduce(values)
        values /= world
    first = end_step - len(losses)
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        raise NowcastError(f"training diverged: the loss is {float(values[bad[0, 0]])} at step "
                           f"{first + int(bad[0, 0]) + 1} (try a lower initial_lr or grad_clip)")
    return [{"step": first + i + 1, "stage": stage_index, "loss": float(v)}
            for i, v in enumerate(values.cpu())]
