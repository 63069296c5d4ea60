"""The ConvLSTM cell (Shi et al. 2015, with the seed's options).

    i = s(Wx_i*x + Wh_i*h + wc_i . c)        f = s(Wx_f*x + Wh_f*h + wc_f . c)
    c' = f . c + i . act(Wx_g*x + Wh_g*h)    o = s(Wx_o*x + Wh_o*h + wc_o . c')
    h' = o . act(c')

`*` is a convolution, `.` the Hadamard product (peepholes), act is tanh (Shi et al.) or ReLU
(Wu 2019, `activation: relu`). Each gate convolution is a block conv [-> max-pool] [-> norm]
[-> LeakyReLU] on its own branch (x or h), as in the seed. The input branch may change
resolution (down: stride-2 conv or conv + max-pool; up: transposed conv, or nearest-neighbour
x2 resize + same-size conv); the state branch always works at the cell's own resolution.

FCLSTMCell is the same cell with matrix products instead of convolutions, one bias per gate
and no peepholes: the FC-LSTM of Wu 2019's baseline.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

# the candidate's and the cell output's nonlinearity
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}

Resample = Literal["same", "down", "up"]


class GateConv(nn.Sequential):
    """One branch: in_channels -> gates*hidden pre-activations at the cell's resolution (4 gates
    for a ConvLSTM; PredRNN's ST-LSTM has branches of 7, 4, 3 and 1)."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, resample: Resample = "same",
                 max_pool: bool = False, norm: str = "none", norm_groups: int = 4,
                 size: Optional[tuple[int, int]] = None, bias: bool = True,
                 leaky_slope: Optional[float] = None, transpose: bool = True, gates: int = 4):
        pad = kernel // 2
        out = gates * hidden
        layers: list[nn.Module] = []
        if resample == "up" and transpose:
            # stride 2, padding k//2, output_padding 1 doubles the size exactly for odd k
            layers.append(nn.ConvTranspose2d(in_channels, out, kernel, stride=2, padding=pad,
                                             output_padding=1, bias=bias))
        elif resample == "up":
            # resize-convolution (Odena et al. 2016): no checkerboard artifacts; the same
            # weight count as the transposed convolution
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers.append(nn.Conv2d(in_channels, out, kernel, padding=pad, bias=bias))
        elif resample == "down" and not max_pool:
            layers.append(nn.Conv2d(in_channels, out, kernel, stride=2, padding=pad, bias=bias))
        else:
            layers.append(nn.Conv2d(in_channels, out, kernel, padding=pad, bias=bias))
            if resample == "down":
                layers.append(nn.MaxPool2d(kernel, stride=2, padding=pad))
        if norm == "layer":
            if size is None:
                raise ValueError(f"LayerNorm over [{gates}C,H,W] needs the cell's size")
            layers.append(nn.LayerNorm([out, *size]))
        elif norm == "group":
            if out % norm_groups:
                raise ValueError(f"norm_groups={norm_groups} does not divide {gates}*{hidden} "
                                 f"gate channels")
            layers.append(nn.GroupNorm(norm_groups, out))
        if leaky_slope is not None:
            layers.append(nn.LeakyReLU(leaky_slope))
        super().__init__(*layers)


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation '{activation}' is not one of: {', '.join(ACTIVATIONS)}")


def zeros_like_gate(g: torch.Tensor, hidden: int) -> torch.Tensor:
    """A zero state (B, hidden, h, w) in the layout of the gate tensor g (NCHW or NHWC)."""
    return torch.zeros_like(g[:, :hidden])


def lstm_update(g: torch.Tensor, c: Optional[torch.Tensor], activation: str,
                peephole: Optional[torch.Tensor] = None):
    """(h', c', o) from gate pre-activations g = [i, f, g, o] along dim 1 and the cell c."""
    act = ACTIVATIONS[activation]
    if c is None:
        c = zeros_like_gate(g, g.shape[1] // 4)
    i, f, cand, o = g.chunk(4, dim=1)
    if peephole is not None:
        i = i + peephole[0] * c
        f = f + peephole[1] * c
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * act(cand)
    if peephole is not None:
        o = o + peephole[2] * c
    o = torch.sigmoid(o)
    return o * act(c), c, o


class ConvLSTMCell(nn.Module):
    """A ConvLSTM cell. forward(x, state) -> (h, c, o); state None means zeros.

    fused=True computes Wx*x + Wh*h as one convolution over the channel concatenation [x, h]:
    the same function (one bias instead of two summed ones), possible only where x and h share a
    resolution and no per-branch norm or activation sits between the convolutions and the sum.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int, resample: Resample = "same",
                 max_pool: bool = False, norm: str = "none", norm_groups: int = 4,
                 size: Optional[tuple[int, int]] = None,
                 peephole: str = "per_position", bias: bool = True,
                 leaky_slope: Optional[float] = None, fused: bool = False,
                 transpose: bool = True, activation: str = "tanh"):
        super().__init__()
        check_activation(activation)
        self.hidden = hidden
        self.activation = activation
        if fused and (resample != "same" or norm != "none" or leaky_slope is not None):
            raise ValueError("fused gates need resample 'same', norm 'none' and no leaky_slope")
        self.fused = fused
        if fused:
            self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2,
                                  bias=bias)
        else:
            branch = dict(kernel=kernel, norm=norm, norm_groups=norm_groups, size=size,
                          bias=bias, leaky_slope=leaky_slope)
            self.conv_x = GateConv(in_channels, hidden, resample=resample, max_pool=max_pool,
                                   transpose=transpose, **branch)
            self.conv_h = GateConv(hidden, hidden, **branch)
        if peephole == "per_position":
            if size is None:
                raise ValueError("per-position peepholes need the cell's size")
            self.peephole = nn.Parameter(torch.zeros(3, hidden, *size))
        elif peephole == "per_channel":
            self.peephole = nn.Parameter(torch.zeros(3, hidden, 1, 1))
        else:
            self.register_parameter("peephole", None)

    def gates(self, x: Optional[torch.Tensor], h: Optional[torch.Tensor],
              x_gates: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.fused:
            if h is None:
                h = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])
            return self.conv(torch.cat([x, h], dim=1))
        xg = self.conv_x(x) if x_gates is None else x_gates
        if h is None:
            h = zeros_like_gate(xg, self.hidden)
        return xg + self.conv_h(h)

    def forward(self, x: Optional[torch.Tensor], state: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                x_gates: Optional[torch.Tensor] = None):
        """x_gates: conv_x(x) computed already (x is then None): speedups.batched_input_convs."""
        h, c = state if state is not None else (None, None)
        return lstm_update(self.gates(x, h, x_gates), c, self.activation, self.peephole)


class FCLSTMCell(nn.Module):
    """A fully connected LSTM cell: gates = W [x, h] + b (one Linear, one bias per gate, no
    peepholes; nn.LSTMCell has two biases per gate). forward(x (B, in), state or None) ->
    (h, c, o) as ConvLSTMCell; parameters 4*hidden*(in_features + hidden) + 4*hidden."""

    def __init__(self, in_features: int, hidden: int, activation: str = "tanh"):
        super().__init__()
        check_activation(activation)
        self.hidden = hidden
        self.activation = activation
        self.linear = nn.Linear(in_features + hidden, 4 * hidden)

    def forward(self, x: torch.Tensor, state: Optional[tuple[torch.Tensor, torch.Tensor]] = None):
        h, c = state if state is not None else (x.new_zeros(x.shape[0], self.hidden), None)
        return lstm_update(self.linear(torch.cat([x, h], dim=1)), c, self.activation)
