"""Where and how tensors are computed: device, precision, compilation, determinism.

`mode` is what env.json reports: `reference` (fp32, eager, deterministic kernels: the same
params give bit-identical results on a rerun) or `fast` (bf16 autocast and/or torch.compile;
deterministic kernels off unless `deterministic: true` is asked for).

`precision: auto` is bf16 on a GPU and on a CPU with bf16 matrix units (AMX or AVX-512-bf16:
`cpu_has_bf16_units`), fp32 elsewhere; on such a CPU the model's weights are also kept
channels_last (oneDNN's fast layout for bf16 convolutions). `compile: auto` compiles on a GPU
only. benchmarks/RESULTS.md has the CPU measurements behind these choices. A fast run repeats
within FAST_REPEAT_RTOL and follows the reference run within FAST_VS_REFERENCE_RTOL
(relative difference of the mean training loss over the first 30 steps; checked on a GPU by
tests/test_gpu.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import resource
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import __version__, jobenv
from .errors import NowcastError
from .models.speedups import channels_last


# Tolerances of the fast mode (relative, on the mean loss of the first 30 training steps).
# bf16 autocast rounds activations to 8 bits of mantissa (2^-8 = 3.9e-3 relative per value);
# averaged over a step's pixels and 30 steps the measured drift on CPU was 7.9e-5 (benchmarks/
# throughput.py --check-numerics 30). The stated bounds leave room for GPU kernels' own order.
FAST_VS_REFERENCE_RTOL = 1e-2
FAST_REPEAT_RTOL = 1e-3
CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for deterministic results (CUDA docs)


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed; `mode` is what env.json reports."""
    device: torch.device
    precision: str      # fp32 | bf16
    compile: bool
    deterministic: bool = True
    channels_last: bool = False  # the model's weights in NHWC (CPU bf16: oneDNN's layout)

    @property
    def mode(self) -> str:
        return "reference" if self.precision == "fp32" and not self.compile else "fast"

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model in this runtime's memory format (in place; returned for chaining): with
        channels_last, weights, frames and states NHWC (speedups.channels_last)."""
        if self.channels_last:
            channels_last(model)
        return model


def cpu_has_bf16_units() -> bool:
    """True when this CPU multiplies bf16 matrices in hardware (AMX tiles or AVX-512-bf16): there
    bf16 autocast with channels_last trains ConvLSTMs several times faster than fp32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The commit this process's code is at and whether the code differed from it (a tracked
    file changed, or a file in the package that git does not know and does not ignore: a new
    model file never committed), read once, when the run starts (resolve_runtime): env.json is
    written at the end of a run, when the tree may have moved on while the loaded code did not.
    Untracked files elsewhere (a new params file, a results folder) do not count: the params
    are copied into the results folder."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  cwd=Path(__file__).resolve().parent)
            return done.stdout.strip() or None if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None
    return {"git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")
                              or git("ls-files", "--others", "--exclude-standard", "--", "."))}


def device_memory(device: torch.device) -> int:
    """Bytes the device has: a GPU's total memory, else the host's physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_runtime(cfg) -> Runtime:
    code_version()  # the code as it is now, at the start, is what env.json will name
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise NowcastError("device: cuda requested but no CUDA device is available")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process (torchrun,
        # srun): the node's GPUs in order, or the one GPU a cluster shows each of its tasks
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    gpu = device.type == "cuda"
    fast_cpu = not gpu and cpu_has_bf16_units()
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if gpu or fast_cpu else "fp32")
    compile_ = cfg.compile == "on" or (cfg.compile == "auto" and gpu)
    runtime = Runtime(device, precision, compile_, channels_last=not gpu and precision == "bf16")
    deterministic = runtime.mode == "reference" if cfg.deterministic is None else cfg.deterministic
    return replace(runtime, deterministic=deterministic)


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed every generator and choose the kernels. Deterministic: cuBLAS gets the workspace
    setting it needs (before its first call in this process: set here, before any model
    exists), no TF32, cuDNN's deterministic algorithms, and torch raises on any operation
    without a deterministic implementation. Otherwise cuDNN may pick the fastest algorithm."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cuda.matmul.allow_tf32 = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic


def environment(runtime, extra: Optional[dict] = None) -> dict:
    """What env.json records: code version, software, hardware (cores, threads, peak memory),
    scheduler ids, and the runtime's mode."""
    device = runtime.device
    env = {
        **code_version(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "nowcast": __version__},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "cpu_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        # the process's peak resident memory so far (Linux reports KiB): training and scoring
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "host": socket.gethostname(),
        "slurm": jobenv.slurm(),
        "mode": runtime.mode, "precision": runtime.precision, "compile": runtime.compile,
        "channels_last": runtime.channels_last,
        "command": " ".join(sys.argv),
    }
    env.update(extra or {})
    return env
