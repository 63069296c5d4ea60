import math

import torch

from nowcast.losses import make_loss
from nowcast.metrics import ImageMetrics


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
    target = torch.rand(2, 3, 8, 8)
    logits = torch.zeros_like(target)
    for name in ("bce", "mse", "ssim", "mse_ssim"):
        assert torch.isfinite(make_loss(name)(logits, target, None))
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[..., :4] = True
    far = logits.clone()
    far[..., 4:] = 50.0  # wrong only where the mask excludes
    mse = make_loss("mse")
    torch.testing.assert_close(mse(far, target, mask), mse(logits, target, mask))
