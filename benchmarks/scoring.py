"""Scoring cost: how long the forward passes of validation and test take, per mode, and what a
split costs at its protocol's size.

Times `nowcast.forecast.evaluate_split` (the function validation and the final test call: no
gradients, the loss and, for the test, the image metrics) on random frames of a workload's
shape, in fp32 eager and in the CPU's bf16 autocast with channels_last, in the same run.
One JSON line per measurement, then a table with the seconds a split of N sequences takes.

    python benchmarks/scoring.py                       # CPU-sized workloads (params/cpu)
    python benchmarks/scoring.py --quick               # checks the script

Memory: every run's env.json records `peak_rss_gib`, the process's peak resident memory with
training and scoring; `nowcast evaluate --checkpoint X --protocol P` gives scoring's alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from types import SimpleNamespace

from pathlib import Path

import torch

from nowcast.forecast import evaluate_split
from nowcast.losses import training_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/throughput.py's workloads
from throughput import ALL_MODES, CPU_WORKLOADS, QUICK, build  # noqa: E402

# validation and test sizes the reference runs score (MMNIST-T: 2,000 test and OOD sequences,
# 500 of the validation split per validation; KNMI-30/60: 40 test and 8 validation windows)
MMNIST_T_SPLITS = {"validation (val_subset 500)": 500, "validation (whole, 2,000)": 2000,
                   "test (2,000)": 2000}
SPLITS = {"cpu-mmnist-t-p4": MMNIST_T_SPLITS, "cpu-mmnist-t-predrnn": MMNIST_T_SPLITS,
          "cpu-mmnist-t-simvp": MMNIST_T_SPLITS, "cpu-mmnist-t-simvp-p2": MMNIST_T_SPLITS,
          "cpu-mmnist-t-simvp-tau": MMNIST_T_SPLITS,
          "cpu-knmi-p4": {"validation (8 windows)": 8, "test (40 windows)": 40}}


def measure(name: str, workload: dict, mode, sequences: int, with_metrics: bool) -> dict:
    cfg, model, _, runtime, frames = build(workload, mode, torch.device("cpu"))  # mode's layout
    batch = SimpleNamespace(frames=frames.repeat(-(-sequences // len(frames)), 1, 1, 1)[:sequences]
                            .numpy(), mask=None)
    loss_fn = training_loss(cfg)  # as training computes it (TAU: its regulariser too)
    evaluate_split(model, SimpleNamespace(frames=batch.frames[:2], mask=None), cfg.k_in,
                   cfg.k_out, loss_fn, runtime, batch_size=32)  # warm-up
    t0 = time.perf_counter()
    evaluate_split(model, batch, cfg.k_in, cfg.k_out, loss_fn, runtime,
                   batch_size=max(cfg.batch_size, 32), with_metrics=with_metrics)
    seconds = time.perf_counter() - t0
    row = {"workload": name, "mode": mode.name, "threads": torch.get_num_threads(),
           "sequences": sequences, "metrics": with_metrics, "seconds": round(seconds, 3),
           "sequences_per_s": round(sequences / seconds, 1)}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=256, help="sequences timed per mode")
    parser.add_argument("--modes", nargs="+", default=["reference", "cpu-bf16-cl"], choices=list(ALL_MODES))
    parser.add_argument("--quick", action="store_true", help="tiny shapes: checks the script")
    args = parser.parse_args(argv)
    rows = []
    for name, workload in CPU_WORKLOADS.items():
        workload = dict(workload, **QUICK) if args.quick else workload
        n = 4 if args.quick else (args.sequences if "mmnist" in name else min(args.sequences, 40))
        for mode in (ALL_MODES[m] for m in args.modes):
            rows.append(measure(name, workload, mode, n, with_metrics=True))
    print("| workload | mode | sequences/s | seconds per split |\n|---|---|---|---|")
    for r in rows:
        splits = "; ".join(f"{split} {size / r['sequences_per_s']:.0f} s"
                           for split, size in SPLITS[r["workload"]].items())
        print(f"| {r['workload']} | {r['mode']} | {r['sequences_per_s']} | {splits} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
