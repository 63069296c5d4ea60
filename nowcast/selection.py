"""Model selection: which validation row's weights a run keeps (`select_by`).

Every validation appends a row to the run's history; the kept weights are those of the best row
of the final curriculum stage, by one of two rules:

- ``loss``: the lowest validation loss (the training loss, on the validation windows);
- ``skill`` (radar): the highest validation skill

      skill = (1/K) sum_k (CSI_20(k) + FSS_20,5(k)) / 2,

  the protocol's two headline scores (CSI at 20 dBZ, FSS at 20 dBZ over 5 x 5 blocks, 20 km)
  at each lead k, pooled over every validation window of every source (verification.py); a
  score undefined at a lead (no event observed nor forecast) counts as 0 there. The lower
  validation MAE (dBZ) breaks ties, then the earlier step.

A residual model is validated before its first step (training.Trainer.run): its untrained
weights, which forecast the first guess exactly, are a candidate like any other, so the kept
weights are never worse than the first guess on validation by the rule. And a trained step
must beat the first guess by a margin the validation can tell from noise: its row is a
candidate only where the paired bootstrap interval (95 %, whole validation events resampled)
of its skill minus the first guess's lies above 0 (`val_gain_low` > 0, stats.skill_gain;
docs/radar_skill.md section 10). Sixteen windows of four nearly dry evenings once kept a
step whose +0.03 was noise, which the test then showed.
"""

from __future__ import annotations

import math
from typing import Optional

RULES = {
    "loss": "lowest validation loss",
    "skill": "highest validation skill, the mean over leads of (CSI-20 + FSS-20 at 20 km)/2 "
             "(lower MAE breaking ties); a residual model's trained step only where its paired "
             "95 % interval over validation events of the gain over the first guess is above 0",
}
SKILL_KEYS = ("csi_20", "fss_20_5")  # the protocol's headline scores (protocols.py)
# history columns a skill validation adds to a row
SKILL_COLUMNS = ("val_skill", "val_csi_20", "val_fss_20_5", "val_mae_dbz", "val_gain_low")


def skill_columns(per_lead: dict) -> dict[str, float]:
    """A validation's history columns from its verification scores per lead (verification.py
    RadarVerification.per_lead())."""
    def mean(name: str) -> float:
        values = [0.0 if v is None else float(v) for v in per_lead[name]]
        return sum(values) / len(values)
    csi, fss = mean(SKILL_KEYS[0]), mean(SKILL_KEYS[1])
    mae = [v for v in per_lead["mae_dbz"] if v is not None]
    return {"val_skill": (csi + fss) / 2, "val_csi_20": csi, "val_fss_20_5": fss,
            "val_mae_dbz": sum(mae) / len(mae) if mae else math.inf}


def key(row: dict, rule: str) -> tuple:
    """What the rule maximises for one history row (larger is better; NaN: worst)."""
    def finite(value) -> float:
        value = float(value)
        return value if math.isfinite(value) else -math.inf
    if rule == "skill":
        if row.get("step") and "val_gain_low" in row and not float(row["val_gain_low"]) > 0:
            return -math.inf, -math.inf  # a trained step that does not clear the margin
        return finite(row["val_skill"]), finite(-row["val_mae_dbz"])
    if rule == "loss":
        return (finite(-row["val_loss"]),)
    raise ValueError(f"unknown selection rule {rule!r}: expected one of {', '.join(RULES)}")


def best_index(rows: list[dict], rule: str) -> Optional[int]:
    """Index of the best row by `rule` (the earliest of equals); None for no rows."""
    if not rows:
        return None
    return max(range(len(rows)), key=lambda i: (key(rows[i], rule), -i))


def final_stage(history: list[dict]) -> list[dict]:
    """The rows of the last stage validated (selection compares only those)."""
    return [row for row in history if row["stage"] == history[-1]["stage"]] if history else []


def selected_row(history: list[dict], rule: str) -> Optional[dict]:
    """The history row whose weights a run keeps: the best of its final stage by `rule`."""
    rows = final_stage(history)
    index = best_index(rows, rule)
    return None if index is None else rows[index]


def since_best(history: list[dict], rule: str) -> list[dict]:
    """Rows of the last stage after its best one (early stopping counts them)."""
    rows = final_stage(history)
    index = best_index(rows, rule)
    return [] if index is None else rows[index + 1:]
