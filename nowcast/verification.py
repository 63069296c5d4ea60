"""Radar verification scores per lead time, as the KNMI-30/60 protocol defines them.

Every score is computed from sums pooled over all windows of a lead time (never an average of
per-window ratios), only over the blocks where the **target** has data; a forecast that is NaN
there counts as 0 dBZ. An event is value >= threshold.

Categorical scores at a threshold, from the contingency counts pooled over windows
(H hits, M misses, F false alarms, R correct rejections):

- POD = H / (H + M)                      probability of detection
- FAR = F / (H + F)                      false alarm ratio
- CSI = H / (H + M + F)                  critical success index (threat score)
- HSS = 2 (H R - F M) / ((H + M)(M + R) + (H + F)(F + R))   Heidke skill score

FSS (Roberts and Lean 2008), as pysteps' `fss_init/fss_accum/fss_compute`: binary fields
I = [x >= threshold] (NaN and no data: non-event), neighbourhood fractions S = the n x n
moving average of I with zeros outside the grid, then

- FSS = 1 - sum (S_f - S_o)^2 / (sum S_f^2 + sum S_o^2), sums over blocks and windows.

Continuous scores in dBZ over the scored blocks b of all windows (N of them):

- MAE = sum |f_b - o_b| / N,   RMSE = sqrt(sum (f_b - o_b)^2 / N).

Thresholds and FSS scales are the protocol's (`protocols.THRESHOLDS_DBZ`, `FSS_SCALES`: 5 and
11 blocks, 20 km and 44 km on the 4 km grid).

A score whose denominator is 0 (e.g. no event at 30 dBZ) is undefined: None in the result.
The mean over leads is the arithmetic mean of the per-lead values (None if one is undefined).
"""

from __future__ import annotations

import numpy as np

from .errors import NowcastError
from .protocols import FSS_SCALES, FSS_THRESHOLD_DBZ, THRESHOLDS_DBZ, get_protocol, threshold_tag

# The per-window counts and sums that are pooled before any ratio (a bootstrap resamples them).
RADAR_KEYS = ("contingency", "fss_sums", "errors")


def box_mean(field: np.ndarray, size: int) -> np.ndarray:
    """n x n moving average over the last two axes with zeros outside the grid
    (scipy.ndimage.uniform_filter(mode="constant", cval=0), odd n), by summed-area tables."""
    if size % 2 == 0:
        raise ValueError(f"box size must be odd, got {size}")
    half = size // 2
    pad = [(0, 0)] * (field.ndim - 2) + [(half + 1, half), (half + 1, half)]
    table = np.pad(field.astype(np.float64), pad).cumsum(-2).cumsum(-1)
    h, w = field.shape[-2:]
    window = (table[..., size:size + h, size:size + w] - table[..., :h, size:size + w]
              - table[..., size:size + h, :w] + table[..., :h, :w])
    return window / (size * size)


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(n / d) if d > 0 else None for n, d in zip(num, den)]


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


