"""Radar composites: the PV encoding, storm events, 4 km blocks, windows and `RadarData`.

Units, stated once (../shared/data/README.md, PROTOCOLS.md KNMI-30/60):

- **PV** (uint8, the shared encoding): dBZ = 0.5 PV - 32 for PV 1..254; PV 0 = no echo;
  PV 255 = no data.
- **dBZ** as nowcast uses it everywhere: float32 clipped to [0, 70]; no echo (and any echo
  below 0 dBZ) is 0 dBZ; no data is NaN.
- **Rain rate** R in mm/h by Marshall-Palmer, Z = 200 R^1.6 with dBZ = 10 log10 Z
  (1 mm/h = 23 dBZ); 0 dBZ (the floor: no echo) is 0 mm/h.
- **[0, 1]** (what models see): clip(dBZ, 0, 70) / 70, no data given as 0, with a boolean
  validity mask beside it; `unit_to_dbz` turns a forecast back into dBZ for scoring.

Readers: `.npz` files in the PV encoding (`frames` (events, time, H, W) uint8, optional
`times` datetime64[m] and `meta` JSON), any (N, T, H, W) or (T, H, W) uint8 array in `.npz` /
`.npy`, and native files read through `pysteps.io` (KNMI HDF5, FMI PGM, MeteoSwiss GIF), with
their times taken from the file names. Every reader returns frames oldest first, or refuses
the file (defect 1 of the seed: sequences that ran backwards in time).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..config import Config, data_dir
from ..errors import NowcastError
from . import Batch, load_npz

PV_NO_ECHO = 0
PV_NO_DATA = 255
DBZ_MAX = 70.0                  # the protocol's clipping range is [0, DBZ_MAX]
MP_A, MP_B = 200.0, 1.6         # Marshall-Palmer: Z = MP_A * R ** MP_B

KNMI_FILE = "knmi_2021_refl_5min.npz"
KNMI_SPLITS = {"train": range(0, 8), "val": range(8, 10), "test": range(10, 20)}
EVAL_STRIDE = 6                 # protocol: windows start every 6 frames
PROTOCOL_DT_MIN = 5
SEED_GAP_MIN = 10               # the seed's recipe: a new sequence where frames are > 10 min apart
SEED_SIZE = 128                 # the seed's recipe: frames resized to 128 x 128


# --- conversions ---------------------------------------------------------------------------

def _pv_lookup() -> np.ndarray:
    """dBZ of every PV value: clip(0.5 PV - 32, 0, 70); PV 0 (no echo) 0; PV 255 (no data) NaN."""
    dbz = np.clip(0.5 * np.arange(256, dtype=np.float32) - 32.0, 0.0, DBZ_MAX)
    dbz[PV_NO_ECHO], dbz[PV_NO_DATA] = 0.0, np.nan
    return dbz


DBZ_OF_PV = _pv_lookup()
TWICE_DBZ_OF_PV = np.nan_to_num(2 * DBZ_OF_PV, nan=0).astype(np.uint8)  # exact integers, 0..140


def pv_to_dbz(pv: np.ndarray) -> np.ndarray:
    """PV (uint8) -> dBZ in [0, 70] (float32): 0.5 PV - 32, no echo -> 0, no data -> NaN."""
    return DBZ_OF_PV[np.asarray(pv, np.uint8)]


def dbz_to_pv(dbz: np.ndarray) -> np.ndarray:
    """dBZ -> PV (uint8), the inverse of `pv_to_dbz` on its 0.5 dBZ grid.

    NaN -> 255 (no data); dBZ <= 0 (the clipped floor, where no echo lands) -> 0 (no echo);
    otherwise round(2 dBZ + 64), at most 204 (70 dBZ).
    """
    dbz = np.asarray(dbz, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        pv = np.rint(2.0 * np.clip(dbz, 0.0, DBZ_MAX) + 64.0)
        pv[~(dbz > 0.0)] = PV_NO_ECHO
    pv[np.isnan(dbz)] = PV_NO_DATA
    return pv.astype(np.uint8)


def dbz_to_rainrate(dbz: np.ndarray) -> np.ndarray:
    """dBZ -> R (mm/h) by Marshall-Palmer, R = (10^(dBZ/10) / 200)^(1/1.6); 0 dBZ -> 0 (dry)."""
    dbz = np.asarray(dbz, dtype=np.float64)
    rate = (10.0 ** (dbz / 10.0) / MP_A) ** (1.0 / MP_B)
    with np.errstate(invalid="ignore"):
        return np.where(dbz > 0.0, rate, np.where(np.isnan(dbz), np.nan, 0.0))


def rainrate_to_dbz(rate: np.ndarray) -> np.ndarray:
    """R (mm/h) -> dBZ = 10 log10(200 R^1.6), clipped to [0, 70] (dry -> 0); NaN stays NaN."""
    rate = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dbz = 10.0 * np.log10(MP_A * np.maximum(rate, 0.0) ** MP_B)
    return np.clip(dbz, 0.0, DBZ_MAX).astype(np.float32)


def dbz_to_unit(dbz: np.ndarray) -> np.ndarray:
    """dBZ -> what models see: clip(dBZ, 0, 70) / 70 as float32, no data (NaN) -> 0."""
    return np.nan_to_num(np.clip(np.asarray(dbz, np.float32), 0.0, DBZ_MAX) / DBZ_MAX, nan=0.0)


def unit_to_dbz(x: np.ndarray) -> np.ndarray:
    """A [0, 1] forecast -> dBZ for scoring: clip(x, 0, 1) * 70, rounded to 1e-4 dBZ so that
    float32 rounding of the scaling cannot move a value across a threshold (NaN stays NaN)."""
    return np.round(np.clip(np.asarray(x, np.float64), 0.0, 1.0) * DBZ_MAX, 4).astype(np.float32)


# --- spatial recipes -----------------------------------------------------------------------

def pool_valid(dbz: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Mean of (..., H, W) over the valid (non-NaN) pixels of each output cell, as float32.

    Cells are torch's adaptive average pooling bins (exactly b x b blocks when H, W are
    multiples of the output size); a cell without a valid pixel is NaN (no data).
    """
    import torch
    import torch.nn.functional as F

    lead, (h, w) = dbz.shape[:-2], dbz.shape[-2:]
    x = torch.from_numpy(np.ascontiguousarray(dbz, dtype=np.float64).reshape(-1, 1, h, w))
    valid = torch.isfinite(x)
    # mean over valid pixels = pooled(sum of valid values) / pooled(count of valid pixels)
    total = F.adaptive_avg_pool2d(torch.where(valid, x, 0.0), out_hw)
    count = F.adaptive_avg_pool2d(valid.double(), out_hw)
    mean = torch.where(count > 0, total / count.clamp_min(1e-12), torch.nan)
    return mean.numpy().astype(np.float32).reshape(*lead, *out_hw)


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

    def tile_sums(values: np.ndarray) -> np.ndarray:
        # strided adds: several times faster than a reshape-and-sum over length-`block` axes
        cols = values[..., 0::block].astype(total_type)
        for j in range(1, block):
            cols += values[..., j::block]
        rows = cols[..., 0::block, :].copy()
        for i in range(1, block):
            rows += cols[..., i::block, :]
        return rows

    twice_total, count = tile_sums(TWICE_DBZ_OF_PV[pv]), tile_sums(pv != PV_NO_DATA)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, twice_total / (2.0 * count), np.nan).astype(np.float32)


