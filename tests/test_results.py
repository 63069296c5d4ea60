"""The results folder: complete or marked failed, never overwritten; env.json says what ran."""

import json

import numpy as np
import pytest

from conftest import TINY_FILE
from nowcast.config import load_config
from nowcast.data import get_data
from nowcast.errors import NowcastError
from nowcast.experiment import run_experiment
from nowcast.results import find_completed, find_runs, resolve_job_id
from nowcast.runtime import cpu_has_bf16_units


def test_complete_folder_contents(tiny_values):
    path = run_experiment(load_config(values=dict(tiny_values, job_id="ok")), progress=False)
    expected = {"params.yaml", "status.json", "env.json", "history.csv", "batch_losses.csv", "metrics.json",
                "loss.png", "loss_median.png", "per_lead.png", "train.gif", "test.gif", "test_strip.png",
                "model.pt"}
    assert expected | {"scores.npz"} <= {p.name for p in path.iterdir()}
    status = json.loads((path / "status.json").read_text())
    assert status["status"] == "completed" and status["error"] is None
    env = json.loads((path / "env.json").read_text())
    bf16 = cpu_has_bf16_units()  # precision auto: bf16 + channels_last where the CPU has the units
    assert env["mode"] == ("fast" if bf16 else "reference") and env["device"].startswith("cpu")
    assert env["precision"] == ("bf16" if bf16 else "fp32") and env["channels_last"] is bf16
    assert env["train_sequences_per_s"] > 0 and env["versions"]["torch"]
    assert env["steady_sequences_per_s"] > 0 and env["first_step_seconds"] > 0
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["follows_protocol"] is False and metrics["protocol"] == "none"
    assert len(metrics["per_lead"]["mse_frame"]) == 3 and metrics["losses"]["loss"] == "bce"
    # defect 4: not only the training loss: image errors are reported beside it
    assert metrics["mean"]["mse_frame"] > 0 and 0 < metrics["mean"]["ssim"] <= 1
    # per-sequence scores behind the means; train/val/test side by side (Table 4.1)
    with np.load(path / "scores.npz") as f:
        per_sequence = {k: f[k] for k in f.files}
    assert per_sequence["mse_frame"].shape == (8, 3)
    for key in ("mse_frame", "mae_pixel255", "ssim"):
        assert per_sequence[key].mean() == pytest.approx(metrics["mean"][key], rel=1e-5)
    assert set(metrics["splits"]) == {"train", "val", "test"}
    assert metrics["splits"]["test"] == metrics["mean"]
    assert metrics["splits"]["train"]["mse_frame"] != metrics["splits"]["val"]["mse_frame"] > 0
    assert metrics["training"] == {"steps": 8, "stopped": None, "selected_step": 8,
                                   "selected_by": "loss", "selection_rule": "lowest validation loss"}
    # Moving MNIST baselines by the same code: persistence = the last input frame repeated
    test = get_data(load_config(values=tiny_values)).split("test").frames
    expected = ((test[:, 3:6] - test[:, 2:3]) ** 2).sum((-2, -1)).mean()
    persistence = metrics["baselines"]["persistence"]["mean"]["mse_frame"]
    assert persistence == pytest.approx(float(expected), rel=1e-5)
    assert per_sequence["persistence__mse_frame"].mean() == pytest.approx(persistence, rel=1e-5)
    assert metrics["baselines"]["mean_frame"]["mean"]["mse_frame"] > 0
    with pytest.raises(NowcastError, match="already exists and is never overwritten"):
        run_experiment(load_config(values=dict(tiny_values, job_id="ok")), progress=False)
    assert find_completed(tiny_values["results_dir"], load_config(values=tiny_values)) == path
    assert find_completed(tiny_values["results_dir"], load_config(values=dict(tiny_values, seed=5))) is None


def test_failed_run_is_marked_failed(tiny_values, tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    np.savez(corrupt, frames=np.zeros((4, 8, 32, 32), np.uint8))
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # exists, passes validation, breaks at run time
    cfg = load_config(values=dict(TINY_FILE, results_dir=tiny_values["results_dir"], dataset="npz",
                                  data_file=str(corrupt), job_id="bad"))
    with pytest.raises(NowcastError):
        run_experiment(cfg, progress=False)
    folder = tmp_path / "results" / "bad"
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "failed" and "corrupt.npz" in status["error"]
    assert not (folder / "metrics.json").exists() and not (folder / "model.pt").exists()
    runs = find_runs([tmp_path / "results"])
    assert [(r.job_id, r.status) for r in runs] == [("bad", "failed")]
    assert "corrupt.npz" in runs[0].error


def test_job_ids(monkeypatch):
    cfg = load_config()
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert resolve_job_id(cfg) == "77_3"
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    monkeypatch.setenv("SLURM_JOB_ID", "80")
    assert resolve_job_id(cfg) == "80"
    monkeypatch.delenv("SLURM_JOB_ID")
    local = resolve_job_id(cfg)
    assert local.count("-") == 2 and local == resolve_job_id(load_config())[:0] + local
