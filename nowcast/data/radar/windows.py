"""Windows of k_in + k_out frames cut from prepared events, and the split of a file's events.

Evaluation windows start every `stride` frames inside one event (KNMI-30/60:
`protocols.KNMI_EVAL_STRIDE`); a window never spans two events. Events are split whole, never
a window at a time, so that no storm is shared between training and test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import NowcastError
from .readers import RadarEvents


@dataclass
class RadarWindows:
    """Evaluation windows in dBZ: (N, k_in + k_out, H, W), NaN = no data, with their origin."""
    dbz: np.ndarray
    event: np.ndarray          # index into the file's events
    start: np.ndarray          # first frame of the window in its event
    times: np.ndarray | None   # datetime64[m] (N, T), when the file has times
    path: Path
    source: str = ""            # the service that made the data (meta.source): credited where shown


def window_starts(length: int, window: int, stride: int) -> range:
    """Starts of the windows of `window` frames every `stride` frames inside `length` frames."""
    return range(0, length - window + 1, stride)


def cut_windows(events: RadarEvents, which: Iterable[int], window: int, stride: int) -> RadarWindows:
    """Windows of prepared events `which`, starting every `stride` frames."""
    dbz = events.frames
    rows = [(e, s) for e in which for s in window_starts(len(dbz[e]), window, stride)]
    if not rows:
        raise NowcastError(f"{events.path}: no event has the {window} frames a window needs")
    stack = np.stack([dbz[e][s:s + window] for e, s in rows])
    times = None
    if all(events.times[e] is not None for e, _ in rows):
        times = np.stack([events.times[e][s:s + window] for e, s in rows])
    return RadarWindows(stack, np.array([e for e, _ in rows]), np.array([s for _, s in rows]),
                        times, events.path, events.source)


def chronological_split(n_events: int, path: Path) -> dict[str, list[int]]:
    """Events split whole and in time order: the latest ~20 % test, the ~10 % before them
    validation, the rest training (test after train: no storm is shared)."""
    if n_events < 3:
        raise NowcastError(f"{path}: {n_events} event(s); splitting train/val/test by event needs "
                           "at least 3")
    n_test = max(1, round(0.2 * n_events))
    n_val = max(1, round(0.1 * n_events))
    n_train = n_events - n_test - n_val
    return {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val)),
            "test": list(range(n_train + n_val, n_events))}
