"""TensorBoard event files in every run's folder, so that `tensorboard --logdir results`
shows every run live, locally and on a cluster.

Written by rank 0 into the run's folder (it moves with it when the run completes), at the
moments training already holds the values on the host (never per step, which would wait for
the device): after each validation, the history row (train and validation loss, learning
rate, training sequences/s) and the first validation sequence's forecast as images (inputs,
target and prediction side by side); at each flush, the batch losses of the steps since.

    board = Board(run_dir)          # tensorboard absent: one notice line, then a no-op
    board.history(row, sequences_per_s)
    board.batch_losses(rows)
    board.frames(step, inputs, target, prediction)

tensorboard is an optional dependency (`pip install nowcast[tensorboard]`); the report does
not read the event files (history.csv and batch_losses.csv are the record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .errors import MissingDependency
from .util import optional_import

# the history row's columns as TensorBoard tags (history.csv is the record these mirror)
SCALARS = {"train_loss": "loss/train", "val_loss": "loss/validation", "lr": "learning_rate"}


class Board:
    def __init__(self, run_dir: Optional[Path], out=print) -> None:
        self.writer = None
        if run_dir is None:
            return
        try:
            module = optional_import("torch.utils.tensorboard", "tensorboard")
        except MissingDependency as e:
            out(f"nowcast: no TensorBoard curves ({e})")
            return
        self.writer = module.SummaryWriter(log_dir=str(run_dir), flush_secs=30)

    def history(self, row: dict, sequences_per_s: Optional[float] = None) -> None:
        if self.writer is None:
            return
        for key, tag in SCALARS.items():
            self.writer.add_scalar(tag, row[key], row["step"])
        if sequences_per_s is not None:
            self.writer.add_scalar("sequences_per_s", sequences_per_s, row["step"])
        self.writer.flush()

    def batch_losses(self, rows: list[dict]) -> None:
        if self.writer is None:
            return
        for row in rows:
            self.writer.add_scalar("loss/batch", row["loss"], row["step"])

    def frames(self, step: int, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray) -> None:
        """One sequence as three image rows: inputs, target, prediction ((T, H, W) in [0, 1])."""
        if self.writer is None:
            return
        for tag, frames in (("inputs", inputs), ("target", target), ("prediction", pred)):
            strip = np.concatenate(list(np.clip(frames, 0, 1)), axis=-1)[None]  # (1, H, T*W)
            self.writer.add_image(f"validation/{tag}", strip, step, dataformats="CHW")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
