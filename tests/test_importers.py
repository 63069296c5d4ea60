"""Native radar formats through pysteps' importers (issue 54 items 1 and 3): one registry,
conversion by the unit pysteps states, pixel size from the metadata, shared endings told
apart by the file itself, a format whose package is missing refused in one line. Real files
from ../shared/data/radar_raw (skipped with a message when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nowcast.config import default_data_dir
from nowcast.data.radar import importers
from nowcast.data.radar.readers import read_radar
from nowcast.data.radar.units import PV_NO_DATA, PV_NO_ECHO, dbz_to_pv, pv_to_dbz
from nowcast.errors import NowcastError

pytest.importorskip("pysteps")
pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def raw() -> Path:
    path = default_data_dir()
    if path is None or not (path / "radar_raw" / "opera").is_dir():
        pytest.skip("real radar files absent: set NOWCAST_DATA_DIR or provide ../shared/data/radar_raw")
    return path / "radar_raw"


def test_opera_odim_reflectivity_and_rain_rate_with_their_scale_and_step(raw):
    dbzh = read_radar(raw / "opera" / "20241126_dbzh_1km_5min")
    assert dbzh.frames[0].shape == (8, 4400, 3800) and dbzh.dt_min == 5 and dbzh.pixel_km == 1.0
    assert dbzh.source == "Odyssey datacentre"
    rate = read_radar(raw / "opera" / "20180824_rate_2km_15min")
    assert rate.frames[0].shape == (4, 2200, 1900) and rate.dt_min == 15 and rate.pixel_km == 2.0
    # no echo and no data stay apart, and the values are the file's, converted once
    import h5py
    first = sorted((raw / "opera" / "20241126_dbzh_1km_5min").iterdir())[0]
    with h5py.File(first) as f:
        what = {**dict(f["dataset1/what"].attrs),
                **(dict(f["dataset1/data1/what"].attrs) if "dataset1/data1/what" in f else {})}
        stored = f["dataset1/data1/data"][()]
    pv = dbzh.frames[0][0]
    assert ((pv == 255) == (stored == what["nodata"])).all()
    wet = (stored != what["nodata"]) & (stored != what["undetect"])
    dbz = stored[wet] * what["gain"] + what["offset"]
    np.testing.assert_allclose(pv_to_dbz(pv[wet]), np.clip(dbz, 0, 70) * (dbz > 0), atol=0.26)


def test_files_read_in_forked_processes_are_those_read_in_one_and_a_bad_one_is_named(
        raw, tmp_path, monkeypatch):
    from nowcast.data.radar import readers
    monkeypatch.setattr(readers, "read_processes", lambda files: 1)
    one = read_radar(raw / "fmi")
    monkeypatch.setattr(readers, "read_processes", lambda files: 2)
    forked = read_radar(raw / "fmi")
    assert len(forked.frames[0]) == len(one.frames[0]) >= 4
    assert np.array_equal(forked.frames[0], one.frames[0]) and forked.pixel_km == one.pixel_km
    files = sorted((raw / "fmi").iterdir())[:3]
    for path in files:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / files[1].name).write_bytes(b"P5 not a picture")  # the worker's file fails
    with pytest.raises(NowcastError) as e:
        read_radar(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / files[1].name}: cannot read as fmi_pgm")


def test_a_glob_in_a_params_file_reads_what_it_matches_and_its_cache_follows_them(raw, tmp_path,
                                                                                   monkeypatch):
    from nowcast.config import load_config
    from nowcast.data.check import check_inputs
    from nowcast.data.radar import grid
    from nowcast.data.radar.dataset import resolve_data_file
    monkeypatch.setattr(grid, "cache_dir", lambda: tmp_path / "cache")
    cfg = load_config(values=dict(dataset="radar", data_file="radar_raw/fmi/*_SUOMI1.pgm.gz",
                                  data_dir=str(raw.parent), hidden_sizes=[4, 4]))
    check_inputs(cfg)  # the pattern, under data_dir, passes the checks made before a run
    pattern = resolve_data_file(cfg, cfg.data_file)
    assert pattern == raw / "fmi" / "*_SUOMI1.pgm.gz"
    by_glob = grid.prepared_events(pattern)
    by_folder = grid.prepared_events(raw / "fmi")
    assert np.array_equal(np.concatenate(by_glob.frames), np.concatenate(by_folder.frames),
                          equal_nan=True)
    assert [p.name.startswith("radar-__SUOMI1.pgm-") for p in (tmp_path / "cache").iterdir()].count(True) == 1
    files = tmp_path / "fmi"
    files.mkdir()
    for path in sorted((raw / "fmi").iterdir())[:4]:
        (files / path.name).write_bytes(path.read_bytes())
    stamp = grid.content_stamp(files / "*.pgm.gz")
    assert len(stamp) == 4
    sorted(files.iterdir())[-1].unlink()
    assert len(grid.content_stamp(files / "*.pgm.gz")) == 3 != len(stamp)
    with pytest.raises(NowcastError, match="no such radar data file"):
        resolve_data_file(cfg, "radar_raw/fmi/*.nothing")


def test_shared_endings_are_told_apart_by_the_file(raw):
    knmi = next((raw / "knmi_hdf5").iterdir())
    opera = sorted((raw / "opera" / "20241126_dbzh_1km_5min").iterdir())[0]
    assert importers.get_format(knmi)[0] == "knmi_hdf5"
    assert importers.get_format(opera)[0] == "odim_hdf5"
    assert [n for n, _ in importers.candidates(Path("x.h5"))] == ["knmi_hdf5", "odim_hdf5"]
    assert importers.frame_time(opera) == np.datetime64("2024-11-26T01:00")


def test_units_convert_by_marshall_palmer_and_accumulation_time():
    rate = importers.to_dbz(np.array([0.0, 1.0, np.nan]), {"unit": "mm/h", "transform": None})
    assert rate[0] == 0 and rate[1] == pytest.approx(10 * np.log10(200), abs=1e-4) and np.isnan(rate[2])
    depth = importers.to_dbz(np.array([1.0]), {"unit": "mm", "accutime": 5.0})  # 12 mm/h
    assert depth[0] == pytest.approx(10 * np.log10(200 * 12 ** 1.6), abs=1e-4)
    dbz = importers.to_dbz(np.array([-32.0, 0.0, 25.5, np.nan]), {"unit": "dBZ"})  # as read:
    assert list(dbz_to_pv(dbz)) == [PV_NO_ECHO, PV_NO_ECHO, 115, PV_NO_DATA]  # <= 0: no echo
    assert importers.pixel_km({"xpixelsize": 1000.0, "projection": "+proj=laea +units=m"}) == 1.0
    assert importers.pixel_km({"xpixelsize": 0.01, "projection": "+proj=longlat"}) is None


def test_a_format_whose_package_is_missing_is_refused_in_one_line(tmp_path, monkeypatch):
    grib = tmp_path / "PrecipRate_00.00_20190610-120000.grib2"
    grib.write_bytes(b"GRIB")
    monkeypatch.setattr(importers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(NowcastError, match="mrms_grib files need the Python package 'pygrib', "
                                           "which is not installed here"):
        read_radar(grib)
    with pytest.raises(NowcastError, match="unknown radar format"):
        importers.get_format(tmp_path / "x.jpeg")


def test_data_inspect_says_what_an_archive_holds(raw):
    from nowcast.data.radar.archive import inspect, inspect_text
    facts = inspect(raw / "knmi_hdf5")
    events = read_radar(raw / "knmi_hdf5")
    pv = events.frames[0]
    row = facts["by_event"][0]
    assert facts["events"] == 1 and row["frames"] == len(pv) and facts["step_min"] == 5
    assert row["grid"] == f"{pv.shape[1]}x{pv.shape[2]}" and facts["pixel_km"] == 1.0
    assert row["coverage"] == pytest.approx(float((pv != 255).mean()), abs=1e-4)
    assert row["start"] == str(events.times[0][0]) and row["gap_before_min"] is None
    assert "KNMI" in inspect_text(facts).splitlines()[0]


def test_data_import_round_trips_and_never_overwrites(raw, tmp_path):
    from nowcast.cli import main
    out = tmp_path / "knmi.npz"
    assert main(["data", "import", str(raw / "knmi_hdf5"), "--out", str(out)]) == 0
    back, orig = read_radar(out), read_radar(raw / "knmi_hdf5")
    assert np.array_equal(back.frames[0], orig.frames[0]) and np.array_equal(back.times[0], orig.times[0])
    assert back.dt_min == 5 and back.pixel_km == 1.0 and back.source == orig.source
    before = out.read_bytes()
    assert main(["data", "import", str(raw / "knmi_hdf5"), "--out", str(out)]) == 2
    assert out.read_bytes() == before
    assert main(["data", "import", str(raw / "knmi_hdf5"), "--out", str(tmp_path / "x.h5")]) == 2


def test_a_user_set_gap_cuts_events_in_inspect_and_import_and_travels_in_the_file(raw, tmp_path,
                                                                                 capsys):
    """--gap: the knmi_hdf5 frames are 5 minutes apart (one event by default); a gap of 4
    minutes makes each frame an event, in inspect, in import and in every later read of the
    imported file (its meta gap_min); a gap that is no positive number: one line, exit 2."""
    from nowcast.cli import main
    frames = len(read_radar(raw / "knmi_hdf5").frames[0])
    assert main(["data", "inspect", str(raw / "knmi_hdf5"), "--gap", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == frames > 1
    out = tmp_path / "cut.npz"
    assert main(["data", "import", str(raw / "knmi_hdf5"), "--out", str(out), "--gap", "4"]) == 0
    assert len(read_radar(out)) == frames and len(read_radar(out, 60.0)) == 1  # meta, or given
    capsys.readouterr()
    for bad in ("0", "-5", "inf", "nan"):
        assert main(["data", "inspect", str(raw / "knmi_hdf5"), "--gap", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nowcast: error: --gap: the event gap must be a positive number")
        assert err.count("\n") == 1
    np.savez(tmp_path / "bad.npz", frames=np.zeros((1, 2, 4, 4), np.uint8),
             times=np.array([["2021-01-01T00:00", "2021-01-01T00:05"]], "datetime64[m]"),
             meta=json.dumps({"gap_min": "ten"}))
    with pytest.raises(NowcastError, match="bad.npz: meta 'gap_min': the event gap must be"):
        read_radar(tmp_path / "bad.npz")


@pytest.mark.parametrize("files, message", [
    ([("fmi", 0, "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"),
      ("fmi", 1, "201609281445_fmi.radar.composite.lowest_FIN_SUOMI2.pgm.gz")],
     "two files have the same time stamp"),
    ([("fmi", 0, None), ("mch", 0, None)], "the files (state different pixel sizes|differ in size)"),
])
def test_a_bad_folder_of_native_files_is_one_line_naming_it(raw, tmp_path, files, message):
    for source, index, name in files:
        path = sorted((raw / source).iterdir())[index]
        (tmp_path / (name or path.name)).write_bytes(path.read_bytes())
    with pytest.raises(NowcastError, match=message) as e:
        read_radar(tmp_path)
    assert str(e.value).startswith(f"{tmp_path}: ") and "\n" not in str(e.value)


def test_a_glob_of_native_files_reads_as_their_folder(raw):
    """read_radar("dir/*.gif"): the files the pattern matches, as the folder they are in;
    a pattern that matches no file of a known format is one line naming it."""
    folder, pattern = read_radar(raw / "mch"), read_radar(str(raw / "mch" / "*.gif"))
    assert np.array_equal(folder.frames[0], pattern.frames[0])
    assert list(folder.times[0]) == list(pattern.times[0])
    part = read_radar(str(raw / "mch" / "AQC1619321*.gif"))  # 21:00 to 21:10 only
    assert len(part.frames[0]) == 3 and np.array_equal(part.frames[0], folder.frames[0][3:])
    with pytest.raises(NowcastError, match=r"\*\.xyz: no radar file of a known format matches"):
        read_radar(str(raw / "mch" / "*.xyz"))
