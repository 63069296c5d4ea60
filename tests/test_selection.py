"""Model selection (selection.py): the first guess as a candidate, the skill rule, and the
gated correction (models/base.py) that starts at the first guess."""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest
import torch

from nowcast import baselines, selection, training
from nowcast.config import default_data_dir, load_config
from nowcast.data import get_data
from nowcast.data.radar import RadarData
from nowcast.models import get_model
from nowcast.protocols import KNMI_FILE
from nowcast.runtime import Runtime, cpu_has_bf16_units
from nowcast.scoring import model_forecaster
from nowcast.training import train

from conftest import TINY_FILE

RESIDUAL = dict(protocol="knmi-30-60", architecture="convlstm_ed", stride=1, hidden_sizes=[8],
                filter_size=3, patch_size=4, residual=True, first_guess="extrapolation",
                output="linear", norm="group", norm_groups=2, peephole="per_channel", loss="mse")


class WetWindows:
    """Test event 15 (the wettest, windows 20-23) of KNMI-30/60, to keep the test short."""

    def __init__(self, data):
        self.data, self.k_in, self.k_out = data, data.k_in, data.k_out

    def split_windows(self, which):
        w = self.data.split_windows(which)
        keep = slice(20, 24)
        return replace(w, dbz=w.dbz[keep], event=w.event[keep], start=w.start[keep], times=None)


@pytest.fixture(scope="module")
def wet():
    path = default_data_dir()
    if path is None or not (path / "radar" / KNMI_FILE).is_file():
        pytest.skip("real radar data absent: set NOWCAST_DATA_DIR or provide ../shared/data/radar")
    return WetWindows(RadarData(load_config(values=dict(protocol="knmi-30-60"), check_model=False)))


PRECISIONS = ["fp32"] + (["bf16"] if cpu_has_bf16_units() else [])


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("correction", ["free", "gated"])
def test_untrained_residual_model_scores_exactly_as_its_first_guess(wet, correction, precision):
    """Step 0 of a residual model is torch_extrapolation, count for count and sum for sum on
    real rain (the readout adds in float32, so bf16 autocast does not round the guess)."""
    torch.manual_seed(0)
    cfg = load_config(values=dict(RESIDUAL, correction=correction))
    model = get_model(cfg, frame_shape=(192, 176)).eval()
    if correction == "gated":  # the head is live (random), the gate closed
        assert model.head.weight.abs().sum() > 0 and torch.all(model.lead_gate == 0)
    runtime = Runtime(torch.device("cpu"), precision, False, True)
    ours = baselines.verify_radar(model_forecaster(cfg, model, runtime), wet).per_window()
    guess = baselines.verify_radar(lambda x: baselines.torch_extrapolation(x, wet.k_out), wet).per_window()
    assert guess["contingency"][:, 1, 0].sum() > 1000  # hits at 20 dBZ: rain is scored
    for key in ("contingency", "fss_sums", "errors"):
        np.testing.assert_array_equal(ours[key], guess[key])


def test_gate_opens_per_lead_and_leads_past_k_out_use_the_last():
    cfg = load_config(values=dict(RESIDUAL, correction="gated", k_out=3, protocol="none",
                                  dataset="radar", data_file="x.npz"), check_model=False)
    torch.manual_seed(0)
    model = get_model(cfg, frame_shape=(16, 16)).eval()
    inputs = torch.rand(1, cfg.k_in, 16, 16)
    guess = model.guess(inputs, 5)
    with torch.no_grad():
        assert torch.equal(model(inputs, 5), guess)  # closed gates: the guess, at every lead
        model.lead_gate.copy_(torch.tensor([0.0, 1.0, 0.0]))
        out = model(inputs, 5)
    assert torch.equal(out[:, 0], guess[:, 0]) and torch.equal(out[:, 2], guess[:, 2])
    assert not torch.equal(out[:, 1], guess[:, 1])  # only lead 2's gate is open
    assert torch.equal(out[:, 3], guess[:, 3]) and torch.equal(out[:, 4], guess[:, 4])


def test_skill_columns_follow_the_rule():
    per_lead = {"csi_20": [0.5, None], "fss_20_5": [0.7, 0.3], "mae_dbz": [1.0, 3.0]}
    row = selection.skill_columns(per_lead)
    assert row["val_csi_20"] == pytest.approx(0.25)  # undefined counts as 0
    assert row["val_fss_20_5"] == pytest.approx(0.5)
    assert row["val_skill"] == pytest.approx(0.375)
    assert row["val_mae_dbz"] == pytest.approx(2.0)


