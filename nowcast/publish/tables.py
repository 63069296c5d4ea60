"""The report's results tables: one per protocol (ours beside the published numbers, the
thesis's Table 4.1 in shape, runs repeated over seeds as mean ± t interval), the radar skill
table against the baselines, and the uncertainty tables: bootstrap intervals of each run's
test scores, paired comparisons with the baselines, and train/validation/test side by side
(docs/statistics.md)."""

from __future__ import annotations

from typing import Optional

from ..protocols import get_metric, protocol_or_none
from ..results import Run
from .describe import (as_ran, baseline_label, data_note, embedded_baselines, is_baseline,
                       metrics_value, metric_heading, protocol_caption, run_label, trained_on)
from .markdown import esc, fmt_loss, fmt_value, table, value_text
from .uncertainty import SeedGroup, fmt_pm, seed_groups


def table_keys(group: str, runs: list[Run]) -> list[str]:
    """The protocol's table metrics, then any headline metric a run has; a table of runs
    that follow no protocol shows their first few metrics."""
    protocol = protocol_or_none(group)
    keys = list(protocol.table)
    for r in runs:
        mean = metrics_value(r, "mean") or {}
        extra = list(metrics_value(r, "headline") or []) + ([] if protocol.table else list(mean))
        for k in extra:
            if isinstance(k, str) and k not in keys and k in mean and (protocol.table or len(keys) < 5):
                keys.append(k)
    return [k for k in keys
            if any(k in (metrics_value(r, "mean") or {}) for r in runs)
            or any(k in p.mean for p in protocol.published)]


def _header(keys: list[str]) -> list[str]:
    return (["Model (job)", "Params"]
            + [metric_heading(k) for k in keys]
            + ["Train loss", "Val. loss", "Test loss", "Trained on (wall time)"])


def _group_row(g: SeedGroup, keys: list[str]) -> list[str]:
    """A seed group's row: every number the mean over its runs ± the t interval's half-width."""
    return ([f"**{g.label}, mean of {g.count_text}**", fmt_value(metrics_value(g.runs[0], "parameters"))]
            + [fmt_pm(g.interval("mean", k)) for k in keys]
            + [fmt_pm(g.interval("losses", s), fmt_loss) for s in ("train", "val", "test")]
            + ["–"])


def _run_row(r: Run, keys: list[str]) -> list[str]:
    mean = metrics_value(r, "mean") or {}
    ref = " (reference)" if r.reference else ""
    if is_baseline(r):  # in italics, named as the baselines inside model runs
        label = f"*{esc(run_label(r))}*{ref}"
    else:  # a name that is its job id: once
        label = esc(r.name) + ref + (f" ({esc(r.job_id)})" if r.job_id != r.name else "")
    return ([label, fmt_value(metrics_value(r, "parameters"))]
            + [fmt_value(mean.get(k)) for k in keys]
            + [fmt_loss(metrics_value(r, "losses", s)) for s in ("train", "val", "test")]
            + [trained_on(r)])


def _baseline_rows(runs: list[Run], keys: list[str]) -> list[list[str]]:
    """The baselines scored beside the models, one row per baseline and data (describe)."""
    entries = embedded_baselines(runs)
    return [[f"*{esc(baseline_label(name, r, entries))}*", "0"]
            + [fmt_value(b["mean"].get(k)) for k in keys] + ["–"] * 4 for name, b, r in entries]


def loss_name(run: Run) -> str:
    """The loss a run's loss columns hold: its `loss`, and TAU's differential divergence at
    its weight where the translator adds it (losses.training_loss)."""
    name = str(metrics_value(run, "losses", "loss") or "loss")
    alpha = as_ran(run).get("tau_alpha") if run.params else None  # null unless simvp with tau
    return name + (f" + {value_text(alpha)} x TAU divergence" if alpha else "")  # never formatted


def _caption(group: str, runs: list[Run]) -> str:
    protocol = protocol_or_none(group)
    losses = sorted({esc(loss_name(r)) for r in runs if not is_baseline(r)})
    radar = ("CSI/POD/FAR/FSS at the threshold in dBZ the column names (event: value >= "
             "threshold), FSS over 20 km or 44 km neighbourhoods; ") if group == "knmi-30-60" else ""
    ours = any(not is_baseline(r) for r in runs)  # a caption names only what the table holds
    return (f"Test-set results, {protocol_caption(group)}" + ("; ours first, then " if ours else "; ")
            + ("published results in italics (cited), " if protocol.published else "")
            + ("baselines in italics, " if any(metrics_value(r, "baselines") for r in runs) else "")
            + radar + "metrics are means over lead times"
            + (f", losses ({'/'.join(losses)}) are the final mean training losses on each split. "
               if ours else ". ")
            + ("A row in bold is the mean over runs that differ only in their seed, ± the "
               "half-width of its 95 % Student t interval (n − 1 degrees of freedom); its runs "
               "follow it. " if any(g.n > 1 for g in seed_groups(runs)) else "")
            + data_note(runs))


def results_table(group: str, runs: list[Run], ident: str, keys: Optional[list[str]] = None) -> str:
    """The thesis's Table 4.1 for one protocol: ours beside the published numbers; `keys`:
    its metric columns, table_keys(group, runs) unless the caller has them already."""
    protocol = protocol_or_none(group)
    keys = table_keys(group, runs) if keys is None else keys
    rows = []
    for g in seed_groups(runs):
        if g.n > 1:
            rows.append(_group_row(g, keys))
        rows += [_run_row(r, keys) for r in g.runs]
    rows += _baseline_rows(runs, keys)
    for p in protocol.published:
        rows.append([f"*{p.model}* [@{p.cite}]", fmt_value(p.parameters)]
                    + [p.mean.get(k, "–") for k in keys] + ["–"] * 4)
    out = table(_header(keys), rows, _caption(group, runs), ident)
    return out + (f"\n{protocol.published_note}\n" if protocol.published_note else "")


def _skill(score, reference, perfect: float) -> str:
    """SS = (S - S_ref) / (S_perfect - S_ref): 0 no better than the reference, 1 perfect."""
    try:
        return fmt_value((float(score) - float(reference)) / (perfect - float(reference)))
    except (TypeError, ValueError, ZeroDivisionError):
        return "–"


def skill_table(group: str, runs: list[Run], ident: str) -> Optional[str]:
    """Skill of every run against each of its baselines, for the protocol's skill metrics."""
    keys = [(k, perfect) for k, perfect in protocol_or_none(group).skill
            if any(k in (metrics_value(r, "mean") or {}) for r in runs)]
    rows = []
    for r in runs:
        mean = metrics_value(r, "mean") or {}
        for name, b in (metrics_value(r, "baselines") or {}).items():
            bmean = (b.get("mean") if isinstance(b, dict) else None) or {}
            rows.append([esc(r.label), esc(name)]
                        + [_skill(mean.get(k), bmean.get(k), perfect) for k, perfect in keys])
    if not rows or not keys:
        return None
    header = ["Model", "Against"] + [f"skill {get_metric(k).label}" for k, _ in keys]
    caption = (f"Skill scores against the baselines ({protocol_caption(group)}; 0: no better "
               f"than the baseline, 1: perfect). {data_note(runs)}")
    return table(header, rows, caption, ident, align="ll" + "r" * len(keys))
