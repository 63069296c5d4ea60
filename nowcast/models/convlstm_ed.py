"""The seed's ConvLSTM encoder-decoder: one stack of cells, down-sampling in its first half and
up-sampling in its second (transposed convolutions, or with transpose: false nearest-neighbour
resize + convolution), run over the input frames and then over its own predictions."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import NowcastError
from .base import SequenceModel
from .cell import ConvLSTMCell


# how each resampling changes a frame side
SCALE = {"down": 0.5, "up": 2, "same": 1}


def layer_plan(n_layers: int, stride: int) -> list[str]:
    """Resampling of each layer's input branch: first half 'down', second half 'up' at stride 2."""
    if stride == 1:
        return ["same"] * n_layers
    return ["down"] * (n_layers // 2) + ["up"] * (n_layers // 2)


def total_downsampling(n_layers: int, stride: int) -> int:
    """The factor a frame's sides must divide by: 2 per 'down' layer of layer_plan."""
    return 2 ** layer_plan(n_layers, stride).count("down")


class ConvLSTMED(SequenceModel):
    def __init__(self, hidden_sizes: list[int], filter_sizes: list[int], size: tuple[int, int],
                 stride: int = 2, max_pool: bool = True, transpose: bool = True,
                 norm: str = "none", norm_groups: int = 4, peephole: str = "per_position",
                 bias: bool = False, leaky_slope: Optional[float] = None,
                 feed_upward: str = "hidden", fused_gates: bool = False, in_channels: int = 1,
                 activation: str = "tanh", output: str = "sigmoid"):
        super().__init__()
        self.set_output(output)
        n = len(hidden_sizes)
        if stride == 2 and n % 2:
            raise NowcastError(f"stride 2 needs an even number of layers (down then up), got {n}")
        if stride == 1 and max_pool:
            raise NowcastError("max_pool down-samples: it needs stride 2 (set max_pool: false)")
        self.downsampling = total_downsampling(n, stride)
        if size[0] % self.downsampling or size[1] % self.downsampling:
            raise NowcastError(f"frame size {size[0]}x{size[1]} is not divisible by the total "
                               f"down-sampling {self.downsampling} of {n} layers at stride 2")
        self.feed_upward = feed_upward
        self.plan = layer_plan(n, stride)
        # speedups.batched_input_convs and zero_state switch these on (the same function)
        self.batch_input_convs, self.zero_state = False, False
        cells, channels = [], in_channels
        for hidden, kernel, resample in zip(hidden_sizes, filter_sizes, self.plan):
            size = tuple(int(s * SCALE[resample]) for s in size)
            try:
                cells.append(ConvLSTMCell(channels, hidden, kernel, resample=resample,
                                          max_pool=max_pool, norm=norm, norm_groups=norm_groups,
                                          size=size, peephole=peephole, bias=bias,
                                          leaky_slope=leaky_slope, fused=fused_gates,
                                          transpose=transpose, activation=activation))
            except ValueError as e:
                raise NowcastError(str(e)) from None
            channels = hidden
        self.cells = nn.ModuleList(cells)
        self.head = nn.Conv2d(channels, in_channels, 1, bias=False)

    def step(self, frame: Optional[torch.Tensor], states: list,
             x_gates: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One time step through the stack; x_gates: the first cell's input branch already
        computed for this frame (frame is then None)."""
        x = frame
        for i, cell in enumerate(self.cells):
            h, c, o = cell(x, states[i], x_gates if i == 0 else None)
            states[i] = (h, c)
            x = o if self.feed_upward == "output_gate" else h
        return self.head(h)

    def zero_states(self, inputs: torch.Tensor) -> list:
        """(h, c) zeros for every cell at its resolution (in the frames' layout), where the cells
        would otherwise make them from None: the same values, one call signature per cell. In
        training they require a gradient, as every later state does (a compiled cell guards on
        it): the gradient of the first step's state is computed and dropped, about 1% of a
        step, for half the compiled graphs."""
        b, size = inputs.shape[0], inputs.shape[-2:]
        states = []
        for cell, resample in zip(self.cells, self.plan):
            size = tuple(int(s * SCALE[resample]) for s in size)
            zero = inputs.new_zeros(b, cell.hidden, *size).contiguous(memory_format=self.memory_format)
            zero.requires_grad_(torch.is_grad_enabled())
            states.append((zero, zero.clone()))
        return states

    def input_gates(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """The first cell's input branch over all k_in known frames in one call (a batch k_in
        times larger: larger GEMMs), time-major so that each step's slice is contiguous; every
        layer of a branch (conv, max-pool, norm, LeakyReLU) works per sample, so each slice is
        what the step would have computed."""
        b, t = inputs.shape[:2]
        frames = inputs.transpose(0, 1).flatten(0, 1).contiguous(memory_format=self.memory_format)
        return list(self.cells[0].conv_x(frames).unflatten(0, (t, b)).unbind(0))

    def unroll(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor] = None,
               teacher_mask: Optional[torch.Tensor] = None, guess: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
        states: list = self.zero_states(inputs) if self.zero_state else [None] * len(self.cells)
        encode = None
        if self.batch_input_convs:
            known = self.input_gates(inputs)
            encode = lambda t: self.step(None, states, known[t])  # noqa: E731
        return self.autoregress(lambda frame: self.step(frame, states), inputs, k_out, targets,
                                teacher_mask, guess, encode)
