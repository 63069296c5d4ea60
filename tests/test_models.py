"""Models: the seed's architecture exactly, the cell's equations, options that do what they say."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nowcast.config import load_config
from nowcast.errors import NowcastError
from nowcast.forecast import evaluate_split, forecast
from nowcast.losses import make_loss
from nowcast.models import (ConvLSTMCell, FCLSTMCell, count_parameters, get_model,
                            recurrent_cells, to_frames)
from nowcast.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]

SEED_BEST = dict(hidden_sizes=[64, 32, 32, 16], filter_size=5, stride=2, max_pool=True, transpose=True,
                 norm="layer", bias=False, peephole="per_position", image_size=64)


def test_seed_best_parameter_count():
    model = get_model(load_config(values=SEED_BEST))
    assert count_parameters(model) == 4_273_424
    layernorm = sum(m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    peep = sum(c.peephole.numel() for c in model.cells)
    assert layernorm == 2_752_512 and peep == 516_096


def reference_cell(cell, x, h, c, wx, wh, bx, bh, pad):
    """The equations of SEED_NOTES.md written out, one gate at a time."""
    C = cell.hidden
    gx = F.conv2d(x, wx, bx, padding=pad)
    gh = F.conv2d(h, wh, bh, padding=pad)
    xi, xf, xg, xo = gx.split(C, 1)
    hi, hf, hg, ho = gh.split(C, 1)
    wci, wcf, wco = cell.peephole
    i = torch.sigmoid(xi + hi + wci * c)
    f = torch.sigmoid(xf + hf + wcf * c)
    c_new = f * c + i * torch.tanh(xg + hg)
    o = torch.sigmoid(xo + ho + wco * c_new)
    return o * torch.tanh(c_new), c_new


def test_fused_and_separate_cells_compute_the_equations():
    torch.manual_seed(0)
    sep = ConvLSTMCell(3, 4, 3, size=(8, 8), bias=True)
    fused = ConvLSTMCell(3, 4, 3, size=(8, 8), bias=True, fused=True)
    with torch.no_grad():
        sep.peephole.normal_()
        fused.peephole.copy_(sep.peephole)
        wx, wh = sep.conv_x[0].weight, sep.conv_h[0].weight
        bx, bh = sep.conv_x[0].bias, sep.conv_h[0].bias
        fused.conv.weight.copy_(torch.cat([wx, wh], dim=1))
        fused.conv.bias.copy_(bx + bh)
    x, h, c = torch.randn(2, 3, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    want_h, want_c = reference_cell(sep, x, h, c, wx, wh, bx, bh, 1)
    for cell in (sep, fused):
        got_h, got_c, _ = cell(x, (h, c))
        torch.testing.assert_close(got_h, want_h, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got_c, want_c, rtol=1e-5, atol=1e-6)
    # a sequence: the state carried over time steps matches too
    hs, hf = None, None
    for t in range(3):
        hs = sep(x, hs)[:2]
        hf = fused(x, hf)[:2]
    torch.testing.assert_close(hs[0], hf[0], rtol=1e-5, atol=1e-6)


def _count_steps(model):
    calls = []
    model.cells[0].register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.parametrize("k_in, k_out", [(3, 5), (5, 2), (1, 1)])
def test_any_k_in_k_out_and_no_wasted_step(k_in, k_out):
    """Defect 8: k_in + k_out - 1 recurrent steps, k_out outputs, k_in != k_out allowed."""
    model = get_model(load_config(values=dict(hidden_sizes=[4, 4], filter_size=3, image_size=16,
                                              norm="group", norm_groups=2, peephole="per_channel",
                                              max_pool=False)))
    calls = _count_steps(model)
    out = model(torch.rand(2, k_in, 16, 16), k_out)
    assert out.shape == (2, k_out, 16, 16)
    assert len(calls) == k_in + k_out - 1


def test_size_independent_options_run_at_any_size():
    """Defect 7: GroupNorm + per-channel peepholes: same weights at 32, 48 and 96 px."""
    values = dict(hidden_sizes=[4, 4], filter_size=3, norm="group", norm_groups=2, peephole="per_channel",
                  max_pool=False)
    small = get_model(load_config(values=dict(values, image_size=32)))
    big = get_model(load_config(values=dict(values, image_size=96)))
    assert count_parameters(small) == count_parameters(big)
    for size in (32, 48, 96):
        assert small(torch.rand(1, 2, size, size), 2).shape == (1, 2, size, size)
    seed_like = get_model(load_config(values=dict(values, norm="layer", norm_groups=None,
                                                  image_size=32)))
    with pytest.raises(RuntimeError):
        seed_like(torch.rand(1, 2, 48, 48), 2)


def test_feed_upward_passes_what_it_says():
    """Defect 6: 'output_gate' feeds o upward, 'hidden' feeds h."""
    for option in ("hidden", "output_gate"):
        model = get_model(load_config(values=dict(hidden_sizes=[4, 4], filter_size=3, image_size=16,
                                                  stride=1, feed_upward=option)))
        seen = {}
        model.cells[0].register_forward_hook(lambda m, i, out: seen.__setitem__("out", out))
        model.cells[1].register_forward_hook(lambda m, i, out: seen.__setitem__("in", i[0]))
        model(torch.rand(1, 1, 16, 16), 1)
        h, _, o = seen["out"]
        torch.testing.assert_close(seen["in"], o if option == "output_gate" else h)
        assert not torch.equal(h, o)


def test_encoder_forecaster_and_fc_lstm():
    ef = get_model(load_config(values=dict(architecture="encoder_forecaster", hidden_sizes=[8, 4], stride=1,
                                           filter_size=3, image_size=16)))
    assert ef(torch.rand(2, 4, 16, 16), 3).shape == (2, 3, 16, 16)
    # the forecaster starts from the encoder's states: different inputs, different first prediction
    a, b = ef(torch.zeros(1, 4, 16, 16), 1), ef(torch.ones(1, 4, 16, 16), 1)
    assert not torch.allclose(a, b)
    fc = get_model(load_config(values=dict(architecture="fc_lstm", hidden_sizes=[32, 32],
                                           image_size=16)))
    assert fc(torch.rand(2, 4, 16, 16), 3).shape == (2, 3, 16, 16)
    # the forecaster starts from the encoder's state: different inputs, different forecasts
    a, b = fc(torch.zeros(1, 4, 16, 16), 2), fc(torch.ones(1, 4, 16, 16), 2)
    assert not torch.allclose(a, b)


def test_teacher_mask_feeds_targets():
    model = get_model(load_config(values=dict(hidden_sizes=[4, 4], filter_size=3, image_size=16,
                                              stride=1)))
    x, target = torch.rand(2, 2, 16, 16), torch.rand(2, 3, 16, 16)
    free = model(x, 3)
    forced = model(x, 3, target, torch.ones(2, 2, dtype=torch.bool))
    torch.testing.assert_close(free[:, 0], forced[:, 0])  # first output precedes any feedback
    assert not torch.allclose(free[:, 1], forced[:, 1])
    mixed = model(x, 3, target, torch.tensor([[True, True], [False, False]]))
    torch.testing.assert_close(mixed[0], forced[0])
    torch.testing.assert_close(mixed[1], free[1])


# Wu 2019, Table 4.1: published parameters, and the thesis code's output layer (a 1 x W row
# convolution of the last forecaster layer: W * C + 1), docs/thesis_models.md
THESIS_CONVLSTM = {"thesis-ef-1x128": (3_311_617, 8_193),
                   "thesis-ef-2x64": (2_475_521, 4_097),
                   "thesis-ef-3-64-32-32": (1_858_049, 1_025)}


def _fmt(n: int) -> str:
    return f"{n:,}"


@pytest.mark.parametrize("stem", list(THESIS_CONVLSTM))
def test_thesis_convlstm_parameter_counts(stem):
    published, head = THESIS_CONVLSTM[stem]
    cfg = load_config(ROOT / "params" / f"{stem}.yaml")
    model = get_model(cfg, device="meta")
    assert count_parameters(model) == published
    stacks = count_parameters(model.encoder) + count_parameters(model.forecaster)
    assert count_parameters(model.head) == head == cfg.head_width * cfg.hidden_sizes[-1] + 1
    # one bias per gate, no peepholes: 4H(Cin+H)k^2 + 4H per layer, 1-channel input
    ins = [1] + cfg.hidden_sizes[:-1]
    per_stack = sum(4 * h * (i + h) * 25 + 4 * h for i, h in zip(ins, cfg.hidden_sizes))
    assert stacks == 2 * per_stack == published - head
    row = (ROOT / "docs" / "thesis_models.md").read_text()
    line = next(x for x in row.splitlines() if f"`{stem}`" in x)
    cells = [c.strip() for c in line.split("|")]
    assert cells[2:6] == [_fmt(published), _fmt(stacks), _fmt(head), _fmt(published)]
    assert model.output == "relu" and all(c.activation == "relu" for c in recurrent_cells(model))


def test_row_head_reads_the_last_layer_along_rows():
    """head: row is Keras's Conv3D((1, 1, W), 'same') of the thesis's code: each output pixel
    depends on its own row of the last forecaster layer only, W columns wide."""
    cfg = load_config(values=dict(architecture="encoder_forecaster", hidden_sizes=[4, 3],
                                  filter_size=3, image_size=16, peephole="none", head="row",
                                  head_width=4, k_in=2, k_out=1))
    model = get_model(cfg)
    assert count_parameters(model.head) == 4 * 3 + 1 and model.head.in_channels == 3
    state = torch.zeros(1, 3, 16, 16, requires_grad=True)
    out = model.head(state)
    out[0, 0, 5, 8].backward()
    touched = state.grad[0].abs().sum(0).nonzero().tolist()
    # rows: 5 only; columns: 8-1 .. 8+2 (an even kernel pads one more on the right, as Keras)
    assert sorted({r for r, _ in touched}) == [5] and sorted({c for _, c in touched}) == [7, 8, 9, 10]
    assert model(torch.rand(2, 2, 16, 16), 3).shape == (2, 3, 16, 16)


def test_thesis_fc_lstm_is_exact():
    cfg = load_config(ROOT / "params" / "thesis-fclstm-2x2048.yaml")
    model = get_model(cfg, device="meta")
    assert count_parameters(model) == 92_295_168
    assert count_parameters(model.encoder) == 50_339_840    # 4*2048*(4096+2048) + 4*2048
    assert count_parameters(model.forecaster) == 33_562_624  # 4*2048*(2048+2048) + 4*2048
    assert count_parameters(model.head) == 8_392_704         # 2048*4096 + 4096
    assert recurrent_cells(model) == [model.encoder, model.forecaster]
    line = next(x for x in (ROOT / "docs" / "thesis_models.md").read_text().splitlines()
                if "`thesis-fclstm-2x2048`" in x)
    assert "92,295,168" in line


@pytest.mark.parametrize("sizes", [[2048], [32, 16], [8, 8, 8]])
def test_fc_lstm_needs_two_equal_hidden_sizes(sizes):
    with pytest.raises(NowcastError, match=r"hidden_sizes.*" + str(sizes).replace("[", r"\[")):
        load_config(values=dict(architecture="fc_lstm", hidden_sizes=sizes, image_size=8))


def test_fc_cell_computes_the_equations():
    torch.manual_seed(0)
    x, h, c = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4)
    for name, act in (("tanh", torch.tanh), ("relu", torch.relu)):
        cell = FCLSTMCell(5, 4, activation=name)
        assert count_parameters(cell) == 4 * 4 * (5 + 4) + 4 * 4
        w, b = cell.linear.weight, cell.linear.bias
        i, f, g, o = (torch.cat([x, h], 1) @ w.T + b).split(4, 1)
        want_c = torch.sigmoid(f) * c + torch.sigmoid(i) * act(g)
        want_h = torch.sigmoid(o) * act(want_c)
        got_h, got_c, _ = cell(x, (h, c))
        torch.testing.assert_close(got_c, want_c)
        torch.testing.assert_close(got_h, want_h)
        zero_h, zero_c, _ = cell(x)  # None: zero state
        torch.testing.assert_close(zero_h, cell(x, (torch.zeros(3, 4), torch.zeros(3, 4)))[0])


def test_relu_activation_is_applied_to_candidate_and_cell():
    torch.manual_seed(0)
    tanh = ConvLSTMCell(2, 3, 3, peephole="none", fused=True)
    relu = ConvLSTMCell(2, 3, 3, peephole="none", fused=True, activation="relu")
    relu.load_state_dict(tanh.state_dict())
    x, h, c = torch.randn(1, 2, 6, 6), torch.randn(1, 3, 6, 6), torch.randn(1, 3, 6, 6)
    i, f, g, o = tanh.conv(torch.cat([x, h], 1)).chunk(4, 1)
    want_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.relu(g)
    got_h, got_c, _ = relu(x, (h, c))
    torch.testing.assert_close(got_c, want_c)
    torch.testing.assert_close(got_h, torch.sigmoid(o) * torch.relu(want_c))
    assert (got_h >= 0).all() and (got_h == 0).any()  # relu(c) is 0 where c < 0
    assert not torch.allclose(got_h, tanh(x, (h, c))[0])
    with pytest.raises(NowcastError, match="activation"):
        load_config(values=dict(activation="sigmoid"))


def test_output_mapping():
    raw = torch.tensor([-3.0, -0.5, 0.0, 0.25, 1.0, 7.5])
    assert to_frames(raw, "relu", clip=False).tolist() == [0, 0, 0, 0.25, 1, 7.5]
    assert to_frames(raw, "relu", clip=True).tolist() == [0, 0, 0, 0.25, 1, 1]
    torch.testing.assert_close(to_frames(raw, "sigmoid", clip=True), torch.sigmoid(raw))
    with pytest.raises(NowcastError, match="output 'softplus' is not one of: sigmoid, relu"):
        to_frames(raw, "softplus")


def test_relu_loss_is_unclipped_and_bce_refuses_it():
    raw, target = torch.tensor([[-1.0, 3.0]]), torch.tensor([[0.5, 1.0]])
    # relu frames 0 and 3 (not clipped to 1): ((0-0.5)^2 + (3-1)^2) / 2
    assert float(make_loss("mse", output="relu")(raw, target)) == 2.125
    sig = float(make_loss("mse")(raw, target))
    assert sig == pytest.approx(((torch.sigmoid(raw) - target) ** 2).mean().item())
    with pytest.raises(NowcastError, match="loss 'bce'.*output 'relu'"):
        make_loss("bce", output="relu")


def _constant_model(output: str, value: float):
    """An encoder-forecaster whose raw output is `value` everywhere (zero weights, head bias)."""
    model = get_model(load_config(values=dict(architecture="encoder_forecaster", hidden_sizes=[2],
                                              stride=1, filter_size=3, image_size=8, loss="mse",
                                              output=output)))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias.fill_(value)
    return model


def test_relu_forecasts_and_feedback_are_clamped_at_one():
    runtime = Runtime(torch.device("cpu"), "fp32", False)
    x = torch.rand(2, 3, 8, 8)
    high, low = _constant_model("relu", 2.5), _constant_model("relu", -2.5)
    assert high.output == "relu"
    assert torch.equal(high(x, 2), torch.full((2, 2, 8, 8), 2.5))  # raw: unclipped
    assert torch.equal(forecast(high, x, 2, runtime), torch.ones(2, 2, 8, 8))
    assert torch.equal(forecast(low, x, 2, runtime), torch.zeros(2, 2, 8, 8))
    assert torch.equal(high.feedback(high(x, 1), 1, None, None), torch.ones(2, 1, 8, 8))
    sig = _constant_model("sigmoid", 2.5)
    torch.testing.assert_close(forecast(sig, x, 1, runtime),
                               torch.full((2, 1, 8, 8), torch.sigmoid(torch.tensor(2.5)).item()))
    # a split: the loss sees unclipped frames, the metrics clipped ones
    batch = SimpleNamespace(frames=torch.ones(4, 5, 8, 8).numpy(), mask=None)
    loss, metrics = evaluate_split(high, batch, 3, 2, make_loss("mse", output="relu"), runtime)
    assert loss == 1.5 ** 2
    assert metrics.result()["mean"]["mse_frame"] == 0


def test_resize_convolution_instead_of_transpose():
    values = dict(hidden_sizes=[4, 4], filter_size=3, image_size=16, stride=2, max_pool=False)
    up = get_model(load_config(values=dict(values, transpose=True)))
    resize = get_model(load_config(values=dict(values, transpose=False)))
    x = torch.rand(2, 3, 16, 16)
    assert up(x, 2).shape == resize(x, 2).shape == (2, 2, 16, 16)
    kinds = lambda m: {type(l).__name__ for l in m.modules()}
    assert "ConvTranspose2d" in kinds(up) and "Upsample" not in kinds(up)
    assert "ConvTranspose2d" not in kinds(resize) and "Upsample" in kinds(resize)
    # a k x k transposed conv and a k x k conv after the resize hold the same weights: the
    # count does not change. Gate convs 9*(1*16 + 4*16) + 9*(4*16 + 4*16), no bias;
    # per-position peepholes 3*4*8*8 + 3*4*16*16; head 4
    assert count_parameters(up) == count_parameters(resize) == 720 + 1_152 + 768 + 3_072 + 4
    seen = {}
    resize.cells[1].register_forward_hook(lambda m, i, out: seen.__setitem__("h", out[0]))
    resize(x, 1)
    assert seen["h"].shape == (2, 4, 16, 16)  # the up-sampling layer works at full size again


# --- patches ---------------------------------------------------------------------------------

def test_patch_channels_follow_openstl_reshape_patch():
    """OpenSTL / PredRNN `reshape_patch` on (B, T, H, W, C): patch (i, j) of side p holds pixel
    (i*p + ph, j*p + pw) of channel c in channel (ph*p + pw)*C + c. Stated here for C = 1, index
    by index, and back."""
    from nowcast.models.base import from_patches, to_patches
    p, frames = 4, torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12)
    patches = to_patches(frames, p)
    assert patches.shape == (2, 3, 16, 2, 3)
    for ph in range(p):
        for pw in range(p):
            for i in range(2):
                for j in range(3):
                    assert torch.equal(patches[:, :, ph * p + pw, i, j], frames[:, :, i * p + ph, j * p + pw])
    assert torch.equal(from_patches(patches, p), frames)
    assert torch.equal(to_patches(frames, 1)[:, :, 0], frames)


@pytest.mark.parametrize("arch", ["convlstm_ed", "encoder_forecaster", "predrnn"])
def test_patch_size_folds_frames_for_the_cells(arch):
    """Cells see p*p channels at H/p x W/p; the model's output is whole frames again."""
    values = dict(architecture=arch, hidden_sizes=[8, 8], filter_size=3, norm="group",
                  norm_groups=2, image_size=32, patch_size=4,
                  **({} if arch == "predrnn" else {"peephole": "per_channel"}))
    if arch == "convlstm_ed":
        values.update(stride=2, max_pool=False)
    model = get_model(load_config(values=values))
    first = recurrent_cells(model)[0]
    assert model.patch_size == 4 and model.frame_multiple == 4 * (2 if arch == "convlstm_ed" else 1)
    seen = []
    first.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    out = model(torch.rand(2, 3, 32, 32), 2)
    assert out.shape == (2, 2, 32, 32) and seen[0] == (2, 16, 8, 8)


