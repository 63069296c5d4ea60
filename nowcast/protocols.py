"""Evaluation protocols and metrics: the one place their facts live (docs/protocols.md).

A **protocol** fixes the data fields of a run (its preset: `load_config` refuses a value that
contradicts it), which metrics are its headline, which columns its table and which panels its
per-lead figure show, and the published numbers a run is compared with. A run that follows
no protocol belongs to `none`: its numbers describe its own data only.

A **metric** has a label, a unit and a direction (-1: lower is better, +1: higher is better).
Moving MNIST metrics are computed in `metrics.py`, radar scores in `verification.py`; their
names are the keys of `metrics.json`'s `mean` and `per_lead`.

    get_protocol("knmi-30-60").headline   # ['csi_20', 'fss_20_5']
    get_metric("csi_20").label            # 'CSI 20 dBZ'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import NowcastError


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    label: str            # as tables, figures and slides print it
    unit: str = ""        # "" for dimensionless scores
    direction: int = 0    # -1: lower is better, +1: higher is better, 0: unknown

    @property
    def arrow(self) -> str:
        return {-1: "↓", 1: "↑"}.get(self.direction, "")

    @property
    def better(self) -> str:
        return {-1: "lower is better", 1: "higher is better"}.get(self.direction, "")


# Radar verification (PROTOCOLS.md, KNMI-30/60): thresholds in dBZ, event = value >= threshold;
# FSS at one threshold over n x n neighbourhoods of 4 km blocks.
THRESHOLDS_DBZ = (15.0, 20.0, 25.0, 30.0)
FSS_THRESHOLD_DBZ = 20.0
FSS_SCALES = (5, 11)
BLOCK_KM = 4


def threshold_tag(value: float) -> str:
    """The name part of a threshold: 20.0 -> '20', 2.5 -> '2p5'."""
    return f"{value:g}".replace(".", "p")


METRICS: dict[str, Metric] = {
    "mse_frame": Metric("MSE/frame", "", -1),
    "mae_frame": Metric("MAE/frame", "", -1),
    "mse_pixel255": Metric("MSE (0-255)", "", -1),
    "mae_pixel255": Metric("MAE (0-255)", "", -1),
    "ssim": Metric("SSIM", "", +1),
    "psnr": Metric("PSNR", "dB", +1),
    "mae_dbz": Metric("MAE", "dBZ", -1),
    "rmse_dbz": Metric("RMSE", "dBZ", -1),
}
for _t in map(threshold_tag, THRESHOLDS_DBZ):
    METRICS[f"csi_{_t}"] = Metric(f"CSI {_t} dBZ", "", +1)
    METRICS[f"pod_{_t}"] = Metric(f"POD {_t} dBZ", "", +1)
    METRICS[f"far_{_t}"] = Metric(f"FAR {_t} dBZ", "", -1)
    METRICS[f"hss_{_t}"] = Metric(f"HSS {_t} dBZ", "", +1)
for _s in FSS_SCALES:
    _t = threshold_tag(FSS_THRESHOLD_DBZ)
    METRICS[f"fss_{_t}_{_s}"] = Metric(f"FSS {_t} dBZ, {_s * BLOCK_KM} km", "", +1)


def get_metric(name: str) -> Metric:
    """The registry entry of a metric; NowcastError listing the known names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise NowcastError(f"unknown metric {name!r}: expected one of {', '.join(METRICS)}") from None


def metric_label(name: Any) -> str:
    """The label of a metric name read from a results folder (data: unknown names are shown
    as they are, never an error), with its unit."""
    m = METRICS.get(str(name))
    if m is None:
        return str(name)
    return f"{m.label} ({m.unit})" if m.unit else m.label


def direction(name: Any) -> int:
    m = METRICS.get(str(name))
    return m.direction if m else 0


# --------------------------------------------------------------------------------------------
# published reference numbers
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Published:
    """One published result. Values are strings: printed with their published precision."""
    model: str
    cite: str                       # key in report/references.bib
    mean: dict[str, str]
    parameters: Optional[int] = None


