"""SimVP: a recurrent-free encoder - translator - decoder that predicts all frames at once
(Gao et al. 2022, "SimVP: Simpler yet Better Video Prediction"; Tan et al. 2023, SimVP v2's
gated spatiotemporal attention; Tan et al. 2023, TAU, "Temporal Attention Unit").

The k_in known frames go through the same 2D encoder one by one; the translator sees the k_in
encodings stacked along channels (k_in * hid_S channels at 1/2^(N_S/2) of the frame's side) and
maps them to as many channels, which the decoder turns back into k_in frames, one per lead:

    z_t = Enc(x_t)                         t = 1..k_in   (N_S ConvSC blocks, stride 2 every other)
    [y'_1..y'_T] = Translator([z_1..z_T])  (N_T blocks over T * hid_S channels)
    y_t = Readout(Dec(y'_t, skip = first encoder block's output of x_t))

A ConvSC block is conv (k x k; stride 2 when it down-samples; when it up-samples a conv to 4x
the channels and a pixel shuffle) -> GroupNorm(2) -> SiLU.

Translators (`translator`):

- ``gsta`` (SimVP v2): N_T MetaFormer blocks, each
      x = x + s1 * Attn(BN(x)),  x = x + s2 * MLP(BN(x))            (s: per-channel layer scales)
      Attn(x) = x + P2(LKA(GELU(P1(x))))                              (P: 1x1 convs)
      LKA(u) = sigmoid(g) * f,  [f, g] = W1(DW_dilated(DW(u)))         (large-kernel attention, gated)
      MLP(x) = F2(GELU(DW3(F1(x))))                                    (hidden: mlp_ratio x channels)
  the first block maps T*hid_S to hid_T channels and the last back (1x1 reductions);
- ``tau`` (TAU): the same blocks with the temporal attention of TAU
      LKA(u) = SE(u) * W1(DW_dilated(DW(u))) * u,  SE(u) = sigmoid(L2(relu(L1(mean_hw(u)))))
  and the differential divergence regulariser in the loss (`tau_alpha`, OpenSTL's alpha):
      KL(softmax((y_{t+1} - y_t) / tau) || softmax((yhat_{t+1} - yhat_t) / tau)) over pixels;
- ``incepu`` (SimVP v1): a U-Net of N_T inception blocks, each a 1x1 conv to hid_T/2 channels
  and the sum of four grouped convolutions (3, 5, 7, 11) -> GroupNorm -> LeakyReLU(0.2), the
  second half fed the first half's outputs as skips.

Module names and shapes are OpenSTL's `SimVP_Model` (its state_dict keys load here):
46,769,665 parameters for gSTA, 44,656,001 for TAU and 57,946,113 for IncepU in its Moving MNIST
configuration (tests/test_simvp.py counts them on the meta device).

`k_out` frames other than k_in: the forecast is rolled forward, each pass fed the last k_in
frames known or predicted (OpenSTL's approach). Frames are padded to a multiple of the
encoder's down-sampling by base.SequenceModel.forward and cropped back.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NowcastError
from .base import SequenceModel

TRANSLATORS = ("gsta", "tau", "incepu")
LKA_KERNEL = 21          # the large-kernel attention's receptive field (OpenSTL's kernel_size)
LKA_DILATION = 3
INCEP_KERNELS = (3, 5, 7, 11)
INCEP_GROUPS = 8
LAYER_SCALE_INIT = 1e-2
TAU_SOFTNESS = 0.1       # the temperature of the differential divergence (TAU's tau)


# --- encoder and decoder -------------------------------------------------------------------

class ConvNormAct(nn.Module):
    """conv (stride 2 to down-sample; to 4x channels + pixel shuffle to up-sample) ->
    GroupNorm(2) -> SiLU. (OpenSTL's BasicConv2d.)"""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 upsampling: bool):
        super().__init__()
        if upsampling:
            self.conv = nn.Sequential(nn.Conv2d(c_in, 4 * c_out, kernel, 1, padding), nn.PixelShuffle(2))
        else:
            self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding)
        self.norm = nn.GroupNorm(2, c_out)
        self.act = nn.SiLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ConvSC(nn.Module):
    """One encoder or decoder block: ConvNormAct with 'same' padding for its stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, downsampling: bool = False,
                 upsampling: bool = False):
        super().__init__()
        stride = 2 if downsampling else 1
        self.conv = ConvNormAct(c_in, c_out, kernel, stride, (kernel - stride + 1) // 2, upsampling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def samplings(n: int) -> list[bool]:
    """Which of n blocks change the resolution: every second one (False, True, False, ...)."""
    return [i % 2 == 1 for i in range(n)]


class Encoder(nn.Module):
    def __init__(self, c_in: int, hid: int, n: int, kernel: int):
        super().__init__()
        s = samplings(n)
        self.enc = nn.Sequential(ConvSC(c_in, hid, kernel, downsampling=s[0]),
                                 *[ConvSC(hid, hid, kernel, downsampling=d) for d in s[1:]])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent, the first block's output: the decoder's skip)."""
        skip = self.enc[0](x)
        latent = skip
        for block in self.enc[1:]:
            latent = block(latent)
        return latent, skip


