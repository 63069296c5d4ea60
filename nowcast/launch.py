"""Launching params sets: locally through papermill (`nowcast run`) or as a SLURM array
(`nowcast sweep`), and the glue the notebook experiments/train.ipynb calls.

One params set = one run of experiments/train.ipynb = one folder results/<job_id>/:

    nowcast run params/smoke.yaml params/demo/*.yaml        # one after another, here
    nowcast sweep params/grids/example.yaml --partition gpu  # one SLURM array task per set

A params set is a YAML file (params/*.yaml) or one point of a grid file (params/grids/*.yaml:
`base` + `axes`). Every set is validated (load_config: unknown keys, wrong types, impossible
combinations, missing data files) before anything runs or is submitted.

How a launched run ends up with its executed notebook inside its results folder: the launcher
picks the job id, runs the notebook with papermill into a staging file, and sets
NOWCAST_DEFER_FINALIZE=1 so that the notebook leaves the run in results/.running-<job_id>/;
when papermill is done, the launcher moves the executed notebook in and completes the run
(results.complete_run; results.fail_run on failure). Run by hand (`papermill
experiments/train.ipynb out.ipynb -f params/smoke.yaml`), the notebook completes its own run.

Preemption (SLURM): the batch script forwards SIGUSR1/SIGTERM to the task; the task forwards
them to the notebook's kernel, where training checkpoints and stops (training.Preempted); the
task then exits with PREEMPTED (75) and the batch script requeues the job, which resumes from
the checkpoint in results/.running-<job_id>/ (same array job and task ids, same folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .config import FIELDS, Config, data_dir, expand_grid, load_config, parse_override, read_yaml
from .errors import NowcastError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path("experiments/train.ipynb")
SLURM_DIR = Path("experiments/slurm")
DEFER_ENV = "NOWCAST_DEFER_FINALIZE"
PREEMPTED = 75  # exit status of a task that checkpointed and wants to be requeued (EX_TEMPFAIL)
STAGING = ".staging"  # results/.staging/<job_id>.ipynb: executed notebooks in progress
SWEEPS = ".sweeps"    # results/.sweeps/<stamp>/: params lists, expanded grid points, SLURM logs


# --------------------------------------------------------------------------------------------
# params sets
# --------------------------------------------------------------------------------------------

@dataclass
class ParamsSet:
    """One run to launch: where it came from and the parameters to give the notebook."""
    source: str               # the params file, or 'grid.yaml[point]'
    values: dict[str, Any]    # what the notebook is given (file or grid point, name filled in)
    cfg: Config               # the fully resolved, validated configuration


def is_grid(path: str | Path) -> bool:
    data = read_yaml(path)
    return "axes" in data or "base" in data


def check_paths(cfg: Config, where: str) -> None:
    """Files the run will read must exist now (a corrupt one fails at run time, as it should)."""
    if cfg.data_file and not Path(cfg.data_file).is_file():
        raise NowcastError(f"{where}: data_file '{cfg.data_file}' does not exist "
                           f"(relative paths are taken from {Path.cwd()})")
    if cfg.data_dir and not Path(cfg.data_dir).is_dir():
        raise NowcastError(f"{where}: data_dir '{cfg.data_dir}' is not a folder")
    if cfg.dataset == "mmnist" and cfg.digits == "mnist":
        folder = data_dir(cfg)
        if folder is None or not (folder / "mnist.npz").is_file():
            raise NowcastError(f"{where}: digits: mnist needs mnist.npz in data_dir or "
                               f"$NOWCAST_DATA_DIR (found none)")


def collect(paths: typing.Iterable[str | Path], overrides: typing.Sequence[str] = (),
            results_dir: Optional[str] = None) -> list[ParamsSet]:
    """Every params set named by paths (files or grid files), validated, in order.

    Raises NowcastError on the first bad set, before anything has run.
    """
    paths = list(paths)
    if not paths:
        raise NowcastError("no params files given")
    extra = list(overrides) + ([f"results_dir={results_dir}"] if results_dir else [])
    sets: list[ParamsSet] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise NowcastError(f"{path}: no such params file")
        if is_grid(path):
            for name, point in expand_grid(path):
                where = f"{path}[{name}]"
                try:
                    cfg = load_config(values=point, overrides=extra)
                except NowcastError as e:
                    raise NowcastError(f"{where}: {e}") from None
                check_paths(cfg, where)
                sets.append(ParamsSet(where, _with_overrides(point, extra), cfg))
        else:
            cfg = load_config(path, extra)
            check_paths(cfg, str(path))
            values = dict(read_yaml(path))
            values.setdefault("name", cfg.name)
            sets.append(ParamsSet(str(path), _with_overrides(values, extra), cfg))
    return sets


def _with_overrides(values: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    out = dict(values)
    for text in overrides:
        key, value = parse_override(text)
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# the notebook side (experiments/train.ipynb calls these)
# --------------------------------------------------------------------------------------------

def _default(name: str) -> Any:
    f = FIELDS[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _accepts_str(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is str:
        return True
    if origin is Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return any(_accepts_str(a) for a in typing.get_args(tp))
    return False


def injected_names() -> set[str]:
    """Names that papermill's injected-parameters cell assigned, read from the kernel's input
    history: the cells run after the parameters cell and before the current one. Empty when the
    notebook runs outside IPython or without injected parameters."""
    import ast
    try:
        from IPython import get_ipython
    except ImportError:
        return set()
    shell = get_ipython()
    if shell is None:
        return set()
    cells = list(shell.user_ns.get("_ih") or [])
    marker = [i for i, c in enumerate(cells) if c.strip().startswith("_names_before = set(globals())")]
    if not marker:
        return set()
    names: set[str] = set()
    for source in cells[marker[-1] + 2:-1]:  # after the marker and the parameters cell
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names |= {t.id for node in tree.body if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Name)}
    return names


def notebook_config(parameters: dict[str, Any], injected: typing.Collection[str] = ()) -> Config:
    """The Config of the notebook's parameters (its parameters cell plus papermill's injected cell).

    - A name that is not a Config field is rejected with the closest field name (a typo in
      `-p strde 2` must not silently run the default).
    - A value counts as given when papermill injected it (`injected`, see injected_names) or
      when it differs from the parameters cell's default (edited by hand). Others count as not
      given, so that a protocol preset (`-p protocol mmnist-t`) fills its own data fields, while
      `-p protocol mmnist-t -p k_in 10` is refused as a contradiction, as a params file would be.
    - A string given for a field that takes no strings is read as YAML: `-p hidden_sizes "[8, 8]"`
      and `-p max_pool false` work from the papermill command line.
    """
    hints = typing.get_type_hints(Config)
    values: dict[str, Any] = {}
    for key, value in parameters.items():
        if key not in FIELDS:
            if isinstance(value, (types.ModuleType, type, Config, Path)) or callable(value):
                continue  # the notebook's own names, when its cells are run again by hand
            values[key] = value  # load_config rejects it, naming the closest field
            continue
        if isinstance(value, str) and not _accepts_str(hints[key]):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
        default = _default(key)
        if key not in injected and type(value) is type(default) and value == default:
            continue
        values[key] = value
    return load_config(values=values)


def finalize_in_notebook() -> bool:
    """False when a launcher (nowcast run / the SLURM task) completes the run after papermill."""
    return os.environ.get(DEFER_ENV, "") not in ("1", "true", "yes")


def run_notebook_experiment(cfg: Config) -> Path:
    """What the notebook's run cell does: install the preemption handler, train, evaluate.

    Returns results/<job_id>/ (run by hand) or results/.running-<job_id>/ (under a launcher,
    which completes it once the executed notebook is saved).
    """
    from .experiment import run_experiment
    from .training import install_preemption_handler

    install_preemption_handler()
    return run_experiment(cfg, finalize=finalize_in_notebook())


def show_results(run_dir: str | Path) -> None:
    """The figures and headline numbers of a run, inline in the notebook."""
    import json

    from IPython.display import Image, Markdown, display

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    if metrics:
        losses = metrics.get("losses", {})
        lines = [f"**{metrics.get('name', '')}** ({metrics.get('architecture', '')}, "
                 f"{metrics.get('parameters', 0):,} parameters), protocol `{metrics.get('protocol')}`"
                 f"{'' if metrics.get('follows_protocol', True) else ' (not following it: ' + str(metrics.get('data')) + ')'}",
                 "",
                 f"- data: {metrics.get('data', '')}",
                 f"- {losses.get('loss', 'loss')}: train {losses.get('train')}, "
                 f"val {losses.get('val')}, test {losses.get('test')}"]
        for key in metrics.get("headline", []):
            value = metrics.get("mean", {}).get(key)
            if value is not None:
                lines.append(f"- test {key}: {value:.4g} (mean over lead times)")
        lines.append(f"- results folder: `{run_dir}`")
        display(Markdown("\n".join(lines)))
    for name, caption in (("loss.png", "Loss per epoch"), ("loss_median.png", "Median batch loss"),
                          ("per_lead.png", "Test metrics per lead time"),
                          ("test_strip.png", "A test sequence: input, target, prediction")):
        if (run_dir / name).is_file():
            display(Markdown(f"### {caption}"))
            display(Image(filename=str(run_dir / name)))


# --------------------------------------------------------------------------------------------
# running one set through papermill
# --------------------------------------------------------------------------------------------

class _Forwarder:
    """While papermill runs, pass SIGUSR1/SIGTERM on to the kernel (our child processes), where
    training checkpoints and stops. Ctrl-C (SIGINT) is passed on as SIGTERM, so that an
    interrupted local run keeps its checkpoint too; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Forwarder":
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        forward = signal.SIGTERM if signum == signal.SIGINT else signum
        name = signal.Signals(signum).name
        print(f"nowcast: {name} received: asking the run to checkpoint and stop", file=sys.stderr,
              flush=True)
        for pid in _children(os.getpid()):
            try:
                os.kill(pid, forward)
            except OSError:
                pass


