"""What every model shares: the call signature, patches (frames folded into channels), the
mapping of its raw output to frames, and the autoregressive feed-back of predictions."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from torch.nn import functional as F

from ..errors import NowcastError
from .motion import extrapolate


def _relu_frames(raw: torch.Tensor, clip: bool) -> torch.Tensor:
    # the thesis clips at the data's maximum only "in the end": training sees relu(x) unclipped
    frames = torch.relu(raw)
    return frames.clamp(max=1) if clip else frames


# raw head output -> frames; clip=True where frames must lie in the data's [0, 1] (forecasts,
# metrics, the frame fed back), clip=False for the training loss
OUTPUTS: dict[str, Callable[[torch.Tensor, bool], torch.Tensor]] = {
    "sigmoid": lambda raw, clip: torch.sigmoid(raw),
    "relu": _relu_frames,
    # the raw values themselves, clamped to [0, 1] only where clip: a residual model's loss then
    # has a gradient at dry pixels too (relu'(0) = 0 would never let rain move into them)
    "linear": lambda raw, clip: raw.clamp(0, 1) if clip else raw,
}


# frames -> the raw output that maps to them (residual models start from the last input frame);
# sigmoid: logits of frames kept EPS from 0 and 1, where a logit is finite
INVERSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": lambda frames: torch.logit(frames, eps=1e-3),
    "relu": lambda frames: frames,
    "linear": lambda frames: frames,
}


# a residual model's first guess (inputs (B, k_in, H, W) in [0, 1], k_out) -> (B, k_out, H, W):
# what its head's output is a change from
# and how the extrapolation samples the rain it moves (Config.guess_sampling; persistence: unused)
GUESSES: dict[str, Callable[[torch.Tensor, int, str], torch.Tensor]] = {
    "persistence": lambda inputs, k_out, sampling="bicubic": inputs[:, -1:].expand(-1, k_out, -1, -1),
    # the last frame moved by the Lucas-Kanade motion of the last three (motion.py)
    "extrapolation": extrapolate,
}


# how a residual model's head output corrects its first guess (SequenceModel.make_residual)
CORRECTIONS = ("free", "gated")


def get_output(name: str) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """The output mapping `name` (a key of OUTPUTS); NowcastError naming the valid ones."""
    try:
        return OUTPUTS[name]
    except KeyError:
        raise NowcastError(f"output '{name}' is not one of: {', '.join(OUTPUTS)}") from None


def to_frames(raw: torch.Tensor, output: str = "sigmoid", clip: bool = True) -> torch.Tensor:
    """Frames from a model's raw output: sigmoid(raw), relu(raw) [clamped to <= 1 if clip], or
    raw [clamped to [0, 1] if clip]."""
    return get_output(output)(raw, clip)


def padded(frames: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (..., H, W) at the bottom/right to a multiple of the model's down-sampling;
    returns the padded frames and (H, W), to crop the output back."""
    h, w = frames.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(frames, (0, pw, 0, ph)) if ph or pw else frames), (h, w)


def to_patches(frames: torch.Tensor, p: int) -> torch.Tensor:
    """(B, T, H, W) -> (B, T, p*p, H/p, W/p): each p x p patch folded into channels
    (space-to-depth), channel ph*p + pw holding pixel (i*p + ph, j*p + pw) of patch (i, j):
    OpenSTL's `reshape_patch` for one-channel frames (tests/test_models.py states the map)."""
    return F.pixel_unshuffle(frames.unsqueeze(2), p) if p > 1 else frames.unsqueeze(2)


