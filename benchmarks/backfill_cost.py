"""Backfill the cost of runs trained before env.json recorded it: FLOP per step counted by
nowcast.cost.step_flop from the run's params.yaml (at its training frames: radar crops, else
the frames model.pt was built for, else the params' image size), times the steps env.json
records; `cost_recorded` says "backfilled from params and steps". Runs without steps (scores
only) and runs that already say their cost are left as they are.

    .venv/bin/python benchmarks/backfill_cost.py reference_results/*/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nowcast.checkpoint import safe_load
from nowcast.config import load_config, without_unused
from nowcast.cost import run_cost, step_flop, training_frame_shape
from nowcast.paths import JobPaths
from nowcast.util import write_json
from nowcast.yamlio import read_params


def backfill(folder: Path) -> str:
    paths = JobPaths(folder)
    env = json.loads(paths.env.read_text())
    if "train_flop" in env or not isinstance(env.get("steps"), int):
        return "left as it is"
    cfg = load_config(values=without_unused(read_params(paths.params)))
    shape = None
    if paths.model.is_file():
        shape = safe_load(paths.model).get("frame_shape")
    flop = step_flop(cfg, training_frame_shape(cfg, shape))
    env.update(run_cost(cfg, env["steps"], flop), cost_recorded="backfilled from params and steps")
    write_json(paths.env, env)
    return f"{flop / 1e9:.1f} GFLOP per step x {env['steps']:,} steps"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    for folder in parser.parse_args().folders:
        try:
            print(f"{folder}: {backfill(folder)}")
        except Exception as e:  # noqa: BLE001 - one line per folder, then the next
            print(f"{folder}: not backfilled ({type(e).__name__}: {e})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
