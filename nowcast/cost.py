"""What training costs: the FLOP of one optimisation step, and a run's totals.

    step FLOP = FLOP counted by torch.utils.flop_counter over one forward, loss and backward
                of one training sequence (an eager fp32 model: autocast and compilation change
                how the work is done, not how much), times batch_size
    training FLOP = step FLOP x optimiser steps;  sequences seen = batch_size x steps

The counter counts matrix products and convolutions (forward and backward), the work that
dominates; element-wise work (activations, the optimiser's update) is not counted. A radar
run trains on crops (`crop_size`), a Moving MNIST run on whole frames. `benchmarks/throughput.py`
counts its FLOP per step with `step_flop` too.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import Config
from .losses import training_loss
from .models import get_model
from .runtime import Runtime
from .training import optimisation_step


def training_frame_shape(cfg: Config, frame_shape: Optional[Sequence[int]] = None) -> tuple[int, int]:
    """The frames one training sequence holds: radar crops, else whole frames."""
    if cfg.crop_size:
        return (cfg.crop_size, cfg.crop_size)
    if frame_shape is not None:
        return tuple(frame_shape)
    return (cfg.image_size, cfg.image_size)


def step_flop(cfg: Config, shape: Sequence[int], model: Optional[torch.nn.Module] = None) -> int:
    """FLOP of one training step of `cfg` on sequences of `shape` (H, W) frames (module
    docstring): one sequence counted, times batch_size. `model`: count this model (its
    weights are restored afterwards), else build cfg's at that shape on the CPU."""
    h, w = shape
    model = get_model(cfg, frame_shape=(h, w)) if model is None else model
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    frames = torch.rand(1, cfg.k_in + cfg.k_out, h, w,
                        generator=torch.Generator().manual_seed(0)).to(next(model.parameters()).device)
    runtime = Runtime(frames.device, "fp32", False)
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            optimisation_step(model, model, optimizer, training_loss(cfg), runtime,
                              frames[:, :cfg.k_in], frames[:, cfg.k_in:])
    finally:
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops()) * cfg.batch_size


def run_cost(cfg: Config, steps: int, flop_per_step: int) -> dict:
    """A run's totals for env.json: steps, sequences seen, FLOP per step and in all."""
    return {"sequences_seen": steps * cfg.batch_size, "flop_per_step": flop_per_step,
            "train_flop": flop_per_step * steps}
