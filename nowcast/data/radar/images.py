"""A folder of radar images (PNG, and what imageio reads) whose file names carry their times,
read as radar: the folder's `radar-images.yaml` says how (IMAGE_SPEC), as the seed's radar
images needed a stated mapping from grey level to reflectivity.

    pattern: "radar_%Y%m%d%H%M.png"   # the file names, strptime fields where the time is
    unit: dBZ                         # what the mapping gives: dBZ or mm/h
    pixel_km: 1.0                     # the pixel size, which an image does not state
    linear: {offset: -32.0, gain: 0.5}   # grey images: value = offset + gain x pixel value
    palette: {"#00ff00": 25.0, ...}      # or colour images: each listed colour's value
    no_data: [255]                    # pixel values (or colours) of no data (optional)
    no_echo: [0]                      # pixel values (or colours) of no echo (optional)

Values map to dBZ (mm/h by Marshall-Palmer, units.rainrate_to_dbz); at or below 0 dBZ no echo,
no data stays apart (PV 255). A colour image's pixels must all be listed colours (no_data
and no_echo count); a transparent pixel (alpha 0) is no data. The files are those the
pattern matches, in the order of the times it reads; the folder's other files are ignored.
Every fault is one line naming the folder, the file, or the key. Here: the yaml (`read_spec`),
the files it names (`image_files`) and one image read (`read_image`); readers.read_images puts
them together as events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import imageio.v3 as iio
import numpy as np

from ... import yamlio
from ...errors import NowcastError, described
from .units import dbz_to_pv, rainrate_to_dbz

IMAGE_SPEC = "radar-images.yaml"
KEYS = ("pattern", "unit", "pixel_km", "linear", "palette", "no_data", "no_echo", "dt_min")
# strptime fields a pattern may use -> the digits they match
FIELDS = {"%Y": r"\d{4}", "%y": r"\d{2}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}",
          "%M": r"\d{2}", "%S": r"\d{2}", "%j": r"\d{3}"}
MAX_COLOURS = 1024


@dataclass(frozen=True)
class ImageSpec:
    """A folder's radar-images.yaml, checked."""
    pattern: str
    regex: re.Pattern
    unit: str
    pixel_km: float
    linear: Optional[tuple[float, float]]                 # (offset, gain)
    palette: Optional[dict[tuple[int, int, int], float]]  # RGB -> value in `unit`
    no_data: tuple
    no_echo: tuple
    dt_min: Optional[int]


def has_spec(folder: Path) -> bool:
    return (folder / IMAGE_SPEC).is_file()


def rgb_of(text: Any, where: str = "colour") -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b), or one line naming `where`."""
    if not isinstance(text, str) or not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        raise NowcastError(f"{where}: colour {yamlio.shown(text)} is not #rrggbb")
    return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise NowcastError(f"{where}: {yamlio.shown(value)} is not a finite number")
    return float(value)


def _regex(pattern: Any, where: str) -> re.Pattern:
    if not isinstance(pattern, str) or not pattern or "/" in pattern:
        raise NowcastError(f"{where}: 'pattern' must be a file name with strptime fields, e.g. "
                           "'radar_%Y%m%d%H%M.png'")
    parts, found = re.split(r"(%[A-Za-z%])", pattern), set()
    for part in parts[1::2]:
        if part not in FIELDS:
            raise NowcastError(f"{where}: 'pattern' field {part} is not one of "
                               f"{', '.join(FIELDS)}")
        found.add(part)
    if not ({"%Y", "%y"} & found and {"%H", "%M"} <= found):
        raise NowcastError(f"{where}: 'pattern' {pattern!r} must carry the year (%Y or %y), "
                           "hour (%H) and minute (%M) of each image")
    return re.compile("".join(FIELDS[p] if i % 2 else re.escape(p) for i, p in enumerate(parts)))


def _values(raw: Any, key: str, colour: bool, where: str) -> tuple:
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    return tuple(rgb_of(v, f"{where} '{key}'") if colour else int(_number(v, f"{where} '{key}'"))
                 for v in items)


def read_spec(folder: Path) -> ImageSpec:
    """The folder's radar-images.yaml, every key checked (one line naming it otherwise)."""
    where = str(folder / IMAGE_SPEC)
    try:
        raw = yamlio.read_params(folder / IMAGE_SPEC)
    except NowcastError:
        raise
    except Exception as e:  # noqa: BLE001 - bad YAML, not UTF-8: the file's fault, one line
        raise NowcastError(f"{where}: not readable YAML ({described(e)})") from None
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise NowcastError(f"{where}: unknown key {yamlio.shown(unknown[0])} (keys: {', '.join(KEYS)})")
    for key in ("pattern", "unit", "pixel_km"):
        if key not in raw:
            raise NowcastError(f"{where}: '{key}' is missing (the images cannot say it)")
    if raw["unit"] not in ("dBZ", "mm/h"):
        raise NowcastError(f"{where}: 'unit' {yamlio.shown(raw['unit'])} is not dBZ or mm/h")
    if ("linear" in raw) == ("palette" in raw):
        raise NowcastError(f"{where}: give one of 'linear' (grey images) and 'palette' (colours)")
    linear = palette = None
    if "linear" in raw:
        if not isinstance(raw["linear"], dict) or set(raw["linear"]) != {"offset", "gain"}:
            raise NowcastError(f"{where}: 'linear' must be {{offset: ..., gain: ...}}")
        linear = (_number(raw["linear"]["offset"], f"{where} 'linear'"),
                  _number(raw["linear"]["gain"], f"{where} 'linear'"))
    else:
        if not isinstance(raw["palette"], dict) or not 0 < len(raw["palette"]) <= MAX_COLOURS:
            raise NowcastError(f"{where}: 'palette' must map 1 to {MAX_COLOURS} colours '#rrggbb' "
                               "to values")
        palette = {rgb_of(k, f"{where} 'palette'"): _number(v, f"{where} 'palette'")
                   for k, v in raw["palette"].items()}
    pixel = _number(raw["pixel_km"], f"{where} 'pixel_km'")
    dt = raw.get("dt_min")
    if pixel <= 0 or (dt is not None and (isinstance(dt, bool) or not isinstance(dt, int) or dt <= 0)):
        raise NowcastError(f"{where}: 'pixel_km' must be > 0 and 'dt_min' a whole number > 0")
    colour = palette is not None
    return ImageSpec(raw["pattern"], _regex(raw["pattern"], where), raw["unit"], pixel, linear,
                     palette, _values(raw.get("no_data"), "no_data", colour, where),
                     _values(raw.get("no_echo"), "no_echo", colour, where), dt)


