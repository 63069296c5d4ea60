"""Any (N, T, H, W) uint8 sequence file, split by whole sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..errors import NowcastError
from .base import Batch, read_sequence_file, to_unit


MIN_SEQUENCES = 3  # one each for training, validation and test


class SequenceFile:
    """Any (N,T,H,W) uint8 file: 80/10/10 split by whole sequence (fixed permutation)."""

    def __init__(self, cfg: Config, device: torch.device = torch.device("cpu"),
                 every_sequence: bool = False):
        self.cfg = cfg
        path = Path(cfg.data_file)
        frames = read_sequence_file(path)
        n, t, h, w = frames.shape
        if t < cfg.k_in + cfg.k_out:
            raise NowcastError(f"{path}: sequences have {t} frames, k_in + k_out needs {cfg.k_in + cfg.k_out}")
        if every_sequence:  # evaluate --data --all: every sequence is a test sequence
            self._every_sequence(path, frames)
            return
        if n < MIN_SEQUENCES:
            raise NowcastError(f"{path}: need at least {MIN_SEQUENCES} sequences to split "
                               f"train/val/test, got {n}")
        order = np.random.default_rng(0).permutation(n)
        n_test = max(1, n // 10)
        n_val = max(1, n // 10)
        self.index = {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test:n_test + n_val]),
                      "train": np.sort(order[n_test + n_val:])}
        self.frames = frames
        self.train_frames = torch.from_numpy(frames).to(device)  # batches are cut on the device
        self.frame_shape = (h, w)
        self.follows_protocol = False
        self.description = (f"sequence file {path.name}: {n} sequences of {t} frames {h}x{w}, "
                            f"split by sequence {len(self.index['train'])}/{n_val}/{n_test}")

    def _every_sequence(self, path: Path, frames: np.ndarray) -> None:
        n, t, h, w = frames.shape
        self.index = {"test": np.arange(n), "val": np.arange(0), "train": np.arange(0)}
        self.frames, self.train_frames = frames, None
        self.frame_shape, self.follows_protocol = (h, w), False
        self.description = (f"sequence file {path.name}: {n} sequences of {t} frames {h}x{w}, "
                            f"every one scored")

    def train_batch(self, step: int, batch_size: int, length: int) -> Batch:
        rng = np.random.default_rng([self.cfg.seed, step])
        rows = rng.choice(self.index["train"], size=batch_size)
        starts = rng.integers(0, self.frames.shape[1] - length + 1, size=batch_size)
        device = self.train_frames.device
        times = torch.as_tensor(starts[:, None] + np.arange(length), device=device)
        clips = self.train_frames[torch.as_tensor(rows, device=device)[:, None], times]
        return Batch(to_unit(clips), None)

    def split(self, which: str) -> Batch:
        length = self.cfg.k_in + self.cfg.k_out
        return Batch(to_unit(self.frames[self.index[which], :length]), None)
