"""Reading and writing radar files; every reader returns frames in the PV encoding (units.py).

Inputs: `.npz` files in the PV encoding (`frames` (events, time, H, W) uint8, optional `times`
datetime64[m] and `meta` JSON), any (N, T, H, W) or (T, H, W) uint8 array in `.npz` / `.npy`,
and native files read through pysteps' importers (importers.py: ODIM HDF5 such as OPERA's,
KNMI HDF5, FMI PGM, MeteoSwiss GIF, BOM, NWC SAF, MRMS, FMI GeoTIFF), with their times
taken from the file names and their pixel size from their metadata. Every reader returns frames oldest first,
or refuses the file (defect 1 of the seed: sequences that ran backwards in time).

Output: `write_radar_forecast`, a forecast as an `.npz` in the same PV encoding.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ...errors import NowcastError, described
from ...protocols import KNMI_DT_MIN
from ..base import load_npz
from .images import has_spec, image_files, read_image, read_spec
from .importers import FORMATS, candidates, frame_time, get_format, known_formats, read_frame
from .units import PV_NO_DATA, dbz_to_pv, dbz_to_rainrate, pv_to_dbz


@dataclass
class RadarEvents:
    """Frames of one file cut into events, oldest first: PV uint8 (T, H, W) as read, dBZ
    float32 (T, h, w) on a recipe's grid once prepared (`grid.prepared_events`)."""
    path: Path
    frames: list[np.ndarray]
    times: list[np.ndarray | None]            # datetime64[m] (T,) per event, None if unknown
    dt_min: int | None                        # minutes between frames (None if unknown)
    source: str
    stored_event: list[int] = field(default_factory=list)  # the file's event each came from
    pixel_km: float | None = None             # the stored grid's pixel size (meta), None if unknown

    def __len__(self) -> int:
        return len(self.frames)

    def append_cut(self, frames: np.ndarray, times: np.ndarray, gap_min: float, stored: int) -> None:
        """Append one time-ordered run of frames, cut into events at gaps (`split_events`)."""
        for part in split_events(times, gap_min, self.path):
            self.frames.append(frames[part])
            self.times.append(times[part])
            self.stored_event.append(stored)


GAP_STEPS = 1.5  # consecutive frames further apart than this many time steps: two events


def event_gap(dt_min: int | None, given: float | None = None) -> float:
    """The gap (minutes) that cuts events: `given`, else GAP_STEPS time steps (a missing frame
    cuts; a late one does not); none without a time step."""
    if given is not None:
        return given
    return GAP_STEPS * dt_min if dt_min else np.inf


def checked_gap(value, where: str) -> float | None:
    """A user's event gap (minutes; `nowcast data --gap`, an imported file's meta `gap_min`):
    a positive number, or one line naming `where`. None stays None (the default gap)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
        raise NowcastError(f"{where}: the event gap must be a positive number of minutes, got "
                           f"{json.dumps(value)[:40]}")
    return float(value)


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


# --- array files ---------------------------------------------------------------------------

def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(frames, times or None, meta) of an .npy or .npz file, as stored."""
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None, {}
        except FileNotFoundError:
            raise NowcastError(f"{path}: no such radar file") from None
        except Exception as e:
            raise NowcastError(f"{path}: not a readable radar file ({described(e)})") from None
    arrays = load_npz(path, "radar")
    return arrays["frames"], arrays.get("times"), _parse_meta(arrays.get("meta"), path)


def _parse_meta(raw: np.ndarray | None, path: Path) -> dict:
    """A file's `meta` (a JSON object in a string array) checked: {} when absent; `dt_min`,
    when given, a positive whole number of minutes."""
    try:
        meta = json.loads(str(raw)) if raw is not None else {}
    except ValueError:
        raise NowcastError(f"{path}: 'meta' is not a JSON string") from None
    if not isinstance(meta, dict):
        raise NowcastError(f"{path}: 'meta' must be a JSON object (source, dt_min, ...), "
                           f"got {type(meta).__name__}")
    dt = meta.get("dt_min")
    if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float))
                           or not (dt > 0 and float(dt).is_integer())):
        raise NowcastError(f"{path}: meta 'dt_min' must be a positive whole number of minutes, "
                           f"got {json.dumps(dt)[:40]}")
    checked_gap(meta.get("gap_min"), f"{path}: meta 'gap_min'")
    return meta


def meta_pixel_km(meta: dict) -> float | None:
    """The pixel size a file's meta states in km (`pixel_km`, a positive number); None when it
    states none or another unit (MRMS: `pixel_deg`)."""
    km = meta.get("pixel_km")
    if isinstance(km, bool) or not isinstance(km, (int, float)) or not km > 0:
        return None
    return float(km)


