"""The training loop: curriculum stages, LR schedule, scheduled sampling, AMP, compile, DDP,
checkpoints and resume.

The run is a fixed plan of (stage, epoch) blocks of `steps_per_epoch` optimiser steps each, so
the global step alone says where a resumed run continues. Every random draw of step s (the
batch, the scheduled-sampling mask) comes from a generator seeded with (seed, s): a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .checkpoint import CHECKPOINT
from .checkpoint import save as save_checkpoint_file
from .config import Config
from .errors import NowcastError
from .forecast import evaluate_split, padded
from .losses import make_loss
from .runtime import Runtime


class Preempted(Exception):
    """Raised after a checkpoint was saved because SLURM (or the user) asked the job to stop."""


_stop_requested = False


def _request_stop(signum, frame):  # noqa: ARG001
    global _stop_requested
    _stop_requested = True


def install_preemption_handler() -> None:
    """SIGUSR1 (SLURM's --signal warning) and SIGTERM: checkpoint at the next step, then stop."""
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, _request_stop)


@dataclass
class Stage:
    k_in: int
    k_out: int


def plan_stages(cfg: Config) -> list[Stage]:
    if cfg.curriculum:
        return [Stage(length, length) for length in cfg.curriculum]
    return [Stage(cfg.k_in, cfg.k_out)]


def teacher_probability(cfg: Config, step: int) -> float:
    """Probability of feeding the true frame: 1 with teacher forcing; with scheduled sampling it
    falls linearly from 1 at step 0 to ss_min at step ss_decay_steps, then stays; else 0."""
    if cfg.teacher_forcing:
        return 1.0
    if cfg.scheduled_sampling:
        return 1.0 - (1.0 - cfg.ss_min) * min(1.0, step / cfg.ss_decay_steps)
    return 0.0


def teacher_mask(cfg: Config, step: int, batch: int, k_out: int, device) -> Optional[torch.Tensor]:
    """Per sample and per fed-back step, True = feed the true frame (drawn from (seed, step))."""
    p = teacher_probability(cfg, step)
    if p == 0.0 or k_out < 2:
        return None
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, step, 1]).generate_state(1)[0]))
    return (torch.rand(batch, k_out - 1, generator=gen) < p).to(device)


def optimisation_step(step_fn, model, optimizer, loss_fn, runtime: Runtime, inputs: torch.Tensor,
                      target: torch.Tensor, mask: Optional[torch.Tensor] = None,
                      tmask: Optional[torch.Tensor] = None, grad_clip: Optional[float] = None) -> torch.Tensor:
    """One step: forward (padded to the model's down-sampling), loss, backward, clip, update.
    Returns the loss without synchronising with the host. benchmarks/throughput.py times this."""
    multiple = getattr(model, "downsampling", 1)
    x, (h, w) = padded(inputs, multiple)
    with runtime.autocast():
        logits = step_fn(x, target.shape[1], padded(target, multiple)[0], tmask)[..., :h, :w]
    loss = loss_fn(logits, target, mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)       # one row per epoch
    batch_losses: list[dict] = field(default_factory=list)  # one row per step
    best_val: float = math.inf
    best_state: Optional[dict] = None
    steps: int = 0
    train_seconds: float = 0.0
    sequences: int = 0
    stopped_early: bool = False


