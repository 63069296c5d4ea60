"""Training-step throughput of named workloads, in the `reference` and `fast` modes.

Times full optimisation steps (forward, loss, backward, clip, Adam) -- the function training
itself calls, nowcast.training.optimisation_step -- after warm-up, with device-synchronised
timing, and reports the median of many steps. Per measurement, one JSON line:
sequences/s, ms/step, FLOP per step (torch.utils.flop_counter), achieved TFLOP/s and its share
of the device's dense bf16 peak, peak memory. A table follows at the end.

    python benchmarks/throughput.py                         # every workload, both modes (GPU)
    python benchmarks/throughput.py --workloads seed-b64 --modes reference fast
    python benchmarks/throughput.py --ablate                # the seed's step, one optimisation at a time
    python benchmarks/throughput.py --workloads seed-b64 --modes seed fast fast+split_layernorm+cuda_graphs
    python benchmarks/throughput.py --workloads seed-b64 --modes seed fast --profile 10
    python benchmarks/throughput.py --check-numerics 300    # fast vs reference loss trajectories
    python benchmarks/throughput.py --device cpu --quick    # CPU smoke run of the script itself
    python benchmarks/throughput.py --device cpu --cpu-table --compile-on-cpu   # RESULTS.md's CPU table

Data are generated before timing and kept on the device, so the figures measure the model's
step, not the input pipeline (benchmarks/batches.py times that). Compilation is what training
does (nowcast.models.compile_cells: each recurrent cell, once) and its cost is reported apart:
`first_step_s` is the first step, compilation included; `ms_per_step` the median after
warm-up. Speed-ups are ratios between modes measured in the same call: `vs_seed` in the table
is each row's sequences/s over the `seed` mode's of the same workload.

Modes: `seed` is how the seed project ran (eager fp32, PyTorch's own kernel settings: cuDNN's
default algorithms, TF32 convolutions, no determinism; Adam's default foreach implementation);
`reference` and `fast` are nowcast's modes as training runs them (nowcast.runtime). A mode
named `<mode>+<rewrite>...` (`--modes fast+split_layernorm`; `--with` for --check-numerics) adds rewrites of
nowcast/models/speedups.py: the same function, computed another way (tests/test_speedups.py);
`--ablate` measures each on fast-eager and on fast, in SPEEDUP_NAMES.
`--profile N` profiles N steps of the last mode of the first workload (torch.profiler) and
prints its kernels by device time, grouped (convolutions, compiled elementwise code, optimiser).

On a CPU, `--cpu-table` takes the CPU-sized workloads of params/cpu/ and the seed's model at
batch 16, in the CPU modes (CPU_MODES: fp32 eager, bf16 autocast, channels_last, one
thread, torch.compile with --compile-on-cpu); `vs_fp32` is each row's rate over the workload's
fp32 eager (`reference`) rate of the same run, and the share column is of the bf16 matrix
product measured in the same run at the mode's threads (`peak` lines: 2048x2048, bf16 and
fp32; the first at the threads found, another when a mode sets fewer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace

import torch
from torch.profiler import ProfilerActivity, profile

from nowcast.config import load_config
from nowcast.cost import step_flop
from nowcast.errors import described
from nowcast.losses import training_loss
from nowcast.models import compile_cells, count_parameters, get_model
from nowcast.options import SPEEDUP_NAMES
from nowcast.runtime import CUBLAS_WORKSPACE, FAST_VS_REFERENCE_RTOL, resolve_runtime, set_determinism
from nowcast.training import optimisation_step

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity), from the vendors' data sheets.
BF16_PEAK = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H200": 989.4,
             "A100": 312.0}

SEED_BEST = dict(hidden_sizes=[64, 32, 32, 16], filter_size=5, stride=2, max_pool=True,
                 transpose=True, norm="layer", bias=False, peephole="per_position",
                 image_size=64, loss="bce")
WORKLOADS = {
    # the seed's best Moving MNIST configuration, as measured on the seed's code (242 seq/s)
    "seed-b64": dict(SEED_BEST, batch_size=64, k_in=9, k_out=9),
    "seed-b16": dict(SEED_BEST, batch_size=16, k_in=9, k_out=9),
    # the same architecture with size-independent GroupNorm and per-channel peepholes
    "seed-groupnorm-b64": dict(SEED_BEST, norm="group", peephole="per_channel", batch_size=64,
                               k_in=9, k_out=9),
    # the thesis's 3-layer encoder-forecaster on MMNIST-10
    "thesis-ef-64-32-32": dict(architecture="encoder_forecaster", hidden_sizes=[64, 32, 32],
                               filter_size=5, stride=1, image_size=64,
                               batch_size=16, k_in=10, k_out=10, loss="mse"),
    # PredRNN in OpenSTL's Moving MNIST configuration (params/predrnn-mmnist-10.yaml)
    "predrnn-mmnist-10": dict(architecture="predrnn", hidden_sizes=[128, 128, 128, 128],
                              filter_size=5, stride=1, patch_size=4, norm="none", bias=False,
                              image_size=64, batch_size=16, k_in=10, k_out=10, loss="mse",
                              output="linear"),
    # SimVP (gSTA) in OpenSTL's Moving MNIST configuration (params/simvp-gsta-mmnist-10.yaml)
    "simvp-mmnist-10": dict(architecture="simvp", translator="gsta", hid_S=64, hid_T=512, N_S=4,
                            N_T=8, mlp_ratio=8.0, filter_size=3, image_size=64, batch_size=16,
                            k_in=10, k_out=10, loss="mse"),
    # radar: the KNMI-30/60 4 km grid (191x175, padded to 192x176), 6 in, 12 out
    "radar-knmi": dict(hidden_sizes=[64, 32, 32, 16], filter_size=5, stride=2, max_pool=True,
                       norm="group", peephole="per_channel", bias=True, image_size=192,
                       batch_size=8, k_in=6, k_out=12, loss="mse", frame_shape=(191, 175)),
}
# the model and batch of params/cpu/*.yaml (tests/test_fast_mode.py checks that they agree), on
# their training frames: Moving MNIST's 64x64, radar's 96-block crops
CPU_SIZED = dict(architecture="convlstm_ed", stride=1, hidden_sizes=[64, 64], filter_size=5,
                 patch_size=4, norm="group", peephole="per_channel", loss="mse")
CPU_WORKLOADS = {
    "cpu-mmnist-t-p4": dict(CPU_SIZED, image_size=64, batch_size=16, k_in=7, k_out=7),
    "cpu-knmi-p4": dict(CPU_SIZED, image_size=96, batch_size=8, k_in=6, k_out=12,
                        frame_shape=(96, 96)),
    # the same with PredRNN's ST-LSTM (no peepholes): the equal-budget comparison's other family
    "cpu-mmnist-t-predrnn": dict({k: v for k, v in CPU_SIZED.items() if k != "peephole"},
                                 architecture="predrnn", image_size=64, batch_size=16, k_in=7,
                                 k_out=7),
    # the recurrent-free family at the same data and batch (params/cpu/mmnist-t-simvp.yaml)
    "cpu-mmnist-t-simvp": dict(architecture="simvp", translator="gsta", hid_S=32, hid_T=192,
                               N_S=4, N_T=4, mlp_ratio=4.0, filter_size=3, loss="mse",
                               image_size=64, batch_size=16, k_in=7, k_out=7),
}
# 2x2 patches and two ConvSC blocks: the translator still on 16x16 (params/cpu/mmnist-t-simvp-aug.yaml)
CPU_WORKLOADS["cpu-mmnist-t-simvp-p2"] = dict(CPU_WORKLOADS["cpu-mmnist-t-simvp"], patch_size=2, N_S=2)
# the same with TAU's translator (params/cpu/mmnist-t-simvp-tau-long.yaml; its regulariser in the loss)
CPU_WORKLOADS["cpu-mmnist-t-simvp-tau"] = dict(CPU_WORKLOADS["cpu-mmnist-t-simvp-p2"], translator="tau")
WORKLOADS.update(CPU_WORKLOADS)
CPU_PARAMS = {"cpu-mmnist-t-p4": "params/cpu/mmnist-t-patch4.yaml",
              "cpu-mmnist-t-predrnn": "params/cpu/mmnist-t-patch4-predrnn.yaml",
              "cpu-mmnist-t-simvp": "params/cpu/mmnist-t-simvp.yaml",
              "cpu-mmnist-t-simvp-p2": "params/cpu/mmnist-t-simvp-aug.yaml",
              "cpu-mmnist-t-simvp-tau": "params/cpu/mmnist-t-simvp-tau-long.yaml",
              "cpu-knmi-p4": "params/cpu/knmi-30-60-patch4.yaml"}
QUICK = dict(hidden_sizes=[8, 8], filter_size=3, batch_size=4, image_size=32,
             frame_shape=(32, 32), k_in=3, k_out=3)


# PyTorch's own kernel settings, read before anything here changes them (the seed's)
TORCH_DEFAULTS = {"benchmark": torch.backends.cudnn.benchmark,
                  "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                  "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}


@dataclass(frozen=True)
class Mode:
    name: str
    precision: str = "fp32"
    compile: bool = False
    adam: str = "fused"              # fused (training's, on CUDA) | foreach (torch's default)
    kernels: str = "deterministic"   # deterministic | default (torch's own) | fastest
    speedups: tuple[str, ...] = ()   # nowcast/models/speedups.py: the same function, rewritten
    threads: int | None = None       # torch.set_num_threads for this mode; None: as found

    def plus(self, *speedups: str, name: str | None = None) -> "Mode":
        """This mode with more rewrites, named `<mode>+<rewrite>...` unless `name` is given."""
        return replace(self, name=name or "+".join([self.name, *speedups]),
                       speedups=self.speedups + tuple(s for s in speedups if s not in self.speedups))


MODES = {"seed": Mode("seed", adam="foreach", kernels="default"),
         "reference": Mode("reference"),
         "fast": Mode("fast", precision="bf16", compile=True, kernels="fastest")}
# the rewrites of nowcast/models/speedups.py, SPEEDUP_NAMES, are in the order of the gain
# predicted for the seed's step on an H200 (benchmarks/RESULTS.md, "Predictions")
EAGER_SPEEDUPS = tuple(s for s in SPEEDUP_NAMES if s != "cuda_graphs")  # graphs need compiling
# --ablate: from the seed's step, one optimisation at a time, then all of them (fast), then
# each rewrite on fast-eager and on fast, all of them, and the price of determinism
# (reference); eager modes first (a compile costs minutes: a job cut short still has them)
_SEED = MODES["seed"]
FAST_EAGER = replace(MODES["fast"], name="fast-eager", compile=False)
ABLATIONS = [_SEED, replace(_SEED, name="seed+fastest_kernels", kernels="fastest"),
             replace(_SEED, name="seed+fused_adam", adam="fused"),
             replace(_SEED, name="seed+bf16", precision="bf16"), FAST_EAGER,
             *[FAST_EAGER.plus(s) for s in EAGER_SPEEDUPS], FAST_EAGER.plus(*EAGER_SPEEDUPS, name="fast-eager+all"),
             replace(_SEED, name="seed+compile", compile=True), MODES["fast"],
             *[MODES["fast"].plus(s) for s in SPEEDUP_NAMES],
             MODES["fast"].plus(*SPEEDUP_NAMES, name="fast+all"), MODES["reference"]]
# the CPU's: fp32 eager (reference), then bf16 autocast and the memory layout one at a time;
# `cpu-bf16-cl` is what precision auto chooses on a CPU with bf16 units (runtime.resolve_runtime)
_BF16 = Mode("cpu-bf16", precision="bf16", kernels="fastest")
CPU_MODES = [MODES["reference"], MODES["reference"].plus("channels_last", name="cpu-fp32-cl"),
             _BF16, _BF16.plus("channels_last", name="cpu-bf16-cl"),
             replace(_BF16.plus("channels_last", name="cpu-bf16-cl-1thread"), threads=1),
             replace(_BF16.plus("channels_last", name="cpu-bf16-cl-compile"), compile=True)]
ALL_MODES = {m.name: m for m in ABLATIONS + CPU_MODES}  # --modes: any by name


def mode_named(name: str) -> Mode:
    """A mode of ALL_MODES, or one of them with rewrites: `fast+split_layernorm+cuda_graphs`."""
    if name in ALL_MODES:
        return ALL_MODES[name]
    parts = name.split("+")
    for i in range(len(parts) - 1, 0, -1):  # the longest base first (seed+bf16+zero_state)
        base, rewrites = "+".join(parts[:i]), parts[i:]
        if base in ALL_MODES and all(r in SPEEDUP_NAMES for r in rewrites):
            return ALL_MODES[base].plus(*rewrites)
    raise argparse.ArgumentTypeError(
        f"mode '{name}': a mode ({', '.join(ALL_MODES)}), or one followed by +rewrite "
        f"({', '.join(SPEEDUP_NAMES)})")


def set_kernels(kind: str, seed: int) -> None:
    """Seed the generators and choose the kernels: nowcast's rule for `deterministic` and
    `fastest` (runtime.set_determinism), PyTorch's own settings for `default`."""
    set_determinism(seed, kind == "deterministic")
    if kind == "default":
        torch.backends.cudnn.benchmark = TORCH_DEFAULTS["benchmark"]
        torch.backends.cudnn.allow_tf32 = TORCH_DEFAULTS["cudnn_tf32"]
        torch.backends.cuda.matmul.allow_tf32 = TORCH_DEFAULTS["matmul_tf32"]


