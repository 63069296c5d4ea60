"""What the report and the slides say about one run: its model, provenance and headline.

Values come from the run's own files (results.Run: params.yaml, env.json, metrics.json) with
the keys `results.py` and `experiment.py` write, and are returned as escaped markdown text.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

from .. import options
from ..config import defaults, without_unused
from ..options import NON_SEMANTIC
from ..protocols import IMAGE_BASELINES, METRICS, RADAR_BASELINES, metric_label, protocol_or_none
from ..results import Run
from ..util import duration
from .markdown import esc, fmt_value

ARCHITECTURE_NAMES = {"convlstm_ed": "ConvLSTM-ED", "encoder_forecaster": "ConvLSTM-EF",
                      "fc_lstm": "FC-LSTM", "predrnn": "PredRNN", "simvp": "SimVP",
                      "persistence": "persistence", "sprog": "S-PROG (pysteps)",
                      "extrapolation": "optical-flow extrapolation",
                      "torch_extrapolation": "optical-flow extrapolation (torch, a first guess)"}
# Fields that place or name a run: never listed as "parameters that differ".
# what a run's parameter list leaves out: what does not change the run (config.NON_SEMANTIC),
# and what its table or slide states already (the protocol, and its data)
NOT_LISTED = NON_SEMANTIC | {"protocol", "data_file"}


def commit(run: Run) -> str:
    c = run.env.get("git_commit")
    if not c:
        return "–"
    return esc(str(c)[:10] + (" (dirty)" if run.env.get("git_dirty") else ""))


def device(run: Run) -> str:
    """Where a run ran, in the one wording the report uses for a machine (machine())."""
    return esc(machine(run))


def wall(run: Run) -> str:
    return duration(run.env.get("wall_seconds")) or "–"


def machine(run: Run) -> str:
    """The machine of a run's env.json, in one wording (raw text): '1 thread of a 2-core CPU',
    '2-core CPU', 'CPU, 1 thread (cores not recorded)' where env.json predates cpu_cores,
    'NVIDIA H200'."""
    env = run.env
    name = str(env.get("device") or "–")
    if name.startswith("cpu"):
        threads, cores = env.get("cpu_threads"), env.get("cpu_cores")
        plural = "s" * (isinstance(threads, int) and threads > 1)
        if isinstance(cores, int) and isinstance(threads, int) and threads < cores:
            name = f"{threads} thread{plural} of a {cores}-core CPU"
        elif isinstance(cores, int):
            name = f"{cores}-core CPU"
        else:
            name = (f"CPU, {threads} thread{plural} (cores not recorded)"
                    if isinstance(threads, int) else "CPU")
    return name


def trained_on(run: Run) -> str:
    """Where and how long a run took, training and evaluation together (env.json): the machine
    (machine()) and the wall time, e.g. '1 thread of a 2-core CPU, 58 min' (escaped)."""
    took = duration(run.env.get("wall_seconds"))
    return esc(f"{machine(run)}, {took}" if took else machine(run))


BASELINES = tuple(dict.fromkeys(RADAR_BASELINES + IMAGE_BASELINES))  # what evaluate --baseline scores


def is_baseline(run: Run) -> bool:
    """A folder of a baseline scored alone (`nowcast evaluate --baseline`): nothing trained."""
    return (run.metrics or {}).get("architecture") in BASELINES


def run_label(run: Run) -> str:
    """A run as a legend or a table names it (raw text): a baseline run by its baseline, as the
    baselines scored inside model runs are named (its table and figure are of one protocol;
    its job id is in the provenance table), any other run by its name and job id."""
    return str(run.metrics["architecture"]) if is_baseline(run) else run.label


def architecture(run: Run) -> str:
    """e.g. 'ConvLSTM-ED 64-32-32-16, 5x5' (escaped)."""
    p = run.params
    arch = (run.metrics or {}).get("architecture") or p.get("architecture") or "?"
    text = ARCHITECTURE_NAMES.get(arch, str(arch))
    hs = p.get("hidden_sizes")
    if arch == "simvp":  # no recurrent stack: its translator and widths
        hs = [f"{p.get('translator') or 'gsta'}", f"S{p.get('hid_S')}", f"T{p.get('hid_T')}",
              f"N{p.get('N_S')}/{p.get('N_T')}"]
    if isinstance(hs, list) and hs and arch not in BASELINES:
        text += " " + "-".join(str(h) for h in hs)
        fs = p.get("filter_size")
        if isinstance(fs, int):
            text += f", {fs}x{fs}"
        elif isinstance(fs, list) and fs:
            text += ", " + "/".join(f"{k}x{k}" for k in fs)
        patch = p.get("patch_size")
        if isinstance(patch, int) and patch > 1:
            text += f", {patch}x{patch} patches"
    return esc(text)


@functools.lru_cache(maxsize=1)
def _defaults() -> dict:
    return defaults()


def nondefault_params(run: Run, varied: frozenset[str] = frozenset()) -> dict:
    """The run's parameters that differ from Config's defaults (what makes it this run), and
    those in `varied` (what the runs it is compared with vary: shown at the default too); the
    fields its architecture and dataset do not use (null in params.yaml) say nothing about it."""
    defaults = _defaults()
    ignored = options.unused(run.params, defaults) if isinstance(run.params, dict) else {}
    return {k: v for k, v in run.params.items()
            if k not in NOT_LISTED and k not in ignored
            and (k in varied or k not in defaults or defaults[k] != v)}


def as_ran(run: Run) -> dict[str, Any]:
    """A run's parameters as it ran: a field its params.yaml predates at its value then
    (options.of_its_time), else at its default; a field its choosers leave unused as null
    (runs written before unused fields were nulled said 0.0 for ss_min without scheduled
    sampling)."""
    return without_unused({**defaults(), **options.of_its_time(run.params)})


def varied_params(runs: list[Run]) -> frozenset[str]:
    """The fields whose values differ between the trained runs among `runs` (baselines have no
    hyperparameters), each run's fields as it ran (see below), among the runs that use each
    (a field one run leaves unused is told by the chooser that differs: first_guess, not
    guess_sampling)."""
    models = [r for r in runs if not is_baseline(r) and isinstance(r.params, dict) and r.params]
    if len(models) < 2:
        return frozenset()
    ran = [as_ran(r) for r in models]
    keys = set.intersection(*(set(v) for v in ran)) - NOT_LISTED
    return frozenset(k for k in keys if len({repr(v[k]) for v in ran if v[k] is not None}) > 1)


def _scores_key(mean: dict) -> tuple:
    """A baseline's scores as a comparable key, to 6 significant digits: the same baseline
    scored beside two models differs in the float32 sums of their batches (at 1e-7 relative:
    MSE/frame 123.45678 and 123.45679 were two rows labelled with job ids)."""
    return tuple(sorted((str(k), float(f"{v:.6g}") if isinstance(v, float) else v)
                        for k, v in mean.items()))


def embedded_baselines(runs: list[Run]) -> list[tuple[str, dict, Run]]:
    """The baselines scored inside model runs (metrics.json's `baselines`), each once: one
    entry per name and scores (the same baseline on the same test data is one row, whatever
    number of models were scored beside it), none where a baseline run of its own
    (`nowcast evaluate --baseline`, scored with the code of its day) exists for the same test
    data: that folder is the baseline's one row. (name, its metrics, the first run)."""
    own = {(metrics_value(r, "architecture"), test_data(r)) for r in runs if is_baseline(r)}
    seen = set()
    out = []
    for r in runs:
        for name, b in ((metrics_value(r, "baselines") or {}).items() if not is_baseline(r) else ()):
            if isinstance(b, dict) and isinstance(b.get("mean"), dict):
                key = (name, _scores_key(b["mean"]))
                if key not in seen and (name, test_data(r)) not in own:
                    seen.add(key)
                    out.append((name, b, r))
    return out


def test_data(run: Run) -> str:
    """What a run was tested on: its protocol group and its data description's first clause
    (the test set; training and validation sources follow it)."""
    return f"{run.group}: {str(run.data).split(';')[0]}"


def baseline_label(name: str, run: Run, entries: list[tuple[str, dict, Run]]) -> str:
    """'persistence', or 'persistence (job)' where another entry of that name differs (raw
    text: a figure's legend; tables escape it)."""
    twice = sum(n == name for n, _, _ in entries) > 1
    return str(name) + (f" ({run.job_id})" if twice else "")


def headline(run: Run) -> list[tuple[str, str]]:
    """(label, formatted value) of the run's headline metrics (its protocol's, else its own)."""
    m = run.metrics or {}
    mean = m.get("mean") or {}
    keys = [k for k in (m.get("headline") or protocol_or_none(run.protocol).headline)
            if isinstance(k, str) and k in mean] or list(mean)[:2]
    return [(esc(metric_label(k)), fmt_value(mean[k])) for k in keys]


def metric_heading(k: str) -> str:
    """A table's column head for a metric: its label (with unit) and its direction's arrow."""
    m = METRICS.get(k)
    return f"{esc(metric_label(k))} {m.arrow if m else ''}".strip()


def protocol_caption(group: str) -> str:
    if group == "none":
        return "following no protocol (numbers are not comparable with published ones)"
    return f"protocol {esc(group)}"


# the report's data sets, numbered once per build (number_data_sets): a caption names a data
# set by its number (D1, D2, ...) and the data section describes each once
_DATA_SETS: dict[str, str] = {}


def number_data_sets(runs: list[Run]) -> dict[str, str]:
    """Number the distinct data descriptions of `runs` in order of first appearance (D1, D2,
    ...), for data_note and the data section of this build; returns {description: number}."""
    _DATA_SETS.clear()
    for r in runs:
        if r.data and r.data not in _DATA_SETS:
            _DATA_SETS[r.data] = f"D{len(_DATA_SETS) + 1}"
    return dict(_DATA_SETS)


def data_note(runs: list[Run]) -> str:
    """The data of a table's runs by their numbers in the data section (@tbl-data-sets), each
    once; a description this build has not numbered is written out."""
    named = list(dict.fromkeys(_DATA_SETS.get(r.data) or esc(r.data) for r in runs if r.data))
    if not named:
        return ""
    numbered = all(n in _DATA_SETS.values() for n in named)
    return (f"Data: {', '.join(named)}" + (" (@tbl-data-sets)" if numbered else "") + ".")


def steps(run: Run) -> Optional[int]:
    """The optimiser steps a run took: metrics.json's `training` section, else env.json's
    (the two record the same count); None for a baseline or where neither says."""
    for value in (metrics_value(run, "training", "steps"), (run.env or {}).get("steps")):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def steps_text(run: Run, unknown: str = "?") -> str:
    """steps() with thousands separators, `unknown` where unknown."""
    n = steps(run)
    return unknown if n is None else f"{n:,}"


def metrics_value(run: Run, *path: str) -> Any:
    """The value at a path of keys in a run's metrics.json, or None where there is none:
    metrics_value(run, "losses", "test")."""
    cur: Any = run.metrics or {}
    for key in path:
        cur = cur.get(key) if isinstance(cur, dict) else None
    return cur
