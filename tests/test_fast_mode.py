"""The `fast` mode (bf16 autocast) learns what `reference` (fp32) learns; the benchmark runs.

GPU figures come from benchmarks/throughput.py on a GPU; here only its CPU smoke mode runs.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "throughput", Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py")
throughput = importlib.util.module_from_spec(spec)
sys.modules["throughput"] = throughput  # dataclasses look their module up there
spec.loader.exec_module(throughput)

# Stated tolerance for bf16 autocast against fp32: 2% relative per step over the first steps.
BF16_LOSS_TOLERANCE = 2e-2


def test_fast_and_reference_loss_trajectories_agree():
    workload = dict(throughput.WORKLOADS["seed-b64"], **throughput.QUICK)
    result = throughput.check_numerics(workload, torch.device("cpu"), steps=40)
    assert result["max_rel_diff"] < BF16_LOSS_TOLERANCE
    assert result["reference_first_last"][1] < result["reference_first_last"][0]  # it learns
    assert result["max_rel_diff"] > 0  # the modes really differ (bf16 ran)


def rate_matches_step_time(row: dict) -> bool:
    """sequences_per_s agrees with batch / step time up to the rounding of each (0.1 seq/s,
    0.001 ms), whatever the machine's speed (a relative tolerance fails on a slow machine,
    where 0.05 seq/s of rounding is a large share of a small rate)."""
    exact = row["batch"] / (row["ms_per_step"] / 1000)
    return abs(row["sequences_per_s"] - exact) <= 0.05 + exact * 0.0005 / row["ms_per_step"] + 1e-9


@pytest.mark.parametrize("ms", [12.345, 250.0, 3000.0, 45_000.0])
def test_rate_check_holds_at_any_speed(ms):
    row = {"batch": 4, "ms_per_step": round(ms, 3), "sequences_per_s": round(4 / (ms / 1000), 1)}
    assert rate_matches_step_time(row)
    assert not rate_matches_step_time(dict(row, sequences_per_s=row["sequences_per_s"] + 0.2))


def test_benchmark_measures_a_step():
    workload = dict(throughput.WORKLOADS["seed-groupnorm-b64"], **throughput.QUICK)
    row = throughput.measure("q", workload, throughput.MODES["reference"], torch.device("cpu"), warmup=1, steps=2)
    assert row["flop_per_step"] > 1e7 and row["ms_per_step"] > 0
    assert rate_matches_step_time(row)
    assert row["device"] == "cpu" and row["bf16_peak_share"] is None


def test_seed_workload_is_the_seed_architecture():
    from nowcast.config import load_config
    from nowcast.models import count_parameters, get_model
    values = {k: v for k, v in throughput.WORKLOADS["seed-b64"].items() if k != "frame_shape"}
    assert count_parameters(get_model(load_config(values=values), device="meta")) == 4_273_424
