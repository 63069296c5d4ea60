"""Image metrics per lead time for Moving MNIST (PROTOCOLS.md, MMNIST-10 and MMNIST-T).

Predictions are clipped to [0, 1]. Per frame, then averaged over frames and sequences:
- mse_frame / mae_frame: squared / absolute error summed over the frame's pixels on [0, 1]
  (the OpenSTL / PredRNN convention, MMNIST-10);
- mse_pixel255 / mae_pixel255: mean over pixels on the 0-255 scale (the thesis, MMNIST-T);
- ssim: Gaussian 11x11 window, sigma 1.5 (torchmetrics);
- psnr: 10 log10(1 / mean squared error on [0, 1]).
Radar verification scores (CSI, FSS, ...) live in verification.py.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as _ssim

NAMES = ["mse_frame", "mae_frame", "mse_pixel255", "mae_pixel255", "ssim", "psnr"]


def ssim_value(pred: torch.Tensor, target: torch.Tensor, reduction: str = "elementwise_mean") -> torch.Tensor:
    """SSIM of (..., H, W) frames in [0, 1], per frame with reduction='none'."""
    shape = pred.shape
    flat = lambda x: x.reshape(-1, 1, *shape[-2:]).float()
    out = _ssim(flat(pred), flat(target), gaussian_kernel=True, kernel_size=11, sigma=1.5,
                data_range=1.0, reduction=reduction)
    return out.reshape(shape[:-2]) if reduction == "none" else out


class ImageMetrics:
    """Accumulates per-lead sums over batches; result() gives the metrics.json shape."""

    def __init__(self, k_out: int):
        self.rows: dict[str, list[torch.Tensor]] = {name: [] for name in NAMES}  # (B, k_out) each
        self.k_out = k_out

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (B, k_out, H, W) on [0, 1]."""
        pred = pred.float().clamp(0, 1)
        target = target.float()
        err = pred - target
        se = (err ** 2).flatten(2)
        ae = err.abs().flatten(2)
        per_pixel_se = se.mean(-1)
        values = {
            "mse_frame": se.sum(-1),
            "mae_frame": ae.sum(-1),
            "mse_pixel255": per_pixel_se * 255.0 ** 2,
            "mae_pixel255": ae.mean(-1) * 255.0,
            "ssim": ssim_value(pred, target, reduction="none"),
            "psnr": 10 * torch.log10(1.0 / per_pixel_se.clamp_min(1e-10)),
        }
        for name, v in values.items():
            self.rows[name].append(v.double().cpu())

    def per_sequence(self) -> dict[str, np.ndarray]:
        """Every sequence's score per lead, (N, k_out) float32 per metric (scores.npz): what a
        bootstrap over test sequences resamples."""
        return {name: (torch.cat(r) if r else torch.zeros(0, self.k_out)).float().numpy()
                for name, r in self.rows.items()}

    def result(self) -> dict:
        count = sum(len(r) for r in self.rows["mse_frame"])
        per_lead = {name: (torch.cat(r).sum(0) / max(count, 1)).tolist() if r else [0.0] * self.k_out
                    for name, r in self.rows.items()}
        mean = {name: float(sum(v) / len(v)) for name, v in per_lead.items()}
        return {"mean": mean, "per_lead": per_lead}
