"""Baselines, scored on the same windows or sequences by the same code as the models.

A baseline has the forecaster signature of the models, in [0, 1] units
(`baseline(inputs (B, k_in, H, W), k_out) -> (B, k_out, H, W)`), so a table row for a model
and a row for a baseline mean the same thing:

- `persistence`: the last input frame, repeated (radar and Moving MNIST);
- `mean_frame`: the mean training frame (Moving MNIST);
- `extrapolation`: pysteps Lucas-Kanade motion from the last 3 input frames and
  semi-Lagrangian advection of the last one (`pysteps.motion.get_method("LK")`,
  `pysteps.nowcasts.get_method("extrapolation")`), in dBZ; blocks advected in from outside
  the grid (NaN) are forecast as 0;
- `torch_extrapolation`: nowcast's own Lucas-Kanade extrapolation (models/motion.py), batched in
  torch: the first guess a `first_guess: extrapolation` model corrects, so that such a model is
  compared with what it started from;
- `sprog`: S-PROG (Seed 2003, `pysteps.nowcasts.sprog`), the extrapolation whose small scales
  fade as they lose predictability: the non-learned counterpart of the smoothing an
  MSE-trained network learns (`sprog` states its transform and threshold).

`verify_radar` runs any forecaster, a model or a baseline, over a RadarData's fixed windows
into the verification accumulator of verification.py.

pysteps is imported when extrapolation first runs (`util.optional_import`): GPU training
must not need it.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .data.radar import RadarData
from .data.radar.units import DBZ_MAX, dbz_to_unit, unit_to_dbz
from .errors import MissingDependency, NowcastError
from .models.motion import extrapolate
from .protocols import RADAR_BASELINES
from .util import optional_import
from .verification import RadarVerification, radar_facts

Baseline = Callable[[np.ndarray, int], np.ndarray]
Forecaster = Callable[[np.ndarray], np.ndarray]  # a model: inputs only, its own k_out


def verify_radar(predict: Forecaster, data, which: str = "test", batch_size: int = 8) -> RadarVerification:
    """A forecaster's verification accumulator on a RadarData's fixed windows (the protocol's 40
    test windows for knmi-30-60; for "val", val_files' windows too, source by source). `predict(inputs (B, k_in, H, W) float32 in [0, 1]) ->
    (B, k_out, H, W) in [0, 1]` gets no-data blocks as 0; its output is scored as
    clip(x, 0, 1) * 70 dBZ against the dBZ targets."""
    k_in, k_out = data.k_in, data.k_out
    scores = RadarVerification(k_out)
    sets = data.window_sets(which) if hasattr(data, "window_sets") else [data.split_windows(which)]
    for windows in sets:  # one source (grid) at a time; the counts pool over all of them
        for start in range(0, len(windows.dbz), batch_size):
            chunk = windows.dbz[start:start + batch_size]
            target = chunk[:, k_in:k_in + k_out]
            forecast = np.asarray(predict(dbz_to_unit(chunk[:, :k_in])))
            if forecast.shape != target.shape:
                raise NowcastError(f"forecaster returned shape {forecast.shape}, expected {target.shape}")
            scores.add(unit_to_dbz(forecast), target, np.isfinite(target))
    return scores


def persistence(inputs: np.ndarray, k_out: int) -> np.ndarray:
    """The last input frame, repeated k_out times."""
    return np.repeat(inputs[:, -1:], k_out, axis=1)


def extrapolation(inputs: np.ndarray, k_out: int) -> np.ndarray:
    """Lucas-Kanade motion from the last 3 frames, semi-Lagrangian advection of the last."""
    motion = optional_import("pysteps.motion", "radar").get_method("LK")
    advect = optional_import("pysteps.nowcasts", "radar").get_method("extrapolation")
    out = np.empty((len(inputs), k_out, *inputs.shape[-2:]), np.float32)
    for b, sequence in enumerate(np.asarray(inputs, np.float64) * DBZ_MAX):
        velocity = motion(sequence[-3:])
        out[b] = np.nan_to_num(advect(sequence[-1], velocity, k_out), nan=0.0) / DBZ_MAX
    return np.clip(out, 0.0, 1.0)


# S-PROG's transform (Marshall-Palmer, Z = 200 R^1.6, as the data's README converts rain rates):
# dBR = 10 log10 R = (dBZ - 10 log10 200) / 1.6; rain from 0.1 mm/h (7.0 dBZ), below it dBR -15
SPROG_RAIN_MMH = 0.1
SPROG_DRY_DBR = -15.0
SPROG_LEVELS = 6
MP_DBZ_OF_1MMH = 10 * np.log10(200.0)  # 23.01 dBZ


def sprog(inputs: np.ndarray, k_out: int) -> np.ndarray:
    """S-PROG (Seed 2003; `pysteps.nowcasts.sprog`): the last 3 frames in dBR decomposed into
    6 spatial scales (FFT, Gaussian band-pass), each scale extrapolated by the same pysteps
    Lucas-Kanade motion as `extrapolation` (from the last 3 frames in dBZ) and evolved by its
    own AR(2) model, so that small scales, which lose predictability first, fade with lead;
    the forecast's distribution is matched to the last frame's (cdf).

    Transform: dBR = (dBZ - 23.01) / 1.6 (Marshall-Palmer), rain threshold 0.1 mm/h (-10 dBR,
    7.0 dBZ), dry and no-data blocks at -15 dBR; the forecast goes back to dBZ by the inverse,
    below the threshold (and NaN: advected in from outside) 0 dBZ. A window without rain is
    forecast dry; one whose AR(2) fit is singular (a cascade level without variation: a few
    rain blocks) is the extrapolation of its last frame in dBR, what S-PROG reduces to without
    scale statistics."""
    motion = optional_import("pysteps.motion", "radar").get_method("LK")
    nowcast = optional_import("pysteps.nowcasts", "radar").get_method("sprog")
    threshold = 10 * np.log10(SPROG_RAIN_MMH)
    out = np.zeros((len(inputs), k_out, *inputs.shape[-2:]), np.float32)
    for b, sequence in enumerate(np.asarray(inputs, np.float64) * DBZ_MAX):
        dbr = (sequence[-3:] - MP_DBZ_OF_1MMH) / 1.6
        dbr = np.where(dbr >= threshold, dbr, SPROG_DRY_DBR)
        if not (dbr > threshold).any():  # no rain at all: nothing to decompose, a dry forecast
            continue
        velocity = motion(sequence[-3:])
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its tables per call
                forecast = nowcast(dbr, velocity, k_out, precip_thr=threshold,
                                   n_cascade_levels=SPROG_LEVELS, probmatching_method="cdf")
        except np.linalg.LinAlgError:  # a scale without variation: no AR(2) to fit
            advect = optional_import("pysteps.nowcasts", "radar").get_method("extrapolation")
            forecast = advect(dbr[-1], velocity, k_out)
        dbz = MP_DBZ_OF_1MMH + 1.6 * np.nan_to_num(forecast, nan=SPROG_DRY_DBR)
        out[b] = np.where(np.nan_to_num(forecast, nan=SPROG_DRY_DBR) >= threshold, dbz, 0.0) / DBZ_MAX
    return np.clip(out, 0.0, 1.0)


def torch_extrapolation(inputs: np.ndarray, k_out: int) -> np.ndarray:
    """models/motion.py's extrapolation, clipped to [0, 1]."""
    with torch.no_grad():
        frames = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
        return extrapolate(frames, k_out).clamp(0, 1).numpy()


def mean_frame(train_frames: np.ndarray) -> Baseline:
    """Moving MNIST's floor: the mean training frame (per pixel, over every frame of a fixed
    training sample), the same for every lead. A model that does not beat it has learnt no
    motion at all."""
    # accumulated in float64 without a float64 copy of the split (the same bits, checked)
    frame = np.asarray(train_frames).mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
    return lambda inputs, k_out: np.broadcast_to(frame, (len(inputs), k_out, *frame.shape))


# name -> the baseline for a data object (the mean frame needs its training split); which of
# them stand beside a protocol's models: protocols.RADAR_BASELINES and IMAGE_BASELINES
BASELINES: dict[str, Callable[[Any], Baseline]] = {
    "persistence": lambda data: persistence,
    "extrapolation": lambda data: extrapolation,
    "torch_extrapolation": lambda data: torch_extrapolation,
    "sprog": lambda data: sprog,
    "mean_frame": lambda data: mean_frame(data.split("train").frames),
}


def get_baseline(name: str, data: Any = None, among: Sequence[str] = tuple(BASELINES)) -> Baseline:
    """The baseline `name` (one of `among`) for `data`; NowcastError naming the valid ones."""
    if name not in among:
        raise NowcastError(f"unknown baseline {name!r}: expected one of {sorted(among)}")
    return BASELINES[name](data)


def verify_baseline(name: str, data, which: str = "test") -> RadarVerification:
    """One baseline's verification accumulator on a RadarData's windows."""
    baseline = get_baseline(name, data, RADAR_BASELINES)
    return verify_radar(lambda x: baseline(x, data.k_out), data, which)


def baseline_facts(name: str, data, which: str = "test") -> tuple[dict, RadarVerification, float]:
    """The verification scores of one baseline on a RadarData's windows (radar_facts's
    dict), the accumulator they came from (its per-window counts go to scores.npz) and the
    seconds they took."""
    started = time.perf_counter()
    verification = verify_baseline(name, data, which)
    return radar_facts(data, verification), verification, round(time.perf_counter() - started, 2)


def baseline_scores(data, names: Sequence[str] = RADAR_BASELINES
                    ) -> dict[str, RadarVerification | str]:
    """Each baseline's verification on the test windows, to stand beside a model's scores.

    A baseline that cannot run here (extrapolation without pysteps, e.g. on a GPU machine
    that trains only) is returned as the reason instead of failing the run.
    """
    scores: dict[str, RadarVerification | str] = {}
    for name in names:
        try:
            scores[name] = verify_baseline(name, data)
        except MissingDependency as e:
            scores[name] = str(e)
    return scores


def run_baseline_evaluation(name: str, data: RadarData) -> tuple[dict, dict, float]:
    """`nowcast evaluate --baseline NAME` on radar data (protocol knmi-30-60, or a radar
    data_file): the scorer's metrics.json fields, the per-window values and the seconds."""
    get_baseline(name, among=RADAR_BASELINES)
    metrics, verification, seconds = baseline_facts(name, data)
    return metrics, verification.per_window(), seconds
