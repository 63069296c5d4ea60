"""Radar through the command line: baseline scores into a results folder, radar forecasts out."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from nowcast.config import default_data_dir, load_config
from nowcast.models import get_model

RADAR = default_data_dir() / "radar" / "knmi_2021_refl_5min.npz" if default_data_dir() else None
pytestmark = pytest.mark.skipif(RADAR is None or not RADAR.is_file(),
                                reason="../shared/data/radar/knmi_2021_refl_5min.npz is absent: radar CLI tests skipped")


def nowcast(*args):
    return subprocess.run([sys.executable, "-m", "nowcast.cli", *args], capture_output=True, text=True)


def test_evaluate_baseline_writes_protocol_scores(tmp_path):
    done = nowcast("evaluate", "--protocol", "knmi-30-60", "--baseline", "persistence",
                   "--results", str(tmp_path), "--job-id", "persist")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "persist" / "metrics.json").read_text())
    assert metrics["protocol"] == "knmi-30-60" and metrics["follows_protocol"] is True
    assert metrics["n_sequences"] == 40 and metrics["headline"] == ["csi_20", "fss_20_5"]
    csi = metrics["per_lead"]["csi_20"]
    assert len(csi) == 12 and csi[0] > csi[-1] + 0.2
    # scores.npz: the per-window counts behind the pooled score (what a bootstrap resamples)
    with np.load(tmp_path / "persist" / "scores.npz") as f:
        table, thresholds = f["contingency"], list(f["thresholds_dbz"])
    assert table.shape == (40, 4, 4, 12)
    hits, misses, false_alarms, _ = table[:, thresholds.index(20.0)].sum(0).astype(float)
    np.testing.assert_allclose(hits / (hits + misses + false_alarms), csi, rtol=1e-12)
    assert json.loads((tmp_path / "persist" / "status.json").read_text())["status"] == "completed"
    bad = nowcast("evaluate", "--protocol", "mmnist-10", "--baseline", "sprog", "--results", str(tmp_path))
    assert bad.returncode == 2 and "baseline 'sprog' scores radar" in bad.stderr
    assert not any(tmp_path.glob("sprog*"))


def test_predict_radar_in_pv_encoding(tmp_path):
    cfg = load_config(values=dict(protocol="knmi-30-60", hidden_sizes=[4, 4], filter_size=3, max_pool=False,
                                  norm="group", norm_groups=2, peephole="per_channel"))
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save({"model": get_model(cfg).state_dict(), "config": cfg.to_dict()}, checkpoint)
    done = nowcast("predict", "--checkpoint", str(checkpoint), "--input", str(RADAR), "--steps", "3",
                   "--out", str(tmp_path / "forecast.npz"))
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "forecast.npz") as f:
        frames, times = f["frames"], f["times"]
        meta = json.loads(str(f["meta"]))
    assert frames.shape == (1, 3, 191, 175) and frames.dtype == np.uint8
    with np.load(RADAR) as f:
        last = f["times"][-1, -1]
    assert times[0, 0] == last + np.timedelta64(5, "m") and meta["dt_min"] == 5
    done = nowcast("predict", "--checkpoint", str(checkpoint), "--input", str(RADAR), "--steps", "2",
                   "--out", str(tmp_path / "forecast.gif"))
    assert done.returncode == 0 and (tmp_path / "forecast.gif").stat().st_size > 1000


def test_a_baseline_on_data_that_is_not_radar_is_refused_before_any_folder(tmp_path):
    """Issue 56 item 18: evaluate --baseline on a sequence file left a failed folder."""
    np.savez(tmp_path / "seq.npz", frames=np.zeros((4, 20, 16, 16), np.uint8))
    done = nowcast("evaluate", "--baseline", "persistence", "--data", str(tmp_path / "seq.npz"),
                   "--results", str(tmp_path / "r"), "--job-id", "x")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "no time step" in done.stderr and "5-minute frames" in done.stderr
    assert not (tmp_path / "r").exists()