def test_patch_padding_is_never_scored():
    """Radar frames (191 x 175) are padded to the patch's multiple; what the model puts in the
    padding changes no loss and no forecast pixel."""
    values = dict(architecture="convlstm_ed", stride=1, hidden_sizes=[4], filter_size=3,
                  norm="group", norm_groups=2, peephole="per_channel", patch_size=4, loss="mse")
    cfg = load_config(values=dict(values, image_size=None, dataset="npz", data_file="x.npz",
                                  k_in=2, k_out=2), check_model=False)
    model = get_model(cfg, frame_shape=(23, 21))
    assert model.frame_shape == (24, 24)
    runtime = Runtime(torch.device("cpu"), "fp32", False)
    frames = torch.rand(3, 4, 23, 21)
    with torch.no_grad():
        model.head.weight.normal_()
    out = forecast(model, frames[:, :2], 2, runtime)
    assert out.shape == (3, 2, 23, 21)
    padded_in = F.pad(frames[:, :2], (0, 3, 0, 1))
    with torch.no_grad():
        full = to_frames(model(padded_in, 2))
    assert torch.allclose(out, full[..., :23, :21], atol=1e-6) and full[..., 23:, :].abs().sum() > 0
    batch = SimpleNamespace(frames=frames.numpy(), mask=None)
    loss, _ = evaluate_split(model, batch, 2, 2, make_loss("mse"), runtime, with_metrics=False)
    assert loss == pytest.approx(float(((out - frames[:, 2:]) ** 2).mean()), rel=1e-6)


