"""The progress record of a run in progress, and the state of a run derived from it.

A running run keeps `progress.json` in its folder (results/.running-<job_id>/; the last record
stays in the folder when it is completed or failed): where training is (stage, step of total
steps), how fast (sequences/s), the last losses, an ETA, and who writes it (host, pid, SLURM
ids) with a heartbeat time. `Progress` writes it atomically, throttled by wall time (at most
one write per `interval` seconds from `update`; stage changes are written at once), and a
heartbeat thread rewrites it every `heartbeat` seconds while nothing else does (compile,
validation, the test split), so that a silent record means a dead or stuck process.

`derive_state` turns a status.json status plus this record into what `nowcast status` and the
report show: a `running` status whose writer is gone is `stale`. It is the one source of that
rule (results.read_run and nowcast status both call it).

    record = {"stage": "train", "step": 120, "total_steps": 400, "seq_per_s": 35.2,
              "loss": 0.1234, "val_loss": 0.13, "eta_s": 310.0, "updated": 1712345677.0,
              "heartbeat": 1712345678.9, "started": 1712345000.0, "host": "node1", "pid": 4242, "pid_started": 1712344990.1,
              "slurm": {"job_id": "103", "array_job_id": "101", "array_task_id": "2"}}
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .jobenv import identity, job_key, process_alive
from .paths import JobPaths
from .util import duration, finite_or_none, write_json

WRITE_EVERY_S = 2.0    # `update` writes at most this often: cheap at any step rate
HEARTBEAT_S = 10.0     # the heartbeat thread refreshes a record older than this
# A run whose process is known to be gone (dead pid on this host, or a SLURM job squeue no
# longer lists) is stale once its heartbeat is this old: the launcher completes or fails a
# run within a moment of its process ending, so a short grace is enough.
DEAD_GRACE_S = 3 * HEARTBEAT_S
# Without a process to check (another host, no squeue): only the heartbeat's age tells.
STALE_AFTER_S = 12 * HEARTBEAT_S
# Every state a run is shown in, named here once. status.json's status (report order; a
# folder whose files cannot be read is `unreadable`):
STATES = ("completed", "running", "preempted", "failed", "unreadable")
STALE = "stale"  # Run.state of a `running` run whose process is gone (derive_state)
# `nowcast status` only, for a sweep task without a live folder: queued, squeue not answering,
# or ended without leaving one
QUEUE_STATES = ("pending", "submitted", "lost")


class Progress:
    """The progress record of one run. run_dir None: a record that writes nothing (other DDP
    ranks, tests of train() alone). Use as a context manager (heartbeat thread from enter to
    exit), or call `start`/`close`.

    The training loop calls `on_step(step=, total=, loss=)` after each optimiser step (cheap:
    it returns at once unless `interval` seconds passed; `loss` may be a device tensor,
    converted only when written) and `on_step(step=, total=, val_loss=)` after a validation
    (written at once); or `start_training` and `update` directly. The rest of the run calls
    `stage(name)`, and `finish_training` with what the loop returned.
    """

    def __init__(self, run_dir: Optional[Path | str], batch_size: int = 1,
                 interval: float = WRITE_EVERY_S, heartbeat: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = None if run_dir is None else JobPaths(run_dir).progress
        self.batch_size, self.interval, self.heartbeat, self.clock = batch_size, interval, heartbeat, clock
        self.record: dict[str, Any] = {"stage": "starting", "step": None, "total_steps": None,
                                       "seq_per_s": None, "loss": None, "val_loss": None,
                                       "eta_s": None, "updated": None, "heartbeat": None,
                                       "started": clock(), **identity()}
        self._lock = threading.Lock()
        self._last_write = -math.inf
        self._rate: Optional[float] = None  # steps/s, smoothed over writes
        self._mark: tuple[int, float] = (0, clock())  # (step, time) the rate is measured from
        self._budget_end: Optional[float] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Progress":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        self._write()
        if self.path is not None and self.heartbeat > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="nowcast-heartbeat", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stage(self, name: str, **fields: Any) -> None:
        """A new stage ('data', 'model', 'train', 'test', 'outputs', ...): written at once."""
        with self._lock:
            self.record.update(fields, stage=name)
        self._write()

    def start_training(self, total_steps: int, step: int = 0) -> None:
        """Before the first step (of this attempt: `step` is where a resumed run continues); a
        time budget, if any, comes with each step (on_step's time_left)."""
        self._mark, self._rate = (step, self.clock()), None
        self._budget_end = None
        self.stage("train", step=step, total_steps=total_steps)

    def update(self, step: int, loss: Any = None, val_loss: Any = None, force: bool = False) -> bool:
        """Record `step` (steps done) and losses; writes when `interval` seconds passed since the
        last write, or force. Returns whether it wrote."""
        now = self.clock()
        if not force and now - self._last_write < self.interval:
            return False
        with self._lock:
            self._measure(step, now)
            self.record.update(step=step, seq_per_s=self._seq_per_s(), eta_s=self._eta(step, now),
                               updated=now)
            if loss is not None:
                self.record["loss"] = float(loss)
            if val_loss is not None:
                self.record["val_loss"] = float(val_loss)
        self._write()
        return True

    def on_step(self, step: int, total: Optional[int] = None, loss: Any = None,
                val_loss: Any = None, time_left: Optional[float] = None, **_: Any) -> None:
        """The training loop's callback (training.train's on_step): `step` steps done of `total`;
        the first call starts the train stage; a validation loss is written at once;
        time_left: seconds left of a time budget (caps the ETA)."""
        if total is not None and (self.record.get("stage") != "train"
                                  or total != self.record.get("total_steps")):
            self.start_training(total, step)
        if time_left is not None:
            self._budget_end = self.clock() + time_left
        self.update(step, loss=loss, val_loss=val_loss, force=val_loss is not None)

    def finish_training(self, steps: int, sequences: int, seconds: float, loss: Any = None,
                        val_loss: Any = None) -> None:
        """After training: the final step count and the whole run's throughput (what
        TrainResult says), so that the record is right even if the loop never updated it."""
        total = self.record.get("total_steps") or steps
        self.stage("test", step=steps, total_steps=max(total, steps), eta_s=None,
                   seq_per_s=round(sequences / seconds, 2) if seconds > 0 else None,
                   loss=None if loss is None else float(loss),
                   val_loss=None if val_loss is None else float(val_loss))

    # -- internals ---------------------------------------------------------------------------

    def _measure(self, step: int, now: float) -> None:
        done, since = step - self._mark[0], now - self._mark[1]
        if done > 0 and since > 0:
            rate = done / since
            # smoothed: the first window holds compile and warm-up, later ones validation pauses
            self._rate = rate if self._rate is None else 0.5 * self._rate + 0.5 * rate
            self._mark = (step, now)

    def _seq_per_s(self) -> Optional[float]:
        return None if self._rate is None else round(self._rate * self.batch_size, 2)

    def _eta(self, step: int, now: float) -> Optional[float]:
        total = self.record.get("total_steps")
        eta = None
        if self._rate and total is not None:
            eta = max(0.0, (total - step) / self._rate)
        if self._budget_end is not None:
            left = max(0.0, self._budget_end - now)
            eta = left if eta is None else min(eta, left)
        return None if eta is None else round(eta, 1)

    def _write(self) -> None:
        if self.path is None:
            return
        with self._lock:
            now = self.clock()
            self.record["heartbeat"] = now
            self._last_write = now
            try:
                write_json(self.path, finite_or_none(self.record))  # a NaN loss: null
            except OSError:  # the folder was renamed or removed under us: the run has ended
                pass

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat / 2):
            if self.clock() - self._last_write >= self.heartbeat:
                self._write()