def test_best_row_by_skill_then_mae_then_earliest():
    rows = [dict(stage=1, step=s, val_loss=l, val_skill=k, val_mae_dbz=m)
            for s, l, k, m in [(0, 5.0, 0.40, 2.0), (10, 1.0, 0.45, 3.0), (20, 2.0, 0.45, 2.5),
                               (30, 0.5, 0.45, 2.5), (40, 0.1, math.nan, 1.0)]]
    assert selection.selected_row(rows, "skill")["step"] == 20  # tie on skill: lower MAE, earlier
    assert selection.selected_row(rows, "loss")["step"] == 40
    assert [r["step"] for r in selection.since_best(rows, "skill")] == [30, 40]
    with pytest.raises(ValueError, match="loss, skill"):
        selection.key(rows[0], "other")


def _counts(hits_by_window):
    """Per-window counts (1 lead, thresholds 15/20/25/30) with `hits` of 10 observed blocks
    at 20 dBZ, no false alarm, and FSS sums that follow the hits."""
    n = len(hits_by_window)
    contingency = np.zeros((n, 4, 4, 1), np.int64)
    fss = np.zeros((n, 2, 3, 1))
    for w, hits in enumerate(hits_by_window):
        contingency[w, :, :, 0] = [hits, 10 - hits, 0, 90]
        fss[w, :, :, 0] = [(10 - hits) ** 2, 100, 100]  # sum (f - o)^2, sum f^2, sum o^2
    return {"contingency": contingency, "fss_sums": fss, "errors": np.ones((n, 3, 1)),
            "thresholds_dbz": np.array([15.0, 20.0, 25.0, 30.0]), "fss_scales": np.array([5, 9])}


def test_the_skill_gain_interval_resamples_whole_events():
    """stats.skill_gain: better in every one of four events -> an interval above 0; as much
    better in one event only -> an interval that reaches 0 (the margin then keeps the guess);
    the same counts -> exactly 0."""
    from nowcast.stats import skill_gain
    events = [0, 0, 1, 1, 2, 2, 3, 3]
    guess = _counts([5] * 8)
    everywhere = skill_gain(_counts([6] * 8), guess, events)
    assert everywhere.estimate > 0 and everywhere.low > 0
    once = skill_gain(_counts([9, 9, 5, 5, 5, 5, 5, 5]), guess, events)
    assert once.estimate > 0 and once.low <= 0
    same = skill_gain(guess, guess, events)
    assert same.estimate == same.low == same.high == 0


def test_a_trained_step_must_clear_the_margin_over_the_first_guess():
    rows = [dict(stage=1, step=0, val_loss=1.0, val_skill=0.40, val_mae_dbz=2.0, val_gain_low=0.0),
            dict(stage=1, step=10, val_loss=1.0, val_skill=0.50, val_mae_dbz=2.0, val_gain_low=-0.01),
            dict(stage=1, step=20, val_loss=1.0, val_skill=0.45, val_mae_dbz=2.0, val_gain_low=0.0)]
    assert selection.selected_row(rows, "skill")["step"] == 0  # the best skill is noise
    rows.append(dict(stage=1, step=30, val_loss=1.0, val_skill=0.44, val_mae_dbz=2.0, val_gain_low=0.01))
    assert selection.selected_row(rows, "skill")["step"] == 30
    assert selection.selected_row([dict(r, val_gain_low=math.nan) for r in rows[1:]], "skill") \
        is not None  # a run without a step 0 still selects (its first row)


def _radar_file(path, size=64):
    rng = np.random.default_rng(0)  # rain that moves one block per frame
    base = rng.integers(0, 180, (4, 1, size, size)).astype(np.uint8)
    frames = np.concatenate([np.roll(base, 4 * t, axis=-1) for t in range(10)], axis=1)
    np.savez(path, frames=frames)
    return path


def _tiny_gated_radar(tmp_path):
    """A gated residual model on a tiny radar file, selected by skill: 3 epochs of 2 steps."""
    values = dict({k: v for k, v in TINY_FILE.items() if k != "max_pool"},
                  **{k: v for k, v in RESIDUAL.items() if k != "protocol"},
                  dataset="radar", data_file=str(_radar_file(tmp_path / "radar.npz")), k_in=3,
                  k_out=3, batch_size=4, train_sequences=8, num_epochs=3, initial_lr=0.01,
                  correction="gated", select_by="skill", results_dir=str(tmp_path / "r"))
    return load_config(values=values)


