"""Scoring a trained model on the test split, once, with its protocol's metrics.

Moving MNIST and sequence files: the image metrics of `metrics.py` per lead time. Radar: the
verification scores of `verification.py` on the protocol's windows, with the baselines
(persistence, optical-flow extrapolation) scored by the same code beside them.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import torch

from .baselines import baseline_scores
from .config import Config
from .data.radar import RadarData
from .forecast import evaluate_split, forecast
from .losses import make_loss
from .protocols import get_protocol
from .verification import Forecaster, evaluate_radar

RADAR_BASELINES = ("persistence", "extrapolation")

# Baseline scores depend on the data only: computed once per data object, however many models
# are scored on it (weak keys: the scores go when the data does).
_baseline_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def score_test_split(cfg: Config, data, model, runtime) -> tuple[float, dict]:
    """Test loss and the protocol's metrics, on the test split, scored once."""
    radar = isinstance(data, RadarData)
    test = data.split("test")
    loss, image_metrics = evaluate_split(model, test, cfg.k_in, cfg.k_out,
                                         make_loss(cfg.loss, cfg.ssim_weight), runtime,
                                         batch_size=max(cfg.batch_size, 32), with_metrics=not radar)
    if radar:
        return loss, radar_scores(data, model_forecaster(cfg, model, runtime))
    return loss, dict(image_metrics, headline=get_protocol(cfg.protocol).headline,
                      n_sequences=len(test.frames))


def model_forecaster(cfg: Config, model, runtime) -> Forecaster:
    """The model as a numpy forecaster: (B, k_in, H, W) in [0, 1] -> (B, k_out, H, W)."""
    return lambda x: forecast(model, torch.from_numpy(x).to(runtime.device), cfg.k_out,
                              runtime).cpu().numpy()


def radar_scores(data: RadarData, predict: Forecaster,
                 baselines: Sequence[str] = RADAR_BASELINES) -> dict:
    """Verification scores of `predict` on the test windows, with the baselines' beside them
    (metrics.json's "baselines")."""
    metrics = evaluate_radar(predict, data)
    metrics["baselines"] = cached_baseline_scores(data, baselines)
    return metrics


def cached_baseline_scores(data: RadarData, names: Sequence[str]) -> dict:
    """`baselines.baseline_scores` of `data`, each baseline scored once per data object."""
    known = _baseline_cache.setdefault(data, {})
    known.update(baseline_scores(data, [name for name in names if name not in known]))
    return {name: known[name] for name in names}
