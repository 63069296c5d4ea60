"""The results/<job_id>/ contract (docs/architecture.md): the one module that writes and reads it.

Writing. A run in progress lives in results/.running-<job_id>/ (status `running`; a requeued
job with the same id resumes there). `complete_run` renames it to results/<job_id>/;
`fail_run` marks it failed and renames it too, so a final folder is always complete or marked
failed, and never overwritten. A run that was asked to stop (SLURM preemption, SIGTERM)
stays where it is, marked `preempted` by `mark_preempted`: resumable, not failed.

Reading. `read_run(folder)` gives a `Run` (status, params, env, metrics) for any of these
folders, without trusting their contents (a damaged file makes the run `unreadable`, with the
reason); `find_runs(roots)` lists every run under results roots. The report, the slides and
`nowcast status` read through these and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from . import jobenv, runlock, yamlio
from .config import Config, to_yaml
from .options import NON_SEMANTIC
from .errors import NowcastError, RunStopped, described, first_line
from .paths import JobPaths
from .progress import STATES, derive_state
from .protocols import PROTOCOL_NAMES
from .schema import metrics_problem
from .util import read_data_text, regular_file, write_json, write_text



def params_hash(cfg: Config) -> str:
    semantic = {k: v for k, v in cfg.to_dict().items() if k not in NON_SEMANTIC}
    return hashlib.sha1(json.dumps(semantic, sort_keys=True).encode()).hexdigest()[:8]


def resolve_job_id(cfg: Config) -> str:
    """cfg.job_id, else SLURM's array/job id, else a readable local id (time + params hash)."""
    if cfg.job_id:
        return cfg.job_id
    return jobenv.job_key(jobenv.slurm()) or f"{time.strftime('%Y%m%d-%H%M%S')}-{params_hash(cfg)}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def parse_json(text: str) -> Any:
    """json.loads, with nesting too deep for Python's stack ('[' * 200000 in a damaged or
    hostile file) a ValueError like any other damage, not a RecursionError that ends status,
    report, slides, sweep and run for every folder of the root."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def read_json(path: Path) -> dict:
    """A JSON object from a file; {} when absent, damaged or not an object."""
    try:
        value = parse_json(read_data_text(path))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def ensure_new(root: str | Path, job_id: str) -> Path:
    """results/<job_id>/ for a run that may start: NowcastError if it already exists."""
    final = Path(root) / job_id
    if final.exists():
        raise NowcastError(f"{final} already exists and is never overwritten: choose another job_id")
    return final


def start_run(cfg: Config) -> Path:
    """Create (or find again, for a requeued job) the in-progress folder of this run, and take
    its lock (runlock): a second run with the same job id is refused, naming the first."""
    job_id = resolve_job_id(cfg)
    cfg.job_id = job_id
    ensure_new(cfg.results_dir, job_id)
    running = JobPaths.running(cfg.results_dir, job_id).folder
    try:
        running.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NowcastError(f"{running}: cannot create the results folder ({e.strerror})") from None
    runlock.acquire(running)
    try:
        _same_params(running, cfg)
        _remove_partial_writes(running)  # of a writer that was killed; we hold the lock now
        status = read_json(JobPaths(running).status)
        status = status if isinstance(status, dict) else {}
        started = status.get("started")
        write_json(JobPaths(running).status, {
            "status": "running", "job_id": job_id, "name": cfg.name,
            "started": started if isinstance(started, str) and len(started) < 64 else _now(),
            "ended": None, "error": None, "attempts": _count(status.get("attempts")) + 1})
    except BaseException:
        runlock.release(running)
        raise
    return running


def _same_params(running: Path, cfg: Config) -> None:
    """Write params.yaml into a new folder; in an existing one, check that it holds this run."""
    file = JobPaths(running).params
    if not file.is_file():
        write_text(file, to_yaml(cfg))
        return
    try:
        previous = yamlio.load(file.read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise NowcastError(f"{file} is unreadable ({first_line(e)}): remove "
                           f"{running} or choose another job_id") from None
    if not isinstance(previous, dict) or {k: v for k, v in previous.items() if k not in NON_SEMANTIC} != \
            {k: v for k, v in cfg.to_dict().items() if k not in NON_SEMANTIC}:
        raise NowcastError(f"{running} holds an unfinished run of other params: "
                           f"remove it or choose another job_id")


def _remove_partial_writes(run_dir: Path) -> None:
    """util.atomic_path's temporary files (.<name>.<pid>.tmp) left by a killed writer."""
    for tmp in JobPaths(run_dir).temporary_files():
        tmp.unlink(missing_ok=True)