def test_patch_size_is_refused_where_it_means_nothing():
    with pytest.raises(NowcastError, match="'patch_size' is not used with architecture: fc_lstm"):
        load_config(values=dict(architecture="fc_lstm", hidden_sizes=[16, 16], patch_size=4))
    with pytest.raises(NowcastError, match="frame size 30x30 is not divisible by patch_size 4"):
        load_config(values=dict(hidden_sizes=[8, 8], stride=1, image_size=30, patch_size=4))
    with pytest.raises(NowcastError, match="'patch_size' must be >= 1"):
        load_config(values=dict(patch_size=0))


@pytest.mark.parametrize("arch,output", [("convlstm_ed", "linear"), ("convlstm_ed", "relu"),
                                         ("encoder_forecaster", "linear"), ("predrnn", "linear"),
                                         ("convlstm_ed", "sigmoid")])
def test_an_untrained_residual_model_forecasts_persistence(arch, output):
    """residual: every lead is the last input frame plus the head's output, and the head starts
    at zero; sigmoid's base is the logit of the frame kept 1e-3 from 0 and 1."""
    values = dict(architecture=arch, hidden_sizes=[8, 8], filter_size=3, norm="group",
                  norm_groups=2, image_size=32, patch_size=4, residual=True, output=output,
                  loss="mse", stride=1, **({} if arch == "predrnn" else {"peephole": "per_channel"}))
    model = get_model(load_config(values=values))
    inputs = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        frames = to_frames(model(inputs, 4), model.output)
    last = inputs[:, -1:].expand(-1, 4, -1, -1)
    if output == "sigmoid":
        assert torch.allclose(frames, last.clamp(1e-3, 1 - 1e-3), atol=1e-6)
    else:
        assert torch.equal(frames, last)
    plain = get_model(load_config(values=dict(values, residual=False)))
    assert count_parameters(plain) == count_parameters(model)
    assert all(p.abs().sum() == 0 for p in model.head.parameters())
    assert any(p.abs().sum() > 0 for p in plain.head.parameters())