class Decoder(nn.Module):
    def __init__(self, hid: int, c_out: int, n: int, kernel: int):
        super().__init__()
        s = list(reversed(samplings(n)))
        self.dec = nn.Sequential(*[ConvSC(hid, hid, kernel, upsampling=u) for u in s])
        self.readout = nn.Conv2d(hid, c_out, 1)

    def forward(self, hid: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        for block in self.dec[:-1]:
            hid = block(hid)
        return self.readout(self.dec[-1](hid + skip))


# --- gSTA and TAU translators ----------------------------------------------------------------

def _conv_init(m: nn.Module) -> None:
    """He-normal on fan-out for convolutions, zero biases; truncated normal (0.02) for the
    squeeze-and-excitation's linear layers (OpenSTL's MetaFormer blocks)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class LargeKernelAttention(nn.Module):
    """A 21x21 receptive field from a 5x5 depth-wise conv, a 7x7 depth-wise conv dilated 3 and
    a 1x1 conv. gated (gSTA): the 1x1 conv gives f and g, output sigmoid(g) * f. temporal
    (TAU): output SE(u) * W1(...) * u, SE a squeeze-and-excitation over the input's channels."""

    def __init__(self, dim: int, temporal: bool, kernel: int = LKA_KERNEL,
                 dilation: int = LKA_DILATION, reduction: int = 16):
        super().__init__()
        d_k = 2 * dilation - 1
        dd_k = kernel // dilation + ((kernel // dilation) % 2 - 1)
        self.temporal = temporal
        self.conv0 = nn.Conv2d(dim, dim, d_k, padding=(d_k - 1) // 2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, dd_k, padding=dilation * (dd_k - 1) // 2,
                                      groups=dim, dilation=dilation)
        self.conv1 = nn.Conv2d(dim, dim if temporal else 2 * dim, 1)
        if temporal:
            squeezed = dim // max(dim // reduction, 4)
            self.fc = nn.Sequential(nn.Linear(dim, squeezed, bias=False), nn.ReLU(),
                                    nn.Linear(squeezed, dim, bias=False), nn.Sigmoid())

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        attn = self.conv1(self.conv_spatial(self.conv0(u)))
        if self.temporal:
            se = self.fc(u.mean(dim=(-2, -1)))[..., None, None]
            return se * attn * u
        f, g = attn.chunk(2, dim=1)
        return torch.sigmoid(g) * f


class Attention(nn.Module):
    """x + P2(LKA(GELU(P1(x))))."""

    def __init__(self, dim: int, temporal: bool):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LargeKernelAttention(dim, temporal)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class DWConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x)


class MixMlp(nn.Module):
    """F2(GELU(DW3(F1(x)))): 1x1 up to the hidden width, a 3x3 depth-wise conv, 1x1 down."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class AttentionBlock(nn.Module):
    """x = x + s1 * Attn(BN(x));  x = x + s2 * MLP(BN(x)) (gSTA's GASubBlock; TAU's with the
    temporal attention)."""

    def __init__(self, dim: int, temporal: bool, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = Attention(dim, temporal)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = MixMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dim))
        self.apply(_conv_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1[:, None, None] * self.attn(self.norm1(x))
        return x + self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x))


class MetaBlock(nn.Module):
    """An attention block, then a 1x1 reduction where the channels change."""

    def __init__(self, c_in: int, c_out: int, temporal: bool, mlp_ratio: float):
        super().__init__()
        self.block = AttentionBlock(c_in, temporal, mlp_ratio)
        self.changes = c_in != c_out
        if self.changes:
            self.reduction = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.block(x)
        return self.reduction(z) if self.changes else z


class MidMetaNet(nn.Module):
    """N_T MetaBlocks: T*hid_S -> hid_T, hid_T -> hid_T (N_T - 2 of them), hid_T -> T*hid_S."""

    def __init__(self, channels: int, hidden: int, n: int, temporal: bool, mlp_ratio: float):
        super().__init__()
        sizes = [channels] + [hidden] * (n - 1) + [channels]
        self.enc = nn.Sequential(*[MetaBlock(a, b, temporal, mlp_ratio)
                                   for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)


# --- the inception U-Net translator (SimVP v1) -------------------------------------------------

class GroupConv2d(nn.Module):
    """A grouped k x k conv -> GroupNorm(groups) -> LeakyReLU(0.2) (groups 1 where the input
    channels do not divide)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int):
        super().__init__()
        groups = groups if c_in % groups == 0 else 1
        self.conv = nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, groups=groups)
        self.norm = nn.GroupNorm(groups, c_out)
        self.activate = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.norm(self.conv(x)))


