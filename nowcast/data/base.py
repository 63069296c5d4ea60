"""What every dataset shares: the `Batch` it hands out, the [0, 1] scaling of uint8 frames, and
the readers of `.npz` sequence files."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from ..errors import NowcastError


class Batch(NamedTuple):
    frames: np.ndarray             # float32 in [0, 1], (B, T, H, W)
    mask: Optional[np.ndarray]     # bool, True where there is data; None: everywhere


def to_unit(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 in [0, 1] (x / 255)."""
    return frames.astype(np.float32) / 255.0


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
