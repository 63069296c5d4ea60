"""One experiment end to end: params -> data -> model -> train -> evaluate -> results/<job_id>/.

This is what `nowcast train` (`train_from_params`) and the notebook experiments/train.ipynb call.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from . import limits, outputs, results, runlock, selection, stopping
from .checkpoint import load_resume
from .config import Config, load_config
from .data import get_data
from .data.check import check_inputs, frame_shapes
from .distributed import end_together, init_distributed, rank_failure, rank_world, write_rank_error
from .errors import EXIT_STOPPED, NowcastError, RunStopped, check_finite, described, first_line
from .models import check_architecture, count_parameters, get_model
from .paths import JobPaths
from .progress import Progress
from .options import NOMINAL_SIZE
from .runtime import device_memory, resolve_runtime, set_determinism
from .scoring import Scores, score_ood_split, score_test_split, split_means
from .stopping import install_preemption_handler
from .training import train


def default_name(cfg: Config) -> str:
    """The name of a run given none (a bare papermill call, an empty params file): what it
    is, e.g. 'convlstm_ed-64x32x32x16-s2', '-mmnist-10' appended under a protocol. The
    stride only where the architecture down-samples."""
    widths = [cfg.hid_S, cfg.hid_T] if cfg.architecture == "simvp" else cfg.hidden_sizes
    parts = [cfg.architecture] + ([cfg.translator] if cfg.architecture == "simvp" else []) + [
        "x".join(str(h) for h in widths)]
    if cfg.architecture == "convlstm_ed":
        parts.append(f"s{cfg.stride}")
    if cfg.protocol != "none":
        parts.append(cfg.protocol)
    return "-".join(parts)


def score_sections(cfg: Config, data, model, runtime, scores: Scores, result) -> dict:
    """metrics.json's sections of a training run: `splits` (the train, validation and test
    means; with test_num_digits also `test_ood`, the out-of-domain split scored after the
    test split), `ood` (what that split is, its per-lead scores) and `training`. The
    out-of-domain values per sequence join scores.npz as test_ood__<metric>."""
    splits = dict(split_means(cfg, data, model, runtime), test=scores.metrics["mean"])
    chosen = selection.selected_row(result.history, cfg.select_by)
    sections = {"splits": splits, "training": {
        "steps": result.steps, "stopped": result.stopped,
        # which weights were scored: the step of the selected validation (0: the untrained
        # model, i.e. a residual model's first guess) and the rule that chose it
        "selected_step": None if chosen is None else int(chosen["step"]),
        "selected_by": cfg.select_by, "selection_rule": selection.RULES[cfg.select_by],
        **({"selected_val": {k: chosen[k] for k in selection.SKILL_COLUMNS if k in chosen}}
           if chosen is not None and cfg.select_by == "skill" else {})}}
    ood = score_ood_split(cfg, data, model, runtime)
    if ood is not None:
        splits["test_ood"] = ood.metrics["mean"]
        sections["ood"] = dict(ood.metrics["ood"], per_lead=ood.metrics["per_lead"])
        scores.per_item.update({f"test_ood__{k}": v for k, v in ood.per_item.items()})
    return sections


def run_experiment(cfg: Config, finalize: bool = True, progress: bool = True,
                   stop_after_steps: int | None = None,
                   collective_timeout_s: Optional[float] = None) -> Path:
    """Train and evaluate one params set; returns results/<job_id>/ (or the running folder when
    finalize=False, for a launcher that moves the executed notebook in first).

    Under torchrun or srun (WORLD_SIZE > 1) every process trains on its shard of each global
    batch and rank 0 alone writes the results folder (docs/multi_gpu.md); collectives time out
    after collective_timeout_s (default: distributed.DEFAULT_TIMEOUT_S).
    """
    check_inputs(cfg)  # before any folder exists: the data files exist and fit the model
    cfg.name = cfg.name or default_name(cfg)  # into params.yaml, status, metrics, progress bar
    runtime = resolve_runtime(cfg)
    check_memory(cfg, runtime)  # sizes this device cannot hold: refused before any folder
    distributed = init_distributed(runtime.device.type, collective_timeout_s)
    rank = rank_world()[0]
    run_dir = _start_run(cfg, distributed, rank)
    started = time.time()
    tracker = Progress(run_dir if rank == 0 else None, batch_size=cfg.batch_size)  # progress.json
    tracker.start()
    try:
        set_determinism(cfg.seed, runtime.deterministic)
        tracker.stage("data")
        data = get_data(cfg, runtime.device)
        tracker.stage("model")
        # built for the training frames: crops, else the data's own frames (npz, radar)
        model = get_model(cfg, device=runtime.device,
                          frame_shape=(cfg.crop_size,) * 2 if cfg.crop_size else data.frame_shape)
        result = train(cfg, data, model, runtime, run_dir, progress=progress,
                       stop_after_steps=stop_after_steps,
                       on_step=tracker.on_step)
        tracker.finish_training(result.steps, result.sequences, result.train_seconds,
                                result.history[-1]["train_loss"], result.best_val)
        if rank == 0:
            stopping.stop_if_requested("after training, before test scoring")
            last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(result.best_state)
            scores = score_test_split(cfg, data, model, runtime)
            stopping.stop_if_requested("after test scoring, before the outputs")
            check_finite(scores.loss, "test loss")  # NaN scores are no completed run
            metrics = outputs.metrics_document(
                scores.metrics, outputs.identity(cfg, data, model,
                                                 train=result.history[-1]["train_loss"],
                                                 val=result.best_val, test=scores.loss),
                **score_sections(cfg, data, model, runtime, scores, result))
            tracker.stage("outputs")
            write_outputs(cfg, data, model, runtime, JobPaths(run_dir), result, metrics,
                          last_state, scores, started)
    except BaseException as error:
        tracker.close()  # no heartbeat once the folder is marked or renamed
        _record_end(run_dir, error, rank, distributed)
        oom = out_of_memory(cfg, error)
        if oom is not None:
            raise oom from None
        raise
    tracker.close()
    return _end_run(run_dir, rank, finalize, distributed)


def write_outputs(cfg: Config, data, model, runtime, paths: JobPaths, result, metrics: dict,
                  last_state: dict, scores: Scores, started: float) -> None:
    """scores.npz and every other output of a completed training; a write that fails (a full
    disk, a read-only folder) stops the run resumable, as a checkpoint that cannot be written
    does: run the same command again once there is room (training is not repeated)."""
    try:
        outputs.save_scores(paths, scores)
        outputs.write_training_outputs(cfg, data, model, runtime, paths, result, metrics,
                                       last_state, started)
    except OSError as e:
        raise RunStopped(f"the run's outputs could not be written in {paths.folder} "
                         f"({e.strerror or e}): the folder stays resumable from its last "
                         "checkpoint", "write_error") from None


def _end_run(run_dir: Path, rank: int, finalize: bool, distributed: bool) -> Path:
    """Rank 0 completes the folder (finalize) and returns it; the others return its final path.
    Then every rank meets the others at the end (ranks > 0 wait until rank 0 is done)."""
    try:
        if rank != 0:
            return JobPaths(run_dir).final.folder
        return results.complete_run(run_dir) if finalize else run_dir
    finally:
        _leave(distributed, rank)


def check_memory(cfg: Config, runtime) -> None:
    """limits.check_memory for the frames the model trains on (crops, a data file's frames,
    or Moving MNIST's canvas; the nominal size when a file's header does not tell)."""
    shapes = frame_shapes(cfg)
    frame = (cfg.crop_size,) * 2 if cfg.crop_size else shapes.get("train", shapes.get("data")) \
        or (cfg.image_size or NOMINAL_SIZE,) * 2
    model = check_architecture(cfg, frame)
    limits.check_memory(cfg, count_parameters(model), tuple(frame), model.frame_multiple,
                        device_memory(runtime.device), str(runtime.device))


def _record_end(run_dir: Path, error: BaseException, rank: int = 0, distributed: bool = False) -> None:
    """A stop (signal, Ctrl-C, a checkpoint that could not be written) leaves the folder in
    progress and resumable, marked `preempted` with why; any other error fails it. With several
    processes a failing rank writes rank-<k>.error, rank 0 alone marks the folder (a rank > 0's
    error first: rank 0 has usually only timed out waiting for it), then all meet at the end."""
    stopped = isinstance(error, (RunStopped, KeyboardInterrupt))
    if distributed and not stopped:
        write_rank_error(run_dir, rank, error)
    if rank == 0:
        try:
            if isinstance(error, RunStopped):  # a requeued or resubmitted job resumes it
                results.mark_preempted(run_dir, str(error), error.reason)
            elif isinstance(error, KeyboardInterrupt):
                results.mark_preempted(run_dir, "interrupted (Ctrl-C); the last checkpoint is "
                                       "kept", "interrupt")
            else:
                results.fail_run(run_dir, rank_failure(run_dir, error) if distributed else error)
        except OSError as e:  # a full disk: status.json cannot say it; the lock must not stay
            runlock.release(run_dir)  # in progress, its process gone: stale, and resumable
            _leave(distributed, rank)
            raise RunStopped(f"{first_line(error)}; {JobPaths(run_dir).status} "
                             f"could not be updated ({e.strerror or e}): the folder stays "
                             f"resumable from its last checkpoint", "write_error") from None
    _leave(distributed, rank)


def _leave(distributed: bool, rank: int) -> None:
    """Several processes: meet the other ranks at the end (ranks > 0 wait until rank 0 has
    written the folder) and leave the process group."""
    problem = end_together() if distributed else None
    if problem:
        print(f"nowcast: rank {rank}: the ranks did not end together: {problem}", file=sys.stderr)


def out_of_memory(cfg: Config, error: BaseException) -> Optional[NowcastError]:
    """A failed allocation as one line naming it and the sizes of the run; None for any other
    error. (torch's CPU allocator raises a plain RuntimeError, told only by its text.)"""
    text = first_line(error)
    if not (isinstance(error, (MemoryError, torch.OutOfMemoryError))
            or (isinstance(error, RuntimeError) and "can't allocate memory" in text)):
        return None
    return NowcastError(
        f"out of memory ({text[:160]}); this run's sizes: batch_size={cfg.batch_size}, "
        f"image_size={cfg.image_size}, k_in + k_out={cfg.k_in + cfg.k_out}, "
        f"val_sequences={cfg.val_sequences}, test_sequences={cfg.test_sequences}, "
        f"hidden_sizes={cfg.hidden_sizes}: make the largest smaller")


def _start_run(cfg: Config, distributed: bool, rank: int) -> Path:
    """Rank 0 creates (or finds again) the running folder; the others learn its path. Several
    processes: rank 0 makes sure checkpoint.pt is readable (checkpoint.load_resume falls back
    to checkpoint.prev.pt) before every rank loads it."""
    if not distributed:
        return results.start_run(cfg)
    holder: list = [None]
    if rank == 0:
        try:
            run_dir = results.start_run(cfg)
            load_resume(JobPaths(run_dir).checkpoint)
            holder = [str(run_dir)]
        except BaseException as error:  # every process must stop, not only rank 0
            holder = [described(error)]
    torch.distributed.broadcast_object_list(holder, src=0)
    if not JobPaths(holder[0]).in_progress:
        raise NowcastError(holder[0])
    return Path(holder[0])


def resume_command(config: str, overrides: list[str], job_id: str,
                   results_dir: Optional[str]) -> str:
    """The command that resumes a stopped `nowcast train`, every argument shell-quoted: pasted
    as printed, `--set hidden_sizes=[4, 4]` or an id with `$(...)` stays one literal argument."""
    words = ["nowcast", "train", "-c", config, *(w for o in overrides or [] for w in ("--set", o)),
             "--job-id", job_id, *(["--results", results_dir] if results_dir else [])]
    return shlex.join(str(w) for w in words)


def train_from_params(config: str, overrides: list[str] = (), job_id: Optional[str] = None,
                      results_dir: Optional[str] = None, progress: bool = True,
                      collective_timeout_s: Optional[float] = None) -> int:
    """`nowcast train`: one params set in this process, without the notebook; prints the
    results folder. Returns EXIT_STOPPED when stopped by a signal with a checkpoint.
    Under torchrun, collectives time out after collective_timeout_s."""
    given = {k: v for k, v in (("job_id", job_id), ("results_dir", results_dir)) if v}
    cfg = load_config(config, list(overrides or []), values=given)  # --job-id: text as typed
    check_inputs(cfg, config)  # names the params file (run_experiment checks again, unnamed)
    install_preemption_handler(interrupt=True)  # Ctrl-C: checkpoint and stop, resumable
    try:
        path = run_experiment(cfg, progress=progress, collective_timeout_s=collective_timeout_s)
    except (RunStopped, KeyboardInterrupt) as e:  # the folder stays resumable: say how, once
        again = resume_command(config, overrides, cfg.job_id, results_dir)
        print(f"nowcast: stopped ({getattr(e, 'reason', 'interrupt')}): "
              f"{str(e) or 'interrupted (Ctrl-C)'}; resume with: {again}", file=sys.stderr)
        return EXIT_STOPPED
    print(path)
    return 0
