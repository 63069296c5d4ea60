"""`nowcast predict`: forecast frames from a trained checkpoint and input frames (Moving MNIST
style .npz or PNGs, or radar input), written as a GIF or an .npz."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

import imageio.v3 as iio
import numpy as np
import torch

from . import figures
from .checkpoint import load_checkpoint
from .data.base import check_sequence_frames, load_npz, to_unit
from .data.radar.grid import read_radar_input
from .data.radar.readers import forecast_times, write_radar_forecast
from .data.radar.units import DBZ_MAX, dbz_to_rainrate, dbz_to_unit, unit_to_dbz
from .errors import NowcastError, first_line
from .forecast import forecast
from .runtime import resolve_runtime
from .util import atomic_path


# PNG sample types -> the value of full intensity (a 16-bit PNG is scaled by its own range)
PNG_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(bool): 1.0}


def read_png(path: Path) -> np.ndarray:
    """One PNG frame (H, W) float32 in [0, 1]: gray, gray + alpha or RGB(A) (the mean of R, G
    and B), scaled by its sample type's range (PNG_FULL_SCALE); anything else refused."""
    try:
        image = iio.imread(path)
    except Exception as e:  # not a PNG, truncated, or unreadable: all mean the same here
        raise NowcastError(f"{path}: not a readable PNG image ({type(e).__name__})") from None
    scale = PNG_FULL_SCALE.get(image.dtype)
    if scale is None or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (2, 3, 4)):
        raise NowcastError(f"{path}: expected an 8- or 16-bit gray or RGB image, got {image.dtype} "
                           f"{image.shape}")
    if image.ndim == 3:
        image = image[..., 0] if image.shape[-1] == 2 else image[..., :3].mean(-1)
    return (np.asarray(image, np.float32) / scale).astype(np.float32)


