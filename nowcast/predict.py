"""`nowcast predict`: forecast frames from a trained checkpoint and input frames (Moving MNIST
style .npz or PNGs, or radar input), written as a GIF or an .npz."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from . import figures
from .checkpoint import load_checkpoint
from .data.base import read_sequence_file
from .data.radar.grid import read_radar_input
from .data.radar.readers import forecast_times, write_radar_forecast
from .data.radar.units import dbz_to_unit, unit_to_dbz
from .errors import NowcastError, first_line
from .forecast import forecast
from .runtime import resolve_runtime


def read_frames(path: str) -> np.ndarray:
    """Input frames (T, H, W) float32 in [0, 1] from an .npz of uint8 frames or a folder of PNGs."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.png"))
        if not files:
            raise NowcastError(f"{p}: no .png frames in this folder")
        frames = [iio.imread(f) for f in files]
        frames = [f[..., :3].mean(-1) if f.ndim == 3 else f for f in frames]
        if len({f.shape for f in frames}) != 1:
            raise NowcastError(f"{p}: the PNG frames differ in size")
        return np.stack(frames).astype(np.float32) / 255.0
    if not p.is_file():
        raise NowcastError(f"{p}: no such input file or folder")
    if p.suffix != ".npz":
        raise NowcastError(f"{p}: unknown input format (expected .npz or a folder of PNGs)")
    try:
        frames = read_sequence_file(p)
    except NowcastError:
        with np.load(p) as f:  # also accept a single (T,H,W) sequence
            arrays = [f[k] for k in f.keys()]
        if len(arrays) != 1 or arrays[0].ndim != 3 or arrays[0].dtype != np.uint8:
            raise
        frames = arrays[0][None]
    if len(frames) != 1:
        raise NowcastError(f"{p}: holds {len(frames)} sequences; predict takes one")
    return frames[0].astype(np.float32) / 255.0


def predict_frames(checkpoint: str, input_path: str, steps: int, out: str) -> Path:
    if steps < 1:
        raise NowcastError(f"--steps must be >= 1, got {steps}")
    out_path = Path(out)
    if out_path.suffix not in (".gif", ".npz"):
        raise NowcastError(f"{out}: output must end in .gif or .npz")
    cfg, model = load_checkpoint(checkpoint)
    if cfg.dataset == "radar":
        return predict_radar(cfg, model, input_path, steps, out_path)
    frames = read_frames(input_path)
    if not np.isfinite(frames).all():
        raise NowcastError(f"{input_path}: frames contain NaN or infinite values")
    runtime = resolve_runtime(cfg)
    try:
        pred = forecast(model.to(runtime.device), torch.from_numpy(frames[None]).to(runtime.device),
                        steps, runtime)[0].cpu().numpy()
    except RuntimeError as e:
        raise NowcastError(f"{checkpoint}: the model cannot run on {frames.shape[1:]} frames "
                           f"({first_line(e)})") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix == ".npz":
        np.savez_compressed(out_path, frames=np.rint(pred * 255).astype(np.uint8))
    else:
        figures.sequence_gif(frames, pred, pred, out_path, "forecast")
    return out_path


def predict_radar(cfg, model, input_path: str, steps: int, out_path: Path) -> Path:
    """Radar in (PV .npz or native files pysteps reads), radar out: the PV encoding, or a GIF."""
    dbz, _, times = read_radar_input(input_path, cfg.radar_recipe, cfg.block_size)
    frames = dbz_to_unit(dbz[-cfg.k_in:])
    runtime = resolve_runtime(cfg)
    pred = forecast(model.to(runtime.device), torch.from_numpy(frames[None]).to(runtime.device),
                    steps, runtime)[0].cpu().numpy()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix == ".npz":
        write_radar_forecast(out_path, unit_to_dbz(pred),
                             forecast_times(times, steps),
                             pixel_km=cfg.block_size if cfg.radar_recipe == "blocks" else None)
    else:
        figures.sequence_gif(frames, pred, pred, out_path, "forecast")
    return out_path
