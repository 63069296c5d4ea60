"""Radar data: conversions, events and time order, windows, splits, 4 km blocks, readers.

Uses the real files in ../shared/data (skipped with a message when absent).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nowcast.config import default_data_dir, load_config
from nowcast.data.radar import RadarData, grid, readers, units
from nowcast.errors import NowcastError
from nowcast.protocols import KNMI_FILE


@pytest.fixture(scope="module")
def shared():
    path = default_data_dir()
    if path is None or not (path / "radar" / KNMI_FILE).is_file():
        pytest.skip("real radar data absent: set NOWCAST_DATA_DIR or provide ../shared/data/radar")
    return path


@pytest.fixture(scope="module")
def knmi(shared):
    """The KNMI-30/60 data (decoded once, then from the cache)."""
    return RadarData(load_config(values=dict(protocol="knmi-30-60"), check_model=False))


@pytest.fixture(scope="module")
def knmi_raw(shared):
    """The KNMI file as read: PV frames, cut into events."""
    return readers.read_array_file(shared / "radar" / KNMI_FILE)


@pytest.fixture(scope="module")
def knmi_pv(knmi_raw):
    """Raw PV and times of test event 10 (the first February event)."""
    return knmi_raw.frames[10], knmi_raw.times[10]


def write_npz(path, frames, times=None, dt_min=5):
    arrays = {"frames": frames, "meta": json.dumps({"source": "test", "dt_min": dt_min})}
    if times is not None:
        arrays["times"] = np.asarray(times, "datetime64[m]")
    np.savez(path, **arrays)
    return path


def minutes(*offsets):
    return np.datetime64("2021-02-01T20:00", "m") + np.array(offsets, "timedelta64[m]")


# --- conversions ------------------------------------------------------------------------------

def test_pv_dbz_rainrate_conversions():
    pv = np.array([0, 1, 64, 104, 150, 204, 254, 255], np.uint8)
    assert np.array_equal(units.pv_to_dbz(pv), [0, 0, 0, 20, 43, 70, 70, np.nan], equal_nan=True)
    grid = np.arange(65, 205, dtype=np.uint8)  # PV of 0.5..70 dBZ: exact round trip
    assert np.array_equal(units.dbz_to_pv(units.pv_to_dbz(grid)), grid)
    assert np.array_equal(units.dbz_to_pv(np.array([np.nan, 0.0, -5.0, 99.0])), [255, 0, 0, 204])
    # Marshall-Palmer, as the data README quotes it: 1 mm/h = 23 dBZ, 5 = 34, 10 = 39
    assert np.allclose(units.rainrate_to_dbz(np.array([1.0, 5.0, 10.0])), [23.0, 34.2, 39.0], atol=0.05)
    assert np.allclose(units.dbz_to_rainrate(units.rainrate_to_dbz(np.array([0.5, 2.0, 30.0]))),
                       [0.5, 2.0, 30.0], rtol=1e-5)
    assert units.dbz_to_rainrate(np.array([0.0]))[0] == 0.0        # the floor is dry
    assert units.rainrate_to_dbz(np.array([0.0, 0.005]))[0] == 0.0
    assert np.isnan(units.dbz_to_rainrate(np.array([np.nan])))[0]


def test_unit_scaling_round_trip_and_no_data():
    dbz = units.pv_to_dbz(np.arange(256, dtype=np.uint8))
    unit = units.dbz_to_unit(dbz)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    assert unit[255] == 0.0                                          # no data -> 0 for the model
    valid = np.isfinite(dbz)
    assert np.array_equal(units.unit_to_dbz(unit)[valid], dbz[valid])  # exact at thresholds


# --- events, time order, bad input --------------------------------------------------------

def test_knmi_file_events_oldest_first(knmi_raw):
    events = knmi_raw
    assert len(events) == 20 and events.dt_min == 5
    for stamps, frames in zip(events.times, events.frames):
        assert len(frames) == 36 and np.all(np.diff(stamps).astype(int) == 5)


def test_reversed_time_is_refused(tmp_path, knmi_pv):
    pv, times = knmi_pv
    newest_first = pv[None, :4, 380:388, 350:358][:, ::-1], times[None, :4][:, ::-1]
    path = write_npz(tmp_path / "reversed.npz", *newest_first)
    with pytest.raises(NowcastError, match="reversed.npz.*out of time order"):
        readers.read_radar(path)


def test_frames_keep_their_times_order_through_reading_windows_and_batches(tmp_path):
    """Times in order are not enough: a reader or window cutter that reversed the frames (or
    shifted them against their times) would pass test_reversed_time_is_refused. Here each
    frame's content is its time, so every frame that comes out must sit at its own time."""
    n = 30
    frames = (70 + 2 * np.arange(n, dtype=np.uint8))[None, :, None, None] * np.ones((1, 1, 8, 8), np.uint8)
    stamps = [60 * (i // 10) + 5 * i for i in range(n)]  # 3 events of 10 frames, an hour apart
    path = write_npz(tmp_path / "clock.npz", frames, minutes(*stamps)[None])
    events = readers.read_radar(path)
    read = np.concatenate([f[:, 0, 0] for f in events.frames])
    assert np.array_equal(read, frames[0, :, 0, 0])  # the stored order
    cfg = load_config(values=dict(dataset="radar", data_file=str(path), block_size=1, k_in=2,
                                  k_out=2), check_model=False)
    data = RadarData(cfg)
    for split in ("train", "val", "test"):
        w = data.split_windows(split).dbz[..., 0, 0]
        assert w.size and np.all(np.diff(w, axis=1) == 1.0), split  # 2 PV = 1 dBZ a frame
    batch = data.train_batch(0, 4, 4).frames.cpu().numpy()[..., 0, 0]
    assert np.allclose(np.diff(units.unit_to_dbz(batch), axis=1), 1.0, atol=1e-3)


def test_events_split_at_gaps(tmp_path):
    frames = np.full((1, 6, 8, 8), 100, np.uint8)
    path = write_npz(tmp_path / "gaps.npz", frames, minutes(0, 5, 15, 20, 40, 47)[None])
    # a missing frame cuts (10 min), a frame 7 minutes late does not (1.4 steps of 5)
    assert [len(f) for f in readers.read_radar(path).frames] == [2, 2, 2]
    assert [len(f) for f in readers.read_radar(path, max_gap_min=10).frames] == [4, 2]  # seed: > 10 min


@pytest.mark.parametrize("name, frames, message", [
    ("float.npz", np.zeros((1, 3, 8, 8), np.float32), "uint8"),
    ("flat.npz", np.zeros((8, 8), np.uint8), "shape"),
    ("nodata.npz", np.full((1, 3, 8, 8), 255, np.uint8), "no data"),
])
def test_bad_files_are_refused_naming_them(tmp_path, name, frames, message):
    path = write_npz(tmp_path / name, frames)
    with pytest.raises(NowcastError, match=f"{name}.*{message}"):
        readers.read_radar(path)


def test_unknown_and_missing_files(tmp_path):
    (tmp_path / "frames.txt").write_text("1 2 3")
    with pytest.raises(NowcastError, match="frames.txt: unknown radar format"):
        readers.read_radar(tmp_path / "frames.txt")
    with pytest.raises(NowcastError, match="absent.npz: no such radar file"):
        readers.read_radar(tmp_path / "absent.npz")


# --- the KNMI-30/60 protocol -----------------------------------------------------------------

def test_protocol_windows(knmi):
    test = knmi.split_windows("test")
    assert test.dbz.shape == (40, 18, 191, 175)
    assert list(test.start) == [0, 6, 12, 18] * 10
    assert list(test.event) == [e for e in range(10, 20) for _ in range(4)]
    assert knmi.split("val").frames.shape == (8, 18, 191, 175)
    batch = knmi.split("test")
    assert batch.frames.dtype == np.float32 and batch.mask.dtype == bool
    assert 0.0 <= batch.frames.min() and batch.frames.max() <= 1.0
    assert np.all(batch.frames[~batch.mask] == 0.0)
    assert knmi.follows_protocol and knmi.frame_shape == (191, 175)


def test_no_test_frame_reaches_training(knmi):
    """Defect 2 of the seed: February (test) frames never appear in January (train/val)."""
    times = {}
    for split, (events, rows) in knmi.sources.items():
        times[split] = np.concatenate([events.times[e] for e in rows])
    assert set(times["test"].tolist()).isdisjoint(times["train"].tolist() + times["val"].tolist())
    assert set(times["val"].tolist()).isdisjoint(times["train"].tolist())
    month = lambda t: t.astype("datetime64[M]")
    assert np.all(month(times["test"]) == np.datetime64("2021-02"))
    assert np.all(month(np.concatenate([times["train"], times["val"]])) == np.datetime64("2021-01"))
    test_windows = knmi.split_windows("test").times
    assert set(test_windows.ravel().tolist()) <= set(times["test"].tolist())


def test_block_average_matches_slow_reference(knmi, knmi_pv):
    pv = knmi_pv[0][0]
    blocks = knmi.sources["test"][0].frames[10][0]
    assert blocks.shape == (191, 175)
    valid_count = np.array([[np.sum(pv[4 * i:4 * i + 4, 4 * j:4 * j + 4] != 255) for j in range(175)]
                            for i in range(0, 191, 10)])
    partial = np.argwhere((valid_count > 0) & (valid_count < 16))[0] * [10, 1]
    empty = np.argwhere(valid_count == 0)[0] * [10, 1]
    wet = np.unravel_index(np.nanargmax(blocks), blocks.shape)
    for i, j in [(0, 0), (95, 80), (190, 174), tuple(partial), tuple(empty), tuple(wet)]:
        values = [min(max(0.5 * int(p) - 32, 0.0), 70.0) if p != 0 else 0.0
                  for p in pv[4 * i:4 * i + 4, 4 * j:4 * j + 4].ravel() if p != 255]
        if values:
            assert blocks[i, j] == pytest.approx(sum(values) / len(values), abs=1e-5), (i, j)
        else:
            assert np.isnan(blocks[i, j]), (i, j)


def test_train_batches_are_deterministic_and_augmented(shared):
    cfg = load_config(values=dict(protocol="knmi-30-60", crop_size=64, augment=True, seed=3),
                      check_model=False)
    data = RadarData(cfg)
    a, b = data.train_batch(7, 4, 18), data.train_batch(7, 4, 18)
    assert a.frames.shape == (4, 18, 64, 64) and a.mask.shape == a.frames.shape
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.frames, data.train_batch(8, 4, 18).frames)
    with pytest.raises(NowcastError, match="no training event has 40 frames"):
        data.train_batch(0, 1, 40)


# --- other files and formats -------------------------------------------------------------------

def test_seed_recipe_and_split_by_event_in_time_order(tmp_path):
    """The seed's recipe on a small file: events at gaps > 10 min, square crop, 128 x 128."""
    stamps = minutes(*range(0, 40, 5), *range(60, 100, 10), *range(200, 240, 5))  # 8 + 4 + 8 frames
    frames = np.random.default_rng(0).integers(60, 140, (1, 20, 90, 70)).astype(np.uint8)
    frames[..., :10] = units.PV_NO_DATA                # no data in the left 10 columns
    path = write_npz(tmp_path / "seed.npz", frames, stamps[None])
    cfg = load_config(values=dict(dataset="radar", data_file=str(path), radar_recipe="seed",
                                  k_in=2, k_out=2), check_model=False)
    data = RadarData(cfg)
    assert data.frame_shape == (128, 128) and not data.follows_protocol
    rows = {split: rows for split, (_, rows) in data.sources.items()}
    assert rows == {"train": [0], "val": [1], "test": [2]}           # whole events, in time order
    assert data.split("val").frames.shape == (1, 4, 128, 128)         # 4 frames: one window
    assert data.split("test").frames.shape == (1, 4, 128, 128)        # 8 frames: starts 0 (6 > 4)
    batch = data.train_batch(0, 2, 4)
    assert batch.frames.shape == (2, 4, 128, 128) and not batch.mask[..., 0].any()


def test_val_events_move_training_events_to_validation_never_a_test_event(tmp_path):
    """val_events: events of the training split validated on instead (a rain-aware choice);
    the test split stays as it was; a test event, a repeat or every training event is refused."""
    stamps = np.stack([minutes(*range(1000 * e, 1000 * e + 40, 5)) for e in range(6)])
    frames = np.random.default_rng(1).integers(60, 140, (6, 8, 16, 16)).astype(np.uint8)
    path = write_npz(tmp_path / "six.npz", frames, stamps)
    values = dict(dataset="radar", data_file=str(path), block_size=1, k_in=2, k_out=2)
    base = RadarData(load_config(values=values, check_model=False))
    data = RadarData(load_config(values=dict(values, val_events=[3, 1]), check_model=False))
    rows = {split: rows for split, (_, rows) in data.sources.items()}
    assert {s: r for s, (_, r) in base.sources.items()} == {"train": [0, 1, 2, 3], "val": [4], "test": [5]}
    assert rows == {"train": [0, 2], "val": [4, 3, 1], "test": [5]}
    assert len(data.train_events) == 2 and "events 3, 1 of six.npz moved" in data.description
    assert np.array_equal(data.split("test").frames, base.split("test").frames)
    val = data.split("val").frames   # one window an event (windows start every 6 frames)
    assert val.shape[0] == 3 and np.array_equal(val[:1], base.split("val").frames)
    assert np.allclose(val[1], units.pv_to_dbz(frames[3, :4]).clip(0, 70) / 70, atol=1e-6)
    for chosen, message in (([5], r"not \[5\]"), ([1, 1], r"not \[1, 1\]"),
                            ([0, 1, 2, 3], "no training event")):
        with pytest.raises(NowcastError, match=message):
            RadarData(load_config(values=dict(values, val_events=chosen), check_model=False))


def test_another_file_as_protocol_test_set(shared):
    cfg = load_config(values=dict(protocol="knmi-30-60", data_file="knmi2010_pysteps_5min.npz"),
                      check_model=False)
    data = RadarData(cfg)
    assert not data.follows_protocol and data.n_windows("test") == 13  # 92 frames, every 6
    bom = load_config(values=dict(protocol="knmi-30-60", data_file="bom_pysteps_6min.npz"),
                      check_model=False)
    with pytest.raises(NowcastError, match="bom_pysteps_6min.npz: frames are 6 min apart"):
        RadarData(bom)


def test_native_knmi_hdf5_matches_the_npz(shared, knmi_pv):
    pytest.importorskip("h5py")
    events = readers.read_radar(shared / "radar_raw" / "knmi_hdf5")
    assert len(events) == 1 and list(events.times[0]) == list(knmi_pv[1][:6])
    assert np.array_equal(units.pv_to_dbz(events.frames[0]), units.pv_to_dbz(knmi_pv[0][:6]),
                          equal_nan=True)


def test_native_mch_gif_matches_the_npz(shared):
    events = readers.read_radar(shared / "radar_raw" / "mch")
    with np.load(shared / "radar" / "mch_pysteps_5min.npz") as f:
        pv, times = f["frames"][1, :6], f["times"][1, :6]
    assert list(events.times[0]) == list(times)                   # AQC16193HHMM: 2016-07-11
    assert np.array_equal(units.pv_to_dbz(events.frames[0]), units.pv_to_dbz(pv), equal_nan=True)


def test_native_fmi_pgm(shared):
    pytest.importorskip("pyproj", reason="pysteps.io.import_fmi_pgm needs pyproj")
    events = readers.read_radar(shared / "radar_raw" / "fmi")
    assert len(events.frames[0]) == 4 and events.dt_min == 5


def test_forecast_file_round_trip(tmp_path, knmi):
    dbz = knmi.split_windows("test").dbz[0, :3]
    path = readers.write_radar_forecast(tmp_path / "forecast.npz", dbz,
                                      readers.forecast_times(minutes(-5, 0), 3))
    back, mask, times, _, _ = grid.read_radar_input(path, recipe="native")
    assert np.array_equal(mask, np.isfinite(dbz)) and list(times) == list(minutes(5, 10, 15))
    assert np.allclose(back[mask], dbz[mask], atol=0.25)              # the PV grid is 0.5 dBZ
    with np.load(path) as f:  # the rain rate of the stored frames: 23 dBZ is 1 mm/h
        rain, stored = f["rain_mm_h"][0], units.pv_to_dbz(f["frames"][0])
    assert rain.dtype == np.float32 and rain.shape == dbz.shape
    assert np.allclose(rain[mask], (10 ** (stored[mask] / 10) / 200) ** (1 / 1.6) * (stored[mask] > 0),
                       rtol=1e-5) and np.isnan(rain[~mask]).all()


def test_train_files_join_training_only(tmp_path, shared):
    """train_files add every event of other files to training, never to validation or test;
    a file at another time step, or one sharing a frame time with a split, is refused."""
    extra = "knmi2010_pysteps_5min.npz"
    cfg = load_config(values=dict(protocol="knmi-30-60", crop_size=64, train_files=[extra]),
                      check_model=False)
    data, base = RadarData(cfg), RadarData(load_config(values=dict(protocol="knmi-30-60"),
                                                       check_model=False))
    assert len(data.train_events) == len(base.train_events) + 1 and extra in data.description
    assert data.train_events[-1].shape[0] == 92
    for split in ("val", "test"):  # the same windows as without the extra file
        assert np.array_equal(data.split(split).frames, base.split(split).frames)
    assert data.train_batch(3, 4, 18).frames.shape == (4, 18, 64, 64)
    bom = load_config(values=dict(protocol="knmi-30-60", crop_size=64,
                                  train_files=["bom_pysteps_6min.npz"]), check_model=False)
    with pytest.raises(NowcastError, match="bom_pysteps_6min.npz: frames are 6 min apart"):
        RadarData(bom)
    same = load_config(values=dict(protocol="knmi-30-60", train_files=[KNMI_FILE]), check_model=False)
    with pytest.raises(NowcastError, match="share data"):
        RadarData(same)


def test_train_files_are_checked_before_any_folder(tmp_path, shared):
    from nowcast.data.check import check_inputs
    values = dict(protocol="knmi-30-60", train_files=["knmi2010_pysteps_5min.npz"])
    with pytest.raises(NowcastError, match="fmi_pysteps_5min.npz has 306x190 frames on the run.s grid, the training data 191x175: set crop_size"):
        # the same grid: fine without a crop; another grid needs one
        check_inputs(load_config(values=dict(values, train_files=["fmi_pysteps_5min.npz"])))
    check_inputs(load_config(values=values))
    with pytest.raises(NowcastError, match="no_such.npz: no such radar data file"):
        check_inputs(load_config(values=dict(values, train_files=["no_such.npz"])))
    with pytest.raises(NowcastError, match="crop_size 170 is larger than the 160x177 frames of "
                                           "mch_pysteps_5min.npz"):
        check_inputs(load_config(values=dict(values, crop_size=170,
                                             train_files=["mch_pysteps_5min.npz"])))
