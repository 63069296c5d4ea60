"""The one command a remote GPU job runs: the steps of one task, in order, each with its own
time cap, everything written as it goes and packed into a few files.

    python benchmarks/gpu_job.py --out $OUT --limit-s 540 bench
    python benchmarks/gpu_job.py --out $OUT --limit-s 540 train params/thesis-3layer.yaml params/X.yaml
    python benchmarks/gpu_job.py --out $OUT --limit-s 540 gpu-tests
    python benchmarks/gpu_job.py --out $OUT --limit-s 540 speed     # the GPU speed issue's plan
    python benchmarks/gpu_job.py --out /tmp/o --device cpu --quick bench     # checks the script (CI)

Made for short jobs on a bare machine (a debug partition, a lent GPU for ten minutes): only
PyTorch and the scientific stack are assumed, no install step; nothing is kept between jobs;
only a few files come back. So:

- every step runs as a subprocess with a time cap (the rest of the job's limit at most), and
  a step that fails or runs out of time is recorded and the next one still runs;
- `job.log` (everything printed) and `steps.jsonl` (one JSON line per step: command, exit
  status, seconds; a benchmark's own JSON lines are copied in) are written as the steps go;
- results folders (kept in --work, outside --out) are packed after every step into
  `runs.tar.gz` (without checkpoints, `checkpoint.pt` and the `checkpoint.prev.pt` kept
  beside it; `model.pt` only below --model-mib), split into parts when larger than a file may
  be; at most --max-files files of --max-file-mib MiB in all.

Tasks: `bench` (throughput of the named workloads in both modes, the numerics check, the input
pipeline), `train PARAMS...` (each params set with a time budget: `nowcast train`, `--set`
applied to each), `gpu-tests` (pytest -m gpu: fast vs reference, repeatability, resume), and
`speed` (the seed's model against the seed's own step at batch 64: eager with each rewrite of
nowcast/models/speedups.py, fast, fast with each rewrite, fast with every rewrite that holds
its gain and that mode's numerics, the gpu tests, batch 16, an end-to-end training at 9+9;
speed_steps says the order, `--only` picks and orders them; a step is not started without the
time it needs, and the steps after it still run). Every task runs with `--device cpu --quick`
in the test suite, so no GPU minute is spent finding a typo.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # nowcast.options (no torch), from this checkout, installed or not
from nowcast.options import SPEEDUP_NAMES  # noqa: E402
CHECKPOINT_STEM = "checkpoint."  # checkpoint.pt and checkpoint.prev.pt: resume state, not results
# --quick: every params set shrunk to seconds (sizes only: the architecture stays the set's)
QUICK_TRAIN = ["hidden_sizes=[8, 8]", "filter_size=3", "batch_size=4", "train_sequences=8",
               "val_sequences=4", "test_sequences=4", "num_epochs=1", "curriculum=null",
               "image_size=32", "num_digits=1", "k_in=3", "k_out=3", "protocol=none",
               "digits=auto"]


class Job:
    """The job's clock, its log and its outputs."""

    def __init__(self, out: Path, limit_s: float, max_files: int, max_file_mib: float):
        self.out, self.deadline = out, time.monotonic() + limit_s
        self.max_files, self.max_bytes = max_files, int(max_file_mib * 2**20)
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "job.log", "a", buffering=1)
        self.steps = open(out / "steps.jsonl", "a", buffering=1)
        self.rows: list[dict] = []  # the benchmarks' JSON lines so far (later steps read them)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")

    def record(self, row: dict) -> None:
        self.steps.write(json.dumps(row) + "\n")

    def step(self, name: str, cmd: list[str], cap_s: float, env: dict | None = None) -> dict:
        """Run one step with at most cap_s seconds (and never past the job's limit); its output
        goes straight into job.log, so a job killed mid-step still returns it."""
        cap = max(1.0, min(cap_s, self.left() - 5))
        self.say(f"== {name}: {' '.join(cmd)} (cap {cap:.0f} s)")
        self.log.flush()
        start_offset, started = os.path.getsize(self.out / "job.log"), time.monotonic()
        try:
            status = subprocess.run(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                    timeout=cap).returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
        row = {"step": name, "command": cmd, "status": status,
               "seconds": round(time.monotonic() - started, 1)}
        self.record(row)
        self.say(f"== {name}: status {status} after {row['seconds']} s")
        with open(self.out / "job.log", errors="replace") as f:  # a benchmark's JSON lines
            f.seek(start_offset)
            for line in f.read().splitlines():
                if line.startswith("{") and line.endswith("}"):
                    self.steps.write(line + "\n")
                    try:
                        self.rows.append(json.loads(line))
                    except ValueError:
                        pass
        return row


