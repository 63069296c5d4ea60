"""Checkpoint files: `checkpoint.pt` (in progress, for resume) and `model.pt` (the finished
model a user loads). Both are dicts of tensors and plain values that `torch.load(...,
weights_only=True)` accepts: no arbitrary object is ever unpickled.

A resumable run never depends on one file: `save` keeps the checkpoint it replaces as
`checkpoint.prev.pt`, and `load_resume` falls back to it when `checkpoint.pt` is unreadable.
A write that fails (full disk, file-size limit) leaves both as they were and stops the run
with CheckpointWriteError: the folder stays resumable from the last good checkpoint.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from .config import Config, load_config, without_unused
from .options import of_its_time
from .errors import NowcastError, RunStopped, described, first_line
from .models import get_model
from .paths import JobPaths
from .protocols import KNMI_DT_MIN, KNMI_PIXEL_KM
from .util import atomic_path

# checkpoint.pt: everything a resumed run restores (training.Trainer.save and .resume)
RESUME_KEYS = ("model", "optimizer", "scheduler", "step", "rng", "config", "history",
               "batch_losses", "best_val", "best_state", "train_seconds", "sequences",
               "validation_seconds", "stopped")
# model.pt: what load_checkpoint reads (the selected weights, the config, the frame size it was
# built for); a run's own model.pt also keeps the last weights and the optimiser state
MODEL_KEYS = ("model", "config", "frame_shape", "grid")  # grid: radar models only

class CheckpointWriteError(RunStopped):
    """A checkpoint could not be written; the previous one is kept (status `preempted`,
    stopped_by `write_error`: resumable once there is space again)."""

    reason = "write_error"


class CheckpointMismatch(RunStopped):
    """checkpoint.pt holds the weights of another model than the run's params build: nothing
    is loaded and the folder stays as it was (status `preempted`, stopped_by
    `checkpoint_mismatch`), to be resumed with the params that made it, or started again
    once checkpoint.pt is moved away."""

    reason = "checkpoint_mismatch"


def weights_mismatch(model: torch.nn.Module, weights: dict) -> Optional[str]:
    """Why `weights` cannot load into `model` (built on any device, "meta" included: nothing
    is allocated), naming the first missing, unexpected or differently shaped tensor; None
    when every name and shape agree."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if len(given) != len(weights):
        return "a weight that is not a tensor"
    for key in expected.keys() - given.keys():
        return f"'{key}' is missing"
    for key in given.keys() - expected.keys():
        return f"'{key}' is not a weight of this model"
    for key, shape in expected.items():
        if given[key] != shape:
            return f"'{key}' is {list(given[key])}, the model's {list(shape)}"
    return None


def non_finite(weights: dict) -> Optional[str]:
    """The name of the first floating-point tensor with a NaN or infinite value; None if none."""
    for key, value in weights.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            return key
    return None


def check_resume_weights(model: torch.nn.Module, ckpt: dict, path: str | Path) -> None:
    """CheckpointMismatch unless checkpoint.pt's weights load into the run's model."""
    wrong = weights_mismatch(model, ckpt["model"])
    if wrong:
        raise CheckpointMismatch(f"{path} holds another model's weights ({wrong}): resume with "
                                 f"the params that made it, or move it away to start again")


def previous(path: str | Path) -> Path:
    """checkpoint.pt -> checkpoint.prev.pt: the last good checkpoint before this one."""
    return JobPaths(Path(path).parent).checkpoint_prev


def save_checkpoint(obj: dict, path: str | Path) -> None:
    """torch.save, atomically: an interrupted write leaves the previous file intact; a
    checkpoint.pt it replaces is kept as checkpoint.prev.pt.
    Raises CheckpointWriteError when the file cannot be written (torch reports a short write
    as a RuntimeError, the OS as OSError)."""
    path = Path(path)
    keep_previous = path.name == JobPaths.CHECKPOINT
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
            if keep_previous and path.is_file():
                os.replace(path, previous(path))  # load_resume falls back to it
    except (OSError, RuntimeError) as e:
        kept = " the previous checkpoint is kept;" if path.is_file() or previous(path).is_file() else ""
        reason = first_line(getattr(e, "strerror", None) or e)  # OSError: without its errno
        raise CheckpointWriteError(
            f"{path} could not be written ({reason}: disk full or file-size limit?);"
            f"{kept} the run can resume once there is space") from None


def save_resume_state(path: str | Path, **state: Any) -> None:
    """checkpoint.pt from exactly RESUME_KEYS (save_checkpoint: atomic, the previous kept)."""
    if set(state) != set(RESUME_KEYS):
        raise ValueError(f"a checkpoint holds {RESUME_KEYS}, got {tuple(state)}")
    save_checkpoint(state, path)


def model_file(paths: JobPaths, best_state: dict, last_state: dict,
               frame_shape: tuple[int, int], grid: Optional[dict] = None) -> None:
    """model.pt of a completed run: checkpoint.pt's state with the selected weights as
    `model`, the last ones as `last_model`, the training frames' size (what load_checkpoint
    rebuilds at) and, for radar, the grid it reads (time step, pixel size: predict checks its
    input against it); without the history (it is in history.csv)."""
    state = safe_load(paths.checkpoint)
    state.update(model=best_state, last_model=last_state, frame_shape=list(frame_shape))
    if grid is not None:
        state["grid"] = dict(grid)
    save_checkpoint({k: v for k, v in state.items() if k not in ("history", "batch_losses")},
                    paths.model)


