"""How the first guess samples the rain it moves, judged on validation only: nowcast's
extrapolation (`torch_extrapolation`, models/motion.py) with the advected frame sampled
bilinearly, bicubically (what motion.advect does) or at the nearest grid point, and the
bilinear guess with a constant dBZ offset added where it forecasts echo (what an intensity
correction alone could buy), scored on the validation windows of a params file (default: the
winter recipe, KNMI January events 0, 1, 8, 9; `--params params/cpu/ablation/knmi-abl-gated-mse.yaml`:
MeteoSwiss's three events and KNMI 8-9). The test split is not read. Frequency bias at 20 dBZ
= (hits + false alarms) / (hits + misses), per lead. Needs the shared radar data; one thread,
a few minutes (docs/radar_skill.md section 10).

    python benchmarks/guess_sampling.py [--params FILE] [--offsets 1 2 3]
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
import torch

from nowcast.baselines import torch_extrapolation, verify_radar
from nowcast.config import load_config
from nowcast.data.radar import RadarData
from nowcast.data.radar.units import DBZ_MAX
from nowcast.models import motion
from nowcast.selection import skill_columns


def sampled_by(mode: str):
    """motion.advect with the frame sampled by `mode` (the motion itself as motion.py samples it)."""
    def advect(frame: torch.Tensor, V: torch.Tensor, k_out: int, sampling: str = "") -> torch.Tensor:
        frame, D, out = frame.float().unsqueeze(1), torch.zeros_like(V), []
        for _ in range(k_out):
            D = D + motion.sample(V, D, padding="border")
            out.append(motion.sample(frame, D, mode=mode).clamp(0, 1))
        return torch.cat(out, dim=1)
    return advect


def row(name: str, predict, data) -> str:
    scores = verify_radar(predict, data, "val")
    cols = skill_columns(scores.per_lead())
    h, m, fa, _ = np.sum(scores.per_window()["contingency"], axis=0)[1]  # 20 dBZ
    bias = (h + fa) / np.maximum(h + m, 1)
    return (f"| {name} | {cols['val_skill']:.4f} | {cols['val_csi_20']:.4f} | "
            f"{cols['val_fss_20_5']:.4f} | {cols['val_mae_dbz']:.4f} | "
            f"{bias[0]:.2f} / {bias[5]:.2f} / {bias[-1]:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params/cpu/winter/knmi-win-gated-mse.yaml")
    parser.add_argument("--offsets", type=float, nargs="*", default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = RadarData(load_config(args.params, check_model=False))
    print(f"validation of {args.params}: {data.n_windows('val')} windows")
    print("| first guess | skill | CSI-20 | FSS-20 | MAE (dBZ) | bias-20 at 5 / 30 / 60 min |")
    print("|---|---|---|---|---|---|")
    for mode in ("bilinear", "bicubic", "nearest"):
        with mock.patch.object(motion, "advect", sampled_by(mode)):
            print(row(mode, lambda x: torch_extrapolation(x, data.k_out), data), flush=True)
    with mock.patch.object(motion, "advect", sampled_by("bilinear")):
        for offset in args.offsets:
            def predict(x: np.ndarray, d: float = offset) -> np.ndarray:
                g = torch_extrapolation(x, data.k_out)
                return np.where(g > 0, np.clip(g + d / DBZ_MAX, 0, 1), g)
            print(row(f"bilinear + {offset:g} dBZ where wet", predict, data), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