class RadarVerification:
    """Accumulates forecasts against targets, lead by lead; `result()` gives the scores.

    Feed `add(forecast_dbz, target_dbz, target_valid)`, each (B, k_out, H, W), as many times
    as there are batches. Counts and sums are kept per window (`per_window()`: what a
    bootstrap over windows or events resamples) and pooled over all windows before any ratio
    is taken.
    """

    def __init__(self, k_out: int, thresholds=THRESHOLDS_DBZ, fss_threshold=FSS_THRESHOLD_DBZ,
                 fss_scales=FSS_SCALES):
        self.k_out = k_out
        self.thresholds = tuple(float(t) for t in thresholds)
        self.fss_threshold = float(fss_threshold)
        self.fss_scales = tuple(fss_scales)
        # per window: contingency (B, thresholds, 4 [hits, misses, false alarms, rejections], k_out),
        # FSS sums (B, scales, 3 [S_f^2, S_f S_o, S_o^2], k_out), errors (B, 3 [|e|, e^2, n], k_out)
        self.contingency: list[np.ndarray] = []
        self.fss: list[np.ndarray] = []
        self.errors: list[np.ndarray] = []

    def add(self, forecast_dbz: np.ndarray, target_dbz: np.ndarray, target_valid: np.ndarray) -> None:
        f, o = np.asarray(forecast_dbz, np.float64), np.asarray(target_dbz, np.float64)
        valid = np.asarray(target_valid, bool) & np.isfinite(o)
        if not (f.shape == o.shape == valid.shape) or f.ndim != 4 or f.shape[1] != self.k_out:
            raise NowcastError(f"verification: expected (B, {self.k_out}, H, W) forecast, target and "
                               f"mask, got {f.shape}, {o.shape}, {valid.shape}")
        f = np.where(np.isfinite(f), f, 0.0)          # no forecast at a scored block: 0 dBZ
        space = (2, 3)
        table = []
        for thr in self.thresholds:
            fe, oe = (f >= thr) & valid, (o >= thr) & valid
            table.append(np.stack([(fe & oe).sum(space), (~fe & oe).sum(space),
                                   (fe & ~oe).sum(space), (valid & ~fe & ~oe).sum(space)], axis=1))
        self.contingency.append(np.stack(table, axis=1).astype(np.int64))
        fe = ((f >= self.fss_threshold) & valid).astype(np.float64)
        oe = ((o >= self.fss_threshold) & valid).astype(np.float64)
        sums = []
        for scale in self.fss_scales:
            sf, so = box_mean(fe, scale), box_mean(oe, scale)
            sums.append(np.stack([(sf * sf).sum(space), (sf * so).sum(space), (so * so).sum(space)], axis=1))
        self.fss.append(np.stack(sums, axis=1))
        error = np.where(valid, f - o, 0.0)
        self.errors.append(np.stack([np.abs(error).sum(space), (error ** 2).sum(space),
                                     valid.sum(space)], axis=1))

    def per_window(self) -> dict[str, np.ndarray]:
        """The per-window counts and sums (scores.npz of a radar run)."""
        k, t, s = self.k_out, len(self.thresholds), len(self.fss_scales)
        def stacked(parts: list[np.ndarray], shape: tuple, dtype) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)
        return {"contingency": stacked(self.contingency, (t, 4, k), np.int64),
                "fss_sums": stacked(self.fss, (s, 3, k), np.float64),
                "errors": stacked(self.errors, (3, k), np.float64),
                "thresholds_dbz": np.array(self.thresholds), "fss_scales": np.array(self.fss_scales)}

    @property
    def windows(self) -> int:
        return sum(len(c) for c in self.contingency)

    def per_lead(self) -> dict[str, list[float | None]]:
        """Scores per lead from the counts and sums pooled over every window."""
        per_window = self.per_window()
        return self.scores(*(per_window[key].sum(0) for key in RADAR_KEYS))

    def scores(self, contingency: np.ndarray, fss_sums: np.ndarray,
               errors: np.ndarray) -> dict[str, list[float | None]]:
        """Scores per lead from counts and sums already pooled over windows (contingency
        (thresholds, 4, k), fss_sums (scales, 3, k), errors (3, k)): the bootstrap pools
        resampled windows itself and takes the ratios here."""
        abs_error, sq_error, count = errors
        scores: dict[str, list[float | None]] = {}
        for i, thr in enumerate(self.thresholds):
            h, m, fa, r = contingency[i].astype(np.float64)
            t = threshold_tag(thr)
            scores[f"csi_{t}"] = _ratio(h, h + m + fa)
            scores[f"pod_{t}"] = _ratio(h, h + m)
            scores[f"far_{t}"] = _ratio(fa, h + fa)
            scores[f"hss_{t}"] = _ratio(2 * (h * r - fa * m), (h + m) * (m + r) + (h + fa) * (fa + r))
        for j, scale in enumerate(self.fss_scales):
            ff, fo, oo = fss_sums[j]
            skill = _ratio(ff - 2 * fo + oo, ff + oo)
            name = f"fss_{threshold_tag(self.fss_threshold)}_{scale}"
            scores[name] = [None if s is None else 1.0 - s for s in skill]
        scores["mae_dbz"] = _ratio(abs_error, count)
        rmse = _ratio(sq_error, count)
        scores["rmse_dbz"] = [None if v is None else float(np.sqrt(v)) for v in rmse]
        return scores

    def result(self) -> dict:
        """{"mean": {name: value}, "per_lead": {name: [k_out values]}} (metrics.json shape)."""
        per_lead = self.per_lead()
        return {"mean": {k: _mean(v) for k, v in per_lead.items()}, "per_lead": per_lead}


def radar_facts(data, scores: RadarVerification) -> dict:
    """metrics.json's fields for a radar evaluation: the data, then the scores."""
    return {"protocol": data.protocol, "follows_protocol": bool(data.follows_protocol),
            "data": data.description, "n_sequences": scores.windows,
            "k_in": data.k_in, "k_out": data.k_out,
            "headline": list(get_protocol("knmi-30-60").headline), **scores.result()}
