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
        cells, channels = [], in_channels
        scale = {"down": 0.5, "up": 2, "same": 1}
        for hidden, kernel, resample in zip(hidden_sizes, filter_sizes, layer_plan(n, stride)):
            size = tuple(int(s * scale[resample]) for s in size)
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

    def step(self, frame: torch.Tensor, states: list) -> torch.Tensor:
        x = frame
        for i, cell in enumerate(self.cells):
            h, c, o = cell(x, states[i])
            states[i] = (h, c)
            x = o if self.feed_upward == "output_gate" else h
        return self.head(h)

    def unroll(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor] = None,
               teacher_mask: Optional[torch.Tensor] = None, guess: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
        states: list = [None] * len(self.cells)
        return self.autoregress(lambda frame: self.step(frame, states), inputs, k_out, targets,
                                teacher_mask, guess)