def _children(pid: int) -> list[int]:
    try:
        import psutil
        return [p.pid for p in psutil.Process(pid).children(recursive=False)]
    except ImportError:
        out: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            out += [int(x) for x in task.read_text().split()]
        return out


def run_one(ps: ParamsSet, job_id: Optional[str] = None, progress: bool = True) -> tuple[str, Path | None]:
    """Run one params set through experiments/train.ipynb; returns (status, results folder).

    status: 'completed' | 'failed' | 'preempted' (the run waits in results/.running-<job_id>/).
    """
    import papermill as pm

    from . import results

    cfg = ps.cfg
    job_id = job_id or results.resolve_job_id(cfg)
    root = Path(cfg.results_dir)
    running = root / f"{results.RUNNING_PREFIX}{job_id}"
    final = root / job_id
    if final.exists():
        raise NowcastError(f"{final} already exists and is never overwritten: choose another job_id")
    staging = root / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    staged = staging / f"{job_id}.ipynb"
    parameters = dict(ps.values, job_id=job_id, results_dir=cfg.results_dir)

    print(f"nowcast: {ps.source} -> {final}", flush=True)
    old = os.environ.get(DEFER_ENV)
    os.environ[DEFER_ENV] = "1"
    error: Optional[BaseException] = None
    try:
        with _Forwarder() as forwarder:
            pm.execute_notebook(str(_repo_file(NOTEBOOK)), str(staged), parameters=parameters, cwd=os.getcwd(),
                                progress_bar=progress, log_output=False)
    except Exception as e:  # papermill's execution error carries the cell's traceback
        error = e
    finally:
        if old is None:
            os.environ.pop(DEFER_ENV, None)
        else:
            os.environ[DEFER_ENV] = old

    if error is None:
        if running.is_dir():
            path = results.complete_run(running, notebook=staged)
            _remove_if_empty(staging)
            print(f"nowcast: completed {path}", flush=True)
            return "completed", path
        error = NowcastError(f"the notebook finished without leaving {running}")

    message = _short_error(error)
    if running.is_dir() and (forwarder.received is not None or "Preempted" in message):
        print(f"nowcast: preempted; checkpoint kept in {running} ({message})", flush=True)
        return "preempted", running
    if running.is_dir():  # the kernel died, or failed outside run_experiment's own handling
        path = results.fail_run(running, message, notebook=staged)
    elif final.is_dir():  # run_experiment marked it failed: add the executed notebook
        path = final
        if staged.is_file() and not (final / "train.ipynb").exists():
            shutil.move(str(staged), final / "train.ipynb")
    else:  # failed before a results folder existed: still leave a failed folder behind
        path = _failed_folder(cfg, job_id, message, staged)
    _remove_if_empty(staging)
    print(f"nowcast: FAILED {path}: {message}", file=sys.stderr, flush=True)
    return "failed", path


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only when empty: other runs may be staging there
    except OSError:
        pass


