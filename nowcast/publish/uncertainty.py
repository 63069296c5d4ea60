"""What the report says about uncertainty: runs grouped by seed (mean and Student t interval),
one run's bootstrap intervals and its paired comparisons with the baselines, from the
scores.npz of its results folder (docs/statistics.md; the statistics are `nowcast/stats.py`).

Runs are "the same experiment" when their params.yaml agree on every field except those in
SEED_IGNORED (the seed, the fields that name or place a run, and where and how often it ran
and saved), and they share protocol group, data description and architecture.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .. import stats
from ..protocols import KNMI_SPLITS, KNMI_WINDOWS_PER_EVENT, protocol_or_none
from ..paths import JobPaths
from ..options import NON_SEMANTIC
from ..results import Run
from .describe import BASELINES, as_ran, is_baseline, metrics_value, test_data
from .markdown import esc, fmt_value

SEED_IGNORED = NON_SEMANTIC | {"seed"}  # a seed group: runs that differ in their seed alone
# every baseline a model's scores.npz holds beside it (radar: persistence and both extrapolations;
# Moving MNIST: persistence and the mean training frame)
PAIRED_BASELINES = BASELINES
UNIT_WORDS = {"sequences": "test sequences", "events": "test events (blocks of windows)",
              "windows": "test windows (event ids not saved: windows resampled one by one)"}


# --------------------------------------------------------------------------------------------
# seed groups
# --------------------------------------------------------------------------------------------

@dataclass
class SeedGroup:
    runs: list[Run]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list:
        return [r.params.get("seed") for r in self.runs]

    @property
    def name(self) -> str:
        """The runs' common name without its seed part (grid names end in '-seed=N'): data,
        as it is (figures); `label` is the same, escaped (markdown)."""
        return re.sub(r"[-_]?seed=[^-_]*", "", self.runs[0].name) or self.runs[0].name

    @property
    def label(self) -> str:
        """`name`, escaped; a group of one run names its job too where the two differ (two
        runs of one name were told apart in the tables and not in the findings)."""
        return esc(self.runs[0].label if self.n == 1 else self.name)

    @property
    def count_text(self) -> str:
        seeds = self.seeds
        listed = ", ".join(esc(s) for s in seeds)
        if len(set(map(str, seeds))) == len(seeds):
            return f"n = {self.n} seeds ({listed})"
        return f"n = {self.n} runs (seeds {listed})"

    def interval(self, *path: str) -> stats.Interval:
        """Mean over the runs of metrics.json's value at `path`, with its t interval."""
        values = [metrics_value(r, *path) for r in self.runs]
        return stats.t_interval([v for v in values if isinstance(v, (int, float))
                                 and not isinstance(v, bool)])

    def per_lead(self, name: str) -> Optional[tuple[list, list, list]]:
        """(mean, low, high) per lead over the runs' per_lead[name]; None unless all have it."""
        curves = [metrics_value(r, "per_lead", name) for r in self.runs]
        if not all(isinstance(c, list) and c and len(c) == len(curves[0]) for c in curves):
            return None
        leads = [stats.t_interval([c[i] if isinstance(c[i], (int, float)) else None for c in curves])
                 for i in range(len(curves[0]))]
        return ([i.estimate for i in leads], [i.low for i in leads], [i.high for i in leads])


def group_key(run: Run) -> str:
    """What makes runs one experiment: their params as they ran (a field an older params.yaml
    lacks at its default) except SEED_IGNORED, protocol group, data and architecture."""
    same = {k: v for k, v in sorted(as_ran(run).items()) if k not in SEED_IGNORED}
    return json.dumps([run.group, run.data, metrics_value(run, "architecture"), same], default=str,
                      sort_keys=True)


def seed_groups(runs: list[Run]) -> list[SeedGroup]:
    """The models among `runs` grouped by `group_key`, in order of first appearance; a run
    without params (or a baseline) is a group of its own."""
    groups: dict[str, SeedGroup] = {}
    for i, r in enumerate(runs):
        key = group_key(r) if r.params and not is_baseline(r) else f"#{i}"
        groups.setdefault(key, SeedGroup([])).runs.append(r)
    return list(groups.values())


def fmt_pm(interval: stats.Interval, fmt=fmt_value) -> str:
    """'mean ± half-width' (just the mean when there is no interval)."""
    if interval.estimate is None:
        return "–"
    half = interval.half_width
    return fmt(interval.estimate) + ("" if half is None else f" ± {fmt(half)}")


