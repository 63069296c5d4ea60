"""The `nowcast` command: train | evaluate | predict | data | run | sweep | status | report | slides, and two
internal ones: `task` (one SLURM array task, experiments/slurm/train_array.sbatch) and
`sync-notebook` (regenerate the notebook's parameters cell from Config).

Each subcommand parses its arguments and makes one library call. Every user error (bad params,
missing or corrupt data, impossible architecture) is printed as one line, `nowcast: error: ...`,
with exit status 2; nothing is left that looks like a finished run.

    nowcast COMMAND ...   or   python -m nowcast COMMAND ...
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import EXIT_BAD_INPUT, NowcastError, one_line
from .limits import DEFAULT_TIMEOUT_S, collective_timeout
from .protocols import IMAGE_BASELINES, PRESETS, RADAR_BASELINES
from .publish.render import RENDERERS
from .status import MAX_WATCH_S, MIN_WATCH_S, show_status


def library(path: str) -> Callable[..., Any]:
    """The library function ('module:function') a subcommand delegates to, imported when the
    subcommand runs: training, evaluation and prediction need torch and the model zoo (seconds
    to import), the report and slides matplotlib; `nowcast --help` and `nowcast status` need
    none of them and answer at once (tests/test_cli.py, benchmarks/cli_startup.py)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(f"nowcast.{module}"), name)


def _one_results_root(args) -> None:
    """--results beside --set results_dir= (or job_id= beside --job-id) is one fact said twice:
    two different values are refused, naming both, instead of one silently winning."""
    for flag, key in (("results", "results_dir"), ("job_id", "job_id")):
        given = getattr(args, flag, None)
        for override in args.set or []:
            name, _, value = override.partition("=")
            if name.strip() == key and given is not None and value.strip() != given:
                raise NowcastError(f"--{flag.replace('_', '-')} {given!r} and --set "
                                   f"{key}={value.strip()!r} contradict each other: give one")


def _train(args) -> int:
    _one_results_root(args)
    return library("experiment:train_from_params")(args.config, args.set or [], job_id=args.job_id,
                            results_dir=args.results, progress=not args.quiet,
                            collective_timeout_s=args.collective_timeout)


def _evaluate(args) -> int:
    if args.all and not args.data:
        raise NowcastError("--all scores every sequence of a --data file; a protocol's test "
                           "split is fixed")
    if args.baseline:
        print(library("evaluate:evaluate_baseline")(args.baseline, args.protocol, args.data,
                                                    args.results, args.job_id))
        return 0
    print(library("evaluate:evaluate_checkpoint")(args.checkpoint, args.protocol, args.data,
                                                  args.results, args.job_id, args.all))
    return 0


def _predict(args) -> int:
    print(library("predict:predict_frames")(args.checkpoint, args.input, args.steps, args.out))
    return 0


def _data(args) -> int:
    if args.action == "inspect":
        return library("data.radar.archive:inspect_main")(args.path, as_json=args.json,
                                                           gap_min=args.gap)
    print(library("data.radar.archive:import_archive")(args.path, args.out, gap_min=args.gap))
    return 0


def _run(args) -> int:
    _one_results_root(args)
    return library("launch.local:run_local")(args.params, args.results, args.set, force=args.force, progress=not args.quiet)


def _sweep(args) -> int:
    _one_results_root(args)
    library("launch.slurm:submit_sweep")(args.params, args.results, partition=args.partition, gpus=args.gpus,
                 time=args.time, account=args.account, dry_run=args.dry_run,
                 overrides=args.set, report=not args.no_report, cpus=args.cpus,
                 sbatch_args=args.sbatch_arg, force=args.force,
                 gpus_per_task=args.gpus_per_task, procs_per_task=args.procs_per_task,
                 nodes=args.nodes, collective_timeout=args.collective_timeout)
    return 0


def _status(args) -> int:
    # a folder named on the command line must exist; the default one may not yet (fresh clone)
    return show_status(args.results or ["results"], watch=args.watch, as_json=args.json,
                       must_exist=args.results is not None)


def _report(args) -> int:
    print(library("publish.report:build_report")([Path(d) for d in args.results], out_dir=args.out, renderer=args.renderer,
                       reference_dirs=[] if args.no_reference else None))
    return 0


def _slides(args) -> int:
    print(library("publish.slides:build_slides")([Path(d) for d in args.results], out_dir=args.out,
                       pdf=False if args.html_only else None, pptx=args.pptx,
                       reference_dirs=[] if args.no_reference else None))
    return 0


