"""`nowcast data inspect` and `nowcast data import`: what a radar archive holds, and the
archive as one `.npz` in the shared PV encoding (units.py) with its times and meta.

inspect, per event: frames, first and last time, time step, gap before it, grid and pixel
size, reflectivity range, coverage (fraction of pixels with data) and wet fraction (echo at
or above WET_DBZ among the pixels with data).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import NowcastError
from ...util import atomic_path
from .readers import RadarEvents, checked_gap, read_radar
from .units import PV_NO_DATA, PV_NO_ECHO, pv_to_dbz

WET_DBZ = 20.0  # the protocol's headline threshold (CSI-20)


def _event_row(events: RadarEvents, e: int, previous_end) -> dict:
    pv = events.frames[e]
    times = events.times[e]
    data = pv != PV_NO_DATA
    echo = data & (pv != PV_NO_ECHO)
    dbz = pv_to_dbz(pv[echo]) if echo.any() else np.zeros(0, np.float32)
    start = None if times is None else str(times[0].astype("datetime64[m]"))
    end = None if times is None else str(times[-1].astype("datetime64[m]"))
    gap = (None if times is None or previous_end is None
           else int((times[0] - previous_end).astype("timedelta64[m]").astype(int)))
    return {"event": e, "frames": int(len(pv)), "start": start, "end": end,
            "step_min": events.dt_min, "gap_before_min": gap,
            "grid": f"{pv.shape[1]}x{pv.shape[2]}", "pixel_km": events.pixel_km,
            "dbz_min": round(float(dbz.min()), 1) if dbz.size else None,
            "dbz_max": round(float(dbz.max()), 1) if dbz.size else None,
            "coverage": round(float(data.mean()), 4),
            "wet_fraction": round(float((pv_to_dbz(pv[data]) >= WET_DBZ).mean()), 4) if data.any() else 0.0}


def inspect(path: str | Path, gap_min: float | None = None) -> dict:
    """What a radar file, folder or list of native files holds, event by event (cut at
    `gap_min` minutes, default readers.event_gap)."""
    events = read_radar(path, checked_gap(gap_min, "--gap"))
    rows, previous_end = [], None
    for e in range(len(events)):
        rows.append(_event_row(events, e, previous_end))
        previous_end = None if events.times[e] is None else events.times[e][-1]
    return {"path": str(path), "source": events.source, "events": len(events),
            "frames": sum(len(f) for f in events.frames), "step_min": events.dt_min,
            "pixel_km": events.pixel_km, "by_event": rows}


def inspect_text(facts: dict) -> str:
    """inspect's facts as a terminal table."""
    head = (f"{facts['path']}: {facts['source']}; {facts['events']} event(s), {facts['frames']} "
            f"frames, every {facts['step_min'] or '?'} min, pixels of "
            f"{facts['pixel_km'] if facts['pixel_km'] else '?'} km")
    cols = ["event", "frames", "start", "end", "gap_before_min", "grid", "dbz_min", "dbz_max",
            "coverage", "wet_fraction"]
    names = ["event", "frames", "first (UTC)", "last (UTC)", "gap (min)", "grid", "dBZ min",
             "dBZ max", "coverage", f"wet >= {WET_DBZ:g} dBZ"]
    cells = [[("–" if r[c] is None else str(r[c])) for c in cols] for r in facts["by_event"]]
    widths = [max(len(n), *(len(row[i]) for row in cells)) for i, n in enumerate(names)]
    line = lambda row: "  ".join(v.rjust(w) for v, w in zip(row, widths))  # noqa: E731
    return "\n".join([head, line(names)] + [line(row) for row in cells])


def inspect_main(path: str, as_json: bool = False, gap_min: float | None = None) -> int:
    facts = inspect(path, gap_min)
    print(json.dumps(facts, indent=2) if as_json else inspect_text(facts))
    return 0


def import_archive(path: str | Path, out: str | Path, gap_min: float | None = None) -> Path:
    """Every event of a radar archive as one .npz in the shared PV encoding: its frames one
    after the other (1, T, H, W), their times and meta (source, dt_min, pixel_km, and
    gap_min when given); a reader cuts the events again at the gaps (meta's gap_min, else
    readers.event_gap). Written beside and renamed when complete."""
    gap_min = checked_gap(gap_min, "--gap")
    out = Path(out)
    if out.suffix != ".npz":
        raise NowcastError(f"{out}: the imported archive is an .npz file")
    if out.exists():
        raise NowcastError(f"{out}: exists; an import never overwrites a file")
    events = read_radar(path, gap_min)
    if len({f.shape[1:] for f in events.frames}) > 1:
        raise NowcastError(f"{path}: its events have different grids")
    frames = np.concatenate(events.frames)[None]
    arrays = {"frames": frames, "meta": json.dumps({
        "source": events.source, "dt_min": events.dt_min, "pixel_km": events.pixel_km,
        "imported_from": str(path), **({"gap_min": gap_min} if gap_min else {})})}
    if all(t is not None for t in events.times):
        arrays["times"] = np.concatenate(events.times).astype("datetime64[m]")[None]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, keep_suffix=True) as tmp:
        np.savez_compressed(tmp, **arrays)
    return out