def from_patches(patches: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of to_patches: (B, T, p*p, h, w) -> (B, T, h*p, w*p) (depth-to-space)."""
    return (F.pixel_shuffle(patches, p) if p > 1 else patches).squeeze(2)


class SequenceModel(nn.Module):
    """forward(inputs (B,k_in,H,W) in [0,1], k_out) -> raw output (B,k_out,H,W);
    to_frames(raw, model.output) gives frames ('sigmoid': raw are logits; 'relu': the thesis).

    With `patch_size` p > 1 the frames are folded into p*p channels at H/p x W/p before the
    recurrent stack and unfolded after the head (to_patches): every convolution then sees 16x
    fewer positions at p = 4 (OpenSTL's and PredRNN's Moving MNIST setting). A subclass
    implements `unroll(x (B,k_in,C,h,w), k_out, targets (B,k_out,C,h,w) or None, mask)` ->
    (B,k_out,C,h,w) on patch frames (C = p*p). Frames of any size are taken: forward pads
    them with zeros to a multiple of `frame_multiple` (`padded`) and crops the output back, so
    no loss or score sees the padding; a residual model's first guess is computed on the
    frames as given, before the padding.

    During training the frame fed back after step j may be the true one: `teacher_mask`
    (B, k_out-1) bool says, per sample and step, where to use `targets` instead of the model's
    own prediction (teacher forcing: all True; scheduled sampling: drawn per sample and step).
    """

    output: str = "sigmoid"
    patch_size: int = 1
    residual: bool = False  # raw output = INVERSES[output](first guess) + head (readout)
    first_guess: str = "persistence"  # residual: the GUESSES entry the head's output corrects
    correction: str = "free"  # residual: how the head's output corrects it (CORRECTIONS)
    guess_sampling: str = "bicubic"  # residual extrapolation: how the moved rain is sampled
    downsampling: int = 1  # of the recurrent states, on patch frames (ConvLSTMED: 2 per down layer)
    memory_format: torch.memory_format = torch.contiguous_format  # of the frames fed to a step
    cuda_graphs: bool = False  # compiled cells replayed as CUDA graphs (speedups.cuda_graphs)

    @property
    def frame_multiple(self) -> int:
        """What a frame's sides must divide by: the patch times the states' down-sampling."""
        return self.patch_size * self.downsampling

    def set_output(self, output: str) -> None:
        get_output(output)  # refuse an unknown name when the model is built, not when it runs
        self.output = output

    def make_residual(self, first_guess: str = "persistence", correction: str = "free",
                      k_out: int = 1, guess_sampling: str = "bicubic") -> None:
        """Predict the change from a first guess (GUESSES; see readout) so that an untrained
        model forecasts the first guess: at lead 1 persistence is hard to beat (CSI-20 0.47 on
        KNMI-30/60, where a model learning every frame from nothing began at 0.18 after 49 CPU
        minutes), and the head has then only what the guess misses to learn (with persistence:
        the motion and the growth; with extrapolation: the growth, decay and the errors of the
        motion).

        correction (CORRECTIONS): "free", the head set to zero and its output added as it is;
        "gated", the head keeps its random initialisation and its output is multiplied by a
        per-lead gate g_j initialised at 0 (`lead_gate`, k_out values; leads past k_out use the
        last), so that each lead's correction grows only as far as the gradient of that lead
        pays for it (a zero head times a zero gate would have no gradient at all)."""
        if first_guess not in GUESSES:
            raise NowcastError(f"first_guess '{first_guess}' is not one of: {', '.join(GUESSES)}")
        if correction not in CORRECTIONS:
            raise NowcastError(f"correction '{correction}' is not one of: {', '.join(CORRECTIONS)}")
        self.residual, self.first_guess, self.correction = True, first_guess, correction
        self.guess_sampling = guess_sampling
        if correction == "gated":
            self.lead_gate = nn.Parameter(torch.zeros(max(1, k_out), device=next(
                self.head.parameters()).device))
            return
        for p in self.head.parameters():
            nn.init.zeros_(p)

    def guess(self, inputs: torch.Tensor, k_out: int) -> Optional[torch.Tensor]:
        """The first guess (B, k_out, H, W) of a residual model, None otherwise: computed in
        float32 and without gradients (it has no weights; bf16 would move the rain)."""
        if not self.residual:
            return None
        if inputs.is_meta:  # shapes only (models.check_frame_size): grid_sample has no meta kernel
            return GUESSES["persistence"](inputs, k_out)
        with torch.no_grad(), torch.autocast(inputs.device.type, enabled=False):
            return GUESSES[self.first_guess](inputs.float(), k_out, self.guess_sampling)

    def readout(self, raw: torch.Tensor, guess: Optional[torch.Tensor], lead: int = 0) -> torch.Tensor:
        """The head's output -> raw output: where residual, INVERSES[output](guess) + c, with
        c = raw (correction "free") or c = g_lead * raw ("gated"; guess: this lead's first
        guess, patch frames; lead counts from 0), in float32: an untrained residual model
        forecasts its first guess to the bit (tests/test_selection.py)."""
        if guess is None:
            return raw
        raw = raw.float()  # in float32: a bf16 sum would round the guess (0.14 dBZ at 40 dBZ)
        if self.correction == "gated":
            raw = raw * self.lead_gate[min(lead, self.lead_gate.numel() - 1)].float()
        return raw + INVERSES[self.output](guess.float())

    def forward(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor] = None,
                teacher_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        p, m = self.patch_size, self.frame_multiple
        if self.cuda_graphs and torch.is_grad_enabled():
            torch.compiler.cudagraph_mark_step_begin()  # a new step: earlier replays' outputs are free
        guess = self.guess(inputs, k_out)  # on the frames as given: the padding moves no rain
        inputs, (h, w) = padded(inputs, m)
        folded = None if targets is None else to_patches(padded(targets, m)[0], p)
        guess = None if guess is None else to_patches(padded(guess, m)[0], p)
        out = from_patches(self.unroll(to_patches(inputs, p), k_out, folded, teacher_mask, guess), p)
        return out[..., :h, :w]

    def unroll(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor],
               teacher_mask: Optional[torch.Tensor], guess: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
        """Patch frames in -> raw patch frames out; `guess` (B, k_out, C, h, w) or None goes to
        readout, lead by lead."""
        raise NotImplementedError

    def autoregress(self, step: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                    k_out: int, targets: Optional[torch.Tensor],
                    teacher_mask: Optional[torch.Tensor], guess: Optional[torch.Tensor],
                    encode: Optional[Callable[[int], torch.Tensor]] = None) -> torch.Tensor:
        """One recurrence over the input frames, then over its own predictions: `step(frame
        (B,C,h,w)) -> raw` (which carries its states) is run on each input frame, the last of
        which already predicts lead 1, then on each fed-back frame (feedback). `encode(t) ->
        raw`, where given, replaces step on input frame t (a model that computed part of every
        input step at once: speedups.batched_input_convs)."""
        for t in range(inputs.shape[1]):
            # contiguous: a slice's strides depend on the sequence length, and a compiled cell
            # guards on strides (it would compile again for every curriculum length)
            raw = encode(t) if encode else step(inputs[:, t].contiguous(memory_format=self.memory_format))
        lead = (lambda j: None) if guess is None else (lambda j: guess[:, j])
        outputs = [self.readout(raw, lead(0), 0)]
        for j in range(1, k_out):
            raw = step(self.feedback(outputs[-1], j, targets, teacher_mask))
            outputs.append(self.readout(raw, lead(j), j))
        return torch.stack(outputs, dim=1)

    def feedback(self, logits: torch.Tensor, j: int, targets: Optional[torch.Tensor],
                 teacher_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The frame (B,C,h,w) fed in after output j-1 (j >= 1), clipped to the data's range."""
        frame = to_frames(logits, self.output, clip=True)
        if teacher_mask is not None:
            use_true = teacher_mask[:, j - 1].view(-1, *([1] * (frame.dim() - 1)))
            frame = torch.where(use_true, targets[:, j - 1].to(frame.dtype), frame)
        return frame