# --------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    preset: dict[str, Any]          # the Config data fields the protocol fixes
    headline: list[str]             # the metrics a run of this protocol leads with
    table: list[str]                # the report table's columns, in order
    per_lead: list[str]             # the panels of the per-lead figure
    lead_unit: str = "frames"       # the x axis of per-lead plots
    published: list[Published] = field(default_factory=list)
    published_note: str = ""
    skill: list[tuple[str, float]] = field(default_factory=list)  # (metric, perfect score)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol(
        name="mmnist-10", title="MMNIST-10: Moving MNIST, 10 frames in, 10 out",
        preset=dict(dataset="mmnist", num_digits=2, image_size=64, k_in=10, k_out=10,
                    speed_min=2.0, speed_max=5.0, train_sequences=10000, train_fixed=False,
                    val_sequences=1000, test_sequences=2000),
        headline=["mse_frame", "ssim"],
        table=["mse_frame", "mae_frame", "ssim", "psnr"],
        per_lead=["mse_frame", "mae_frame", "ssim"],
        published=[
            Published("ConvLSTM (PredRNN paper)", "wang2017predrnn", {"mse_frame": "103.3"}),
            Published("ConvLSTM-S, OpenSTL, 200 epochs", "tan2023openstl",
                      {"mse_frame": "29.80", "ssim": "0.929"}),
            Published("ConvLSTM-S, OpenSTL, 2000 epochs", "tan2023openstl", {"mse_frame": "22.41"}),
            Published("PredRNN++, OpenSTL, 200 epochs", "tan2023openstl", {"mse_frame": "22.06"}),
        ],
        published_note=("Published numbers were measured on the public 10,000-sequence "
                        "`mnist_test_seq.npy` (some with a 7x7 SSIM window), not on our test "
                        "file: the comparison is indicative.")),
    Protocol(
        name="mmnist-t", title="MMNIST-T: the thesis setting, 7 frames in, 7 out",
        preset=dict(dataset="mmnist", num_digits=2, image_size=64, k_in=7, k_out=7,
                    speed_min=1.0, speed_max=4.0, train_sequences=8000, train_fixed=True,
                    val_sequences=2000, test_sequences=2000),
        headline=["mse_pixel255", "mae_pixel255"],
        table=["mse_pixel255", "mae_pixel255", "ssim"],
        per_lead=["mse_pixel255", "mae_pixel255", "ssim"],
        published=[
            Published("2-layer FC-LSTM 2048-2048", "wu2019thesis",
                      {"mse_pixel255": "880.46", "mae_pixel255": "10.42"}, 92295168),
            Published("1-layer ConvLSTM 128, 5x5", "wu2019thesis",
                      {"mse_pixel255": "771.51", "mae_pixel255": "8.56"}, 3311617),
            Published("2-layer ConvLSTM 64-64, 5x5", "wu2019thesis",
                      {"mse_pixel255": "692.31", "mae_pixel255": "7.69"}, 2475521),
            Published("3-layer ConvLSTM 64-32-32, 5x5", "wu2019thesis",
                      {"mse_pixel255": "656.84", "mae_pixel255": "7.26"}, 1858049),
        ],
        published_note=("Published numbers: Wu (2019), Table 4.1, test split. The thesis drew "
                        "its digits from a pool of 500; our splits use each split's whole "
                        "digit pool.")),
    Protocol(
        name="knmi-30-60", title="KNMI-30/60: radar nowcasting, 30 min in, 60 min out",
        preset=dict(dataset="radar", k_in=6, k_out=12, radar_recipe="blocks", block_size=4),
        headline=["csi_20", "fss_20_5"],
        table=["csi_20", "fss_20_5", "fss_20_11", "pod_20", "far_20", "mae_dbz", "rmse_dbz"],
        per_lead=["csi_20", "fss_20_5", "mae_dbz"],
        lead_unit="x 5 min",
        skill=[("csi_20", 1.0), ("fss_20_5", 1.0), ("mae_dbz", 0.0), ("rmse_dbz", 0.0)]),
    Protocol(
        name="none", title="Runs that follow no protocol", preset={},
        headline=["mse_frame", "ssim"], table=[], per_lead=[]),
]}

PROTOCOL_NAMES = list(PROTOCOLS)           # report order
PRESETS: dict[str, dict[str, Any]] = {name: p.preset for name, p in PROTOCOLS.items() if p.preset}

# KNMI-30/60's data: the file, its splits by event, the window stride and time step.
KNMI_FILE = "knmi_2021_refl_5min.npz"
KNMI_SPLITS = {"train": range(0, 8), "val": range(8, 10), "test": range(10, 20)}
KNMI_EVAL_STRIDE = 6            # test windows start every 6 frames
# the test windows start at frames 0, 6, 12, 18 of each of the 10 test events and are saved in
# event order (data/radar/windows.py): a folder without per-window event ids is read this way
KNMI_WINDOWS_PER_EVENT = 4
KNMI_DT_MIN = 5                 # minutes between frames
KNMI_PIXEL_KM = 1.0             # the file's pixel size (4 km blocks of 4 x 4 pixels)


# the baselines every model is scored beside: radar (baselines.BASELINES implements them), and
# Moving MNIST / sequence files (scoring.image_baselines)
RADAR_BASELINES = ("persistence", "extrapolation", "torch_extrapolation", "sprog")
IMAGE_BASELINES = ("persistence", "mean_frame")


def get_protocol(name: str) -> Protocol:
    """The protocol record; NowcastError listing the known names otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise NowcastError(f"unknown protocol {name!r}: expected one of "
                           f"{', '.join(PROTOCOLS)}") from None


def protocol_or_none(name: Any) -> Protocol:
    """The record of a protocol name read from a results folder (data: unknown -> 'none')."""
    return PROTOCOLS.get(str(name), PROTOCOLS["none"])
