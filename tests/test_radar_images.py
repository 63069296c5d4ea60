"""Folders of radar images (data/radar/images.py): the folder's radar-images.yaml maps pixel
values or colours to dBZ or mm/h, file names give the times; the example generator
(example_images.py) makes the README's folder from a shared event; every bad folder is one line."""

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nowcast.config import default_data_dir, load_config
from nowcast.data.radar import RadarData, grid
from nowcast.data.radar.example_images import PALETTE, write_example
from nowcast.data.radar.images import IMAGE_SPEC
from nowcast.data.radar.readers import read_radar
from nowcast.data.radar.units import PV_NO_DATA, PV_NO_ECHO, dbz_to_pv, pv_to_dbz
from nowcast.errors import NowcastError
from nowcast.models import get_model

KNMI = default_data_dir() / "radar" / "knmi_2021_refl_5min.npz" if default_data_dir() else None
needs_knmi = pytest.mark.skipif(KNMI is None or not KNMI.is_file(),
                                reason="../shared/data/radar/knmi_2021_refl_5min.npz is absent: "
                                       "the example image folder is made from it")
GREY_SPEC = ('pattern: "r_%Y%m%d%H%M.png"\nunit: {unit}\npixel_km: 2.0\n'
             'linear: {{offset: {offset}, gain: {gain}}}\nno_echo: [0]\nno_data: [255]\n')


def folder_of(tmp_path, frames, minutes, spec=None, name="r_%Y%m%d%H%M.png"):
    """Grey PNGs at 2021-02-06 + `minutes`, and a radar-images.yaml."""
    folder = tmp_path / "images"
    folder.mkdir(parents=True)
    for frame, m in zip(frames, minutes):
        stamp = (np.datetime64("2021-02-06T20:00") + np.timedelta64(m, "m")).item()
        iio.imwrite(folder / stamp.strftime(name), frame)
    (folder / IMAGE_SPEC).write_text(spec or GREY_SPEC.format(unit="dBZ", offset=-32.0, gain=0.5))
    return folder


@needs_knmi
@pytest.mark.parametrize("style", ["grey", "palette"])
def test_the_example_folder_reads_back_as_the_event_it_came_from(tmp_path, style):
    folder = write_example(KNMI, tmp_path / style, event=15, frames=18, style=style)
    events = read_radar(folder)
    with np.load(KNMI) as f:
        pv, times = f["frames"][15, :18], f["times"][15, :18]
    assert len(events) == 1 and list(events.times[0]) == list(times.astype("datetime64[m]"))
    assert events.dt_min == 5 and events.pixel_km == 1.0
    if style == "grey":  # lossless in dBZ (echo below 0 dBZ is no echo, as everywhere)
        assert np.array_equal(pv_to_dbz(events.frames[0]), pv_to_dbz(pv), equal_nan=True)
        assert np.array_equal(events.frames[0] == PV_NO_DATA, pv == PV_NO_DATA)
    else:  # each 5 dBZ class from 5 dBZ reads as its lower edge; below 5 dBZ no echo
        dbz = np.nan_to_num(pv_to_dbz(pv), nan=-1)
        edges = np.array(sorted(PALETTE))
        want = np.where(dbz >= 5, edges[np.clip(np.searchsorted(edges, dbz, "right") - 1, 0, None)], 0.0)
        want = np.where(pv == PV_NO_DATA, np.nan, want)
        assert np.array_equal(pv_to_dbz(events.frames[0]), want.astype(np.float32), equal_nan=True)


def test_mapping_units_gaps_and_no_data_apart_from_no_echo(tmp_path):
    grey = np.array([[0, 255, 64, 100]], np.uint8).repeat(4, 0)  # no echo, no data, 0 dBZ, 18 dBZ
    folder = folder_of(tmp_path, [grey] * 5, [0, 5, 10, 30, 35])
    events = read_radar(folder)
    assert [len(f) for f in events.frames] == [3, 2] and events.dt_min == 5  # cut at 20 min
    row = events.frames[0][0, 0]
    assert row.tolist() == [PV_NO_ECHO, PV_NO_DATA, PV_NO_ECHO, dbz_to_pv(np.array([18.0]))[0]]
    (folder / IMAGE_SPEC).write_text(GREY_SPEC.format(unit="mm/h", offset=0.0, gain=0.1))
    rate = read_radar(folder).frames[0][0, 0]  # 10 mm/h (pixel 100) is 39 dBZ by Marshall-Palmer
    assert pv_to_dbz(rate)[3] == pytest.approx(10 * np.log10(200 * 10.0 ** 1.6), abs=0.26)
    assert rate[1] == PV_NO_DATA and rate[0] == PV_NO_ECHO