def stop_reason(run_dir: Path) -> Optional[str]:
    """Why a preempted run stopped (status.json `stopped_by`, stopping.STOP_REASONS and
    errors.RunStopped): launchers requeue only a `preemption`."""
    reason = read_json(JobPaths(run_dir).status).get("stopped_by")
    return reason if isinstance(reason, str) else None


def _finish(run_dir: Path, status: str, error: Optional[str]) -> Path:
    """Mark the folder and rename it to results/<job_id>/ (its final name). A name taken while
    the run went on (someone made results/<job_id>/) leaves it in progress and resumable,
    marked preempted, with everything it had: move that folder away and run it again."""
    run_dir = Path(run_dir)
    state = read_json(JobPaths(run_dir).status)
    before = dict(state)
    state.update(status=status, ended=_now(), error=error)
    write_json(JobPaths(run_dir).status, state)
    final = JobPaths(run_dir).final.folder
    _remove_partial_writes(run_dir)
    if final != run_dir:
        try:
            ensure_new(final.parent, final.name)
            os.rename(run_dir, final)  # checked just before: a folder made since is not taken
        except (NowcastError, OSError) as e:
            before.update(status="preempted", error=f"{final} exists", preempted_at=_now(),
                          stopped_by="write_error")
            write_json(JobPaths(run_dir).status, before)
            runlock.release(run_dir)
            raise RunStopped(f"{final} was made while the run went on ({first_line(e)}): "
                             f"{run_dir} stays resumable; move {final} away and run it again "
                             "(training is not repeated)", "write_error") from None
    runlock.release(final)  # after the rename: no second run can slip in before it
    return final


def _count(value: Any) -> int:
    """A count read back from status.json: a non-negative int, else 0 (a damaged field,
    "x", 1e400 or [1], restarts the count instead of failing the resume)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31 else 0


def complete_run(run_dir: Path, notebook: Optional[Path] = None) -> Path:
    """Move the executed notebook in (if any), mark completed, rename to results/<job_id>/,
    then drop the checkpoints (model.pt holds the final state): a rename refused keeps them."""
    paths = JobPaths(run_dir)
    if notebook is not None and Path(notebook).is_file():
        shutil.move(str(notebook), paths.notebook)
    final = JobPaths(_finish(run_dir, "completed", None))
    for path in (final.checkpoint, final.checkpoint_prev):
        path.unlink(missing_ok=True)
    return final.folder


def fail_run(run_dir: Path, error: BaseException | str, notebook: Optional[Path] = None) -> Path:
    paths = JobPaths(run_dir)
    message = error if isinstance(error, str) else described(error)
    if isinstance(error, BaseException) and not isinstance(error, NowcastError):
        write_text(paths.error, "".join(traceback.format_exception(error)))
    if notebook is not None and Path(notebook).is_file():
        shutil.move(str(notebook), paths.notebook)
    return _finish(run_dir, "failed", first_line(message, "failed"))


def mark_preempted(run_dir: Path, message: str, stopped_by: str = "request") -> Path:
    """Record that the run stopped on request with a checkpoint: it stays in progress (same
    folder), resumable by a run with the same job id; launchers read this status.
    stopped_by (errors.RunStopped.reason) says why: only `preemption` asks for a requeue."""
    run_dir = Path(run_dir)
    state = read_json(JobPaths(run_dir).status)
    state.update(status="preempted", error=message, preempted_at=_now(), stopped_by=stopped_by)
    write_json(JobPaths(run_dir).status, state)
    runlock.release(run_dir)
    return run_dir


def find_completed(results_dir: str | Path, cfg: Config) -> Optional[Path]:
    """A completed folder whose resolved params equal cfg's (up to name, job id and location)."""
    return completed_by_params(results_dir).get(params_hash(cfg))