def image_files(folder: Path, spec: ImageSpec) -> list[tuple[np.datetime64, Path]]:
    """(time, file) of every file the pattern matches, oldest first."""
    found = []
    for path in folder.iterdir():
        if not spec.regex.fullmatch(path.name):
            continue
        if not path.is_file():
            raise NowcastError(f"{path}: not a regular file (a FIFO, a device or a folder): not read")
        try:
            found.append((np.datetime64(datetime.strptime(path.name, spec.pattern), "m"), path))
        except ValueError:
            raise NowcastError(f"{path}: its name fits the pattern {spec.pattern!r} but is not "
                               "a valid time") from None
    if not found:
        raise NowcastError(f"{folder}: no file name fits the pattern {spec.pattern!r} of {IMAGE_SPEC}")
    found.sort()
    for (a, pa), (b, pb) in zip(found, found[1:]):
        if a == b:
            raise NowcastError(f"{folder}: {pa.name} and {pb.name} have the same time")
    return found


def _pack(r: Any, g: Any, b: Any) -> Any:
    """A colour as one integer 0xRRGGBB (of ints, or element-wise of arrays)."""
    return (r << 16) | (g << 8) | b


def _grey_to_dbz(image: np.ndarray, spec: ImageSpec, path: Path) -> np.ndarray:
    if image.ndim != 2:
        raise NowcastError(f"{path}: a colour image, but {IMAGE_SPEC} gives a linear mapping "
                           "(grey images); give a 'palette' for colour images")
    values = spec.linear[0] + spec.linear[1] * image.astype(np.float64)
    return _to_dbz(values, spec, image, spec.no_echo, spec.no_data)


def _colour_to_dbz(image: np.ndarray, spec: ImageSpec, path: Path) -> np.ndarray:
    if image.ndim != 3 or image.shape[-1] not in (3, 4) or image.dtype != np.uint8:
        raise NowcastError(f"{path}: not an 8-bit RGB(A) image, but {IMAGE_SPEC} gives a palette")
    code = _pack(*np.moveaxis(image[..., :3].astype(np.int32), -1, 0))
    table = {_pack(*rgb): v for rgb, v in spec.palette.items()}
    no_echo, no_data = [_pack(*c) for c in spec.no_echo], [_pack(*c) for c in spec.no_data]
    transparent = image[..., 3] == 0 if image.shape[-1] == 4 else np.zeros(code.shape, bool)
    colours, inverse = np.unique(code, return_inverse=True)
    listed = set(table) | set(no_echo) | set(no_data)
    unknown = [c for c in np.unique(code[~transparent]) if c not in listed]
    if unknown:
        raise NowcastError(f"{path}: colour #{int(unknown[0]):06x} is not in the palette of "
                           f"{IMAGE_SPEC} ({len(unknown)} unlisted colour(s))")
    values = np.array([table.get(int(c), np.nan) for c in colours])[inverse].reshape(code.shape)
    dbz = _to_dbz(values, spec, code, no_echo, no_data)
    dbz[transparent] = np.nan
    return dbz


def _to_dbz(values: np.ndarray, spec: ImageSpec, raw: np.ndarray, no_echo: list, no_data: list
            ) -> np.ndarray:
    """Values in the spec's unit -> dBZ; pixels whose raw value (grey level or packed colour)
    is one of `no_echo` are no echo, of `no_data` no data."""
    dbz = values if spec.unit == "dBZ" else rainrate_to_dbz(np.maximum(values, 0.0)).astype(np.float64)
    dbz = np.where(dbz > 0.0, dbz, 0.0)
    dbz[np.isin(raw, no_echo)] = 0.0
    dbz[np.isin(raw, no_data)] = np.nan
    return dbz


def read_image(path: Path, spec: ImageSpec) -> np.ndarray:
    """One image -> PV (H, W)."""
    try:
        image = iio.imread(path)
    except Exception as e:  # noqa: BLE001 - not an image, truncated: one line naming the file
        raise NowcastError(f"{path}: not a readable image ({described(e)})") from None
    dbz = _grey_to_dbz(image, spec, path) if spec.linear else _colour_to_dbz(image, spec, path)
    return dbz_to_pv(dbz)
