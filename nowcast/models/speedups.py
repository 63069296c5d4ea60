"""The same function, computed faster: rewrites of a built model that a GPU profile asked for
(benchmarks/RESULTS.md, "What the profile points to"). Each keeps the parameters, their
`state_dict` keys and the function the model computes (forward and gradients equal up to the
order of sums: tests/test_speedups.py checks each against the model as built to float64
rounding), so a checkpoint
loads either way and `speedups: [...]` in a params file changes only how fast it trains.

| name                 | what it changes                                                  |
|----------------------|------------------------------------------------------------------|
| split_layernorm      | LayerNorm over [4C,H,W]: statistics per (sample, channel) plane, combined per sample, one normalise-and-affine pass |
| cuda_graphs          | compiled cells replayed as CUDA graphs (torch.compile mode "reduce-overhead") |
| channels_last        | weights, frames and states in NHWC end to end                   |
| batched_input_convs  | the first layer's input-to-state branch over all k_in known frames at once |
| separable_maxpool    | a k x k max-pool as a 1 x k pool then a k x 1 pool               |
| zero_state           | every cell gets an explicit zero state at t = 0: one compiled graph per cell, not two |

The order is that of the gain predicted for the seed's step on an H200 (benchmarks/RESULTS.md).
`apply_speedups(model, names)` applies them in place (get_model does, from `cfg.speedups`);
`get_speedup(name)` lists the valid names on error. An architecture a rewrite cannot apply to
is refused in one line.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NowcastError


class _SplitLayerNormFn(torch.autograd.Function):
    """y = (x - mean) * rstd * weight + bias over the last three dims, rstd = 1/sqrt(var + eps).

    Statistics in two stages, so that a reduction has one row per (sample, channel) plane, not
    one per sample (PyTorch's LayerNorm kernel gives each sample one thread block: 64 busy
    multiprocessors of 132 on an H200 at batch 64). With n values per plane and C planes:
        mean = mean_c(m_c),  var = mean_c(v_c) + mean_c((m_c - mean)^2)   (Chan et al. 1979)
    The backward is written out in the same two stages (g the output's gradient, gw = g.weight):
        dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)),  dweight = sum_b g * xhat,
        dbias = sum_b g
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        var_p, mean_p = torch.var_mean(x, dim=(-2, -1), correction=0, keepdim=True)
        mean = mean_p.mean(-3, keepdim=True)
        var = var_p.mean(-3, keepdim=True) + (mean_p - mean).square().mean(-3, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        xhat = (x - mean) * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.has_bias = bias is not None
        y = xhat if weight is None else xhat * weight
        return y if bias is None else y + bias

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved_tensors
        gw = g if weight is None else g * weight
        a = gw.mean(dim=(-2, -1), keepdim=True).mean(-3, keepdim=True)
        b = (gw * xhat).mean(dim=(-2, -1), keepdim=True).mean(-3, keepdim=True)
        dx = rstd * (gw - a - xhat * b)
        batch = tuple(range(g.dim() - 3))
        dweight = None if weight is None else (g * xhat).sum(batch)
        dbias = g.sum(batch) if ctx.has_bias else None
        return dx, dweight, dbias, None


class SplitLayerNorm(nn.Module):
    """nn.LayerNorm over the last three dims with the split reduction of _SplitLayerNormFn: the
    same parameters (`weight`, `bias`), and under autocast the same dtypes as nn.LayerNorm."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        if len(norm.normalized_shape) != 3:
            raise NowcastError(f"split_layernorm: normalises over 3 dims, not {norm.normalized_shape}")
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias  # the same Parameters, the same keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = x.device.type
        if not torch.is_autocast_enabled(kind):
            return _SplitLayerNormFn.apply(x, self.weight, self.bias, self.eps)
        # autocast runs nn.LayerNorm in float32 with a float32 result on a GPU, and on a CPU
        # with float32 statistics and a result in the input's dtype: the same here
        dtype = x.dtype if kind == "cpu" else torch.float32
        with torch.autocast(kind, enabled=False):
            return _SplitLayerNormFn.apply(x.float(), self.weight, self.bias, self.eps).to(dtype)


class SeparableMaxPool2d(nn.Module):
    """A k x k max-pool (stride s, padding p) as a 1 x k pool along the rows, then a k x 1 pool
    along the columns. The maximum of a rectangle is the maximum of its row maxima, and both
    pick the first maximum in row-major order (the row pass the first in each row, the column
    pass the first such row), so the gradient goes to the same element, ties included."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        k, s, p = (v if isinstance(v, int) else None for v in (pool.kernel_size, pool.stride, pool.padding))
        if None in (k, s, p) or pool.dilation != 1 or pool.ceil_mode or pool.return_indices:
            raise NowcastError("separable_maxpool: square kernels, no dilation, ceil_mode or indices")
        self.kernel, self.stride, self.padding = k, s, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel, self.stride, self.padding
        rows = F.max_pool2d(x, (1, k), (1, s), (0, p))
        return F.max_pool2d(rows, (k, 1), (s, 1), (p, 0))


def _replace(model: nn.Module, kind: type, make: Callable[[nn.Module], nn.Module]) -> None:
    """Every submodule of `kind` replaced by make(it), in place."""
    found = [(parent, name, child) for parent in model.modules()
             for name, child in parent.named_children() if type(child) is kind]
    for parent, name, child in found:
        setattr(parent, name, make(child))


def split_layernorm(model: nn.Module) -> None:
    _replace(model, nn.LayerNorm, SplitLayerNorm)


def separable_maxpool(model: nn.Module) -> None:
    _replace(model, nn.MaxPool2d, SeparableMaxPool2d)


def channels_last(model: nn.Module) -> None:
    """4-d weights NHWC (oneDNN's and cuDNN's native layout for fast convolutions), and the
    model's frames made NHWC-contiguous before each step (base.SequenceModel.memory_format);
    zero states follow their gates' layout (cell.zeros_like_gate)."""
    model.to(memory_format=torch.channels_last)
    model.memory_format = torch.channels_last


def _switch_on(model: nn.Module, attribute: str, name: str) -> None:
    """Set a switch the model reads; refused where the model has none."""
    if not hasattr(model, attribute):
        raise NowcastError(f"speedups: {name} is not built for {type(model).__name__} "
                           f"(only where the model has '{attribute}': ConvLSTM-ED)")
    setattr(model, attribute, True)


def batched_input_convs(model: nn.Module) -> None:
    """ConvLSTMED.input_gates: the first input branch over all known frames in one call."""
    _switch_on(model, "batch_input_convs", "batched_input_convs")
    if model.cells[0].fused:
        raise NowcastError("speedups: batched_input_convs needs fused_gates: false (a fused "
                           "convolution reads x and h at once)")


def zero_state(model: nn.Module) -> None:
    """ConvLSTMED.zero_states: explicit zero states at t = 0."""
    _switch_on(model, "zero_state", "zero_state")


def cuda_graphs(model: nn.Module) -> None:
    """models.compile_cells compiles with mode "reduce-overhead" (CUDA graphs; on a CPU the
    compiler skips them); SequenceModel.forward marks each training step's start for them."""
    model.cuda_graphs = True


# keyed as options.SPEEDUP_NAMES, the names a params file may give (config imports no torch)
SPEEDUPS: dict[str, Callable[[nn.Module], None]] = {
    "split_layernorm": split_layernorm,
    "cuda_graphs": cuda_graphs,
    "channels_last": channels_last,
    "batched_input_convs": batched_input_convs,
    "separable_maxpool": separable_maxpool,
    "zero_state": zero_state,
}


def get_speedup(name: str) -> Callable[[nn.Module], None]:
    try:
        return SPEEDUPS[name]
    except KeyError:
        raise NowcastError(f"speedup '{name}' is not one of: {', '.join(SPEEDUPS)}") from None


def apply_speedups(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """The rewrites `names` applied to `model` in place, in SPEEDUPS' order; returned."""
    names = set(names)
    for name in [n for n in SPEEDUPS if n in names] + sorted(names - set(SPEEDUPS)):
        get_speedup(name)(model)
    return model