def check_meta(path: Path) -> None:
    """_parse_meta of an .npz's `meta` alone (read without the frames), for the checks made
    before a run starts (data.check); an unreadable file is left to its reader."""
    if path.suffix != ".npz":
        return
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = z["meta"] if "meta" in z.files else None
    except Exception:  # noqa: BLE001 - unreadable: read_radar names it at run time
        return
    _parse_meta(raw, path)


def read_array_file(path: Path, max_gap_min: float | None = None) -> RadarEvents:
    """A `.npz` (key `frames`, or its only array; optional `times`, `meta`) or `.npy` file."""
    frames, times, meta = _read_arrays(path)
    frames = _check_frames(frames, path)
    source = meta.get("source", path.name)
    if times is None:  # no clock: each sequence is an event, in the order stored
        dt_min = int(meta["dt_min"]) if meta.get("dt_min") is not None else None
        return RadarEvents(path, list(frames), [None] * len(frames), dt_min, source,
                           list(range(len(frames))), meta_pixel_km(meta))
    times = np.asarray(times).astype("datetime64[m]")
    if times.shape != frames.shape[:2] and times.shape != frames.shape[1:2]:
        raise NowcastError(f"{path}: 'times' has shape {times.shape}, frames {frames.shape}")
    times = times.reshape(frames.shape[:2])
    dt_min = int(meta.get("dt_min") or _median_step(times) or 0) or None
    gap = event_gap(dt_min, meta.get("gap_min") if max_gap_min is None else max_gap_min)
    events = RadarEvents(path, [], [], dt_min, source, pixel_km=meta_pixel_km(meta))
    for index, (seq, stamps) in enumerate(zip(frames, times)):
        events.append_cut(seq, stamps, gap, index)
    return events


# --- native files (one file -> one PV frame; importers.py: pysteps' importers) ---------------------

ARRAY_SUFFIXES = (".npz", ".npy")
GLOB_CHARS = re.compile(r"[*?\[]")
PROGRESS_FILES = 50  # from this many files a reader shows a progress bar on a terminal

READ_PROCESSES = 4  # at most this many files read at once: a 1 km OPERA frame holds ~0.6 GB in
                    # pysteps' hands while it is converted

def files_bar(items: Iterable, folder: Path, total: int) -> Iterable:
    """`items` with a progress bar on a terminal (stderr) when there are many (a large
    archive takes minutes); as they are elsewhere."""
    return tqdm(items, desc=f"reading {folder.name}", unit="file", leave=False, total=total,
                disable=None if total >= PROGRESS_FILES else True)


