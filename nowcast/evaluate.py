"""Running a model over a split: forecasts, the loss, and the per-lead metrics."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import ImageMetrics


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed; `mode` is what env.json reports."""
    device: torch.device
    precision: str      # fp32 | bf16
    compile: bool

    @property
    def mode(self) -> str:
        return "reference" if self.precision == "fp32" and not self.compile else "fast"

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve_runtime(cfg) -> Runtime:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        from .errors import NowcastError
        raise NowcastError("device: cuda requested but no CUDA device is available")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process under torchrun
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    gpu = device.type == "cuda"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if gpu else "fp32")
    compile_ = cfg.compile == "on" or (cfg.compile == "auto" and gpu)
    return Runtime(device, precision, compile_)


def set_determinism(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def padded(frames: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (..., H, W) at the bottom/right to a multiple of the model's down-sampling."""
    h, w = frames.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(frames, (0, pw, 0, ph)) if ph or pw else frames), (h, w)


def forecast_logits(model, inputs: torch.Tensor, k_out: int, runtime: Runtime) -> torch.Tensor:
    """Logits (B, k_out, H, W) for inputs (B, k_in, H, W) in [0, 1], without gradients; inputs
    are padded to the model's down-sampling and the forecast cropped back."""
    x, (h, w) = padded(inputs, getattr(model, "downsampling", 1))
    with torch.no_grad(), runtime.autocast():
        return model(x, k_out)[..., :h, :w]


def forecast(model, inputs: torch.Tensor, k_out: int, runtime: Runtime) -> torch.Tensor:
    """Predicted frames (B, k_out, H, W) in [0, 1] for inputs (B, k_in, H, W) in [0, 1]."""
    return torch.sigmoid(forecast_logits(model, inputs, k_out, runtime).float())


def evaluate_split(model, batch, k_in: int, k_out: int, loss_fn, runtime: Runtime,
                   batch_size: int = 32, with_metrics: bool = True) -> tuple[float, dict | None]:
    """Mean loss (weighted by sequences) and, optionally, per-lead image metrics over a split."""
    was_training = model.training
    model.eval()
    frames = batch.frames
    metrics = ImageMetrics(k_out) if with_metrics else None
    total, count = 0.0, 0
    for start in range(0, len(frames), batch_size):
        chunk = torch.from_numpy(frames[start:start + batch_size, :k_in + k_out]).to(runtime.device)
        mask = None
        if batch.mask is not None:
            mask = torch.from_numpy(batch.mask[start:start + batch_size, k_in:k_in + k_out]).to(runtime.device)
        logits = forecast_logits(model, chunk[:, :k_in], k_out, runtime)
        target = chunk[:, k_in:]
        total += float(loss_fn(logits, target, mask)) * len(chunk)
        count += len(chunk)
        if metrics is not None:
            metrics.update(torch.sigmoid(logits.float()), target)
    model.train(was_training)
    return total / max(count, 1), (metrics.result() if metrics is not None else None)
