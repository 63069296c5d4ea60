"""`nowcast report`: read every results folder, write the generated fragments, render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..errors import NowcastError
from ..results import Run, find_runs
from ..util import repo_root
from .fragments import write_report_fragments
from .incremental import private_build
from .render import GENERATED, get_renderer


def reference_dirs_default() -> list[Path]:
    """The committed reference runs of the checkout, when it has them."""
    ref = repo_root() / "reference_results"
    return [ref] if ref.is_dir() else []


def read_all(results_dirs: list[Path], reference_dirs: Optional[list[Path]]) -> list[Run]:
    """Every run to publish; NowcastError naming the folders when there is none."""
    reference_dirs = reference_dirs_default() if reference_dirs is None else list(reference_dirs)
    runs = find_runs(results_dirs, reference_dirs)
    if not runs:
        where = ", ".join(str(d) + ("" if Path(d).is_dir() else " (does not exist)")
                          for d in list(results_dirs) + reference_dirs) or "(none given)"
        raise NowcastError(f"no results found in {where}: train a model first "
                           f"(nowcast train -c params/<name>.yaml, or make demo)")
    return runs


def build_report(results_dirs: list[Path], out_dir: Optional[Path] = None, *,
                 reference_dirs: Optional[list[Path]] = None, report_dir: Optional[Path] = None,
                 renderer: str = "auto", formats: tuple[str, ...] = ("html", "pdf"),
                 quiet: bool = False) -> Path:
    """Build the report from results folders; returns the output folder (report.html, report.pdf).

    results_dirs: results roots (each holding <job_id>/ folders) or single run folders.
    reference_dirs: default [reference_results/] of the repository when it exists.
    report_dir: the Quarto project (default report/ of the repository), copied with the
    fragments into <out_dir>/.build/ (incremental.private_build) and rendered there.
    renderer: 'auto' or a name of render.RENDERERS.
    """
    report_dir = Path(report_dir or repo_root() / "report").resolve()
    out_dir = Path(out_dir).resolve() if out_dir else report_dir / "_output"
    if not (report_dir / "index.qmd").is_file():
        raise NowcastError(f"{report_dir}: not a report project (index.qmd missing)")
    render = get_renderer(renderer)
    runs = read_all([Path(d) for d in results_dirs], reference_dirs)
    for r in runs:  # listed as unreadable, with the reason; the report of the others builds
        if r.status == "unreadable":
            print(f"nowcast: warning: {r.path}: {r.error}; listed as unreadable", file=sys.stderr)
    with private_build(report_dir, out_dir) as build:  # fragments of this build alone
        write_report_fragments(runs, build / GENERATED)
        outputs = render(build, out_dir, formats)
    if not quiet and not outputs.fresh:
        print(f"up to date: {', '.join(str(p) for p in outputs)}")
    elif not quiet:
        for p in outputs:
            print(f"wrote {p}")
    return out_dir
