"""Radar frames on a recipe's grid: PV frames (readers.py) -> dBZ, NaN = no data (units.py).

Recipes (`prepare`): "blocks", the protocol's means over 4 km blocks (`block_average`);
"seed", the seed's square crop area-resized to 128 x 128 (`seed_resize`); "native", pixels.
`prepared_events` prepares a whole file once and keeps the result in the process and in the
cache folder (`util.cache_dir`); `read_radar_input` prepares one event for a forecast.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import NowcastError
from ...util import atomic_path, cache_dir
from .readers import RadarEvents, is_pattern, pattern_files, read_radar
from .units import PV_NO_DATA, TWICE_DBZ_OF_PV, pv_to_dbz

SEED_GAP_MIN = 10               # the seed's recipe: a new sequence where frames are > 10 min apart
SEED_SIZE = 128                 # the seed's recipe: frames resized to 128 x 128
CACHE_VERSION = 3               # bump when the preparation changes: old cache files are then ignored


# --- spatial recipes -----------------------------------------------------------------------

def pool_valid(dbz: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Mean of (..., H, W) over the valid (non-NaN) pixels of each output cell, as float32.

    Cells are torch's adaptive average pooling bins (exactly b x b blocks when H, W are
    multiples of the output size); a cell without a valid pixel is NaN (no data).
    """
    lead, (h, w) = dbz.shape[:-2], dbz.shape[-2:]
    x = torch.from_numpy(np.ascontiguousarray(dbz, dtype=np.float64).reshape(-1, 1, h, w))
    valid = torch.isfinite(x)
    # mean over valid pixels = pooled(sum of valid values) / pooled(count of valid pixels)
    total = F.adaptive_avg_pool2d(torch.where(valid, x, 0.0), out_hw)
    count = F.adaptive_avg_pool2d(valid.double(), out_hw)
    mean = torch.where(count > 0, total / count.clamp_min(1e-12), torch.nan)
    return mean.numpy().astype(np.float32).reshape(*lead, *out_hw)


def _tile_sums(values: np.ndarray, block: int, total_type: type) -> np.ndarray:
    """Sums of block x block tiles over the last two axes (which are multiples of block)."""
    # strided adds: several times faster than a reshape-and-sum over length-`block` axes
    cols = values[..., 0::block].astype(total_type)
    for j in range(1, block):
        cols += values[..., j::block]
    rows = cols[..., 0::block, :].copy()
    for i in range(1, block):
        rows += cols[..., i::block, :]
    return rows


def block_average(pv: np.ndarray, block: int = 4) -> np.ndarray:
    """The protocol's grid from PV frames (..., H, W): the mean dBZ of each block x block tile
    over its valid pixels (NaN where it has none), as float32.

    Trailing rows/columns that do not fill a block are dropped (765 x 700 -> 191 x 175 at 4).
    Sums are taken in integers (2 dBZ is an integer in PV), so the means are exact.
    """
    pv = np.asarray(pv)
    if pv.dtype != np.uint8:
        raise NowcastError(f"block_average needs PV frames (uint8), got {pv.dtype}")
    h, w = pv.shape[-2] // block, pv.shape[-1] // block
    if h == 0 or w == 0:
        raise NowcastError(f"frames of {pv.shape[-2]}x{pv.shape[-1]} pixels are smaller than one "
                           f"{block}x{block} block")
    pv = pv[..., :h * block, :w * block]
    total_type = np.uint16 if 140 * block * block < 2**16 else np.uint32
    twice_total = _tile_sums(TWICE_DBZ_OF_PV[pv], block, total_type)
    count = _tile_sums(pv != PV_NO_DATA, block, total_type)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, twice_total / (2.0 * count), np.nan).astype(np.float32)


def seed_resize(dbz: np.ndarray, size: int = SEED_SIZE) -> np.ndarray:
    """The seed's recipe: the central square crop, area-resized to size x size (valid pixels)."""
    h, w = dbz.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return pool_valid(dbz[..., top:top + side, left:left + side], (size, size))


def prepare(pv: np.ndarray, recipe: str = "blocks", block_size: int = 4) -> np.ndarray:
    """PV frames -> dBZ (NaN = no data) on the recipe's grid: "blocks" (the protocol's
    block means), "seed" (the seed's square crop resized to 128 x 128) or "native" (pixels)."""
    if recipe == "blocks":
        return block_average(pv, block_size)
    if recipe == "seed":
        return seed_resize(pv_to_dbz(pv))
    if recipe == "native":
        return pv_to_dbz(pv)
    raise NowcastError(f"unknown radar recipe {recipe!r}: expected 'blocks', 'seed' or 'native'")


# --- prepared events, cached ---------------------------------------------------------------

def content_stamp(path: Path) -> tuple:
    """What stands for a file's content in the caches: its size and modification time; for a
    folder (of native files or images), those of every file in it, by name; for a glob
    pattern, those of every file it matches."""
    if is_pattern(path):
        return tuple((str(p), s.st_size, s.st_mtime_ns) for p in pattern_files(path)
                     for s in [p.stat()])
    if path.is_dir():
        return tuple(sorted((p.name, s.st_size, s.st_mtime_ns) for p in path.iterdir()
                            if p.is_file() for s in [p.stat()]))
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns)