def test_linear_output_lets_a_residual_model_learn_rain_where_it_was_dry():
    """A dry pixel's residual raw value is 0: relu passes no gradient there (its derivative at
    0 is 0), linear does; scored frames are clamped to [0, 1] either way."""
    raw = torch.zeros(1, 1, 2, 2, requires_grad=True)
    target = torch.full((1, 1, 2, 2), 0.5)
    for output, moves in (("relu", False), ("linear", True)):
        raw.grad = None
        make_loss("mse", output=output)(raw, target, None).backward()
        assert (raw.grad.abs().sum() > 0) == moves
    assert torch.equal(to_frames(torch.tensor([-0.5, 0.5, 1.5]), "linear"), torch.tensor([0, 0.5, 1]))


def test_residual_is_refused_where_it_means_nothing():
    with pytest.raises(NowcastError, match="'residual' is not used with architecture: fc_lstm"):
        load_config(values=dict(architecture="fc_lstm", hidden_sizes=[16, 16], residual=True))


def test_balanced_loss_weights_pixels_by_their_radar_class():
    """B-MSE + B-MAE: (err^2 + |err|) weighted 1, 2, 5, 10, 30 below 15 and from 15, 20, 25,
    30 dBZ of the target, a mean over the pixels with data; refused off radar."""
    dbz = torch.tensor([[0.0, 10.0, 16.0, 22.0, 27.0, 40.0]])
    target, pred = dbz / 70, torch.full((1, 6), 0.1)
    err = pred - target
    want = (torch.tensor([1.0, 1, 2, 5, 10, 30]) * (err ** 2 + err.abs())).mean()
    loss = make_loss("balanced", output="sigmoid")
    assert float(loss(torch.logit(pred), target)) == pytest.approx(float(want), rel=1e-5)
    mask = torch.tensor([[True, True, True, True, True, False]])  # no data where it is 40 dBZ
    assert float(loss(torch.logit(pred), target, mask)) == pytest.approx(
        float((torch.tensor([1.0, 1, 2, 5, 10]) * (err[0, :5] ** 2 + err[0, :5].abs())).mean()), rel=1e-5)
    with pytest.raises(NowcastError, match="loss .balanced. weights pixels by dBZ: it needs dataset radar, not mmnist"):
        load_config(values=dict(loss="balanced"))