def _short_error(error: BaseException) -> str:
    """One line: the exception the notebook raised (papermill wraps it), else error's own."""
    ename = getattr(error, "ename", None)
    if ename:
        return f"{ename}: {getattr(error, 'evalue', '')}".splitlines()[0]
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _failed_folder(cfg: Config, job_id: str, message: str, staged: Path) -> Path:
    from . import results

    cfg = dataclasses.replace(cfg, job_id=job_id)
    running = results.start_run(cfg)
    return results.fail_run(running, message, notebook=staged)


# --------------------------------------------------------------------------------------------
# nowcast run
# --------------------------------------------------------------------------------------------

def run_local(params_paths: list[str], results_dir: Optional[str] = None, overrides: list[str] = (),
              force: bool = False, progress: bool = True) -> int:
    """Run params sets one after another through papermill; 0 when none failed.

    results_dir, when given, replaces every set's own results_dir (default 'results'). A set
    whose completed results already exist with the same resolved params is skipped (force=True
    runs it again, into a new folder).
    """
    from . import results

    sets = collect(params_paths, overrides, results_dir)
    slurm_id = os.environ.get("SLURM_JOB_ID")
    summary = []
    for index, ps in enumerate(sets):
        done = None if force else results.find_completed(ps.cfg.results_dir, ps.cfg)
        if done is not None:
            print(f"nowcast: {ps.source}: skipped, completed in {done}", flush=True)
            summary.append(("skipped", ps.source, done))
            continue
        job_id = ps.cfg.job_id
        if job_id is None and slurm_id and len(sets) > 1:
            job_id = f"{results.resolve_job_id(ps.cfg)}-{index}"  # several sets in one SLURM job
        status, path = run_one(ps, job_id=job_id, progress=progress)
        summary.append((status, ps.source, path))
        if status == "preempted":  # SIGTERM/SIGUSR1: stop here, the rest does not start
            job = Path(path).name[len(results.RUNNING_PREFIX):]
            print(f"nowcast: stopped; to resume from the checkpoint: nowcast run {ps.source} "
                  f"--set job_id={job}", file=sys.stderr)
            break
    print("\nnowcast run:")
    for status, source, path in summary:
        print(f"  {status:9s} {source} -> {path}")
    return 0 if all(s in ("completed", "skipped") for s, _, _ in summary) else 1


