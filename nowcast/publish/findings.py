"""Findings: what the runs say about one hyperparameter at a time, with the paired evidence.

Two experiments (seed groups, `uncertainty.seed_groups`) of one protocol group, tested on the
same data, whose parameters as they ran (`describe.as_ran`: a field an older params.yaml lacks
at its default) differ in exactly one field other than the seed and where a run ran, are a
*finding*: arm a minus arm b on every headline metric, the paired bootstrap over the test
items (each arm's per-item scores averaged over its seeds), its verdict, and the per-lead
verdicts counted. One run per arm: the interval covers the test items, not training seeds.
Experiments that differ in more fields cannot be separated: `confounded` names the fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..protocols import direction, metric_label
from ..results import Run
from .describe import NOT_LISTED, as_ran, is_baseline, steps, test_data
from .intervals import GUESS_BASELINES
from .markdown import esc, fmt_value, table, value_text
from .uncertainty import (SEED_IGNORED, HeadToHead, SeedGroup, count_verdicts,
                          experiments_head_to_head, fmt_interval, headline_keys, seed_groups)

IGNORED = SEED_IGNORED | NOT_LISTED
SAID = {"better": "better", "worse": "worse", "not distinguishable": "not distinguishable"}
THAN = {"better": "better than", "worse": "worse than",
        "not distinguishable": "not distinguishable from"}


@dataclass
class Pair:
    """Experiment a against experiment b: the fields (with a's and b's values) that differ."""
    a: SeedGroup
    b: SeedGroup
    fields: dict[str, tuple[Any, Any]]
    dependent: dict[str, tuple[Any, Any]]
    evidence: Optional[HeadToHead] = None


def _differences(a: Run, b: Run) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """(fields, dependent fields) that differ: a dependent field is unused (null) on one side,
    set only because another field differs (csi_weight with loss mse_csi)."""
    ra, rb = as_ran(a), as_ran(b)
    diff = {k: (ra.get(k), rb.get(k)) for k in sorted(set(ra) | set(rb))
            if k not in IGNORED and repr(ra.get(k)) != repr(rb.get(k))}
    dependent = {k: v for k, v in diff.items() if None in v}
    if len(dependent) == len(diff):
        return diff, {}
    return {k: v for k, v in diff.items() if k not in dependent}, dependent


def pairs(runs: list[Run]) -> list[Pair]:
    """Every pair of experiments of one protocol group and test data, in run order, with the
    fields they differ in (single-field pairs get their paired evidence)."""
    models = [r for r in runs if r.status == "completed" and not is_baseline(r) and r.params]
    groups = seed_groups(models)
    out = []
    for i, ga in enumerate(groups):
        for gb in groups[i + 1:]:
            a, b = ga.runs[0], gb.runs[0]
            if a.group != b.group or test_data(a) != test_data(b):
                continue
            pair = Pair(ga, gb, *_differences(a, b))
            if len(pair.fields) == 1:
                pair.evidence = experiments_head_to_head(ga, gb)
            out.append(pair)
    return out


def findings(runs: list[Run], known: Optional[list[Pair]] = None) -> list[Pair]:
    """The single-field pairs that have paired evidence (of `known`, pairs(runs) already
    computed: its paired bootstraps are the costly part)."""
    return [p for p in (pairs(runs) if known is None else known)
            if len(p.fields) == 1 and p.evidence is not None]


def _of_group(group: str, runs: list[Run], known: Optional[list[Pair]]) -> list[Pair]:
    return [p for p in (pairs(runs) if known is None else known) if p.a.runs[0].group == group]


def _arm(g: SeedGroup) -> str:
    known = [n for n in map(steps, g.runs) if n is not None]
    return (f"{g.label} ({g.n} run{'s' * (g.n > 1)}"
            + (f", {'/'.join(f'{s:,}' for s in known)} steps" if known else "") + ")")


def sentence(p: Pair, keys: list[str]) -> str:
    """One finding in words: the field, its two values, each metric's effect with its interval
    and verdict, the leads, the runs per arm."""
    field, (va, vb) = next(iter(p.fields.items()))
    parts = []
    for k in keys:
        c = p.evidence.paired.get(k)
        if c is None:
            continue
        leads = count_verdicts(p.evidence.leads.get(k))
        parts.append(f"{esc(metric_label(k))} {fmt_interval(c.difference, signed=True)}, "
                     f"{SAID.get(c.verdict, esc(c.verdict))}" + (f" (by lead: {leads})" if leads else ""))
    seeds = ("one run per arm: the interval covers test items, not training seeds"
             if p.a.n == 1 and p.b.n == 1 else f"each arm's scores averaged over its runs item by item ({p.a.n} and {p.b.n} runs): "
             "the interval covers test items, not training seeds")
    used = [f"{esc(k)} {esc(value_text(v[0]))}" for k, v in p.dependent.items() if v[0] is not None]
    with_ = f" (with {', '.join(used)})" if used else ""
    return (f"**{esc(field)}** {esc(value_text(va))}{with_} rather than {esc(value_text(vb))} "
            f"({_arm(p.a)} against {_arm(p.b)}): " + "; ".join(parts) + f"; {seeds}.")


def _decided(p: Pair, keys: list[str]) -> bool:
    """A finding whose interval excludes 0 on a headline metric (better or worse)."""
    return any((c := p.evidence.paired.get(k)) is not None and c.verdict in ("better", "worse")
               for k in keys)


def findings_section(group: str, runs: list[Run], known: Optional[list[Pair]] = None) -> str:
    """The findings of one protocol group as sentences: those whose interval excludes 0 on a
    headline metric, the others counted (undecided_findings, in the appendix, as the pairs that
    cannot be separated: confounded_table); `known`: pairs(runs), when the caller has them."""
    keys = headline_keys(group, runs)
    mine = _of_group(group, runs, known)
    single = findings(runs, mine)
    decided = [p for p in single if _decided(p, keys)]
    text = []
    if single:
        text.append("Experiments that differ in one parameter (the first minus the second, "
                    "95 % paired bootstrap interval over the test items; better or worse when "
                    "it excludes 0):\n")
        text += [f"- {sentence(p, keys)}" for p in decided]
        if len(single) > len(decided):
            text.append(f"\n{len(single) - len(decided)} more of them "
                        f"{'is' if len(single) - len(decided) == 1 else 'are'} not "
                        f"distinguishable on any headline metric: @sec-detail-{group}.")
    else:
        text.append("No two experiments here differ in one parameter alone: no single "
                    "parameter's effect can be read from these runs.")
    if any(len(p.fields) > 1 for p in mine):
        text.append(f"\nPairs that differ in more parameters, which cannot be separated: "
                    f"@sec-detail-{group}.")
    return "\n".join(text) + "\n"


def undecided_findings(group: str, runs: list[Run], known: Optional[list[Pair]] = None) -> Optional[str]:
    """The findings of one parameter whose intervals include 0 on every headline metric, as
    sentences (the appendix: the main text counts them)."""
    keys = headline_keys(group, runs)
    rest = [p for p in findings(runs, _of_group(group, runs, known)) if not _decided(p, keys)]
    if not rest:
        return None
    return ("Experiments that differ in one parameter and are not distinguishable on any "
            "headline metric:\n\n" + "\n".join(f"- {sentence(p, keys)}" for p in rest) + "\n")


def confounded_table(group: str, runs: list[Run], known: Optional[list[Pair]] = None) -> Optional[str]:
    """The pairs of experiments of one protocol group that differ in two or three parameters
    (named: their effects cannot be told apart), and a count of those that differ in more."""
    mine = _of_group(group, runs, known)
    several = [p for p in mine if 2 <= len(p.fields) <= 3]
    more = sum(len(p.fields) > 3 for p in mine)
    text = ""
    if several:
        rows = [[p.a.label, p.b.label, esc(", ".join(p.fields))] for p in several]
        text = table(["Run", "Against", "Differ in (cannot be separated)"], rows,
                     f"Experiments of {esc(group)} that differ in two or three parameters: their "
                     "effects cannot be told apart.", f"tbl-confounded-{group}", align="lll")
    if more:
        text += f"\n{more} other pairs differ in four parameters or more.\n"
    return text or None


def _best(keys: list[str], bootstraps: list) -> Optional[tuple[Run, Any]]:
    """The model with the best lead-mean of the first headline metric (its own bootstrap)."""
    key = keys[0]
    scored = [(r, u) for r, u in bootstraps if not is_baseline(r) and key in u.means
              and u.means[key].estimate is not None]
    if not scored:
        return None
    sign = direction(key) or 1
    return max(scored, key=lambda ru: sign * ru[1].means[key].estimate)


def conclusion_lines(group: str, runs: list[Run], bootstraps: list,
                     known: Optional[list[Pair]] = None) -> list[str]:
    """What the runs of one protocol group found, each with its evidence: the best model
    against every baseline (paired), whether residual models added skill to their first
    guess, and the single-parameter effects whose intervals exclude 0."""
    keys = headline_keys(group, runs)
    lines = []
    best = _best(keys, bootstraps) if keys else None
    if best is not None:
        r, u = best
        verdicts = [f"{THAN.get(c.verdict, c.verdict)} {esc(base)}"
                    for base, found in u.paired.items() if (c := found.get(keys[0]))]
        lines.append(f"The best model by {esc(metric_label(keys[0]))} is {esc(r.label)} "
                     f"({fmt_value(u.means[keys[0]].estimate)})"
                     + (f": {', '.join(verdicts)} (paired, lead mean)" if verdicts else "") + ".")
    residual = [(r, u) for r, u in bootstraps if r.params.get("residual") and not is_baseline(r)]
    if residual:
        gained = [r for r, u in residual if _added(u, r, keys)]
        lines.append(f"{len(gained)} of {len(residual)} residual models added skill to the "
                     "first guess they correct on the test"
                     + (f" ({', '.join(esc(r.label) for r in gained)})" if gained else
                        ": training has not yet added skill to its first guess") + ".")
    for p in findings(runs, _of_group(group, runs, known)):
        said = [f"{esc(metric_label(k))} {c.verdict}" for k in keys
                if (c := p.evidence.paired.get(k)) and c.verdict in ("better", "worse")]
        if said:
            field, (va, vb) = next(iter(p.fields.items()))
            lines.append(f"{esc(field)} {esc(value_text(va))} rather than "
                         f"{esc(value_text(vb))}: {', '.join(said)} ({p.a.label} against "
                         f"{p.b.label}; {p.a.n} and {p.b.n} runs).")
    return lines


def _added(u, r: Run, keys: list[str]) -> bool:
    """Better than its first guess alone on a headline metric, worse on none (nor on MAE)."""
    guess = GUESS_BASELINES.get(str(r.params.get("first_guess") or "persistence"))
    found = u.paired.get(guess) or {}
    verdicts = [found[k].verdict for k in (*keys, "mae_dbz") if k in found]
    return any(found[k].verdict == "better" for k in keys if k in found) and "worse" not in verdicts
