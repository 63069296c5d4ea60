"""What a results folder holds besides params and status, written here and nowhere else:
metrics.json, scores.npz, history.csv, batch_losses.csv, the figures, model.pt and env.json
(their names: paths.JobPaths). experiment.py (a training run) and evaluate.py (scores alone:
a checkpoint or a baseline) call these; results.py writes params and status.

metrics.json is assembled in one place, `metrics_document`:

    {scorer's fields: protocol, data, n_sequences, k_in, k_out, headline, mean, per_lead, baselines}
    | {identity: name, job_id, architecture, parameters, protocol, follows_protocol, data, losses}
    | {sections: splits, ood, training, checkpoint, seconds: what this kind of run adds}

and checked against nowcast.schema when the report reads it.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
import torch

from . import figures
from .checkpoint import model_file
from .config import Config
from .cost import run_cost, step_flop, training_frame_shape
from .data.radar.units import dbz_to_unit
from .distributed import rank_world
from .forecast import forecast
from .models import count_parameters
from .paths import JobPaths
from .predict import RADAR_SCALE
from .runtime import environment
from .scoring import Scores
from .util import atomic_path, finite_or_none, write_csv, write_json


def identity(cfg: Config, data=None, model=None, architecture: Optional[str] = None,
             **losses: float) -> dict:
    """Which run: name and job id; the model (architecture and parameter count; a baseline
    names itself and has none); with `data`, the protocol and the data it was scored on;
    with losses, the loss's name and its values (train, val, test)."""
    facts: dict[str, Any] = dict(name=cfg.name, job_id=cfg.job_id,
                                 architecture=architecture or cfg.architecture,
                                 parameters=0 if model is None else count_parameters(model))
    if data is not None:
        facts.update(protocol=cfg.protocol, follows_protocol=bool(data.follows_protocol),
                     data=data.description, k_in=cfg.k_in, k_out=cfg.k_out)
    if losses:
        facts["losses"] = dict(loss=cfg.loss, **losses)
    return facts


def metrics_document(scores: dict, run: dict, **sections: Any) -> dict:
    """metrics.json: the scorer's fields, then the run's identity, then its sections."""
    return {**scores, **run, **sections}


def write_metrics(paths: JobPaths, document: dict) -> None:
    write_json(paths.metrics, finite_or_none(document))  # strict JSON: undefined -> null


def save_scores(paths: JobPaths, scores: Scores) -> None:
    """scores.npz: the per-sequence (or per-window) values behind metrics.json, compact."""
    with atomic_path(paths.scores) as tmp, open(tmp, "wb") as f:  # np.savez names a path .npz
        np.savez_compressed(f, **scores.per_item)


# the test sequence the figures show: for radar the window with the largest area at or above
# this reflectivity in its forecast frames (the first of equal ones: a dry window shows nothing)
SHOWN_RAIN_DBZ = 20.0


def shown_test_item(data, cfg: Config, windows=None) -> int:
    """Which test sequence the figures show: radar, the window with the most pixel-leads at or
    above SHOWN_RAIN_DBZ in its k_out observed future frames (ties: the first); else the first.
    `windows`: data.split_windows("test"), when the caller has cut them."""
    if cfg.dataset != "radar":
        return 0
    windows = windows if windows is not None else data.split_windows("test")
    future = windows.dbz[:, cfg.k_in:cfg.k_in + cfg.k_out]
    with np.errstate(invalid="ignore"):
        wet = (future >= SHOWN_RAIN_DBZ).sum(axis=(1, 2, 3))
    return int(np.argmax(wet))


def frame_look(data, cfg: Config, split: str, item: int = 0, mask=None,
               windows=None) -> figures.FrameLook:
    """How the figures draw this data: radar in colour, credited to its services, the test
    window's valid times (UTC) above its frames (`windows`: as for shown_test_item)."""
    if cfg.dataset != "radar":
        return figures.FrameLook()
    if split != "test":
        credit = ", ".join(dict.fromkeys(events.source for events, _ in
                                         [data.sources["train"], *data.extra_train]))
        return figures.FrameLook(radar=RADAR_SCALE, credit=credit, masks=mask)
    windows = windows if windows is not None else data.split_windows("test")
    times = ()
    if windows.times is not None:
        stamps = windows.times[item].astype("datetime64[m]").astype(str)
        times = tuple(t.replace("T", " ")[5:] + " UTC" if i in (0, cfg.k_in) else t[-5:]
                      for i, t in enumerate(stamps))
    return figures.FrameLook(radar=RADAR_SCALE, credit=windows.source, times=times,
                             masks=np.isfinite(windows.dbz[item]))


