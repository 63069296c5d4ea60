"""Using a trained checkpoint: score it on a protocol or a data file, or forecast from frames."""

from __future__ import annotations

import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from . import figures, results
from .config import PROTOCOL_PRESETS, load_config
from .data import get_data
from .errors import NowcastError
from .evaluate import forecast, resolve_runtime
from .experiment import load_checkpoint, run_facts, score_test_split


def evaluation_config(train_cfg: dict, protocol: str | None, data_file: str | None,
                      results_dir: str, job_id: str | None):
    """The checkpoint's config with the evaluation data swapped in (a protocol's preset or a file).

    A radar model given another file keeps the KNMI-30/60 scoring (PROTOCOLS.md: "on another
    radar file": every event, windows every 6 frames); other files are split by sequence.
    """
    values = dict(train_cfg, results_dir=results_dir, job_id=job_id,
                  name=f"{train_cfg.get('name') or 'model'} @ {protocol or Path(data_file).name}")
    if data_file and train_cfg.get("dataset") == "radar":
        protocol = "knmi-30-60"
        values["data_file"] = str(data_file)
    if protocol:
        values = {k: v for k, v in values.items() if k not in PROTOCOL_PRESETS[protocol]}
        values["protocol"] = protocol
    else:
        values.update(protocol="none", data_file=str(data_file), dataset="npz")
    return load_config(values=values)


def write_evaluation(cfg, score) -> Path:
    """A results folder for scores alone: `score()` returns the metrics.json dict."""
    runtime = resolve_runtime(cfg)
    run_dir = results.start_run(cfg)
    started = time.time()
    try:
        metrics = score()
        metrics.update(name=cfg.name, job_id=cfg.job_id)
        results.write_json(run_dir / "metrics.json", metrics)
        figures.per_lead_plot(metrics, run_dir / "per_lead.png")
        results.write_json(run_dir / "env.json", results.environment(
            runtime, {"wall_seconds": round(time.time() - started, 2)}))
    except BaseException as error:
        results.fail_run(run_dir, error)
        raise
    return results.complete_run(run_dir)


def evaluate_checkpoint(checkpoint: str, protocol: str | None = None, data_file: str | None = None,
                        results_dir: str = "results", job_id: str | None = None) -> Path:
    """Score a model.pt on the test split of a protocol or a file; writes a results folder."""
    train_cfg, model = load_checkpoint(checkpoint)
    cfg = evaluation_config(train_cfg.to_dict(), protocol, data_file, results_dir, job_id)
    data = get_data(cfg)
    runtime = resolve_runtime(cfg)
    model.to(runtime.device)

    probe = torch.from_numpy(data.split("test").frames[:1, :cfg.k_in]).to(runtime.device)
    try:  # before any folder exists: size-bound layers (per-position peepholes, LayerNorm)
        forecast(model, probe, 1, runtime)
    except RuntimeError as e:
        raise NowcastError(f"{checkpoint}: the model cannot run on {data.frame_shape} frames "
                           f"({str(e).splitlines()[0]})") from None

    def score() -> dict:
        loss, metrics = score_test_split(cfg, data, model, runtime)
        return dict(metrics, **run_facts(cfg, data, model, test=loss), checkpoint=str(checkpoint))
    return write_evaluation(cfg, score)


def evaluate_baseline(name: str, protocol: str | None = None, data_file: str | None = None,
                      results_dir: str = "results", job_id: str | None = None) -> Path:
    """Score persistence or optical-flow extrapolation on KNMI-30/60 or another radar file."""
    if protocol not in (None, "knmi-30-60"):
        raise NowcastError(f"--baseline scores radar: use --protocol knmi-30-60 or --data FILE, not {protocol}")
    from .baselines import run_baseline_evaluation
    cfg = load_config(values=dict(name=f"{name} @ {protocol or Path(data_file).name}",
                                  protocol="knmi-30-60", dataset="radar", data_file=data_file or "",
                                  results_dir=results_dir, job_id=job_id), check_model=False)
    return write_evaluation(cfg, lambda: run_baseline_evaluation(name, cfg))


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
    from .data import read_sequence_file
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
                           f"({str(e).splitlines()[0]})") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix == ".npz":
        np.savez_compressed(out_path, frames=np.rint(pred * 255).astype(np.uint8))
    else:
        figures.sequence_gif(frames, pred, pred, out_path, "forecast")
    return out_path


def predict_radar(cfg, model, input_path: str, steps: int, out_path: Path) -> Path:
    """Radar in (PV .npz or native files pysteps reads), radar out: the PV encoding, or a GIF."""
    from .data.radar import (dbz_to_unit, forecast_times, read_radar_input, unit_to_dbz,
                             write_radar_forecast)
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
