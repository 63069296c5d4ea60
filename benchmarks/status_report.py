"""How long `nowcast status` and a cold `nowcast report` (HTML and PDF) take over many completed
runs: N synthetic results folders (default 200 and 1,000) made from the committed MMNIST-T
reference runs, each a copy of one of them under its own job_id and seed (figures and scores
hard-linked, the JSON and YAML rewritten), so that the report has seed groups, comparisons and
figures to build as it would for a real sweep. Prints a table with the machine's load.

    python benchmarks/status_report.py [--runs 200 1000] [--repeats 3]

Targets (the faults issue): status over 1,000 runs within 2 s and a cold report of 200 runs
within 20 s on an idle 2-core machine. Not a test: the figures depend on the machine and its
load; benchmarks/RESULTS.md records them with both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ("mmnist-t-cpu-p4", "mmnist-t-cpu-p4-seed1", "mmnist-t-cpu-p4-b40", "mmnist-t-cpu-predrnn",
             "mmnist-t-cpu-simvp", "mmnist-t-cpu-simvp-b100")
REWRITTEN = ("status.json", "params.yaml", "metrics.json")
SKIPPED = ("model.pt",)  # no command here reads the weights


def make_runs(root: Path, n: int) -> None:
    """n completed runs in `root`, template i % len(TEMPLATES), job_id run-<i>, seed i."""
    for i in range(n):
        source = ROOT / "reference_results" / TEMPLATES[i % len(TEMPLATES)]
        folder, job_id = root / f"run-{i:04d}", f"run-{i:04d}"
        folder.mkdir(parents=True)
        for f in source.iterdir():
            if f.name in SKIPPED:
                continue
            if f.name not in REWRITTEN:
                os.link(f, folder / f.name)
        status = json.loads((source / "status.json").read_text())
        (folder / "status.json").write_text(json.dumps({**status, "job_id": job_id}))
        params = yaml.safe_load((source / "params.yaml").read_text())
        (folder / "params.yaml").write_text(yaml.safe_dump({**params, "job_id": job_id, "seed": i},
                                                           sort_keys=False))
        metrics = json.loads((source / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({**metrics, "job_id": job_id}))


def wall(argv: list[str], repeats: int) -> float:
    """The median wall time of `python -m nowcast ARGV` (exit 0 required)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nowcast", *argv], capture_output=True, check=True,
                       cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cold_report(root: Path, scratch: Path, repeats: int) -> float:
    """A report into a new output folder each time (nothing cached), HTML and PDF."""
    times = []
    for k in range(repeats):
        out = scratch / f"report-{k}"
        times.append(wall(["report", "--results", str(root), "--out", str(out), "--no-reference"], 1))
        if not (out / "report.html").is_file() or not (out / "report.pdf").is_file():
            raise SystemExit(f"the report in {out} lacks report.html or report.pdf")
        shutil.rmtree(out)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores, load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("| runs | nowcast status (s) | cold nowcast report, HTML + PDF (s) | load (1 min) |")
    print("|---|---|---|---|")
    for n in args.runs:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch) / "results"
            make_runs(root, n)
            status = wall(["status", "--results", str(root)], args.repeats)
            report = cold_report(root, Path(scratch), args.repeats)
            print(f"| {n:,} | {status:.2f} | {report:.1f} | {os.getloadavg()[0]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