def sample_figures(cfg: Config, data, model, runtime, paths: JobPaths) -> None:
    """GIFs from the split they name (train.gif: a training sequence; test.gif: the test
    sequence `shown_test_item` picks), and the test frame strip for PDFs."""
    length = cfg.k_in + cfg.k_out
    train = data.train_batch(0, 1, length)
    train_mask = None if train.mask is None else train.mask[0].cpu().numpy()
    if cfg.dataset == "radar":  # the test windows cut once: which one, its frames, times, masks
        windows = data.split_windows("test")
        item = shown_test_item(data, cfg, windows)
        test = dbz_to_unit(windows.dbz[item])  # as RadarData.split gives it
    else:
        windows, item = None, 0
        test = data.split("test").frames[item]
    samples = {"train": (train.frames[0].cpu().numpy(), paths.train_gif,
                         frame_look(data, cfg, "train", mask=train_mask)),
               "test": (test, paths.test_gif, frame_look(data, cfg, "test", item, windows=windows))}
    for split, (seq, gif, look) in samples.items():
        inputs, target = seq[:cfg.k_in], seq[cfg.k_in:length]
        pred = forecast(model, torch.from_numpy(inputs[None]).to(runtime.device), cfg.k_out,
                        runtime)[0].cpu().numpy()
        figures.sequence_gif(inputs, target, pred, gif, split, look=look)
        if split == "test":
            figures.frame_strip(inputs, target, pred, paths.test_strip_png, look=look,
                                title=f"{cfg.name}: test sequence {item + 1}")


def write_training_outputs(cfg: Config, data, model, runtime, paths: JobPaths, result,
                           metrics: dict, last_state: dict, started: float) -> None:
    """Everything a completed training folder holds besides params, status and scores.npz."""
    write_metrics(paths, metrics)
    write_csv(paths.history, result.history)
    write_csv(paths.batch_losses, result.batch_losses)
    figures.loss_plot(result.history, cfg.loss, paths.loss_png, title=cfg.name)
    figures.loss_median_plot(result.batch_losses, result.history, cfg.loss, paths.loss_median_png)
    figures.per_lead_plot(metrics, paths.per_lead_png)
    sample_figures(cfg, data, model, runtime, paths)
    model_file(paths, result.best_state, last_state, model.frame_shape, getattr(data, "grid", None))
    steady = result.steady_sequences_per_s(cfg.batch_size)
    flop = step_flop(cfg, training_frame_shape(cfg, model.frame_shape))
    write_env(paths, runtime, {
        # the run's, over all its attempts: an earlier attempt ended in training, so its wall
        # time is its training time
        "wall_seconds": round(time.time() - started + result.earlier_seconds, 2),
        "train_seconds": round(result.train_seconds, 2),
        "validation_seconds": round(result.validation_seconds, 2),
        "first_step_seconds": result.first_step_seconds,
        "train_sequences_per_s": round(result.sequences_per_s, 2),
        "steady_sequences_per_s": None if steady is None else round(steady, 2),
        "steps": result.steps, "stopped": result.stopped, "stopped_early": result.stopped_early,
        "time_budget_min": cfg.time_budget_min, "deterministic": runtime.deterministic,
        "processes": rank_world()[1], **run_cost(cfg, result.steps, flop),
        "cost_recorded": "at training"})


def write_evaluation_outputs(paths: JobPaths, runtime, document: dict, scores: Scores,
                             started: float) -> None:
    """A scores-only folder (`nowcast evaluate`): metrics.json, scores.npz, the per-lead
    figure, env.json."""
    write_metrics(paths, document)
    save_scores(paths, scores)
    figures.per_lead_plot(document, paths.per_lead_png)
    write_env(paths, runtime, {"wall_seconds": round(time.time() - started, 2)})


def write_env(paths: JobPaths, runtime, extra: dict) -> None:
    write_json(paths.env, environment(runtime, extra))