def test_palette_with_transparency_is_no_data(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (0, 200, 0)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0          # transparent: no data, whatever its colour
    rgba[1, 2, :3] = (1, 2, 3)  # under no colour of the palette, but transparent
    rgba[1, 2, 3] = 0
    spec = ('pattern: "r_%Y%m%d%H%M.png"\nunit: dBZ\npixel_km: 1\npalette: {"#00c800": 25.0}\n')
    folder = folder_of(tmp_path, [rgba] * 2, [0, 5], spec=spec)
    pv = read_radar(folder).frames[0][0]
    assert pv[0, 0] == PV_NO_DATA and pv[1, 2] == PV_NO_DATA and pv_to_dbz(pv[0, 1]) == 25.0


@pytest.mark.parametrize("spec, files, message", [
    (None, ["x_202102062000.png"], "no file name fits the pattern"),
    ('pattern: "r_%d.png"\nunit: dBZ\npixel_km: 1\nlinear: {offset: 0, gain: 1}\n', [],
     "must carry the year"),
    ('pattern: "r_%Y%m%d%H%M.png"\nunit: dBZ\nlinear: {offset: 0, gain: 1}\n', [], "'pixel_km' is missing"),
    ('pattern: "r_%Y%m%d%H%M.png"\nunit: K\npixel_km: 1\nlinear: {offset: 0, gain: 1}\n', [],
     "'unit' 'K' is not dBZ or mm/h"),
    ('pattern: "r_%Y%m%d%H%M.png"\nunit: dBZ\npixel_km: 1\nlinear: {offset: 0, gain: 1}\ngain: 2\n',
     [], "unknown key 'gain'"),
    ('pattern: "r_%Y%m%d%H%M.png"\nunit: dBZ\npixel_km: 1\npalette: {"#00c800": 25.0}\n',
     ["r_202102062000.png"], "a palette"),   # grey images under a palette
    ('pattern: "r_%Y%m%d%H%M%S.png"\nunit: dBZ\npixel_km: 1\nlinear: {offset: 0, gain: 1}\n',
     ["r_20210206200000.png", "r_20210206200030.png"], "have the same time"),
    (None, ["r_202102062000.png", "r_202102062005.png", "small"], "differ in size"),
    (None, ["r_202102062000.png", "text"], "not a readable image"),
])
def test_every_bad_folder_is_one_line_naming_it(tmp_path, spec, files, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / IMAGE_SPEC).write_text(spec or GREY_SPEC.format(unit="dBZ", offset=-32.0, gain=0.5))
    frame = np.full((4, 4), 100, np.uint8)
    for k, name in enumerate(files):
        if name == "small":
            iio.imwrite(folder / "r_202102062010.png", frame[:2])
        elif name == "text":
            (folder / "r_202102062005.png").write_text("not an image")
        else:
            iio.imwrite(folder / name, frame)
    with pytest.raises(NowcastError, match=message) as raised:
        read_radar(folder)
    assert "\n" not in str(raised.value) and str(folder) in str(raised.value)


def test_scoring_a_folder_needs_that_folder_alone(tmp_path, monkeypatch):
    """evaluate --data: the windows of every event of the folder, at the model's pixel size
    (2 km images, a model of 4 km blocks: 2x2 blocks), with no other radar file anywhere;
    too few frames for one window: refused in one line."""
    monkeypatch.setenv("NOWCAST_DATA_DIR", str(tmp_path / "no-data"))
    rng = np.random.default_rng(0)
    frames = rng.integers(60, 140, (20, 16, 12)).astype(np.uint8)
    folder = folder_of(tmp_path, frames, range(0, 100, 5))
    cfg = load_config(values=dict(protocol="knmi-30-60", data_file=str(folder)), check_model=False)
    reads = []
    monkeypatch.setattr(grid, "read_radar", lambda *a, **k: reads.append(a) or read_radar(*a, **k))
    data = RadarData(cfg, scoring_km=4.0, scoring_only=True)
    assert len(reads) == 1  # the files are read once, at the model's scale (not 4x4 first)
    assert data.n_windows("test") == 1 and data.frame_shape == (8, 6)
    assert "from every event of images" in data.description and "4 km blocks 8x6" in data.description
    windows = data.split_windows("test")
    block = pv_to_dbz(frames[:18]).reshape(18, 8, 2, 6, 2).mean(axis=(2, 4))
    assert np.allclose(windows.dbz[0], block, atol=1e-4)
    with pytest.raises(NowcastError, match="knmi_2021_refl_5min.npz: no such radar data file"):
        RadarData(cfg)  # training's data is what scoring no longer reads
    short = folder_of(tmp_path / "short", frames[:10], range(0, 50, 5))
    cfg = load_config(values=dict(protocol="knmi-30-60", data_file=str(short)), check_model=False)
    with pytest.raises(NowcastError, match="18"):
        RadarData(cfg, scoring_km=4.0, scoring_only=True)


def test_predict_and_evaluate_from_an_image_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NOWCAST_DATA_DIR", str(tmp_path / "no-data"))
    rng = np.random.default_rng(1)
    folder = folder_of(tmp_path, rng.integers(60, 140, (18, 16, 12)).astype(np.uint8), range(0, 90, 5))
    (folder / IMAGE_SPEC).write_text(GREY_SPEC.format(unit="dBZ", offset=-32.0, gain=0.5)
                                     .replace("pixel_km: 2.0", "pixel_km: 1.0"))
    cfg = load_config(values=dict(protocol="knmi-30-60", hidden_sizes=[4, 4], filter_size=3,
                                  max_pool=False, norm="group", norm_groups=2, peephole="per_channel"))
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save({"model": get_model(cfg).state_dict(), "config": cfg.to_dict(),
                "grid": {"dt_min": 5, "pixel_km": 4.0}}, checkpoint)
    run = lambda *a: subprocess.run([sys.executable, "-m", "nowcast.cli", *a], capture_output=True, text=True)  # noqa: E731
    done = run("predict", "--checkpoint", str(checkpoint), "--input", str(folder), "--steps", "3",
               "--out", str(tmp_path / "forecast.npz"))
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "forecast.npz") as f:
        assert f["frames"].shape == (1, 3, 4, 3)
        assert str(f["times"][0, 0]) == "2021-02-06T21:30"
    done = run("evaluate", "--checkpoint", str(checkpoint), "--data", str(folder),
               "--results", str(tmp_path / "results"), "--job-id", "own")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "results" / "own" / "metrics.json").read_text())
    assert metrics["n_sequences"] == 1 and "every event of images" in metrics["data"]