def find_resumable(results_dir: str | Path, cfg: Config) -> Optional[str]:
    """The job id of an in-progress folder with cfg's params (params_hash) that no live process
    holds: a run stopped by a signal or killed (kill -9, a lost node), for a launcher that
    starts sets under new job ids to resume instead of starting again; None when there is none."""
    want = params_hash(cfg)
    for run in find_runs([results_dir]):
        if not JobPaths(run.path).in_progress or runlock.holder(run.path):
            continue
        try:
            if params_hash(Config(**run.params)) == want:
                return JobPaths(run.path).job_id
        except TypeError:  # params of an older or damaged run
            continue
    return None


def completed_by_params(results_dir: str | Path) -> dict[str, Path]:
    """params_hash -> a completed folder with those params: read once for many sets."""
    found: dict[str, Path] = {}
    for run in find_runs([results_dir]):
        if run.status != "completed":
            continue
        try:
            found.setdefault(params_hash(Config(**run.params)), run.path)
        except TypeError:  # params of an older or damaged run
            continue
    return found


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------

@dataclass
class Run:
    """One results folder as read. Every field comes from the folder: data, never code."""
    path: Path
    job_id: str
    name: str
    status: str                     # one of STATES
    error: Optional[str] = None
    reference: bool = False         # a committed reference run (reference_results/)
    params: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    metrics: Optional[dict] = None
    started: Optional[str] = None
    ended: Optional[str] = None
    progress: dict = field(default_factory=dict)  # progress.json (nowcast/progress.py)
    heartbeat: Optional[float] = None  # its heartbeat, else status.json's modification time
    state: str = ""                 # status, with `stale` for a running run whose writer is gone

    def __post_init__(self) -> None:
        self.state = self.state or self.status

    @property
    def slug(self) -> str:
        """A file-name-safe, unique-per-listing name (figures and copies are filed under it)."""
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.job_id).strip("._") or "run"
        return ("ref-" if self.reference else "") + base

    @property
    def protocol(self) -> str:
        m = self.metrics or {}
        return str(m.get("protocol") or self.params.get("protocol") or "none")

    @property
    def follows_protocol(self) -> bool:
        m = self.metrics or {}
        known = self.protocol != "none" and self.protocol in PROTOCOL_NAMES  # data: may be any text
        return bool(m.get("follows_protocol", known)) and known

    @property
    def group(self) -> str:
        """The table a run's numbers go to: its protocol, or 'none' when it follows none."""
        return self.protocol if self.follows_protocol else "none"

    @property
    def data(self) -> str:
        return str((self.metrics or {}).get("data") or "data not recorded")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.job_id})" if self.name and self.name != self.job_id else self.job_id

    def file(self, name: str) -> Optional[Path]:
        """The folder's file `name` when it is a regular file of its own (util.regular_file: a
        link or a FIFO is never followed into a report, the slides or a copy)."""
        p = self.path / name
        return p if regular_file(p) else None


def _load_yaml(path: Path) -> Any:
    return yamlio.load(read_data_text(path))


def _load_json(path: Path) -> Any:
    return parse_json(read_data_text(path))


