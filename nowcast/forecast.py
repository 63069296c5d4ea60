"""Running a model over frames: forecasts (padded to the model's down-sampling and cropped
back), and the loss and per-lead image metrics over a whole split. Frames are
to_frames(raw, model.output, clip=True): in [0, 1] whatever the output mapping."""

from __future__ import annotations

import torch

from .metrics import ImageMetrics
from .models.base import to_frames
from .runtime import Runtime


def output_of(model) -> str:
    """The model's output mapping (base.OUTPUTS); 'sigmoid' for a model that does not say."""
    return getattr(model, "output", "sigmoid")


def forecast_logits(model, inputs: torch.Tensor, k_out: int, runtime: Runtime) -> torch.Tensor:
    """Raw outputs (B, k_out, H, W) (logits for output 'sigmoid') for inputs (B, k_in, H, W)
    in [0, 1], without gradients (the model pads the frames to its down-sampling and crops
    the forecast back: base.SequenceModel.forward)."""
    # eager even where training compiled the cells: a forecast's batch (a last partial batch, a
    # figure's few sequences) would compile new graphs, minutes on a GPU for seconds of work
    with torch.no_grad(), runtime.autocast(), torch.compiler.set_stance("force_eager"):
        return model(inputs, k_out)


def forecast(model, inputs: torch.Tensor, k_out: int, runtime: Runtime) -> torch.Tensor:
    """Predicted frames (B, k_out, H, W) in [0, 1] for inputs (B, k_in, H, W) in [0, 1]."""
    return to_frames(forecast_logits(model, inputs, k_out, runtime).float(), output_of(model))


def evaluate_split(model, batch, k_in: int, k_out: int, loss_fn, runtime: Runtime,
                   batch_size: int = 32, with_metrics: bool = True) -> tuple[float, ImageMetrics | None]:
    """Mean loss (weighted by sequences) and, optionally, the image metrics accumulated over a
    split (`.result()` per lead, `.per_sequence()` per sequence)."""
    was_training = model.training
    model.eval()
    frames = batch.frames
    metrics = ImageMetrics(k_out) if with_metrics else None
    total, count = 0.0, 0
    for start in range(0, len(frames), batch_size):
        chunk = torch.as_tensor(frames[start:start + batch_size, :k_in + k_out]).to(runtime.device)
        mask = None
        if batch.mask is not None:
            mask = torch.as_tensor(batch.mask[start:start + batch_size, k_in:k_in + k_out]).to(runtime.device)
        logits = forecast_logits(model, chunk[:, :k_in], k_out, runtime)
        target = chunk[:, k_in:]
        total += float(loss_fn(logits, target, mask)) * len(chunk)
        count += len(chunk)
        if metrics is not None:
            metrics.update(to_frames(logits.float(), output_of(model)), target)
    model.train(was_training)
    return total / max(count, 1), metrics
