"""Sizes no run can have, refused when its params are validated (config.validate), before
anything allocates them: a typo such as `batch_size: 1000000000` ends in one line naming the
field, not in a MemoryError minutes later. Bounds are computed from the params alone (cheap);
what does fit a given machine is found out at run time (experiment.out_of_memory).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from .errors import NowcastError

MAX_JOB_ID = 200     # bytes: results/.running-<job_id>/ and its files stay under NAME_MAX (255)
MAX_SEED = 2 ** 32   # numpy's legacy seeding and SeedSequence words take seeds below it
MAX_BYTES = 1 << 40  # no array of a run may pass 1 TiB: a size beyond it is a typo


def size_text(n: float) -> str:
    """Bytes as people read them: 305.2 TiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_job_id(job_id: Optional[str]) -> None:
    if job_id is None:
        return
    if not job_id or "/" in job_id or job_id.startswith(".") or not job_id.isprintable():
        raise NowcastError(f"'job_id' must be a plain folder name, got {job_id!r:.80}")
    if len(job_id.encode()) > MAX_JOB_ID:
        raise NowcastError(f"'job_id' is too long ({len(job_id.encode())} bytes; at most "
                           f"{MAX_JOB_ID}: it names a folder)")


def check_sizes(cfg: Any) -> None:
    """The seed's range, and the float32 frames a run holds at once: a training batch, and
    the Moving MNIST splits
    (generated at image_size). Data files (npz, radar: image_size null) bring their own frame
    size, bounded when they are read (data.check)."""
    if not 0 <= cfg.seed < MAX_SEED:
        raise NowcastError(f"'seed' must be in [0, 2**32), got {str(cfg.seed)[:40]}")
    if cfg.image_size is None:
        return
    frames = max(cfg.k_in + cfg.k_out, 2 * max(cfg.curriculum or [0]))
    frame = frames * cfg.image_size ** 2 * 4
    counts = [("batch_size", cfg.batch_size, "one training batch")]
    if cfg.dataset == "mmnist":
        counts += [("val_sequences", cfg.val_sequences, "the validation split"),
                   ("test_sequences", cfg.test_sequences, "the test split")]
        if cfg.train_fixed:
            counts.append(("train_sequences", cfg.train_sequences, "the fixed training set"))
    for key, n, what in counts:
        if n * frame > MAX_BYTES:
            raise NowcastError(
                f"'{key}' {n:,} makes {what} {size_text(n * frame)} ({key} x {frames} frames "
                f"x image_size {cfg.image_size}² x 4 bytes); the limit is {size_text(MAX_BYTES)}")


def check_weights(cfg: Any, parameters: int) -> None:
    """The model's float32 weights (counted on the meta device: nothing allocated)."""
    if 4 * parameters > MAX_BYTES:
        raise NowcastError(
            f"hidden_sizes {cfg.hidden_sizes}, filter_size {cfg.filter_size} and image_size "
            f"{cfg.image_size} make {parameters:,} parameters ({size_text(4 * parameters)} of "
            f"weights); the limit is {size_text(MAX_BYTES)}")


def check_memory(cfg: Any, parameters: int, frame: tuple[int, int], multiple: int,
                 available: int, device: str) -> None:
    """Refuse a run whose training step needs more than the device has (`available` bytes),
    before anything is allocated. The need is a lower bound: the weights with their gradient
    and Adam's two moments (16 bytes a parameter); the batch's float32 frames; and, for every
    frame of the sequence and every layer, what backward keeps of its cell: the gate
    pre-activations, c and h (6 x hidden channels of float32), counted at the coarsest
    resolution of the stack (the frame over `multiple`, the patch times the down-sampling)."""
    frames = max(cfg.k_in + cfg.k_out, 2 * max(cfg.curriculum or [0]))
    h, w = frame
    weights = 16 * parameters
    batch = cfg.batch_size * frames * h * w * 4
    positions = max(1, h // multiple) * max(1, w // multiple)
    if getattr(cfg, "architecture", None) == "simvp":  # no cells: each frame's encoding
        states = cfg.batch_size * frames * cfg.hid_S * positions * 4
    else:
        states = cfg.batch_size * frames * 6 * sum(cfg.hidden_sizes) * positions * 4
    need = weights + batch + states
    if need > available:
        raise NowcastError(
            f"this run needs at least {size_text(need)} on {device} ({size_text(weights)} of "
            f"weights and optimiser state, {size_text(batch)} of frames, {size_text(states)} of "
            f"cell states kept for backward: batch_size {cfg.batch_size} x {frames} frames), which "
            f"has {size_text(available)}: make batch_size, k_in + k_out or hidden_sizes smaller")


# collectives of several processes time out after this (distributed.py; --collective-timeout)
DEFAULT_TIMEOUT_S = 300.0


def collective_timeout(value: Any, what: str = "--collective-timeout") -> float:
    """The collective timeout in seconds: DEFAULT_TIMEOUT_S for None, else a positive number
    (NowcastError naming `what` otherwise: 0 or less would end every collective at once)."""
    if value is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise NowcastError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)