def child_env(device: str) -> dict:
    """The subprocesses import nowcast from this checkout, installed or not."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# --------------------------------------------------------------------------------------------
# tasks: each a list of steps
# --------------------------------------------------------------------------------------------

# first in every task: what the figures were measured on (device, driver, versions)
ENVIRONMENT = """
import json, platform, shutil, subprocess, time, torch
cuda = torch.cuda.is_available()
smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
       "--format=csv,noheader"]
print(json.dumps({"environment": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
    "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
    "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
    "nvidia_smi": subprocess.run(smi, capture_output=True, text=True).stdout.strip()
    if cuda and shutil.which("nvidia-smi") else None}))
"""


def environment_step() -> tuple[str, list[str], float]:
    return ("environment", [sys.executable, "-c", ENVIRONMENT], 30)


def bench_steps(args) -> list[tuple[str, list[str], float]]:
    py, quick = sys.executable, ["--quick"] if args.quick else []
    device = ["--device", args.device]
    return [
        ("throughput", [py, "benchmarks/throughput.py", *device, *quick,
                        *(["--workloads", *args.workloads] if args.workloads else [])], 300),
        ("numerics", [py, "benchmarks/throughput.py", *device, *quick, "--check-numerics",
                      "5" if args.quick else "30"], 120),
        ("batches", [py, "benchmarks/batches.py", *device, *quick], 60),
    ]


def train_steps(args) -> list[tuple[str, list[str], float]]:
    if not args.params:
        raise SystemExit("gpu_job: train needs params files")
    budget = args.budget_min or max(0.2, (args.limit_s - 60) / 60 / len(args.params) - 1.0)
    steps = []
    for params in args.params:
        sets = [f"time_budget_min={budget:g}", f"device={args.device}",
                "results_dir=" + str(args.work / "results"), *args.set]
        sets += QUICK_TRAIN if args.quick else []
        # on a CPU (the script's own check) eager: compiling costs minutes on a few cores
        sets += ["compile=off"] if args.device == "cpu" else []
        cmd = [sys.executable, "-m", "nowcast", "train", "-c", params, "-q"]
        for s in sets:
            cmd += ["--set", s]
        # the budget covers training; the test split, figures and model.pt follow it
        steps.append((f"train {params}", cmd, budget * 60 + args.after_training_s))
    return steps


def gpu_test_steps(args) -> list[tuple[str, list[str], float]]:
    return [("gpu-tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           "tests/test_gpu.py"], args.limit_s)]


# speed: the seed's best model (params/seed-best-mmnist.yaml) trained end to end at a fixed 9+9
# in the fast mode, on the real pipeline (Moving MNIST rendered on the device), for its
# sequences/s beside the model-only figure; small validation and test sets keep the scoring short
SPEED_TRAIN = ["curriculum=null", "k_in=9", "k_out=9", "protocol=none", "precision=bf16",
               "compile=on", "train_sequences=64000", "val_sequences=256", "test_sequences=512",
               "job_id=seed-b64-9x9-fast"]
# (cap, need) seconds per speed step: at most cap; not started with less than need left (a
# compile cut off half-way measures nothing, and the time goes to the steps after it). From the
# first H200 job: fast's cells compiled cold in 102 s; graphs a step shares with an earlier
# one load from inductor's on-disk cache (cuda_graphs adds no new graph to fast's).
SPEED_CAPS = {"eager": (120, 40), "fast": (170, 120), "fast+split_layernorm": (160, 110),
              "fast+cuda_graphs": (120, 45), "fast+best": (170, 100), "numerics": (150, 80),
              "gpu-tests": (180, 60), "throughput-b16": (170, 110)}


def best_speedups(rows: list[dict]) -> list[str]:
    """The rewrites that hold their gain in this job's measurements: compiled (`fast+X` faster
    than `fast`), else eager (`fast-eager+X` faster than `fast-eager`), else, not measured
    yet, each one (its predicted gain)."""
    ms = {r["mode"]: r["ms_per_step"] for r in rows if r.get("workload") == "seed-b64" and "ms_per_step" in r}

    def holds(name: str) -> bool:
        for base in ("fast", "fast-eager"):
            if f"{base}+{name}" in ms and base in ms:
                return ms[f"{base}+{name}"] < ms[base]
        return True
    return [name for name in SPEEDUP_NAMES if holds(name)]


def best_mode(rows: list[dict]) -> str:
    """throughput.py's name of fast with best_speedups(rows) (fast alone if none holds)."""
    return "+".join(["fast", *best_speedups(rows)])


