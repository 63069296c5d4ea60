"""Scoring a trained model on the test split, once, with its protocol's metrics.

Moving MNIST and sequence files: the image metrics of `metrics.py` per lead time, with
persistence and the mean training frame scored by the same code beside them. Radar: the
verification scores of `verification.py` on the protocol's windows, with persistence and
optical-flow extrapolation beside them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from .baselines import Forecaster, baseline_scores, get_baseline, verify_radar
from .config import Config
from .data.moving_mnist import SPLIT_SEEDS
from .data.radar import RadarData
from .forecast import evaluate_split, forecast
from .losses import training_loss
from .metrics import ImageMetrics
from . import selection
from .protocols import IMAGE_BASELINES, RADAR_BASELINES, get_protocol
from .stats import skill_gain
from .verification import RadarVerification, radar_facts

# Baseline scores depend on the data only: computed once per data object, however many models
# are scored on it (weak keys: the scores go when the data does).
_baseline_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Scores:
    """A model's scores on the test split: the loss, metrics.json's fields, and the per-item
    values behind them (scores.npz: per sequence, or per radar window) for resampling."""
    loss: float
    metrics: dict
    per_item: dict[str, np.ndarray] = field(default_factory=dict)


# Scoring runs the model without gradients in batches; its largest activation is one gate
# tensor (4 x hidden channels at the cells' resolution, float32). A batch holds at most this
# many bytes of it: the seed's radar model on whole 192x176 frames takes 35 MB per window, so
# 32 windows at once were 1.1 GB per tensor and several GB resident (issue: 9.4 GB).
SCORING_BYTES = 256 * 2**20
SCORING_BATCH = 32
VERIFY_BATCH = 8


def scoring_batch(cfg: Config, model, frame_shape) -> int:
    """Sequences scored at once: the training batch, at least SCORING_BATCH, fewer where one
    gate tensor of that many would pass SCORING_BYTES (bounded memory whatever the frame
    size), at least 1."""
    h, w = frame_shape[-2:]
    cells = h * w / getattr(model, "patch_size", 1) ** 2
    per_sequence = 4 * max(cfg.hidden_sizes) * cells * 4
    return int(max(1, min(max(cfg.batch_size, SCORING_BATCH), SCORING_BYTES // per_sequence)))


def radar_batch(cfg: Config, model, data) -> int:
    """Radar windows forecast and verified at once: scoring_batch, at most VERIFY_BATCH (the
    verification's float64 fields and FSS tables cost ~50 MB a window on the KNMI grid)."""
    return min(VERIFY_BATCH, scoring_batch(cfg, model, data.frame_shape))


def _evaluate(cfg: Config, model, batch, runtime, with_metrics: bool = True):
    """evaluate_split with the run's loss, in batches of scoring_batch sequences."""
    return evaluate_split(model, batch, cfg.k_in, cfg.k_out,
                          training_loss(cfg), runtime,
                          batch_size=scoring_batch(cfg, model, batch.frames.shape),
                          with_metrics=with_metrics)


def score_test_split(cfg: Config, data, model, runtime) -> Scores:
    """Test loss and the protocol's metrics, on the test split, scored once."""
    radar = isinstance(data, RadarData)
    test = data.split("test")
    loss, image = _evaluate(cfg, model, test, runtime, with_metrics=not radar)
    if radar:
        verification = verify_radar(model_forecaster(cfg, model, runtime), data,
                                    batch_size=radar_batch(cfg, model, data))
        baselines = cached_baseline_scores(data, RADAR_BASELINES)
        per_item = verification.per_window()
        # the event of each window: windows of one event are correlated, the bootstrap
        # (stats.py) resamples whole events
        per_item["event"] = np.asarray(data.split_windows("test").event, dtype=np.int64)
        for name, b in baselines.items():  # the same windows: paired comparisons need no rerun
            if isinstance(b, RadarVerification):
                per_item.update({f"{name}__{k}": v for k, v in b.per_window().items()})
        metrics = dict(radar_facts(data, verification), baselines={
            name: b.result() if isinstance(b, RadarVerification) else {"unavailable": b}
            for name, b in baselines.items()})
        return Scores(loss, metrics, per_item)
    per_item = image.per_sequence()
    baselines = cached_image_baselines(data, cfg.k_in, cfg.k_out)
    for name, b in baselines.items():  # the same sequences: paired comparisons need no rerun
        per_item.update({f"{name}__{k}": v for k, v in b.per_sequence().items()})
    return Scores(loss, dict(image.result(), headline=get_protocol(cfg.protocol).headline,
                             n_sequences=len(test.frames),
                             baselines={name: b.result() for name, b in baselines.items()}), per_item)


def score_ood_split(cfg: Config, data, model, runtime) -> Optional[Scores]:
    """The out-of-domain test (the thesis's 3-digit test of a 2-digit model): the test split's
    metrics on test_sequences sequences of test_num_digits test digits (MovingMNIST's fixed
    "test_ood" split); None when test_num_digits is not set. metrics: mean, per_lead and
    `ood` (what the split is); per_item: per sequence, as the test split's. (test_num_digits
    is null off Moving MNIST: options.USES.)"""
    if cfg.test_num_digits is None:
        return None
    ood = data.split("test_ood")
    loss, image = _evaluate(cfg, model, ood, runtime)
    facts = {"num_digits": cfg.test_num_digits, "sequences": len(ood.frames), "loss": loss,
             "seed": SPLIT_SEEDS["test_ood"], "pool": "test"}
    return Scores(loss, dict(image.result(), ood=facts), image.per_sequence())


def image_baselines(data, k_in: int, k_out: int) -> dict[str, ImageMetrics]:
    """Persistence and the mean training frame on the test sequences, by the models' metrics."""
    test = data.split("test")
    forecasters = {name: get_baseline(name, data) for name in IMAGE_BASELINES}
    out = {}
    for name, predict in forecasters.items():
        metrics = ImageMetrics(k_out)
        for start in range(0, len(test.frames), 256):
            chunk = test.frames[start:start + 256, :k_in + k_out]
            metrics.update(torch.from_numpy(np.ascontiguousarray(predict(chunk[:, :k_in], k_out))),
                           torch.from_numpy(chunk[:, k_in:]))
        out[name] = metrics
    return out


def image_baseline_scores(cfg: Config, data, name: str) -> Scores:
    """One image baseline (persistence, mean_frame) scored alone on the test split, by the
    models' metrics on the same sequences (`nowcast evaluate --baseline` on Moving MNIST)."""
    b = cached_image_baselines(data, cfg.k_in, cfg.k_out)[name]
    return Scores(None, dict(b.result(), headline=get_protocol(cfg.protocol).headline,
                             n_sequences=len(data.split("test").frames)), b.per_sequence())


def cached_image_baselines(data, k_in: int, k_out: int) -> dict[str, ImageMetrics]:
    """image_baselines once per data object (evaluate may score several models on it)."""
    known = _baseline_cache.setdefault(data, {})
    if (k_in, k_out) not in known:
        known[(k_in, k_out)] = image_baselines(data, k_in, k_out)
    return known[(k_in, k_out)]


def split_means(cfg: Config, data, model, runtime, splits=("train", "val")) -> dict[str, dict]:
    """The final model's mean scores on other splits (the thesis's Table 4.1 prints train,
    validation and test side by side): a fixed sample of training sequences (its first
    `val_subset` when that is set: a bounded cost), the whole validation split. Radar:
    verification scores on the training and validation events' windows."""
    out = {}
    for split in splits:
        if isinstance(data, RadarData):
            out[split] = verify_radar(model_forecaster(cfg, model, runtime), data, split,
                                      batch_size=radar_batch(cfg, model, data)).result()["mean"]
            continue
        batch = data.split(split)
        _, image = _evaluate(cfg, model, batch.first(cfg.val_subset) if split == "train" else batch,
                             runtime)
        out[split] = image.result()["mean"]
    return out


def validation_skill(cfg: Config, model, runtime, data, first_guess: dict) -> dict[str, float]:
    """The history columns of a skill validation (selection.SKILL_COLUMNS): the model's radar
    scores on every validation window (val_files' too), and for a residual model
    `val_gain_low`, the lower end of the paired bootstrap interval over validation events of
    its skill gain over its first guess (stats.skill_gain; the guess's per-window counts and
    the windows' events computed once into `first_guess`, the caller's)."""
    batch = radar_batch(cfg, model, data)
    verification = verify_radar(model_forecaster(cfg, model, runtime), data, "val", batch)
    columns = selection.skill_columns(verification.per_lead())
    if getattr(model, "residual", False):
        if "counts" not in first_guess:
            guess = lambda x: model.guess(torch.from_numpy(x).to(runtime.device),  # noqa: E731
                                          cfg.k_out).clamp(0, 1).cpu().numpy()
            first_guess["counts"] = verify_radar(guess, data, "val", batch).per_window()
            first_guess["events"] = [f"{i}:{e}" for i, w in enumerate(data.window_sets("val"))
                                     for e in w.event]
        gain = skill_gain(verification.per_window(), first_guess["counts"], first_guess["events"])
        columns["val_gain_low"] = gain.low if gain.low is not None else float("-inf")
    return columns


def model_forecaster(cfg: Config, model, runtime) -> Forecaster:
    """The model as a numpy forecaster: (B, k_in, H, W) in [0, 1] -> (B, k_out, H, W)."""
    return lambda x: forecast(model, torch.from_numpy(x).to(runtime.device), cfg.k_out,
                              runtime).cpu().numpy()


def cached_baseline_scores(data: RadarData, names: Sequence[str]) -> dict:
    """`baselines.baseline_scores` of `data`, each baseline scored once per data object."""
    known = _baseline_cache.setdefault(data, {})
    known.update(baseline_scores(data, [name for name in names if name not in known]))
    return {name: known[name] for name in names}
