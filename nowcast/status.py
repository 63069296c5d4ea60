"""`nowcast status`: one table of every run under the results folders, like `squeue` for runs.

For each run: job id, name, protocol, state (running, pending, preempted, stale, failed,
completed, ...), progress and ETA from its progress record (nowcast/progress.py), the headline
metric of a completed run and the one-line error of a failed one. Under SLURM the queue is
joined in: a run squeue lists is alive whatever its heartbeat says, and the tasks of sweeps
(results/.sweeps/<stamp>/jobs.yaml) that have no results folder yet are shown too, pending or
lost.

`build_rows` makes the rows from what was read (pure), `format_table` and `rows_json` print
them, `collect_rows` does the reading and `show_status` is the command.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TextIO

from .errors import NowcastError, first_line, one_line
from .launch.queue import queue_states, sweep_tasks, waiting
from .progress import STALE, derive_state, eta_left, slurm_key, steps_text
from .protocols import metric_label
from .results import Run, find_runs
from .util import duration

# Active work first, then what needs a look, then what is done.
STATE_ORDER = ("running", "pending", "submitted", "preempted", STALE, "lost", "failed",
               "unreadable", "completed")  # progress.STATES, STALE and QUEUE_STATES
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
NOTE_WIDTH = 70
MIN_WATCH_S = 0.5  # --watch: the shortest redraw period (each redraw reads every run)
MAX_WATCH_S = 86400.0  # and the longest: a day (1e12 overflowed the sleep)


@dataclass(frozen=True)
class Row:
    """One line of the table (and one object of --json)."""
    job_id: str
    name: str
    protocol: str
    state: str
    stage: Optional[str] = None          # of a run in progress: data, model, train, test, outputs
    step: Optional[int] = None
    total_steps: Optional[int] = None
    seq_per_s: Optional[float] = None
    loss: Optional[float] = None
    val_loss: Optional[float] = None
    eta_s: Optional[float] = None        # running runs only
    result: Optional[str] = None         # completed runs: headline metrics
    error: Optional[str] = None          # failed, stale, lost, preempted: one line
    queue: Optional[str] = None          # squeue's state, when it lists the job
    host: Optional[str] = None
    heartbeat_age_s: Optional[float] = None
    path: Optional[str] = None


def headline(run: Run) -> Optional[str]:
    """'MSE/frame 0.0123, SSIM 0.812': the protocol's headline metrics of a completed run."""
    m = run.metrics or {}
    names = m.get("headline") if isinstance(m.get("headline"), list) else []
    mean = m.get("mean") if isinstance(m.get("mean"), dict) else {}
    parts = [f"{metric_label(n)} {mean[n]:.4g}" for n in names
             if isinstance(mean.get(n), (int, float)) and not isinstance(mean.get(n), bool)]
    return ", ".join(parts) or None


def _number(record: dict, key: str) -> Any:
    value = record.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _stale_note(run: Run, age: Optional[float], queue: Optional[str]) -> str:
    rec = run.progress
    why = f"no heartbeat for {duration(age)}" if age is not None else "no heartbeat"
    if queue == "":
        return f"{why}; SLURM job {slurm_key(rec) or run.job_id} no longer queued"
    if rec.get("pid") is not None:
        return f"{why}; process {rec['pid']} on {rec.get('host')} is gone"
    return why


def run_row(run: Run, queue: Optional[dict[str, str]], now: float, host: str,
            swept: set[str] = frozenset()) -> Row:
    """The row of one results folder. queue: squeue's states (None: unknown); swept: job ids of
    sweep tasks (a run without SLURM ids in its record is looked up by its job id then)."""
    rec = run.progress
    key = slurm_key(rec) or (run.job_id if run.job_id in swept else None)
    q = None if queue is None or key is None else queue.get(key, "")
    state = derive_state(run.status, rec, run.heartbeat, now, host, queue=q)
    age = None if run.heartbeat is None else round(max(0.0, now - run.heartbeat), 1)
    error = first_line(run.error) if run.error else None
    if state == "stale":
        error = _stale_note(run, age, q)
    step, total = _number(rec, "step"), _number(rec, "total_steps")
    return Row(job_id=run.job_id, name=run.name, protocol=run.protocol, state=state,
               stage=rec.get("stage") if state in ("running", "stale") else None,
               step=int(step) if step is not None else None,
               total_steps=int(total) if total is not None else None,
               seq_per_s=_number(rec, "seq_per_s"), loss=_number(rec, "loss"),
               val_loss=_number(rec, "val_loss"),
               eta_s=eta_left(rec, now) if state == "running" and rec.get("stage") == "train" else None,
               result=headline(run) if state == "completed" else None,
               error=None if state == "completed" else error, queue=q or None,
               host=rec.get("host"), heartbeat_age_s=age if state != "completed" else None,
               path=str(run.path))


