"""Motion from the last input frames and its semi-Lagrangian advection, in torch: the first
guess a residual model with `first_guess: extrapolation` corrects (base.SequenceModel.guess).

The idea of the pysteps Lucas-Kanade extrapolation baseline (baselines.extrapolation), batched
and on the model's device, so that a model can call it at every training step (pysteps runs one
window at a time on the CPU, about 0.2 s for a KNMI-30/60 window):

- `motion`: the brightness-constancy equation I_t + u I_x + v I_y = 0 solved by least squares in
  Gaussian windows (Lucas & Kanade 1981), summed over the pairs of the last 3 frames, coarse to
  fine over a pyramid with the earlier frame warped by the estimate so far. Each window solves
  (S + lam I) dV = -b + lam (V_domain - V), S and b the windowed sums of grad I grad I^T and
  grad I * I_t, lam = PRIOR x the energy tr S of the windows that hold texture (the tr S-weighted
  mean of tr S: the pull does not weaken as the dry share of the domain grows): where a window
  has no texture (dry) the motion is the domain's mean motion, which is what brings rain into a
  dry area. The domain's mean motion solves the windows' equations summed, each weighted by
  lam_min / lam_max of its S (Shi & Tomasi 1994: 1 where texture fixes both components, 0 along a
  line, whose motion along itself is unknown): a streak of clutter that comes and goes at the
  radar's rim, the only texture of a near-dry frame, no longer sets the whole domain moving;
- `advect`: backward semi-Lagrangian extrapolation, forecast_k(x) = I(x - D_k(x)) with
  D_k(x) = D_{k-1}(x) + V(x - D_{k-1}(x)) (V sampled bilinearly; I bicubically, Keys' cubic
  convolution with a = -0.75, clamped to [0, 1]; what comes from outside the grid is 0, as NaN
  is 0 in the pysteps baseline). Bicubic, not bilinear, for the rain itself: a bilinear sample
  between grid points averages a cell's peak with its flanks, and on 4 km blocks of winter rain,
  whose 20 dBZ echoes are cells of a block or two, one such sample lost 44 % of the area at or
  above 20 dBZ at the first lead (frequency bias 0.56 on the winter validation windows, 0.92
  bicubic; validation skill 0.507 -> 0.570, MAE 0.103 -> 0.105 dBZ; on MeteoSwiss's convective
  validation events no change in skill: `python benchmarks/guess_sampling.py`,
  docs/radar_skill.md section 10).

Pixel units, one time step per frame; V[:, 0] is along the width (x), V[:, 1] along the height.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

LEVELS = 3      # pyramid levels (each halves the side): displacements of a few pixels per step
SIGMA = 4.0     # the Gaussian window's standard deviation, in pixels of each level
ITERATIONS = 2  # warp-and-solve passes per level
PRIOR = 0.05    # lam, relative to the domain's mean gradient energy: the pull to the mean motion


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of (B, C, H, W), edges replicated."""
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = (g / g.sum()).repeat(x.shape[1], 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(-1, 1, 1, 2 * r + 1),
                 groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), g.view(-1, 1, 2 * r + 1, 1),
                    groups=x.shape[1])


def _gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences along the width and the height, edges replicated."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2, (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2


def sample(field: torch.Tensor, displacement: torch.Tensor, padding: str = "zeros",
           mode: str = "bilinear") -> torch.Tensor:
    """field(x - displacement(x)): (B, C, H, W) sampled (bilinearly, or `mode`) at the points
    displaced upstream by (B, 2, H, W) pixels."""
    B, _, H, W = field.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=field.dtype, device=field.device),
                            torch.arange(W, dtype=field.dtype, device=field.device), indexing="ij")
    x = (xs - displacement[:, 0]) * (2 / max(W - 1, 1)) - 1
    y = (ys - displacement[:, 1]) * (2 / max(H - 1, 1)) - 1
    return F.grid_sample(field, torch.stack((x, y), dim=-1), mode=mode,
                         padding_mode=padding, align_corners=True)


