"""The `nowcast` command: train | evaluate | predict | run | sweep | report | slides.

run and sweep live in launch.py (papermill, sbatch); the others below.

Every user error (bad params, missing or corrupt data, impossible architecture) is printed as one
line, `nowcast: error: ...`, with exit status 2; nothing is left that looks like a finished run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import NowcastError


def _train(args) -> int:
    from .config import load_config
    from .experiment import run_experiment
    from .training import Preempted, install_preemption_handler

    overrides = list(args.set or [])
    if args.job_id:
        overrides.append(f"job_id={args.job_id}")
    if args.results:
        overrides.append(f"results_dir={args.results}")
    cfg = load_config(args.config, overrides)
    install_preemption_handler()
    try:
        path = run_experiment(cfg, progress=not args.quiet)
    except Preempted as e:
        print(f"nowcast: preempted: {e}", file=sys.stderr)
        return 3
    print(path)
    return 0


def _evaluate(args) -> int:
    from .evaluate import evaluate_baseline, evaluate_checkpoint
    if args.baseline:
        print(evaluate_baseline(args.baseline, args.protocol, args.data, args.results, args.job_id))
    else:
        print(evaluate_checkpoint(args.checkpoint, args.protocol, args.data, args.results, args.job_id))
    return 0


def _predict(args) -> int:
    from .predict import predict_frames
    print(predict_frames(args.checkpoint, args.input, args.steps, args.out))
    return 0


def _report(args) -> int:
    from .publish import build_report
    print(build_report([Path(d) for d in args.results], out_dir=args.out, renderer=args.renderer,
                       reference_dirs=[] if args.no_reference else None))
    return 0


def _slides(args) -> int:
    from .publish import build_slides
    print(build_slides([Path(d) for d in args.results], out_dir=args.out,
                       pdf=False if args.html_only else None, pptx=args.pptx,
                       reference_dirs=[] if args.no_reference else None))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nowcast", description="Reproducible precipitation nowcasting with ConvLSTM networks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one params set into results/<job_id>/")
    p.add_argument("-c", "--config", required=True, help="params YAML file (params/*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one parameter (repeatable), e.g. --set stride=1")
    p.add_argument("--job-id", help="results folder name (default: SLURM ids or time + params hash)")
    p.add_argument("--results", help="results root folder (default: results)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a checkpoint (or a baseline) on a protocol or data file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="results/<job_id>/model.pt")
    what.add_argument("--baseline", choices=["persistence", "extrapolation"],
                      help="score a radar baseline instead of a model")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--protocol", choices=["mmnist-10", "mmnist-t", "knmi-30-60"])
    where.add_argument("--data", help="an (N,T,H,W) uint8 .npz (radar: the shared PV encoding)")
    p.add_argument("--job-id", help="results folder name for the scores")
    p.add_argument("--results", default="results", help="results root folder (default: results)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="forecast K frames from input frames")
    p.add_argument("--checkpoint", required=True, help="results/<job_id>/model.pt")
    p.add_argument("--input", required=True,
                   help="frames: .npz ((T,H,W) or (1,T,H,W) uint8; radar PV files too) or a folder of PNGs")
    p.add_argument("--steps", type=int, required=True, help="frames to predict")
    p.add_argument("--out", required=True, help="forecast.gif or forecast.npz")
    p.set_defaults(func=_predict)

    from . import launch
    launch.add_run_arguments(sub.add_parser(
        "run", help="run params sets locally through the notebook (papermill); skips completed ones"))
    launch.add_sweep_arguments(sub.add_parser(
        "sweep", help="submit one SLURM array task per params set, then the report job"))

    p = sub.add_parser("report", help="thesis-style HTML + PDF report from results folders")
    p.add_argument("--results", nargs="+", default=["results"], help="results folders (default: results)")
    p.add_argument("--out", type=Path, help="output folder (default: report/_output)")
    p.add_argument("--renderer", choices=["auto", "quarto", "pandoc"], default="auto",
                   help="auto: quarto when on PATH, else pandoc + typst")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the committed reference runs (reference_results/)")
    p.set_defaults(func=_report)

    p = sub.add_parser("slides", help="Marp slide deck (HTML; PDF when chromium is present)")
    p.add_argument("--results", nargs="+", default=["results"], help="results folders (default: results)")
    p.add_argument("--out", type=Path, help="output folder (default: slides/_output)")
    p.add_argument("--html-only", action="store_true", help="skip the PDF even when chromium is present")
    p.add_argument("--pptx", action="store_true", help="also export PowerPoint (needs chromium)")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the committed reference runs (reference_results/)")
    p.set_defaults(func=_slides)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NowcastError as e:
        print(f"nowcast: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nowcast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