def speed_steps(args) -> list[tuple]:
    """The GPU speed issue's plan (--only: some steps, in the order named): the seed's step
    eager with each rewrite, `fast` and `fast` with the rewrites of the largest predicted gain,
    then fast+best (every rewrite that holds its gain so far: best_speedups) and its numerics,
    the gpu tests, the smaller rewrites one at a time, batch 16, the end-to-end 9+9 training.
    A step is (name, command, cap, need); a command may be a function of the rows measured so
    far (fast+best's rewrites are known only then)."""
    py, quick = sys.executable, ["--quick"] if args.quick else []
    bench = [py, "benchmarks/throughput.py", "--device", args.device, *quick, "--workloads"]
    short = ["--warmup", "1", "--steps", "2"] if args.quick else ["--warmup", "5", "--steps", "20"]
    profile = ["--profile", "2" if args.quick else "10"]
    train = argparse.Namespace(**dict(vars(args), params=["params/seed-best-mmnist.yaml"],
                                      budget_min=args.budget_min or 2.0,
                                      set=[*SPEED_TRAIN, *args.set]))
    (_, train_cmd, train_cap), = train_steps(train)
    eager = ["seed", "fast-eager", *[f"fast-eager+{s}" for s in SPEEDUP_NAMES if s not in ("cuda_graphs", "zero_state")]]
    steps = {
        "eager": [*bench, "seed-b64", "--modes", *eager, *short],
        "fast": [*bench, "seed-b64", "--modes", "fast", *short, *profile],
        "fast+split_layernorm": [*bench, "seed-b64", "--modes", "fast+split_layernorm", *short, *profile],
        "fast+cuda_graphs": [*bench, "seed-b64", "--modes", "fast+cuda_graphs", *short],
        "fast+best": lambda rows: [*bench, "seed-b64", "--modes", best_mode(rows), *short, *profile],
        "numerics": lambda rows: [*bench, "seed-b64", "--check-numerics", "5" if args.quick else "100",
                                  "--with", *best_speedups(rows)],
        "gpu-tests": gpu_test_steps(args)[0][1],
        **{f"fast+{s}": [*bench, "seed-b64", "--modes", f"fast+{s}", *short]
           for s in SPEEDUP_NAMES[2:]},
        "throughput-b16": lambda rows: [*bench, "seed-b16", "--modes", "seed", "fast", best_mode(rows), *short],
        "train": lambda rows: [*train_cmd, "--set", f"speedups={best_speedups(rows)}"],
    }
    unknown = [name for name in args.only if name not in steps]
    if unknown:
        raise SystemExit(f"gpu_job: unknown speed step(s) {', '.join(unknown)} "
                         f"(choose from {', '.join(steps)})")
    caps = dict(SPEED_CAPS, train=(train_cap, 60))
    return [(name, steps[name], *caps.get(name, (150, 60))) for name in args.only or steps]


