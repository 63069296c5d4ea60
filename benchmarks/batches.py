"""Input pipeline: time to make one training batch, as training asks for it
(`data.train_batch(step, batch, length)` on the training device), median of many steps.

    python benchmarks/batches.py                     # on the GPU when there is one
    python benchmarks/batches.py --device cpu
    python benchmarks/batches.py --device cpu --quick

Moving MNIST batches are drawn on the host from (seed, step) -- digit choices and trajectories,
a few small arrays -- and rendered on the device (nowcast.data.moving_mnist.render); radar
windows are cut from events kept on the device. One JSON line per workload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from nowcast.config import load_config
from nowcast.data import get_data
from nowcast.errors import described

WORKLOADS = {
    # MMNIST-10 at batch 64 and the seed's 18 frames: the figure quoted before this pipeline
    "mmnist-b64x18": (dict(protocol="mmnist-10"), 64, 18),
    "mmnist-t-fixed-b16x14": (dict(protocol="mmnist-t"), 16, 14),
    "knmi-b8x18": (dict(protocol="knmi-30-60"), 8, 18),
}
QUICK = {"mmnist-quick-b8x6": (dict(digits="auto", image_size=32, num_digits=1, k_in=3, k_out=3,
                                     hidden_sizes=[8, 8], max_pool=False), 8, 6)}


def measure(name: str, values: dict, batch: int, length: int, device: torch.device, steps: int) -> dict:
    data = get_data(load_config(values=dict(values, device=device.type)), device)
    for step in range(3):  # warm-up (first fixed-set render, allocator)
        data.train_batch(step, batch, length)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        frames = data.train_batch(1000 + step, batch, length).frames
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        assert frames.device.type == device.type
    return {"batches": name, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else "cpu", "batch": batch, "length": length, "ms_per_batch": round(
                statistics.median(times) * 1000, 3), "steps": steps, "torch": torch.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="one tiny workload: checks the script")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    chosen = QUICK if args.quick else {k: WORKLOADS[k] for k in (args.workloads or WORKLOADS)}
    for name, (values, batch, length) in chosen.items():
        try:
            row = measure(name, values, batch, length, device, 3 if args.quick else args.steps)
        except Exception as e:  # noqa: BLE001 - a workload whose data is absent here
            row = {"batches": name, "skipped": described(e)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
