"""The committed reference runs (reference_results/): every folder loads and validates, each
model's weights load into the model its params build and forecast, and the radar model runs
through `nowcast predict` on KNMI frames as the README shows. Nothing here trains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.checkpoint import load_checkpoint
from nowcast.config import default_data_dir, load_config, without_unused
from nowcast.data.radar.units import pv_to_dbz
from nowcast.forecast import forecast
from nowcast.results import find_runs
from nowcast.runtime import resolve_runtime

REFERENCE = Path(__file__).resolve().parents[1] / "reference_results"
LK_MODEL = REFERENCE / "knmi-30-60-cpu-p4-lk" / "model.pt"  # issue 34's extrapolation-residual model
# the README's predict example: the model validation selects (test_the_readme_model_is_...)
RADAR_MODEL = REFERENCE / "knmi-win-bicubic-gated-mse" / "model.pt"  # the README's predict model
RADAR_CSI_MODEL = REFERENCE / "knmi-win-gated-csi" / "model.pt"  # a trained step, on the bilinear guess
RADAR_MSE_MODEL = REFERENCE / "knmi-30-60-cpu-p4" / "model.pt"
RADAR_OTHERS = [REFERENCE / f"knmi-30-60-cpu-p4-{k}" / "model.pt" for k in ("bal", "res", "res2", "lk-mse")]
SIMVP_MODEL = REFERENCE / "mmnist-t-cpu-simvp" / "model.pt"
MMNIST_MODEL = REFERENCE / "mmnist-t-cpu-p4" / "model.pt"
LIGHT = 10 * 2**20  # a committed model.pt is at most 10 MB


def test_every_reference_run_loads_and_validates():
    runs = find_runs([], [REFERENCE])
    assert {r.job_id for r in runs} >= {"knmi-30-60-persistence", "knmi-30-60-extrapolation",
                                        "knmi-30-60-cpu-p4", "knmi-30-60-cpu-p4-bal",
                                        "knmi-30-60-cpu-p4-res", "knmi-30-60-cpu-p4-res2",
                                        "knmi-30-60-cpu-p4-lk", "knmi-30-60-cpu-p4-lk2",
                                        "knmi-30-60-cpu-p4-lk-mse",
                                        "knmi-30-60-torch-extrapolation",
                                        "mmnist-t-cpu-p4", "mmnist-t-cpu-p4-seed1",
                                        "mmnist-t-cpu-predrnn", "knmi-30-60-sprog",
                                        "knmi-abl-free-mse", "knmi-abl-gated-mse",
                                        "knmi-abl-free-csi", "knmi-abl-gated-csi",
                                        "mmnist-t-cpu-simvp", "mmnist-t-cpu-p4-b40"}
    for run in runs:
        assert run.state == "completed" and run.reference, run.job_id
        load_config(values=without_unused(run.params), check_model=True)
        assert run.metrics["mean"] and run.env["device"], run.job_id
        assert all(f.stat().st_size <= LIGHT for f in (REFERENCE / run.job_id).iterdir())
    for model in (LK_MODEL, RADAR_MODEL, RADAR_CSI_MODEL, RADAR_MSE_MODEL, MMNIST_MODEL, SIMVP_MODEL,
                  *RADAR_OTHERS):
        env = json.loads((model.parent / "env.json").read_text())
        # trained here: a CPU, at most 60 minutes of wall time with evaluation, in what mode
        assert env["device"].startswith("cpu") and env["wall_seconds"] <= 3600
        assert env["mode"] in ("reference", "fast") and env["cpu_threads"] >= 1


@pytest.mark.parametrize("path", [LK_MODEL, RADAR_MODEL, RADAR_CSI_MODEL, RADAR_MSE_MODEL, MMNIST_MODEL,
                                  SIMVP_MODEL, *RADAR_OTHERS],
                         ids=["radar-lk", "radar", "radar-csi", "radar-mse", "mmnist", "simvp", "radar-bal",
                              "radar-res", "radar-res2", "radar-lk-mse"])
def test_reference_models_load_and_forecast(path):
    cfg, model = load_checkpoint(path)
    assert model.patch_size == (1 if cfg.architecture == "simvp" else 4)
    if cfg.residual and cfg.first_guess == "extrapolation":  # as trained (older: bilinear)
        want = "bicubic" if "bicubic" in path.parent.name else "bilinear"
        assert cfg.guess_sampling == model.guess_sampling == want
    shape = (191, 175) if cfg.dataset == "radar" else (64, 64)
    frames = torch.rand(2, cfg.k_in, *shape, generator=torch.Generator().manual_seed(0))
    out = forecast(model, frames, cfg.k_out, resolve_runtime(cfg))
    assert out.shape == (2, cfg.k_out, *shape) and 0 <= float(out.min()) <= float(out.max()) <= 1
    assert float(out.std()) > 0  # not a constant field


def test_predict_with_the_shipped_radar_model(tmp_path):
    """README's first command: an hour of forecast from six KNMI HDF5 frames (20:05-20:30)."""
    pytest.importorskip("h5py")
    data = default_data_dir()
    folder = data / "radar_raw" / "knmi_hdf5" if data else None
    if folder is None or not folder.is_dir():
        pytest.skip("../shared/data/radar_raw/knmi_hdf5 is absent: the predict example is skipped")
    out = tmp_path / "forecast.npz"
    done = subprocess.run([sys.executable, "-m", "nowcast", "predict", "--checkpoint", str(RADAR_MODEL),
                           "--input", str(folder), "--steps", "12", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with np.load(out) as f:
        frames, times = f["frames"], f["times"]
    assert frames.shape == (1, 12, 191, 175) and frames.dtype == np.uint8
    assert times[0, 0] == np.datetime64("2021-02-01T20:35") and times[0, -1] == np.datetime64("2021-02-01T21:30")
    # the forecast follows the input: its first frame is close to the last observed one (these
    # 20:05-20:30 frames hold little rain: the pattern, not rain amounts, is what is compared)
    from nowcast.data.radar.grid import read_radar_input
    last = read_radar_input(folder)[0][-1]
    dbz = pv_to_dbz(frames[0])  # PV 0 is no echo (0 dBZ), not 0.5 * 0 - 32
    seen = np.isfinite(last)
    assert np.corrcoef(dbz[0][seen], last[seen])[0, 1] > 0.5
    assert not np.array_equal(frames[0, 0], frames[0, -1])  # and it moves on from there


def test_the_shipped_radar_model_beats_persistence_lead_by_lead():
    """Issue 34's target, as the report computes it: the extrapolation-residual model against
    persistence, paired bootstrap over the 10 test events, at each lead time (CSI 20 dBZ); and
    what it is not: better than its own first guess (the torch extrapolation)."""
    from nowcast.publish.uncertainty import uncertainty
    (run,) = [r for r in find_runs([], [REFERENCE]) if r.job_id == "knmi-30-60-cpu-p4-lk"]
    u = uncertainty(run)  # its own scores.npz (S-PROG, added later, is paired by the report)
    assert u.scheme == "events" and u.units == 10
    assert u.paired["persistence"]["csi_20"].verdict == "better"
    verdicts = u.leads["persistence"]["csi_20"]
    assert len(verdicts) == 12 and verdicts.count("better") == 11 and "worse" not in verdicts
    assert u.lead_count("persistence", "csi_20") == "11/12 better"
    assert u.lead_count("torch_extrapolation", "csi_20") == \
        f"0/12 better, {u.leads['torch_extrapolation']['csi_20'].count('worse')} worse"
    assert u.paired["torch_extrapolation"]["csi_20"].verdict == "worse"


def test_the_equal_budget_family_comparison_is_in_the_report(tmp_path):
    """Issue 39: PredRNN against the ConvLSTM trained beside it for the same 50 minutes, on the
    same MMNIST-T test sequences, with the paired bootstrap interval of the difference."""
    from nowcast.publish.fragments import write_report_fragments
    from nowcast.publish.uncertainty import equal_budget_pairs, head_to_head
    runs = find_runs([], [REFERENCE])
    by_id = {r.job_id: r for r in runs}
    pairs = [({r.job_id for r in a.runs}, {r.job_id for r in b.runs}) for a, b in equal_budget_pairs(runs)]
    assert any({"mmnist-t-cpu-predrnn"} in (a, b) and "mmnist-t-cpu-p4-seed1" in a | b for a, b in pairs)
    h = head_to_head(by_id["mmnist-t-cpu-predrnn"], by_id["mmnist-t-cpu-p4-seed1"])
    d = h.paired["mse_pixel255"].difference
    assert d.low <= d.estimate <= d.high and h.paired["mse_pixel255"].verdict in ("better", "worse")
    write_report_fragments(runs, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "{#tbl-budget-mmnist-t}" in text and "Architectures at equal training minutes" in text


def test_the_readme_predict_model_is_the_one_validation_selects():
    """Issue 52 item 7: among the radar runs validated by the skill rule on the windows of the
    current recipe (KNMI's winter events, `val_events`: docs/radar_skill.md section 9; the
    earlier recipe validated on MeteoSwiss's convective rain), the README's model is the one
    whose selected validation is best (never chosen by test)."""
    from nowcast import selection
    from nowcast.publish.describe import metrics_value
    runs = [r for r in find_runs([], [REFERENCE]) if r.group == "knmi-30-60"
            and metrics_value(r, "training", "selected_by") == "skill"]
    validated_on = {r.data.split("; ", 1)[1] for r in runs}
    assert len(runs) >= 7 and len(validated_on) == 3, validated_on  # MeteoSwiss, and winter:
    current = [r for r in runs if "moved from training to validation (val_events)" in r.data]
    assert len(current) >= 5 and len({r.data.split("; ", 1)[1].split("; training")[0]
                                      for r in current}) == 1  # the same validation windows
    keys = {r.job_id: selection.key(r.metrics["training"]["selected_val"], "skill") for r in current}
    best = [job for job, k in keys.items() if k == max(keys.values())]  # equals: any of them
    assert RADAR_MODEL.parent.name in best
    readme = (REFERENCE.parent / "README.md").read_text()
    assert f"--checkpoint reference_results/{RADAR_MODEL.parent.name}/model.pt" in readme
