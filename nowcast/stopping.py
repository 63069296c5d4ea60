"""Stop signals: SLURM's warning (SIGUSR1), a cancel (SIGTERM), Ctrl-C. A signal is only noted;
the training loop checks `requested()` at every step boundary, saves a checkpoint and raises
Preempted, whose `reason` status.json records as `stopped_by`. Under several processes the
ranks agree on the STRONGEST signal noted on any of them at every step boundary
(distributed.strongest_signal), so that every rank stops at the same step.
"""

from __future__ import annotations

import signal
from typing import Optional

from .errors import RunStopped

# What status.json's `stopped_by` says for each stop signal: only SLURM's warning signal
# (--signal=B:USR1@...) asks for a requeue; SIGTERM (scancel) and Ctrl-C stop for good.
STOP_REASONS = {signal.SIGUSR1: "preemption", signal.SIGTERM: "cancel", signal.SIGINT: "interrupt"}

# Which signal wins when ranks noted different ones: a cancel outranks an interrupt, which
# outranks SLURM's warning (only the warning asks for a requeue).
STRENGTH = {signal.SIGUSR1: 1, signal.SIGINT: 2, signal.SIGTERM: 3}


class Preempted(RunStopped):
    """Raised after a checkpoint was saved because SLURM (or the user) asked the job to stop;
    `reason` says which signal asked (STOP_REASONS): `signum`, the one the ranks agreed on,
    else this process's own; "request" for none (stop_after_steps)."""

    def __init__(self, message: str, signum: Optional[int] = None):
        super().__init__(message, STOP_REASONS.get(signum or _stop_requested, "request"))


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


def install_preemption_handler(interrupt: bool = False) -> None:
    """SIGUSR1 (SLURM's --signal warning) and SIGTERM: checkpoint at the next step, then stop.
    interrupt=True (`nowcast train` in a terminal): Ctrl-C too, and a second Ctrl-C at once."""
    for sig in (signal.SIGUSR1, signal.SIGTERM) + ((signal.SIGINT,) if interrupt else ()):
        signal.signal(sig, _request_stop)


def stop_if_requested(where: str) -> None:
    """Between the phases after training (test scoring, outputs), where no step boundary
    checks: a stop signal noted so far stops the run there, resumable (the last checkpoint
    holds the finished training, so a resume goes straight back to scoring)."""
    if _stop_requested is not None:
        raise Preempted(f"stopped {where}; the training is in the last checkpoint and a resume "
                        f"scores it")