def fmt_interval(interval: Optional[stats.Interval], signed: bool = False) -> str:
    """'value \\[low, high\\]' (escaped brackets: text, never a link)."""
    if interval is None or interval.estimate is None:
        return "–"
    plus = "+" if signed and interval.estimate > 0 else ""
    text = plus + fmt_value(interval.estimate)
    if interval.low is None or interval.high is None:
        return text
    return f"{text} \\[{fmt_value(interval.low)}, {fmt_value(interval.high)}\\]"


# --------------------------------------------------------------------------------------------
# one run: bootstrap over its test items
# --------------------------------------------------------------------------------------------

def count_verdicts(verdicts: Optional[list[str]]) -> Optional[str]:
    """'11/12 better' / '0/12 better, 3 worse': per-lead verdicts counted (None: none)."""
    if not verdicts:
        return None
    better, worse = verdicts.count("better"), verdicts.count("worse")
    return f"{better}/{len(verdicts)} better" + (f", {worse} worse" if worse else "")


@dataclass
class RunUncertainty:
    """A run's test scores with bootstrap intervals, and its paired comparisons."""
    scheme: str                          # a key of UNIT_WORDS
    units: int                           # sequences, events or windows resampled
    means: dict[str, stats.Interval]     # metric -> mean over leads, with its interval
    paired: dict[str, dict[str, stats.Comparison]] = field(default_factory=dict)  # baseline -> metric
    # baseline -> metric -> the paired verdict at each lead time (the same resamples)
    leads: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def lead_count(self, baseline: str, metric: str) -> Optional[str]:
        return count_verdicts((self.leads.get(baseline) or {}).get(metric))

    @property
    def description(self) -> str:
        return f"{self.units:,} {UNIT_WORDS[self.scheme]}"


# what one run's scores.npz may hold, counted from each array's header before any is read: a
# radar test of 40 windows holds ~3,000 values an array, Moving MNIST's 2,000 sequences x 10
# leads 20,000 (424 KB of zeros can say 2,000,000 rows: 15 GiB once read)
MAX_SCORE_VALUES = 5_000_000


def _declared_size(z: "np.lib.npyio.NpzFile", key: str) -> int:
    """The number of values array `key` of an open .npz declares in its header (unread)."""
    with z.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, _ = read_header(member)
    return int(np.prod(shape, dtype=np.float64))