def seed_resize(dbz: np.ndarray, size: int = SEED_SIZE) -> np.ndarray:
    """The seed's recipe: the central square crop, area-resized to size x size (valid pixels)."""
    h, w = dbz.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return pool_valid(dbz[..., top:top + side, left:left + side], (size, size))


# --- reading files ---------------------------------------------------------------------------

@dataclass
class RadarEvents:
    """Frames of one file cut into events, oldest first: PV uint8 (T, H, W) as read, dBZ
    float32 (T, h, w) on a recipe's grid once prepared (`prepared_events`)."""
    path: Path
    frames: list[np.ndarray]
    times: list[np.ndarray | None]            # datetime64[m] (T,) per event, None if unknown
    dt_min: int | None                        # minutes between frames (None if unknown)
    source: str
    stored_event: list[int] = field(default_factory=list)  # the file's event each came from

    def __len__(self) -> int:
        return len(self.frames)


def split_events(times: np.ndarray, max_gap_min: float, path: Path | str) -> list[slice]:
    """Cut one time-ordered run of frames into events wherever consecutive frames are more
    than `max_gap_min` minutes apart; a time that is not later than its predecessor is refused."""
    steps = np.diff(np.asarray(times, "datetime64[m]")).astype(np.int64)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        raise NowcastError(f"{path}: frames out of time order ({times[i]} is followed by "
                           f"{times[i + 1]}); frames must be oldest first")
    cuts = [0, *(np.flatnonzero(steps > max_gap_min) + 1).tolist(), len(times)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _check_frames(frames: np.ndarray, path: Path) -> np.ndarray:
    if frames.dtype != np.uint8:
        raise NowcastError(f"{path}: expected uint8 frames in the PV encoding, got {frames.dtype}")
    if frames.ndim == 3:  # one sequence (T, H, W)
        frames = frames[None]
    if frames.ndim != 4 or min(frames.shape) == 0:
        raise NowcastError(f"{path}: expected frames of shape (N, T, H, W), got {frames.shape}")
    if np.all(frames == PV_NO_DATA):
        raise NowcastError(f"{path}: every pixel is no data (PV 255)")
    return frames


def _median_step(times: np.ndarray) -> int | None:
    steps = np.diff(times, axis=-1).astype(np.int64).ravel()
    return int(np.median(steps)) if steps.size else None


def read_array_file(path: Path, max_gap_min: float | None = None) -> RadarEvents:
    """A `.npz` (key `frames`, or its only array; optional `times`, `meta`) or `.npy` file."""
    if path.suffix == ".npy":
        try:
            frames, times, meta = np.load(path, allow_pickle=False), None, {}
        except FileNotFoundError:
            raise NowcastError(f"{path}: no such radar file") from None
        except Exception as e:
            raise NowcastError(f"{path}: not a readable radar file ({_first_line(e)})") from None
    else:
        arrays = load_npz(path, "radar")
        frames, times = arrays["frames"], arrays.get("times")
        try:
            meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
        except ValueError:
            raise NowcastError(f"{path}: 'meta' is not a JSON string") from None
    frames = _check_frames(frames, path)
    source = meta.get("source", path.name)
    if times is None:  # no clock: each sequence is an event, in the order stored
        return RadarEvents(path, list(frames), [None] * len(frames), meta.get("dt_min"), source,
                           list(range(len(frames))))
    times = np.asarray(times).astype("datetime64[m]")
    if times.shape != frames.shape[:2] and times.shape != frames.shape[1:2]:
        raise NowcastError(f"{path}: 'times' has shape {times.shape}, frames {frames.shape}")
    times = times.reshape(frames.shape[:2])
    dt_min = int(meta.get("dt_min") or _median_step(times) or 0) or None
    gap = max_gap_min if max_gap_min is not None else (dt_min or np.inf)
    events = RadarEvents(path, [], [], dt_min, source)
    for index, (seq, stamps) in enumerate(zip(frames, times)):
        for part in split_events(stamps, gap, path):
            events.frames.append(seq[part])
            events.times.append(stamps[part])
            events.stored_event.append(index)
    return events


# Native readers: one file -> one PV frame (pysteps.io does the decoding).
def _knmi_pv(path: Path) -> np.ndarray:
    dbz, _, _ = pysteps_module("pysteps.io").import_knmi_hdf5(str(path), qty="DBZH")
    return dbz_to_pv(dbz)


def _fmi_pv(path: Path) -> np.ndarray:
    dbz, _, _ = pysteps_module("pysteps.io").import_fmi_pgm(str(path), gzipped=path.suffix == ".gz")
    return dbz_to_pv(dbz)


def _mch_pv(path: Path) -> np.ndarray:
    product = path.name[:3]  # AQC, CPC, RZC, AZC: the product is the file name's prefix
    depth, _, meta = pysteps_module("pysteps.io").import_mch_gif(str(path), product, "mm", 5.0)
    return dbz_to_pv(rainrate_to_dbz(depth * 60.0 / meta["accutime"]))  # mm per accutime -> mm/h


NATIVE_FORMATS = [
    # (suffixes, regex for the time stamp in the file name, strptime format, reader)
    ((".hf5", ".h5", ".hdf5"), r"(\d{12})", "%Y%m%d%H%M", _knmi_pv),
    ((".pgm", ".pgm.gz"), r"(\d{12})", "%Y%m%d%H%M", _fmi_pv),
    ((".gif",), r"^[A-Z]{3}(\d{9})", "%y%j%H%M", _mch_pv),   # MeteoSwiss: YYDOYHHMM
]


def _native_format(path: Path):
    name = path.name.lower()
    for suffixes, pattern, fmt, reader in NATIVE_FORMATS:
        if name.endswith(suffixes):
            return pattern, fmt, reader
    return None


def native_time(path: Path) -> np.datetime64:
    """The time stamp in a native file's name (KNMI/FMI YYYYmmddHHMM, MeteoSwiss YYDOYHHMM)."""
    fmt = _native_format(path)
    match = re.search(fmt[0], path.name) if fmt else None
    if match is None:
        raise NowcastError(f"{path}: no time stamp in the file name")
    try:
        return np.datetime64(datetime.strptime(match.group(1), fmt[1]), "m")
    except ValueError:
        raise NowcastError(f"{path}: bad time stamp {match.group(1)!r} in the file name") from None


def read_native_files(paths: Sequence[Path], max_gap_min: float | None = None) -> RadarEvents:
    """Native radar files (one frame each) through pysteps.io, put in time order by the time
    stamps in their names and cut into events at gaps larger than `max_gap_min` (default:
    the files' usual step)."""
    if not paths:
        raise NowcastError("no radar files given")
    stamped = sorted((native_time(p), p) for p in paths)
    times = np.array([t for t, _ in stamped], "datetime64[m]")
    frames = []
    for _, p in stamped:
        try:
            frames.append(_native_format(p)[2](p))
        except NowcastError:
            raise
        except Exception as e:
            raise NowcastError(f"{p}: cannot read ({_first_line(e)})") from None
    if len({f.shape for f in frames}) > 1:
        raise NowcastError(f"{paths[0].parent}: the files have different frame sizes")
    stack = _check_frames(np.stack(frames), paths[0].parent)[0]
    dt_min = _median_step(times)
    events = RadarEvents(paths[0].parent, [], [], dt_min, f"native files in {paths[0].parent}")
    gap = max_gap_min if max_gap_min is not None else (dt_min or np.inf)
    for part in split_events(times, gap, paths[0].parent):
        events.frames.append(stack[part])
        events.times.append(times[part])
        events.stored_event.append(0)
    return events


def read_radar(path: str | Path | Iterable[str | Path], max_gap_min: float | None = None) -> RadarEvents:
    """Any radar input nowcast reads: an .npz/.npy file, a native file, a folder of native
    files, or a list of native files. Frames come back oldest first, cut into events."""
    if not isinstance(path, (str, Path)):
        return read_native_files([Path(p) for p in path], max_gap_min)
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _native_format(p))
        if not files:
            raise NowcastError(f"{path}: no radar files of a known format (.hf5, .pgm[.gz], .gif)")
        return read_native_files(files, max_gap_min)
    if path.suffix in (".npz", ".npy"):
        return read_array_file(path, max_gap_min)
    if not path.exists():
        raise NowcastError(f"{path}: no such radar file")
    if _native_format(path):
        return read_native_files([path], max_gap_min)
    raise NowcastError(f"{path}: unknown radar format (expected .npz, .npy, .hf5, .pgm[.gz] or .gif)")


