"""The thesis's encoder-forecaster (Shi et al. 2015; Wu 2019) and its FC-LSTM baseline.

An encoder stack reads the input frames; its final (h, c) per layer start the forecaster stack,
which is conditional: it is fed its previous prediction (a zero frame first). Each prediction
is a projection of the concatenated forecaster states (1x1 conv, or a linear layer for FC-LSTM).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..errors import NowcastError
from .base import SequenceModel
from .cell import ConvLSTMCell


class EncoderForecaster(SequenceModel):
    def __init__(self, make_cell: Callable[[int, int, int], nn.Module], hidden_sizes: list[int],
                 head: nn.Module, in_features: int):
        super().__init__()
        ins = [in_features] + list(hidden_sizes[:-1])
        self.encoder = nn.ModuleList(make_cell(i, h, n) for n, (i, h) in enumerate(zip(ins, hidden_sizes)))
        self.forecaster = nn.ModuleList(make_cell(i, h, n) for n, (i, h) in enumerate(zip(ins, hidden_sizes)))
        self.head = head

    # FC-LSTM works on flattened frames; the ConvLSTM version on (B,1,H,W)
    def to_input(self, frame: torch.Tensor) -> torch.Tensor:
        return frame

    def from_output(self, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return out

    @staticmethod
    def run_stack(cells: nn.ModuleList, x: torch.Tensor, states: list) -> list[torch.Tensor]:
        hs = []
        for i, cell in enumerate(cells):
            h, c = cell(x, states[i])[:2]
            states[i] = (h, c)
            hs.append(h)
            x = h
        return hs

    def forward(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor] = None,
                teacher_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        states: list = [None] * len(self.encoder)
        for t in range(inputs.shape[1]):
            # contiguous: a compiled cell guards on strides, which a slice takes from the length
            self.run_stack(self.encoder, self.to_input(inputs[:, t].unsqueeze(1).contiguous()), states)
        frame = torch.zeros_like(inputs[:, :1])
        outputs = []
        for j in range(k_out):
            if j:
                frame = self.feedback(outputs[-1], j, targets, teacher_mask)
            hs = self.run_stack(self.forecaster, self.to_input(frame), states)
            outputs.append(self.from_output(self.head(torch.cat(hs, dim=1)), frame))
        return torch.cat(outputs, dim=1)


def conv_encoder_forecaster(hidden_sizes: list[int], filter_sizes: list[int], image_size: int,
                            stride: int = 1, norm: str = "none", norm_groups: int = 4,
                            peephole: str = "per_position", bias: bool = True,
                            leaky_slope: Optional[float] = None, fused_gates: bool = False,
                            in_channels: int = 1) -> EncoderForecaster:
    if stride != 1:
        raise NowcastError("encoder_forecaster keeps every state at full size: set stride: 1 "
                           "and max_pool: false")

    def make_cell(cin: int, hidden: int, layer: int) -> nn.Module:
        try:
            return ConvLSTMCell(cin, hidden, filter_sizes[layer], norm=norm, norm_groups=norm_groups,
                                size=(image_size, image_size), peephole=peephole, bias=bias,
                                leaky_slope=leaky_slope, fused=fused_gates)
        except ValueError as e:
            raise NowcastError(str(e)) from None

    head = nn.Conv2d(sum(hidden_sizes), in_channels, 1)
    return EncoderForecaster(make_cell, hidden_sizes, head, in_channels)


class _LSTMCell(nn.LSTMCell):
    """nn.LSTMCell with the ConvLSTM cell's call convention: (x, state or None) -> (h, c)."""

    def forward(self, x, state=None):  # noqa: D401
        return super().forward(x, state)


class FCLSTM(EncoderForecaster):
    """FC-LSTM baseline: LSTM layers on flattened frames (Srivastava et al. 2015 via Wu 2019)."""

    def __init__(self, hidden_sizes: list[int], image_size: int):
        pixels = image_size * image_size
        super().__init__(lambda cin, hidden, _: _LSTMCell(cin, hidden), hidden_sizes,
                         nn.Linear(sum(hidden_sizes), pixels), pixels)

    def to_input(self, frame: torch.Tensor) -> torch.Tensor:
        return frame.flatten(1)

    def from_output(self, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return out.view(like.shape)
