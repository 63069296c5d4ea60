"""The report's uncertainty tables (docs/statistics.md): bootstrap intervals of each run's test
scores, paired comparisons with the baselines, train / validation / test (and out of domain)
side by side, and the paragraph that states how the intervals were computed."""

from __future__ import annotations

from typing import Optional

from .. import stats
from ..protocols import metric_label
from ..results import Run
from .describe import (data_note, is_baseline, metrics_value, metric_heading, protocol_caption,
                       steps_text)
from .markdown import esc, table
from .uncertainty import (PAIRED_BASELINES, RunUncertainty, count_verdicts, equal_budget_pairs,
                          experiments_head_to_head, fmt_interval, fmt_pm, headline_keys,
                          paired_keys, seed_groups)

SPLITS = ("train", "val", "test", "test_ood")
SPLIT_LABELS = {"train": "Train", "val": "Validation", "test": "Test"}
VERDICT_TEXT = {"better": "**better**", "worse": "**worse**"}


def statistics_paragraph() -> str:
    """The methods paragraph: how every interval and verdict of the results was computed."""
    return (
        "**How the intervals were computed.** Runs that differ only in their seed (the same "
        "parameters otherwise, apart from name, job id and where they ran) are shown as the "
        "mean over seeds ± the half-width of the 95 % Student t interval, "
        "$\\bar x \\pm t_{0.975,\\,n-1}\\, s/\\sqrt{n}$, with the number of seeds $n$. "
        "The uncertainty of one run's test score comes from the per-sequence scores and "
        "per-window counts saved in its results folder (scores.npz; no model is rerun): a "
        f"percentile bootstrap with {stats.RESAMPLES:,} resamples from a fixed seed "
        f"({stats.SEED}), drawing Moving MNIST test sequences, or radar test events (the "
        "windows of one event are correlated, so whole events are drawn), with replacement. "
        "Each resample's scores are recomputed as the protocol defines them: image metrics as "
        "means over the drawn sequences, CSI, POD, FAR and FSS from the drawn windows' "
        "contingency counts and FSS sums added up before the ratio is taken; the interval is "
        "the 2.5th to 97.5th percentile of the resampled lead-time means. A model is compared "
        "with a baseline by the paired bootstrap of the difference model minus baseline (the "
        "same resampled sequences or events for both): *better* or *worse* (by the metric's "
        "direction) when the 95 % interval excludes 0, *not distinguishable* otherwise.\n")


def interval_table(group: str, runs: list[Run], keys: list[str], ident: str,
                   bootstraps: list[tuple[Run, RunUncertainty]]) -> Optional[str]:
    """Each run's test scores with their 95 % bootstrap intervals (`bootstraps`: the runs
    that have them, with their uncertainty.uncertainty)."""
    rows, units = [], set()
    for r, u in bootstraps:
        units.add(u.description)
        rows.append([esc(r.label)] + [fmt_interval(u.means.get(k)) for k in keys])
    if not rows or not keys:
        return None
    caption = (f"Test scores with 95 % percentile bootstrap intervals \\[low, high\\] "
               f"({protocol_caption(group)}; {stats.RESAMPLES:,} resamples of "
               + "; ".join(sorted(units)) + "; means over lead times). " + data_note(runs))
    return table(["Model"] + [metric_heading(k) for k in keys], rows, caption, ident,
                 align="l" + "r" * len(keys))


def _verdict_cell(c: Optional[stats.Comparison]) -> str:
    """A difference with its interval and the verdict in words ('–' where none)."""
    return f"{fmt_interval(c.difference, signed=True)} {VERDICT_TEXT.get(c.verdict, c.verdict)}" if c else "–"


def paired_table(group: str, runs: list[Run], ident: str,
                 bootstraps: list[tuple[Run, RunUncertainty]]) -> Optional[str]:
    """Model minus baseline, with its paired bootstrap interval and the verdict (`bootstraps`
    as for interval_table)."""
    keys = paired_keys(group, runs)
    if not keys:
        return None
    rows = []
    for r, u in bootstraps:
        for name in PAIRED_BASELINES:
            found = u.paired.get(name) or {}
            if found:
                rows.append([esc(r.label), esc(name)] + [_verdict_cell(found.get(k)) for k in keys]
                            + [u.lead_count(name, keys[0]) or "–"])
    if not rows:
        return None
    caption = (f"Paired comparison with the baselines ({protocol_caption(group)}): model minus "
               "baseline on the same test items, with its 95 % paired bootstrap interval; "
               "better or worse when the interval excludes 0 (arrows: the metric's direction), "
               "not distinguishable otherwise; the last column counts the same test at each "
               f"lead time for {esc(metric_label(keys[0]))} (better at n of the leads, worse at m). " + data_note(runs))
    return table(["Model", "Against"] + [metric_heading(k) for k in keys]
                 + ["By lead"], rows, caption, ident,
                 align="ll" + "r" * len(keys) + "l")