def build(workload: dict, mode: Mode, device: torch.device, seed: int = 0):
    values = {k: v for k, v in workload.items() if k != "frame_shape"}
    cfg = load_config(values=dict(values, device=device.type, precision=mode.precision,
                                  compile="on" if mode.compile else "off", speedups=list(mode.speedups)))
    runtime = replace(resolve_runtime(cfg), device=device, deterministic=mode.kernels == "deterministic")
    set_kernels(mode.kernels, seed)
    torch.set_num_threads(mode.threads or THREADS)
    model = get_model(cfg, device=device)  # with the mode's rewrites (cfg.speedups)
    fused = mode.adam == "fused" and device.type == "cuda"  # training's optimiser on CUDA
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.initial_lr, fused=fused or None)
    if mode.compile:
        torch._dynamo.reset()  # compiled as training compiles: from this process's scratch
        compile_cells(model)
    h, w = workload.get("frame_shape", (cfg.image_size, cfg.image_size))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    frames = torch.rand(cfg.batch_size, cfg.k_in + cfg.k_out, h, w, generator=gen).to(device)
    return cfg, model, optimizer, runtime, frames


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


FLOPS: dict[str, int] = {}  # per workload: the same whatever the mode
THREADS = torch.get_num_threads()  # as the process found them (a mode may set fewer)
PEAK: dict[int, dict[str, float]] = {}  # matrix-product GFLOP/s by threads, then dtype
PEAK_SIZE = {"n": 2048, "repeats": 10}  # as main measured the first peak (--quick: smaller)


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 10) -> dict:
    """GFLOP/s of an n x n matrix product in bf16 and fp32 on `device` (median of `repeats`
    after one warm-up), at the threads torch has now: the ceiling a CPU's convolutions are
    measured against, kept per thread count (a 1-thread mode's share is of the 1-thread peak)."""
    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        a, b = (torch.rand(n, n, device=device).to(dtype) for _ in range(2))
        a @ b
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t0)
        out[str(dtype).split(".")[-1]] = round(2 * n ** 3 / statistics.median(times) / 1e9, 1)
    threads = torch.get_num_threads()
    PEAK[threads] = out
    PEAK_SIZE.update(n=n, repeats=repeats)
    print(json.dumps({"peak": f"matmul {n}x{n}", "gflops": out, "threads": threads}), flush=True)
    return out