def natural_key(path: Path) -> list:
    """A file name's sort key with its digit runs as numbers: frame_7.png before frame_10.png
    (as text, frame_10 came first and the 'last k_in frames' were the wrong ones); a timestamp
    such as 202102011205 sorts the same either way."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", path.name)]


def read_frames(path: str) -> np.ndarray:
    """Input frames (T, H, W) float32 in [0, 1] from an .npz of uint8 frames or a folder of PNGs."""
    p = Path(path)
    if p.is_dir():
        files = sorted((f for f in p.glob("*.png") if f.is_file()), key=natural_key)
        if not files:
            raise NowcastError(f"{p}: no .png frames in this folder")
        frames = [read_png(f) for f in files]
        if len({f.shape for f in frames}) != 1:
            raise NowcastError(f"{p}: the PNG frames differ in size")
        return np.stack(frames)
    if not p.is_file():
        raise NowcastError(f"{p}: no such input file or folder")
    if p.suffix != ".npz":
        raise NowcastError(f"{p}: unknown input format (expected .npz or a folder of PNGs)")
    frames = load_npz(p, "input")["frames"]  # one readable array, else one line naming it
    if frames.ndim == 3:  # a single (T, H, W) sequence
        frames = frames[None]
    check_sequence_frames(p, frames.dtype, frames.shape)
    if len(frames) != 1:
        raise NowcastError(f"{p}: holds {len(frames)} sequences; predict takes one")
    return to_unit(frames[0])


def input_window(frames: np.ndarray, k_in: int, where: str) -> np.ndarray:
    """The last k_in frames, what the model was trained to read; fewer are refused."""
    if len(frames) < k_in:
        raise NowcastError(f"{where}: {len(frames)} input frames; the model reads the last "
                           f"k_in = {k_in}")
    return frames[-k_in:]


# --steps: at most this many times the model's k_out. The model was trained and scored for
# k_out leads; further on it runs on its own predictions (said once), and without a bound a
# typo such as --steps 1000000000 would allocate what no machine holds
MAX_ROLLOUT = 4


def check_steps(steps: int, k_out: int) -> None:
    """1 <= steps <= MAX_ROLLOUT * k_out; a note on stderr for leads past k_out."""
    if not 1 <= steps <= MAX_ROLLOUT * k_out:
        raise NowcastError(f"--steps must be in [1, {MAX_ROLLOUT * k_out}] ({MAX_ROLLOUT} x the "
                           f"model's k_out {k_out}), got {steps}")
    if steps > k_out:
        print(f"nowcast: note: leads {k_out + 1}-{steps} lie past the model's k_out {k_out}: it "
              f"was never trained or scored that far", file=sys.stderr)


def writable_output(out: str) -> Path:
    out_path = Path(out)
    if out_path.suffix not in (".gif", ".npz"):
        raise NowcastError(f"{out}: output must end in .gif or .npz")
    if out_path.is_dir():
        raise NowcastError(f"{out}: a folder; --out names the forecast file")
    return out_path


def predict_frames(checkpoint: str, input_path: str, steps: int, out: str) -> Path:
    out_path = writable_output(out)
    cfg, model = load_checkpoint(checkpoint)
    check_steps(steps, cfg.k_out)
    look = figures.FrameLook()
    if cfg.dataset == "radar":
        radar = read_radar_input(input_path, cfg.radar_recipe, cfg.block_size,
                                 pixel_km=model.grid.get("pixel_km"))
        check_grid(input_path, radar.grid, model.grid)
        frames = input_window(dbz_to_unit(radar.dbz), cfg.k_in, input_path)
        times = None if radar.times is None else radar.times[-cfg.k_in:]
        look = figures.FrameLook(radar=RADAR_SCALE, credit=radar.source, times=valid_times(times, steps),
                                 masks=coverage(radar.valid[-cfg.k_in:], steps))
    else:
        frames, times = input_window(read_frames(input_path), cfg.k_in, input_path), None
    if not np.isfinite(frames).all():
        raise NowcastError(f"{input_path}: frames contain NaN or infinite values")
    runtime = resolve_runtime(cfg)
    try:
        pred = forecast(model.to(runtime.device), torch.from_numpy(frames[None]).to(runtime.device),
                        steps, runtime)[0].cpu().numpy()
    except RuntimeError as e:
        raise NowcastError(f"{checkpoint}: the model cannot run on {frames.shape[1:]} frames "
                           f"({first_line(e)})") from None
    beside = None
    if out_path.suffix == ".gif":  # what the forecast is shown beside: never a "truth"
        guess = model.guess(torch.from_numpy(frames[None]), steps)
        beside = ((guess[0].clamp(0, 1).numpy(), f"first guess ({model.first_guess})")
                  if guess is not None else (np.repeat(frames[-1:], steps, axis=0), "last observed"))
    write_forecast(cfg, frames, pred, times, out_path, beside, look)
    return out_path


# what a [0, 1] radar frame means, for the figures (outputs.py draws with it too)
RADAR_SCALE = figures.RadarScale(DBZ_MAX, dbz_to_rainrate)

# pixel sizes this close (relative) are the same grid: 1 km stated as 1.0 or 0.999
PIXEL_TOLERANCE = 0.01


def check_grid(where: str, given: dict, trained: dict) -> None:
    """Radar input on the grid the model was trained on: the same minutes between frames and
    the same pixel size (after the recipe's blocks), where both are known; one line naming the
    input and both values otherwise (a 5-minute model forecasting from 2-minute frames would
    label every lead 5 minutes on, silently wrong)."""
    step, want = given.get("dt_min"), trained.get("dt_min")
    if step and want and step != want:
        raise NowcastError(f"{where}: frames are {step} min apart; the model was trained on "
                           f"{want}-minute frames (resample the input to {want} min)")
    km, want_km = given.get("pixel_km"), trained.get("pixel_km")
    if km and want_km and abs(km - want_km) > PIXEL_TOLERANCE * want_km:
        raise NowcastError(f"{where}: pixels of {km:g} km on the model's grid (the file's pixel "
                           f"size x block_size); the model was trained on {want_km:g} km pixels")


def coverage(valid: np.ndarray, steps: int) -> np.ndarray:
    """Where the input frames hold data, and for each forecast frame the last one's coverage
    (outside it the forecast is drawn as no data: nothing was observed there)."""
    return np.concatenate([valid, np.repeat(valid[-1:], steps, axis=0)])


def valid_times(times, steps: int) -> tuple[str, ...]:
    """Labels of the input frames' and forecast frames' valid times (UTC); () if unknown."""
    ahead = forecast_times(times, steps)
    if ahead is None:
        return ()
    stamps = np.concatenate([times, ahead]).astype("datetime64[m]").astype(str)
    return tuple(t.replace("T", " ") + " UTC" for t in stamps)


def write_forecast(cfg, frames: np.ndarray, pred: np.ndarray, times, out_path: Path,
                   beside: Optional[tuple[np.ndarray, str]] = None,
                   look: figures.FrameLook = figures.FrameLook()) -> None:
    """The forecast as a GIF beside its inputs (and, on the left, `beside`: a residual model's
    first guess, else the last observed frame held), or an .npz (radar: the shared PV encoding
    with times and rain rate; else uint8 frames), written beside and renamed when complete."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_path, keep_suffix=True) as tmp:
            if out_path.suffix == ".gif":
                left, label = beside or (np.repeat(frames[-1:], len(pred), axis=0), "last observed")
                figures.sequence_gif(frames, left, pred, tmp, "forecast", labels=(label, "forecast"),
                                     look=look)
            elif cfg.dataset == "radar":
                write_radar_forecast(tmp, unit_to_dbz(pred), forecast_times(times, len(pred)),
                                     pixel_km=cfg.block_size if cfg.radar_recipe == "blocks" else None)
            else:
                np.savez_compressed(tmp, frames=np.rint(pred * 255).astype(np.uint8))
    except OSError as e:
        raise NowcastError(f"{out_path}: cannot write the forecast ({e.strerror or e})") from None