def _task(args) -> int:
    launch = None
    if args.procs_per_node is not None or args.collective_timeout is not None:
        launch = library("launch.slurm:Launch")(per_node=args.procs_per_node or 1, nodes=args.nodes or 1,
                        timeout_s=collective_timeout(args.collective_timeout))
    return library("launch.task:task_main")(args.params, args.results, launch=launch, rendezvous=args.rendezvous)


def _sync_notebook(args) -> int:
    if library("launch.notebook:sync_notebook")(check=args.check) or not args.check:
        return 0
    print("experiments/train.{py,ipynb} are out of date: run python -m nowcast sync-notebook",
          file=sys.stderr)
    return 1


# --------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one params set into results/<job_id>/ (no notebook)")
    p.add_argument("-c", "--config", required=True, help="params YAML file (params/*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one parameter (repeatable), e.g. --set stride=1")
    p.add_argument("--job-id", help="results folder name (default: SLURM ids or time + params hash)")
    p.add_argument("--results", help="results root folder (default: results)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--collective-timeout", type=float, metavar="SECONDS",
                   help="under torchrun: a collective waits at most this long for the other "
                   f"processes (default {DEFAULT_TIMEOUT_S:g})")
    p.set_defaults(func=_train)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint (or a baseline) on a protocol or data file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="results/<job_id>/model.pt")
    what.add_argument("--baseline", choices=list(dict.fromkeys(RADAR_BASELINES + IMAGE_BASELINES)),
                      help="score a baseline instead of a model: radar ones on knmi-30-60 or "
                           "--data, persistence and mean_frame on a Moving MNIST protocol")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--protocol", choices=list(PRESETS))
    where.add_argument("--data", help="an (N,T,H,W) uint8 .npz (radar: the shared PV encoding)")
    p.add_argument("--all", action="store_true",
                   help="with --data and a sequence file: score every sequence (default: its "
                        "10%% test split, as training would split it; a radar file's every "
                        "event is scored always)")
    p.add_argument("--job-id", help="results folder name for the scores")
    p.add_argument("--results", default="results", help="results root folder (default: results)")
    p.set_defaults(func=_evaluate)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="forecast K frames from input frames")
    p.add_argument("--checkpoint", required=True, help="results/<job_id>/model.pt")
    p.add_argument("--input", required=True,
                   help="frames: .npz ((T,H,W) or (1,T,H,W) uint8; radar PV files too) or a folder of PNGs")
    p.add_argument("--steps", type=int, required=True, help="frames to predict")
    p.add_argument("--out", required=True, help="forecast.gif or forecast.npz")
    p.set_defaults(func=_predict)


GAP_HELP = ("frames further apart than this many minutes start a new event (default: 1.5 "
            "time steps)")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="inspect a radar archive, or import it as one .npz")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    i = actions.add_parser("inspect", help="events, times, step, grid, pixel size, range, "
                           "coverage and wet fraction of a radar file, folder or native files")
    i.add_argument("path", help="an .npz/.npy radar file, a native file or a folder of them")
    i.add_argument("--json", action="store_true", help="the facts as JSON")
    i.add_argument("--gap", type=float, metavar="MIN", help=GAP_HELP)
    i.set_defaults(func=_data)
    m = actions.add_parser("import", help="a radar archive as one .npz in the shared PV encoding")
    m.add_argument("path", help="an .npz/.npy radar file, a native file or a folder of them")
    m.add_argument("--out", required=True, help="the .npz to write (never overwritten)")
    m.add_argument("--gap", type=float, metavar="MIN", help=GAP_HELP + "; kept in the file's "
                   "meta, so that training and scoring cut its events there too")
    m.set_defaults(func=_data)


def _add_params_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("params", nargs="+", help="params files or grid files (params/*.yaml, params/grids/*.yaml)")
    p.add_argument("--results", help="results root folder for every set (default: each set's "
                   "results_dir, 'results' unless the params say otherwise)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter in every set (repeatable)")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run params sets locally through the notebook (papermill); "
                       "skips completed ones")
    _add_params_arguments(p)
    p.add_argument("--force", action="store_true", help="run sets even when completed results exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_run)


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="submit one SLURM array task per params set, then the report job")
    _add_params_arguments(p)
    p.add_argument("--partition", help="SLURM partition (default: $SBATCH_PARTITION, else the cluster's)")
    p.add_argument("--gpus", help="GPUs per task, e.g. 1, 2, a100:1; 0 for none (default: 1, the script header)")
    p.add_argument("--time", help="time limit per task, e.g. 04:00:00 (default: $SBATCH_TIMELIMIT, else 4 h)")
    p.add_argument("--account", help="SLURM account (default: $SBATCH_ACCOUNT)")
    p.add_argument("--cpus", type=int, help="CPUs per task; per process with --gpus-per-task or "
                   "--procs-per-task (default: 4, the script header)")
    p.add_argument("--gpus-per-task", metavar="N|TYPE:N",
                   help="data-parallel: N processes per node, one GPU each (NCCL), same global "
                   "batch and loss curve (default: $SBATCH_GPUS_PER_TASK, else one process)")
    p.add_argument("--procs-per-task", type=int, metavar="N",
                   help="data-parallel on CPUs: N processes per node without GPUs (gloo)")
    p.add_argument("--nodes", type=int, metavar="M",
                   help="with --gpus-per-task/--procs-per-task: M nodes of N processes each "
                   "(default: $SBATCH_NODES, else 1)")
    p.add_argument("--collective-timeout", type=float, metavar="SECONDS",
                   help="a collective waits at most this long for the other processes: a "
                   f"failed or hung rank ends the task (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="OPTION",
                   help="any further sbatch option for the array, e.g. --sbatch-arg=--mem=32G (repeatable)")
    p.add_argument("--no-report", action="store_true", help="submit the array only")
    p.add_argument("--force", action="store_true",
                   help="submit sets even when completed results exist (default: skip them)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the sbatch commands only")
    p.set_defaults(func=_sweep)


