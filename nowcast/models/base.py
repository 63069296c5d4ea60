"""What every model shares: the call signature, the mapping of its raw output to frames, and the
autoregressive feed-back of predictions."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..errors import NowcastError


def _relu_frames(raw: torch.Tensor, clip: bool) -> torch.Tensor:
    # the thesis clips at the data's maximum only "in the end": training sees relu(x) unclipped
    frames = torch.relu(raw)
    return frames.clamp(max=1) if clip else frames


# raw head output -> frames; clip=True where frames must lie in the data's [0, 1] (forecasts,
# metrics, the frame fed back), clip=False for the training loss
OUTPUTS: dict[str, Callable[[torch.Tensor, bool], torch.Tensor]] = {
    "sigmoid": lambda raw, clip: torch.sigmoid(raw),
    "relu": _relu_frames,
}


def get_output(name: str) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """The output mapping `name` (a key of OUTPUTS); NowcastError naming the valid ones."""
    try:
        return OUTPUTS[name]
    except KeyError:
        raise NowcastError(f"output '{name}' is not one of: {', '.join(OUTPUTS)}") from None


def to_frames(raw: torch.Tensor, output: str = "sigmoid", clip: bool = True) -> torch.Tensor:
    """Frames from a model's raw output: sigmoid(raw), or relu(raw) [clamped to <= 1 if clip]."""
    return get_output(output)(raw, clip)


class SequenceModel(nn.Module):
    """forward(inputs (B,k_in,H,W) in [0,1], k_out) -> raw output (B,k_out,H,W);
    to_frames(raw, model.output) gives frames ('sigmoid': raw are logits; 'relu': the thesis).

    During training the frame fed back after step j may be the true one: `teacher_mask`
    (B, k_out-1) bool says, per sample and step, where to use `targets` instead of the model's
    own prediction (teacher forcing: all True; scheduled sampling: drawn per sample and step).
    """

    output: str = "sigmoid"

    def set_output(self, output: str) -> None:
        get_output(output)  # refuse an unknown name when the model is built, not when it runs
        self.output = output

    def feedback(self, logits: torch.Tensor, j: int, targets: Optional[torch.Tensor],
                 teacher_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The frame (B,1,H,W) fed in after output j-1 (j >= 1), clipped to the data's range."""
        frame = to_frames(logits, self.output, clip=True)
        if teacher_mask is not None:
            use_true = teacher_mask[:, j - 1].view(-1, *([1] * (frame.dim() - 1)))
            frame = torch.where(use_true, targets[:, j - 1].unsqueeze(1).to(frame.dtype), frame)
        return frame