def task_row(task: dict, queue: Optional[dict[str, str]]) -> Row:
    """A sweep task without a results folder: pending or starting in the queue, else lost
    (its SLURM job ended without leaving one: its log says why), or submitted when the
    queue cannot be read here."""
    q = None if queue is None else queue.get(task["job_id"], "")
    if q is None:
        state, error = "submitted", "no results folder yet; squeue unavailable here"
    elif waiting(q):
        state, error = "pending", None
    elif q:
        state, error = "running", None
    else:
        state, error = "lost", f"the task ended without a results folder: see {task['log']}"
    return Row(job_id=task["job_id"], name=task["name"], protocol="", state=state,
               stage="starting" if state == "running" else None, error=error, queue=q or None,
               path=task["log"])


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def build_rows(runs: Iterable[Run], tasks: Iterable[dict] = (),
               queue: Optional[dict[str, str]] = None, now: Optional[float] = None,
               host: Optional[str] = None) -> list[Row]:
    """Every run's row, and a row for each sweep task that has no results folder yet; sorted
    by state (active first, completed last), then job id."""
    now = time.time() if now is None else now
    host = socket.gethostname() if host is None else host
    runs, tasks = list(runs), list(tasks)
    swept = {t["job_id"] for t in tasks}
    rows = [run_row(r, queue, now, host, swept) for r in runs]
    have = {r.job_id for r in runs}
    rows += [task_row(t, queue) for t in tasks if t["job_id"] not in have]
    order = {s: i for i, s in enumerate(STATE_ORDER)}
    return sorted(rows, key=lambda r: (order.get(r.state, len(order)), _natural(r.job_id)))


# --------------------------------------------------------------------------------------------
# as text and JSON
# --------------------------------------------------------------------------------------------

def _progress_cell(row: Row) -> str:
    steps = steps_text({"step": row.step, "total_steps": row.total_steps})
    if row.state in ("running", "stale") and row.stage and row.stage != "train":
        return f"{row.stage} {steps}".strip()
    return steps


def _note(row: Row) -> str:
    text = row.result or row.error or (row.queue if row.state == "pending" else "") or ""
    return text if len(text) <= NOTE_WIDTH else text[:NOTE_WIDTH - 1] + "…"


def table_lines(rows: list[Row]) -> list[str]:
    header = ["JOB", "NAME", "PROTOCOL", "STATE", "PROGRESS", "SEQ/S", "LOSS", "ETA",
              "RESULT / ERROR"]
    cells = [[one_line(c) for c in (r.job_id, r.name, r.protocol, r.state, _progress_cell(r),
              f"{r.seq_per_s:.1f}" if r.seq_per_s is not None else "",
              f"{r.loss:.4g}" if r.loss is not None else "", duration(r.eta_s), _note(r))]
             for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
            for line in [header, *cells]]


def format_table(rows: list[Row], roots: list[str], now: Optional[float] = None) -> str:
    """The table with a one-line summary above it."""
    now = time.time() if now is None else now
    states = [s for s in STATE_ORDER if any(r.state == s for r in rows)]
    states += sorted({r.state for r in rows} - set(STATE_ORDER))
    summary = ", ".join(f"{sum(r.state == s for r in rows)} {s}" for s in states)
    head = (f"nowcast status: {len(rows)} run{'s' * (len(rows) != 1)} in {', '.join(roots)}"
            f"{': ' + summary if rows else ''}   "
            f"({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))})")
    return "\n".join([head, *table_lines(rows)]) if rows else head


def rows_json(rows: list[Row], compact: bool = False) -> str:
    data = [asdict(r) for r in rows]
    return json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------

def collect_rows(results_dirs: list[str | Path]) -> list[Row]:
    """Read every run and sweep under the results folders, and the queue when a run or task
    is a SLURM one (squeue is not asked otherwise: it may be slow to fail where no
    controller answers)."""
    runs = find_runs(results_dirs)
    tasks = [t for d in results_dirs for t in sweep_tasks(d)]
    slurm = tasks or any(slurm_key(r.progress) and r.status in ("running", "preempted") for r in runs)
    return build_rows(runs, tasks, queue_states() if slurm else None)


def check_arguments(results_dirs: list[str | Path], watch: Optional[float], must_exist: bool) -> None:
    """NowcastError for a results root that is not a folder (or, must_exist, is missing) and
    for a --watch that is no positive period (0 would redraw without pause)."""
    for d in results_dirs:
        if Path(d).exists() and not Path(d).is_dir():
            raise NowcastError(f"--results {d}: not a folder")
        if must_exist and not Path(d).exists():
            raise NowcastError(f"--results {d}: no such folder")
    if watch is not None and not MIN_WATCH_S <= watch <= MAX_WATCH_S:
        raise NowcastError(f"--watch must be between {MIN_WATCH_S:g} and {MAX_WATCH_S:g} "
                           f"seconds, got {watch}")


def show_status(results_dirs: list[str | Path], watch: Optional[float] = None,
                as_json: bool = False, stream: Optional[TextIO] = None,
                sleep: Callable[[float], None] = time.sleep, must_exist: bool = False) -> int:
    """`nowcast status`: print the table (or JSON) once, or every `watch` seconds until
    Ctrl-C (the screen is redrawn on a terminal; elsewhere tables follow one another, and
    JSON comes one document per line). check_arguments first."""
    check_arguments(results_dirs, watch, must_exist)
    stream = stream or sys.stdout
    if stream is None:  # started with standard output closed
        raise NowcastError("standard output is closed: nowhere to print the status")
    if hasattr(stream, "reconfigure"):  # a name the terminal's encoding lacks: escaped, shown
        stream.reconfigure(errors="backslashreplace")
    roots = [str(d) for d in results_dirs]
    redraw = watch is not None and not as_json and stream.isatty()
    try:
        while True:
            rows = collect_rows(results_dirs)
            text = rows_json(rows, compact=watch is not None) if as_json else format_table(rows, roots)
            stream.write((CLEAR if redraw else "") + text + "\n")
            stream.flush()
            if watch is None:
                return 0
            sleep(watch)
    except KeyboardInterrupt:  # the way out of --watch
        stream.write("\n")
        return 0
    except OSError as e:  # a full disk, a closed pipe: one line, not a traceback
        raise NowcastError(f"standard output: cannot write the status ({e.strerror or e})") from None
