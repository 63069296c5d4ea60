"""Training losses. Models output raw values; every loss takes (raw, target, mask).

`output` says how raw values become frames (nowcast.models.base.OUTPUTS): 'sigmoid' (raw are
logits), 'relu' (the thesis; not clipped at 1 here, as the thesis clips only "in the end") or
'linear' (raw values, unclamped here).
bce is binary cross-entropy on the logits, so it needs output 'sigmoid'.
mask (bool, same shape as target, or None) marks pixels with data (radar no-data is excluded).
SSIM is metrics.ssim_value (Gaussian 11x11 window, sigma 1.5, data range 1); it does not
take a mask, so masked pixels are set to the target's value before it is computed.

`balanced` (radar only) is Shi et al. (2017)'s B-MSE + B-MAE: squared plus absolute error, each
pixel weighted by the target's intensity class, so that rain, rare and what the scores are
about, is not averaged away by the dry pixels that MSE is mostly made of (an MSE-trained radar
model under-forecasts every threshold):

    loss = sum_p w(o_p) [(f_p - o_p)^2 + |f_p - o_p|] / sum_p 1,   over pixels with data,
    w = 1, 2, 5, 10, 30 below 15 dBZ, from 15, 20, 25 and 30 dBZ (the protocol's thresholds;
    Shi et al. used the same weights at 0.5, 2, 5, 10 and 30 mm/h).

`mse_csi` (radar only) is MSE + csi_weight * (1 - soft CSI at 20 dBZ) (`soft_csi`): the
protocol's headline score made differentiable, hits and false alarms weighed alike.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .data.radar.units import DBZ_MAX
from .errors import NowcastError
from .metrics import ssim_value
from .models.base import get_output, to_frames
from .models.simvp import divergence_regulariser
from .options import LOSS_NAMES
from .protocols import THRESHOLDS_DBZ

LossFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
LOSSES = LOSS_NAMES
BALANCE_WEIGHTS = (1.0, 2.0, 5.0, 10.0, 30.0)  # below, then from each of THRESHOLDS_DBZ


def _masked_mean(values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp_min(1)


def bce(logits, target, mask=None):
    return _masked_mean(F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none"), mask)


def mse(raw, target, mask=None, output: str = "sigmoid"):
    """Masked mean of (frames - target)^2, frames = to_frames(raw, output, clip=False)."""
    return _masked_mean((to_frames(raw.float(), output, clip=False) - target) ** 2, mask)


def balanced(raw, target, mask=None, output: str = "sigmoid"):
    """B-MSE + B-MAE on frames in dBZ / DBZ_MAX units (the module's docstring)."""
    err = to_frames(raw.float(), output, clip=False) - target
    dbz = target * DBZ_MAX
    weight = torch.full_like(target, BALANCE_WEIGHTS[0])
    for threshold, w in zip(THRESHOLDS_DBZ, BALANCE_WEIGHTS[1:]):
        weight = torch.where(dbz >= threshold, w, weight)
    return _masked_mean(weight * (err * err + err.abs()), mask)


CSI_THRESHOLD_DBZ = 20.0  # the protocol's headline threshold (protocols.FSS_THRESHOLD_DBZ too)
CSI_SOFTNESS_DBZ = 2.0    # tau: the width of the soft exceedance step, in dBZ


def soft_csi(raw, target, mask=None, output: str = "sigmoid",
             threshold: float = CSI_THRESHOLD_DBZ, tau: float = CSI_SOFTNESS_DBZ):
    """A differentiable CSI at `threshold` dBZ, pooled over the batch as the protocol pools:

        p = sigmoid((f - threshold) / tau),  o = [target >= threshold]   (f, target in dBZ)
        H = sum p o,  M = sum (1 - p) o,  F = sum p (1 - o),  CSI = H / (H + M + F + 1),

    over pixels with data. Hits and false alarms are counted alike, so a forecast cannot raise
    it by buying detections with false alarms (what a B-MSE weighting of rain does); the +1
    keeps a batch without any event finite (its CSI is then 0 and has no gradient)."""
    f = to_frames(raw.float(), output, clip=False) * DBZ_MAX
    p = torch.sigmoid((f - threshold) / tau)
    o = (target * DBZ_MAX >= threshold).float()
    if mask is not None:
        p, o = p * mask, o * mask
    hits = (p * o).sum()
    return hits / (o.sum() + (p * (1 - o)).sum() + 1.0)


def mse_csi(raw, target, mask=None, output: str = "sigmoid", weight: float = 0.5):
    """MSE + weight * (1 - soft_csi): the MSE keeps every value near the target, the CSI term
    places the rain edge at the protocol's threshold."""
    return mse(raw, target, mask, output) + weight * (1 - soft_csi(raw, target, mask, output))


def ssim_loss(raw, target, mask=None, output: str = "sigmoid"):
    """1 - SSIM(frames, target), frames = to_frames(raw, output, clip=False)."""
    pred = to_frames(raw.float(), output, clip=False)
    if mask is not None:
        pred = torch.where(mask, pred, target)
    return 1 - ssim_value(pred, target)


def make_loss(name: str, ssim_weight: float = 0.5, output: str = "sigmoid",
              csi_weight: float = 0.5) -> LossFn:
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
    if name == "balanced":
        return lambda raw, target, mask=None: balanced(raw, target, mask, output)
    if name == "mse_csi":
        return lambda raw, target, mask=None: mse_csi(raw, target, mask, output, csi_weight)
    if name == "mse_ssim":
        return lambda raw, target, mask=None: ((1 - ssim_weight) * mse(raw, target, mask, output)
                                               + ssim_weight * ssim_loss(raw, target, mask, output))
    raise NowcastError(f"loss '{name}' is not one of: {', '.join(LOSSES)}")


def training_loss(cfg) -> LossFn:
    """The loss a run trains and validates with: make_loss of its fields, plus TAU's
    differential divergence (models/simvp.py) times tau_alpha for a SimVP with translator tau,
    on the forecast frames (to_frames, unclipped) against the targets."""
    base = make_loss(cfg.loss, cfg.ssim_weight, cfg.output, cfg.csi_weight)
    alpha = cfg.tau_alpha if cfg.architecture == "simvp" and cfg.translator == "tau" else None
    if not alpha:
        return base

    def loss(raw, target, mask=None):
        frames = to_frames(raw.float(), cfg.output, clip=False)
        return base(raw, target, mask) + alpha * divergence_regulariser(frames, target)
    return loss
