"""models/speedups.py: each rewrite computes what the model as built computes (the seed's
configuration: LayerNorm over [4C,H,W], max-pool, transposed convolutions, per-position
peepholes), forward and every gradient, with the same parameters under the same state_dict
keys; and each does what it is for (the reduction split, the layout, the batched call, one
call signature per cell)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._inductor.utils import run_and_get_code

from nowcast.config import load_config
from nowcast.errors import NowcastError
from nowcast.models import get_model, recurrent_cells
from nowcast.models.speedups import SPEEDUPS, SeparableMaxPool2d, SplitLayerNorm
from nowcast.options import SPEEDUP_NAMES

# the seed's best architecture (benchmarks/throughput.py SEED_BEST), small
SEED = dict(hidden_sizes=[8, 8, 8, 4], filter_size=5, stride=2, max_pool=True, transpose=True,
            norm="layer", bias=False, peephole="per_position", image_size=32, k_in=3, k_out=3,
            loss="bce")
# float64: the rewrites change the order of sums only, so they agree to float64 rounding,
# far inside the float32 tolerance a GPU run is held to (runtime.FAST_VS_REFERENCE_RTOL)
RTOL, ATOL = 1e-10, 1e-12


def build(speedups=(), **values):
    cfg = load_config(values=dict(SEED, **values, speedups=list(speedups)))
    torch.manual_seed(0)
    return get_model(cfg).double()


def forward_backward(model, x, k_out=3):
    model.zero_grad(set_to_none=True)
    out = model(x, k_out)
    (out.square().mean() + out.mean()).backward()
    return out.detach(), {k: p.grad for k, p in model.named_parameters()}


@pytest.mark.parametrize("speedups", [[name] for name in SPEEDUP_NAMES] + [list(SPEEDUP_NAMES)])
@pytest.mark.parametrize("values", [{}, {"patch_size": 2, "norm": "group", "peephole": "per_channel"}],
                         ids=["seed", "patches-groupnorm"])
def test_each_speedup_computes_the_models_function(speedups, values):
    seed, fast = build(**values), build(speedups, **values)
    assert list(fast.state_dict()) == list(seed.state_dict())  # a checkpoint loads either way
    fast.load_state_dict(seed.state_dict())
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out, grads = forward_backward(seed, x)
    fast_out, fast_grads = forward_backward(fast, x)
    torch.testing.assert_close(fast_out, out, rtol=RTOL, atol=ATOL)
    for name, grad in grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=RTOL, atol=ATOL, msg=name)


def test_names_are_the_params_files_names():
    assert tuple(SPEEDUPS) == SPEEDUP_NAMES


def test_split_layernorm_is_layernorm_forward_and_backward():
    norm = nn.LayerNorm([12, 5, 7]).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    split = SplitLayerNorm(norm)
    assert split.weight is norm.weight and dict(split.state_dict()).keys() == {"weight", "bias"}
    x = (3 + 2 * torch.randn(4, 12, 5, 7, dtype=torch.float64)).requires_grad_()
    g = torch.randn(4, 12, 5, 7, dtype=torch.float64)
    want = torch.autograd.grad(norm(x), (x, norm.weight, norm.bias), g)
    got = torch.autograd.grad(split(x), (x, norm.weight, norm.bias), g)
    torch.testing.assert_close(split(x), norm(x), rtol=RTOL, atol=ATOL)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


def test_split_layernorm_under_autocast_has_layernorms_dtypes():
    norm = nn.LayerNorm([8, 4, 4])
    for x in (torch.randn(2, 8, 4, 4).bfloat16(), torch.randn(2, 8, 4, 4)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want, got = norm(x), SplitLayerNorm(norm)(x)
        assert got.dtype == want.dtype == x.dtype  # a CPU's autocast keeps LayerNorm's input dtype
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kernel,stride,padding", [(5, 2, 2), (3, 2, 1), (3, 1, 1)])
def test_separable_maxpool_routes_gradients_to_the_same_element_with_ties(kernel, stride, padding):
    # small integers: most windows hold their maximum more than once
    x = torch.randint(0, 3, (2, 3, 11, 10), generator=torch.Generator().manual_seed(0)).double()
    pool = nn.MaxPool2d(kernel, stride, padding)
    grads = []
    for module in (pool, SeparableMaxPool2d(pool)):
        xi = x.clone().requires_grad_()
        out = module(xi)
        out.backward(torch.arange(out.numel(), dtype=torch.float64).view_as(out))
        grads.append((out, xi.grad))
    assert torch.equal(grads[1][0], grads[0][0]) and torch.equal(grads[1][1], grads[0][1])


def test_channels_last_is_end_to_end():
    model = build(["channels_last", "split_layernorm"], patch_size=2)
    seen = []
    hooks = [cell.register_forward_hook(lambda m, args, out: seen.append((args[0], *out)))
             for cell in recurrent_cells(model)]
    model(torch.rand(2, 3, 32, 32, dtype=torch.float64), 2)
    for h in hooks:
        h.remove()
    nhwc = [t.is_contiguous(memory_format=torch.channels_last) for row in seen for t in row]
    assert len(nhwc) == 4 * 4 * 4 and all(nhwc)  # 4 cells x 4 steps x (input, h, c, o)


def cell_calls(model, k_in=3, k_out=3):
    calls = []
    hooks = [cell.register_forward_hook(lambda m, args, out, i=i: calls.append((i, args)))
             for i, cell in enumerate(recurrent_cells(model))]
    model(torch.rand(2, k_in, 32, 32, dtype=torch.float64), k_out)
    for h in hooks:
        h.remove()
    return calls


def test_zero_state_gives_every_cell_one_call_signature():
    assert any(args[1] is None for _, args in cell_calls(build()))
    calls = cell_calls(build(["zero_state"]))
    assert len(calls) == 4 * 5 and all(args[1] is not None for _, args in calls)


def test_batched_input_convs_call_the_first_branch_once_for_the_known_frames():
    model = build(["batched_input_convs"])
    batches = []
    model.cells[0].conv_x.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    first = [args for i, args in cell_calls(model, k_in=4) if i == 0]
    assert batches == [2 * 4, 2, 2]  # the 4 known frames at once, then each fed-back frame
    assert [args[0] is None for args in first] == [True] * 4 + [False] * 2


@pytest.mark.parametrize("architecture,speedup", [("predrnn", "zero_state"),
                                                  ("encoder_forecaster", "batched_input_convs")])
def test_a_speedup_an_architecture_lacks_is_refused_when_params_load(architecture, speedup):
    values = dict(architecture=architecture, hidden_sizes=[8, 8], filter_size=3, stride=1,
                  norm="none", peephole=None if architecture == "predrnn" else "none",
                  image_size=32, k_in=3, k_out=3, loss="mse", speedups=[speedup])
    with pytest.raises(NowcastError, match=f"{speedup} is not built for"):
        load_config(values={k: v for k, v in values.items() if v is not None})


def test_unknown_speedup_names_the_valid_ones():
    with pytest.raises(NowcastError, match="speedups.*split_layernorm"):
        load_config(values=dict(SEED, speedups=["split_layer_norm"]))
    with pytest.raises(NowcastError, match="fused_gates"):
        load_config(values=dict(SEED, stride=1, max_pool=None, transpose=None, norm="none",
                                fused_gates=True, speedups=["batched_input_convs"]))


def test_split_layernorm_compiles_to_a_reduction_per_plane():
    """Inductor's CPU code for the rewrite (TORCH_LOGS=output_code shows the same): the first
    reduction of the forward runs over every (sample, channel) plane, B*C rows of H*W values,
    where nn.LayerNorm's is one row per sample; compiled, it is still the same function."""
    torch._dynamo.reset()
    norm = nn.LayerNorm([16, 4, 4])
    x = torch.randn(3, 16, 4, 4)
    compiled = torch.compile(SplitLayerNorm(norm), dynamic=False)
    out, (code,) = run_and_get_code(compiled, x)
    torch.testing.assert_close(out, norm(x), rtol=1e-5, atol=1e-5)
    assert "x0<static_cast<int64_t>(48L)" in code  # 3 samples x 16 channels
