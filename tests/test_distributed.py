"""The collectives that keep the ranks of one run together, run in two gloo processes on the
CPU (seconds): the strongest stop signal noted on any rank, and rank 0's time-budget flag."""

from __future__ import annotations

import multiprocessing
import signal
from datetime import timedelta

import pytest
import torch.distributed as dist

from nowcast import distributed
from nowcast.errors import NowcastError

# what each rank noted (None: nothing) -> what every rank must agree on
VOTES = [((None, None), None), ((signal.SIGUSR1, None), signal.SIGUSR1),
         ((None, signal.SIGINT), signal.SIGINT), ((signal.SIGTERM, signal.SIGUSR1), signal.SIGTERM),
         ((signal.SIGINT, signal.SIGTERM), signal.SIGTERM)]


def _rank(rank: int, store: str, out) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        agreed = [distributed.strongest_signal(noted[rank]) for noted, _ in VOTES]
        flags = [distributed.rank0_flag(bool(rank == 0) == late) for late in (True, False)]
        out.put((rank, agreed, flags))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_on_the_strongest_signal_and_rank_0s_budget(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, str(tmp_path / "store"), out)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    expected = [want for _, want in VOTES]
    # rank 0 says late, then not late; rank 1 says the opposite each time: rank 0 decides
    assert got == [(0, expected, [True, False]), (1, expected, [True, False])]


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "30"])
def test_collective_timeout_refuses_what_is_no_positive_number(value):
    with pytest.raises(NowcastError, match=r"^--collective-timeout must be a positive number"):
        distributed.collective_timeout(value)
    assert distributed.collective_timeout(None) == distributed.DEFAULT_TIMEOUT_S
    assert distributed.collective_timeout(2) == 2.0
