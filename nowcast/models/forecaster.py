"""The thesis's encoder-forecaster (Shi et al. 2015; Wu 2019) and its FC-LSTM baseline.

ConvLSTM: an encoder stack reads the input frames; its final (h, c) per layer start the
forecaster stack, which is conditional: it is fed its previous prediction (a zero frame first).
Each prediction comes from the forecaster's hidden states through the head: a 1x1 convolution
over all of them concatenated (head "1x1", the thesis's text), or a 1 x W convolution along each
row of the last one's (head "row": the Keras Conv3D(kernel_size=(1, 1, W)) of the thesis's code,
W = 64 for its 1- and 2-layer models, 32 for its 3-layer model; docs/thesis_models.md).

FC-LSTM (hidden_sizes [encoder, forecaster]): an encoder LSTM reads the flattened frames; a
forecaster LSTM, started from the encoder's final (h, c), is fed the encoder's final hidden
vector at every output step; a dense layer maps its hidden vector to a frame. With 2048 units
on 64x64 frames that is Wu 2019's 92,295,168 parameters (docs/thesis_models.md).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NowcastError
from .base import SequenceModel
from .cell import ConvLSTMCell, FCLSTMCell


class EncoderForecaster(SequenceModel):
    def __init__(self, make_cell: Callable[[int, int, int], nn.Module], hidden_sizes: list[int],
                 head: nn.Module, in_features: int, output: str = "sigmoid",
                 head_reads_all: bool = True):
        super().__init__()
        self.set_output(output)
        self.head_reads_all = head_reads_all  # False: the head reads the last layer only
        ins = [in_features] + list(hidden_sizes[:-1])
        self.encoder = nn.ModuleList(make_cell(i, h, n) for n, (i, h) in enumerate(zip(ins, hidden_sizes)))
        self.forecaster = nn.ModuleList(make_cell(i, h, n) for n, (i, h) in enumerate(zip(ins, hidden_sizes)))
        self.head = head

    @staticmethod
    def run_stack(cells: nn.ModuleList, x: torch.Tensor, states: list) -> list[torch.Tensor]:
        hs = []
        for i, cell in enumerate(cells):
            h, c = cell(x, states[i])[:2]
            states[i] = (h, c)
            hs.append(h)
            x = h
        return hs

    def unroll(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor] = None,
               teacher_mask: Optional[torch.Tensor] = None, guess: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
        states: list = [None] * len(self.encoder)
        for t in range(inputs.shape[1]):
            # contiguous: a compiled cell guards on strides, which a slice takes from the length
            self.run_stack(self.encoder, inputs[:, t].contiguous(), states)
        frame = torch.zeros_like(inputs[:, 0])
        outputs = []
        for j in range(k_out):
            if j:
                frame = self.feedback(outputs[-1], j, targets, teacher_mask)
            hs = self.run_stack(self.forecaster, frame, states)
            raw = self.head(torch.cat(hs, dim=1) if self.head_reads_all else hs[-1])
            outputs.append(self.readout(raw, None if guess is None else guess[:, j], j))
        return torch.stack(outputs, dim=1)


class RowConv(nn.Conv2d):
    """A 1 x W convolution along each row with Keras's 'same' padding: (W-1)//2 columns on the
    left, W//2 on the right (the thesis code's Conv3D((1, 1, W))). Padded explicitly: torch's
    padding='same' warns on every even W."""

    def __init__(self, in_channels: int, out_channels: int, width: int):
        super().__init__(in_channels, out_channels, (1, width))
        self.pad = ((width - 1) // 2, width // 2, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


def conv_encoder_forecaster(hidden_sizes: list[int], filter_sizes: list[int],
                            size: tuple[int, int], stride: int = 1, norm: str = "none",
                            norm_groups: int = 4, peephole: str = "per_position", bias: bool = True,
                            leaky_slope: Optional[float] = None, fused_gates: bool = False,
                            in_channels: int = 1, activation: str = "tanh",
                            output: str = "sigmoid", head: str = "1x1",
                            head_width: Optional[int] = None) -> EncoderForecaster:
    """Encoder and forecaster stacks of ConvLSTM cells (1-channel input to both) and a head:
    "1x1": nn.Conv2d(sum(hidden_sizes), 1, 1), sum(hidden_sizes) + 1 parameters; "row":
    RowConv(hidden_sizes[-1], 1, W), hidden_sizes[-1] * W + 1 parameters."""
    if stride != 1:
        raise NowcastError(f"encoder_forecaster keeps every state at full size: stride must be 1, "
                           f"got {stride}")

    def make_cell(cin: int, hidden: int, layer: int) -> nn.Module:
        try:
            return ConvLSTMCell(cin, hidden, filter_sizes[layer], norm=norm, norm_groups=norm_groups,
                                size=size, peephole=peephole, bias=bias,
                                leaky_slope=leaky_slope, fused=fused_gates, activation=activation)
        except ValueError as e:
            raise NowcastError(str(e)) from None

    if head == "row":
        out = RowConv(hidden_sizes[-1], in_channels, head_width or 64)
    elif head in (None, "1x1"):
        out = nn.Conv2d(sum(hidden_sizes), in_channels, 1)
    else:
        raise NowcastError(f"unknown head '{head}' (choose from 1x1, row)")
    return EncoderForecaster(make_cell, hidden_sizes, out, in_channels, output=output,
                             head_reads_all=head != "row")


class FCLSTM(SequenceModel):
    """FC-LSTM encoder-forecaster on flattened frames (Wu 2019's baseline, after Srivastava et
    al. 2015). hidden_sizes = [encoder, forecaster], equal (the forecaster starts from the
    encoder's state). Parameters: 4E(P+E)+4E + 4F(E+F)+4F + F*P+P for P pixels.

    The forecaster is not conditional on its predictions: teacher forcing does not apply.
    """

    def __init__(self, hidden_sizes: list[int], size: tuple[int, int], activation: str = "tanh",
                 output: str = "sigmoid"):
        super().__init__()
        self.set_output(output)
        if len(hidden_sizes) != 2 or hidden_sizes[0] != hidden_sizes[1]:
            raise NowcastError(f"fc_lstm: hidden_sizes must be [encoder, forecaster] with equal "
                               f"sizes (the forecaster starts from the encoder's state), "
                               f"got {hidden_sizes}")
        hidden, pixels = hidden_sizes[0], size[0] * size[1]
        try:
            self.encoder = FCLSTMCell(pixels, hidden, activation)
            self.forecaster = FCLSTMCell(hidden, hidden, activation)
        except ValueError as e:
            raise NowcastError(str(e)) from None
        self.head = nn.Linear(hidden, pixels)

    def unroll(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor] = None,
               teacher_mask: Optional[torch.Tensor] = None, guess: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
        # targets, teacher_mask and guess are not read: no frame is fed back, and options.py
        # refuses residual for fc_lstm
        state = None
        for t in range(inputs.shape[1]):
            # contiguous: a compiled cell guards on strides, which a slice takes from the length
            state = self.encoder(inputs[:, t].flatten(1).contiguous(), state)[:2]
        summary = state[0]
        outputs = []
        for _ in range(k_out):
            state = self.forecaster(summary, state)[:2]
            outputs.append(self.head(state[0]).view(inputs.shape[0], *inputs.shape[2:]))
        return torch.stack(outputs, dim=1)
