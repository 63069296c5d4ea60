"""Findings (issue 55 item 1) over the committed reference runs: experiments that differ in one
parameter get a sentence with the paired evidence; more fields are named as confounded; a
field an older params.yaml lacks counts as its default; arms of several seeds are averaged."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.publish import findings, uncertainty


@pytest.fixture(scope="module")
def runs(reference_runs):  # conftest: the committed folders
    return reference_runs


def by_job(runs, job):
    return next(r for r in runs if r.job_id == job)


def pair_of(pairs, a, b):
    return next(p for p in pairs if {p.a.runs[0].job_id, p.b.runs[0].job_id} == {a, b})


def test_a_field_an_older_params_file_lacks_counts_as_its_default(runs):
    old, new = by_job(runs, "mmnist-t-cpu-p4"), by_job(runs, "mmnist-t-cpu-p4-seed1")
    assert "first_guess" not in old.params and new.params.get("first_guess") is None
    groups = uncertainty.seed_groups([old, new])
    assert len(groups) == 1 and groups[0].n == 2


def test_one_field_apart_is_a_finding_with_the_paired_difference(runs):
    pairs = findings.pairs(runs)
    p = pair_of(pairs, "knmi-abl-free-csi", "knmi-abl-gated-csi")
    assert list(p.fields) == ["correction"] and p.evidence is not None
    a, b = p.a.runs[0], p.b.runs[0]
    diff = a.metrics["mean"]["csi_20"] - b.metrics["mean"]["csi_20"]
    sign = 1 if a.job_id == "knmi-abl-free-csi" else -1
    assert p.evidence.paired["csi_20"].difference.estimate == pytest.approx(diff, abs=1e-9)
    assert sign * diff < 0 and p.evidence.paired["csi_20"].verdict == ("worse" if sign > 0 else "better")
    text = findings.findings_section("knmi-30-60", runs)
    assert "**correction** free rather than gated" in text.replace("\\", "")
    assert "400 steps" in text and "one run per arm" in text


def test_a_field_set_only_because_another_differs_is_not_a_second_difference(runs):
    p = pair_of(findings.pairs(runs), "knmi-abl-gated-csi", "knmi-abl-gated-mse")
    assert list(p.fields) == ["loss"] and list(p.dependent) == ["csi_weight"]
    sentence = findings.sentence(p, ["csi_20"]).replace("\\", "")
    assert "(with csi_weight 0.5)" in sentence


def test_experiments_apart_in_several_fields_are_named_not_compared(runs):
    p = pair_of(findings.pairs(runs), "knmi-30-60-cpu-p4", "knmi-30-60-cpu-p4-bal")
    assert set(p.fields) == {"loss", "time_budget_min"} and p.evidence is None
    assert p not in findings.findings(runs)
    text = findings.confounded_table("knmi-30-60", runs).replace("\\", "")
    assert "| knmi-30-60-cpu-p4 | knmi-30-60-cpu-p4-bal | loss, time_budget_min |" in text
    assert "@sec-detail-knmi-30-60" in findings.findings_section("knmi-30-60", runs)


def test_arms_of_several_seeds_average_their_items(runs):
    a, b = by_job(runs, "mmnist-t-cpu-p4"), by_job(runs, "mmnist-t-cpu-p4-seed1")
    mean = uncertainty.arm_scores([a, b])
    sa, sb = uncertainty._test_scores(a), uncertainty._test_scores(b)
    key = next(k for k in sa if np.ndim(sa[k]) == 2)
    np.testing.assert_allclose(mean[key], (sa[key] + sb[key]) / 2)


def test_the_conclusion_says_whether_training_added_skill(runs):
    knmi = [r for r in runs if r.group == "knmi-30-60" and r.status == "completed"]
    scored = uncertainty.baseline_items(knmi)
    boots = [(r, u) for r in knmi if (u := uncertainty.uncertainty(r, scored)) is not None]
    lines = findings.conclusion_lines("knmi-30-60", knmi, boots)
    residual = [r for r, _ in boots if r.params.get("residual")]
    added = [r for r, u in boots if r.params.get("residual") and findings._added(u, r, ["csi_20", "fss_20_5"])]
    said = next(line for line in lines if "residual models added skill" in line)
    assert said.startswith(f"{len(added)} of {len(residual)} residual models")
    assert any("correction free rather than gated" in line.replace("\\", "") for line in lines)


def test_one_row_per_baseline_per_protocol_and_data(runs):
    """MMNIST-T listed persistence twice and mean_frame three times (scored beside each model
    by the code of its day): a baseline folder of its own is the one row."""
    from nowcast.publish.tables import results_table
    mmnist = [r for r in runs if r.group == "mmnist-t" and r.status == "completed"]
    if not any(r.job_id == "mmnist-t-persistence" for r in mmnist):
        pytest.skip("reference_results/mmnist-t-persistence absent")
    text = results_table("mmnist-t", mmnist, "tbl-x").replace("\\", "")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert sum("persistence" in row for row in rows) == 1
    assert sum("mean_frame" in row for row in rows) == 1


def test_image_baseline_folders_score_as_the_models_do(runs):
    """`nowcast evaluate --baseline persistence --protocol mmnist-t`: the committed folders
    hold exactly the scores today's code gives a model's baselines (the SimVP run is the
    latest), on the same 2,000 test sequences."""
    simvp = by_job(runs, "mmnist-t-cpu-simvp").metrics["baselines"]
    for job, name in (("mmnist-t-persistence", "persistence"), ("mmnist-t-mean-frame", "mean_frame")):
        own = by_job(runs, job)
        assert own.metrics["architecture"] == name and own.metrics["n_sequences"] == 2000
        assert own.metrics["mean"] == pytest.approx(simvp[name]["mean"], rel=1e-9)


def test_the_splits_table_lists_trained_models_and_says_why_a_score_is_missing(runs):
    """Issue 55: a radar table's validation columns were all '–' with baseline rows of '–'
    only: baselines train on nothing (no row); an undefined score is explained."""
    from nowcast.publish.intervals import splits_table
    knmi = [r for r in runs if r.group == "knmi-30-60" and r.status == "completed"]
    text = splits_table("knmi-30-60", knmi, "tbl-x").replace("\\", "")
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert rows and not any("persistence" in r or "sprog" in r for r in rows)
    assert "– where a score is undefined" in text


def test_two_runs_of_one_name_are_told_apart_by_their_jobs(runs):
    """mmnist-t-cpu-simvp ran at 40 and at 100 minutes under one name: the finding said
    'mmnist-t-cpu-simvp against mmnist-t-cpu-simvp'; it names the jobs, as the tables do."""
    p = pair_of(findings.pairs(runs), "mmnist-t-cpu-simvp", "mmnist-t-cpu-simvp-b100")
    assert list(p.fields) == ["time_budget_min"]
    sentence = findings.sentence(p, ["mse_pixel255"]).replace("\\", "")
    assert "mmnist-t-cpu-simvp (mmnist-t-cpu-simvp-b100) (1 run" in sentence
    assert "mmnist-t-cpu-simvp (1 run" in sentence


def test_the_main_text_keeps_what_an_interval_decided_and_counts_the_rest(runs):
    """With 40 runs the findings took the report's main text past 12 pages, most of them
    'not distinguishable': those move to the appendix, counted where they were."""
    text = findings.findings_section("knmi-30-60", runs).replace("\\", "")
    rest = findings.undecided_findings("knmi-30-60", runs).replace("\\", "")
    decided = "**correction** free rather than gated (knmi-abl-free-csi"
    undecided = "**time_budget_min** 48.0 rather than 50.0"
    assert decided in text and decided not in rest
    assert undecided in rest and undecided not in text
    single = [p for p in findings.findings(runs) if p.a.runs[0].group == "knmi-30-60"]
    moved = rest.count("\n- ")
    assert moved > 0 and f"{moved} more of them are not distinguishable" in text
    assert text.count("\n- ") + moved == len(single)
