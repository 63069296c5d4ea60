"""Radar composites: the PV encoding, storm events, 4 km blocks, windows and `RadarData`.

Each name lives in one sub-module and is imported from there; imports run one way, down
this list (each module uses only those above it):

- `units`: PV, dBZ, rain rate and the [0, 1] scale models see, and the conversions (units
  are stated there once).
- `readers`: files in (`.npz` / `.npy` in the PV encoding; native KNMI HDF5, FMI PGM and
  MeteoSwiss GIF through pysteps.io, `NATIVE_READERS`) as `RadarEvents`, frames oldest first;
  forecasts out (`write_radar_forecast`).
- `grid`: PV frames -> dBZ on a recipe's grid (4 km block means, the seed's 128 x 128
  resize, native pixels); `prepared_events` caches a prepared file; `read_radar_input`.
- `windows`: `RadarWindows` of k_in + k_out frames cut from events; the split of a file's
  events in time order.
- `dataset`: `RadarData`, the SequenceData implementation (KNMI-30/60 or any radar file).
"""

from .dataset import RadarData

__all__ = ["RadarData"]
