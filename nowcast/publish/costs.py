"""Cost beside skill: what each run cost (env.json: device and threads, wall minutes, steps,
sequences seen, training FLOP counted by nowcast.cost, what stopped it) and, per protocol, the
headline metric against training FLOP (models as points, seed groups with their t interval,
baselines as lines)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .. import figures
from ..protocols import metric_label
from ..results import Run
from ..util import duration
from .describe import embedded_baselines, is_baseline, machine, metrics_value, steps, steps_text
from .incremental import digest, mark, needs
from .markdown import esc, table
from .uncertainty import headline_keys, seed_groups

BACKFILLED = "backfilled from params and steps"


def _int(x) -> Optional[int]:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def stopped_by(run: Run) -> str:
    """What ended training: the plan (its steps), the time budget or early stopping."""
    env, budget = run.env, run.params.get("time_budget_min")
    if env.get("stopped_early"):
        return "early stopping"
    if env.get("stopped") == "time_budget":
        return f"time budget ({budget:g} min)" if isinstance(budget, (int, float)) else "time budget"
    if env.get("stopped"):
        return esc(env["stopped"])
    return "plan" if steps(run) is not None else "–"


def flop_text(run: Run) -> str:
    flop = run.env.get("train_flop")
    if not isinstance(flop, (int, float)):
        return "not recorded"
    return f"{flop / 1e15:,.1f}" + (" †" if run.env.get("cost_recorded") == BACKFILLED else "")


def cost_table(runs: list[Run]) -> Optional[str]:
    """One row per trained run: where, how long, how much work, what stopped it."""
    models = [r for r in runs if r.status == "completed" and not is_baseline(r) and r.params]
    if not models:
        return None
    rows = []
    for r in models:
        seen = _int(r.env.get("sequences_seen"))
        rows.append([esc(r.label), esc(machine(r)),
                     duration(r.env.get("train_seconds")) or "–",
                     steps_text(r, "–"),
                     f"{seen:,}" if seen is not None else "not recorded", flop_text(r), stopped_by(r)])
    return table(["Run", "Device", "Training", "Steps", "Sequences seen", "PFLOP", "Stopped by"],
                 rows, "What each run cost: device (threads), training time, optimiser steps, "
                 "training sequences seen, training FLOP (10^15: FLOP of one step counted by "
                 "nowcast.cost, matrix products and convolutions, times the steps; † backfilled "
                 "from the run's params and steps after it ran) and what ended its training.",
                 "tbl-cost", align="llrrrrl")


def cost_figure(group: str, runs: list[Run], out: Path) -> Optional[Path]:
    """The headline metric against training FLOP, one point per experiment (seed groups: the
    mean and its t interval), baselines as horizontal lines; None when no run has both."""
    keys = headline_keys(group, runs)
    if not keys:
        return None
    key, points = keys[0], []
    for g in seed_groups([r for r in runs if r.status == "completed" and not is_baseline(r)]):
        flops = [r.env.get("train_flop") for r in g.runs]
        if not all(isinstance(f, (int, float)) and f > 0 for f in flops):
            continue
        iv = g.interval("mean", key)
        if iv.estimate is None:
            continue
        points.append((g.name, sum(flops) / len(flops), iv.estimate, iv.low, iv.high))
    lines = [(name, b["mean"].get(key)) for name, b, _ in embedded_baselines(runs)
             if isinstance(b.get("mean"), dict) and isinstance(b["mean"].get(key), (int, float))]
    lines += [(str(metrics_value(r, "architecture")), metrics_value(r, "mean", key)) for r in runs
              if is_baseline(r) and isinstance(metrics_value(r, "mean", key), (int, float))]
    if not points:
        return None
    lines = list(dict(lines).items())  # each baseline once (the same windows: the same score)
    stamp = digest([key, points, lines])
    if needs(out, stamp):
        out.parent.mkdir(parents=True, exist_ok=True)
        figures.cost_figure(points, lines, metric_label(key), out)
        mark(out, stamp)
    return out
