"""Params sets: the runs named by params files and grid files, each validated before anything
runs or is submitted."""

from __future__ import annotations

import itertools
import math
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import Config, load_config, parse_override, read_yaml
from ..data.check import check_inputs
from ..errors import NowcastError


@dataclass
class ParamsSet:
    """One run to launch: where it came from and the parameters to give the notebook."""
    source: str               # the params file, or 'grid.yaml[point]'
    values: dict[str, Any]    # what the notebook is given (file or grid point, name filled in)
    cfg: Config               # the fully resolved, validated configuration


def is_grid(path: str | Path) -> bool:
    data = read_yaml(path)
    return "axes" in data or "base" in data


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
    for path in map(Path, paths):
        if not path.is_file():
            raise NowcastError(f"{path}: no such params file")
        sets += _grid_sets(path, extra) if is_grid(path) else [_file_set(path, extra)]
    _refuse_shared_ids(sets)
    return sets


def _refuse_shared_ids(sets: list[ParamsSet]) -> None:
    """Two sets that name the same job_id would need one folder: refused before anything runs
    (sets without a job_id get one each when they start)."""
    first: dict[str, str] = {}
    for s in sets:
        job_id = s.cfg.job_id
        if job_id is not None and first.setdefault(job_id, s.source) != s.source:
            raise NowcastError(f"{s.source}: job_id '{job_id}' is also {first[job_id]}'s: "
                               "each params set needs its own")


def _grid_sets(path: Path, extra: list[str]) -> list[ParamsSet]:
    sets = []
    points = grid_points(path)
    if len(points) >= SAY_VALIDATING:  # validation takes a while: say so before it starts
        print(f"nowcast: {path}: validating {len(points):,} grid points", file=sys.stderr, flush=True)
    for name, point in points:
        where = f"{path}[{name}]"
        try:
            cfg = load_config(values=point, overrides=extra)
        except NowcastError as e:
            raise NowcastError(f"{where}: {e}") from None
        check_inputs(cfg, where)
        sets.append(ParamsSet(where, _with_overrides(point, extra), cfg))
    return sets


def _file_set(path: Path, extra: list[str]) -> ParamsSet:
    cfg = load_config(path, extra)
    check_inputs(cfg, str(path))
    values = dict(read_yaml(path))
    values.setdefault("name", cfg.name)
    return ParamsSet(str(path), _with_overrides(values, extra), cfg)


def _with_overrides(values: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    out = dict(values)
    for text in overrides:
        key, value = parse_override(text)
        out[key] = value
    return out


# a grid larger than this is refused before any point is validated (90,000 points took minutes
# in silence); one that needs more is split over several grid files
MAX_GRID_POINTS = 10_000
SAY_VALIDATING = 200  # grids of this many points say that they are being validated


def _grid_file(path: Path) -> tuple[dict, dict]:
    """(base, axes) of a grid file, checked: known keys, axes of non-empty lists, at most
    MAX_GRID_POINTS points."""
    grid = read_yaml(path)
    unknown = set(grid) - {"base", "axes"}
    if unknown:
        raise NowcastError(f"{path}: unknown grid key(s) {sorted(unknown)}; expected 'base' and 'axes'")
    base = grid.get("base") or {}
    if isinstance(base, str):
        base = read_yaml((path.parent / base) if not os.path.isabs(base) else base)
    axes = grid.get("axes") or {}
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        raise NowcastError(f"{path}: 'axes' must map parameter names to non-empty lists")
    n = math.prod(len(v) for v in axes.values())
    if n > MAX_GRID_POINTS:
        raise NowcastError(f"{path}: {n:,} grid points; at most {MAX_GRID_POINTS:,} per grid file "
                           "(split the axes over several grid files)")
    return base, axes


def grid_size(path: str | Path) -> int:
    """How many params sets a grid file names (1 for a params file), without validating them."""
    if not is_grid(path):
        return 1
    return math.prod(len(v) for v in _grid_file(Path(path))[1].values())


def grid_points(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """A grid file {base: params.yaml or mapping, axes: {key: [values]}} -> one params dict per
    point, not yet validated. Names are '<grid stem>-<key>=<value>-...'."""
    path = Path(path)
    base, axes = _grid_file(path)
    points = []
    for combo in itertools.product(*axes.values()):
        params = dict(base)
        params.update(zip(axes, combo))
        label = "-".join(f"{k}={_label(v)}" for k, v in zip(axes, combo))
        params["name"] = f"{path.stem}-{label}"
        points.append((params["name"], params))
    return points


def expand_grid(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """grid_points, every point validated before any is returned."""
    points = grid_points(path)
    for _, params in points:
        load_config(values=params)  # fail before anything runs
    return points


def _label(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)
