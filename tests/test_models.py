"""Models: the seed's architecture exactly, the cell's equations, options that do what they say."""

import pytest
import torch
import torch.nn.functional as F

from nowcast.config import load_config
from nowcast.models import ConvLSTMCell, count_parameters, get_model

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
    seed_like = get_model(load_config(values=dict(values, norm="layer", image_size=32)))
    with pytest.raises(RuntimeError):
        seed_like(torch.rand(1, 2, 48, 48), 2)


def test_feed_upward_passes_what_it_says():
    """Defect 6: 'output_gate' feeds o upward, 'hidden' feeds h."""
    for option in ("hidden", "output_gate"):
        model = get_model(load_config(values=dict(hidden_sizes=[4, 4], filter_size=3, image_size=16,
                                                  stride=1, max_pool=False, feed_upward=option)))
        seen = {}
        model.cells[0].register_forward_hook(lambda m, i, out: seen.__setitem__("out", out))
        model.cells[1].register_forward_hook(lambda m, i, out: seen.__setitem__("in", i[0]))
        model(torch.rand(1, 1, 16, 16), 1)
        h, _, o = seen["out"]
        torch.testing.assert_close(seen["in"], o if option == "output_gate" else h)
        assert not torch.equal(h, o)


def test_encoder_forecaster_and_fc_lstm():
    ef = get_model(load_config(values=dict(architecture="encoder_forecaster", hidden_sizes=[8, 4], stride=1,
                                           max_pool=False, filter_size=3, image_size=16)))
    assert ef(torch.rand(2, 4, 16, 16), 3).shape == (2, 3, 16, 16)
    # the forecaster starts from the encoder's states: different inputs, different first prediction
    a, b = ef(torch.zeros(1, 4, 16, 16), 1), ef(torch.ones(1, 4, 16, 16), 1)
    assert not torch.allclose(a, b)
    fc = get_model(load_config(values=dict(architecture="fc_lstm", hidden_sizes=[32, 32], stride=1,
                                           max_pool=False, image_size=16)))
    assert fc(torch.rand(2, 4, 16, 16), 3).shape == (2, 3, 16, 16)
    # thesis FC-LSTM 2x2048 on 64x64 frames: 4*(4096+2048+1)*2048 + ... parameters
    big = get_model(load_config(values=dict(architecture="fc_lstm", hidden_sizes=[2048, 2048], stride=1,
                                            max_pool=False)), device="meta")
    lstm = 4 * 2048 * (4096 + 2048 + 2) + 4 * 2048 * (2048 + 2048 + 2)
    assert count_parameters(big) == 2 * lstm + 4096 * 4096 + 4096


def test_teacher_mask_feeds_targets():
    model = get_model(load_config(values=dict(hidden_sizes=[4, 4], filter_size=3, image_size=16, stride=1,
                                              max_pool=False)))
    x, target = torch.rand(2, 2, 16, 16), torch.rand(2, 3, 16, 16)
    free = model(x, 3)
    forced = model(x, 3, target, torch.ones(2, 2, dtype=torch.bool))
    torch.testing.assert_close(free[:, 0], forced[:, 0])  # first output precedes any feedback
    assert not torch.allclose(free[:, 1], forced[:, 1])
    mixed = model(x, 3, target, torch.tensor([[True, True], [False, False]]))
    torch.testing.assert_close(mixed[0], forced[0])
    torch.testing.assert_close(mixed[1], free[1])