def _add_status(sub) -> None:
    p = sub.add_parser("status", help="one table of every run: state, progress, ETA, result or error",
                       description="One table of every run under the results folders: state "
                       "(running, pending, preempted, stale: its process is gone, failed, "
                       "completed), progress and ETA, the headline metric of completed runs and "
                       "the error of failed ones. Under SLURM, squeue's states are joined in and "
                       "the sweeps' tasks without results yet are listed too.")
    p.add_argument("--results", nargs="+", help="results folders (default: results)")
    p.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                   help=f"redraw every SECONDS (default 5, {MIN_WATCH_S:g} to {MAX_WATCH_S:g}) until Ctrl-C")
    p.add_argument("--json", action="store_true",
                   help="print the rows as JSON (with --watch: one JSON document per line)")
    p.set_defaults(func=_status)


def _add_publish(sub, name: str, help: str, out: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    p.add_argument("--results", nargs="+", default=["results"], help="results folders (default: results)")
    p.add_argument("--out", type=Path, help=f"output folder (default: {out})")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the committed reference runs (reference_results/)")
    return p


def _add_report_and_slides(sub) -> None:
    p = _add_publish(sub, "report", "thesis-style HTML + PDF report from results folders",
                     "report/_output")
    p.add_argument("--renderer", choices=["auto", *RENDERERS], default="auto",
                   help="auto: quarto when on PATH, else pandoc + typst")
    p.set_defaults(func=_report)
    p = _add_publish(sub, "slides", "Marp slide deck (HTML; PDF when chromium is present)",
                     "slides/_output")
    p.add_argument("--html-only", action="store_true", help="skip the PDF even when chromium is present")
    p.add_argument("--pptx", action="store_true", help="also export PowerPoint (needs chromium)")
    p.set_defaults(func=_slides)


def _add_internal(sub) -> None:
    # No help=: argparse lists only subcommands given one (help=SUPPRESS would print
    # '==SUPPRESS==' in the list before Python 3.13); each still has its own --help.
    p = sub.add_parser("task", description="One SLURM array task: run one params file through the "
                       "notebook; exit 75 to ask for a requeue (experiments/slurm/train_array.sbatch).")
    p.add_argument("params", help="one params file")
    p.add_argument("results", nargs="?", help="results root folder (default: the params' results_dir)")
    p.add_argument("--procs-per-node", type=int, help="processes per node: more than one starts "
                   "them with srun (data-parallel)")
    p.add_argument("--nodes", type=int, help="nodes (with --procs-per-node)")
    p.add_argument("--collective-timeout", type=float, metavar="SECONDS",
                   help=f"how long a collective waits for the other processes (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--rendezvous", metavar="HOST:PORT", help="this process is one of srun's "
                   "ranks (set by the task that starts them)")
    p.set_defaults(func=_task)
    p = sub.add_parser("sync-notebook", description="Regenerate the parameters cell of "
                       "experiments/train.py from Config and pair experiments/train.ipynb.")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    p.set_defaults(func=_sync_notebook)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nowcast", description="Reproducible precipitation nowcasting with ConvLSTM networks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_evaluate, _add_predict, _add_data, _add_run, _add_sweep,
                _add_status, _add_report_and_slides, _add_internal):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NowcastError as e:
        print(f"nowcast: error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # an output folder that cannot be written: read-only, full, a file in
        # its way, deleted meanwhile; what was written is whole (atomic writes) or absent
        where = f"{e.filename}: cannot write there" if e.filename else "cannot write"
        print(f"nowcast: error: {one_line(f'{where} ({e.strerror or e})')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nowcast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
