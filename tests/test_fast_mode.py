"""The `fast` mode (bf16 autocast) learns what `reference` (fp32) learns; the benchmark runs.

GPU figures come from benchmarks/throughput.py on a GPU; here only its CPU smoke mode runs.
"""

import argparse
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


@pytest.mark.parametrize("name", sorted(throughput.CPU_PARAMS))
def test_cpu_workloads_are_the_params_files_models(name):
    """The benchmark's CPU-sized workloads train the model and batch of params/cpu/*.yaml."""
    from nowcast.config import load_config
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / throughput.CPU_PARAMS[name])
    for key, value in throughput.CPU_WORKLOADS[name].items():
        if key in ("frame_shape", "image_size"):
            continue
        assert getattr(cfg, key) == value, key
    assert throughput.CPU_WORKLOADS[name]["image_size"] == (cfg.crop_size or cfg.image_size)


def test_cpu_table_measures_modes_against_the_measured_peak(monkeypatch, capsys):
    """--device cpu: the matrix-product peak first, then each CPU mode's row with its share of
    the peak at that mode's threads (a 1-thread mode against the 1-thread peak: against the
    2-thread one the same step read half its share) and its ratio to fp32 eager of the run."""
    import json
    monkeypatch.setattr(throughput, "PEAK", {})
    monkeypatch.setattr(throughput, "THREADS", 2)  # as on CI's and the 2-core machine
    found = torch.get_num_threads()
    try:
        assert throughput.main(["--device", "cpu", "--quick", "--workloads", "cpu-knmi-p4",
                                "--modes", "reference", "cpu-bf16-cl-1thread"]) == 0
    finally:
        torch.set_num_threads(found)
    out = capsys.readouterr().out
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    peaks = {p["threads"]: p["gflops"]["bfloat16"] for p in lines if "peak" in p}
    assert lines[0]["peak"] == "matmul 256x256" and set(peaks) == {1, 2}
    assert all(g > 0 for g in peaks.values())
    rows = [r for r in lines if "workload" in r]
    assert [r["mode"] for r in rows] == ["reference", "cpu-bf16-cl-1thread"]
    assert rows[1]["threads"] == 1 and rows[0]["threads"] == 2
    for r in rows:  # gflops is rounded to 0.1, the share to 1e-4
        bf16 = peaks[r["threads"]]
        assert abs(r["bf16_peak_share"] - r["gflops"] / bf16) <= 0.05 / bf16 + 5e-5
    assert "| cpu-knmi-p4 | reference |" in out and "1.00x" in out


def test_scoring_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location(
        "scoring_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "scoring.py")
    scoring = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scoring)
    assert scoring.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| cpu-knmi-p4 | cpu-bf16-cl |" in out and "test (40 windows)" in out


def test_modes_are_named_with_their_rewrites():
    mode = throughput.mode_named("fast+split_layernorm+cuda_graphs")
    assert (mode.precision, mode.compile, mode.speedups) == ("bf16", True, ("split_layernorm", "cuda_graphs"))
    mode = throughput.mode_named("seed+bf16+zero_state")  # a base whose name has a '+'
    assert (mode.precision, mode.adam, mode.speedups) == ("bf16", "foreach", ("zero_state",))
    assert throughput.mode_named("fast+channels_last") == throughput.ALL_MODES["fast+channels_last"]
    for bad in ("fast+split_norm", "fastest", "seed+"):
        with pytest.raises(argparse.ArgumentTypeError, match="split_layernorm"):
            throughput.mode_named(bad)


def test_ablation_measures_every_rewrite_eager_and_compiled():
    names = [m.name for m in throughput.ABLATIONS]
    for rewrite in throughput.SPEEDUP_NAMES:
        assert f"fast+{rewrite}" in names and throughput.ALL_MODES[f"fast+{rewrite}"].speedups == (rewrite,)
    assert [n for n in names if n.startswith("fast-eager+")][:-1] == [
        f"fast-eager+{r}" for r in throughput.EAGER_SPEEDUPS]
    assert throughput.ALL_MODES["fast+all"].speedups == throughput.SPEEDUP_NAMES
