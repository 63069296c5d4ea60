"""Figures: of one run (loss curves, per-lead scores, train/test GIFs, a frame strip for PDFs)
and across runs for the report (per-lead scores of many runs and baselines, validation loss).

Functions here draw what they are given; deciding what to draw (and whether an unchanged
figure needs drawing again) is the caller's job. Metric labels come from `protocols.py`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
# Titles and legends hold run names and metric names, data from results folders: never TeX
# (a stray `$...$` would stop the drawing with a mathtext parse error).
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from .errors import MissingDependency  # noqa: E402
from .protocols import metric_label, protocol_or_none  # noqa: E402
from .protocols import direction as metric_direction  # noqa: E402
from .util import optional_import  # noqa: E402

# The report's look for figures that compare runs (figures of one run keep matplotlib's).
REPORT_STYLE = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                "axes.grid": True, "grid.alpha": 0.3, "savefig.dpi": 150, "figure.dpi": 100,
                "legend.fontsize": 7, "legend.frameon": False}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _stage_lines(ax, history: list[dict]) -> None:
    for prev, row in zip(history, history[1:]):
        if row["stage"] != prev["stage"]:
            ax.axvline(prev["step"], color="0.8", lw=0.8, zorder=0)


def loss_plot(history: list[dict], loss_name: str, path: Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [r["step"] for r in history]
    # a row per validation (every epoch, or every val_every steps): the train loss is the mean
    # of the batches since the row before
    ax.plot(steps, [r["train_loss"] for r in history], "o-", label="train (mean since the last validation)")
    ax.plot(steps, [r["val_loss"] for r in history], "s-", label="validation")
    _stage_lines(ax, history)
    ax.set(xlabel="optimiser step", ylabel=f"{loss_name} loss", title=title or "Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def loss_median_plot(batch_losses: list[dict], history: list[dict], loss_name: str, path: Path) -> None:
    """Every logged batch loss, and the median between validations (robust to noisy batches)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([r["step"] for r in batch_losses], [r["loss"] for r in batch_losses],
            color="0.75", lw=0.6, label="batch loss")
    ax.plot([r["step"] for r in history], [r["train_loss_median"] for r in history],
            "o-", color="C3", label="median between validations")
    _stage_lines(ax, history)
    ax.set(xlabel="optimiser step", ylabel=f"{loss_name} loss", title="Batch losses")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def per_lead_plot(metrics: dict, path: Path, names: list[str] | None = None) -> None:
    """One run's per-lead scores (its protocol's panels), its baselines dashed beside it."""
    protocol = protocol_or_none(metrics.get("protocol"))
    names = names or protocol.per_lead or metrics.get("headline") or list(metrics["per_lead"])[:2]
    series = [("model", metrics["per_lead"], "-")] + [
        (base, scores["per_lead"], "--") for base, scores in (metrics.get("baselines") or {}).items()
        if isinstance(scores, dict) and isinstance(scores.get("per_lead"), dict)]
    per_lead_figure(series, [n for n in names if n in metrics["per_lead"]], path,
                    lead_unit=protocol.lead_unit)


# each baseline its own line, so that a legend tells them apart (greys: they are references)
BASELINE_LINES = {"persistence": ("--", "0.35"), "mean_frame": (":", "0.5"),
                  "extrapolation": ("-.", "0.2"), "torch_extrapolation": ("-.", "0.6"),
                  "sprog": (":", "0.1")}


def baseline_line(label: str) -> tuple[str, str]:
    """(line style, grey) of a baseline series, by the baseline its label names."""
    name = label.split(" (")[0]
    return BASELINE_LINES.get(name, ("--", "0.45"))


MARKERS = "osD^v"  # past the colour map's colours a run's colour repeats: its marker does not


