"""The training loop: curriculum stages, LR schedule, scheduled sampling, AMP, compile, DDP,
validation, a time budget, checkpoints and resume.

The run is a fixed plan of (stage, epoch) blocks of `steps_per_epoch` optimiser steps each, so
the global step alone says where a resumed run continues. Every random draw of step s (the
batch, the scheduled-sampling mask) comes from a generator seeded with (seed, s): a resumed run
sees exactly the batches an uninterrupted one would.

Validation runs at the end of every epoch, or every `val_every` steps when that is set (and once
more when training ends between two of them), and for a residual model once before its first
step; the best weights of the final stage by the run's `select_by` rule are kept (selection.py). With `time_budget_min`, training stops at a step boundary once the next step and a last
validation would pass the budget (wall time from the start of training, compilation and
validation included, summed over a resumed run's attempts) and ends normally, saying so.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .board import Board
from .checkpoint import check_resume_weights, load_resume, save_resume_state
from .config import Config
from .distributed import loss_rows, rank0_flag, rank_world, strongest_signal, synchronised_batchnorm
from .errors import check_finite
from .forecast import evaluate_split, forecast
from .losses import training_loss
from .models import compile_cells
from .paths import JobPaths
from .progress import PlanClock
from . import selection, stopping
from .runtime import Runtime
from .scoring import validation_skill


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
    """One step: forward, loss, backward, clip, update.
    Returns the loss without synchronising with the host. benchmarks/throughput.py times this."""
    with runtime.autocast():  # the model pads to its down-sampling and crops back
        logits = step_fn(inputs, target.shape[1], target, tmask)
    loss = loss_fn(logits, target, mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)       # one row per validation
    batch_losses: list[dict] = field(default_factory=list)  # one row per step
    best_val: float = math.inf
    best_state: Optional[dict] = None
    steps: int = 0
    train_seconds: float = 0.0
    earlier_seconds: float = 0.0  # of train_seconds, what earlier attempts of a resumed run trained
    sequences: int = 0
    validation_seconds: float = 0.0  # part of train_seconds
    stopped: Optional[str] = None   # None: ran its plan; "early_stopping" | "time_budget"
    first_step_seconds: Optional[float] = None  # compilation shows here, apart from step time

    @property
    def stopped_early(self) -> bool:
        return self.stopped == "early_stopping"

    @property
    def sequences_per_s(self) -> float:
        """Training sequences per second, validation excluded."""
        return self.sequences / max(self.train_seconds - self.validation_seconds, 1e-9)

    def steady_sequences_per_s(self, batch_size: int) -> Optional[float]:
        """As sequences_per_s, without the first step (compilation, cuDNN's algorithm search:
        on a GPU a minute or more of a short run): the rate a longer run tends to. None
        before a second step."""
        if self.first_step_seconds is None or self.sequences <= batch_size:
            return None
        seconds = self.train_seconds - self.validation_seconds - self.first_step_seconds
        return (self.sequences - batch_size) / max(seconds, 1e-9)


def _make_scheduler(cfg: Config, optimizer, total_steps: int):
    """step: x gamma every step_size epochs (stepped at an epoch's end); onecycle: OneCycleLR
    (Smith 2018; cosine up to initial_lr over the first 30 % of total_steps from
    initial_lr / 25, then down to initial_lr / 2.5e5, Adam's beta1 cycled 0.95 -> 0.85 -> 0.95;
    stepped after every optimiser step)."""
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.initial_lr,
                                                   total_steps=max(2, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


@dataclass(frozen=True)
class Plan:
    """Where every global step belongs: stage, epoch, and whether validation follows it."""
    stages: list[Stage]
    epochs: int
    steps_per_epoch: int
    val_every: Optional[int]

    @property
    def total(self) -> int:
        return len(self.stages) * self.epochs * self.steps_per_epoch

    def locate(self, step: int) -> tuple[int, int]:
        """(stage index, epoch) of global step `step`."""
        block = step // self.steps_per_epoch
        return block // self.epochs, block % self.epochs

    def epoch_ends(self, step: int) -> bool:
        return (step + 1) % self.steps_per_epoch == 0

    def validations(self, start: int = 0) -> int:
        """How many validations the plan holds from step `start` on (validates(s) for s in
        [start, total)), in closed form: called after every validation of plans of 10^5 steps."""
        if start >= self.total:
            return 0
        every = self.val_every or self.steps_per_epoch
        last = bool(self.val_every) and self.total % every != 0  # the end's own validation
        return self.total // every - start // every + last

    def validates(self, step: int) -> bool:
        """Validation after step `step`: every val_every steps, else at every epoch end."""
        if self.val_every:
            return (step + 1) % self.val_every == 0 or step + 1 == self.total
        return self.epoch_ends(step)


def make_plan(cfg: Config) -> Plan:
    return Plan(plan_stages(cfg), cfg.num_epochs, max(1, cfg.train_sequences // cfg.batch_size),
                cfg.val_every)


class Trainer:
    """One training run: the state of the loop and one method per thing it does."""

    def __init__(self, cfg: Config, data, model: torch.nn.Module, runtime: Runtime, run_dir: Path,
                 progress: bool = True, on_step: Optional[Callable[..., None]] = None):
        self.rank, self.world = rank_world()
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {self.world} processes")
        self.cfg, self.data, self.model, self.runtime = cfg, data, runtime.place(model), runtime
        self.plan = make_plan(cfg)
        self.loss_fn = training_loss(cfg)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.initial_lr,
                                          fused=runtime.device.type == "cuda" or None)
        self.scheduler = _make_scheduler(cfg, self.optimizer, self.plan.total)
        self.result = TrainResult()
        self.ckpt_path = JobPaths(run_dir).checkpoint
        if runtime.compile:  # each cell's step: one shape per cell, whatever the sequence length
            compile_cells(model)
        self.step_fn = model
        if self.world > 1:
            model = self.model = synchronised_batchnorm(model, runtime.device)
            self.step_fn = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
        self.val = data.split("val").first(cfg.val_subset)  # selection in bounded time
        self.board = Board(Path(run_dir) if self.rank == 0 else None, tqdm.write)  # TensorBoard
        self.losses: list[torch.Tensor] = []
        self.on_step = on_step
        self.bar = tqdm(total=self.plan.total * cfg.batch_size, disable=not progress or self.rank != 0,
                        unit="seq", unit_scale=True, dynamic_ncols=True, desc=cfg.name or "train")
        self.started = time.perf_counter()
        self.deadline = (self.started + 60 * cfg.time_budget_min) if cfg.time_budget_min else None
        self.validation_seconds, self.first_guess = 0.0, {}

    # --- state on disk ----------------------------------------------------------------------
    def resume(self) -> int:
        """The step to continue from: 0, or the checkpoint's step with everything restored."""
        ckpt = load_resume(self.ckpt_path)  # on the CPU: torch's RNG state must stay there
        if ckpt is None:
            return 0
        check_resume_weights(self.model, ckpt, self.ckpt_path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        r = self.result
        r.history, r.batch_losses, r.stopped = ckpt["history"], ckpt["batch_losses"], ckpt["stopped"]
        r.best_val, r.best_state = float(ckpt["best_val"]), ckpt["best_state"]
        r.train_seconds = r.earlier_seconds = float(ckpt["train_seconds"])  # earlier attempts'
        r.sequences, r.validation_seconds = int(ckpt["sequences"]), float(ckpt["validation_seconds"])
        self.deadline = self.deadline and self.deadline - r.train_seconds  # the run's, all attempts
        self.bar.update(int(ckpt["step"]) * self.cfg.batch_size)
        return int(ckpt["step"])

    def save(self, step: int) -> None:
        self.flush(step)
        if self.rank == 0:
            r = self.result
            save_resume_state(
                self.ckpt_path, model=self.model.state_dict(),
                optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                step=step, rng={"torch": torch.get_rng_state()}, config=self.cfg.to_dict(),
                history=r.history, batch_losses=r.batch_losses, best_val=r.best_val,
                best_state=r.best_state, train_seconds=r.train_seconds, sequences=r.sequences,
                validation_seconds=r.validation_seconds, stopped=r.stopped)

    def flush(self, end_step: int) -> None:
        """Batch losses to the host (once per validation or checkpoint, never per step)."""
        stage = self.plan.locate(max(end_step - 1, 0))[0]
        rows = loss_rows(self.losses, end_step, stage, self.world)
        self.result.batch_losses.extend(rows)
        self.board.batch_losses(rows)
        self.losses = []

    # --- one step ---------------------------------------------------------------------------
    def train_step(self, step: int, stage: Stage) -> None:
        cfg, rank, world = self.cfg, self.rank, self.world
        batch = self.data.train_batch(step, cfg.batch_size, stage.k_in + stage.k_out)
        device = self.runtime.device
        frames = torch.as_tensor(batch.frames[rank::world]).to(device, non_blocking=True)
        mask = None
        if batch.mask is not None:
            mask = torch.as_tensor(batch.mask[rank::world, stage.k_in:]).to(device)
        tmask = teacher_mask(cfg, step, cfg.batch_size, stage.k_out, device)
        if tmask is not None:
            tmask = tmask[rank::world]
        started = time.perf_counter()
        loss = optimisation_step(self.step_fn, self.model, self.optimizer, self.loss_fn,
                                 self.runtime, frames[:, :stage.k_in], frames[:, stage.k_in:],
                                 mask, tmask, cfg.grad_clip)
        if self.result.first_step_seconds is None:
            self.result.first_step_seconds = round(time.perf_counter() - started, 3)
        self.losses.append(loss)
        self.result.sequences += cfg.batch_size
        self.bar.update(cfg.batch_size)
        self.clock.after_step(step + 1, loss)
        if (step + 1) % 10 == 0:
            self.bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{self.lr:.2e}")
        if self.on_step is not None:
            self.on_step(step=step + 1, total=self.plan.total, loss=loss, time_left=None
                         if self.deadline is None else self.deadline - time.perf_counter())

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # --- validation and model selection -------------------------------------------------
    def validate(self, step: int) -> None:
        """One history row: train loss since the last row, validation loss (and with
        select_by skill the validation's radar scores); keep the best (selection.py). At step
        0 (a residual model, before any training) the row is the final stage's, its train
        loss NaN."""
        self.flush(step)
        started = time.perf_counter()
        if step == 0:  # the untrained model, a candidate at the lengths selection compares
            stage_index, epoch = len(self.plan.stages) - 1, -1
        else:
            stage_index, epoch = self.plan.locate(step - 1)
        stage = self.plan.stages[stage_index]
        val_loss, _ = evaluate_split(self.model, self.val, stage.k_in, stage.k_out, self.loss_fn,
                                     self.runtime, batch_size=max(self.cfg.batch_size, 32),
                                     with_metrics=False)
        check_finite(val_loss, f"validation loss at step {step}")
        skill = self.validation_skill() if self.cfg.select_by == "skill" else {}
        self.validation_seconds = time.perf_counter() - started
        self.clock.after_validation(step, self.validation_seconds, self.plan.validations(step))
        if self.on_step is not None:
            self.on_step(step=step, total=self.plan.total, val_loss=val_loss)
        r = self.result
        r.validation_seconds += self.validation_seconds
        since = r.history[-1]["step"] if r.history else 0
        recent = [row["loss"] for row in r.batch_losses if row["step"] > since]
        r.history.append({
            "stage": stage_index + 1, "epoch": epoch + 1, "seq_len": stage.k_in + stage.k_out,
            "step": step, "lr": self.lr,
            "train_loss": sum(recent) / len(recent) if recent else math.nan,
            "train_loss_median": statistics.median(recent) if recent else math.nan,
            "val_loss": val_loss, **skill,
            "seconds": round(r.train_seconds + time.perf_counter() - self.started, 3)})
        self.show(stage, r.sequences / max(r.history[-1]["seconds"], 1e-9))
        if stage_index == len(self.plan.stages) - 1:  # selection at the final stage's lengths
            self.select()

    def validation_skill(self) -> dict[str, float]:
        """scoring.validation_skill of the model now (the first guess's counts kept)."""
        return validation_skill(self.cfg, self.model, self.runtime, self.data, self.first_guess)

    def show(self, stage: Stage, sequences_per_s: float) -> None:
        """The new history row and the first validation sequence's forecast to TensorBoard."""
        row = self.result.history[-1]
        self.board.history(row, sequences_per_s)
        if self.board.writer is not None:  # forecast in eval mode, as validation does
            seq = self.val.frames[0, :stage.k_in + stage.k_out]
            self.model.eval()
            pred = forecast(self.model, torch.as_tensor(seq[None, :stage.k_in]).to(self.runtime.device),
                            stage.k_out, self.runtime)[0].cpu().numpy()
            self.model.train()
            self.board.frames(row["step"], seq[:stage.k_in], seq[stage.k_in:], pred)

    def select(self) -> None:
        """Keep the weights when the newest row is the best by the run's rule (selection.py);
        early stopping once `early_stopping` rows of the stage have passed without a better."""
        r = self.result
        if selection.selected_row(r.history, self.cfg.select_by) is r.history[-1]:
            r.best_val = r.history[-1]["val_loss"]
            r.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        elif self.cfg.early_stopping and \
                len(selection.since_best(r.history, self.cfg.select_by)) >= self.cfg.early_stopping:
            r.stopped = "early_stopping"

    # --- the schedule -------------------------------------------------------------------------
    def new_epoch(self, step: int) -> None:
        """At the first step of an epoch: losses so far to the host (rows carry their stage),
        and the LR schedule restarted at a new stage if asked."""
        self.flush(step)
        stage_index, epoch = self.plan.locate(step)
        if epoch == 0 and stage_index > 0 and self.cfg.restart_lr_per_stage:
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.initial_lr
            self.scheduler = _make_scheduler(self.cfg, self.optimizer, self.plan.total)

    def out_of_time(self) -> bool:
        """True when one more step and a last validation would pass the budget (all ranks agree:
        rank 0's clock decides)."""
        if self.deadline is None:
            return False
        late = time.perf_counter() + self.validation_seconds >= self.deadline
        return rank0_flag(late) if self.world > 1 else late

    def stop_signal(self) -> Optional[int]:
        """The stop signal to act on at this step boundary (None: none): this process's own,
        or under several processes the strongest any rank noted (every rank stops here)."""
        local = stopping.requested()
        return strongest_signal(local) if self.world > 1 else local

    def run(self, stop_after_steps: Optional[int] = None) -> TrainResult:
        step = self.resume()
        cfg, plan, rt = self.cfg, self.plan, self.runtime  # the plan line: on stdout, tty or not
        device = f"{rt.device} ({rt.precision}{', compiled' * rt.compile})"
        self.clock = PlanClock(cfg.name or "train", device, plan.total, plan.steps_per_epoch,
                               len(plan.stages), plan.epochs, cfg.batch_size, step, self.world,
                               cfg.time_budget_min, self.rank == 0, tqdm.write,
                               plan.validations(step), len(self.val.frames), self.result.train_seconds)
        self.clock.begin()
        if step == 0 and getattr(self.model, "residual", False) and not self.result.history:
            self.validate(0)  # the first guess itself is a candidate (selection.py)
        self.model.train()
        while step < self.plan.total and self.result.stopped is None:
            signum = self.stop_signal()
            if signum is not None or (stop_after_steps is not None and step >= stop_after_steps):
                self.stop(step, signum)
            if step % self.plan.steps_per_epoch == 0:
                self.new_epoch(step)
            self.train_step(step, self.plan.stages[self.plan.locate(step)[0]])
            step += 1
            if self.plan.validates(step - 1):
                self.validate(step)
            if self.cfg.scheduler == "onecycle" or self.plan.epoch_ends(step - 1):
                self.scheduler.step()
            if self.plan.validates(step - 1) or step % self.cfg.checkpoint_every == 0:
                self.account(step)
                self.save(step)
            if self.result.stopped is None and step < self.plan.total and self.out_of_time():
                self.result.stopped = "time_budget"  # at least one step: something to score
        ended_between = not self.result.history or self.result.history[-1]["step"] < step
        if ended_between:
            self.validate(step)  # the weights at the end are a candidate too
        self.account(step)
        if ended_between or self.result.stopped == "time_budget":  # else the loop saved this step
            self.save(step)
        self.bar.close()
        self.board.close()
        return self.finish()

    def account(self, step: int) -> None:
        """Wall time so far and the steps done into the result (before a checkpoint or the end)."""
        now = time.perf_counter()
        self.result.train_seconds += now - self.started
        self.started = now
        self.result.steps = step

    def stop(self, step: int, signum: Optional[int] = None) -> None:
        self.account(step)
        self.save(step)
        self.bar.close()
        self.board.close()
        raise stopping.Preempted(f"stopped at step {step}; checkpoint saved to {self.ckpt_path}", signum)

    def finish(self) -> TrainResult:
        r = self.result
        if r.best_state is None:
            r.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return r


def train(cfg: Config, data, model: torch.nn.Module, runtime: Runtime, run_dir: Path,
          progress: bool = True, stop_after_steps: Optional[int] = None,
          on_step: Optional[Callable[..., None]] = None) -> TrainResult:
    """Train `model` in place; checkpoints to run_dir/checkpoint.pt and resumes from it.

    stop_after_steps simulates an interruption (tests): a checkpoint is written, Preempted raised.
    on_step(step=, total=, loss=, time_left=) is called after every optimiser step (the loss
    stays on the device) and on_step(step=, total=, val_loss=) after every validation."""
    return Trainer(cfg, data, model, runtime, run_dir, progress, on_step).run(stop_after_steps)
