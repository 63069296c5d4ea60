"""PredRNN (Wang et al., NeurIPS 2017): a stack of spatiotemporal LSTM (ST-LSTM) cells with a
second memory M that zig-zags: up through the layers at step t, then from the top layer at t to
the bottom layer at t+1. Each cell, with `*` a convolution, `.` the Hadamard product, s the
sigmoid and act tanh (or ReLU, `activation`):

    [i, f, g, i', f', g', o]_x = Wx * x     [i, f, g, o]_h = Wh * h     [i', f', g']_m = Wm * M
    c' = s(f_x + f_h + 1) . c + s(i_x + i_h) . act(g_x + g_h)        the temporal memory
    M' = s(f'_x + f'_m + 1) . M + s(i'_x + i'_m) . act(g'_x + g'_m)  the spatiotemporal memory
    o  = s(o_x + o_h + Wo * [c', M'])
    h' = o . act(W1 * [c', M'])                                      W1: a 1x1 convolution

The +1 is the forget bias of the paper's code (OpenSTL's `_forget_bias`): both memories start
out remembering. Wx, Wh, Wm and Wo are k x k convolutions, each one branch (cell.GateConv:
conv [-> norm]; OpenSTL's `layer_norm` is `norm: layer`); their output channels are split in the
order written above, OpenSTL's `SpatioTemporalLSTMCell` order, so its weights map one to one
(tests/test_predrnn.py). M has the same channels in every layer: hidden_sizes are equal.

The stack is run as ConvLSTMED runs its own (base.SequenceModel.autoregress): over the input
frames, then over its predictions (scheduled sampling as in the paper: scheduled_sampling true,
ss_decay_steps 50000, ss_min 0); its head is a 1x1 convolution of the top layer's h, no bias.
The loss is on the k_out forecasts, as for every architecture here (OpenSTL's also scores the
reconstruction of input frames 2..k_in).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import NowcastError
from .base import SequenceModel
from .cell import ACTIVATIONS, GateConv, check_activation

FORGET_BIAS = 1.0


class STLSTMCell(nn.Module):
    """forward(x, state (h, c) or None, m or None) -> (h', c', M'); None means zeros."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, norm: str = "none",
                 norm_groups: int = 4, size: Optional[tuple[int, int]] = None, bias: bool = False,
                 activation: str = "tanh"):
        super().__init__()
        check_activation(activation)
        self.hidden, self.activation = hidden, activation
        branch = dict(kernel=kernel, norm=norm, norm_groups=norm_groups, size=size, bias=bias)
        self.conv_x = GateConv(in_channels, hidden, gates=7, **branch)
        self.conv_h = GateConv(hidden, hidden, gates=4, **branch)
        self.conv_m = GateConv(hidden, hidden, gates=3, **branch)
        self.conv_o = GateConv(2 * hidden, hidden, gates=1, **branch)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x: torch.Tensor, state: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                m: Optional[torch.Tensor] = None):
        act = ACTIVATIONS[self.activation]
        xg = self.conv_x(x)
        zeros = xg.new_zeros(xg.shape[0], self.hidden, *xg.shape[2:])
        h, c = state if state is not None else (zeros, zeros)
        m = zeros if m is None else m
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = xg.chunk(7, dim=1)
        i_h, f_h, g_h, o_h = self.conv_h(h).chunk(4, dim=1)
        i_m, f_m, g_m = self.conv_m(m).chunk(3, dim=1)
        c = torch.sigmoid(f_x + f_h + FORGET_BIAS) * c + torch.sigmoid(i_x + i_h) * act(g_x + g_h)
        m = torch.sigmoid(f_xm + f_m + FORGET_BIAS) * m + torch.sigmoid(i_xm + i_m) * act(g_xm + g_m)
        memories = torch.cat([c, m], dim=1)
        o = torch.sigmoid(o_x + o_h + self.conv_o(memories))
        return o * act(self.conv_last(memories)), c, m


class PredRNN(SequenceModel):
    def __init__(self, hidden_sizes: list[int], filter_sizes: list[int], size: tuple[int, int],
                 norm: str = "none", norm_groups: int = 4, bias: bool = False, in_channels: int = 1,
                 activation: str = "tanh", output: str = "sigmoid"):
        super().__init__()
        self.set_output(output)
        if len(set(hidden_sizes)) != 1:
            raise NowcastError(f"predrnn: the memory M flows through every layer, so hidden_sizes "
                               f"must be equal, got {hidden_sizes}")
        hidden = hidden_sizes[0]
        try:
            self.cells = nn.ModuleList(
                STLSTMCell(in_channels if n == 0 else hidden, hidden, kernel, norm=norm,
                           norm_groups=norm_groups, size=size, bias=bias, activation=activation)
                for n, kernel in enumerate(filter_sizes))
        except ValueError as e:
            raise NowcastError(str(e)) from None
        self.head = nn.Conv2d(hidden, in_channels, 1, bias=False)

    def step(self, frame: torch.Tensor, states: list, m: Optional[torch.Tensor]):
        """One time step up the stack: (raw frame, M after the top layer: the bottom's next)."""
        x = frame
        for i, cell in enumerate(self.cells):
            x, c, m = cell(x, states[i], m)
            states[i] = (x, c)
        return self.head(x), m

    def unroll(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor] = None,
               teacher_mask: Optional[torch.Tensor] = None, guess: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
        states: list = [None] * len(self.cells)
        memory: list = [None]  # the zig-zag: the top layer's M at t is the bottom layer's at t+1

        def step(frame: torch.Tensor) -> torch.Tensor:
            raw, memory[0] = self.step(frame, states, memory[0])
            return raw
        return self.autoregress(step, inputs, k_out, targets, teacher_mask, guess)
