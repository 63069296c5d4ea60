"""What every model shares: the call signature and the autoregressive feed-back of predictions."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class SequenceModel(nn.Module):
    """forward(inputs (B,k_in,H,W) in [0,1], k_out) -> logits (B,k_out,H,W); sigmoid gives frames.

    During training the frame fed back after step j may be the true one: `teacher_mask`
    (B, k_out-1) bool says, per sample and step, where to use `targets` instead of the model's
    own prediction (teacher forcing: all True; scheduled sampling: drawn per sample and step).
    """

    def feedback(self, logits: torch.Tensor, j: int, targets: Optional[torch.Tensor],
                 teacher_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The frame (B,1,H,W) fed in after output j-1 (j >= 1)."""
        frame = torch.sigmoid(logits)
        if teacher_mask is not None:
            use_true = teacher_mask[:, j - 1].view(-1, *([1] * (frame.dim() - 1)))
            frame = torch.where(use_true, targets[:, j - 1].unsqueeze(1).to(frame.dtype), frame)
        return frame