def read_run(path: str | Path, reference: bool = False) -> Optional[Run]:
    """One results folder -> Run; None when the folder is not a results folder at all."""
    path, paths = Path(path), JobPaths(path)
    status_file, metrics_file = paths.status, paths.metrics
    if not status_file.exists() and not metrics_file.exists():
        return None
    in_progress, job_id = paths.in_progress, paths.job_id
    run = Run(path=path, job_id=job_id, name=job_id,
              status="running" if in_progress else "completed", reference=reference)
    problems = []
    if status_file.exists():
        try:
            st = _load_json(status_file)
            if not isinstance(st, dict):
                raise ValueError("not an object")
            run.status = str(st.get("status") or "unreadable")
            run.job_id = str(st.get("job_id") or job_id)
            run.name = str(st.get("name") or run.job_id)
            run.error = None if st.get("error") is None else str(st["error"])
            run.started = None if st.get("started") is None else str(st["started"])
            run.ended = None if st.get("ended") is None else str(st["ended"])
        except (OSError, ValueError) as e:
            problems.append(f"{JobPaths.STATUS} unreadable ({first_line(e)})")
    for attr, fname, loader in (("params", JobPaths.PARAMS, _load_yaml),
                                ("env", JobPaths.ENV, _load_json)):
        f = path / fname
        if f.exists():
            try:
                value = loader(f)
                setattr(run, attr, value if isinstance(value, dict) else {})
            except (OSError, ValueError, yaml.YAMLError) as e:
                problems.append(f"{fname} unreadable ({first_line(e)})")
    if metrics_file.exists() and run.status == "completed":
        try:
            m = _load_json(metrics_file)
            problem = metrics_problem(m)
            if problem:
                raise ValueError(problem)
            run.metrics = m
        except (OSError, ValueError) as e:
            problems.append(f"{JobPaths.METRICS} unreadable ({first_line(e)})")
    if run.name == run.job_id and run.params.get("name"):
        run.name = str(run.params["name"])
    if run.status == "completed" and run.metrics is None:
        problems.append(f"{JobPaths.METRICS} missing")
    if problems:
        run.status = "unreadable" if run.status == "completed" else run.status
        run.error = "; ".join(([run.error] if run.error else []) + problems)
    _read_progress(run, status_file)
    return run


def _read_progress(run: Run, status_file: Path) -> None:
    """The progress record, its heartbeat and the state derived from them (no queue known)."""
    run.progress = read_json(JobPaths(run.path).progress)
    beat = run.progress.get("heartbeat")
    if not isinstance(beat, (int, float)):
        try:
            beat = status_file.stat().st_mtime
        except OSError:
            beat = None
    run.heartbeat = beat
    run.state = derive_state(run.status, run.progress, beat, time.time(), socket.gethostname())


def find_runs(results_dirs: Iterable[Path | str],
              reference_dirs: Iterable[Path | str] = ()) -> list[Run]:
    """Every run under the given results roots (a root may also be one run folder itself),
    sorted: ours before references, by protocol, state, start time and job id."""
    runs: list[Run] = []
    for dirs, reference in ((results_dirs, False), (reference_dirs, True)):
        for d in map(Path, dirs):
            if not d.is_dir():  # a fresh clone has no results/ yet
                continue
            single = read_run(d, reference)
            if single is not None:
                runs.append(single)
                continue
            for child in sorted(d.iterdir()):
                # a link is never a run of this root: it could pull a folder from anywhere into
                # status, the report (its text published) and sweep (a set "completed" there)
                if child.is_symlink() or not child.is_dir() or (
                        child.name.startswith(".") and not JobPaths(child).in_progress):
                    continue
                run = read_run(child, reference)
                if run is not None:
                    runs.append(run)
    seen: dict[str, int] = {}  # two roots may hold the same job id: keep slugs unique
    for r in runs:
        n = seen.get(r.slug, 0)
        seen[r.slug] = n + 1
        if n:
            r.job_id = f"{r.job_id}~{n}"
    def order(r: Run) -> tuple:
        return (r.reference, PROTOCOL_NAMES.index(r.group) if r.group in PROTOCOL_NAMES else 99,
                STATES.index(r.status) if r.status in STATES else 99, r.started or "", r.job_id)
    return sorted(runs, key=order)
