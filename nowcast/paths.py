"""Every file of a results folder, named once (after submitit's JobPaths): the
results/<job_id>/ layout of docs/architecture.md.

    paths = JobPaths.running(root, job_id)     # results/.running-<job_id>/, while it runs
    paths.metrics, paths.checkpoint, paths.rank_error(1), paths.final.folder

A name is a class attribute (JobPaths.METRICS == "metrics.json", for code that holds a name,
such as a Run's `file(name)`), its path in one folder a property. Imports nothing of nowcast:
the status and report commands, which never import torch, read folders through it.
"""

from __future__ import annotations

from pathlib import Path

RUNNING_PREFIX = ".running-"  # results/.running-<job_id>/: a run in progress, or resumable
STAGING = ".staging"  # results/.staging/<job_id>.ipynb: an executed notebook still being written


def _file(name: str) -> property:
    return property(lambda self: self.folder / name, doc=f"<folder>/{name}")


class JobPaths:
    PARAMS = "params.yaml"            # the resolved params: what the run computes
    STATUS = "status.json"            # status, job id, name, start/end, error, attempts
    ENV = "env.json"                  # where it ran: device, precision, versions, minutes
    HISTORY = "history.csv"           # one row per validation
    BATCH_LOSSES = "batch_losses.csv"
    METRICS = "metrics.json"          # the scores (nowcast.schema)
    SCORES = "scores.npz"             # the per-sequence / per-window values behind metrics.json
    PROGRESS = "progress.json"        # the running run's last record and heartbeat
    LOCK = ".lock"                    # the one writer (runlock)
    CHECKPOINT = "checkpoint.pt"      # resumable state; removed when the run completes
    CHECKPOINT_PREV = "checkpoint.prev.pt"  # the last good one before it
    MODEL = "model.pt"                # the selected weights, config and frame shape
    NOTEBOOK = "train.ipynb"          # the executed notebook
    ERROR = "error.txt"               # the traceback of an unexpected failure
    RANK_ERROR = "rank-{rank}.error"  # a failing rank's traceback (several processes)
    LOSS_PNG = "loss.png"
    LOSS_MEDIAN_PNG = "loss_median.png"
    PER_LEAD_PNG = "per_lead.png"
    TEST_STRIP_PNG = "test_strip.png"
    TRAIN_GIF = "train.gif"
    TEST_GIF = "test.gif"
    FIGURES = (LOSS_PNG, LOSS_MEDIAN_PNG, PER_LEAD_PNG, TEST_STRIP_PNG, TRAIN_GIF, TEST_GIF)
    TEMPORARY = ".*.tmp"              # util.atomic_path's files of a writer that was killed

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @classmethod
    def running(cls, root: str | Path, job_id: str) -> "JobPaths":
        return cls(Path(root) / f"{RUNNING_PREFIX}{job_id}")

    @classmethod
    def completed(cls, root: str | Path, job_id: str) -> "JobPaths":
        return cls(Path(root) / job_id)

    @staticmethod
    def staged_notebook(root: str | Path, job_id: str) -> Path:
        return Path(root) / STAGING / f"{job_id}.ipynb"

    @property
    def in_progress(self) -> bool:
        return self.folder.name.startswith(RUNNING_PREFIX)

    @property
    def job_id(self) -> str:
        name = self.folder.name
        return name[len(RUNNING_PREFIX):] if self.in_progress else name

    @property
    def final(self) -> "JobPaths":
        """results/<job_id>/, where this folder goes when the run ends."""
        return JobPaths(self.folder.with_name(self.job_id))

    params = _file(PARAMS)
    status = _file(STATUS)
    env = _file(ENV)
    history = _file(HISTORY)
    batch_losses = _file(BATCH_LOSSES)
    metrics = _file(METRICS)
    scores = _file(SCORES)
    progress = _file(PROGRESS)
    lock = _file(LOCK)
    checkpoint = _file(CHECKPOINT)
    checkpoint_prev = _file(CHECKPOINT_PREV)
    model = _file(MODEL)
    notebook = _file(NOTEBOOK)
    error = _file(ERROR)
    loss_png = _file(LOSS_PNG)
    loss_median_png = _file(LOSS_MEDIAN_PNG)
    per_lead_png = _file(PER_LEAD_PNG)
    test_strip_png = _file(TEST_STRIP_PNG)
    train_gif = _file(TRAIN_GIF)
    test_gif = _file(TEST_GIF)

    def rank_error(self, rank: int | str) -> Path:
        return self.folder / self.RANK_ERROR.format(rank=rank)

    def rank_errors(self) -> list[Path]:
        return sorted(self.folder.glob(self.RANK_ERROR.format(rank="*")))

    def temporary_files(self) -> list[Path]:
        return list(self.folder.glob(self.TEMPORARY))

    def __repr__(self) -> str:
        return f"JobPaths({str(self.folder)!r})"
