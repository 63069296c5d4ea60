"""Scoring a trained model on the test split, once, with its protocol's metrics.

Moving MNIST and sequence files: the image metrics of `metrics.py` per lead time. Radar: the
verification scores of `verification.py` on the protocol's windows, with the baselines
(persistence, optical-flow extrapolation) scored by the same code beside them.
"""

from __future__ import annotations

import torch

from .config import Config
from .forecast import evaluate_split, forecast
from .losses import make_loss
from .protocols import get_protocol


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
        metrics = dict(image_metrics, headline=get_protocol(cfg.protocol).headline,
                       n_sequences=len(test.frames))
    return loss, metrics