class Inception(nn.Module):
    """1x1 conv to c_hid channels, then the sum of the grouped convs 3, 5, 7, 11 to c_out."""

    def __init__(self, c_in: int, c_hid: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_hid, 1)
        self.layers = nn.Sequential(*[GroupConv2d(c_hid, c_out, k, INCEP_GROUPS)
                                      for k in INCEP_KERNELS])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return sum(layer(x) for layer in self.layers)


class MidIncepNet(nn.Module):
    """N_T inception blocks down (T*hid_S -> hid_T, then hid_T) and N_T up, each up block after
    the first fed [z, the matching down block's output]; the last maps back to T*hid_S."""

    def __init__(self, channels: int, hidden: int, n: int):
        super().__init__()
        half = hidden // 2
        self.enc = nn.Sequential(Inception(channels, half, hidden),
                                 *[Inception(hidden, half, hidden) for _ in range(n - 1)])
        self.dec = nn.Sequential(Inception(hidden, half, hidden),
                                 *[Inception(2 * hidden, half, hidden) for _ in range(n - 2)],
                                 Inception(2 * hidden, half, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < len(self.enc) - 1:
                skips.append(x)
        x = self.dec[0](x)
        for block, skip in zip(self.dec[1:], reversed(skips)):
            x = block(torch.cat([x, skip], dim=1))
        return x


# --- the model ---------------------------------------------------------------------------------

class SimVP(SequenceModel):
    """SimVP with a gSTA, TAU or IncepU translator over k_in frames (module docstring)."""

    def __init__(self, k_in: int, in_channels: int = 1, hid_S: int = 64, hid_T: int = 512,
                 N_S: int = 4, N_T: int = 8, translator: str = "gsta", mlp_ratio: float = 8.0,
                 kernel: int = 3, output: str = "sigmoid"):
        super().__init__()
        if translator not in TRANSLATORS:
            raise NowcastError(f"translator '{translator}' is not one of: {', '.join(TRANSLATORS)}")
        if N_T < 2:
            raise NowcastError(f"N_T {N_T}: the translator needs at least 2 blocks")
        self.k_in, self.translator = k_in, translator
        self.downsampling = 2 ** (N_S // 2)
        self.enc = Encoder(in_channels, hid_S, N_S, kernel)
        self.dec = Decoder(hid_S, in_channels, N_S, kernel)
        if translator == "incepu":
            self.hid = MidIncepNet(k_in * hid_S, hid_T, N_T)
        else:
            self.hid = MidMetaNet(k_in * hid_S, hid_T, N_T, translator == "tau", mlp_ratio)
        self.set_output(output)

    @property
    def head(self) -> nn.Module:
        """The 1x1 readout: what a residual model's correction comes from (make_residual)."""
        return self.dec.readout

    def once(self, x: torch.Tensor) -> torch.Tensor:
        """k_in patch frames (B, k_in, C, h, w) -> the next k_in raw frames, in one pass."""
        b, t, c, h, w = x.shape
        latent, skip = self.enc(x.reshape(b * t, c, h, w))
        _, c_, h_, w_ = latent.shape
        y = self.hid(latent.reshape(b, t * c_, h_, w_))
        return self.dec(y.reshape(b * t, c_, h_, w_), skip).reshape(b, t, c, h, w)

    def unroll(self, inputs: torch.Tensor, k_out: int, targets: Optional[torch.Tensor],
               teacher_mask: Optional[torch.Tensor], guess: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
        """Passes of k_in frames until k_out are forecast, each fed the last k_in frames known
        or predicted (clipped to the data's range); the last pass's extra frames are dropped."""
        known, outputs = inputs, []
        while len(outputs) < k_out:
            raw = self.once(known[:, -self.k_in:])
            for t in range(raw.shape[1]):
                j = len(outputs)
                if j == k_out:
                    break
                outputs.append(self.readout(raw[:, t], None if guess is None else guess[:, j], j))
            if len(outputs) < k_out:
                fed = torch.stack([self.feedback_frame(o) for o in outputs[-self.k_in:]], dim=1)
                known = torch.cat([known, fed], dim=1)
        return torch.stack(outputs, dim=1)

    def feedback_frame(self, raw: torch.Tensor) -> torch.Tensor:
        """A forecast frame as the next pass's input: in the data's range."""
        return self.feedback(raw, 1, None, None)


def divergence_regulariser(pred: torch.Tensor, target: torch.Tensor,
                           softness: float = TAU_SOFTNESS, eps: float = 1e-12) -> torch.Tensor:
    """TAU's differential divergence: the frame-to-frame changes of forecast and target as
    distributions over pixels, p = softmax(d_pred / tau), q = softmax(d_target / tau), and
    the mean over (B, T-1, pixels) of p log(p / q) (0 for fewer than 3 frames)."""
    b, t = pred.shape[:2]
    if t <= 2:
        return pred.new_zeros(())
    dp = (pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1)
    dt = (target[:, 1:] - target[:, :-1]).reshape(b, t - 1, -1)
    p, q = F.softmax(dp / softness, -1), F.softmax(dt / softness, -1)
    return (p * torch.log(p / (q + eps) + eps)).mean()
