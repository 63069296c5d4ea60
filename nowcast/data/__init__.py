"""Sequence data behind one interface (docs/architecture.md): get_data(cfg) -> SequenceData.

| dataset | module           | what                                                   |
|---------|------------------|--------------------------------------------------------|
| mmnist  | moving_mnist.py  | Moving MNIST generated from real digits                |
| npz     | (here)           | any (N,T,H,W) uint8 sequence file, split by sequence   |
| radar   | radar.py         | PV-encoded radar composites, split by storm event      |
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from ..config import Config, data_dir
from ..errors import NowcastError
from . import moving_mnist


class Batch(NamedTuple):
    frames: np.ndarray             # float32 in [0, 1], (B, T, H, W)
    mask: Optional[np.ndarray]     # bool, True where there is data; None: everywhere


def to_unit(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 255.0


class MovingMNIST:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.pools, source, self.follows_protocol = moving_mnist.load_digit_pools(cfg.digits, data_dir(cfg))
        self.follows_protocol = self.follows_protocol and cfg.protocol != "none"
        self.length = cfg.k_in + cfg.k_out
        self.frame_shape = (cfg.image_size, cfg.image_size)
        label = cfg.protocol.upper() if self.follows_protocol else "Moving MNIST (no protocol)"
        self.description = (f"{label}: {cfg.num_digits} digit(s), {cfg.image_size}px, "
                            f"{cfg.k_in}+{cfg.k_out} frames, speed [{cfg.speed_min:g}, "
                            f"{cfg.speed_max:g}) px/frame; {source}")
        self._fixed_train = None
        self._splits: dict[str, Batch] = {}  # the cached file holds 160 MB for MMNIST-10's test set

    def _generate(self, pool: np.ndarray, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        c = self.cfg
        return moving_mnist.generate(pool, rng, n, length, c.image_size, c.num_digits,
                                     c.speed_min, c.speed_max)

    def train_batch(self, step: int, batch_size: int, length: int) -> Batch:
        c = self.cfg
        if not c.train_fixed:
            rng = np.random.default_rng([c.seed, step])
            return Batch(to_unit(self._generate(self.pools["train"], rng, batch_size, length)), None)
        if self._fixed_train is None:  # the thesis's fixed training set, drawn from the run's seed
            rng = np.random.default_rng([c.seed, 2**31])
            self._fixed_train = self._generate(self.pools["train"], rng, c.train_sequences, self.length)
        steps_per_epoch = max(1, c.train_sequences // batch_size)
        epoch, index = divmod(step, steps_per_epoch)
        order = np.random.default_rng([c.seed, epoch]).permutation(c.train_sequences)
        rows = order[index * batch_size:(index + 1) * batch_size]
        return Batch(to_unit(self._fixed_train[rows, :length]), None)

    def split(self, which: str) -> Batch:
        if which not in self._splits:
            c = self.cfg
            n = c.val_sequences if which == "val" else c.test_sequences
            frames = moving_mnist.cached_split(self.pools[which], which, n, self.length, c.image_size,
                                               c.num_digits, c.speed_min, c.speed_max, self.description)
            self._splits[which] = Batch(to_unit(frames), None)
        return self._splits[which]


def load_npz(path: Path, what: str = "data") -> dict[str, np.ndarray]:
    """Every array of an .npz, with 'frames' the array of that name (or the file's only array).
    Missing, unreadable or ambiguous files raise a one-line NowcastError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.keys()}
    except FileNotFoundError:
        raise NowcastError(f"{path}: no such {what} file") from None
    except Exception as e:  # zip, pickle and format errors all mean the same to the user
        raise NowcastError(f"{path}: not a readable .npz file ({type(e).__name__})") from None
    if "frames" not in arrays:
        if len(arrays) != 1:
            raise NowcastError(f"{path}: expected an array 'frames' (found {sorted(arrays)})")
        arrays = {"frames": next(iter(arrays.values()))}
    return arrays


def read_sequence_file(path: Path) -> np.ndarray:
    """An (N,T,H,W) uint8 array from a .npz (key 'frames', or its only array)."""
    frames = load_npz(path)["frames"]
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise NowcastError(f"{path}: expected (N,T,H,W) uint8 frames, got {frames.dtype} {frames.shape}")
    return frames


class SequenceFile:
    """Any (N,T,H,W) uint8 file: 80/10/10 split by whole sequence (fixed permutation)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        path = Path(cfg.data_file)
        frames = read_sequence_file(path)
        n, t, h, w = frames.shape
        if t < cfg.k_in + cfg.k_out:
            raise NowcastError(f"{path}: sequences have {t} frames, k_in + k_out needs {cfg.k_in + cfg.k_out}")
        if n < 3:
            raise NowcastError(f"{path}: need at least 3 sequences to split train/val/test, got {n}")
        order = np.random.default_rng(0).permutation(n)
        n_test = max(1, n // 10)
        n_val = max(1, n // 10)
        self.index = {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test:n_test + n_val]),
                      "train": np.sort(order[n_test + n_val:])}
        self.frames = frames
        self.frame_shape = (h, w)
        self.follows_protocol = False
        self.description = (f"sequence file {path.name}: {n} sequences of {t} frames {h}x{w}, "
                            f"split by sequence {len(self.index['train'])}/{n_val}/{n_test}")

    def train_batch(self, step: int, batch_size: int, length: int) -> Batch:
        rng = np.random.default_rng([self.cfg.seed, step])
        rows = rng.choice(self.index["train"], size=batch_size)
        starts = rng.integers(0, self.frames.shape[1] - length + 1, size=batch_size)
        return Batch(to_unit(np.stack([self.frames[r, s:s + length] for r, s in zip(rows, starts)])), None)

    def split(self, which: str) -> Batch:
        length = self.cfg.k_in + self.cfg.k_out
        return Batch(to_unit(self.frames[self.index[which], :length]), None)


def get_data(cfg: Config):
    if cfg.dataset == "mmnist":
        return MovingMNIST(cfg)
    if cfg.dataset == "npz":
        return SequenceFile(cfg)
    if cfg.dataset == "radar":
        from .radar import RadarData
        return RadarData(cfg)
    raise NowcastError(f"unknown dataset '{cfg.dataset}'")