def cpu_bf16_peak(device: torch.device) -> float | None:
    """TFLOP/s of the bf16 matrix product at the threads torch has now (measured once per
    thread count, at main's size); None before main measured any."""
    if not PEAK:
        return None
    if torch.get_num_threads() not in PEAK:
        matmul_peak(device, **PEAK_SIZE)
    return PEAK[torch.get_num_threads()]["bfloat16"] / 1000


def count_flops(name: str, workload: dict, device: torch.device) -> int:
    """FLOP of one training step (nowcast.cost.step_flop, as training records it), counted
    once per workload on an eager fp32 model of the workload's frames."""
    if name not in FLOPS:
        cfg, model, _, _, frames = build(workload, MODES["seed"], device)
        FLOPS[name] = step_flop(cfg, frames.shape[-2:], model)
    return FLOPS[name]


def measure(name: str, workload: dict, mode: Mode, device: torch.device, warmup: int, steps: int,
            profile_steps: int = 0) -> dict:
    flops = count_flops(name, workload, device)
    cfg, model, optimizer, runtime, frames = build(workload, mode, device)
    loss_fn = training_loss(cfg)  # as training computes it (TAU: its regulariser too)
    inputs, target = frames[:, :cfg.k_in], frames[:, cfg.k_in:]

    def step():
        optimisation_step(model, model, optimizer, loss_fn, runtime, inputs, target, grad_clip=cfg.grad_clip)

    t0 = time.perf_counter()
    step()
    sync(device)
    first_step = time.perf_counter() - t0  # compilation, when the mode compiles
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1000
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK.items() if k in device_name), None)
    if device.type == "cpu":  # no data sheet: the peak measured here, at the mode's threads
        peak = cpu_bf16_peak(device)
    tflops = flops / (ms / 1000) / 1e12
    row = {
        "workload": name, "mode": mode.name, "device": device_name, "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": cfg.batch_size, "k_in": cfg.k_in, "k_out": cfg.k_out,
        "frame": list(frames.shape[-2:]), "parameters": count_parameters(model),
        "first_step_s": round(first_step, 3),
        "ms_per_step": round(ms, 3), "sequences_per_s": round(cfg.batch_size / (ms / 1000), 1),
        "flop_per_step": flops, "tflops": round(tflops, 3), "gflops": round(tflops * 1000, 1),
        "bf16_peak_share": round(tflops / peak, 4) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
        "steps_timed": steps, "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(row), flush=True)
    if profile_steps:
        try:  # a profiler failure must not cost the figures above
            print(json.dumps(dict(profile_kernels(step, device, profile_steps), workload=name,
                                  mode=mode.name)), flush=True)
        except Exception as e:
            print(f"profile: failed ({described(e)})", flush=True)
    return row


# kernel name fragments -> group (first match wins; names as CUDA and cuDNN spell them)
KERNEL_GROUPS = [("compiled (triton)", ("triton",)),  # before "conv": inductor names its
                 # kernels after the ops they fuse (triton_..._convolution_backward_...)
                 ("optimiser", ("adam", "multi_tensor", "foreach")),
                 ("convolution", ("conv", "xmma", "gemm", "cudnn", "wgrad", "dgrad", "implicit")),
                 ("copy / cast", ("copy", "memcpy", "memset", "fill", "cast"))]


def kernel_group(name: str) -> str:
    low = name.lower()
    return next((group for group, keys in KERNEL_GROUPS if any(k in low for k in keys)), "other")


def profile_kernels(step, device: torch.device, steps: int, top: int = 15) -> dict:
    """torch.profiler over `steps` steps: the top kernels by device time (CPU ops on a CPU),
    the time per group, and the share of the wall time the device was busy (low: launch-bound)."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall = time.perf_counter() - t0
    rows = []
    for event in prof.key_averages():
        if cuda and event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = event.self_device_time_total if cuda else event.self_cpu_time_total
        if us > 0:
            rows.append({"kernel": event.key[:90], "calls_per_step": event.count / steps,
                         "ms_per_step": us / 1000 / steps, "group": kernel_group(event.key)})
    rows.sort(key=lambda r: -r["ms_per_step"])
    if not rows:
        raise RuntimeError("no timed events (profiler):\n" + prof.key_averages().table(row_limit=top))
    busy = sum(r["ms_per_step"] for r in rows)
    groups: dict[str, float] = {}
    for r in rows:
        groups[r["group"]] = groups.get(r["group"], 0.0) + r["ms_per_step"]
    print(f"profile: {steps} steps, {1000 * wall / steps:.2f} ms/step wall, "
          f"{busy:.2f} ms/step {'on the device' if cuda else 'in CPU ops'}")
    print("| kernel | group | calls/step | ms/step | share |\n|---|---|---|---|---|")
    for r in rows[:top]:
        print(f"| {r['kernel']} | {r['group']} | {r['calls_per_step']:g} | {r['ms_per_step']:.3f} "
              f"| {r['ms_per_step'] / busy:.1%} |")
    return {"profile": steps, "wall_ms_per_step": round(1000 * wall / steps, 3),
            "busy_ms_per_step": round(busy, 3), "device_busy_share": round(busy / (1000 * wall / steps), 4),
            "kernels_per_step": round(sum(r["calls_per_step"] for r in rows), 1),
            "groups_ms_per_step": {k: round(v, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top": [dict(r, ms_per_step=round(r["ms_per_step"], 4)) for r in rows[:top]]}


def check_numerics(workload: dict, device: torch.device, steps: int, speedups: tuple = ()) -> dict:
    """Train reference and fast (with `speedups`) from the same weights on the same batches;
    compare losses."""
    losses = {}
    # the fast mode as training runs it: compiled bf16 on a GPU, bf16 + channels_last on a CPU
    fast_mode = (MODES["fast"] if device.type == "cuda" else ALL_MODES["cpu-bf16-cl"]).plus(*speedups)
    for mode in (MODES["reference"], fast_mode):
        cfg, model, optimizer, runtime, frames = build(workload, mode, device, seed=0)
        loss_fn = training_loss(cfg)  # as training computes it (TAU: its regulariser too)
        gen = torch.Generator(device="cpu").manual_seed(1)
        out = []
        for _ in range(steps):
            batch = (torch.rand(frames.shape, generator=gen) > 0.7).float().to(device)
            out.append(optimisation_step(model, model, optimizer, loss_fn, runtime,
                                         batch[:, :cfg.k_in], batch[:, cfg.k_in:], grad_clip=cfg.grad_clip))
        losses[mode.name] = torch.stack(out).float().cpu()
    ref, fast = losses.values()
    rel = ((fast - ref).abs() / ref.abs()).tolist()
    mean_loss_rel = abs(float(fast.mean() - ref.mean())) / abs(float(ref.mean()))
    return {"check": "numerics", "steps": steps, "mode": fast_mode.name, "max_rel_diff": max(rel),
            "mean_rel_diff": sum(rel) / len(rel), "mean_loss_rel_diff": mean_loss_rel,
            "tolerance": FAST_VS_REFERENCE_RTOL, "within_tolerance": mean_loss_rel <= FAST_VS_REFERENCE_RTOL,
            "reference_first_last": [float(ref[0]), float(ref[-1])],
            "fast_first_last": [float(fast[0]), float(fast[-1])]}


def table(rows: list[dict], cpu: bool = False) -> str:
    """Markdown; `vs_seed`: the seed mode's step time over this row's, the same workload in the
    same run (its speed-up); on a CPU `vs_fp32`, over the fp32 eager (reference) mode's, and
    GFLOP/s. Ratios of step times, not of the rounded sequences/s."""
    base_mode, ratio = ("reference", "vs_fp32") if cpu else ("seed", "vs_seed")
    seed = {r["workload"]: r["ms_per_step"] for r in rows if r["mode"] == base_mode}
    cols = ["workload", "mode", "threads", "batch", "first_step_s", "ms_per_step", "sequences_per_s",
            ratio, "gflops" if cpu else "tflops", "bf16_peak_share"] + ([] if cpu else ["peak_memory_gib"])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        base = seed.get(r["workload"])
        r = dict(r, **{ratio: f"{base / r['ms_per_step']:.2f}x" if base else None})
        lines.append("| " + " | ".join(str(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS),
                        help="default: all but the CPU-sized ones (--cpu-table: those and seed-b16)")
    parser.add_argument("--modes", nargs="+", type=mode_named, metavar="MODE",
                        help="default: seed, reference, fast (--cpu-table: CPU_MODES)")
    parser.add_argument("--cpu-table", action="store_true",
                        help="the CPU table of RESULTS.md: CPU-sized workloads and seed-b16 in the CPU modes")
    parser.add_argument("--ablate", action="store_true",
                        help="from the seed's step, one optimisation at a time (fast mode's parts)")
    parser.add_argument("--with", dest="speedups", nargs="*", default=[], choices=list(SPEEDUP_NAMES),
                        metavar="SPEEDUP", help="--check-numerics: the fast mode with these rewrites "
                        "(nowcast/models/speedups.py)")
    parser.add_argument("--check-numerics", type=int, metavar="STEPS", default=0,
                        help="compare fast and reference losses over STEPS steps on the first workload")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, help="untimed steps (default 10; --quick: 1)")
    parser.add_argument("--steps", type=int, help="timed steps (default 50; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes: checks the script, not the speed")
    parser.add_argument("--profile", type=int, metavar="STEPS", default=0,
                        help="profile STEPS steps of the first workload's last mode (top kernels)")
    parser.add_argument("--profile-modes", nargs="+", default=[], metavar="MODE",
                        help="with --profile: these modes too")
    parser.add_argument("--compile-on-cpu", action="store_true",
                        help="keep torch.compile on a CPU (measures the compiler's cost)")
    args = parser.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 10)
    args.steps = args.steps if args.steps is not None else (3 if args.quick else 50)
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    args.workloads = args.workloads or (list(CPU_WORKLOADS) + ["seed-b16"] if args.cpu_table else
                                        [k for k in WORKLOADS if k not in CPU_WORKLOADS])
    args.modes = args.modes or (CPU_MODES if args.cpu_table else list(MODES.values()))
    # before cuBLAS's first call, whichever mode comes first (reference needs it; others ignore it)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    if device.type == "cpu":
        print("benchmark: running on the CPU: these figures are not GPU figures", file=sys.stderr)
    workloads = {k: dict(WORKLOADS[k], **QUICK) if args.quick else WORKLOADS[k] for k in args.workloads}
    if args.check_numerics:
        name = next(iter(workloads))
        print(json.dumps(dict(check_numerics(workloads[name], device, args.check_numerics,
                                             tuple(args.speedups)), workload=name)), flush=True)
        return 0
    torch.set_num_threads(THREADS)  # the first peak at the threads a mode without its own uses
    matmul_peak(device, n=256 if args.quick else 2048, repeats=2 if args.quick else 10)
    modes = ABLATIONS if args.ablate else args.modes
    if device.type == "cpu" and not args.compile_on_cpu:  # 2 CPU cores: the compiler, not the model
        modes = [replace(m, compile=False) for m in modes]
    rows = []
    for name, workload in workloads.items():
        for mode in modes:
            profiled = args.profile if name == next(iter(workloads)) and (
                mode == modes[-1] or mode.name in args.profile_modes) else 0
            rows.append(measure(name, workload, mode, device, args.warmup, args.steps, profiled))
    print(table(rows, cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
