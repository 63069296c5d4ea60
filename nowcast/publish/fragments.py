"""The report's generated fragments: one function per fragment, each returning markdown.

`write_report_fragments(runs, gen)` writes them to report/_generated/ (index.qmd includes
them), with the cross-run figures and copies of each run's figures beside them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional

from .. import figures
from ..paths import JobPaths
from ..progress import STALE
from ..protocols import PROTOCOL_NAMES, protocol_or_none
from ..results import Run
from ..util import write_if_changed
from .describe import (architecture, baseline_label, commit, data_note, device, number_data_sets,
                       embedded_baselines, is_baseline, metrics_value,
                       nondefault_params, protocol_caption, run_label, varied_params, wall)
from .incremental import copy_artifacts, digest, mark, needs
from .intervals import (equal_budget_table, first_guess_verdicts, interval_table, paired_table, splits_table,
                        statistics_paragraph)
from .markdown import esc, figure, fmt_value, html_only, not_html, params_text, table
from .tables import results_table, skill_table, table_keys
from .costs import cost_figure, cost_table
from .findings import (conclusion_lines, confounded_table, findings_section, pairs,
                       undecided_findings)
from .uncertainty import baseline_items, seed_groups, uncertainty

# By Run.state (progress.STATES and STALE, as `nowcast status` shows them)
STATUS_LABEL = {"completed": "completed", "failed": "**failed**", "running": "running",
                "preempted": "preempted (resumable)", STALE: f"**{STALE}** (process gone)",
                "unreadable": "**unreadable**"}


def _completed(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status == "completed" and r.metrics]


def _groups(runs: list[Run]) -> list[str]:
    return [g for g in PROTOCOL_NAMES if any(r.group == g for r in _completed(runs))]


def summary(runs: list[Run]) -> str:
    counts = {s: sum(r.state == s for r in runs) for s in STATUS_LABEL}
    n_ref = sum(r.reference for r in runs)
    done = _completed(runs)
    extra = "".join(f", {counts[s]} {s}" for s in ("preempted", STALE, "unreadable") if counts[s])
    return (f"This build of the report reads {len(runs)} results folder"
            f"{'s' if len(runs) != 1 else ''} ({counts['completed']} completed, "
            f"{counts['running']} running, {counts['failed']} failed{extra}"
            + (f"; {n_ref} of them committed reference runs" if n_ref else "")
            + "). Completed runs by protocol: "
            + (", ".join(f"{g}: {sum(r.group == g for r in done)}" for g in _groups(runs)) or "none")
            + ".\n")


def runs_table(runs: list[Run]) -> str:
    rows = [[esc(r.name), esc(r.job_id), STATUS_LABEL.get(r.state, esc(r.state)),
             esc(r.group if r.status == "completed" else r.protocol),
             esc((r.started or "–")[:16].replace("T", " ")), esc(r.error[:160]) if r.error else ""]
            for r in runs]
    return table(["Run", "Job", "Status", "Protocol", "Started (UTC)", "Error"], rows,
                 "Every results folder this report read, with its status; a failed run keeps "
                 "the error it ended with.", "tbl-runs", align="llllll")


def models_table(runs: list[Run]) -> str:
    seen: dict[str, list[str]] = {}
    count: dict[str, object] = {}
    for r in _completed(runs):
        if not is_baseline(r):
            a = architecture(r)
            seen.setdefault(a, []).append(esc(r.job_id))
            count[a] = metrics_value(r, "parameters")
    if not seen:
        return "*No completed run yet: parameter counts appear here once one finishes.*\n"
    rows = [[a, fmt_value(count[a]), ", ".join(jobs[:4]) + (" ..." if len(jobs) > 4 else "")]
            for a, jobs in seen.items()]
    return table(["Architecture (hidden sizes, filter)", "Parameters", "Runs"], rows,
                 "Trainable parameters of the architectures trained in this report (counted by "
                 "the training code, metrics.json).", "tbl-models", align="lrl")


def params_table(runs: list[Run]) -> str:
    """Per run, what differs from the defaults and, at any value, what the runs of its protocol
    vary (a comparison's default side must show too: filter_size 5 beside 3)."""
    varied = {g: varied_params([r for r in runs if r.group == g]) for g in {r.group for r in runs}}
    rows = [[esc(r.label), esc(r.protocol), esc(params_text(nondefault_params(r, varied[r.group])))]
            for r in runs]
    return table(["Run", "Protocol", "Parameters that differ from the defaults or between the runs"],
                 rows, "The params set of every run (full set: params.yaml in its results folder).",
                 "tbl-params", align="lll")


def per_lead_for(group: str, runs: list[Run], out: Path) -> Optional[Path]:
    """The per-lead figure of a protocol's runs and their baselines; None when nothing to plot."""
    names = protocol_or_none(group).per_lead or list(dict.fromkeys(
        k for r in runs for k in (metrics_value(r, "headline") or []) if isinstance(k, str)))[:3]
    series = []
    for g in seed_groups(runs):
        bands = {k: g.per_lead(k) for k in names} if g.n > 1 else {}
        bands = {k: v for k, v in bands.items() if v is not None}
        if bands:  # one line (the mean over seeds) with its band (the t interval per lead)
            series.append((f"{g.name} (n = {g.n} seeds)", {k: v[0] for k, v in bands.items()},
                           "-", {k: v[1:] for k, v in bands.items()}))
        else:  # baseline runs of their own (reference_results/) dashed, as baselines
            series += [(run_label(r), metrics_value(r, "per_lead") or {}, "--" if is_baseline(r) else "-")
                       for r in g.runs]
    entries = embedded_baselines(runs)  # each baseline once per data
    series += [(baseline_label(name, r, entries), b.get("per_lead"), "--") for name, b, r in entries]
    series = [s for s in series if isinstance(s[1], dict)]
    names = [k for k in names if any(isinstance(s[1].get(k), list) and s[1][k] for s in series)]
    if not names:
        return None
    stamp = digest([names, series])
    if needs(out, stamp):
        out.parent.mkdir(parents=True, exist_ok=True)
        figures.per_lead_figure(series, names, out, lead_unit=protocol_or_none(group).lead_unit)
        mark(out, stamp)
    return out


def results_section(group: str, runs: list[Run], gen: Path, found: Optional[list] = None,
                    detail: Optional[list] = None) -> str:
    """One protocol group's main results: its table, the per-lead and cost figures, the
    equal-minute comparisons and the one-parameter findings; the tables behind them (skill,
    intervals, paired verdicts, first guesses, splits, confounded pairs) appended to `detail`
    (the appendix), its conclusions to `found`."""
    parts = [f"## {esc(protocol_or_none(group).title)} {{#sec-results-{group}}}\n"]
    if group == "none":
        declared = sorted({r.protocol for r in runs})
        parts.append("These runs follow no evaluation protocol (an ad-hoc data file, the "
                     "fallback digits, or changed protocol settings"
                     + (f"; declared protocol: {esc(', '.join(declared))}" if declared != ["none"] else "")
                     + "). Their numbers describe their own data only; those of short runs "
                     "(`make demo`'s train for seconds) are illustrative.\n")
    keys = table_keys(group, runs)  # the results table's columns, and the intervals'
    parts.append(results_table(group, runs, f"tbl-results-{group}", keys))
    fig = per_lead_for(group, runs, gen / "fig" / f"per_lead-{group}.png")
    if fig is not None:
        parts.append(figure(f"_generated/fig/{fig.name}",
                            f"Scores by lead time, {protocol_caption(group)}: one line per model "
                            "(solid) and baseline (dashed); a model run over several seeds is "
                            "one line, their mean, in a band, the 95 % t interval per lead. "
                            + data_note(runs), f"fig-lead-{group}"))
    cost = cost_figure(group, runs, gen / "fig" / f"cost-{group}.png")
    if cost is not None:
        parts.append(figure(f"_generated/fig/{cost.name}",
                            f"Skill against cost, {protocol_caption(group)}: the headline "
                            "metric of each experiment (a seed group: its mean and 95 % t "
                            "interval) against the FLOP its training took (@tbl-cost); "
                            "baselines, which train nothing, as lines.", f"fig-cost-{group}"))
    scored = baseline_items(runs)  # baselines of their own pair with runs that lack them
    bootstraps = [(r, u) for r in runs if (u := uncertainty(r, scored)) is not None]  # once per run
    known = pairs(runs)  # once: its paired bootstraps serve the findings, appendix, conclusion
    extra = [equal_budget_table(group, runs, f"tbl-budget-{group}"),
             f"### Findings, {esc(protocol_or_none(group).title)} {{#sec-findings-{group}}}\n\n"
             + findings_section(group, runs, known)]
    behind = [skill_table(group, runs, f"tbl-skill-{group}"),
              interval_table(group, runs, keys, f"tbl-ci-{group}", bootstraps),
              paired_table(group, runs, f"tbl-paired-{group}", bootstraps),
              first_guess_verdicts(group, runs, bootstraps),
              splits_table(group, runs, f"tbl-splits-{group}"),
              undecided_findings(group, runs, known),
              confounded_table(group, runs, known)]
    if detail is not None and any(behind):
        detail.append("\n".join([f"## {esc(protocol_or_none(group).title)} "
                                 f"{{#sec-detail-{group}}}\n"] + [t for t in behind if t]))
    if found is not None:
        found += [(group, line) for line in conclusion_lines(group, runs, bootstraps, known)]
    return "\n".join(parts + [t for t in extra if t])


def results(runs: list[Run], gen: Path, found: Optional[list] = None,
            detail: Optional[list] = None) -> str:
    done = _completed(runs)
    if not done:
        return "*No run has completed yet: tables and figures appear here once one does.*\n"
    return "\n".join([statistics_paragraph()] + [
        results_section(g, [r for r in done if r.group == g], gen, found, detail)
        for g in _groups(runs)])


def conclusion(found: list[tuple[str, str]]) -> str:
    """What the runs found, protocol by protocol (findings.conclusion_lines), for the
    conclusion: generated from the runs present, every claim with its paired evidence above."""
    if not found:
        return "No completed run holds scores to conclude from yet.\n"
    out = []
    for group in dict.fromkeys(g for g, _ in found):
        out.append(f"**{esc(protocol_or_none(group).title)}.** "
                   + " ".join(line for g, line in found if g == group))
    return "\n\n".join(out) + "\n"


def _val_curve(run: Run) -> list[tuple[float, float]]:
    f = run.file(JobPaths.HISTORY)
    if f is None:
        return []
    points = []
    try:
        with open(f, newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                step = figures.plottable(row.get("step") or i)
                loss = figures.plottable(row.get("val_loss") or row.get("train_loss"))
                if not (math.isnan(step) or math.isnan(loss)):  # damage costs the point only
                    points.append((step, loss))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    return points


def val_loss_for(runs: list[Run], out: Path) -> Optional[Path]:
    curves = []
    for r in runs:
        points = _val_curve(r)
        if points:
            loss = str(r.params.get("loss") or metrics_value(r, "losses", "loss") or "loss")
            curves.append((r.label, loss, points))
    if not curves:
        return None
    stamp = digest(curves)
    if needs(out, stamp):
        out.parent.mkdir(parents=True, exist_ok=True)
        figures.val_loss_figure(curves, out)
        mark(out, stamp)
    return out


def run_figures(r: Run, gen: Path) -> list[str]:
    """The section of one run: status, loss curve, a test sequence (GIF in HTML, strip in PDF)."""
    shown = (JobPaths.LOSS_PNG, JobPaths.TEST_GIF, JobPaths.TEST_STRIP_PNG)  # what this section shows
    have = {n: (gen / "runs" / r.slug / n).exists() for n in shown}
    if not any(have.values()) and r.status == "completed":
        return []  # a baseline's folder (a per-lead figure only): no empty heading
    label, where = esc(r.label), f"_generated/runs/{r.slug}"
    proto = ((("no protocol" if r.group == "none" else f"protocol {esc(r.group)}")
              + f"; {data_note([r]).rstrip('.')}") if r.metrics else "no metrics")
    parts = [f"### {label} {{#sec-run-{r.slug} .unnumbered}}\n"]
    if r.status != "completed":
        parts.append(f"Status: **{esc(r.state)}**" + (f": {esc(r.error)}" if r.error else "") + "\n")
    if have[JobPaths.LOSS_PNG]:
        parts.append(figure(f"{where}/{JobPaths.LOSS_PNG}", f"Training and validation loss of {label}.",
                            f"fig-loss-{r.slug}", "55%"))
    if have[JobPaths.TEST_GIF]:
        parts.append(html_only(figure(
            f"{where}/{JobPaths.TEST_GIF}", f"A test-split sequence of {label} ({proto}): left, the input "
            "then the target frames; right, the same input then the prediction (red border).",
            f"fig-gif-{r.slug}", "60%")))
    if have[JobPaths.TEST_STRIP_PNG]:
        strip = figure(f"{where}/{JobPaths.TEST_STRIP_PNG}", f"A test-split sequence of {label} ({proto}): "
                       "input frames, target frames and prediction.", f"fig-strip-{r.slug}")
        parts.append(not_html(strip) if have[JobPaths.TEST_GIF] else strip)
    return parts


def training(runs: list[Run], gen: Path) -> str:
    finished = [r for r in runs if r.status != "running"]
    parts = [t for t in [cost_table(finished)] if t]
    for group in dict.fromkeys(r.group for r in finished):  # one figure per protocol: the
        # losses of different data are on different scales
        name = f"val_loss-{group}.png"
        if val_loss_for([r for r in finished if r.group == group], gen / "fig" / name) is not None:
            parts.append(figure(f"_generated/fig/{name}", "Validation loss during training, "
                                f"{protocol_caption(group)}: every run with a history "
                                "(history.csv), one panel per loss function (its name above "
                                "it).", f"fig-val-loss-{group}"))
    for r in finished:
        parts += run_figures(r, gen)
    return "\n".join(parts) if parts else "*No training history yet.*\n"


def provenance(runs: list[Run]) -> str:
    rows = [[esc(r.job_id), esc(r.name), esc(r.state), commit(r), device(r),
             esc(r.env.get("precision") or "–"), wall(r),
             esc((r.ended or r.started or "–")[:16].replace("T", " ")),
             "reference_results" if r.reference else esc(r.path.parent.name + "/")] for r in runs]
    text = table(["Job", "Run", "Status", "Git commit", "Device", "Precision", "Wall time",
                  "Ended (UTC)", "Folder"], rows, "Provenance of every run (env.json, status.json).",
                 "tbl-provenance", align="lllllllll")
    versions = [[esc(r.job_id), esc(", ".join(f"{k} {x}" for k, x in r.env["versions"].items()))]
                for r in runs if isinstance(r.env.get("versions"), dict) and r.env["versions"]]
    if versions:
        text += "\n" + table(["Job", "Software versions"], versions,
                             "Software versions of every run (env.json).", "tbl-versions", align="ll")
    return text


def data_used(runs: list[Run]) -> str:
    """Each data set the report's runs used, once, with its number (describe.number_data_sets:
    the captions name data sets by it) and the runs that used it."""
    numbers = number_data_sets(_completed(runs))
    if not numbers:
        return "*No run has completed yet.*\n"
    rows = [[n, esc(data), ", ".join(esc(r.label) for r in _completed(runs) if r.data == data)]
            for data, n in numbers.items()]
    return table(["Data", "Description", "Runs"], rows, "The data sets of this report, each "
                 "described once; tables and figures name them by number.", "tbl-data-sets",
                 align="lll")


def write_report_fragments(runs: list[Run], gen: Path) -> dict[str, Path]:
    """Every generated fragment and figure of the report; returns name -> path."""
    gen.mkdir(parents=True, exist_ok=True)
    copy_artifacts([r for r in runs if r.status != "running"], gen)
    found: list[tuple[str, str]] = []
    detail: list[str] = []
    data_sets = data_used(runs)  # numbers the data sets every caption names
    frags = {"summary.md": summary(runs), "runs.md": runs_table(runs),
             "models.md": models_table(runs), "experiments.md": params_table(runs),
             "results.md": results(runs, gen, found, detail), "training.md": training(runs, gen),
             "provenance.md": provenance(runs), "data_used.md": data_sets}
    frags["conclusion.md"] = conclusion(found)
    frags["results_detail.md"] = "\n".join(detail) or "*No completed run has scores yet.*\n"
    for name, text in frags.items():
        write_if_changed(gen / name, text)
    return {name: gen / name for name in frags}
