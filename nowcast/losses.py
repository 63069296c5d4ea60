"""Training losses. Models output raw values; every loss takes (raw, target, mask).

`output` says how raw values become frames (nowcast.models.base.OUTPUTS): 'sigmoid' (raw are
logits) or 'relu' (the thesis; not clipped at 1 here, as the thesis clips only "in the end").
bce is binary cross-entropy on the logits, so it needs output 'sigmoid'.
mask (bool, same shape as target, or None) marks pixels with data (radar no-data is excluded).
SSIM comes from torchmetrics (Gaussian 11x11 window, sigma 1.5, data range 1); it does not
take a mask, so masked pixels are set to the target's value before it is computed.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .errors import NowcastError
from .metrics import ssim_value
from .models.base import get_output, to_frames

LossFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
LOSSES = ("bce", "mse", "ssim", "mse_ssim")


def _masked_mean(values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp_min(1)


def bce(logits, target, mask=None):
    return _masked_mean(F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none"), mask)


def mse(raw, target, mask=None, output: str = "sigmoid"):
    """Masked mean of (frames - target)^2, frames = to_frames(raw, output, clip=False)."""
    return _masked_mean((to_frames(raw.float(), output, clip=False) - target) ** 2, mask)


def ssim_loss(raw, target, mask=None, output: str = "sigmoid"):
    """1 - SSIM(frames, target), frames = to_frames(raw, output, clip=False)."""
    pred = to_frames(raw.float(), output, clip=False)
    if mask is not None:
        pred = torch.where(mask, pred, target)
    return 1 - ssim_value(pred, target)


def make_loss(name: str, ssim_weight: float = 0.5, output: str = "sigmoid") -> LossFn:
    """The loss `name` on the raw output of a model whose frames are `output`."""
    get_output(output)
    if name == "bce":
        if output != "sigmoid":
            raise NowcastError(f"loss 'bce' is cross-entropy on logits: it needs output "
                               f"'sigmoid', got output '{output}'")
        return bce
    if name == "mse":
        return lambda raw, target, mask=None: mse(raw, target, mask, output)
    if name == "ssim":
        return lambda raw, target, mask=None: ssim_loss(raw, target, mask, output)
    if name == "mse_ssim":
        return lambda raw, target, mask=None: ((1 - ssim_weight) * mse(raw, target, mask, output)
                                               + ssim_weight * ssim_loss(raw, target, mask, output))
    raise NowcastError(f"loss '{name}' is not one of: {', '.join(LOSSES)}")
