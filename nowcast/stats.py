"""Uncertainty of test scores: intervals over repeated seeds, bootstrap intervals of one run's
test score, and paired comparisons against a baseline (docs/statistics.md).

Three tools, all on numbers already saved in results folders (no model is rerun):

- `t_interval(values)`: the mean of a handful of runs that differ only in their seed, with
  the two-sided Student t interval  mean ± t_{1-α/2, n-1} · s / √n  (s: the sample standard
  deviation, n - 1 degrees of freedom).
- `resample_weights` + `score_samples` + `bootstrap_interval`: the percentile bootstrap of one
  run's test score. Units (test sequences; radar events, i.e. blocks of windows) are drawn
  with replacement, RESAMPLES times from a fixed seed; every score is recomputed from the
  resampled items: Moving MNIST metrics as means of the per-sequence values, radar scores
  (CSI, FSS, ...) from the **pooled** per-window counts and sums by `verification.py` itself
  (never a mean of per-window ratios). The interval is the 2.5th and 97.5th percentile.
- `compare`: the paired bootstrap of model minus baseline (the same resampled units for
  both), with the verdict "better", "worse" or "not distinguishable" (the interval excludes
  0 or not; the metric's direction from `protocols.METRICS`).

Sample arrays carry the full-sample estimate as row 0 and the resamples after it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from .protocols import direction
from .selection import SKILL_KEYS
from .verification import RADAR_KEYS, RadarVerification

CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 20190101           # fixed: the same resample indices for every run of the same size
MIN_DEFINED = 0.95        # a bootstrap interval needs the score defined in this share of resamples


@dataclass(frozen=True)
class Interval:
    """An estimate and its interval; low/high None when there is none (one seed, undefined)."""
    estimate: Optional[float]
    low: Optional[float] = None
    high: Optional[float] = None
    n: int = 0                         # seeds (t interval) or resamples (bootstrap)

    @property
    def half_width(self) -> Optional[float]:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """Model minus baseline on one metric, its paired bootstrap interval and the verdict."""
    difference: Interval
    verdict: str              # "better" | "worse" | "not distinguishable" | "undefined" | "higher" | "lower"


# --------------------------------------------------------------------------------------------
# repeated seeds: Student t
# --------------------------------------------------------------------------------------------

def _t_central_mass(theta: float, dof: int) -> float:
    """P(|T| <= t) for Student t with integer dof, t = √dof · tan θ (Abramowitz and Stegun
    26.7.3-4: a finite series in cos² θ, exact up to rounding)."""
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    term = total = 1.0
    if dof % 2:
        if dof == 1:
            return 2 * theta / math.pi
        for k in range(1, (dof - 3) // 2 + 1):
            term *= (2 * k) / (2 * k + 1) * c2
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    for k in range(1, (dof - 2) // 2 + 1):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total


def t_quantile(p: float, dof: int) -> float:
    """The p quantile (p > 0.5) of Student's t with an integer number of degrees of freedom,
    by bisection on the exact distribution function (no scipy needed at report time)."""
    if not (0.5 < p < 1) or dof < 1 or int(dof) != dof:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and an integer dof >= 1, got {p}, {dof}")
    mass = 2 * p - 1
    lo, hi = 0.0, math.pi / 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central_mass(mid, int(dof)) < mass else (lo, mid)
    return math.sqrt(dof) * math.tan((lo + hi) / 2)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of the finite values and its Student t interval (n - 1 dof); no interval for n < 2."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Interval(None)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, n=len(x))
    half = t_quantile(0.5 + confidence / 2, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return Interval(mean, mean - half, mean + half, len(x))


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------

def resample_weights(n_items: int, blocks: Optional[np.ndarray] = None,
                     resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(1 + resamples, n_items) multiplicities: row 0 all ones (the sample itself), then one
    row per resample. `blocks` (n_items,) names each item's unit (a radar window's event):
    whole units are drawn with replacement and every item of a unit gets its count; None:
    each item is its own unit. Read-only, and made once per (items, units, resamples, seed):
    a report over many runs of one test set resamples them all alike."""
    units = np.arange(n_items) if blocks is None else np.asarray(blocks)
    if units.shape != (n_items,) or n_items < 1:
        raise ValueError(f"blocks: expected ({n_items},) unit ids, got shape {units.shape}")
    return _weights(n_items, None if blocks is None else tuple(units.tolist()), resamples, seed)


@functools.lru_cache(maxsize=16)
def _weights(n_items: int, blocks: Optional[tuple], resamples: int, seed: int) -> np.ndarray:
    units = np.arange(n_items) if blocks is None else np.asarray(blocks)
    _, unit = np.unique(units, return_inverse=True)
    m = int(unit.max()) + 1
    draws = np.random.default_rng(seed).integers(0, m, size=(resamples, m))
    offsets = (np.arange(resamples) * m)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * m).reshape(resamples, m)
    weights = np.concatenate([np.ones((1, n_items)), counts[:, unit].astype(np.float64)])
    weights.flags.writeable = False
    return weights


