"""The shape of metrics.json (docs/architecture.md), checked when a results folder is read.

A folder's files are data: a field of the wrong type (a string where a number belongs, a list
where a mapping does) makes the run `unreadable` with a reason naming the field
(results.read_run), instead of a crash wherever the report or the slides use the value.
Fields the readers do not use are not checked.
"""

from __future__ import annotations

from typing import Any, Callable, Optional


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _text(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _count(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool))


def _scores(v: Any) -> Optional[str]:
    """A mapping metric name -> number (or null: undefined)."""
    if not isinstance(v, dict):
        return "must be a mapping of metric: number"
    bad = next((k for k, x in v.items() if not _number(x)), None)
    return None if bad is None else f"'{bad}' must be a number or null, got {v[bad]!r:.40}"


def _per_lead(v: Any) -> Optional[str]:
    """A mapping metric name -> list of numbers (one per lead time)."""
    if not isinstance(v, dict):
        return "must be a mapping of metric: list of numbers"
    for k, x in v.items():
        if not isinstance(x, list) or not all(_number(i) for i in x):
            return f"'{k}' must be a list of numbers, got {x!r:.40}"
    return None


def _baselines(v: Any) -> Optional[str]:
    if not isinstance(v, dict):
        return "must be a mapping of baseline: scores"
    for name, b in v.items():
        if not isinstance(b, dict):
            return f"'{name}' must be a mapping with 'mean' and 'per_lead'"
        problem = _scores(b.get("mean", {})) or _per_lead(b.get("per_lead", {}))
        if problem:
            return f"'{name}': {problem}"
    return None


def _losses(v: Any) -> Optional[str]:
    if not isinstance(v, dict):
        return "must be a mapping of split: loss"
    if not _text(v.get("loss")):
        return "'loss' must be the loss name"
    return _scores({k: x for k, x in v.items() if k != "loss"})


def _plain(check: Callable[[Any], bool], what: str) -> Callable[[Any], Optional[str]]:
    return lambda v: None if check(v) else f"must be {what}, got {v!r:.40}"


FIELDS: dict[str, Callable[[Any], Optional[str]]] = {
    "mean": _scores, "per_lead": _per_lead, "baselines": _baselines, "losses": _losses,
    "headline": lambda v: None if isinstance(v, list) and all(isinstance(k, str) for k in v)
    else "must be a list of metric names",
    "parameters": _plain(_count, "an integer"), "k_in": _plain(_count, "an integer"),
    "k_out": _plain(_count, "an integer"), "n_sequences": _plain(_count, "an integer"),
    "follows_protocol": _plain(lambda v: isinstance(v, bool), "true or false"),
    **{k: _plain(_text, "text") for k in ("name", "job_id", "protocol", "data", "architecture")},
}


def metrics_problem(metrics: Any) -> Optional[str]:
    """None when metrics.json has the contract's shape, else one line naming the first field
    that has not."""
    if not isinstance(metrics, dict):
        return "not a JSON object"
    for key, check in FIELDS.items():
        if key in metrics:
            problem = check(metrics[key])
            if problem:
                return f"'{key}' {problem}" if not problem.startswith("'") else f"'{key}': {problem}"
    return None
