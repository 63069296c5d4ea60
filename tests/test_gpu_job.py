"""benchmarks/gpu_job.py, the one command a GPU job runs, checked on the CPU with --quick for
every task: a typo must cost a CI minute, never a GPU minute."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_job  # noqa: E402

pytestmark = pytest.mark.slow


def job(tmp_path: Path, *args: str) -> tuple[int, list[dict]]:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_job.py"), "--out", str(out),
                           "--work", str(tmp_path / "work"), "--device", "cpu", "--quick", *args],
                          cwd=REPO, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert (out / "job.log").is_file()
    return done.returncode, rows


def test_bench_task(tmp_path):
    rc, rows = job(tmp_path, "bench")
    steps = {r["step"]: r["status"] for r in rows if "step" in r}
    assert rc == 0 and steps == {"environment": 0, "throughput": 0, "numerics": 0, "batches": 0}
    assert next(r for r in rows if "environment" in r)["device"] != "cuda"
    measured = {(r["workload"], r["mode"]) for r in rows if "workload" in r and "ms_per_step" in r}
    assert ("seed-b64", "reference") in measured and ("radar-knmi", "fast") in measured
    numerics = next(r for r in rows if r.get("check") == "numerics")
    assert numerics["steps"] == 5 and "within_tolerance" in numerics
    assert any(r.get("batches") == "mmnist-quick-b8x6" and r["ms_per_batch"] > 0 for r in rows)


def test_train_task_returns_packed_runs(tmp_path):
    rc, rows = job(tmp_path, "train", "params/smoke.yaml", "params/thesis-ef-3-64-32-32.yaml",
                   "--budget-min", "2")
    assert rc == 0 and [r["status"] for r in rows if "step" in r] == [0, 0, 0]
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
        names = tar.getnames()
        statuses = [json.load(tar.extractfile(n)) for n in names if n.endswith("status.json")]
        envs = [json.load(tar.extractfile(n)) for n in names if n.endswith("env.json")]
    assert [s["status"] for s in statuses] == ["completed", "completed"]
    assert all(e["time_budget_min"] == 2 and e["device"].startswith("cpu") for e in envs)
    assert not [n for n in names if n.endswith("checkpoint.pt")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["job.log", "runs.tar.gz", "steps.jsonl"]


def test_gpu_tests_task_skips_without_a_gpu(tmp_path):
    rc, rows = job(tmp_path, "gpu-tests")
    assert rc == 0 and [r["status"] for r in rows if "step" in r] == [0, 0]
    assert "9 skipped" in (tmp_path / "out" / "job.log").read_text()


SPEED_PLAN = ["environment", "eager", "fast", "fast+split_layernorm", "fast+cuda_graphs", "fast+best",
              "numerics", "gpu-tests", "fast+channels_last", "fast+batched_input_convs",
              "fast+separable_maxpool", "fast+zero_state", "throughput-b16", "train"]


def test_speed_task_runs_the_plan_in_order(tmp_path):
    rc, rows = job(tmp_path, "speed")
    steps = [(r["step"], r["status"]) for r in rows if "step" in r]
    assert rc == 0 and steps == [(name, 0) for name in SPEED_PLAN]
    measured = [(r["workload"], r["mode"]) for r in rows if "ms_per_step" in r]
    eager = ["seed", "fast-eager", "fast-eager+split_layernorm", "fast-eager+channels_last",
             "fast-eager+batched_input_convs", "fast-eager+separable_maxpool"]
    assert measured[:9] == [("seed-b64", m) for m in [*eager, "fast", "fast+split_layernorm", "fast+cuda_graphs"]]
    # fast+best and the training take the rewrites that held their gain in the rows before them
    # (which those are on a CPU depends on its speed: the rule is checked, not the choice)
    def before(step):
        return rows[:next(i for i, r in enumerate(rows) if r.get("step") == step)]
    best = measured[9][1]
    assert best == gpu_job.best_mode(before("fast+best")) and measured[-1][1] == gpu_job.best_mode(before("throughput-b16"))
    assert measured[-3:-1] == [("seed-b16", "seed"), ("seed-b16", "fast")]
    profiles = [r["mode"] for r in rows if "profile" in r]
    assert profiles == ["fast", "fast+split_layernorm", best] and all(
        r["busy_ms_per_step"] > 0 and r["top"] for r in rows if "profile" in r)
    numerics = next(r for r in rows if r.get("check") == "numerics")
    assert numerics["steps"] == 5 and numerics["mode"] == gpu_job.best_mode(before("numerics")).replace("fast", "cpu-bf16-cl", 1)
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
        env = json.load(tar.extractfile("results/seed-b64-9x9-fast/env.json"))
        params = yaml.safe_load(tar.extractfile("results/seed-b64-9x9-fast/params.yaml"))
    assert env["steps"] > 0 and env["mode"] == "fast" and env["precision"] == "bf16"
    assert params["speedups"] == gpu_job.best_speedups(before("train"))


def test_best_speedups_are_those_that_hold_their_gain():
    rows = [{"workload": "seed-b64", "mode": m, "ms_per_step": ms} for m, ms in [
        ("fast-eager", 200), ("fast-eager+channels_last", 210), ("fast-eager+separable_maxpool", 190),
        ("fast", 150), ("fast+split_layernorm", 100), ("fast+separable_maxpool", 151),
        ("seed-b16", 1)]]
    assert gpu_job.best_speedups(rows) == ["split_layernorm", "cuda_graphs", "batched_input_convs",
                                           "zero_state"]  # compiled figures first, then eager
    assert gpu_job.best_mode([]) == "fast+" + "+".join(gpu_job.SPEEDUP_NAMES)


def test_a_step_without_the_time_it_needs_is_skipped_and_the_next_runs(tmp_path):
    rc, rows = job(tmp_path, "speed", "--limit-s", "100", "--only", "fast", "gpu-tests")
    steps = {r["step"]: r for r in rows if "step" in r}
    assert steps["fast"]["status"] == "skipped" and steps["fast"]["needs_s"] == 120
    assert steps["gpu-tests"]["status"] == 0 and rc == 1


def test_speed_steps_can_be_picked_and_ordered():
    args = gpu_job.parse(["speed", "--out", "/tmp/unused", "--only", "numerics", "fast"])
    steps = gpu_job.speed_steps(args)
    assert [name for name, *_ in steps] == ["numerics", "fast"]
    assert "--check-numerics" in steps[0][1]([]) and "--profile" in steps[1][1]
    with pytest.raises(SystemExit, match="unknown speed step.*fast\\+best"):
        gpu_job.speed_steps(gpu_job.parse(["speed", "--out", "/tmp/unused", "--only", "bench"]))


def test_packing_respects_the_limits(tmp_path):
    run = tmp_path / "results" / "job1"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"c" * 1000)
    (run / "checkpoint.prev.pt").write_bytes(b"p" * 1000)
    (run / "model.pt").write_bytes(b"m" * 5000)
    noise = random.Random(0).randbytes(10000)   # incompressible: the archive needs 3 parts
    (run / "history.csv").write_bytes(noise)
    out = tmp_path / "out"
    out.mkdir()
    parts = gpu_job.pack_runs(tmp_path / "results", out, budget_files=3, max_bytes=4000, model_bytes=4096)
    assert 1 < len(parts) <= 3 and all(p.stat().st_size <= 4000 for p in parts)
    whole = tmp_path / "whole.tar.gz"
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(whole) as tar:
        assert tar.getnames() == ["results/job1/history.csv"]  # no checkpoint, no big model.pt
