"""One experiment end to end: params -> data -> model -> train -> evaluate -> results/<job_id>/.

This is what `nowcast train` and the notebook experiments/train.ipynb call.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import torch

from . import figures, results
from .config import Config
from .data import get_data
from .evaluate import evaluate_split, forecast, resolve_runtime, set_determinism
from .losses import make_loss
from .models import count_parameters, get_model
from .training import CHECKPOINT, Preempted, init_distributed, rank_world, train

HEADLINE = {"mmnist-t": ["mse_pixel255", "mae_pixel255"], "knmi-30-60": ["csi_20", "fss_20_5"]}


def write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    tmp.replace(path)


def score_test_split(cfg: Config, data, model, runtime) -> tuple[float, dict]:
    """Test loss and the protocol's metrics, on the test split, scored once."""
    test = data.split("test")
    loss_fn = make_loss(cfg.loss, cfg.ssim_weight)
    loss, image_metrics = evaluate_split(model, test, cfg.k_in, cfg.k_out, loss_fn, runtime,
                                         batch_size=max(cfg.batch_size, 32),
                                         with_metrics=not hasattr(data, "score"))
    if hasattr(data, "score"):  # radar: verification scores and baselines on the same windows
        metrics = data.score(lambda x: forecast(model, torch.from_numpy(x).to(runtime.device),
                                                cfg.k_out, runtime).cpu().numpy())
    else:
        metrics = dict(image_metrics, headline=HEADLINE.get(cfg.protocol, ["mse_frame", "ssim"]),
                       n_sequences=len(test.frames))
    return loss, metrics


def sample_figures(cfg: Config, data, model, runtime, run_dir: Path) -> None:
    """GIFs from the split they name (train.gif: a training sequence; test.gif: a test one)."""
    length = cfg.k_in + cfg.k_out
    samples = {"train": data.train_batch(0, 1, length).frames[0], "test": data.split("test").frames[0]}
    for split, seq in samples.items():
        inputs, target = seq[:cfg.k_in], seq[cfg.k_in:length]
        pred = forecast(model, torch.from_numpy(inputs[None]).to(runtime.device), cfg.k_out,
                        runtime)[0].cpu().numpy()
        figures.sequence_gif(inputs, target, pred, run_dir / f"{split}.gif", split)
        if split == "test":
            figures.frame_strip(inputs, target, pred, run_dir / "test_strip.png",
                                title=f"{cfg.name}: test sequence 1")


def run_facts(cfg: Config, data, model, **losses: float) -> dict:
    """What metrics.json says besides the scores: which model, which protocol and data, losses."""
    return dict(name=cfg.name, job_id=cfg.job_id, architecture=cfg.architecture,
                parameters=count_parameters(model), protocol=cfg.protocol,
                follows_protocol=bool(data.follows_protocol), data=data.description,
                k_in=cfg.k_in, k_out=cfg.k_out, losses=dict(loss=cfg.loss, **losses))


def run_experiment(cfg: Config, finalize: bool = True, progress: bool = True,
                   stop_after_steps: int | None = None) -> Path:
    """Train and evaluate one params set; returns results/<job_id>/ (or the running folder when
    finalize=False, for a launcher that moves the executed notebook in first).

    Under torchrun (WORLD_SIZE > 1) every process trains on its shard of each global batch and
    rank 0 alone writes the results folder.
    """
    runtime = resolve_runtime(cfg)
    distributed = init_distributed(runtime.device.type)
    rank = rank_world()[0]
    run_dir = _start_run(cfg, distributed, rank)
    started = time.time()
    try:
        set_determinism(cfg.seed, cfg.deterministic)
        data = get_data(cfg)
        model = get_model(cfg, device=runtime.device)
        result = train(cfg, data, model, runtime, run_dir, progress=progress,
                       stop_after_steps=stop_after_steps)
        if rank == 0:
            last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(result.best_state)
            test_loss, metrics = score_test_split(cfg, data, model, runtime)
            metrics.update(run_facts(cfg, data, model, train=result.history[-1]["train_loss"],
                                     val=result.best_val, test=test_loss))
            finish_outputs(cfg, data, model, runtime, run_dir, result, metrics, last_state, started)
        if distributed:
            torch.distributed.barrier()
    except Preempted:
        raise  # the folder stays in progress; a requeued job resumes it
    except BaseException as error:
        if rank == 0:
            results.fail_run(run_dir, error)
        raise
    if rank != 0:
        return results.final_path(run_dir)
    return results.complete_run(run_dir) if finalize else run_dir


def _start_run(cfg: Config, distributed: bool, rank: int) -> Path:
    """Rank 0 creates (or finds again) the running folder; the others learn its path."""
    if not distributed:
        return results.start_run(cfg)
    holder: list = [None]
    if rank == 0:
        try:
            holder = [str(results.start_run(cfg))]
        except BaseException as error:  # every process must stop, not only rank 0
            holder = [f"{type(error).__name__}: {error}"]
    torch.distributed.broadcast_object_list(holder, src=0)
    if not Path(holder[0]).name.startswith(results.RUNNING_PREFIX):
        from .errors import NowcastError
        raise NowcastError(holder[0])
    return Path(holder[0])


def finish_outputs(cfg: Config, data, model, runtime, run_dir: Path, result, metrics: dict,
                   last_state: dict, started: float) -> None:
    """Everything a completed folder holds besides params and status."""
    results.write_json(run_dir / "metrics.json", metrics)
    write_csv(run_dir / "history.csv", result.history)
    write_csv(run_dir / "batch_losses.csv", result.batch_losses)
    figures.loss_plot(result.history, cfg.loss, run_dir / "loss.png", title=cfg.name)
    figures.loss_median_plot(result.batch_losses, result.history, cfg.loss, run_dir / "loss_median.png")
    figures.per_lead_plot(metrics, run_dir / "per_lead.png")
    sample_figures(cfg, data, model, runtime, run_dir)
    checkpoint = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    checkpoint.update(model=result.best_state, last_model=last_state)
    torch.save({k: v for k, v in checkpoint.items() if k not in ("history", "batch_losses")},
               run_dir / "model.pt")
    results.write_json(run_dir / "env.json", results.environment(runtime, {
        "wall_seconds": round(time.time() - started, 2),
        "train_seconds": round(result.train_seconds, 2),
        "train_sequences_per_s": round(result.sequences / max(result.train_seconds, 1e-9), 2),
        "steps": result.steps, "stopped_early": result.stopped_early,
        "deterministic": cfg.deterministic, "processes": rank_world()[1]}))


def load_checkpoint(path: str | Path) -> tuple[Config, torch.nn.Module]:
    """A model from a model.pt, without unpickling arbitrary objects (weights_only=True)."""
    from .config import load_config
    from .errors import NowcastError
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NowcastError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise NowcastError(f"{path}: not a nowcast checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise NowcastError(f"{path}: not a nowcast checkpoint (no config/model)")
    cfg = load_config(values=ckpt["config"])
    model = get_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return cfg, model