def pysteps_module(name: str):
    """Import a pysteps module lazily and quietly (pysteps prints a banner on import)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(name)
    except ImportError as e:
        raise NowcastError(f"{name} is needed here but cannot be imported ({_first_line(e)}); "
                           "install nowcast[radar]") from None


# --- the user-facing helpers for `nowcast predict` -----------------------------------------

def read_radar_input(path, recipe: str = "blocks", block_size: int = 4, event: int = -1
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Radar input for a forecast: one event (by default the latest) of an .npz/.npy file, a
    native file, a folder or a list of native files, on the recipe's grid (`prepare`).
    Returns (dBZ float32 (T, H, W) with NaN = no data, valid mask, times (T,) or None)."""
    events = read_radar(path)
    try:
        pv, times = events.frames[event], events.times[event]
    except IndexError:
        raise NowcastError(f"{events.path}: has {len(events)} events, no event {event}") from None
    dbz = prepare(pv, recipe, block_size)
    return dbz, np.isfinite(dbz), times


def forecast_times(times: np.ndarray | None, steps: int, dt_min: int = PROTOCOL_DT_MIN
                   ) -> np.ndarray | None:
    """Valid times of `steps` forecast frames after input frames at `times` (None: unknown)."""
    if times is None or len(times) == 0:
        return None
    return times[-1] + np.arange(1, steps + 1) * np.timedelta64(dt_min, "m")


