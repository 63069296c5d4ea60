"""`nowcast evaluate`: score a trained checkpoint, or a baseline (radar, or an image one on
Moving MNIST), on a protocol's test split or on a data file; the scores go to a results folder
of their own."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import torch

from . import outputs, results
from .baselines import get_baseline, run_baseline_evaluation
from .data.radar import RadarData
from .checkpoint import load_checkpoint
from .config import load_config, without_unused
from .data import get_data
from .data.sequence_file import SequenceFile
from .errors import NowcastError, first_line
from .forecast import forecast
from .paths import JobPaths
from .protocols import IMAGE_BASELINES, PRESETS, RADAR_BASELINES
from .runtime import resolve_runtime
from .scoring import Scores, image_baseline_scores, score_test_split


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
    # the training data's fields (image_size, val_sequences, ...) may mean nothing to the new
    # data: without_unused nulls them, judged with the new data's choosers
    if protocol:
        values = without_unused(dict(values, **PRESETS[protocol], protocol=protocol))
        values = {k: v for k, v in values.items() if k not in PRESETS[protocol]}
    else:
        values = without_unused(dict(values, protocol="none", data_file=str(data_file),
                                     dataset="npz"))
    return load_config(values=values)


def write_evaluation(cfg, score: Callable[[], tuple[Scores, dict]]) -> Path:
    """A results folder for scores alone: `score()` gives the scores and the metrics.json
    document (outputs.metrics_document); written with scores.npz, the per-lead figure and
    env.json."""
    runtime = resolve_runtime(cfg)
    run_dir = results.start_run(cfg)
    started = time.time()
    try:
        scores, document = score()
        outputs.write_evaluation_outputs(JobPaths(run_dir), runtime, document, scores, started)
    except BaseException as error:
        results.fail_run(run_dir, error)
        raise
    return results.complete_run(run_dir)


def evaluate_checkpoint(checkpoint: str, protocol: str | None = None, data_file: str | None = None,
                        results_dir: str = "results", job_id: str | None = None,
                        every_sequence: bool = False) -> Path:
    """Score a model.pt on the test split of a protocol or a file (`every_sequence`: every
    sequence of a sequence file; a radar file's every event is scored always); writes a
    results folder."""
    train_cfg, model = load_checkpoint(checkpoint)
    cfg = evaluation_config(train_cfg.to_dict(), protocol, data_file, results_dir, job_id)
    if cfg.dataset == "radar" and data_file:  # that file alone, at the model's pixel size
        data = RadarData(cfg, scoring_km=(getattr(model, "grid", None) or {}).get("pixel_km"),
                         scoring_only=True)
    elif data_file and every_sequence:
        data = SequenceFile(cfg, every_sequence=True)
    else:
        data = get_data(cfg)
    if data_file:  # how much of the file is scored, before the minutes it takes
        print(f"nowcast: scoring {data.description}", file=sys.stderr)
    runtime = resolve_runtime(cfg)
    runtime.place(model.to(runtime.device))

    probe = torch.from_numpy(data.split("test").frames[:1, :cfg.k_in]).to(runtime.device)
    try:  # before any folder exists: size-bound layers (per-position peepholes, LayerNorm)
        forecast(model, probe, 1, runtime)
    except RuntimeError as e:
        raise NowcastError(f"{checkpoint}: the model cannot run on {data.frame_shape} frames "
                           f"({first_line(e)})") from None

    def score() -> tuple[Scores, dict]:
        scores = score_test_split(cfg, data, model, runtime)
        return scores, outputs.metrics_document(
            scores.metrics, outputs.identity(cfg, data, model, test=scores.loss),
            checkpoint=str(checkpoint))
    return write_evaluation(cfg, score)


def evaluate_baseline(name: str, protocol: str | None = None, data_file: str | None = None,
                      results_dir: str = "results", job_id: str | None = None) -> Path:
    """Score a baseline alone: a radar one (persistence, extrapolation, torch_extrapolation,
    sprog) on KNMI-30/60 or another radar file, an image one (persistence, mean_frame) on a
    Moving MNIST protocol's test split."""
    if protocol not in (None, "knmi-30-60"):
        return evaluate_image_baseline(name, protocol, results_dir, job_id)
    cfg = load_config(values=dict(name=f"{name} @ {protocol or Path(data_file).name}",
                                  protocol="knmi-30-60", dataset="radar", data_file=data_file or "",
                                  results_dir=results_dir, job_id=job_id), check_model=False)
    get_baseline(name, among=RADAR_BASELINES)  # a bad name, then bad data: before any folder
    data = RadarData(cfg, scoring_only=True)  # with data_file: that file alone

    def score() -> tuple[Scores, dict]:
        fields, per_window, seconds = run_baseline_evaluation(name, data)
        return Scores(None, fields, per_window), outputs.metrics_document(
            fields, outputs.identity(cfg, architecture=name), seconds=seconds)
    return write_evaluation(cfg, score)


def evaluate_image_baseline(name: str, protocol: str, results_dir: str, job_id: str | None) -> Path:
    """An image baseline on a Moving MNIST protocol's test split, in a folder of its own."""
    if name not in IMAGE_BASELINES:
        raise NowcastError(f"baseline '{name}' scores radar; on {protocol} the baselines are: "
                           f"{', '.join(IMAGE_BASELINES)}")
    cfg = load_config(values=dict(name=f"{name} @ {protocol}", protocol=protocol,
                                  results_dir=results_dir, job_id=job_id), check_model=False)
    data = get_data(cfg)

    def score() -> tuple[Scores, dict]:
        started = time.time()
        scores = image_baseline_scores(cfg, data, name)
        return scores, outputs.metrics_document(
            scores.metrics, outputs.identity(cfg, data, architecture=name),
            seconds=round(time.time() - started, 2))
    return write_evaluation(cfg, score)
