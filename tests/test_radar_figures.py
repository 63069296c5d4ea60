"""Radar as a forecaster sees it (issue 55 item 3): pysteps' reflectivity colours, dry blank,
no data grey, a wet test window shown, times and credit on the frames."""

from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest

from nowcast import figures, outputs
from nowcast.predict import RADAR_SCALE

pytest.importorskip("pysteps")


def colour(dbz):
    cmap, norm, _ = figures.radar_palette()
    return np.array(cmap(norm(dbz))[:3])


def test_radar_frames_use_pysteps_colours_dry_blank_and_no_data_grey():
    from pysteps.visualization.precipfields import get_colormap
    cmap, norm, levels, _ = get_colormap("intensity", "dBZ", "pysteps")
    frame = np.array([[0.0, 5 / 70, 35 / 70, 52 / 70]], np.float32)
    valid = np.array([[True, True, True, False]])
    rgba = figures.radar_rgba(frame, RADAR_SCALE, valid)
    assert np.allclose(rgba[0, 0], figures.RADAR_DRY) and np.allclose(rgba[0, 1], figures.RADAR_DRY)
    assert np.allclose(rgba[0, 2, :3], np.array(cmap(norm(35.0))[:3]))
    assert np.allclose(rgba[0, 3], figures.RADAR_NO_DATA)
    assert list(figures.radar_palette()[2]) == list(levels)


def test_radar_gif_is_in_colour_and_digits_stay_grey(tmp_path):
    frames = np.zeros((3, 8, 8), np.float32)
    frames[:, 2:5, 2:5] = 35 / 70
    look = figures.FrameLook(radar=RADAR_SCALE, credit="KNMI", times=("a", "b", "c", "d", "e"))
    figures.sequence_gif(frames, frames[:2], frames[:2], tmp_path / "r.gif", "test", look=look)
    figures.sequence_gif(frames, frames[:2], frames[:2], tmp_path / "g.gif", "test")
    radar, grey = iio.imread(tmp_path / "r.gif"), iio.imread(tmp_path / "g.gif")
    want = np.round(colour(35.0) * 255)
    assert (np.abs(radar[0].reshape(-1, 3).astype(int) - want).max(axis=1) <= 1).sum() >= 9 * 16
    first = grey[0]  # an observed frame: no red forecast border
    assert (first[..., 0] == first[..., 1]).all() and (first[..., 1] == first[..., 2]).all()
    assert radar.shape[1] > grey.shape[1]  # the colour key and the credit below the panels


def test_frame_text_names_times_and_what_each_panel_shows():
    look = figures.FrameLook(times=("21:00", "21:05", "21:10"))
    assert figures._frame_text("test", 1, 2, look, ("observed", "forecast")) == \
        "test  observed 2/2  21:05"
    assert figures._frame_text("forecast", 2, 2, look, ("last observed", "forecast")) == \
        "forecast  lead 1  21:10: last observed | forecast"


def test_the_test_window_shown_is_the_wettest_in_its_forecast_frames():
    dbz = np.zeros((4, 5, 3, 3), np.float32)
    dbz[0, :2] = 40        # wet only in its input frames: not what a forecast shows
    dbz[1, 2:, 0, 0] = 25  # 3 pixel-leads at or above 20 dBZ
    dbz[2, 2:, :2, 0] = 30  # 6
    dbz[3, 2:, :2, 0] = 19  # below the threshold
    data = SimpleNamespace(split_windows=lambda which: SimpleNamespace(dbz=dbz))
    cfg = SimpleNamespace(dataset="radar", k_in=2, k_out=3)
    assert outputs.shown_test_item(data, cfg) == 2
    assert outputs.shown_test_item(data, SimpleNamespace(dataset="mmnist", k_in=2, k_out=3)) == 0
