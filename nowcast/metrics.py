"""Image metrics per lead time for Moving MNIST (PROTOCOLS.md, MMNIST-10 and MMNIST-T).

Predictions are clipped to [0, 1]. Per frame, then averaged over frames and sequences:
- mse_frame / mae_frame: squared / absolute error summed over the frame's pixels on [0, 1]
  (the OpenSTL / PredRNN convention, MMNIST-10);
- mse_pixel255 / mae_pixel255: mean over pixels on the 0-255 scale (the thesis, MMNIST-T);
- ssim: Wang et al. (2004), Gaussian 11x11 window, sigma 1.5, over the window positions
  inside the frame (`ssim_value`);
- psnr: 10 log10(1 / mean squared error on [0, 1]).
Radar verification scores (CSI, FSS, ...) live in verification.py.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

NAMES = ["mse_frame", "mae_frame", "mse_pixel255", "mae_pixel255", "ssim", "psnr"]


SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2  # (K * data range)^2, data range 1


def _gaussian(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (g / g.sum()).float()


def ssim_value(pred: torch.Tensor, target: torch.Tensor, reduction: str = "elementwise_mean") -> torch.Tensor:
    """SSIM of (..., H, W) frames in [0, 1] (mean, or per frame with reduction='none'), one
    stated way: with w the 11x11 Gaussian window (sigma 1.5) and, at each position p where the
    window lies wholly inside the frame ((H-10) x (W-10) of them: no padding),
    mu = w * x, sigma_x^2 = w * x^2 - mu_x^2, sigma_xy = w * xy - mu_x mu_y,

        SSIM = mean_p ((2 mu_x mu_y + C1)(2 sigma_xy + C2))
                      / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),  C1 = 0.01^2, C2 = 0.03^2.

    OpenSTL (cv2 Gaussian filter, then the border of 5 cropped) averages these same positions;
    torchmetrics' reflect-padded map with the border kept does not, and changed between its
    versions, hence this one (docs/protocols.md)."""
    shape = pred.shape
    x = pred.reshape(-1, 1, *shape[-2:]).float()
    y = target.reshape(-1, 1, *shape[-2:]).float()
    side = min(SSIM_WINDOW, min(shape[-2:]) - 1 + min(shape[-2:]) % 2)  # frames under 11 px: the
    g = _gaussian(side).to(x.device)  # largest odd window that fits (test-sized frames)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable: rows, then columns, valid region
        return F.conv2d(F.conv2d(z, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
    per_frame = ssim_map.mean(dim=(-1, -2, -3))
    return per_frame.reshape(shape[:-2]) if reduction == "none" else per_frame.mean()


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