def slim(state: dict) -> dict:
    """MODEL_KEYS of a model.pt: what a forecast needs (reference_results/ ships these)."""
    return {k: state[k] for k in MODEL_KEYS if k in state}


def safe_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """torch.load without unpickling arbitrary objects (weights_only=True) and without torch's
    warnings on stderr (a plain pickle's protocol note): the caller says what went wrong."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


def unreadable(error: BaseException) -> str:
    """Why a checkpoint could not be read, in one line: an unpickling error by its type alone
    (torch's message advises weights_only=False, which would run the file's code: never
    relayed), anything else described."""
    if isinstance(error, pickle.UnpicklingError):
        return f"{type(error).__name__}: not a file of tensors and plain values"
    return described(error)


def _readable(path: Path, map_location: Any) -> tuple[Optional[dict], str]:
    """(checkpoint dict, "") or (None, why not)."""
    try:
        ckpt = safe_load(path, map_location)
    except Exception as e:  # truncated zip, pickle or format errors: all mean unreadable
        return None, unreadable(e)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "step" not in ckpt:
        return None, "not a training checkpoint"
    return ckpt, ""


def load_resume(path: str | Path, map_location: Any = "cpu") -> Optional[dict]:
    """The checkpoint to resume from: checkpoint.pt, else (unreadable) checkpoint.prev.pt,
    which then replaces it; None when there is none (start at step 0).

    Each fallback is said in one line on stderr. Unreadable files are kept as *.corrupt for a
    look, never deleted; with no readable checkpoint at all training starts again."""
    path = Path(path)
    prev = previous(path)
    why = ""
    if path.is_file():
        ckpt, why = _readable(path, map_location)
        if ckpt is not None:
            return ckpt
        os.replace(path, path.with_suffix(".corrupt"))
    if prev.is_file():
        ckpt, why_prev = _readable(prev, map_location)
        if ckpt is not None:
            if why:
                print(f"nowcast: {path} is unreadable ({why}); resuming from {prev.name} "
                      f"(step {int(ckpt['step'])})", file=sys.stderr, flush=True)
            os.replace(prev, path)
            return ckpt
        os.replace(prev, prev.with_suffix(".corrupt"))
        why = why or why_prev
    if why:
        print(f"nowcast: no readable checkpoint in {path.parent} ({why}); training starts "
              f"again from step 0", file=sys.stderr, flush=True)
    return None


def load_checkpoint(path: str | Path) -> tuple[Config, torch.nn.Module]:
    """A model from a model.pt, without unpickling arbitrary objects (weights_only=True)."""
    if Path(path).exists() and not Path(path).is_dir() and not Path(path).is_file():
        raise NowcastError(f"{path}: not a regular file (a FIFO or a device): not read")
    try:
        ckpt = safe_load(path)
    except FileNotFoundError:
        raise NowcastError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise NowcastError(f"{path}: a folder, not a checkpoint file") from None
    except Exception as e:
        raise NowcastError(f"{path}: not a nowcast checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or not {"config", "model"} <= set(ckpt):
        raise NowcastError(f"{path}: not a nowcast checkpoint (no config/model)")
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise NowcastError(f"{path}: not a nowcast checkpoint (its config or weights are not "
                           f"mappings)")
    try:  # a config written before unused fields were null: they are no given values
        cfg = load_config(values=of_its_time(without_unused(ckpt["config"])))
    except NowcastError as e:
        raise NowcastError(f"{path}: the checkpoint's config is invalid ({e})") from None
    shape = ckpt.get("frame_shape")  # the training frames it was built for (older: image_size)
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2
            and all(isinstance(s, int) and s > 0 for s in shape)):
        shape = None
    # checked on the meta device first: a config of sizes no machine holds, beside a small
    # file of other weights, is refused before anything is allocated
    wrong = weights_mismatch(get_model(cfg, device="meta", frame_shape=shape), ckpt["model"])
    if wrong:
        raise NowcastError(f"{path}: its weights do not match its config ({wrong})")
    bad = non_finite(ckpt["model"])
    if bad:  # NaN weights forecast NaN, which every output would clamp to 0 (dry), silently
        raise NowcastError(f"{path}: weight '{bad}' holds NaN or infinite values: not a usable model")
    model = get_model(cfg, frame_shape=shape)
    model.load_state_dict(ckpt["model"])
    model.eval()
    model.grid = recorded_grid(cfg, ckpt.get("grid"))
    return cfg, model


def recorded_grid(cfg: Config, grid: Any) -> dict:
    """The grid a radar model reads: as its model.pt records it (time step in minutes, pixel
    size in km, each a positive number or None), else, for a model written before the grid was
    recorded, the protocol's (KNMI-30/60: 5-minute frames of 4 km blocks of 1 km pixels)."""
    if isinstance(grid, dict):
        return {k: grid.get(k) if isinstance(grid.get(k), (int, float))
                and not isinstance(grid.get(k), bool) and grid.get(k) > 0 else None
                for k in ("dt_min", "pixel_km")}
    if cfg.protocol == "knmi-30-60" and cfg.radar_recipe == "blocks":
        return {"dt_min": KNMI_DT_MIN, "pixel_km": KNMI_PIXEL_KM * cfg.block_size}
    return {"dt_min": None, "pixel_km": None}