def read_scores(f: Path) -> Optional[dict[str, np.ndarray]]:
    """A scores.npz as arrays (no pickles); None when damaged or declaring more than
    MAX_SCORE_VALUES values in all (with a warning: the run loses its intervals, the report
    goes on)."""
    try:
        with np.load(f, allow_pickle=False) as z:
            declared = sum(_declared_size(z, k) for k in z.files)
            if declared > MAX_SCORE_VALUES:
                raise ValueError(f"it declares {declared:,} values, more than the "
                                 f"{MAX_SCORE_VALUES:,} a run's scores hold")
            return {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        print(f"nowcast: warning: {f}: unreadable ({e}); no intervals for this run", file=sys.stderr)
        return None


def blocks_of(group: str, per_item: dict[str, np.ndarray], n: int) -> tuple[str, Optional[np.ndarray]]:
    """The resampling unit: sequences (Moving MNIST); radar events, from a saved `event` array
    or the protocol's layout of its 40 test windows; else windows one by one."""
    if "contingency" not in per_item:
        return "sequences", None
    event = per_item.get("event")
    if event is not None and np.shape(event) == (n,):
        return "events", np.asarray(event)
    if group == "knmi-30-60" and n == KNMI_WINDOWS_PER_EVENT * len(KNMI_SPLITS["test"]):
        return "events", np.arange(n) // KNMI_WINDOWS_PER_EVENT
    return "windows", None


def _test_items(per_item: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of the test split: the model's and the paired baselines' (other splits,
    e.g. `test_ood__*`, have their own items)."""
    keep = tuple(f"{b}__" for b in PAIRED_BASELINES)
    return {k: v for k, v in per_item.items() if "__" not in k or k.startswith(keep)}


def _items(per_item: dict[str, np.ndarray]) -> int:
    """The number of items every per-item array agrees on (ValueError otherwise)."""
    sizes = {len(v) for k, v in per_item.items() if np.ndim(v) >= 2}
    if len(sizes) != 1 or min(sizes) < 2:
        raise ValueError(f"per-item arrays disagree on their length or are too short: {sorted(sizes)}")
    return sizes.pop()


def _test_scores(run: Run) -> Optional[dict[str, np.ndarray]]:
    """A completed run's per-item test arrays (its own and its paired baselines'), or None."""
    path = run.file(JobPaths.SCORES)
    if path is None or run.status != "completed":
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    per_item = _cached_scores(str(path), stat.st_mtime_ns, stat.st_size)
    return _test_items(per_item) if per_item else None


@functools.lru_cache(maxsize=256)
def _cached_scores(path: str, mtime_ns: int, size: int) -> Optional[dict[str, np.ndarray]]:
    """read_scores once per file version: a report reads a run's scores for its intervals,
    its findings and its comparisons (read-only arrays)."""
    per_item = read_scores(Path(path))
    for array in (per_item or {}).values():
        array.flags.writeable = False
    return per_item


def baseline_items(runs: list[Run]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """The per-window test arrays of every completed baseline run of its own (`nowcast
    evaluate --baseline`), by (test_data, baseline name), prefixed as a model's
    scores.npz holds its baselines (`sprog__contingency`, ...)."""
    out = {}
    for r in runs:
        if is_baseline(r) and (items := _test_scores(r)):
            name = metrics_value(r, "architecture")
            out[(test_data(r), name)] = {f"{name}__{k}": v for k, v in items.items() if "__" not in k
                                        and k != "event"} | {"event": items.get("event")}
    return out


def _with_baselines(run: Run, per_item: dict[str, np.ndarray],
                    scored: dict[tuple[str, str], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """per_item with each paired baseline it lacks taken from a baseline run of its own on the
    same test items (the same test_data, number of windows and events): a baseline
    added after a model ran (S-PROG) is paired with it without rerunning the model."""
    out = dict(per_item)
    for name in PAIRED_BASELINES:
        other = scored.get((test_data(run), name))
        if other is None or any(k.startswith(f"{name}__") for k in per_item):
            continue
        arrays = {k: v for k, v in other.items() if k != "event"}
        lengths = {len(v) for k, v in arrays.items() if np.ndim(v) >= 2}
        same_events = other.get("event") is None or per_item.get("event") is None or \
            np.array_equal(other["event"], per_item["event"])
        if lengths == {len(per_item["contingency"])} and same_events:
            out.update(arrays)
    return out


def uncertainty(run: Run, scored: Optional[dict] = None) -> Optional[RunUncertainty]:
    """Bootstrap intervals of a completed run from its scores.npz (None: none there, or
    damaged, with a warning); `scored` (baseline_items) adds the baselines it lacks. The
    report computes it once per run (fragments.results_section)."""
    per_item = _test_scores(run)
    if not per_item:
        return None
    if scored and "contingency" in per_item and not is_baseline(run):
        per_item = _with_baselines(run, per_item, scored)
    path = run.file(JobPaths.SCORES)
    try:
        n = _items(per_item)
        scheme, blocks = blocks_of(run.group, per_item, n)
        weights = stats.resample_weights(n, blocks)
        lead = stats.score_samples(per_item, weights)  # (rows, k) per metric
        model = {k: stats.lead_mean(v) for k, v in lead.items()}
        out = RunUncertainty(scheme, n if blocks is None else len(np.unique(blocks)),
                             {k: stats.bootstrap_interval(v) for k, v in model.items()})
        for name in PAIRED_BASELINES:
            base = stats.score_samples(per_item, weights, f"{name}__")
            if base:
                out.paired[name] = {k: stats.compare(model[k], stats.lead_mean(v), k)
                                    for k, v in base.items() if k in model}
                out.leads[name] = {k: [stats.compare(lead[k][:, j], v[:, j], k).verdict
                                       for j in range(v.shape[1])]
                                   for k, v in base.items() if k in lead}
        return out
    except (ValueError, KeyError, IndexError, TypeError) as e:
        print(f"nowcast: warning: {path}: {e}; no intervals for this run", file=sys.stderr)
        return None


# --------------------------------------------------------------------------------------------
# two models on the same test items: equal-budget comparisons of architectures
# --------------------------------------------------------------------------------------------

@dataclass
class HeadToHead:
    """Run a minus run b on the same test items, resampled together (a paired bootstrap)."""
    a: Run
    b: Run
    paired: dict[str, stats.Comparison]   # metric -> a minus b over the lead-time mean
    leads: dict[str, list[str]]           # metric -> the verdict at each lead time


def equal_budget_pairs(runs: list[Run]) -> list[tuple[SeedGroup, SeedGroup]]:
    """The pairs of experiments (seed groups of completed model runs) of one protocol group
    that differ in `architecture` and were trained for the same time budget
    (`time_budget_min`, not null) on the same data and the same machine (env.json's device
    and threads: minutes on two threads are not minutes on one): which family does more with
    the same minutes. In run order, each pair once (a sweep of many seeds is one experiment a
    side)."""
    models = [r for r in runs if r.status == "completed" and not is_baseline(r)
              and isinstance(r.params.get("time_budget_min"), (int, float))]
    groups = [(g, g.runs[0]) for g in seed_groups(models)]
    return [(ga, gb) for i, (ga, a) in enumerate(groups) for gb, b in groups[i + 1:]
            if a.group == b.group and a.params.get("architecture") != b.params.get("architecture")
            and a.params["time_budget_min"] == b.params["time_budget_min"]
            and metrics_value(a, "data") == metrics_value(b, "data") and _machine(a) == _machine(b)]


def _machine(run: Run) -> tuple:
    """What a run's minutes were spent on: env.json's device and CPU threads. Not
    describe.machine's wording, which also names the cores: env.json before `cpu_cores` was
    recorded would read as another machine (mmnist-t-cpu-p4 against its own seed's twin)."""
    return str(run.env.get("device")), str(run.env.get("cpu_threads"))


def arm_scores(runs: list[Run]) -> Optional[dict[str, np.ndarray]]:
    """The per-item test arrays of runs that repeat one experiment (seeds), averaged over the
    runs item by item; None unless every run has them, alike in keys and shapes."""
    arms = [_test_scores(r) for r in runs]
    if not arms or not all(arms) or any(set(a) != set(arms[0]) for a in arms):
        return None
    if any(a[k].shape != arms[0][k].shape for a in arms for k in a):
        return None
    return {k: np.mean([a[k] for a in arms], axis=0) for k in arms[0]}


def experiments_head_to_head(ga: SeedGroup, gb: SeedGroup) -> Optional[HeadToHead]:
    """head_to_head of two experiments: each arm's scores averaged over its runs item by item
    (arm_scores), labelled by their first runs."""
    return head_to_head(ga.runs[0], gb.runs[0], arm_scores(ga.runs), arm_scores(gb.runs))


def head_to_head(a: Run, b: Run, sa: Optional[dict] = None, sb: Optional[dict] = None
                 ) -> Optional[HeadToHead]:
    """a minus b with paired bootstrap intervals (the same resampled sequences or events for
    both), from their scores.npz (or the arrays `sa`, `sb` given: arm_scores of seed groups);
    None where either has none or their test items differ."""
    sa = sa if sa is not None else _test_scores(a)
    sb = sb if sb is not None else _test_scores(b)
    if not sa or not sb:
        return None
    try:
        n = _items(sa)
        if _items(sb) != n:
            return None
        weights = stats.resample_weights(n, blocks_of(a.group, sa, n)[1])
        la, lb = stats.score_samples(sa, weights), stats.score_samples(sb, weights)
        keys = [k for k in la if k in lb]
        return HeadToHead(a, b, {k: stats.compare(stats.lead_mean(la[k]), stats.lead_mean(lb[k]), k)
                                 for k in keys},
                          {k: [stats.compare(la[k][:, j], lb[k][:, j], k).verdict
                               for j in range(la[k].shape[1])] for k in keys})
    except (ValueError, KeyError, IndexError, TypeError) as e:
        print(f"nowcast: warning: {a.label} against {b.label}: {e}; no comparison", file=sys.stderr)
        return None


def headline_keys(group: str, runs: list[Run]) -> list[str]:
    """The protocol's headline metrics; for runs of no protocol, their own (paired_keys)."""
    protocol = protocol_or_none(group)
    return list(protocol.headline) if protocol.table else paired_keys(group, runs)


def paired_keys(group: str, runs: list[Run]) -> list[str]:
    """The metrics compared with the baselines: the protocol's headline and skill metrics
    (for runs of no protocol, their own headline)."""
    protocol = protocol_or_none(group)
    keys = list(dict.fromkeys(list(protocol.headline if protocol.table else [])
                              + [k for k, _ in protocol.skill]))
    if not keys:
        keys = list(dict.fromkeys(k for r in runs for k in (metrics_value(r, "headline") or [])
                                  if isinstance(k, str)))
    return keys
