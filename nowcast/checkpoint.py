"""Checkpoint files: `checkpoint.pt` (in progress, for resume) and `model.pt` (the finished
model a user loads). Both are dicts of tensors and plain values that `torch.load(...,
weights_only=True)` accepts: no arbitrary object is ever unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import Config, load_config
from .errors import NowcastError
from .models import get_model
from .util import atomic_path

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"


def save(obj: dict, path: str | Path) -> None:
    """torch.save, atomically: an interrupted write leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> tuple[Config, torch.nn.Module]:
    """A model from a model.pt, without unpickling arbitrary objects (weights_only=True)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NowcastError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise NowcastError(f"{path}: not a nowcast checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise NowcastError(f"{path}: not a nowcast checkpoint (no config/model)")
    cfg = load_config(values=ckpt["config"])
    model = get_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return cfg, model