def init_distributed(device_type: str) -> bool:
    """Join the process group torchrun / srun describe (WORLD_SIZE > 1); gloo on CPU, nccl on GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return True


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _make_scheduler(cfg: Config, optimizer):
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


# long: the whole loop in one place until the short-job training issue (#13) reworks it
def train(cfg: Config, data, model: torch.nn.Module, runtime: Runtime, run_dir: Path,
          progress: bool = True, stop_after_steps: Optional[int] = None) -> TrainResult:
    """Train `model` in place; checkpoints to run_dir/checkpoint.pt and resumes from it.

    stop_after_steps simulates an interruption (tests): a checkpoint is written, Preempted raised.
    """
    rank, world = rank_world()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    device = runtime.device
    stages = plan_stages(cfg)
    steps_per_epoch = max(1, cfg.train_sequences // cfg.batch_size)
    loss_fn = make_loss(cfg.loss, cfg.ssim_weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.initial_lr,
                                 fused=device.type == "cuda" or None)
    scheduler = _make_scheduler(cfg, optimizer)
    result = TrainResult()
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = torch.compile(ddp_model) if runtime.compile else ddp_model

    ckpt_path = Path(run_dir) / CHECKPOINT
    start_step = 0
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        start_step = int(ckpt["step"])
        result.history, result.batch_losses = ckpt["history"], ckpt["batch_losses"]
        result.best_val, result.best_state = float(ckpt["best_val"]), ckpt["best_state"]
        result.train_seconds, result.sequences = float(ckpt["train_seconds"]), int(ckpt["sequences"])
        result.stopped_early = bool(ckpt["stopped_early"])

    def save_checkpoint(step: int) -> None:
        if rank == 0:
            save_checkpoint_file({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "scheduler": scheduler.state_dict(), "step": step,
                                  "rng": {"torch": torch.get_rng_state()}, "config": cfg.to_dict(),
                                  "history": result.history, "batch_losses": result.batch_losses,
                                  "best_val": result.best_val, "best_state": result.best_state,
                                  "train_seconds": result.train_seconds, "sequences": result.sequences,
                                  "stopped_early": result.stopped_early}, ckpt_path)

    val = data.split("val")
    total_steps = len(stages) * cfg.num_epochs * steps_per_epoch
    # counted in sequences, so the rate tqdm shows is sequences/s
    bar = tqdm(total=total_steps * cfg.batch_size, initial=start_step * cfg.batch_size,
               disable=not progress or rank != 0, unit="seq", unit_scale=True,
               dynamic_ncols=True, desc=cfg.name or "train")
    model.train()
    step = 0
    for stage_index, stage in enumerate(stages):
        length = stage.k_in + stage.k_out
        for epoch in range(cfg.num_epochs):
            epoch_end = step + steps_per_epoch
            if epoch_end <= start_step or result.stopped_early:
                step = epoch_end
                continue
            if epoch == 0 and stage_index > 0 and cfg.restart_lr_per_stage and step >= start_step:
                for group in optimizer.param_groups:
                    group["lr"] = cfg.initial_lr
                scheduler = _make_scheduler(cfg, optimizer)
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            losses = []

            def flush(end_step: int) -> None:
                nonlocal t0, losses
                result.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                result.batch_losses.extend(_loss_rows(losses, end_step, stage_index, world))
                losses = []

            for step in range(max(step, start_step), epoch_end):
                if _stop_requested or (stop_after_steps is not None and step >= stop_after_steps):
                    flush(step)
                    save_checkpoint(step)
                    bar.close()
                    raise Preempted(f"stopped at step {step}; checkpoint saved to {ckpt_path}")
                batch = data.train_batch(step, cfg.batch_size, length)
                frames = torch.from_numpy(batch.frames[rank::world]).to(device, non_blocking=True)
                mask = None
                if batch.mask is not None:
                    mask = torch.from_numpy(batch.mask[rank::world, stage.k_in:]).to(device)
                inputs, target = frames[:, :stage.k_in], frames[:, stage.k_in:]
                tmask = teacher_mask(cfg, step, cfg.batch_size, stage.k_out, device)
                if tmask is not None:
                    tmask = tmask[rank::world]
                loss = optimisation_step(step_fn, model, optimizer, loss_fn, runtime, inputs, target,
                                         mask, tmask, cfg.grad_clip)
                losses.append(loss)
                result.sequences += cfg.batch_size
                bar.update(cfg.batch_size)
                if (step + 1) % 10 == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}")
                if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < epoch_end:
                    flush(step + 1)
                    save_checkpoint(step + 1)
            step = epoch_end
            flush(step)
            result.steps = step
            epoch_losses = [r["loss"] for r in result.batch_losses
                            if r["stage"] == stage_index and r["step"] > step - steps_per_epoch]
            val_loss, _ = evaluate_split(model, val, stage.k_in, stage.k_out, loss_fn, runtime,
                                         batch_size=max(cfg.batch_size, 32), with_metrics=False)
            scheduler.step()
            result.history.append({
                "stage": stage_index + 1, "epoch": epoch + 1, "seq_len": length, "step": step,
                "lr": lr, "train_loss": sum(epoch_losses) / len(epoch_losses),
                "train_loss_median": statistics.median(epoch_losses), "val_loss": val_loss,
                "seconds": round(result.train_seconds, 3)})
            # model selection on validation only, at the final stage's lengths
            if stage_index == len(stages) - 1:
                if val_loss < result.best_val:
                    result.best_val = val_loss
                    result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                elif cfg.early_stopping and len(_epochs_since_best(result.history)) >= cfg.early_stopping:
                    result.stopped_early = True
            save_checkpoint(step)
    bar.close()
    if result.best_state is None:
        result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return result


def _epochs_since_best(history: list[dict]):
    """Epochs of the last stage after its best validation loss."""
    last = [r for r in history if r["stage"] == history[-1]["stage"]]
    best = min(range(len(last)), key=lambda i: last[i]["val_loss"])
    return last[best + 1:]


def _loss_rows(losses: list[torch.Tensor], end_step: int, stage_index: int, world: int) -> list[dict]:
    """Batch losses to host once per epoch/checkpoint (no per-step synchronisation)."""
    if not losses:
        return []
    values = torch.stack(losses).float()
    if world > 1:  # the global batch's loss is the mean over processes' equal shards
        dist.all_reduce(values)
        values /= world
    first = end_step - len(losses)
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        raise NowcastError(f"training diverged: the loss is {float(values[bad[0, 0]])} at step "
                           f"{first + int(bad[0, 0]) + 1} (try a lower initial_lr or grad_clip)")
    return [{"step": first + i + 1, "stage": stage_index, "loss": float(v)}
            for i, v in enumerate(values.cpu())]
