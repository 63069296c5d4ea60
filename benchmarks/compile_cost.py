"""What torch.compile costs before training starts, two ways: the whole unrolled model
(what nowcast did before) against each recurrent cell (nowcast.models.compile_cells, what
training does now), over two sequence lengths as a curriculum changes them.

    python benchmarks/compile_cost.py                    # params/smoke.yaml's model, on the GPU if any
    python benchmarks/compile_cost.py --device cpu --params params/smoke.yaml

For each strategy, one JSON line: seconds of the first step at the first length (compilation
included), of the first step at the second length (a recompile for the whole model: the
unrolled graph depends on the length), and the median step afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from nowcast.config import load_config
from nowcast.losses import training_loss
from nowcast.models import compile_cells, get_model
from nowcast.runtime import Runtime, set_determinism
from nowcast.training import optimisation_step


def timed(device, fn) -> float:
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def measure(strategy: str, params: str, device: torch.device, lengths: tuple[int, int], steps: int) -> dict:
    torch._dynamo.reset()
    cfg = load_config(params, [f"device={device.type}", "compile=off"])
    set_determinism(0, False)
    model = get_model(cfg, device=device)
    step_fn = torch.compile(model) if strategy == "whole" else model
    if strategy == "cells":
        compile_cells(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    runtime = Runtime(device, "bf16" if device.type == "cuda" else "fp32", True, False)
    loss_fn = training_loss(cfg)  # as training computes it (TAU: its regulariser too)
    size = cfg.image_size
    row = {"compile_cost": strategy, "params": params, "device": device.type, "lengths": list(lengths)}
    for i, length in enumerate(lengths):
        frames = torch.rand(cfg.batch_size, 2 * length, size, size, device=device)
        def step():
            optimisation_step(step_fn, model, optimizer, loss_fn, runtime, frames[:, :length],
                              frames[:, length:], grad_clip=cfg.grad_clip)
        row[f"first_step_s_length{i + 1}"] = round(timed(device, step), 2)
    row["ms_per_step"] = round(statistics.median(timed(device, step) for _ in range(steps)) * 1000, 1)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params/smoke.yaml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lengths", type=int, nargs=2, default=(3, 5))
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    for strategy in ("cells", "whole"):
        print(json.dumps(measure(strategy, args.params, torch.device(args.device),
                                 tuple(args.lengths), args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