def read_processes(files: int) -> int:
    """How many processes read native files: one a CPU this process may use, at most
    READ_PROCESSES and one a file; 1 (this process) where fork is not the way to start them
    (macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(READ_PROCESSES, files, len(os.sched_getaffinity(0))))


def read_frames(paths: list[Path], formats: dict, folder: Path) -> list:
    """importers.read_frame of each file, in order, in forked processes (read_processes):
    decoding and converting a file is CPU work of seconds for a large grid. Processes, never
    threads: pysteps' importers and h5py are not safe in threads (two at a time ended the
    process silently, exit status 0, on OPERA's files). A worker's NowcastError comes back
    as raised."""
    workers = read_processes(len(paths))
    names = [formats[p][0] for p in paths]  # a name crosses to a worker (a format holds lambdas)
    if workers == 1:
        return [_read_named(p, n) for p, n in files_bar(list(zip(paths, names)), folder, len(paths))]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(files_bar(pool.map(_read_named, paths, names), folder, len(paths)))


def _read_named(path: Path, name: str):
    """read_frame of a file whose format get_format named."""
    return read_frame(path, (name, FORMATS[name]))


def read_native_files(paths: Sequence[Path], max_gap_min: float | None = None) -> RadarEvents:
    """Native radar files (one frame each, importers.read_frame), put in time order by the time
    stamps in their names and cut into events at gaps larger than `max_gap_min` (default:
    `event_gap` of the files' usual step). The pixel size and the source are the files' metadata's."""
    if not paths:
        raise NowcastError("no radar files given")
    folder = paths[0].parent
    formats = {p: get_format(p) for p in paths}  # once a file: HDF5 ones are opened to tell
    stamped = sorted((frame_time(p, formats[p]), p) for p in paths)
    times = np.array([t for t, _ in stamped], "datetime64[m]")
    if len(set(times.tolist())) < len(times):
        raise NowcastError(f"{folder}: two files have the same time stamp")
    read = read_frames([p for _, p in stamped], formats, folder)
    if len({f.pixel_km for f in read}) > 1:
        raise NowcastError(f"{folder}: the files state different pixel sizes")
    return _one_run(folder, [f.pv for f in read], times, _median_step(times), read[0].source,
                    read[0].pixel_km, max_gap_min)


def read_images(folder: Path, max_gap_min: float | None = None) -> RadarEvents:
    """A folder of radar images with its radar-images.yaml (images.py), cut into events at
    gaps larger than `max_gap_min` (default: `event_gap`)."""
    spec = read_spec(folder)
    stamped = image_files(folder, spec)
    frames = [read_image(path, spec) for _, path in files_bar(stamped, folder, len(stamped))]
    times = np.array([t for t, _ in stamped], "datetime64[m]")
    return _one_run(folder, frames, times, spec.dt_min or _median_step(times),
                    f"images ({folder.name})", spec.pixel_km, max_gap_min)


def _one_run(folder: Path, frames: list[np.ndarray], times: np.ndarray, dt_min: int | None,
             source: str, pixel_km: float | None, max_gap_min: float | None) -> RadarEvents:
    """Frames of one file each, in time order, as events (cut at `event_gap`)."""
    if len({f.shape for f in frames}) > 1:
        raise NowcastError(f"{folder}: the files differ in size ({frames[0].shape[1]}x"
                           f"{frames[0].shape[0]} and others)")
    stack = _check_frames(np.stack(frames), folder)[0]
    events = RadarEvents(folder, [], [], dt_min, source, pixel_km=pixel_km)
    events.append_cut(stack, times, event_gap(dt_min, max_gap_min), 0)
    return events


def is_pattern(path: str | Path) -> bool:
    """A glob pattern of files ("opera/*.hdf"), not a file or folder of that name."""
    return bool(GLOB_CHARS.search(str(path))) and not Path(path).exists()


def pattern_files(pattern: str | Path) -> list[Path]:
    """The files of a known format that a glob pattern matches, sorted."""
    return sorted(Path(p) for p in glob.glob(str(pattern)) if Path(p).is_file() and candidates(Path(p)))


def read_radar(path: str | Path | Iterable[str | Path], max_gap_min: float | None = None) -> RadarEvents:
    """Any radar input nowcast reads: an .npz/.npy file, a native file, a folder of native
    files (or of images with their radar-images.yaml), a list of native files, or a glob
    pattern of them ("opera/*.hdf", quoted on a command line). Frames come back oldest first,
    cut into events."""
    if not isinstance(path, (str, Path)):
        return read_native_files([Path(p) for p in path], max_gap_min)
    if is_pattern(path):
        files = pattern_files(path)
        if not files:
            raise NowcastError(f"{path}: no radar file of a known format matches this pattern "
                               f"({known_formats()})")
        return read_native_files(files, max_gap_min)
    path = Path(path)
    if path.is_dir() and has_spec(path):
        return read_images(path, max_gap_min)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if candidates(p))
        if not files:
            raise NowcastError(f"{path}: no radar files of a known format ({known_formats()})")
        return read_native_files(files, max_gap_min)
    if path.suffix in ARRAY_SUFFIXES:
        return read_array_file(path, max_gap_min)
    if not path.exists():
        raise NowcastError(f"{path}: no such radar file")
    get_format(path)  # an unknown format is refused before pysteps is imported
    return read_native_files([path], max_gap_min)


# --- forecasts out ------------------------------------------------------------------------

def forecast_times(times: np.ndarray | None, steps: int, dt_min: int = KNMI_DT_MIN
                   ) -> np.ndarray | None:
    """Valid times of `steps` forecast frames after input frames at `times` (None: unknown)."""
    if times is None or len(times) == 0:
        return None
    return times[-1] + np.arange(1, steps + 1) * np.timedelta64(dt_min, "m")


def write_radar_forecast(path: str | Path, dbz: np.ndarray, times: np.ndarray | None = None,
                         dt_min: int = KNMI_DT_MIN, source: str = "nowcast forecast",
                         pixel_km: float | None = 4.0) -> Path:
    """Write forecast frames dBZ (T, H, W) as an .npz in the shared PV encoding
    (`frames` (1, T, H, W) uint8, `times` (1, T) datetime64[m] when given, `meta` JSON), with
    `rain_mm_h` (1, T, H, W) float32: the rain rate of the stored frames by Marshall-Palmer
    (units.dbz_to_rainrate), what a user of a rain forecast reads."""
    path = Path(path)
    dbz = np.asarray(dbz)
    if dbz.ndim != 3:
        raise NowcastError(f"{path}: forecast must be (T, H, W) dBZ, got shape {dbz.shape}")
    pv = dbz_to_pv(dbz)[None]
    arrays = {"frames": pv, "rain_mm_h": dbz_to_rainrate(pv_to_dbz(pv)).astype(np.float32),
              "meta": json.dumps({"source": source, "dt_min": dt_min, "pixel_km": pixel_km,
                                  "encoding": "dBZ = 0.5 PV - 32; PV 0 no echo; PV 255 no data"})}
    if times is not None:
        arrays["times"] = np.asarray(times, "datetime64[m]").reshape(1, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path
