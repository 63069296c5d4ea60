"""What every dataset shares: the `Batch` it hands out, the [0, 1] scaling of uint8 frames, and
the readers of `.npz` sequence files."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch

from ..errors import NowcastError


class Batch(NamedTuple):
    """Frames and where they hold data. `train_batch` hands out torch tensors on the dataset's
    device (made there: the model never waits for the host); `split` numpy arrays on the host
    (scored once, in chunks)."""
    frames: Any                    # float32 in [0, 1], (B, T, H, W)
    mask: Optional[Any]            # bool, True where there is data; None: everywhere

    def first(self, n: Optional[int]) -> "Batch":
        """The first n sequences (all of them for None): a subset scored in bounded time."""
        if n is None:
            return self
        return Batch(self.frames[:n], None if self.mask is None else self.mask[:n])


def to_unit(frames):
    """uint8 frames -> float32 in [0, 1] (x / 255), for numpy arrays and torch tensors alike
    (both divide in float32: the same bits)."""
    if isinstance(frames, torch.Tensor):
        return frames.to(torch.float32) / 255.0
    return frames.astype(np.float32) / 255.0


def flip_rotate(clip, rng: np.random.Generator):
    """A random symmetry of the frame drawn from rng, the same for every frame of the clip
    (..., H, W): k quarter turns (square frames; others 0 or 2) and a mirror flip of columns."""
    square = clip.shape[-1] == clip.shape[-2]
    turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    clip = torch.rot90(clip, k=turns, dims=(-2, -1))
    if rng.integers(2):
        clip = torch.flip(clip, dims=(-1,))
    return clip


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


def check_sequence_frames(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """A sequence file's frames must be (N,T,H,W) uint8: NowcastError naming the file."""
    if dtype != np.uint8 or len(shape) != 4:
        raise NowcastError(f"{path}: expected (N,T,H,W) uint8 frames, got {dtype} {tuple(shape)}")


def read_sequence_file(path: Path) -> np.ndarray:
    """An (N,T,H,W) uint8 array from a .npz (key 'frames', or its only array)."""
    frames = load_npz(path)["frames"]
    check_sequence_frames(path, frames.dtype, frames.shape)
    return frames


def npz_header(path: Path, key: str = "frames") -> Optional[tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of array `key` (or of the only array) of an .npz/.npy file, read from
    its header without loading it; None when the file cannot tell (its readers then report it)."""
    try:
        if Path(path).suffix == ".npy":
            with open(path, "rb") as f:
                return _npy_header(f)
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".npy")]
            name = f"{key}.npy" if f"{key}.npy" in names else (names[0] if len(names) == 1 else None)
            if name is None:
                return None
            with z.open(name) as f:
                return _npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None


def npz_shape(path: Path, key: str = "frames") -> Optional[tuple[int, ...]]:
    """The shape part of npz_header."""
    header = npz_header(path, key)
    return None if header is None else header[0]


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read(f)
    return tuple(shape), dtype
