"""Running params sets in this process: one set through papermill (`run_one`), several one after
another (`nowcast run`: `run_local`). A SLURM array task runs its set through `run_one` too
(launch/task.py).

A launched run ends up with its executed notebook inside its results folder: `run_one` picks the
job id, runs the notebook into results/.staging/<job_id>.ipynb with the notebook parameter
finalize=False, so that the notebook leaves the run in results/.running-<job_id>/, then moves
the executed notebook in and completes the run (or marks it failed).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Optional

from .. import jobenv, results, runlock
from ..config import Config
from ..distributed import rank_failure
from ..errors import NowcastError, described, first_line
from ..paths import JobPaths
from ..util import optional_import, repo_file
from .notebook import NOTEBOOK
from .params import ParamsSet, collect
from .watch import ProgressLines



# --------------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------------

class SignalForwarder:
    """While papermill runs, pass SIGUSR1/SIGTERM on to the kernel (our child processes), where
    training checkpoints and stops. Ctrl-C (SIGINT) is passed on as SIGTERM, so that an
    interrupted local run keeps its checkpoint too; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "SignalForwarder":
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        forward = signal.SIGTERM if signum == signal.SIGINT else signum
        name = signal.Signals(signum).name
        print(f"nowcast: {name} received: asking the run to checkpoint and stop", file=sys.stderr,
              flush=True)
        for pid in _children(os.getpid()):
            try:
                os.kill(pid, forward)
            except OSError:
                pass


def _children(pid: int) -> list[int]:
    psutil = optional_import("psutil", "notebooks")  # ipykernel's own dependency
    return [p.pid for p in psutil.Process(pid).children(recursive=False)]


# --------------------------------------------------------------------------------------------
# one set through papermill
# --------------------------------------------------------------------------------------------

def run_one(ps: ParamsSet, job_id: Optional[str] = None, progress: bool = True,
            collective_timeout_s: Optional[float] = None) -> tuple[str, Path]:
    """Run one params set through experiments/train.ipynb; returns (status, results folder).

    status: 'completed' | 'failed' | 'preempted' (the run waits in results/.running-<job_id>/).
    progress: a line with the run's training progress (watch.ProgressLines) instead of
    papermill's cell counter. collective_timeout_s: rank 0 of several processes (the notebook's
    parameter of that name).
    """
    pm = optional_import("papermill", "notebooks")
    cfg = ps.cfg
    job_id = job_id or results.resolve_job_id(cfg)
    root = Path(cfg.results_dir)
    results.ensure_new(root, job_id)
    staged = JobPaths.staged_notebook(root, job_id)
    staged.parent.mkdir(parents=True, exist_ok=True)
    parameters = dict(ps.values, job_id=job_id, results_dir=cfg.results_dir, finalize=False)
    if collective_timeout_s is not None:
        parameters["collective_timeout_s"] = collective_timeout_s
    print(f"nowcast: {ps.source} -> {root / job_id}", flush=True)
    error: Optional[BaseException] = None
    with SignalForwarder() as forwarder, ProgressLines(root, job_id, cfg.name or job_id, enabled=progress):
        try:
            pm.execute_notebook(str(repo_file(NOTEBOOK)), str(staged), parameters=parameters,
                                cwd=os.getcwd(), progress_bar=False, log_output=False)
        except Exception as e:  # papermill's execution error carries the cell's traceback
            error = e
    try:
        return _conclude(cfg, job_id, staged, error, signalled=forwarder.received is not None)
    finally:
        _remove_if_empty(staged.parent)


def _conclude(cfg: Config, job_id: str, staged: Path, error: Optional[BaseException],
              signalled: bool) -> tuple[str, Path]:
    """Complete, keep (preempted) or fail the run once papermill is done."""
    root = Path(cfg.results_dir)
    running, final = JobPaths.running(root, job_id).folder, JobPaths.completed(root, job_id).folder
    if error is None and running.is_dir():
        path = results.complete_run(running, notebook=staged)
        print(f"nowcast: completed {path}", flush=True)
        return "completed", path
    if error is None:
        error = NowcastError(f"the notebook finished without leaving {running}")
    message = _short_error(error)
    if running.is_dir() and (signalled or _marked_preempted(running)):
        print(f"nowcast: preempted; checkpoint kept in {running} ({message})", flush=True)
        return "preempted", running
    if running.is_dir() or not final.is_dir():
        # the kernel died, failed outside run_experiment's own handling, or before a results
        # folder existed (a failed folder is still left behind)
        path = fail_unmarked(cfg, job_id, message, notebook=staged) or running
    else:  # run_experiment marked it failed: add the executed notebook
        path = final
        if staged.is_file() and not JobPaths(final).notebook.exists():
            shutil.move(str(staged), JobPaths(final).notebook)
    print(f"nowcast: FAILED {path}: {message}", file=sys.stderr, flush=True)
    return "failed", path