def marker(index: int, cmap) -> str:
    """The marker of the index-th model, the next one each time the colours start over."""
    return MARKERS[index // cmap.N % len(MARKERS)]


# a plotted value past this is damage, not a score or a loss (1e308 broke matplotlib's ticks)
PLOTTABLE = 1e12


def plottable(value) -> float:
    """A number a figure can draw: NaN for None, text, NaN, infinities and |x| > PLOTTABLE."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) and abs(x) <= PLOTTABLE else math.nan


def _values(values: list) -> np.ndarray:
    return np.array([plottable(v) for v in values], dtype=np.float64)


def per_lead_figure(series: list[tuple], names: list[str], path: Path,
                    lead_unit: str = "frames") -> None:
    """Panels of per-lead scores, one per metric name; series are (label, per_lead, style)
    or (label, per_lead, style, bands): style "-" for models (coloured, one colour each),
    "--" for baselines (each its own grey and dashes: BASELINE_LINES); bands {name: (low, high)} per lead, drawn as a shaded band
    (a model repeated over seeds: its t interval)."""
    models = [s[0] for s in series if s[2] == "-"]
    with plt.rc_context(REPORT_STYLE):
        fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names) + 1.2, 2.7),
                                 squeeze=False, constrained_layout=True)
        cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
        for ax, name in zip(axes[0], names):
            for label, per_lead, style, *bands in series:
                values = per_lead.get(name)
                if not isinstance(values, list) or not values:
                    continue
                line, color = (style, cmap(models.index(label) % cmap.N)) if style == "-" \
                    else baseline_line(label)
                leads = np.arange(1, len(values) + 1)
                ax.plot(leads, _values(values), line, color=color, lw=1.4, ms=2.5, label=label,
                        marker=marker(models.index(label), cmap) if style == "-" else None)
                band = (bands[0] if bands else {}).get(name)
                if band is not None and len(band[0]) == len(values) == len(band[1]):
                    ax.fill_between(leads, _values(band[0]), _values(band[1]), color=color,
                                    alpha=0.2, lw=0)
            better = {-1: "\n(lower is better)", 1: "\n(higher is better)"}.get(metric_direction(name), "")
            ax.set_title(metric_label(name) + better, fontsize=8)
            ax.set_xlabel(f"lead time ({lead_unit})")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # whole leads
        _legend_outside(fig, axes[0])
        fig.savefig(path)
        plt.close(fig)


def val_loss_figure(curves: list[tuple[str, str, list[tuple[float, float]]]], path: Path) -> None:
    """Validation loss against optimiser step, one panel per loss function; curves are
    (label, loss name, [(step, loss)])."""
    losses = sorted({loss for _, loss, _ in curves})
    with plt.rc_context(REPORT_STYLE):
        fig, axes = plt.subplots(1, len(losses), figsize=(3.6 * len(losses) + 1.4, 2.7),
                                 squeeze=False, constrained_layout=True)
        cmap = plt.get_cmap("tab10")
        for ax, loss in zip(axes[0], losses):
            for i, (label, name, points) in enumerate(curves):
                if name == loss:
                    ax.plot([p[0] for p in points], [p[1] for p in points], "-", marker="o", ms=2,
                            color=cmap(i % 10), lw=1.2, label=label)
            ax.set_title(f"validation loss ({loss})", fontsize=8)
            ax.set_xlabel("optimiser step")
        _legend_outside(fig, axes[0])
        fig.savefig(path)
        plt.close(fig)


LEGEND_ROWS_RIGHT = 14  # entries a legend right of 2.7-inch panels holds (7-point type)
LEGEND_BELOW_POINTS = 6  # below the panels, in smaller type: more columns, fewer rows
LEGEND_CHAR_INCHES = 0.0075  # the width of a character, about, per point of type
LEGEND_HANDLE_INCHES = 0.5  # an entry's line and the gaps beside it
LEGEND_ROW_INCHES = 0.13


def _legend_outside(fig, axes):
    """One legend for all panels (a label once, whichever panel has it): right of them while
    it is short and narrow; else below them in as many columns as the figure's width holds,
    the figure taller by its rows (the report's radar legend, 27 entries, ran off the
    figure's top and bottom; labels that name a data file squeezed the panels to slivers)."""
    handles, labels = [], []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if not handles:
        return None
    width, longest = fig.get_figwidth(), max(map(len, labels))
    points = FontProperties(size=plt.rcParams["legend.fontsize"]).get_size_in_points()
    if (len(handles) <= LEGEND_ROWS_RIGHT
            and LEGEND_HANDLE_INCHES + LEGEND_CHAR_INCHES * points * longest <= 0.35 * width):
        return fig.legend(handles, labels, loc="outside right center")
    entry = LEGEND_HANDLE_INCHES + LEGEND_CHAR_INCHES * LEGEND_BELOW_POINTS * longest
    columns = max(1, min(len(handles), int(width // entry)))
    rows = -(-len(handles) // columns)
    fig.set_figheight(fig.get_figheight() + LEGEND_ROW_INCHES * rows + 0.15)
    return fig.legend(handles, labels, loc="outside lower center", ncols=columns,
                      fontsize=LEGEND_BELOW_POINTS)


# --- frames: grey for digits, a forecaster's colours for radar ---------------------------------

class RadarScale(NamedTuple):
    """What a [0, 1] radar frame means, given by the caller (data/radar/units.py: figures
    import no data code): [0, 1] = 0 to dbz_max dBZ, and the rain rate of a reflectivity."""
    dbz_max: float
    rain_rate: Callable[[Any], Any]


@dataclass(frozen=True)
class FrameLook:
    """How frames are drawn. Radar (`radar`: its scale): pysteps' reflectivity colours on its
    dBZ levels, below the first level blank (dry), no data grey, a scale in dBZ and mm/h,
    the service credited; `times` label every frame (inputs then leads), else input i / lead j."""
    radar: Optional[RadarScale] = None
    credit: str = ""
    times: tuple[str, ...] = ()
    masks: Any = None            # bool (T, H, W) of inputs then truth: False = no data

    def masks_for(self, frames: int) -> list:
        """A mask per frame (inputs, then leads), None past those given: drawn as data."""
        given = list(self.masks) if self.masks is not None else []
        return given + [None] * (frames - len(given))


RADAR_DRY = (1.0, 1.0, 1.0, 1.0)
RADAR_NO_DATA = (0.78, 0.78, 0.78, 1.0)


@functools.lru_cache(maxsize=1)
def radar_palette() -> tuple[Any, Any, np.ndarray]:
    """(colour map, norm, dBZ levels): pysteps' "intensity" dBZ colours (10-60 dBZ in steps
    of 5); without pysteps (GPU training needs none) viridis on the same levels."""
    try:
        get = optional_import("pysteps.visualization.precipfields", "radar").get_colormap
        cmap, norm, levels, _ = get("intensity", "dBZ", "pysteps")
    except MissingDependency:
        levels = np.arange(10, 65, 5)
        cmap = plt.get_cmap("viridis", len(levels))
        norm = matplotlib.colors.BoundaryNorm(levels, cmap.N, extend="max")
    return cmap, norm, np.asarray(levels, dtype=float)


def radar_rgba(frame: np.ndarray, scale: RadarScale, valid: np.ndarray | None = None) -> np.ndarray:
    """A [0, 1] radar frame (H, W) as RGBA floats: dBZ = dbz_max x, coloured from the first
    level up, blank below it (dry), grey where `valid` is False (no data)."""
    cmap, norm, levels = radar_palette()
    dbz = np.clip(np.nan_to_num(frame, nan=0.0), 0, 1) * scale.dbz_max
    rgba = np.asarray(cmap(norm(dbz)), dtype=float)
    rgba[dbz < levels[0]] = RADAR_DRY
    if valid is not None:
        rgba[~np.asarray(valid, bool)] = RADAR_NO_DATA
    return rgba


def rain_rate_label(dbz: float, scale: RadarScale) -> str:
    """The rain rate of a reflectivity (the scale's relation), in mm/h, two significant digits."""
    rate = float(scale.rain_rate(np.asarray(dbz)))
    return f"{rate:.2f}" if rate < 1 else f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"


def _rgb8(frame: np.ndarray, look: FrameLook, valid=None) -> np.ndarray:
    if look.radar:
        return (radar_rgba(frame, look.radar, valid)[..., :3] * 255).round().astype(np.uint8)
    return np.repeat((np.clip(frame, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def _panel(frame: np.ndarray, scale: int, border: tuple[int, int, int] | None,
           look: FrameLook = FrameLook(), valid=None) -> Image.Image:
    img = Image.fromarray(_rgb8(frame, look, valid))
    img = img.resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
    if border:
        ImageDraw.Draw(img).rectangle([0, 0, img.width - 1, img.height - 1], outline=border, width=2)
    return img


def _radar_key(width: int, scale: RadarScale) -> Image.Image:
    """A row of colour boxes, one per dBZ level, with the level and its rain rate."""
    cmap, norm, levels = radar_palette()
    key = Image.new("RGB", (width, 30), "white")
    draw = ImageDraw.Draw(key)
    box = max(8, (width - 50) // len(levels))
    draw.text((0, 2), "dBZ", fill=(0, 0, 0))
    draw.text((0, 16), "mm/h", fill=(0, 0, 0))
    for i, level in enumerate(levels):
        x = 32 + i * box
        colour = tuple(int(255 * c) for c in cmap(norm(level + 0.01))[:3])
        draw.rectangle([x, 0, x + box - 2, 6], fill=colour)
        if i % 2 == 0:
            draw.text((x, 7), f"{level:g}", fill=(0, 0, 0))
            draw.text((x, 18), rain_rate_label(level, scale), fill=(0, 0, 0))
    return key


def _frame_text(split: str, t: int, k_in: int, look: FrameLook, labels: tuple[str, str]) -> str:
    when = f"  {look.times[t]}" if t < len(look.times) else ""
    if t < k_in:
        return f"{split}  observed {t + 1}/{k_in}{when}"
    return f"{split}  lead {t - k_in + 1}{when}: {labels[0]} | {labels[1]}"


def sequence_gif(inputs: np.ndarray, target: np.ndarray, pred: np.ndarray, path: Path,
                 split: str, seconds_per_frame: float = 0.5,
                 labels: tuple[str, str] = ("observed", "forecast"),
                 look: FrameLook = FrameLook()) -> None:
    """Left: input, then the true future (or what `labels[0]` names: a forecast has no truth);
    right: input, then the prediction (red border); radar in colour with its key and credit."""
    h, w = inputs.shape[-2:]
    k_in = len(inputs)
    scale = max(1, 192 // max(h, w))
    masks = look.masks_for(k_in + len(target))
    footer = _radar_key(2 * w * scale + 12, look.radar) if look.radar else None
    extra = (footer.height + 14) if footer else 0
    frames = []
    for t in range(k_in + len(target)):
        observed = t < k_in
        left = inputs[t] if observed else target[t - k_in]
        right = inputs[t] if observed else pred[t - k_in]
        canvas = Image.new("RGB", (2 * w * scale + 12, h * scale + 22 + extra), "white")
        canvas.paste(_panel(left, scale, None, look, masks[t]), (0, 22))
        canvas.paste(_panel(right, scale, None if observed else (220, 30, 30), look, masks[t]),
                     (w * scale + 12, 22))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 4), _frame_text(split, t, k_in, look, labels), fill=(0, 0, 0))
        if footer:
            canvas.paste(footer, (0, h * scale + 24))
            draw.text((4, canvas.height - 12), f"radar data: {look.credit}"[:80], fill=(60, 60, 60))
        frames.append(np.asarray(canvas))
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=int(seconds_per_frame * 1000), loop=0)


def frame_strip(inputs: np.ndarray, target: np.ndarray, pred: np.ndarray, path: Path,
                title: str = "", look: FrameLook = FrameLook()) -> None:
    """Rows observed input / observed future / forecast for one test sequence (a still image
    for PDFs); radar in colour with a dBZ and mm/h scale, each column's time above it."""
    cols = max(len(inputs), len(target))
    k_in = len(inputs)
    fig, axes = plt.subplots(3, cols, figsize=(cols * 0.9 + (0.9 if look.radar else 0), 3.2),
                             squeeze=False)
    masks = look.masks_for(k_in + len(target))
    rows = (("input", inputs, 0), ("observed", target, k_in), ("forecast", pred, k_in))
    for row, (label, seq, offset) in enumerate(rows):
        for c in range(cols):
            ax = axes[row][c]
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            if c < len(seq):
                mask = masks[offset + c]
                ax.imshow(radar_rgba(seq[c], look.radar, mask) if look.radar else seq[c],
                          cmap=None if look.radar else "gray", vmin=0, vmax=1,
                          interpolation="nearest")
                if row < 2 and offset + c < len(look.times):
                    ax.set_title(look.times[offset + c], fontsize=6)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if look.radar:
        _radar_colourbar(fig, look.radar)
    if title or look.credit:
        fig.suptitle(title + (f" (radar data: {look.credit})" if look.credit else ""), fontsize=8)
    if look.radar:  # the colour bar has its own axes: place the panels by hand beside it
        fig.subplots_adjust(left=0.04, right=0.9, bottom=0.03, top=0.86, wspace=0.08, hspace=0.3)
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _radar_colourbar(fig, scale: RadarScale) -> None:
    """The dBZ scale right of the strip, its rain rates (Marshall-Palmer) on the other side."""
    cmap, norm, levels = radar_palette()
    cax = fig.add_axes((0.93, 0.12, 0.015, 0.76))
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax,
                       ticks=levels[::2])
    bar.ax.tick_params(labelsize=6)
    bar.set_label("dBZ (mm/h)", fontsize=6)
    bar.ax.set_yticklabels([f"{v:g} ({rain_rate_label(v, scale)})" for v in levels[::2]])


def cost_figure(points: list[tuple], lines: list[tuple[str, float]], metric: str, path: Path) -> None:
    """A headline metric against training FLOP: points (label, flop, value, low,
    high), low/high the seed group's interval or None; lines (label, value): baselines."""
    with plt.rc_context(REPORT_STYLE):
        fig, ax = plt.subplots(figsize=(6.2, 3.2), constrained_layout=True)
        cmap = plt.get_cmap("tab10" if len(points) <= 10 else "tab20")
        for i, (label, flop, value, low, high) in enumerate(points):
            err = None if low is None or high is None else [[value - low], [high - value]]
            ax.errorbar([flop / 1e15], [value], yerr=err, fmt=marker(i, cmap), ms=4, capsize=2,
                        color=cmap(i % cmap.N), label=label)
        for label, value in lines:
            style, grey = baseline_line(label)
            ax.axhline(plottable(value), ls=style, color=grey, lw=1.1, label=label)
        ax.set(xlabel="training PFLOP (10^15 FLOP)", ylabel=metric)
        ax.set_xlim(left=0)
        _legend_outside(fig, [ax])
        fig.savefig(path)
        plt.close(fig)