TASKS = {"bench": bench_steps, "train": train_steps, "gpu-tests": gpu_test_steps,
         "speed": speed_steps}


# --------------------------------------------------------------------------------------------
# packing
# --------------------------------------------------------------------------------------------

def pack_runs(results: Path, out: Path, budget_files: int, max_bytes: int, model_bytes: int) -> list[Path]:
    """results/* as runs.tar.gz (parts when too large): no checkpoints, no big model.pt."""
    if not results.is_dir():
        return []
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for f in sorted(results.rglob("*")):
            if not f.is_file() or f.name.startswith(CHECKPOINT_STEM) or f.name.endswith(".tmp"):
                continue
            if f.name == "model.pt" and f.stat().st_size > model_bytes:
                continue
            tar.add(f, arcname=str(f.relative_to(results.parent)))
    data = buffer.getvalue()
    for old in out.glob("runs.tar.gz*"):
        old.unlink()
    parts = [data[i:i + max_bytes] for i in range(0, len(data), max_bytes)][:budget_files]
    if len(parts) == 1:
        (out / "runs.tar.gz").write_bytes(parts[0])
        return [out / "runs.tar.gz"]
    paths = [out / f"runs.tar.gz.part{i:02d}" for i in range(len(parts))]
    for path, part in zip(paths, parts):
        path.write_bytes(part)  # cat runs.tar.gz.part* > runs.tar.gz
    return paths


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=list(TASKS))
    p.add_argument("params", nargs="*", help="train: params files")
    p.add_argument("--out", type=Path, required=True, help="folder for what comes back")
    p.add_argument("--work", type=Path, default=Path("/tmp/nowcast-gpu-job"),
                   help="scratch folder (results folders before packing)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny shapes: checks the job, not the speed")
    p.add_argument("--limit-s", type=float, default=540, help="the whole job's time (default 540)")
    p.add_argument("--budget-min", type=float, help="train: time budget per params set "
                   "(default: the limit shared between the sets)")
    p.add_argument("--after-training-s", type=float, default=90,
                   help="train: time allowed after the budget for scoring and outputs")
    p.add_argument("--only", nargs="+", default=[], metavar="STEP",
                   help="speed: these steps only, in this order")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="train: a params value for every set (repeatable)")
    p.add_argument("--workloads", nargs="*", help="bench: throughput workloads (default: all)")
    p.add_argument("--max-files", type=int, default=8)
    p.add_argument("--max-file-mib", type=float, default=16)
    p.add_argument("--model-mib", type=float, default=8, help="keep model.pt up to this size")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    job = Job(args.out, args.limit_s, args.max_files, args.max_file_mib)
    env = child_env(args.device)
    job.say(f"gpu_job {args.task} on {args.device}{' (quick)' if args.quick else ''}, "
            f"limit {args.limit_s:.0f} s")
    failed = 0
    for name, cmd, cap, *need in [environment_step(), *TASKS[args.task](args)]:
        need = max([10, *need])
        if job.left() < need:
            job.record({"step": name, "status": "skipped", "reason": "out of time",
                        "needs_s": need, "left_s": round(job.left())})
            failed += 1
            continue
        cmd = cmd(job.rows) if callable(cmd) else cmd
        failed += job.step(name, cmd, cap, env)["status"] != 0
        pack_runs(args.work / "results", args.out, args.max_files - 2, job.max_bytes,
                  int(args.model_mib * 2**20))
    job.say(f"gpu_job: {failed} step(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
