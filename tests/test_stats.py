"""Statistics of the report (nowcast/stats.py, publish/uncertainty.py, publish/intervals.py):
intervals on constructed data whose right answer is known, then a real three-seed group."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from nowcast import stats
from nowcast.publish.fragments import write_report_fragments
from nowcast.publish.intervals import equal_budget_table, splits_table
from nowcast.publish.uncertainty import (blocks_of, equal_budget_pairs, fmt_pm, head_to_head,
                                         seed_groups, uncertainty)
from nowcast.results import Run, find_runs

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Student t over seeds
# ---------------------------------------------------------------------------------------------

def test_t_quantile_matches_tables():
    # two-sided 95 %: t_{0.975, dof} from statistical tables
    for dof, value in [(1, 12.706204736), (2, 4.302652730), (4, 2.776445105), (9, 2.262157163),
                       (30, 2.042272456)]:
        assert stats.t_quantile(0.975, dof) == pytest.approx(value, abs=1e-8)


def test_t_interval_of_known_values():
    i = stats.t_interval([1.0, 2.0, 3.0])    # mean 2, s = 1, n = 3
    half = 4.302652729749464 / math.sqrt(3)  # t_{0.975,2} s / sqrt(n) = 2.4841377...
    assert i.estimate == 2.0 and i.n == 3
    assert i.low == pytest.approx(2 - half, abs=1e-12) and i.high == pytest.approx(2 + half, abs=1e-12)
    assert stats.t_interval([5.0]).low is None  # one seed: no interval
    assert fmt_pm(i) == "2.00 ± 2.48"


# ---------------------------------------------------------------------------------------------
# bootstrap and paired comparisons
# ---------------------------------------------------------------------------------------------

def test_bootstrap_of_a_constant_has_zero_width():
    w = stats.resample_weights(50)
    per_lead = stats.mean_samples(np.full((50, 3), 0.25), w)
    i = stats.bootstrap_interval(stats.lead_mean(per_lead))
    assert (i.estimate, i.low, i.high, i.n) == (0.25, 0.25, 0.25, stats.RESAMPLES)


def test_resampling_is_deterministic_and_draws_whole_events():
    a, b = stats.resample_weights(40, np.arange(40) // 4), stats.resample_weights(40, np.arange(40) // 4)
    assert np.array_equal(a, b) and a.shape == (stats.RESAMPLES + 1, 40)
    assert (a[0] == 1).all() and (a.sum(1) == 40).all()
    events = a[1:].reshape(stats.RESAMPLES, 10, 4)
    assert (events == events[:, :, :1]).all(), "the windows of one event share their count"


def test_paired_verdicts():
    rng = np.random.default_rng(1)
    w = stats.resample_weights(200)
    base = rng.normal(100, 10, (200, 5))
    same = stats.lead_mean(stats.mean_samples(base, w))
    c = stats.compare(same, same, "mse_frame")
    assert c.verdict == "not distinguishable" and c.difference.low == c.difference.high == 0
    better = stats.lead_mean(stats.mean_samples(base - 1.0, w))  # lower MSE on every sequence
    assert stats.compare(better, same, "mse_frame").verdict == "better"
    assert stats.compare(better, same, "ssim").verdict == "worse"  # lower SSIM is worse
    assert stats.compare(same, better, "mse_frame").verdict == "worse"


def radar_items(windows: list[tuple[int, int, int]]) -> dict[str, np.ndarray]:
    """Per-window scores.npz arrays with (hits, misses, false alarms) at every threshold/lead."""
    n = len(windows)
    contingency = np.zeros((n, 4, 4, 2), np.int64)
    for i, (h, m, f) in enumerate(windows):
        contingency[i, :, 0], contingency[i, :, 1], contingency[i, :, 2] = h, m, f
        contingency[i, :, 3] = 100
    return {"contingency": contingency, "fss_sums": np.ones((n, 2, 3, 2)),
            "errors": np.ones((n, 3, 2)), "thresholds_dbz": np.array([15.0, 20.0, 25.0, 30.0]),
            "fss_scales": np.array([5, 11])}


def test_pooled_csi_from_summed_counts_not_a_mean_of_ratios():
    items = radar_items([(1, 0, 0), (1, 3, 0)])  # CSI 1 and 0.25: pooled 2 / 5
    scores = stats.radar_samples(items, np.ones((1, 2)))
    assert scores["csi_20"][0].tolist() == [0.4, 0.4]   # not (1 + 0.25) / 2 = 0.625
    assert scores["pod_20"][0].tolist() == [0.4, 0.4]
    # a resample that draws the second window twice: (2 hits, 6 misses) -> 0.25
    assert stats.radar_samples(items, np.array([[0.0, 2.0]]))["csi_20"][0].tolist() == [0.25, 0.25]


def test_radar_windows_are_resampled_by_event(tmp_path):
    items = radar_items([(1, 1, 1)] * 40)
    scheme, blocks = blocks_of("knmi-30-60", items, 40)
    assert scheme == "events" and blocks.tolist() == [i // 4 for i in range(40)]
    assert blocks_of("none", items, 40) == ("windows", None)  # another file: event ids not saved
    items["event"] = np.repeat(np.arange(8), 5)
    assert blocks_of("none", items, 40)[1].tolist() == items["event"].tolist()


def test_radar_run_resampled_by_event_and_paired_with_its_baselines(tmp_path):
    rng = np.random.default_rng(0)
    hits = rng.integers(5, 50, 40)
    model = radar_items([(h + 5, 20, 10) for h in hits])         # 5 more hits in every window
    same = radar_items([(h, 25, 10) for h in hits])
    items = dict(model, **{f"persistence__{k}": v for k, v in model.items()},
                 **{f"extrapolation__{k}": v for k, v in same.items()},
                 test_ood__ssim=np.ones((7, 12)))  # another split's items: not resampled here
    run_dir = tmp_path / "radar"
    run_dir.mkdir()
    np.savez(run_dir / "scores.npz", **items)
    run = Run(path=run_dir, job_id="radar", name="radar", status="completed",
              metrics={"protocol": "knmi-30-60", "follows_protocol": True, "mean": {}})
    u = uncertainty(run)
    assert (u.scheme, u.units) == ("events", 10) and u.description == "10 test events (blocks of windows)"
    pooled = (hits.sum() + 200) / (hits.sum() + 200 + 800 + 400)  # H / (H + M + F), summed
    assert u.means["csi_20"].estimate == pytest.approx(pooled, abs=1e-12)
    assert u.means["csi_20"].low < pooled < u.means["csi_20"].high
    assert u.paired["persistence"]["csi_20"].verdict == "not distinguishable"
    assert u.paired["extrapolation"]["csi_20"].verdict == "better"
    assert u.paired["extrapolation"]["far_20"].verdict == "better"  # fewer false alarms per hit


def _image_run(tmp_path: Path, job: str, architecture: str, mse: np.ndarray, budget=50,
               threads=1) -> Run:
    """A completed MMNIST-T run whose scores.npz holds per-sequence MSE (0-255; n sequences x 7 leads)."""
    run_dir = tmp_path / job
    run_dir.mkdir()
    np.savez(run_dir / "scores.npz", mse_pixel255=mse)
    return Run(path=run_dir, job_id=job, name=job, status="completed",
               params={"architecture": architecture, "time_budget_min": budget},
               metrics={"protocol": "mmnist-t", "follows_protocol": True, "mean": {},
                        "data": "MMNIST-T test"},
               env={"device": "cpu (x86_64)", "cpu_threads": threads})


def test_architectures_at_equal_minutes_are_compared_on_the_same_sequences(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(20, 60, size=(50, 7))
    convlstm = _image_run(tmp_path, "c", "convlstm_ed", base)
    predrnn = _image_run(tmp_path, "p", "predrnn", base - 2.0)       # 2 lower on every sequence
    same_arch = _image_run(tmp_path, "c2", "convlstm_ed", base + 1.0)
    other_budget = _image_run(tmp_path, "p30", "predrnn", base - 5.0, budget=30)
    # the same 50 minutes on both cores: not the same budget as one thread's
    other_machine = _image_run(tmp_path, "s2", "simvp", base - 9.0, threads=2)
    runs = [convlstm, predrnn, same_arch, other_budget, other_machine]
    # c and c2 repeat one experiment (the same params): one arm, their scores averaged item by
    # item; a sweep of 100 seeds a side is one pair, not 10,000
    pairs = equal_budget_pairs(runs)
    assert [([r.job_id for r in a.runs], [r.job_id for r in b.runs]) for a, b in pairs] == \
        [(["c", "c2"], ["p"])]
    h = head_to_head(convlstm, predrnn)
    assert h.paired["mse_pixel255"].difference.estimate == pytest.approx(2.0, abs=1e-12)
    # a constant difference on every resampled sequence: an interval of zero width at +2
    assert (h.paired["mse_pixel255"].difference.low, h.paired["mse_pixel255"].difference.high) == \
        pytest.approx((2.0, 2.0), abs=1e-9)
    assert h.paired["mse_pixel255"].verdict == "worse" and h.leads["mse_pixel255"] == ["worse"] * 7
    text = equal_budget_table("mmnist-t", runs, "tbl-budget-mmnist-t")
    assert "{#tbl-budget-mmnist-t}" in text and "0/7 better, 7 worse" in text
    assert text.count("0/7 better, 7 worse") == 1 and "7/7 better" not in text  # one pair
    assert "+2.50 \\[2.50, 2.50\\]" in text  # the arm of c and c2 (base + 0.5) minus p (base - 2)
    # different test items (another count): no comparison
    short = _image_run(tmp_path, "s", "predrnn", base[:40])
    assert head_to_head(convlstm, short) is None


def test_damaged_scores_give_no_interval(tmp_path, capsys):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "scores.npz").write_bytes(b"not a zip")
    run = Run(path=run_dir, job_id="r", name="r", status="completed", metrics={"mean": {}})
    assert uncertainty(run) is None
    assert "no intervals" in capsys.readouterr().err


def test_splits_side_by_side_with_out_of_domain(tmp_path):
    def run(seed, ood):
        splits = {s: {"mse_pixel255": v + seed, "mae_pixel255": 1.0} for s, v in
                  (("train", 600.0), ("val", 650.0), ("test", 660.0))}
        if ood:
            splits["test_ood"] = {"mse_pixel255": 900.0 + seed, "mae_pixel255": 2.0}
        return Run(path=tmp_path, job_id=f"j{seed}", name=f"t-seed={seed}", status="completed",
                   params={"seed": seed, "hidden_sizes": [8], "test_num_digits": 3},
                   metrics={"protocol": "mmnist-t", "follows_protocol": True, "mean": {},
                            "splits": splits, "ood": {"num_digits": 3}})
    text = splits_table("mmnist-t", [run(0, True), run(1, True), run(2, True)], "tbl-s")
    assert "Out of domain (3 digits): MSE (0\\-255)" in text
    assert "Validation: MSE (0\\-255)" in text and "Train:" in text and "Test:" in text
    assert "n = 3 seeds (0, 1, 2)" in text
    assert fmt_pm(stats.t_interval([900.0, 901.0, 902.0])) in text


# ---------------------------------------------------------------------------------------------
# a real three-seed group in the report
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory) -> Path:
    """params/grids/seeds.yaml (params/smoke.yaml with seeds 0, 1, 2), trained for real."""
    from nowcast.config import load_config
    from nowcast.experiment import run_experiment
    from nowcast.launch.params import collect
    results = tmp_path_factory.mktemp("seeds") / "results"
    for s in collect([REPO / "params" / "grids" / "seeds.yaml"], ["device=cpu"], str(results)):
        run_experiment(load_config(values=dict(s.values, job_id=f"seed{s.cfg.seed}")),
                       progress=False)
    return results


def test_three_seed_group_in_the_report(three_seeds, tmp_path):
    runs = find_runs([three_seeds])
    groups = [g for g in seed_groups(runs) if g.n > 1]
    assert len(groups) == 1 and sorted(groups[0].seeds) == [0, 1, 2]
    gen = tmp_path / "_generated"
    write_report_fragments(runs, gen)
    text = (gen / "results.md").read_text()
    assert "n = 3 seeds (0, 1, 2)" in text
    metrics = [json.loads((three_seeds / f"seed{i}" / "metrics.json").read_text()) for i in range(3)]
    for key in ("mse_frame", "ssim"):
        expected = fmt_pm(stats.t_interval([m["mean"][key] for m in metrics]))
        assert " ± " in expected and expected in text, (key, expected)
    # the methods paragraph in the main text; bootstrap intervals, the paired verdicts and the
    # splits side by side in the appendix (results_detail.md)
    assert "How the intervals were computed" in text
    detail = (gen / "results_detail.md").read_text()
    assert "1,000 resamples" in detail
    assert "tbl-ci-none" in detail and "16 test sequences" in detail
    assert "tbl-paired-none" in detail and "persistence" in detail
    assert any(v in detail for v in ("**better**", "**worse**", "not distinguishable"))
    assert "tbl-splits-none" in detail and "Validation:" in detail
    assert (gen / "fig" / "per_lead-none.png").is_file()
    # deterministic: a second build writes the same text
    write_report_fragments(runs, tmp_path / "again")
    assert (tmp_path / "again" / "results.md").read_text() == text