def _structure(pairs: list[tuple[torch.Tensor, torch.Tensor]], V: torch.Tensor) -> torch.Tensor:
    """(B, 5, H, W): Ix^2, Ix Iy, Iy^2, Ix It, Iy It summed over the frame pairs (earlier frame
    warped by V), before windowing."""
    terms = 0
    for prev, curr in pairs:
        warped = sample(prev, V, padding="border")
        ix, iy = _gradient((warped + curr) / 2)
        it = curr - warped
        terms = terms + torch.cat((ix * ix, ix * iy, iy * iy, ix * it, iy * it), dim=1)
    return terms


def _solve(s: torch.Tensor, toward: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The increment dV of (S + lam I) dV = -b + lam * toward, per pixel (or per domain)."""
    a, c, d = s[:, 0:1] + lam, s[:, 1:2], s[:, 2:3] + lam
    r1, r2 = -s[:, 3:4] + lam * toward[:, 0:1], -s[:, 4:5] + lam * toward[:, 1:2]
    det = a * d - c * c
    return torch.cat(((d * r1 - c * r2) / det, (a * r2 - c * r1) / det), dim=1)


def _cornerness(s: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): lam_min / lam_max of each window's [[Ix^2, Ix Iy], [Ix Iy, Iy^2]] (0 where
    there is no texture)."""
    a, c, d = s[:, 0:1], s[:, 1:2], s[:, 2:3]
    half, root = (a + d) / 2, torch.sqrt(((a - d) / 2) ** 2 + c * c)
    return ((half - root) / (half + root + 1e-12)).clamp(min=0)


def _textured_energy(s: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1): the windows' gradient energy tr S averaged with tr S as the weight: the
    energy of a window with texture, whatever share of the domain is dry."""
    trace = s[:, 0:1] + s[:, 2:3]
    return (trace * trace).sum(dim=(2, 3), keepdim=True) / (trace.sum(dim=(2, 3), keepdim=True) + 1e-12)


def motion(frames: torch.Tensor) -> torch.Tensor:
    """(B, T >= 2, H, W) -> the motion (B, 2, H, W) of the last frames, pixels per step."""
    frames = frames[:, -3:].float().unsqueeze(2)
    pyramid = [frames]
    for _ in range(LEVELS - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1].flatten(0, 1), 2, ceil_mode=True)
                       .unflatten(0, frames.shape[:2]))
    B = frames.shape[0]
    V = frames.new_zeros(B, 2, *pyramid[-1].shape[-2:])
    mean = frames.new_zeros(B, 2, 1, 1)
    for level in reversed(pyramid):
        if V.shape[-2:] != level.shape[-2:]:
            scale = level.shape[-1] / V.shape[-1]
            V = F.interpolate(V, size=level.shape[-2:], mode="bilinear", align_corners=False) * scale
            mean = mean * scale
        pairs = [(level[:, t], level[:, t + 1]) for t in range(level.shape[1] - 1)]
        for _ in range(ITERATIONS):
            # the domain's mean motion: the windows' equations, warped by that motion alone,
            # summed with the weight of how well each window's texture fixes both components
            s = _blur(_structure(pairs, mean.expand_as(V)), SIGMA)
            s = (s * _cornerness(s)).mean(dim=(2, 3), keepdim=True)
            mean = mean + _solve(s, torch.zeros_like(mean), 1e-3 * (s[:, 0:1] + s[:, 2:3]) + 1e-12)
            s = _blur(_structure(pairs, V), SIGMA)
            V = V + _solve(s, mean - V, PRIOR * _textured_energy(s) + 1e-12)
    return V


def advect(frame: torch.Tensor, V: torch.Tensor, k_out: int, sampling: str = "bicubic") -> torch.Tensor:
    """(B, H, W) advected by V (B, 2, H, W) for k_out steps -> (B, k_out, H, W), the rain
    sampled by `sampling` (bicubic; bilinear: as before 2026-12-07, Config.guess_sampling)."""
    frame, D, out = frame.float().unsqueeze(1), torch.zeros_like(V), []
    for _ in range(k_out):
        D = D + sample(V, D, padding="border")
        out.append(sample(frame, D, mode=sampling).clamp(0, 1))  # cubic overshoot: no rain < 0
    return torch.cat(out, dim=1)


def extrapolate(inputs: torch.Tensor, k_out: int, sampling: str = "bicubic") -> torch.Tensor:
    """(B, k_in, H, W) -> (B, k_out, H, W): the last input frame moved by the motion of the
    last three (advect's `sampling`)."""
    return advect(inputs[:, -1], motion(inputs), k_out, sampling)
