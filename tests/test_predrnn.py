"""PredRNN's ST-LSTM (nowcast/models/predrnn.py) against its equations (Wang et al. 2017, eqs.
3 and OpenSTL's SpatioTemporalLSTMCell, written out here from the equations, not from code),
its zig-zag memory, OpenSTL's Moving MNIST parameter count, and the options it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional as F

from conftest import TINY, predrnn_smoke
from nowcast.config import load_config
from nowcast.errors import NowcastError
from nowcast.models import count_parameters, get_model
from nowcast.models.predrnn import FORGET_BIAS, STLSTMCell

ROOT = Path(__file__).resolve().parents[1]
# TINY (norm group, 2 groups) without the ConvLSTM's options predrnn refuses
PREDRNN = dict({k: v for k, v in TINY.items() if k not in ("max_pool", "peephole", "stride")},
               architecture="predrnn", hidden_sizes=[8, 8], filter_size=3)


def equations(x, h, c, m, W, hidden, act=torch.tanh):
    """The ST-LSTM's update, gate by gate: W holds Wx (7C), Wh (4C), Wm (3C), Wo (C, over
    [c', M']) and W1 (the 1x1 convolution over [c', M'])."""
    conv = lambda t, w: F.conv2d(t, w, padding=w.shape[-1] // 2)
    i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = conv(x, W["x"]).split(hidden, dim=1)
    i_h, f_h, g_h, o_h = conv(h, W["h"]).split(hidden, dim=1)
    i_m, f_m, g_m = conv(m, W["m"]).split(hidden, dim=1)
    s = torch.sigmoid
    c_new = s(f_x + f_h + 1.0) * c + s(i_x + i_h) * act(g_x + g_h)
    m_new = s(f_xm + f_m + 1.0) * m + s(i_xm + i_m) * act(g_xm + g_m)
    o = s(o_x + o_h + conv(torch.cat([c_new, m_new], 1), W["o"]))
    return o * act(conv(torch.cat([c_new, m_new], 1), W["1"])), c_new, m_new


# OpenSTL's state_dict keys for one cell (layer_norm 0; `.1.` would be its LayerNorm): ours equal
OPENSTL_CELL_KEYS = ["conv_x.0.weight", "conv_h.0.weight", "conv_m.0.weight", "conv_o.0.weight",
                     "conv_last.weight"]


def test_the_cell_computes_the_papers_equations_with_openstls_weights():
    torch.manual_seed(0)
    cin, hidden, k = 3, 4, 5
    W = {"x": torch.randn(7 * hidden, cin, k, k), "h": torch.randn(4 * hidden, hidden, k, k),
         "m": torch.randn(3 * hidden, hidden, k, k), "o": torch.randn(hidden, 2 * hidden, k, k),
         "1": torch.randn(hidden, 2 * hidden, 1, 1)}
    W = {key: w.double() * 0.1 for key, w in W.items()}
    cell = STLSTMCell(cin, hidden, k).double()
    assert list(cell.state_dict()) == OPENSTL_CELL_KEYS
    cell.load_state_dict(dict(zip(OPENSTL_CELL_KEYS, [W["x"], W["h"], W["m"], W["o"], W["1"]])))
    x, h, c, m = (torch.randn(2, n, 6, 7, dtype=torch.float64) for n in (cin, hidden, hidden, hidden))
    got = cell(x, (h, c), m)
    want = equations(x, h, c, m, W, hidden)
    for name, g, w in zip("hcm", got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12, msg=name)
    # zero state (None) is the equations at h = c = M = 0
    zero = torch.zeros_like(h)
    for g, w in zip(cell(x), equations(x, zero, zero, zero, W, hidden)):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
    assert FORGET_BIAS == 1.0


def test_the_memory_zig_zags_up_the_layers_and_on_to_the_next_step():
    cfg = load_config(values=dict(PREDRNN, hidden_sizes=[4, 4, 4]))
    model = get_model(cfg)
    calls = []
    for layer, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda mod, args, out, layer=layer:
                                   calls.append((layer, args[2] if len(args) > 2 else None, out[2])))
    model(torch.rand(2, 3, 32, 32), 3)
    assert [layer for layer, _, _ in calls] == [0, 1, 2] * 5  # k_in + k_out - 1 steps
    assert calls[0][1] is None  # zeros at the first step only
    for (_, _, m_out), (_, m_in, _) in zip(calls, calls[1:]):
        assert m_in is m_out  # the M each cell gets is the one the cell before it made


def test_openstls_moving_mnist_configuration_has_its_parameter_count():
    # OpenSTL configs/mmnist/PredRNN.py: four layers of 128, 5x5, 4x4 patches, no LayerNorm,
    # convolutions without bias: per layer l (input I_l: 16 for the first, else 128)
    # 25*(7*128*I_l + 4*128*128 + 3*128*128 + 128*256) + 256*128, and the 1x1 head 128*16
    cfg = load_config(path=str(ROOT / "params" / "predrnn-mmnist-10.yaml"))
    per_layer = lambda cin: 25 * (7 * 128 * cin + 4 * 128 * 128 + 3 * 128 * 128 + 128 * 256) + 256 * 128
    expected = per_layer(16) + 3 * per_layer(128) + 128 * 16
    assert expected == 23_838_720  # OpenSTL's table: 23.8 M
    assert count_parameters(get_model(cfg, device="meta")) == expected
    assert (cfg.scheduled_sampling, cfg.ss_decay_steps, cfg.ss_min) == (True, 50000, 0.0)


@pytest.mark.parametrize("change, message", [
    (dict(peephole="per_channel"), "'peephole' is not used with architecture: predrnn"),
    (dict(leaky_slope=0.1), "'leaky_slope' is not used with architecture: predrnn"),
    (dict(head="row"), "'head' is not used with architecture: predrnn"),
    (dict(stride=2), "architecture predrnn takes 'stride' 1 only"),
    (dict(hidden_sizes=[8, 4]), "hidden_sizes must be equal, got [8, 4]"),
    (dict(norm="group", norm_groups=3), "norm_groups=3 does not divide 7*8 gate channels"),
])
def test_what_predrnn_does_not_take_is_refused_in_one_line(change, message):
    with pytest.raises(NowcastError) as e:
        get_model(load_config(values=dict(PREDRNN, **change)), device="meta")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_patches_residual_and_scheduled_sampling_run_and_every_weight_gets_a_gradient():
    values = dict(PREDRNN, patch_size=2, norm="layer", norm_groups=None, residual=True,
                  first_guess="extrapolation", output="linear", loss="mse", scheduled_sampling=True)
    cfg = load_config(values=values)
    torch.manual_seed(0)
    model = get_model(cfg)
    inputs = torch.rand(2, 3, 32, 32)
    raw = model(inputs, 3, targets=torch.rand(2, 3, 32, 32),
                teacher_mask=torch.tensor([[True, False], [False, True]]))
    assert raw.shape == (2, 3, 32, 32)
    # residual: the untrained head is zero, so the forecast is the first guess itself
    torch.testing.assert_close(model(inputs, 3), model.guess(inputs, 3), rtol=0, atol=0)
    raw.square().mean().backward()
    assert model.head.weight.grad.abs().sum() > 0  # the cells' gradients pass the zero head
    plain = get_model(load_config(values=dict(PREDRNN, patch_size=2, loss="mse")))
    plain(inputs, 3).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in plain.parameters())


def test_a_predrnn_params_file_trains_to_a_complete_run(tmp_path):
    params = predrnn_smoke(tmp_path)
    assert load_config(path=str(params)).architecture == "predrnn"
    done = subprocess.run([sys.executable, "-m", "nowcast", "train", "-c", str(params), "--results",
                           str(tmp_path / "results"), "--job-id", "p", "-q"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "results" / "p"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["architecture"] == "predrnn"
    assert metrics["parameters"] == count_parameters(get_model(load_config(path=str(params)),
                                                               device="meta"))
    assert 0 < metrics["mean"]["mse_frame"] < 32 * 32  # per frame, pixels in [0, 1]


@pytest.mark.slow
def test_papermill_trains_predrnn_from_a_params_file(tmp_path):
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "experiments" / "train.ipynb"),
                           str(tmp_path / "out.ipynb"), "-f", str(predrnn_smoke(tmp_path)),
                           "-p", "results_dir", str(results)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [p for p in results.iterdir() if not p.name.startswith(".")]
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert yaml.safe_load((run / "params.yaml").read_text())["architecture"] == "predrnn"
