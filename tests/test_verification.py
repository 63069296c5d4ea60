"""Verification scores against pysteps.verification on random fields, and their pooling."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from nowcast import protocols, verification
from nowcast.baselines import verify_radar
from nowcast.data.radar.windows import RadarWindows
from nowcast.errors import NowcastError


@pytest.fixture(scope="module")
def pysteps_verification():
    pytest.importorskip("pysteps", reason="pysteps is needed for the cross-check")
    with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints a banner on import
        from pysteps import verification as pv
    return pv


@pytest.fixture(scope="module")
def fields():
    """Forecast/target dBZ (B, k_out, H, W) on the 0.5 dBZ grid (values hit the thresholds
    exactly), a target no-data region, and NaN forecasts inside the scored area."""
    rng = np.random.default_rng(42)
    shape = (3, 2, 40, 50)
    target = np.round(2 * np.clip(rng.normal(12, 12, shape), 0, 60)) / 2
    forecast = np.round(2 * (target + rng.normal(0, 4, shape))) / 2
    valid = np.ones(shape, bool)
    valid[:, :, :8, :12] = False                  # no target data in a corner
    target[~valid] = np.nan
    forecast[rng.random(shape) < 0.03] = np.nan   # forecast holes in the scored area: 0 dBZ
    return forecast, target, valid


def test_categorical_scores_match_pysteps(fields, pysteps_verification):
    forecast, target, valid = fields
    scores = verification.RadarVerification(k_out=2)
    scores.add(forecast, target, valid)
    per_lead = scores.per_lead()
    for lead in range(2):
        f = np.nan_to_num(forecast[:, lead][valid[:, lead]], nan=0.0)
        o = target[:, lead][valid[:, lead]]
        for thr in protocols.THRESHOLDS_DBZ:
            # pysteps' event is value > thr: just below the threshold gives value >= thr
            ref = pysteps_verification.det_cat_fct(f, o, thr - 0.25, ["CSI", "POD", "FAR", "HSS"])
            for name in ("csi", "pod", "far", "hss"):
                assert per_lead[f"{name}_{thr:g}"][lead] == pytest.approx(ref[name.upper()], rel=1e-12)


def test_fss_matches_pysteps(fields, pysteps_verification):
    forecast, target, valid = fields
    scores = verification.RadarVerification(k_out=2)
    scores.add(forecast, target, valid)
    for scale in protocols.FSS_SCALES:
        for lead in range(2):
            fss = pysteps_verification.fss_init(20.0, scale)
            for f, o, v in zip(forecast[:, lead], target[:, lead], valid[:, lead]):
                pysteps_verification.fss_accum(fss, np.where(v, f, np.nan), np.where(v, o, np.nan))
            assert scores.per_lead()[f"fss_20_{scale}"][lead] == pytest.approx(
                pysteps_verification.fss_compute(fss), rel=1e-10)


def test_box_mean_is_scipys_zero_padded_uniform_filter():
    from scipy.ndimage import uniform_filter
    field = np.random.default_rng(0).random((2, 17, 23))
    for size in (1, 5, 11):
        ref = np.stack([uniform_filter(x, size=size, mode="constant", cval=0.0) for x in field])
        assert np.allclose(verification.box_mean(field, size), ref, atol=1e-12)


def test_mae_rmse_and_pooling_over_batches(fields):
    forecast, target, valid = fields
    whole = verification.RadarVerification(k_out=2)
    whole.add(forecast, target, valid)
    halves = verification.RadarVerification(k_out=2)
    halves.add(forecast[:1], target[:1], valid[:1])
    halves.add(forecast[1:], target[1:], valid[1:])
    for name, values in whole.per_lead().items():     # sums pooled before ratios
        assert values == pytest.approx(halves.per_lead()[name], rel=1e-12), name
    error = (np.nan_to_num(forecast, nan=0.0) - target)[:, 0][valid[:, 0]]
    result = whole.result()
    assert result["per_lead"]["mae_dbz"][0] == pytest.approx(np.abs(error).mean())
    assert result["per_lead"]["rmse_dbz"][0] == pytest.approx(np.sqrt((error ** 2).mean()))
    assert result["mean"]["csi_20"] == pytest.approx(np.mean(result["per_lead"]["csi_20"]))
    names = {f"{s}_{t}" for s in ("csi", "pod", "far", "hss") for t in (15, 20, 25, 30)}
    assert set(result["mean"]) == names | {"fss_20_5", "fss_20_11", "mae_dbz", "rmse_dbz"}


def test_undefined_scores_are_none():
    dry = np.zeros((1, 2, 10, 10))
    scores = verification.RadarVerification(k_out=2)
    scores.add(dry, dry, np.ones_like(dry, bool))
    result = scores.result()
    assert result["per_lead"]["csi_20"] == [None, None] and result["mean"]["csi_20"] is None
    assert result["mean"]["mae_dbz"] == 0.0
    with pytest.raises(NowcastError, match="expected"):
        scores.add(dry[:, :1], dry[:, :1], np.ones((1, 1, 10, 10), bool))


class TinyRadar:
    """A stand-in RadarData: 4 windows of 2 + 3 frames whose weather does not change."""
    k_in, k_out, protocol, follows_protocol, description = 2, 3, "none", False, "tiny"

    def split_windows(self, which):
        rng = np.random.default_rng(1)
        still = np.repeat(np.round(rng.uniform(0, 40, (4, 1, 12, 14)) * 2) / 2, 5, axis=1)
        still[:, :, :2] = np.nan
        return RadarWindows(still.astype(np.float32), np.arange(4), np.zeros(4, int), None, None)


def test_verify_radar_scores_a_perfect_persistence():
    data = TinyRadar()
    metrics = verification.radar_facts(data, verify_radar(
        lambda x: np.repeat(x[:, -1:], 3, axis=1), data, batch_size=3))
    assert metrics["n_sequences"] == 4 and metrics["headline"] == ["csi_20", "fss_20_5"]
    assert metrics["mean"]["csi_20"] == 1.0 and metrics["mean"]["far_30"] == 0.0
    assert metrics["mean"]["fss_20_5"] == 1.0 and metrics["mean"]["mae_dbz"] == 0.0
    assert len(metrics["per_lead"]["csi_20"]) == 3
    with pytest.raises(NowcastError, match="shape"):
        verify_radar(lambda x: x, TinyRadar())