def task_main(params: str, results_dir: Optional[str] = None) -> int:
    """One SLURM array task: run one params file; exit PREEMPTED to ask for a requeue."""
    sets = collect([params], results_dir=results_dir)
    if len(sets) != 1:
        raise NowcastError(f"{params}: an array task runs one params set, got {len(sets)}")
    status, _ = run_one(sets[0], progress=False)
    return {"completed": 0, "preempted": PREEMPTED}.get(status, 1)


# --------------------------------------------------------------------------------------------
# nowcast sweep
# --------------------------------------------------------------------------------------------

def _sbatch(args: list[str], dry_run: bool) -> str:
    print("+ " + shlex.join(args), flush=True)
    if dry_run:
        return "DRYRUN"
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise NowcastError(f"sbatch failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip().split(";")[0]


def submit_sweep(params_paths: list[str], results_dir: Optional[str] = None, partition: Optional[str] = None,
                 gpus: Optional[str] = None, time: Optional[str] = None, account: Optional[str] = None,
                 dry_run: bool = False, overrides: list[str] = (), report: bool = True,
                 cpus: Optional[int] = None, sbatch_args: list[str] = ()) -> dict:
    """Submit one SLURM array task per params set, then the report job (afterany on the array).

    gpus: GPUs per task ('1', '2', 'a100:1'; '0' requests none); cpus: CPUs per task;
    partition/time/account as for sbatch; sbatch_args: any further sbatch options (array only). Unset options fall back to sbatch's own environment variables (SBATCH_PARTITION,
    SBATCH_TIMELIMIT, SBATCH_ACCOUNT, SBATCH_GRES) and then to the script headers.
    results_dir, when given, replaces every set's own results_dir; the report job reads it
    (else the first set's). Every set is validated before anything is submitted. Returns the
    job ids and files.
    """
    import time as _time

    sets = collect(params_paths, overrides, results_dir)
    if not dry_run and shutil.which("sbatch") is None:
        raise NowcastError("sbatch not found: nowcast sweep needs a SLURM login node "
                           "(or use `nowcast run` to run the sets here)")
    results_dir = results_dir or sets[0].cfg.results_dir
    stamp = _time.strftime("%Y%m%d-%H%M%S")
    sweep = Path(results_dir) / SWEEPS / stamp
    n = 1
    while sweep.exists():
        n += 1
        sweep = Path(results_dir) / SWEEPS / f"{stamp}-{n}"
    (sweep / "logs").mkdir(parents=True)
    (sweep / "params").mkdir()

    listed = []
    for i, ps in enumerate(sets):
        # Each task gets exactly what was validated: the set's values, overrides applied
        # (results_dir included), so that the task needs nothing else.
        file = sweep / "params" / f"{i:03d}-{_safe(ps.cfg.name or 'run')}.yaml"
        file.write_text(f"# {ps.source}\n" + yaml.safe_dump(ps.values, sort_keys=False))
        listed.append(str(file))
    list_file = sweep / "params.txt"
    list_file.write_text("\n".join(listed) + "\n")

    common = [f"--chdir={os.getcwd()}"]
    if partition:
        common.append(f"--partition={partition}")
    if account:
        common.append(f"--account={account}")
    if time:
        common.append(f"--time={time}")
    train = ["sbatch", "--parsable", f"--array=0-{len(sets) - 1}", *common,
             f"--output={sweep}/logs/%A_%a.out"]
    if gpus is not None:
        train.append("--gres=none" if str(gpus) in ("0", "none") else f"--gres=gpu:{gpus}")
    if cpus is not None:
        train.append(f"--cpus-per-task={cpus}")
    train += [*sbatch_args, f"--export=ALL,NOWCAST_PYTHON={sys.executable}",
              str(_repo_file(SLURM_DIR / "train_array.sbatch")), str(list_file)]
    array = _sbatch(train, dry_run)

    out = {"array": array, "report": None, "sweep_dir": str(sweep), "list": str(list_file),
           "tasks": [{"index": i, "source": ps.source, "name": ps.cfg.name,
                      "job_id": ps.cfg.job_id or f"{array}_{i}"} for i, ps in enumerate(sets)]}
    if report:
        rep = ["sbatch", "--parsable", f"--dependency=afterany:{array}", "--kill-on-invalid-dep=yes",
               *common, f"--output={sweep}/logs/report-%j.out",
               f"--export=ALL,NOWCAST_PYTHON={sys.executable}",
               str(_repo_file(SLURM_DIR / "report.sbatch")), results_dir]
        out["report"] = _sbatch(rep, dry_run)
    (sweep / "jobs.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    print(f"nowcast sweep: array job {array} ({len(sets)} task{'s' * (len(sets) != 1)}), "
          f"report job {out['report']}; logs in {sweep}/logs")
    for task in out["tasks"]:
        print(f"  {sets[task['index']].cfg.results_dir}/{task['job_id']}  <- {task['source']}")
    return out


def _repo_file(rel: Path) -> Path:
    """A file of the project: relative to the current folder if there, else to the checkout."""
    return rel if rel.is_file() else ROOT / rel


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name)[:80]


