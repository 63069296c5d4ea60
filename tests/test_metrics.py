import math

import numpy as np
import pytest
import torch

from nowcast.losses import make_loss
from nowcast.metrics import ImageMetrics, ssim_value


def test_metric_conventions_on_known_errors():
    target = torch.zeros(2, 3, 16, 16)
    pred = torch.full((2, 3, 16, 16), 0.5)
    pred[:, 2] = 2.0  # clipped to 1
    m = ImageMetrics(3)
    m.update(pred, target)
    r = m.result()
    assert r["per_lead"]["mse_frame"] == [64.0, 64.0, 256.0]   # 256 px * 0.25, then 256 px * 1
    assert r["per_lead"]["mae_frame"] == [128.0, 128.0, 256.0]
    assert r["per_lead"]["mse_pixel255"][0] == 0.25 * 255 ** 2
    assert r["per_lead"]["mae_pixel255"][2] == 255.0
    assert math.isclose(r["per_lead"]["psnr"][0], 10 * math.log10(4), rel_tol=1e-6)
    assert math.isclose(r["mean"]["mse_frame"], 128.0)


def test_ssim_is_one_for_identical_frames():
    x = torch.rand(2, 2, 32, 32)
    m = ImageMetrics(2)
    m.update(x, x)
    assert all(abs(v - 1) < 1e-5 for v in m.result()["per_lead"]["ssim"])


def test_losses_and_mask():
    target = torch.rand(2, 3, 16, 16)
    logits = torch.zeros_like(target)
    for name in ("bce", "mse", "ssim", "mse_ssim"):
        assert torch.isfinite(make_loss(name)(logits, target, None))
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[..., :8] = True
    far = logits.clone()
    far[..., 8:] = 50.0  # wrong only where the mask excludes
    mse = make_loss("mse")
    torch.testing.assert_close(mse(far, target, mask), mse(logits, target, mask))


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. (2004) position by position, in float64: the 11x11 Gaussian (sigma 1.5)
    window at every position where it lies inside the frame."""
    r = np.arange(11) - 5.0
    g = np.exp(-r ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2, values = 0.01 ** 2, 0.03 ** 2, []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma ** 2, (w * b * b).sum() - mb ** 2
            cov = (w * a * b).sum() - ma * mb
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_is_the_stated_formula_over_the_window_positions_inside_the_frame():
    """Our SSIM, computed one way whatever library is installed: the hand-computed value on
    14 x 13 frames (4 x 3 window positions; a padded map would average 14 x 13)."""
    rng = np.random.default_rng(5)
    x = rng.random((2, 14, 13))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    ours = ssim_value(torch.from_numpy(x), torch.from_numpy(y), reduction="none")
    assert ours.shape == (2,)
    for k in range(2):
        assert float(ours[k]) == pytest.approx(_ssim_by_hand(x[k], y[k]), abs=2e-6)
    assert float(ssim_value(torch.from_numpy(x), torch.from_numpy(x))) == pytest.approx(1.0, abs=1e-6)
