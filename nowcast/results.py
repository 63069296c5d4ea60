"""The results/<job_id>/ contract (docs/architecture.md): written atomically, never overwritten.

A run in progress lives in results/.running-<job_id>/ (a requeued job with the same id resumes
there). complete_run renames it to results/<job_id>/; fail_run marks it failed and renames it
too, so a final folder is always either complete or marked failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

import yaml

from .config import Config, to_yaml
from .errors import NowcastError

RUNNING_PREFIX = ".running-"
# Fields that name or place a run without changing what it computes.
NON_SEMANTIC = {"name", "job_id", "results_dir"}


def params_hash(cfg: Config) -> str:
    semantic = {k: v for k, v in cfg.to_dict().items() if k not in NON_SEMANTIC}
    return hashlib.sha1(json.dumps(semantic, sort_keys=True).encode()).hexdigest()[:8]


def resolve_job_id(cfg: Config) -> str:
    """cfg.job_id, else SLURM's array/job id, else a readable local id (time + params hash)."""
    if cfg.job_id:
        return cfg.job_id
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{params_hash(cfg)}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def start_run(cfg: Config) -> Path:
    """Create (or find again, for a requeued job) the in-progress folder of this run."""
    job_id = resolve_job_id(cfg)
    cfg.job_id = job_id
    root = Path(cfg.results_dir)
    final = root / job_id
    if final.exists():
        raise NowcastError(f"{final} already exists and is never overwritten: choose another job_id")
    running = root / f"{RUNNING_PREFIX}{job_id}"
    if running.exists():
        previous = yaml.safe_load((running / "params.yaml").read_text()) if (running / "params.yaml").is_file() else None
        if previous is not None and {k: v for k, v in previous.items() if k != "name"} != \
                {k: v for k, v in cfg.to_dict().items() if k != "name"}:
            raise NowcastError(f"{running} holds an unfinished run of other params: "
                               f"remove it or choose another job_id")
    else:
        running.mkdir(parents=True)
        write_text(running / "params.yaml", to_yaml(cfg))
    status = read_json(running / "status.json")
    write_json(running / "status.json", {
        "status": "running", "job_id": job_id, "name": cfg.name,
        "started": status.get("started", _now()), "ended": None, "error": None,
        "attempts": int(status.get("attempts", 0)) + 1})
    return running


def final_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name[len(RUNNING_PREFIX):]) if run_dir.name.startswith(RUNNING_PREFIX) else run_dir


def _finish(run_dir: Path, status: str, error: Optional[str]) -> Path:
    run_dir = Path(run_dir)
    state = read_json(run_dir / "status.json")
    state.update(status=status, ended=_now(), error=error)
    write_json(run_dir / "status.json", state)
    final = final_path(run_dir)
    if final != run_dir:
        if final.exists():
            raise NowcastError(f"{final} already exists and is never overwritten")
        os.rename(run_dir, final)
    return final


def complete_run(run_dir: Path, notebook: Optional[Path] = None) -> Path:
    """Move the executed notebook in (if any), mark completed, rename to results/<job_id>/."""
    run_dir = Path(run_dir)
    if notebook is not None and Path(notebook).is_file():
        shutil.move(str(notebook), run_dir / "train.ipynb")
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # model.pt holds the final state
    return _finish(run_dir, "completed", None)


def fail_run(run_dir: Path, error: BaseException | str, notebook: Optional[Path] = None) -> Path:
    run_dir = Path(run_dir)
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    if isinstance(error, BaseException) and not isinstance(error, NowcastError):
        write_text(run_dir / "error.txt", "".join(traceback.format_exception(error)))
    if notebook is not None and Path(notebook).is_file():
        shutil.move(str(notebook), run_dir / "train.ipynb")
    return _finish(run_dir, "failed", message.splitlines()[0] if message else "failed")


def find_completed(results_dir: str | Path, cfg: Config) -> Optional[Path]:
    """A completed folder whose resolved params equal cfg's (up to name, job id and location)."""
    want = params_hash(cfg)
    for status_file in sorted(Path(results_dir).glob("*/status.json")):
        if read_json(status_file).get("status") != "completed":
            continue
        try:
            params = yaml.safe_load((status_file.parent / "params.yaml").read_text())
            if params_hash(Config(**params)) == want:
                return status_file.parent
        except (OSError, TypeError, yaml.YAMLError):
            continue
    return None


def list_runs(results_dir: str | Path) -> list[dict]:
    """Every run folder (completed, failed, running) with what it holds, oldest first."""
    runs = []
    for path in sorted(Path(results_dir).glob("*/status.json")) + sorted(Path(results_dir).glob(f"{RUNNING_PREFIX}*/status.json")):
        folder = path.parent
        params_file = folder / "params.yaml"
        runs.append({"path": folder, "status": read_json(path), "env": read_json(folder / "env.json"),
                     "metrics": read_json(folder / "metrics.json"),
                     "params": yaml.safe_load(params_file.read_text()) if params_file.is_file() else {}})
    runs.sort(key=lambda r: str(r["status"].get("started") or ""))
    return runs


def environment(runtime, extra: Optional[dict] = None) -> dict:
    """What env.json records: code version, software, hardware, scheduler ids, mode."""
    import numpy
    import torch

    from . import __version__

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  cwd=Path(__file__).resolve().parent)
            return done.stdout.strip() or None if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    device = runtime.device
    env = {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": numpy.__version__, "nowcast": __version__},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "cpu_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "slurm": {k: v for k, v in os.environ.items() if k in (
            "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION",
            "SLURM_RESTART_COUNT", "SLURM_NODELIST")},
        "mode": runtime.mode, "precision": runtime.precision, "compile": runtime.compile,
        "command": " ".join(sys.argv),
    }
    env.update(extra or {})
    return env
