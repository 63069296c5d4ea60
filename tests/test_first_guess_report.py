"""The report's radar section over the committed reference runs: a baseline scored in a folder
of its own (S-PROG, added after the models ran) is paired with every model tested on the same
windows, and each residual model's verdict against its first guess is stated."""

from __future__ import annotations

from pathlib import Path

import pytest

from nowcast.publish import intervals, uncertainty
from nowcast.results import find_runs

REFERENCE = Path(__file__).resolve().parents[1] / "reference_results"


@pytest.fixture(scope="module")
def knmi_runs():
    runs = [r for r in find_runs([REFERENCE]) if r.group == "knmi-30-60"]
    if not any(r.job_id == "knmi-30-60-sprog" for r in runs):
        pytest.skip("reference_results/knmi-30-60-sprog absent")
    return runs


def test_a_baseline_of_its_own_folder_pairs_with_models_that_predate_it(knmi_runs):
    scored = uncertainty.baseline_items(knmi_runs)
    assert ("knmi-30-60: " + [r for r in knmi_runs if r.job_id == "knmi-30-60-sprog"][0].data.split(";")[0],
            "sprog") in scored
    lk = next(r for r in knmi_runs if r.job_id == "knmi-30-60-cpu-p4-lk-mse")
    alone = uncertainty.uncertainty(lk)
    paired = uncertainty.uncertainty(lk, scored)
    assert "sprog" not in alone.paired and "sprog" in paired.paired
    # its own scores.npz's baselines are kept as they are (never replaced by the folder's)
    assert paired.paired["torch_extrapolation"]["csi_20"].difference.estimate == \
        alone.paired["torch_extrapolation"]["csi_20"].difference.estimate
    # the difference is the model's mean minus S-PROG's, on the same 40 windows
    sprog = next(r for r in knmi_runs if r.job_id == "knmi-30-60-sprog")
    expect = lk.metrics["mean"]["csi_20"] - sprog.metrics["mean"]["csi_20"]
    assert paired.paired["sprog"]["csi_20"].difference.estimate == pytest.approx(expect, abs=1e-9)


def test_each_residual_model_is_told_whether_training_added_skill(knmi_runs):
    scored = uncertainty.baseline_items(knmi_runs)
    boots = [(r, u) for r in knmi_runs if (u := uncertainty.uncertainty(r, scored)) is not None]
    text = intervals.first_guess_verdicts("knmi-30-60", knmi_runs, boots)
    lines = {line.split(",")[0][2:].replace("\\", ""): line for line in text.splitlines()
             if line.startswith("- ")}
    # -p4-lk-mse is worse than torch_extrapolation on CSI-20 and FSS-20 (the committed pairs)
    assert "**took skill** from its first guess" in lines["knmi-30-60-cpu-p4-lk-mse"]
    assert "correcting torch\\_extrapolation" in lines["knmi-30-60-cpu-p4-lk-mse"]
    # -p4-res (persistence): CSI and FSS not distinguishable, MAE not worse
    assert "no distinguishable skill" in lines["knmi-30-60-cpu-p4-res"]
    assert "knmi-30-60-cpu-p4" not in lines  # not residual: no sentence
