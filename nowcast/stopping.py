"""Stop signals: SLURM's warning (SIGUSR1), a cancel (SIGTERM), Ctrl-C. A signal is only noted;
the training loop checks `requested()` at every step boundary, saves a checkpoint and raises
Preempted, whose `reason` status.json records as `stopped_by`. Under several processes a
launcher takes the signals over (`take_pending`, `handled`) and hands the agreed one back
(`request`) so that every rank stops at the same step (distributed.StopVote).
"""

from __future__ import annotations

import signal
from typing import Optional

from .errors import RunStopped

# What status.json's `stopped_by` says for each stop signal: only SLURM's warning signal
# (--signal=B:USR1@...) asks for a requeue; SIGTERM (scancel) and Ctrl-C stop for good.
STOP_REASONS = {signal.SIGUSR1: "preemption", signal.SIGTERM: "cancel", signal.SIGINT: "interrupt"}


class Preempted(RunStopped):
    """Raised after a checkpoint was saved because SLURM (or the user) asked the job to stop;
    `reason` says which signal asked (STOP_REASONS), "request" for none (stop_after_steps)."""

    def __init__(self, message: str, reason: Optional[str] = None):
        super().__init__(message, reason or STOP_REASONS.get(_stop_requested, "request"))


_stop_requested: Optional[int] = None  # the first stop signal received, None before any


def _request_stop(signum, frame):  # noqa: ARG001
    global _stop_requested
    if signum == signal.SIGINT and _stop_requested == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for a step
    if _stop_requested is None or signum != signal.SIGUSR1:  # a cancel outranks a warning
        _stop_requested = signum


def requested() -> Optional[int]:
    """The stop signal noted so far; None: none."""
    return _stop_requested


def take_pending() -> Optional[int]:
    """The stop signal received so far (None: none), cleared: a launcher that takes over the
    signals (distributed.StopVote) carries it on."""
    global _stop_requested
    pending, _stop_requested = _stop_requested, None
    return pending


def request(signum: int) -> None:
    """Stop at the next step boundary as if `signum` had been received here."""
    _request_stop(signum, None)


def handled() -> tuple[int, ...]:
    """The signals whose handler is the loop's own (install_preemption_handler)."""
    return tuple(s for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)
                 if signal.getsignal(s) is _request_stop)


def install_preemption_handler(interrupt: bool = False) -> None:
    """SIGUSR1 (SLURM's --signal warning) and SIGTERM: checkpoint at the next step, then stop.
    interrupt=True (`nowcast train` in a terminal): Ctrl-C too, and a second Ctrl-C at once."""
    for sig in (signal.SIGUSR1, signal.SIGTERM) + ((signal.SIGINT,) if interrupt else ()):
        signal.signal(sig, _request_stop)
