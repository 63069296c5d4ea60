"""Radar units and the conversions between them (../shared/data/README.md, PROTOCOLS.md KNMI-30/60).

Units, stated once:

- **PV** (uint8, the shared encoding): dBZ = 0.5 PV - 32 for PV 1..254; PV 0 = no echo;
  PV 255 = no data.
- **dBZ** as nowcast uses it everywhere: float32 clipped to [0, 70]; no echo (and any echo
  below 0 dBZ) is 0 dBZ; no data is NaN.
- **Rain rate** R in mm/h by Marshall-Palmer, Z = 200 R^1.6 with dBZ = 10 log10 Z
  (1 mm/h = 23 dBZ); 0 dBZ (the floor: no echo) is 0 mm/h.
- **[0, 1]** (what models see): clip(dBZ, 0, 70) / 70, no data given as 0, with a boolean
  validity mask beside it; `unit_to_dbz` turns a forecast back into dBZ for scoring.
"""

from __future__ import annotations

import numpy as np
import torch

PV_NO_ECHO = 0
PV_NO_DATA = 255
DBZ_MAX = 70.0                  # the protocol's clipping range is [0, DBZ_MAX]
MP_A, MP_B = 200.0, 1.6         # Marshall-Palmer: Z = MP_A * R ** MP_B


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
    x = np.clip(dbz, 0.0, DBZ_MAX)  # one float64 buffer, worked in place: a 1 km OPERA frame is 134 MB
    x *= 2.0
    x += 64.0
    np.rint(x, out=x)
    with np.errstate(invalid="ignore"):
        x[~(dbz > 0.0)] = PV_NO_ECHO
    x[np.isnan(dbz)] = PV_NO_DATA
    return x.astype(np.uint8)


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


def dbz_to_unit(dbz):
    """dBZ -> what models see: clip(dBZ, 0, 70) / 70 as float32, no data (NaN) -> 0.
    numpy arrays and torch tensors (training windows are cut on the device) alike."""
    if isinstance(dbz, torch.Tensor):
        return torch.nan_to_num(dbz.to(torch.float32).clamp(0.0, DBZ_MAX) / DBZ_MAX, nan=0.0)
    return np.nan_to_num(np.clip(np.asarray(dbz, np.float32), 0.0, DBZ_MAX) / DBZ_MAX, nan=0.0)


def unit_to_dbz(x: np.ndarray) -> np.ndarray:
    """A [0, 1] forecast -> dBZ for scoring: clip(x, 0, 1) * 70, rounded to 1e-4 dBZ so that
    float32 rounding of the scaling cannot move a value across a threshold (NaN stays NaN)."""
    return np.round(np.clip(np.asarray(x, np.float64), 0.0, 1.0) * DBZ_MAX, 4).astype(np.float32)
