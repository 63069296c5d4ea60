"""Where and how tensors are computed: device, precision, compilation, determinism.

`mode` is what env.json reports: `reference` (fp32, eager: bit-identical results on CPU) or
`fast` (bf16 autocast and/or torch.compile).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from .errors import NowcastError


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed; `mode` is what env.json reports."""
    device: torch.device
    precision: str      # fp32 | bf16
    compile: bool

    @property
    def mode(self) -> str:
        return "reference" if self.precision == "fp32" and not self.compile else "fast"

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve_runtime(cfg) -> Runtime:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise NowcastError("device: cuda requested but no CUDA device is available")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process under torchrun
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    gpu = device.type == "cuda"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if gpu else "fp32")
    compile_ = cfg.compile == "on" or (cfg.compile == "auto" and gpu)
    return Runtime(device, precision, compile_)


def set_determinism(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


