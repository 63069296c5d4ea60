"""predict checks its radar input against the grid the model was trained on (issue 56 item 1):
model.pt records the time step and pixel size; frames of another step or scale are refused in
one line, before any forecast is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast import predict
from nowcast.checkpoint import load_checkpoint, recorded_grid
from nowcast.config import load_config
from nowcast.data.radar.grid import model_grid
from nowcast.errors import NowcastError

MODEL = Path(__file__).resolve().parents[1] / "reference_results" / "knmi-abl-gated-csi" / "model.pt"


def radar_file(path: Path, dt_min: int, pixel_km=1.0, frames: int = 8) -> Path:
    rng = np.random.default_rng(0)
    pv = rng.integers(0, 140, size=(1, frames, 32, 32)).astype(np.uint8)
    times = np.datetime64("2021-02-03T12:00") + np.arange(frames) * np.timedelta64(dt_min, "m")
    meta = {"source": "test", "dt_min": dt_min}
    if pixel_km is not None:
        meta["pixel_km"] = pixel_km
    np.savez(path, frames=pv, times=times[None].astype("datetime64[m]"), meta=json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def model_pt():
    if not MODEL.is_file():
        pytest.skip("reference_results/knmi-abl-gated-csi/model.pt absent")
    return str(MODEL)


@pytest.mark.parametrize("dt, km, said", [(2, 1.0, "frames are 2 min apart; the model was trained "
                                           "on 5-minute frames"),
                                          (10, 1.0, "frames are 10 min apart"),
                                          (5, 1.5, "pixels of 1.5 km cannot make the model's 4 km "
                                           "grid by block means"),
                                          (5, 8.0, "pixels of 8 km cannot make the model's 4 km")])
def test_another_time_step_or_scale_is_refused_before_anything_is_written(model_pt, tmp_path, dt, km, said):
    src = radar_file(tmp_path / "in.npz", dt, km)
    with pytest.raises(NowcastError, match=said):
        predict.predict_frames(model_pt, str(src), 3, str(tmp_path / "out.npz"))
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("km, side", [(0.5, 4), (1.0, 8), (2.0, 16)])
def test_finer_or_coarser_pixels_are_brought_to_the_models_grid(model_pt, tmp_path, km, side):
    """32 x 32 pixels of 0.5, 1 or 2 km make 8 x 8, 4 x 4 or 2 x 2 km blocks of 4 km."""
    out = predict.predict_frames(model_pt, str(radar_file(tmp_path / "in.npz", 5, km)), 2,
                                 str(tmp_path / "out.npz"))
    with np.load(out) as z:
        assert z["frames"].shape == (1, 2, side, side)
        assert json.loads(str(z["meta"]))["pixel_km"] == 4


def test_the_model_grid_and_an_unstated_pixel_size(model_pt, tmp_path):
    cfg, model = load_checkpoint(model_pt)
    assert model.grid == {"dt_min": 5, "pixel_km": 4.0}
    out = predict.predict_frames(model_pt, str(radar_file(tmp_path / "a.npz", 5, None)), 3,
                                 str(tmp_path / "a-out.npz"))
    with np.load(out) as z:
        times = z["times"][0]
    assert (np.diff(times) == np.timedelta64(5, "m")).all()


def test_a_new_model_pt_records_its_grid_and_an_older_one_gets_its_protocols():
    cfg = load_config(values=dict(protocol="knmi-30-60", stride=1, hidden_sizes=[4]))
    assert recorded_grid(cfg, None) == {"dt_min": 5, "pixel_km": 4.0}
    assert recorded_grid(cfg, {"dt_min": 6, "pixel_km": 2}) == {"dt_min": 6, "pixel_km": 2}
    assert recorded_grid(cfg, {"dt_min": True, "pixel_km": -1}) == {"dt_min": None, "pixel_km": None}
    assert model_grid(5, 0.5, "blocks", 4) == {"dt_min": 5, "pixel_km": 2.0}
    assert model_grid(5, 1.0, "seed", 4) == {"dt_min": 5, "pixel_km": None}



def test_training_records_the_grid_and_predict_holds_it(tmp_path):
    from nowcast.experiment import run_experiment
    from conftest import TINY_FILE
    rng = np.random.default_rng(0)
    base = rng.integers(0, 180, (4, 1, 64, 64)).astype(np.uint8)
    frames = np.concatenate([np.roll(base, 4 * t, axis=-1) for t in range(10)], axis=1)
    times = (np.datetime64("2021-02-03T12:00") + np.arange(4)[:, None] * np.timedelta64(1, "D")
             + np.arange(10)[None] * np.timedelta64(5, "m"))
    np.savez(tmp_path / "r.npz", frames=frames, times=times.astype("datetime64[m]"),
             meta=json.dumps({"source": "test", "dt_min": 5, "pixel_km": 0.5}))
    values = dict({k: v for k, v in TINY_FILE.items() if k != "max_pool"}, dataset="radar",
                  data_file=str(tmp_path / "r.npz"), k_in=3, k_out=3, stride=1, hidden_sizes=[4],
                  batch_size=4, train_sequences=4, num_epochs=1, results_dir=str(tmp_path / "res"),
                  job_id="g")
    folder = run_experiment(load_config(values=values), progress=False)
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    assert state["grid"] == {"dt_min": 5, "pixel_km": 2.0}  # 4 x 4 blocks of 0.5 km
    with pytest.raises(NowcastError, match="pixels of 1.5 km cannot make the model's 2 km grid"):
        predict.predict_frames(str(folder / "model.pt"), str(radar_file(tmp_path / "in.npz", 5, 1.5)),
                               3, str(tmp_path / "o.npz"))


def test_a_fifo_among_native_radar_files_is_refused_not_read(tmp_path):
    """Issue 56 item 7: the HDF5 reader opened a FIFO among KNMI files and hung."""
    import os
    from nowcast.data.radar.readers import read_radar
    os.mkfifo(tmp_path / "202102012005.hf5")
    with pytest.raises(NowcastError, match="202102012005.hf5: not a regular file"):
        read_radar(tmp_path)


def test_a_plain_pickle_checkpoint_gets_one_line_and_never_torchs_advice(tmp_path):
    """Issue 56 item 19: torch printed two warning lines first, and on resume its advice to
    retry with weights_only=False (which would run the file's code)."""
    import pickle
    from nowcast.checkpoint import _readable
    path = tmp_path / "pk.pt"
    path.write_bytes(pickle.dumps({"config": {}, "model": {}}, protocol=4))
    import warnings
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(NowcastError, match="not a nowcast checkpoint"):
            load_checkpoint(path)
        ckpt, why = _readable(path, "cpu")
    assert ckpt is None and "weights_only" not in why and why.startswith("UnpicklingError")
    assert seen == []