def fail_unmarked(cfg: Config, job_id: str, message: str,
               notebook: Optional[Path] = None) -> Optional[Path]:
    """Fail the run here, after its process ended without marking it (a rank > 0's own error
    first: rank_failure); a folder is started when none exists. None: another live run holds
    the folder's lock (it is that run's: left alone)."""
    running = JobPaths.running(cfg.results_dir, job_id).folder
    if running.is_dir() and runlock.holder(running):
        return None
    if not running.is_dir():
        running = results.start_run(dataclasses.replace(cfg, job_id=job_id))
    return results.fail_run(running, rank_failure(running, message), notebook=notebook)


def _marked_preempted(running: Path) -> bool:
    """run_experiment marks the folder so when training stopped on request with a checkpoint."""
    run = results.read_run(running)
    return run is not None and run.status == "preempted"


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only when empty: other runs may be staging there
    except OSError:
        pass


def _short_error(error: BaseException) -> str:
    """One line: the exception the notebook raised (papermill wraps it), else error's own."""
    ename = getattr(error, "ename", None)
    if ename:
        return first_line(f"{ename}: {getattr(error, 'evalue', '')}")
    return described(error)


# --------------------------------------------------------------------------------------------
# nowcast run, one array task
# --------------------------------------------------------------------------------------------

def run_command(params_paths: list[str], results_dir: Optional[str], overrides: list[str]) -> str:
    """`nowcast run` as typed, every argument shell-quoted: what resumes a stopped set (the
    same params find their stopped run: results.find_resumable)."""
    words = ["nowcast", "run", *params_paths, *(["--results", results_dir] if results_dir else []),
             *(w for o in overrides or [] for w in ("--set", o))]
    return shlex.join(str(w) for w in words)


def run_local(params_paths: list[str], results_dir: Optional[str] = None, overrides: list[str] = (),
              force: bool = False, progress: bool = True, slurm_job: Optional[str] = None) -> int:
    """Run params sets one after another through papermill; 0 when none failed.

    results_dir, when given, replaces every set's own results_dir (default 'results'). A set
    whose completed results already exist with the same resolved params is skipped (force=True
    runs it again, into a new folder). slurm_job: the SLURM job this runs in (default:
    $SLURM_JOB_ID), whose sets then need job ids of their own.
    """
    sets = collect(params_paths, overrides, results_dir)
    slurm_job = slurm_job if slurm_job is not None else jobenv.slurm().get("job_id")
    summary = []
    for index, ps in enumerate(sets):
        done = None if force else results.find_completed(ps.cfg.results_dir, ps.cfg)
        if done is not None:
            print(f"nowcast: {ps.source}: skipped, completed in {done}", flush=True)
            summary.append(("skipped", ps.source, done))
            continue
        job_id = ps.cfg.job_id or results.find_resumable(ps.cfg.results_dir, ps.cfg)
        if job_id and not ps.cfg.job_id:
            print(f"nowcast: {ps.source}: resuming its stopped run {job_id}", flush=True)
        if job_id is None and slurm_job and len(sets) > 1:
            job_id = f"{results.resolve_job_id(ps.cfg)}-{index}"  # several sets in one SLURM job
        status, path = run_one(ps, job_id=job_id, progress=progress)
        summary.append((status, ps.source, path))
        if status == "preempted":  # SIGTERM/SIGUSR1: stop here, the rest does not start
            print(f"nowcast: stopped; the same command resumes it from the checkpoint: "
                  f"{run_command(params_paths, results_dir, overrides)}", file=sys.stderr)
            break
    print("\nnowcast run:")
    for status, source, path in summary:
        print(f"  {status:9s} {source} -> {path}")
    return 0 if all(s in ("completed", "skipped") for s, _, _ in summary) else 1