def write_radar_forecast(path: str | Path, dbz: np.ndarray, times: np.ndarray | None = None,
                         dt_min: int = PROTOCOL_DT_MIN, source: str = "nowcast forecast",
                         pixel_km: float | None = 4.0) -> Path:
    """Write forecast frames dBZ (T, H, W) as an .npz in the shared PV encoding
    (`frames` (1, T, H, W) uint8, `times` (1, T) datetime64[m] when given, `meta` JSON)."""
    path = Path(path)
    dbz = np.asarray(dbz)
    if dbz.ndim != 3:
        raise NowcastError(f"{path}: forecast must be (T, H, W) dBZ, got shape {dbz.shape}")
    arrays = {"frames": dbz_to_pv(dbz)[None],
              "meta": json.dumps({"source": source, "dt_min": dt_min, "pixel_km": pixel_km,
                                  "encoding": "dBZ = 0.5 PV - 32; PV 0 no echo; PV 255 no data"})}
    if times is not None:
        arrays["times"] = np.asarray(times, "datetime64[m]").reshape(1, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


# --- prepared events and windows -------------------------------------------------------------

CACHE_VERSION = 2  # bump when the preparation changes: old cache files are then ignored


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


def _cache_file(path: Path, recipe: str, block_size: int) -> Path:
    stat = path.stat()
    key = repr((str(path.resolve()), stat.st_size, stat.st_mtime_ns, recipe, block_size, CACHE_VERSION))
    cache = Path(os.environ.get("NOWCAST_CACHE", Path.home() / ".cache" / "nowcast"))
    return cache / f"radar-{path.stem}-{recipe}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _save_prepared(file: Path, events: RadarEvents) -> None:
    info = dict(dt_min=events.dt_min, source=events.source, stored_event=events.stored_event,
                lengths=[len(f) for f in events.frames], timed=[t is not None for t in events.times])
    times = [t if t is not None else np.full(len(f), np.datetime64("NaT"), "datetime64[m]")
             for f, t in zip(events.frames, events.times)]
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, dbz=np.concatenate(events.frames), times=np.concatenate(times), info=json.dumps(info))
        os.replace(tmp, file)
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
                       info["dt_min"], info["source"], info["stored_event"])