# --------------------------------------------------------------------------------------------
# CLI glue (nowcast/cli.py adds these subcommands)
# --------------------------------------------------------------------------------------------

def _add_params_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("params", nargs="+", help="params files or grid files (params/*.yaml, params/grids/*.yaml)")
    p.add_argument("--results", help="results root folder for every set (default: each set's "
                   "results_dir, 'results' unless the params say otherwise)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter in every set (repeatable)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    _add_params_arguments(p)
    p.add_argument("--force", action="store_true", help="run sets even when completed results exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    _add_params_arguments(p)
    p.add_argument("--partition", help="SLURM partition (default: $SBATCH_PARTITION, else the cluster's)")
    p.add_argument("--gpus", help="GPUs per task, e.g. 1, 2, a100:1; 0 for none (default: 1, the script header)")
    p.add_argument("--time", help="time limit per task, e.g. 04:00:00 (default: $SBATCH_TIMELIMIT, else 4 h)")
    p.add_argument("--account", help="SLURM account (default: $SBATCH_ACCOUNT)")
    p.add_argument("--cpus", type=int, help="CPUs per task (default: 4, the script header)")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="OPTION",
                   help="any further sbatch option for the array, e.g. --sbatch-arg=--mem=32G (repeatable)")
    p.add_argument("--no-report", action="store_true", help="submit the array only")
    p.add_argument("--dry-run", action="store_true", help="validate and print the sbatch commands only")
    p.set_defaults(func=cmd_sweep)


def cmd_run(args: argparse.Namespace) -> int:
    return run_local(args.params, args.results, args.set, force=args.force, progress=not args.quiet)


def cmd_sweep(args: argparse.Namespace) -> int:
    submit_sweep(args.params, args.results, partition=args.partition, gpus=args.gpus,
                 time=args.time, account=args.account, dry_run=args.dry_run,
                 overrides=args.set, report=not args.no_report, cpus=args.cpus,
                 sbatch_args=args.sbatch_arg)
    return 0


# --------------------------------------------------------------------------------------------
# the notebook's parameters cell, generated from Config
# --------------------------------------------------------------------------------------------

def parameters_cell() -> str:
    """The source of the notebook's `parameters` cell: every Config field, its default and its
    comment from nowcast/config.py, in the dataclass's order and sections."""
    import inspect

    source = inspect.getsource(Config).splitlines()
    comments: dict[str, str] = {}
    sections: dict[str, str] = {}
    section = None
    last = None
    for line in source:
        m = re.match(r"\s+# --- (\w+)", line)
        if m:
            section = m.group(1)
            last = None
            continue
        m = re.match(r"\s{8,}#\s*(.*)$", line)  # a comment continued on the next line
        if m and last and comments.get(last):
            comments[last] += " " + m.group(1).strip()
            continue
        m = re.match(r"\s+(\w+):[^#]*?(#\s*(.*))?$", line)
        last = None
        if m and m.group(1) in FIELDS:
            last = m.group(1)
            comments[m.group(1)] = (m.group(3) or "").strip()
            if section:
                sections[m.group(1)] = section
                section = None
    lines = []
    for name in FIELDS:
        if name in sections:
            if lines:
                lines.append("")
            lines.append(f"# {sections[name]}")
        text = f"{name} = {_default(name)!r}"
        if comments.get(name):
            # papermill's parameter inspection gives up on a help comment holding '='
            comment = re.sub(r"\s*=\s*", " is ", comments[name])
            text = f"{text:<34s}  # {comment}"
        lines.append(text)
    return "\n".join(lines)


def sync_notebook(py_path: Path = Path("experiments/train.py"), check: bool = False) -> bool:
    """Regenerate the parameters cell of experiments/train.py from Config and pair the .ipynb.

    check=True changes nothing and returns False when either file is out of date.
    """
    import jupytext

    text = py_path.read_text()
    pattern = re.compile(r'(# %% tags=\["parameters"\]\n)(.*?)(\n\n# %%)', re.S)
    if not pattern.search(text):
        raise NowcastError(f"{py_path}: no '# %% tags=[\"parameters\"]' cell")
    new = pattern.sub(lambda m: m.group(1) + parameters_cell() + m.group(3), text, count=1)
    notebook = jupytext.reads(new, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                       "language": "python"}
    notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    for i, cell in enumerate(notebook.cells):  # stable ids: a regenerated notebook diffs cleanly
        cell["id"] = f"cell-{i:02d}"
    ipynb = py_path.with_suffix(".ipynb")
    rendered = jupytext.writes(notebook, fmt="ipynb")
    up_to_date = new == text and ipynb.is_file() and ipynb.read_text() == rendered
    if not check:
        py_path.write_text(new)
        ipynb.write_text(rendered)
    return up_to_date


def main(argv: Optional[list[str]] = None) -> int:
    """python -m nowcast.launch task PARAMS [RESULTS] | sync-notebook [--check]"""
    parser = argparse.ArgumentParser(prog="python -m nowcast.launch")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("task", help="one SLURM array task (experiments/slurm/train_array.sbatch)")
    p.add_argument("params", help="one params file")
    p.add_argument("results", nargs="?", help="results root folder (default: the params' results_dir)")
    p = sub.add_parser("sync-notebook", help="regenerate the notebook's parameters cell from Config")
    p.add_argument("--check", action="store_true", help="fail if the notebook is out of date")
    args = parser.parse_args(argv)
    try:
        if args.command == "task":
            return task_main(args.params, args.results)
        fresh = sync_notebook(check=args.check)
        if args.check and not fresh:
            print("experiments/train.{py,ipynb} are out of date: "
                  "run python -m nowcast.launch sync-notebook", file=sys.stderr)
            return 1
        return 0
    except NowcastError as e:
        print(f"nowcast: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
