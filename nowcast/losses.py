"""Training losses. Models output logits; every loss takes (logits, target, mask).

mask (bool, same shape as target, or None) marks pixels with data (radar no-data is excluded).
SSIM comes from torchmetrics (Gaussian 11x11 window, sigma 1.5, data range 1); it does not
take a mask, so masked pixels are set to the target's value before it is computed.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure as _ssim

LossFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def _masked_mean(values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp_min(1)


def bce(logits, target, mask=None):
    return _masked_mean(F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none"), mask)


def mse(logits, target, mask=None):
    return _masked_mean((torch.sigmoid(logits.float()) - target) ** 2, mask)


def ssim_value(pred: torch.Tensor, target: torch.Tensor, reduction: str = "elementwise_mean") -> torch.Tensor:
    """SSIM of (..., H, W) frames in [0, 1], per frame with reduction='none'."""
    shape = pred.shape
    flat = lambda x: x.reshape(-1, 1, *shape[-2:]).float()
    out = _ssim(flat(pred), flat(target), gaussian_kernel=True, kernel_size=11, sigma=1.5,
                data_range=1.0, reduction=reduction)
    return out.reshape(shape[:-2]) if reduction == "none" else out


def ssim_loss(logits, target, mask=None):
    pred = torch.sigmoid(logits.float())
    if mask is not None:
        pred = torch.where(mask, pred, target)
    return 1 - ssim_value(pred, target)


def make_loss(name: str, ssim_weight: float = 0.5) -> LossFn:
    if name == "bce":
        return bce
    if name == "mse":
        return mse
    if name == "ssim":
        return ssim_loss
    if name == "mse_ssim":
        return lambda logits, target, mask=None: ((1 - ssim_weight) * mse(logits, target, mask)
                                                  + ssim_weight * ssim_loss(logits, target, mask))
    raise ValueError(f"unknown loss '{name}'")