# --------------------------------------------------------------------------------------------
# the plan line
# --------------------------------------------------------------------------------------------

MEASURED_STEPS = 3  # steps timed for the estimate, after the first (which holds compilation)


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (papermill's): its stdout goes into the notebook,
    its own stderr (sys.__stderr__) to the terminal or the SLURM log it was started from."""
    return "ipykernel" in sys.modules and sys.stdout is not sys.__stdout__


# erases a terminal line from the cursor on (launch/watch.py redraws its progress line with it)
CLEAR_LINE = "\x1b[K"


def own_line(line: str, stream) -> str:
    """`line` on a line of its own: on a terminal where a progress line may be drawn in place
    (papermill's watcher, launch/watch.py), back to its start and cleared first."""
    isatty = getattr(stream, "isatty", None)
    return f"\r{CLEAR_LINE}{line}" if isatty is not None and isatty() else line


class PlanClock:
    """What a run is about to do, said on stdout before its first step, and after
    1 + MEASURED_STEPS steps how long the whole plan will take: a run launched without a
    terminal (papermill, a batch job) would otherwise train for hours without a word.

        nowcast: tiny: 8 steps (2 epochs x 4 steps) x 8 sequences = 64 sequences on cpu (fp32)
        nowcast: tiny: the first step took 31 s (warm-up included): at most 4 min for the plan
        nowcast: tiny: estimated 2 min for the plan (8 steps; 16.2 s/step measured over ...;
            2 validations of 8 sequences about 11 s)
        nowcast: tiny: the first validation took 4 s: estimated 2 min for the plan

Validation is estimated before it runs at a third of a training step's time per sequence (a
forward pass without the backward one), then corrected once the first validation is timed.

    `after_step` is called with steps done and the step's loss (a device tensor: converting
    it waits for the device, so the measured time is the device's, twice per run only).
    enabled False (DDP ranks other than 0): silent.
    """

    def __init__(self, name: str, device: str, total: int, steps_per_epoch: int, stages: int,
                 epochs: int, batch_size: int, start: int = 0, processes: int = 1,
                 budget_min: Optional[float] = None, enabled: bool = True,
                 out: Callable[[str], None] = print, validations: int = 0,
                 val_sequences: int = 0, spent_s: float = 0.0) -> None:
        # spent_s: what earlier attempts of a resumed run trained (the budget is of the run)
        self.name, self.total, self.start, self.budget_min = name, total, start, budget_min
        self.left_s = 60 * budget_min - spent_s if budget_min else None
        self.batch_size, self.validations, self.val_sequences = batch_size, validations, val_sequences
        self.per_step: Optional[float] = None
        self._validated = False
        self.enabled, self.out = enabled, out
        self._t0: Optional[float] = None
        self._begun = time.perf_counter()
        blocks = [f"{stages} stages"] * (stages > 1) + [f"{epochs} epochs"] * (epochs > 1)
        layout = " x ".join(blocks + [f"{steps_per_epoch} steps"])
        self.text = (f"{total} steps ({layout}) x {batch_size} sequences = "
                     f"{total * batch_size} sequences on {device}"
                     + (f", {processes} processes" if processes > 1 else "")
                     + (f"; resuming at step {start}" if start else "")
                     + (f"; time budget {duration(60 * budget_min)}" if budget_min else "")
                     + (f" ({duration(spent_s)} of it spent before)" if budget_min and spent_s else ""))

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        line = f"nowcast: {self.name}: {text}"
        self.out(line)
        if in_kernel():  # papermill keeps the kernel's stdout in the notebook: say it outside too
            print(own_line(line, sys.__stderr__), file=sys.__stderr__, flush=True)

    def begin(self) -> None:
        self._begun = time.perf_counter()
        self.say(self.text)

    def after_step(self, done: int, loss: Any = None) -> None:
        first, last = self.start + 1, self.start + 1 + MEASURED_STEPS
        if not self.enabled or done not in (first, last) or last >= self.total:
            return
        if loss is not None:
            float(loss)  # waits for the device
        now = time.perf_counter()
        if done == first:  # minutes per step on a CPU: say something now, refined after 4 steps
            self._t0 = now
            took = now - self._begun
            self.say(f"the first step took {duration(took)} (warm-up included): at most "
                     f"{duration(took * (self.total - self.start))} for the plan"
                     f"{self._budget(took * (self.total - self.start))}")
            return
        per_step = self.per_step = (now - self._t0) / MEASURED_STEPS
        validation = self.validations * self.val_sequences * per_step / self.batch_size / 3
        whole = now - self._begun + (self.total - done) * per_step + validation
        said = (f"; {self.validations} validations of {self.val_sequences} sequences about "
                f"{duration(validation)}" if self.validations else "")
        self.say(f"estimated {duration(whole)} for the {'rest of the ' * bool(self.start)}plan "
                 f"({self.total - self.start} steps; {per_step:.3g} s/step measured over steps "
                 f"{first + 1}-{last}{said}){self._budget(whole)}")

    def _budget(self, whole: float) -> str:
        if self.left_s is None or whole <= self.left_s:
            return ""
        return f"; the time budget stops it {'after' if self.start else 'at'} {duration(max(self.left_s, 0))}"

    def after_validation(self, done: int, seconds: float, validations_left: int) -> None:
        """The first validation's measured time corrects the estimate (said once per run)."""
        if not self.enabled or self.per_step is None or self._validated:
            return
        self._validated = True
        whole = (time.perf_counter() - self._begun + (self.total - done) * self.per_step
                 + validations_left * seconds)
        self.say(f"the first validation took {duration(seconds)}: estimated {duration(whole)} "
                 f"for the {'rest of the ' * bool(self.start)}plan{self._budget(whole)}")



# --------------------------------------------------------------------------------------------
# the state of a run
# --------------------------------------------------------------------------------------------

def slurm_key(record: dict) -> Optional[str]:
    """The run's job as squeue's %i shows it (jobenv.job_key); None outside SLURM."""
    return job_key(record.get("slurm") if isinstance(record.get("slurm"), dict) else {})


def derive_state(status: str, record: dict, heartbeat: Optional[float], now: float, host: str,
                 queue: Optional[str] = None,
                 alive: Callable[[Any, Any], bool] = process_alive) -> str:
    """What a run is: its status.json status, except that a `running` run whose writer is gone
    is `stale` (its process was killed, or its node was lost).

    heartbeat: the record's heartbeat (else status.json's modification time); queue: squeue's
    state of the run's SLURM job ('' when squeue answered without it, None when not asked or
    not a SLURM run). Gone means: no heartbeat for DEAD_GRACE_S and no live process (a dead
    pid on this host, or a SLURM job no longer queued); where neither can be checked, no
    heartbeat for STALE_AFTER_S.
    """
    if status != "running":
        return status
    if queue:  # squeue lists it (running, completing, requeued): alive whatever the heartbeat
        return "running"
    age = math.inf if heartbeat is None else now - heartbeat
    pid = record.get("pid")
    here = pid is not None and record.get("host") == host
    if here and alive(pid, record.get("pid_started")):
        return "running"
    if here and age < 0:  # this host's own clock wrote it: a heartbeat from the future is false
        age = math.inf
    limit = DEAD_GRACE_S if here or queue == "" else STALE_AFTER_S
    return STALE if age > limit else "running"


# --------------------------------------------------------------------------------------------
# as text
# --------------------------------------------------------------------------------------------

def steps_text(record: dict) -> str:
    """'120/400 (30%)', '120' without a total, '' before training."""
    step, total = record.get("step"), record.get("total_steps")
    if not isinstance(step, int):
        return ""
    if isinstance(total, int) and total > 0:
        return f"{step}/{total} ({100 * step // total}%)"
    return str(step)


def eta_left(record: dict, now: float) -> Optional[float]:
    """The record's ETA less the time since it was measured (`updated`: heartbeats alone
    do not move it)."""
    eta, beat = record.get("eta_s"), record.get("updated", record.get("heartbeat"))
    if not isinstance(eta, (int, float)):
        return None
    return max(0.0, eta - (now - beat)) if isinstance(beat, (int, float)) else float(eta)


def line(label: str, record: dict, now: float) -> str:
    """One progress line: 'demo-filter-3  train  step 120/400 (30%)  35.2 seq/s  loss 0.1234
    val 0.1300  ETA 2m05s'."""
    parts = [label, str(record.get("stage") or "")]
    if steps_text(record):
        parts.append(f"step {steps_text(record)}")
    if isinstance(record.get("seq_per_s"), (int, float)):
        parts.append(f"{record['seq_per_s']:.1f} seq/s")
    for key, name in (("loss", "loss"), ("val_loss", "val")):
        if isinstance(record.get(key), (int, float)):
            parts.append(f"{name} {record[key]:.4g}")
    eta = eta_left(record, now)
    if eta is not None and record.get("stage") == "train":
        parts.append(f"ETA {duration(eta)}")
    return "  ".join(p for p in parts if p)
