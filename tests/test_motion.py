"""models/motion.py: the Lucas-Kanade first guess of a residual model (first_guess:
extrapolation) finds a known motion, advects along it, and matches pysteps' extrapolation of the
same frames."""

import numpy as np
import pytest
import torch

from nowcast.config import load_config
from nowcast.errors import NowcastError
from nowcast.models import get_model, to_frames
from nowcast.models.motion import advect, extrapolate, motion, sample


def blobs(shift: tuple[float, float], steps: int, size: int = 64) -> torch.Tensor:
    """(1, steps, size, size): two Gaussian rain cells moving by `shift` (x, y) px per step."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    frames = []
    for t in range(steps):
        cx, cy = 20 + shift[0] * t, 24 + shift[1] * t
        frame = 0.8 * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 40)
        frame += 0.5 * torch.exp(-((xs - cx - 18) ** 2 + (ys - cy - 10) ** 2) / 25)
        frames.append(frame)
    return torch.stack(frames).unsqueeze(0)


@pytest.mark.parametrize("shift", [(1.5, -0.5), (0.0, 2.5), (-3.0, 1.0)])
def test_motion_finds_a_uniform_translation_also_where_it_is_dry(shift):
    V = motion(blobs(shift, 3))
    wet = blobs(shift, 3)[0, -1] > 0.05
    for axis in (0, 1):
        assert V[0, axis][wet].mean().item() == pytest.approx(shift[axis], abs=0.15)
        # the dry corner carries the domain's motion (what brings rain into a dry area)
        assert V[0, axis, :8, -8:].mean().item() == pytest.approx(shift[axis], abs=0.3)


def test_sample_and_advect_move_a_field_downstream_by_whole_pixels():
    frame = torch.zeros(1, 1, 8, 8)
    frame[0, 0, 2, 3] = 1.0
    V = torch.zeros(1, 2, 8, 8)
    V[:, 0] = 1.0  # one pixel per step along the width
    moved = advect(frame[:, 0], V, 3)
    for k in range(3):
        # (to rounding: grid_sample works in [-1, 1] coordinates)
        assert moved[0, k, 2, 4 + k].item() == pytest.approx(1.0, abs=1e-5)
        assert moved[0, k].sum().item() == pytest.approx(1.0, abs=1e-5)
    # what would come from outside the grid is 0, as NaN is 0 in the pysteps baseline
    assert sample(torch.ones(1, 1, 4, 4), torch.full((1, 2, 4, 4), 1.0))[0, 0, 0].sum() == 0


def test_extrapolation_forecasts_the_translated_frames():
    frames = blobs((1.0, 0.5), 9)
    forecast = extrapolate(frames[:, :3], 6)
    truth, persistence = frames[:, 3:], frames[:, 2:3].expand(-1, 6, -1, -1)
    error = (forecast - truth).abs().mean(dim=(0, 2, 3))
    assert (error < 0.2 * (persistence - truth).abs().mean(dim=(0, 2, 3))).all()


def test_extrapolation_agrees_with_pysteps_on_a_radar_like_field():
    """pysteps' LK + semi-Lagrangian extrapolation (the protocol's baseline) of the same frames:
    the same forecast to within a small fraction of the rain."""
    pytest.importorskip("pysteps")
    from nowcast.baselines import extrapolation

    frames = blobs((1.2, -0.7), 9)
    ours = extrapolate(frames[:, :3], 6).numpy()
    theirs = extrapolation(frames[:, :3].numpy(), 6)
    truth = frames[:, 3:].numpy()
    assert np.abs(ours - theirs).mean() < 0.25 * np.abs(truth - frames[:, 2:3].numpy()).mean()


@pytest.mark.parametrize("arch", ["convlstm_ed", "encoder_forecaster", "predrnn"])
def test_an_untrained_extrapolation_residual_model_forecasts_the_extrapolation(arch):
    values = dict(architecture=arch, hidden_sizes=[8, 8], filter_size=3, norm="group",
                  norm_groups=2, image_size=32, patch_size=4,
                  residual=True, first_guess="extrapolation", output="linear", loss="mse",
                  stride=1, **({} if arch == "predrnn" else {"peephole": "per_channel"}))
    model = get_model(load_config(values=values))
    inputs = blobs((1.0, 1.0), 3, size=32)
    with torch.no_grad():
        frames = to_frames(model(inputs, 4), model.output)
    assert torch.equal(frames, extrapolate(inputs, 4).clamp(0, 1))
    assert not torch.equal(frames, inputs[:, -1:].expand(-1, 4, -1, -1))


def test_first_guess_is_refused_where_nothing_reads_it():
    base = dict(hidden_sizes=[8, 8], image_size=32, stride=1, first_guess="extrapolation")
    with pytest.raises(NowcastError, match="first_guess"):
        load_config(values=dict(base, residual=False))
    with pytest.raises(NowcastError, match="first_guess"):
        load_config(values=dict(base, architecture="fc_lstm"))
    assert load_config(values=dict(base, residual=True)).first_guess == "extrapolation"
    assert load_config(values=dict(base, first_guess=None)).first_guess is None
