"""Baselines on a few KNMI-30/60 test windows, scored by the same code as the models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nowcast import baselines, verification
from nowcast.config import default_data_dir, load_config
from nowcast.data.radar import RadarData, units
from nowcast.errors import NowcastError
from nowcast.protocols import KNMI_FILE
from nowcast.util import optional_import


class SomeWindows:
    """The KNMI-30/60 data restricted to a few test windows (to keep tests short)."""

    def __init__(self, data, keep: slice):
        self.data, self.keep = data, keep
        self.k_in, self.k_out, self.protocol = data.k_in, data.k_out, data.protocol
        self.follows_protocol, self.description = False, f"test windows {keep}"

    def split_windows(self, which):
        w, keep = self.data.split_windows(which), self.keep
        return replace(w, dbz=w.dbz[keep], event=w.event[keep], start=w.start[keep], times=w.times[keep])


# Test event 15 (windows 20-23) has the most rain at >= 20 dBZ; event 10 has almost none.
WET = slice(20, 24)


@pytest.fixture(scope="module")
def knmi():
    path = default_data_dir()
    if path is None or not (path / "radar" / KNMI_FILE).is_file():
        pytest.skip("real radar data absent: set NOWCAST_DATA_DIR or provide ../shared/data/radar")
    return RadarData(load_config(values=dict(protocol="knmi-30-60"), check_model=False))


def test_persistence_repeats_the_last_frame():
    inputs = np.random.default_rng(0).random((2, 6, 5, 7)).astype(np.float32)
    out = baselines.get_baseline("persistence")(inputs, 12)
    assert out.shape == (2, 12, 5, 7) and np.all(out == inputs[:, -1:])


def test_extrapolation_of_dry_and_tiny_fields():
    try:
        optional_import("pysteps.nowcasts", "radar")
    except NowcastError as e:
        pytest.skip(str(e))
    inputs = np.zeros((1, 6, 40, 50), np.float32)
    assert np.all(baselines.extrapolation(inputs, 3) == 0.0)
    inputs[..., 10:12, 10:12] = 0.5
    assert baselines.extrapolation(inputs, 3).max() == pytest.approx(0.5)


def test_unknown_baseline():
    with pytest.raises(NowcastError, match="unknown baseline 'climatology'"):
        baselines.get_baseline("climatology")


def test_persistence_skill_falls_with_lead_time(knmi):
    metrics, _, seconds = baselines.baseline_facts("persistence", SomeWindows(knmi, slice(16, 24)))
    csi = metrics["per_lead"]["csi_20"]
    assert metrics["n_sequences"] == 8 and len(csi) == 12 and seconds >= 0
    assert csi[0] > csi[-1] + 0.2              # 5 minutes ahead is far easier than 60
    assert metrics["per_lead"]["mae_dbz"][0] < metrics["per_lead"]["mae_dbz"][-1]


def test_extrapolation_beats_persistence(knmi):
    try:
        optional_import("pysteps.nowcasts", "radar")
    except NowcastError as e:
        pytest.skip(str(e))
    windows = knmi.split_windows("test").dbz[WET]
    inputs, target = units.dbz_to_unit(windows[:, :6]), windows[:, 6:]
    flow = baselines.extrapolation(inputs, 12)
    assert flow.shape == (4, 12, 191, 175) and np.isfinite(flow).all()
    assert 0.0 <= flow.min() and flow.max() <= 1.0
    scores = {}
    for name, forecast in [("extrapolation", flow), ("persistence", baselines.persistence(inputs, 12))]:
        accumulator = verification.RadarVerification(12)
        accumulator.add(units.unit_to_dbz(forecast), target, np.isfinite(target))
        scores[name] = accumulator.result()["mean"]
    assert scores["extrapolation"]["csi_20"] > scores["persistence"]["csi_20"]
    assert scores["extrapolation"]["fss_20_5"] > scores["persistence"]["fss_20_5"]


def test_baseline_names_have_one_home():
    """baselines.BASELINES is the registry; the protocols name which of them stand beside
    their models, and nothing else names one (scoring builds them through get_baseline)."""
    from nowcast import baselines, protocols
    assert set(baselines.BASELINES) == set(protocols.RADAR_BASELINES + protocols.IMAGE_BASELINES)
    with pytest.raises(NowcastError, match=r"unknown baseline 'mean_frame': expected one of "
                                           r"\['extrapolation', 'persistence', 'sprog', 'torch_extrapolation'\]"):
        baselines.get_baseline("mean_frame", among=protocols.RADAR_BASELINES)
    frames = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    train = type("Data", (), {"split": lambda self, name: type("S", (), {"frames": frames})()})()
    mean = baselines.get_baseline("mean_frame", train)(frames[:1, :2], 4)
    assert mean.shape == (1, 4, 2, 2) and np.allclose(mean[0, 0], frames.mean(axis=(0, 1)))


def test_sprog_of_dry_near_dry_and_rainy_fields():
    """S-PROG: dry windows dry; a window too small for its AR(2) fit (singular) falls back to
    the extrapolation of its last frame; rain is kept in the data's range and moves."""
    try:
        optional_import("pysteps.nowcasts", "radar")
    except NowcastError as e:
        pytest.skip(str(e))
    inputs = np.zeros((1, 6, 40, 50), np.float32)
    assert np.all(baselines.sprog(inputs, 3) == 0.0)
    inputs[..., 10:12, 10:12] = 0.5  # a few rain blocks: singular fit, the extrapolation
    out = baselines.sprog(inputs, 3)
    assert out.shape == (1, 3, 40, 50) and np.isfinite(out).all() and out.max() > 0
    rng = np.random.default_rng(0)
    field = np.clip(rng.normal(0.3, 0.15, (64, 64)), 0, 1).astype(np.float32)
    moving = np.stack([np.roll(field, t, axis=1) for t in range(6)])[None]
    out = baselines.sprog(moving, 4)
    assert out.shape == (1, 4, 64, 64) and 0 <= out.min() and out.max() <= 1
    # small scales fade: the forecast is smoother than the last frame it starts from
    assert np.abs(np.diff(out[0, -1], axis=1)).mean() < np.abs(np.diff(moving[0, -1], axis=1)).mean()
