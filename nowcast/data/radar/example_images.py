"""A folder of timestamped radar PNGs made from one event of a radar file, with its
radar-images.yaml (images.py): the README's image example and the tests read it, since the
shared data holds no image folder.

    python -m nowcast.data.radar.example_images ../shared/data/radar/knmi_2021_refl_5min.npz \
        radar_pngs --event 15 --frames 18 [--style grey|palette]

grey: 8-bit grey PNGs whose value is the shared PV encoding (dBZ = 0.5 x value - 32, 0 no
echo, 255 no data: the KNMI images' own convention). palette: RGB PNGs, each 5 dBZ class
from 5 dBZ one colour of PALETTE (the value the yaml gives it is the class's lower edge),
white no echo and below 5 dBZ, grey no data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from ...errors import NowcastError
from .images import IMAGE_SPEC, rgb_of
from .readers import read_radar
from .units import PV_NO_DATA, pv_to_dbz

PATTERN = "radar_%Y%m%d%H%M.png"
NO_ECHO_RGB, NO_DATA_RGB = "#ffffff", "#808080"
# 5 dBZ classes from 5 dBZ (lower edge -> colour)
PALETTE = {5: "#c8e6ff", 10: "#96c8ff", 15: "#3c96f0", 20: "#1e6edc", 25: "#00c800",
           30: "#00a000", 35: "#fff000", 40: "#ffb400", 45: "#ff6400", 50: "#e60000",
           55: "#b40078", 60: "#780078"}


def spec_text(style: str, pixel_km: float) -> str:
    head = f"pattern: \"{PATTERN}\"\nunit: dBZ\npixel_km: {pixel_km:g}\n"
    if style == "grey":
        return head + "linear: {offset: -32.0, gain: 0.5}\nno_echo: [0]\nno_data: [255]\n"
    table = "".join(f"  \"{colour}\": {edge}.0\n" for edge, colour in PALETTE.items())
    return head + f"palette:\n{table}no_echo: [\"{NO_ECHO_RGB}\"]\nno_data: [\"{NO_DATA_RGB}\"]\n"


def to_palette(pv: np.ndarray) -> np.ndarray:
    """PV (H, W) -> RGB (H, W, 3) by PALETTE's classes."""
    dbz = pv_to_dbz(pv)
    rgb = np.empty((*pv.shape, 3), np.uint8)
    rgb[:] = rgb_of(NO_ECHO_RGB)
    for edge, colour in PALETTE.items():
        rgb[np.nan_to_num(dbz) >= edge] = rgb_of(colour)
    rgb[pv == PV_NO_DATA] = rgb_of(NO_DATA_RGB)
    return rgb


def write_example(source: str | Path, folder: str | Path, event: int = 0, frames: int = 18,
                  style: str = "grey") -> Path:
    """`frames` frames of event `event` of `source` as PNGs in a new `folder`, named by time."""
    if style not in ("grey", "palette"):
        raise NowcastError(f"style {style!r}: expected grey or palette")
    events = read_radar(source)
    if not 0 <= event < len(events) or events.times[event] is None:
        raise NowcastError(f"{source}: no event {event} with times ({len(events)} events)")
    folder = Path(folder)
    folder.mkdir(parents=True)  # a new folder: never mixed with other images
    pv, times = events.frames[event][:frames], events.times[event][:frames]
    for frame, time in zip(pv, times):
        name = time.astype("datetime64[m]").item().strftime(PATTERN)
        iio.imwrite(folder / name, frame if style == "grey" else to_palette(frame))
    (folder / IMAGE_SPEC).write_text(spec_text(style, events.pixel_km or 1.0))
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("folder")
    parser.add_argument("--event", type=int, default=0)
    parser.add_argument("--frames", type=int, default=18)
    parser.add_argument("--style", choices=["grey", "palette"], default="grey")
    args = parser.parse_args(argv)
    print(write_example(args.source, args.folder, args.event, args.frames, args.style))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
