"""Native radar formats, each read by its pysteps importer (`pysteps.io.get_method`), in one
registry as pysteps' own `io/importers`: `FORMATS = {name: NativeFormat}`, `get_format(path)`
by the file's name (and, where formats share an ending, HDF5 or netCDF, by what the file says
it is), `read_frame(path)` one file to one frame in the PV encoding (units.py).

A frame is converted by the unit pysteps' metadata states:

    dBZ:                     as read; below 0 dBZ (pysteps' zero value) -> no echo (PV 0)
    rain rate R (mm/h):      dBZ = 10 log10(200 R^1.6)  (Marshall-Palmer, units.rainrate_to_dbz)
    accumulation D (mm):     R = 60 D / accutime (minutes), then as a rate
    values in dB (transform "dB", a rate or depth): 10^(x / 10) first
    no data (NaN):           PV 255

and its pixel size is the metadata's `xpixelsize` (metres, for projected grids: / 1000 km;
a longitude-latitude grid, MRMS's, states degrees: unknown in km). The time of a frame is
the stamp in its file name (`stamp`, parsed by the first of `formats` that fits).

Formats whose importer needs a package nowcast does not install (GRIB: pygrib; GeoTIFF: GDAL's
osgeo; METRANET: metranet; netCDF: netCDF4) are refused in one line naming it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ...errors import NowcastError, described
from ...util import optional_import
from .units import dbz_to_pv, rainrate_to_dbz


@dataclass(frozen=True)
class NativeFormat:
    """One native format: the pysteps importer that reads it and how nowcast finds its files."""
    importer: str                        # pysteps.io importer name
    suffixes: tuple[str, ...]            # lower-case file name endings
    stamp: str                           # regex; group 1 is the time stamp in the file name
    formats: tuple[str, ...]             # strptime formats of that stamp, tried in order
    kwargs: Callable[[Path], dict] = lambda path: {}  # the importer's arguments for a file
    needs: Optional[str] = None          # a module the importer needs besides pysteps
    claims: Optional[Callable[[Path], bool]] = None   # for a shared ending: is it this format?
    note: str = ""                       # what the README says of it


def _hdf5_root(path: Path) -> Any:
    h5py = optional_import("h5py", "radar")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise NowcastError(f"{path}: not a readable HDF5 file ({described(e)})") from None


def _is_knmi(path: Path) -> bool:
    with _hdf5_root(path) as f:
        return "image1" in f


def _is_odim(path: Path) -> bool:
    with _hdf5_root(path) as f:
        return str(f.attrs.get("Conventions", b"")).find("ODIM") >= 0


def _odim_quantity(path: Path) -> dict:
    """The ODIM quantity to read: reflectivity (DBZH) where the file holds it, else rain rate,
    else the accumulation."""
    with _hdf5_root(path) as f:
        found = {str(f[k].attrs.get("quantity", b""), "ascii", "replace")
                 for k in _odim_what(f)}
    for qty in ("DBZH", "TH", "RATE", "ACRR"):
        if qty in found:
            return {"qty": qty}
    raise NowcastError(f"{path}: no ODIM quantity nowcast reads (DBZH, TH, RATE, ACRR); the file "
                       f"holds {', '.join(sorted(found)) or 'none'}")


def _odim_what(f: Any) -> list[str]:
    """The `what` groups that may name a quantity: per dataset, and per data of a dataset
    (ODIM puts it at either level)."""
    groups = [f"{d}/what" for d in f if d.startswith("dataset") and f"{d}/what" in f]
    return groups + [f"{d}/{q}/what" for d in f if d.startswith("dataset")
                     for q in f[d] if q.startswith("data") and f"{d}/{q}/what" in f]


def _mch_gif(path: Path) -> dict:
    return {"product": path.name[:3], "unit": "mm", "accutime": 5.0}


FORMATS: dict[str, NativeFormat] = {
    "knmi_hdf5": NativeFormat("knmi_hdf5", (".hf5", ".h5", ".hdf5"), r"(\d{12})", ("%Y%m%d%H%M",),
                              lambda p: {"qty": "DBZH"}, claims=_is_knmi,
                              note="KNMI composite (tested)"),
    "odim_hdf5": NativeFormat("odim_hdf5", (".h5", ".hdf5", ".hdf", ".hf5"), r"(\d{14}|\d{12})",
                              ("%Y%m%d%H%M%S", "%Y%m%d%H%M"), _odim_quantity, claims=_is_odim,
                              note="ODIM HDF5: OPERA (tested), DWD, MeteoSwiss and most European "
                                   "services; reflectivity, else rain rate, else accumulation"),
    "fmi_pgm": NativeFormat("fmi_pgm", (".pgm", ".pgm.gz"), r"(\d{12})", ("%Y%m%d%H%M",),
                            lambda p: {"gzipped": p.name.lower().endswith(".gz")},
                            note="FMI composite (tested)"),
    "mch_gif": NativeFormat("mch_gif", (".gif",), r"^[A-Z]{3}(\d{9})", ("%y%j%H%M",), _mch_gif,
                            note="MeteoSwiss 5-minute accumulations (tested)"),
    "bom_rf3": NativeFormat("bom_rf3", (".prcp-c10.nc", ".prcp-cscn.nc"), r"(\d{8}_\d{6})",
                            ("%Y%m%d_%H%M%S",), needs="netCDF4",
                            claims=lambda p: ".prcp-c" in p.name, note="Bureau of Meteorology"),
    "saf_crri": NativeFormat("saf_crri", (".nc",), r"(\d{8}T\d{6})Z", ("%Y%m%dT%H%M%S",),
                             needs="netCDF4", claims=lambda p: p.name.startswith("S_NWC_CRR"),
                             note="NWC SAF convective rain rate"),
    "mrms_grib": NativeFormat("mrms_grib", (".grib2",), r"(\d{8}-\d{6})", ("%Y%m%d-%H%M%S",),
                              needs="pygrib", note="NOAA MRMS (longitude-latitude grid)"),
    "fmi_geotiff": NativeFormat("fmi_geotiff", (".tif", ".tiff"), r"(\d{12})", ("%Y%m%d%H%M",),
                                needs="osgeo", note="FMI GeoTIFF"),
}


def known_formats() -> str:
    return ", ".join(f"{name} ({', '.join(f.suffixes)})" for name, f in FORMATS.items())


def candidates(path: Path) -> list[tuple[str, NativeFormat]]:
    """The formats whose endings a file name has (several for HDF5 and netCDF)."""
    name = path.name.lower()
    return [(n, f) for n, f in FORMATS.items() if name.endswith(f.suffixes)]


def get_format(path: Path) -> tuple[str, NativeFormat]:
    """(name, format) of a native file: by its ending, and where formats share it by what the
    file says it is; NowcastError listing the known formats otherwise."""
    found = candidates(path)
    if not found:
        raise NowcastError(f"{path}: unknown radar format (expected .npz, .npy or a native "
                           f"format: {known_formats()})")
    if len(found) > 1:
        if not path.is_file():  # what a file says it is is read from it: never from a FIFO
            raise NowcastError(f"{path}: not a regular file (a FIFO or a device): not read")
        claimed = [(n, f) for n, f in found if f.claims is not None and f.claims(path)]
        if not claimed:
            raise NowcastError(f"{path}: none of {', '.join(n for n, _ in found)} recognises "
                               "this file")
        found = claimed
    name, fmt = found[0]
    if fmt.needs and importlib.util.find_spec(fmt.needs) is None:
        raise NowcastError(f"{path}: {name} files need the Python package '{fmt.needs}', which "
                           "is not installed here")
    return name, fmt


def frame_time(path: Path, found: Optional[tuple[str, NativeFormat]] = None) -> np.datetime64:
    """The time stamp in a native file's name, by its format's pattern (`found`: the file's
    get_format, when the caller has it: telling HDF5 formats apart opens the file)."""
    name, fmt = found or get_format(path)
    match = re.search(fmt.stamp, path.name)
    if match is None:
        raise NowcastError(f"{path}: no time stamp in the file name ({name} files carry one)")
    for form in fmt.formats:
        try:
            return np.datetime64(datetime.strptime(match.group(1), form), "m")
        except ValueError:
            continue
    raise NowcastError(f"{path}: bad time stamp {match.group(1)!r} in the file name")


@dataclass
class NativeFrame:
    """One native file read: the frame in the PV encoding and what its metadata says."""
    pv: np.ndarray                       # uint8 (H, W)
    pixel_km: Optional[float]            # None: not stated in km
    source: str                          # the metadata's institution, else the format
    unit: str = ""                       # as read: dBZ, mm/h or mm
    extra: dict = field(default_factory=dict)


def to_dbz(data: np.ndarray, meta: dict) -> np.ndarray:
    """pysteps' data in its metadata's unit -> dBZ (module docstring); NaN stays no data.
    dBZ comes back as read, values <= 0 included: units.dbz_to_pv makes them no echo (no
    copy of a 134 MB frame to clip them first)."""
    unit, transform = meta.get("unit"), meta.get("transform")
    data = np.asarray(data, dtype=np.float64)
    if unit == "dBZ":
        return data
    if transform == "dB":
        data = 10.0 ** (data / 10.0)
    if unit == "mm":
        data = data * 60.0 / float(meta["accutime"])
    elif unit != "mm/h":
        raise NowcastError(f"unit {unit!r} of the importer's data: nowcast reads dBZ, mm/h, mm")
    dbz = rainrate_to_dbz(data).astype(np.float64)
    dbz[np.isnan(data)] = np.nan
    return dbz


def pixel_km(meta: dict) -> Optional[float]:
    """The pixel size in km that a projected grid's metadata states (xpixelsize in metres)."""
    size, projection = meta.get("xpixelsize"), str(meta.get("projection") or "")
    if not isinstance(size, (int, float, np.floating)) or not size > 0 or "longlat" in projection:
        return None
    return float(size) / 1000.0


def read_frame(path: Path, found: Optional[tuple[str, NativeFormat]] = None) -> NativeFrame:
    """One native file -> one frame in the PV encoding, through its pysteps importer
    (`found`: the file's get_format, when the caller has it)."""
    if not path.is_file():  # a FIFO would hang the reader, a device fill the memory
        raise NowcastError(f"{path}: not a regular file (a FIFO or a device): not read")
    name, fmt = found or get_format(path)
    importer = optional_import("pysteps.io", "radar").get_method(fmt.importer, "importer")
    try:
        data, _, meta = importer(str(path), **fmt.kwargs(path))
        dbz = to_dbz(data, meta)
    except NowcastError as e:
        raise NowcastError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a decoder's failure is the file's: one line
        raise NowcastError(f"{path}: cannot read as {name} ({described(e)})") from None
    return NativeFrame(dbz_to_pv(dbz), pixel_km(meta), str(meta.get("institution") or name),
                       str(meta.get("unit") or ""))