def equal_budget_table(group: str, runs: list[Run], ident: str) -> Optional[str]:
    """Architectures at equal training minutes (uncertainty.equal_budget_pairs): the first
    run minus the second on the same test items, paired bootstrap interval and verdict."""
    keys = paired_keys(group, runs)
    pairs = [h for a, b in equal_budget_pairs(runs) if (h := experiments_head_to_head(a, b)) is not None]
    rows = [[esc(h.a.label), esc(h.b.label), f"{h.a.params['time_budget_min']:g}",
             f"{steps_text(h.a)} / {steps_text(h.b)}"]
            + [_verdict_cell(h.paired.get(k)) for k in keys]
            + [count_verdicts(h.leads.get(keys[0])) or "–"] for h in pairs] if keys else []
    if not rows:
        return None
    caption = (f"Architectures at equal training minutes ({protocol_caption(group)}): the "
               "first model minus the second, two runs of different architectures with the "
               "same time budget on the same data and machine (device and threads), scored on "
               "the same test items, with the 95 % paired bootstrap interval of the difference; "
               "better or worse (for the first model) when it excludes 0; the last column "
               "counts the same test at each lead "
               f"time for {esc(metric_label(keys[0]))}; Steps: the optimiser steps each took in those "
               "minutes (load on a shared machine moves them). Where each trained, and for how long: "
               "the models table. " + data_note(runs))
    return table(["Model", "Against", "Budget (min)", "Steps"] + [metric_heading(k) for k in keys]
                 + ["By lead"], rows, caption, ident, align="llll" + "r" * len(keys) + "l")



def _ood_label(runs: list[Run]) -> str:
    digits = sorted({str(d) for r in runs if metrics_value(r, "splits", "test_ood") is not None
                     for d in [metrics_value(r, "ood", "num_digits") or r.params.get("test_num_digits")]
                     if d is not None})
    return "Out of domain" + (f" ({esc('/'.join(digits))} digits)" if digits else "")


def splits_table(group: str, runs: list[Run], ident: str) -> Optional[str]:
    """The thesis's Table 4.1: train, validation and test (and out-of-domain test) side by
    side, from metrics.json `splits`; a seed group as mean ± t interval."""
    present = [s for s in SPLITS if any(isinstance(metrics_value(r, "splits", s), dict) for r in runs)]
    keys = [k for k in headline_keys(group, runs)
            if any(isinstance(metrics_value(r, "splits", s, k), (int, float)) for r in runs for s in present)]
    if len(present) < 2 or not keys:
        return None
    labels = dict(SPLIT_LABELS, test_ood=_ood_label(runs))
    rows = []
    for g in seed_groups([r for r in runs if not is_baseline(r)]):  # baselines train on nothing
        name = esc(g.runs[0].label) if g.n == 1 else f"{g.label}, mean of {g.count_text}"
        rows.append([name] + [fmt_pm(g.interval("splits", s, k)) for s in present for k in keys])
    header = ["Model"] + [f"{labels[s]}: {metric_heading(k)}" for s in present for k in keys]
    undefined = ("; – where a score is undefined: a CSI or FSS of a split without rain at its "
                 "threshold, as KNMI-30/60's validation events (January 2021) at 20 dBZ"
                 if group == "knmi-30-60" else "")
    caption = (f"Train, validation and test scores side by side ({protocol_caption(group)}; "
               "the final model's means over lead times on each split, metrics.json; train: a "
               "fixed sample of training sequences as large as the test set"
               + ("; out of domain: test sequences with another number of digits"
                  if "test_ood" in present else "")
               + undefined + "). Seed groups: mean ± 95 % t interval. " + data_note(runs))
    return table(header, rows, caption, ident, align="l" + "r" * (len(header) - 1))


# a residual model's first guess -> the baseline that scores it alone
GUESS_BASELINES = {"extrapolation": "torch_extrapolation", "persistence": "persistence"}


def first_guess_verdicts(group: str, runs: list[Run],
                         bootstraps: list[tuple[Run, RunUncertainty]]) -> Optional[str]:
    """One sentence per residual model: did training add skill to the first guess it started
    from? The paired verdict against the baseline that is that guess alone (model minus
    guess on the same test items), over the lead mean and counted lead by lead, and which
    validation step the scored weights come from (metrics.json `training`)."""
    keys = paired_keys(group, runs)
    lines = []
    for r, u in bootstraps:
        if not r.params.get("residual") or is_baseline(r):
            continue
        guess = GUESS_BASELINES.get(str(r.params.get("first_guess") or "persistence"))
        found = u.paired.get(guess) or {}
        if not found or not keys:
            continue
        verdicts = {k: found[k].verdict for k in keys if k in found}
        judged = [k for k in (*headline_keys(group, runs), "mae_dbz") if k in verdicts]
        better = [k for k in judged if verdicts[k] == "better" and k != "mae_dbz"]
        worse = [k for k in judged if verdicts[k] == "worse"]
        added = ("**added skill** to" if better and not worse else
                 "**took skill** from" if worse and not better else
                 "**traded skill** (better and worse) with" if better else
                 "added **no distinguishable skill** to")
        detail = "; ".join(f"{esc(metric_label(k))} {esc(v)} ({u.lead_count(guess, k) or '–'})"
                           for k, v in verdicts.items())
        step = metrics_value(r, "training", "selected_step")
        rule = metrics_value(r, "training", "selected_by")
        chosen = ("" if not isinstance(step, int) else
                  f" The scored weights are those of step {step:,} of {steps_text(r)}"
                  + (" (the untrained model: the first guess itself)" if step == 0 else "")
                  + f", selected by validation {esc(rule or 'loss')}.")
        lines.append(f"- {esc(r.label)}, correcting {esc(guess)}: training {added} its first "
                     f"guess on the test (paired, lead mean: {detail}).{chosen}")
    if not lines:
        return None
    return ("**Did training add skill to the first guess?** Each residual model against the "
            "baseline that is its first guess alone, on the same test items (the paired "
            "bootstrap above; in brackets the per-lead count of the same test). Added skill: "
            "better on a headline score, worse on none of them nor on MAE; took skill: worse "
            "and better on none:\n\n"
            + "\n".join(lines) + "\n")