def _cache_file(path: Path, stamp: tuple, recipe: str, block_size) -> Path:
    key = repr((str(path.resolve()), stamp, recipe, block_size, CACHE_VERSION))
    stem = re.sub(r"[^\w.-]", "_", path.stem)  # a pattern's '*' in no file name
    return cache_dir() / f"radar-{stem}-{recipe}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _save_prepared(file: Path, events: RadarEvents) -> None:
    info = dict(dt_min=events.dt_min, source=events.source, stored_event=events.stored_event,
                pixel_km=events.pixel_km,
                lengths=[len(f) for f in events.frames], timed=[t is not None for t in events.times])
    times = [t if t is not None else np.full(len(f), np.datetime64("NaT"), "datetime64[m]")
             for f, t in zip(events.frames, events.times)]
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        # a file object: np.savez would append ".npz" to the temporary name
        with atomic_path(file) as tmp, open(tmp, "wb") as f:
            np.savez(f, dbz=np.concatenate(events.frames), times=np.concatenate(times),
                     info=json.dumps(info))
    except OSError:
        pass  # an unwritable cache only costs time


def _load_prepared(file: Path, path: Path) -> RadarEvents | None:
    try:
        with np.load(file) as f:
            info, dbz, times = json.loads(str(f["info"])), f["dbz"], f["times"]
    except Exception:
        return None  # absent or damaged: prepared again
    cuts = np.cumsum([0, *info["lengths"]])
    return RadarEvents(path, [dbz[a:b] for a, b in zip(cuts[:-1], cuts[1:])],
                       [times[a:b] if timed else None
                        for a, b, timed in zip(cuts[:-1], cuts[1:], info["timed"])],
                       info["dt_min"], info["source"], info["stored_event"], info["pixel_km"])


@functools.lru_cache(maxsize=4)
def _prepared(path: Path, stamp: tuple, recipe: str, block_size: int,
              wanted_km: float | None) -> RadarEvents:
    cache = _cache_file(path, stamp, recipe, (block_size, wanted_km) if wanted_km else block_size)
    events = _load_prepared(cache, path)
    if events is None:
        events = read_radar(path, max_gap_min=SEED_GAP_MIN if recipe == "seed" else None)
        if recipe == "blocks":
            block_size = block_for(events.pixel_km, wanted_km, block_size, path)
        events.frames = [prepare(pv, recipe, block_size) for pv in events.frames]
        _save_prepared(cache, events)
    return events


def prepared_events(path: Path, recipe: str = "blocks", block_size: int = 4,
                    wanted_km: float | None = None) -> RadarEvents:
    """A file's (or a folder's: native files, images; or a glob pattern's) events with
    `frames` as dBZ (T, h, w) on the recipe's grid (NaN = no data); with `wanted_km` (a
    model's pixel size) the blocks are as many native pixels as make it (block_for), from
    one read of the file.

    Cached in the process and on disk (`util.cache_dir()`), keyed by the path and its
    `content_stamp`: decoding the KNMI file takes seconds.
    """
    if not (path.is_file() or path.is_dir() or is_pattern(path)):
        raise NowcastError(f"{path}: no such radar file or folder")
    return _prepared(path, content_stamp(path), recipe, block_size, wanted_km)


def model_grid(dt_min: int | None, pixel_km: float | None, recipe: str, block_size: int) -> dict:
    """The grid a model reads, as model.pt records it and predict checks its input against:
    minutes between frames, and the pixel size after the recipe (blocks: block_size native
    pixels a side; the seed's resize: unknown). None where unknown."""
    scaled = pixel_km * block_size if pixel_km and recipe == "blocks" else None
    return {"dt_min": dt_min, "pixel_km": scaled}


class RadarInput(NamedTuple):
    """One event prepared for a forecast."""
    dbz: np.ndarray                 # float32 (T, H, W), NaN = no data
    valid: np.ndarray               # bool (T, H, W)
    times: np.ndarray | None        # datetime64[m] (T,), None if unknown
    source: str                     # the service that made it (meta.source): credited where shown
    grid: dict                      # model_grid of the input: its time step and pixel size


def block_for(native_km: float | None, wanted_km: float | None, block_size: int, where) -> int:
    """The block side that brings pixels of `native_km` to `wanted_km` (a model's grid): their
    ratio when it is a whole number (within 1 %), `block_size` where either is unknown; a
    ratio that is not whole (or below 1: finer blocks than the pixels) is refused."""
    if not native_km or not wanted_km:
        return block_size
    ratio = wanted_km / native_km
    block = round(ratio)
    if block < 1 or abs(ratio - block) > 0.01 * ratio:
        raise NowcastError(f"{where}: pixels of {native_km:g} km cannot make the model's "
                           f"{wanted_km:g} km grid by block means (a ratio of {ratio:.3g})")
    return block


def read_radar_input(path, recipe: str = "blocks", block_size: int = 4, event: int = -1,
                     pixel_km: float | None = None) -> RadarInput:
    """Radar input for a forecast: one event (by default the latest) of an .npz/.npy file, a
    native file, a folder or a list of native files, on the recipe's grid (`prepare`). With
    `pixel_km` (the model's pixel size) and the blocks recipe, the blocks are as many of the
    input's pixels as make that size (block_for): a 2 km input gets 2x2 blocks for 4 km."""
    events = read_radar(path)
    try:
        pv, times = events.frames[event], events.times[event]
    except IndexError:
        raise NowcastError(f"{events.path}: has {len(events)} events, no event {event}") from None
    if recipe == "blocks":
        block_size = block_for(events.pixel_km, pixel_km, block_size, events.path)
    dbz = prepare(pv, recipe, block_size)
    return RadarInput(dbz, np.isfinite(dbz), times, events.source,
                      model_grid(events.dt_min, events.pixel_km, recipe, block_size))