@functools.lru_cache(maxsize=4)
def _prepared(path: Path, mtime_ns: int, recipe: str, block_size: int) -> RadarEvents:
    cache = _cache_file(path, recipe, block_size)
    events = _load_prepared(cache, path)
    if events is None:
        events = read_radar(path, max_gap_min=SEED_GAP_MIN if recipe == "seed" else None)
        events.frames = [prepare(pv, recipe, block_size) for pv in events.frames]
        _save_prepared(cache, events)
    return events


def prepared_events(path: Path, recipe: str = "blocks", block_size: int = 4) -> RadarEvents:
    """A file's events with `frames` as dBZ (T, h, w) on the recipe's grid (NaN = no data).

    Cached in the process and on disk ($NOWCAST_CACHE, default ~/.cache/nowcast), keyed by the
    file's path, size and modification time: decoding the KNMI file takes seconds.
    """
    if not path.is_file():
        raise NowcastError(f"{path}: no such radar file")
    return _prepared(path, path.stat().st_mtime_ns, recipe, block_size)


def window_starts(length: int, window: int, stride: int) -> range:
    """Starts of the windows of `window` frames every `stride` frames inside `length` frames."""
    return range(0, length - window + 1, stride)


@dataclass
class RadarWindows:
    """Evaluation windows in dBZ: (N, k_in + k_out, H, W), NaN = no data, with their origin."""
    dbz: np.ndarray
    event: np.ndarray          # index into the file's events
    start: np.ndarray          # first frame of the window in its event
    times: np.ndarray | None   # datetime64[m] (N, T), when the file has times
    path: Path


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
                        times, events.path)


