"""Redraw the sample figures (train.gif, test.gif, test_strip.png) of finished runs from their
model.pt, with today's figure code: radar in colour, the test window chosen by
`outputs.shown_test_item`. Only those three files of each folder are replaced (atomically);
scores are not touched.

    .venv/bin/python benchmarks/redraw_figures.py reference_results/knmi-abl-gated-csi ...
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from nowcast.checkpoint import load_checkpoint
from nowcast.data import get_data
from nowcast.errors import NowcastError
from nowcast.outputs import sample_figures
from nowcast.paths import JobPaths
from nowcast.runtime import resolve_runtime


def redraw(folder: Path) -> None:
    paths = JobPaths(folder)
    cfg, model = load_checkpoint(paths.model)
    runtime = resolve_runtime(dataclasses.replace(cfg, device="cpu"))
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        sample_figures(cfg, get_data(cfg), model.eval(), runtime, paths)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    for folder in parser.parse_args().folders:
        try:
            redraw(folder)
            print(f"{folder}: redrawn")
        except NowcastError as e:
            print(f"nowcast: error: {folder}: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
