"""The largest motion (px a step) that nowcast's Lucas-Kanade motion (models/motion.py) and
pysteps' LK find in each KNMI-30/60 test window, beside the window's echo fraction: where a
near-dry frame made the torch motion run away (docs/radar_skill.md section 9). Needs the
shared radar data; one thread, about a minute.

    python benchmarks/motion_near_dry.py
"""

from __future__ import annotations

import numpy as np
import torch

from nowcast.config import load_config
from nowcast.data.radar import RadarData
from nowcast.models.motion import motion
from nowcast.util import optional_import


def main() -> int:
    torch.set_num_threads(1)
    lk = optional_import("pysteps.motion", "radar").get_method("LK")
    windows = RadarData(load_config(values=dict(protocol="knmi-30-60"), check_model=False)).split_windows("test")
    dbz = np.nan_to_num(windows.dbz[:, :6], nan=0.0)
    print("| window | event | echo | torch max px/step | torch median | pysteps max |")
    print("|---|---|---|---|---|---|")
    for i in range(len(dbz)):
        ours = np.hypot(*motion(torch.from_numpy(dbz[i:i + 1] / 70).float())[0].numpy())
        theirs = np.hypot(*lk(dbz[i, -3:].astype(float)))
        print(f"| {i} | {windows.event[i]} | {(dbz[i, -1] > 0).mean():.3f} | {ours.max():.2f} | "
              f"{np.median(ours):.2f} | {theirs.max():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