# --- the SequenceData implementation ---------------------------------------------------------

def resolve_data_file(cfg: Config, name: str) -> Path:
    """A data file as given, else under the data folder (or its radar/ subfolder)."""
    given = Path(name)
    candidates = [given]
    base = data_dir(cfg)
    if base is not None and not given.is_absolute():
        candidates += [base / given, base / "radar" / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise NowcastError(f"{name}: no such radar data file (looked in {', '.join(map(str, candidates))})")


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


class RadarData:
    """Radar windows behind the SequenceData interface (docs/architecture.md).

    protocol knmi-30-60: train events 0-7, validation 8-9 (January 2021), test events 10-19
    (February 2021) of knmi_2021_refl_5min.npz, 4 km blocks (191 x 175), windows of 6 + 12
    frames starting every 6 frames (40 test windows). With `data_file` set as well, the test
    windows come from every event of that file instead (the protocol's "another radar file").
    Otherwise `data_file` is split by event in time order (`chronological_split`).
    Frames are [0, 1] = clip(dBZ, 0, 70) / 70 with no data as 0; `mask` is True where there is
    data. `split_windows` gives the same windows in dBZ for scoring.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.k_in, self.k_out = cfg.k_in, cfg.k_out
        self.window = cfg.k_in + cfg.k_out
        self.protocol = cfg.protocol if cfg.protocol == "knmi-30-60" else "none"
        self.sources: dict[str, tuple[RadarEvents, list[int]]] = {}
        self._baseline_scores: dict[str, dict] = {}
        if self.protocol == "knmi-30-60":
            self._protocol_sources(cfg)
        else:
            self._file_sources(cfg)
        self._check_disjoint()

    def _load(self, path: Path) -> RadarEvents:
        return prepared_events(path, self.cfg.radar_recipe, self.cfg.block_size)

    def _protocol_sources(self, cfg: Config) -> None:
        knmi_path = resolve_data_file(cfg, KNMI_FILE)
        knmi = self._load(knmi_path)
        if len(knmi) != 20:
            raise NowcastError(f"{knmi_path}: expected the protocol's 20 events, found {len(knmi)}")
        test_path = resolve_data_file(cfg, cfg.data_file) if cfg.data_file else knmi_path
        self.follows_protocol = test_path.resolve() == knmi_path.resolve()
        test = knmi if self.follows_protocol else self._load(test_path)
        self.sources = {"train": (knmi, list(KNMI_SPLITS["train"])),
                        "val": (knmi, list(KNMI_SPLITS["val"])),
                        "test": (test, list(KNMI_SPLITS["test"]) if self.follows_protocol
                                 else list(range(len(test))))}
        for events, _ in self.sources.values():
            if events.dt_min != PROTOCOL_DT_MIN:
                raise NowcastError(f"{events.path}: frames are {events.dt_min} min apart; protocol "
                                   f"knmi-30-60 needs {PROTOCOL_DT_MIN} min")
        where = ("events 10-19 (Feb 2021)" if self.follows_protocol else "every event")
        self.description = (
            f"KNMI-30/60: {self.n_windows('test')} test windows ({cfg.k_in} in, {cfg.k_out} out) "
            f"from {where} of {test.path.name} ({test.source}), 4 km blocks "
            f"{self.frame_shape[0]}x{self.frame_shape[1]}; trained on events 0-7, validated on "
            "8-9 (Jan 2021) of knmi_2021_refl_5min.npz")

    def _file_sources(self, cfg: Config) -> None:
        path = resolve_data_file(cfg, cfg.data_file)
        events = self._load(path)
        splits = chronological_split(len(events), path)
        self.sources = {split: (events, rows) for split, rows in splits.items()}
        self.follows_protocol = False
        recipe = (f"{cfg.block_size}x{cfg.block_size} dBZ blocks" if cfg.radar_recipe == "blocks"
                  else f"the seed's recipe (square crop, {SEED_SIZE}x{SEED_SIZE}, events at gaps "
                       f"> {SEED_GAP_MIN} min)")
        self.description = (f"radar file {path.name} ({events.source}): {len(events)} events split "
                            f"in time order {len(splits['train'])}/{len(splits['val'])}/"
                            f"{len(splits['test'])}, {recipe}, {self.frame_shape[0]}x"
                            f"{self.frame_shape[1]}, {cfg.k_in}+{cfg.k_out} frames")

    @property
    def frame_shape(self) -> tuple[int, int]:
        events, rows = self.sources["train"]
        return tuple(events.frames[rows[0]].shape[-2:])

    def _check_disjoint(self) -> None:
        """No frame time (or, without times, no event) in two splits: defect 2 of the seed."""
        seen: dict[tuple, str] = {}
        for split, (events, rows) in self.sources.items():
            for e in rows:
                keys = ([("event", str(events.path), e)] if events.times[e] is None
                        else [("time", t) for t in events.times[e].tolist()])
                for key in keys:
                    if seen.setdefault(key, split) != split:
                        raise NowcastError(f"{events.path}: the {split} and {seen[key]} splits "
                                           f"share data ({key[-1]})")

    # --- SequenceData -------------------------------------------------------------------
    def train_batch(self, step: int, batch_size: int, length: int) -> Batch:
        """Random windows of `length` frames from the training events, deterministic in
        (seed, step); random crops (crop_size) and flips / 90-degree rotations (augment)."""
        events, rows = self.sources["train"]
        starts = np.array([max(len(events.frames[e]) - length + 1, 0) for e in rows])
        if starts.sum() == 0:
            raise NowcastError(f"{events.path}: no training event has {length} frames")
        rng = np.random.default_rng([self.cfg.seed, step])
        # events weighted by their number of windows: every training window equally likely
        chosen = rng.choice(len(rows), size=batch_size, p=starts / starts.sum())
        clips = []
        for i in chosen:
            start = int(rng.integers(0, starts[i]))
            clips.append(self._augment(events.frames[rows[i]][start:start + length], rng))
        clips = np.stack(clips)
        return Batch(dbz_to_unit(clips), np.isfinite(clips))

    def _augment(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg.crop_size
        h, w = clip.shape[-2:]
        if c:
            if c > min(h, w):
                raise NowcastError(f"crop_size {c} is larger than the {h}x{w} frames")
            top, left = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
            clip = clip[:, top:top + c, left:left + c]
        if self.cfg.augment:
            square = clip.shape[-1] == clip.shape[-2]
            # quarter turns keep the shape of square frames only; others get 0 or 180 degrees
            turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            clip = np.rot90(clip, k=turns, axes=(-2, -1))
            if rng.integers(2):
                clip = clip[..., ::-1]
        return np.ascontiguousarray(clip)

    def split_windows(self, which: str) -> RadarWindows:
        """The fixed validation or test windows in dBZ (every 6 frames, whole frames)."""
        if which not in ("val", "test"):
            raise NowcastError(f"unknown split {which!r}: expected 'val' or 'test'")
        events, rows = self.sources[which]
        return cut_windows(events, rows, self.window, EVAL_STRIDE)

    def n_windows(self, which: str) -> int:
        events, rows = self.sources[which]
        return sum(len(window_starts(len(events.frames[e]), self.window, EVAL_STRIDE)) for e in rows)

    def split(self, which: str) -> Batch:
        windows = self.split_windows(which)
        return Batch(dbz_to_unit(windows.dbz), np.isfinite(windows.dbz))

    def score(self, predict, baselines: Sequence[str] = ("persistence", "extrapolation")) -> dict:
        """Verification scores of `predict` on the test windows, with the baselines' beside
        them (metrics.json's "baselines")."""
        from ..baselines import baseline_scores
        from ..verification import evaluate_radar
        metrics = evaluate_radar(predict, self)
        missing = [name for name in baselines if name not in self._baseline_scores]
        self._baseline_scores.update(baseline_scores(self, missing))  # once per data object
        metrics["baselines"] = {name: self._baseline_scores[name] for name in baselines}
        return metrics