def mean_samples(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted means over items of (N, k) per-item values: (rows of weights, k)."""
    v = np.asarray(values, dtype=np.float64)
    return (weights @ v.reshape(len(v), -1)) / weights.sum(1, keepdims=True)


def radar_samples(per_window: Mapping[str, np.ndarray], weights: np.ndarray,
                  prefix: str = "") -> dict[str, np.ndarray]:
    """Per-lead radar scores of every row of weights from the per-window counts and sums
    (scores.npz: `contingency`, `fss_sums`, `errors`; a baseline's with `prefix`):
    {name: (rows, k)}, NaN where undefined. The resampled counts are summed first, then the
    ratios are taken by verification.py's formulas."""
    pooled = {key: np.tensordot(weights, np.asarray(per_window[prefix + key], np.float64), axes=(1, 0))
              for key in RADAR_KEYS}
    verification = RadarVerification(pooled["contingency"].shape[-1], per_window["thresholds_dbz"],
                                     fss_scales=[int(s) for s in per_window["fss_scales"]])
    rows = [verification.scores(*(pooled[key][i] for key in RADAR_KEYS)) for i in range(len(weights))]
    return {name: np.array([[np.nan if v is None else v for v in r[name]] for r in rows], dtype=np.float64)
            for name in rows[0]}


def score_samples(per_item: Mapping[str, np.ndarray], weights: np.ndarray,
                  prefix: str = "") -> dict[str, np.ndarray]:
    """Per-lead scores (rows of weights, k) of a model (prefix "") or a baseline
    ("<name>__") from scores.npz's per-item arrays: radar counts when present, else the
    per-sequence image metrics (their means)."""
    if prefix + "contingency" in per_item:
        return radar_samples(per_item, weights, prefix)
    keys = [key for key, v in per_item.items()
            if key.startswith(prefix) and "__" not in key[len(prefix):] and np.ndim(v) == 2]
    if not keys:
        return {}
    # one product for every metric: the weights are read once
    stacked = mean_samples(np.concatenate([np.asarray(per_item[k], np.float64) for k in keys], axis=1),
                           weights)
    ends = np.cumsum([np.shape(per_item[k])[1] for k in keys])
    return {k[len(prefix):]: part for k, part in zip(keys, np.split(stacked, ends[:-1], axis=1))}


def skill_gain(model: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
               events: Sequence) -> Interval:
    """The paired bootstrap interval, over events (whole events drawn with replacement, every
    window of a drawn event counted), of the validation skill of `model` minus that of
    `reference`, from the per-window counts of each on the same windows
    (RadarVerification.per_window; `events`: each window's event):

        skill = (1/K) sum_k (CSI_20(k) + FSS_20,5(k)) / 2     (selection.py; undefined: 0)
    """
    weights = resample_weights(len(events), np.asarray(events))

    def skill(per_window: Mapping[str, np.ndarray]) -> np.ndarray:
        samples = radar_samples(per_window, weights)
        return np.mean(sum(np.nan_to_num(samples[k]) for k in SKILL_KEYS) / len(SKILL_KEYS), axis=1)
    return bootstrap_interval(skill(model) - skill(reference))


def lead_mean(per_lead: np.ndarray) -> np.ndarray:
    """The mean over leads of every row (NaN when a lead is undefined, as metrics.json's None)."""
    return np.asarray(per_lead, dtype=np.float64).mean(axis=-1)


def bootstrap_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Row 0: the estimate; rows 1..: resamples -> the percentile interval (numpy's linear
    interpolation). No interval when the score is undefined in more than 5 % of resamples."""
    samples = np.asarray(samples, dtype=np.float64)
    estimate = float(samples[0]) if np.isfinite(samples[0]) else None
    rest = samples[1:]
    finite = rest[np.isfinite(rest)]
    if estimate is None or len(finite) < MIN_DEFINED * len(rest) or len(finite) == 0:
        return Interval(estimate, n=len(rest))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), len(rest))


def verdict(difference: Interval, metric_direction: int) -> str:
    """'better' / 'worse' when the interval of model minus baseline excludes 0 (by the
    metric's direction), else 'not distinguishable'."""
    if difference.low is None or difference.high is None:
        return "undefined"
    sign = 1 if difference.low > 0 else -1 if difference.high < 0 else 0
    if sign == 0:
        return "not distinguishable"
    if metric_direction == 0:
        return "higher" if sign > 0 else "lower"
    return "better" if sign == metric_direction else "worse"


def compare(model: np.ndarray, baseline: np.ndarray, metric: str) -> Comparison:
    """Paired bootstrap: model and baseline samples from the same rows of weights."""
    difference = bootstrap_interval(np.asarray(model, np.float64) - np.asarray(baseline, np.float64))
    return Comparison(difference, verdict(difference, direction(metric)))