def test_first_guess_is_a_candidate_and_kept_when_training_only_hurts(tmp_path, monkeypatch):
    """A residual model is validated before its first step; when no later validation is as
    skilful, the step-0 weights are the ones kept (and scored)."""
    cfg = _tiny_gated_radar(tmp_path)
    data = get_data(cfg)
    real = training.Trainer.validation_skill
    seen = []

    def worse_after_step_0(self):  # the real scores, then training made to look worse
        row = real(self)
        seen.append(row)
        return dict(row, val_skill=row["val_skill"] - 0.1 * (len(seen) > 1))

    monkeypatch.setattr(training.Trainer, "validation_skill", worse_after_step_0)
    torch.manual_seed(0)
    model = get_model(cfg, frame_shape=data.frame_shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runtime = Runtime(torch.device("cpu"), "fp32", False, True)
    result = train(cfg, data, model, runtime, tmp_path / "run", progress=False)
    history = result.history
    assert [row["step"] for row in history] == [0, 2, 4, 6] and math.isnan(history[0]["train_loss"])
    assert history[0]["val_skill"] == seen[0]["val_skill"] > 0  # step 0 scored for real
    assert history[0]["val_gain_low"] == 0.0  # its forecasts are the first guess's, to the bit
    assert all(math.isfinite(row["val_gain_low"]) for row in history)
    assert selection.selected_row(history, "skill") is history[0]
    assert all(torch.equal(result.best_state[k], before[k]) for k in before)
    assert not torch.equal(model.lead_gate, before["lead_gate"])  # the gate did open in training


def test_selection_follows_the_rule_in_training(tmp_path, monkeypatch):
    """The weights kept are those of the row the rule picks, whichever step that is."""
    cfg = _tiny_gated_radar(tmp_path)
    skills = iter([0.2, 0.1, 0.5, 0.3])  # step 4 best
    kept = {}

    def scripted(self):
        step = len(self.result.history) * 2
        kept[step] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return dict(val_skill=next(skills), val_csi_20=0.0, val_fss_20_5=0.0, val_mae_dbz=1.0)

    monkeypatch.setattr(training.Trainer, "validation_skill", scripted)
    data = get_data(cfg)
    model = get_model(cfg, frame_shape=data.frame_shape)
    result = train(cfg, data, model, Runtime(torch.device("cpu"), "fp32", False, True),
                   tmp_path / "run", progress=False)
    assert selection.selected_row(result.history, "skill")["step"] == 4
    assert all(torch.equal(result.best_state[k], kept[4][k]) for k in kept[4])


def test_predict_gif_shows_the_first_guess_or_the_last_frame_never_a_truth(tmp_path, monkeypatch):
    """A forecast has no truth: a residual model's GIF shows its first guess beside the
    forecast, any other model's the last observed frame held."""
    from nowcast import figures, predict
    seen = {}
    monkeypatch.setattr(figures, "sequence_gif",
                        lambda inputs, left, pred, path, split, labels, look: seen.update(
                            left=left, pred=pred, labels=labels) or Path(path).write_bytes(b"gif"))
    frames = (np.random.default_rng(0).random((4, 16, 16)) * 255).astype(np.uint8)
    np.savez(tmp_path / "in.npz", frames=frames)
    for residual in (True, False):
        values = dict(RESIDUAL, protocol="none", dataset="npz", data_file=str(tmp_path / "in.npz"),
                      k_in=3, k_out=3, correction="gated") if residual else \
            dict(image_size=16, hidden_sizes=[4], stride=1, norm="group", norm_groups=2,
                 peephole="per_channel", k_in=3, k_out=3)
        cfg = load_config(values=values)
        model = get_model(cfg, frame_shape=(16, 16))
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "frame_shape": [16, 16]},
                   tmp_path / "model.pt")
        predict.predict_frames(str(tmp_path / "model.pt"), str(tmp_path / "in.npz"), 3,
                               str(tmp_path / f"f{residual}.gif"))
        inputs = frames[-3:].astype(np.float32) / 255
        if residual:
            guess = model.guess(torch.from_numpy(inputs[None]), 3)[0].clamp(0, 1).numpy()
            assert seen["labels"] == ("first guess (extrapolation)", "forecast")
            np.testing.assert_allclose(seen["left"], guess, atol=1e-6)
            np.testing.assert_allclose(seen["pred"], guess, atol=1e-6)  # untrained: the guess
        else:
            assert seen["labels"] == ("last observed", "forecast")
            assert np.array_equal(seen["left"], np.repeat(inputs[-1:], 3, axis=0))
