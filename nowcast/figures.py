"""Figures of one run: loss curves, per-lead scores, train/test GIFs and a frame strip for PDFs."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

LABELS = {"mse_frame": "MSE per frame", "mae_frame": "MAE per frame", "ssim": "SSIM",
          "psnr": "PSNR (dB)", "mse_pixel255": "MSE per pixel (0-255)",
          "mae_pixel255": "MAE per pixel (0-255)"}


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
    ax.plot(steps, [r["train_loss"] for r in history], "o-", label="train (epoch mean)")
    ax.plot(steps, [r["val_loss"] for r in history], "s-", label="validation")
    _stage_lines(ax, history)
    ax.set(xlabel="optimiser step", ylabel=f"{loss_name} loss", title=title or "Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def loss_median_plot(batch_losses: list[dict], history: list[dict], loss_name: str, path: Path) -> None:
    """Every logged batch loss, and the median per epoch (robust to noisy batches)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([r["step"] for r in batch_losses], [r["loss"] for r in batch_losses],
            color="0.75", lw=0.6, label="batch loss")
    ax.plot([r["step"] for r in history], [r["train_loss_median"] for r in history],
            "o-", color="C3", label="median per epoch")
    _stage_lines(ax, history)
    ax.set(xlabel="optimiser step", ylabel=f"{loss_name} loss", title="Batch losses")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def per_lead_plot(metrics: dict, path: Path, names: list[str] | None = None) -> None:
    names = names or metrics.get("headline") or list(metrics["per_lead"])[:2]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = metrics["per_lead"][name]
        ax.plot(range(1, len(values) + 1), values, "o-", label="model")
        for base, scores in (metrics.get("baselines") or {}).items():
            if name in scores.get("per_lead", {}):
                ax.plot(range(1, len(values) + 1), scores["per_lead"][name], "--", label=base)
        ax.set(xlabel="lead time (frames)", title=LABELS.get(name, name))
        ax.grid(alpha=0.3)
        if metrics.get("baselines"):
            ax.legend(fontsize=7)
    _save(fig, path)


def _panel(frame: np.ndarray, scale: int, border: tuple[int, int, int] | None) -> Image.Image:
    img = Image.fromarray((np.clip(frame, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    img = img.resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
    if border:
        ImageDraw.Draw(img).rectangle([0, 0, img.width - 1, img.height - 1], outline=border, width=2)
    return img


def sequence_gif(inputs: np.ndarray, target: np.ndarray, pred: np.ndarray, path: Path,
                 split: str, seconds_per_frame: float = 0.5) -> None:
    """Left: input, then the true future; right: input, then the prediction (red border)."""
    h, w = inputs.shape[-2:]
    scale = max(1, 192 // max(h, w))
    frames = []
    for t in range(len(inputs) + len(target)):
        observed = t < len(inputs)
        left = inputs[t] if observed else target[t - len(inputs)]
        right = inputs[t] if observed else pred[t - len(inputs)]
        canvas = Image.new("RGB", (2 * w * scale + 12, h * scale + 22), "white")
        canvas.paste(_panel(left, scale, None), (0, 22))
        canvas.paste(_panel(right, scale, None if observed else (220, 30, 30)), (w * scale + 12, 22))
        text = (f"{split}  input {t + 1}/{len(inputs)}" if observed
                else f"{split}  lead {t - len(inputs) + 1}: truth | prediction")
        ImageDraw.Draw(canvas).text((4, 4), text, fill=(0, 0, 0))
        frames.append(np.asarray(canvas))
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=int(seconds_per_frame * 1000), loop=0)


def frame_strip(inputs: np.ndarray, target: np.ndarray, pred: np.ndarray, path: Path, title: str = "") -> None:
    """Rows input / truth / prediction for one test sequence (a still image for PDFs)."""
    cols = max(len(inputs), len(target))
    fig, axes = plt.subplots(3, cols, figsize=(cols * 0.9, 3.0), squeeze=False)
    for row, (label, seq) in enumerate((("input", inputs), ("truth", target), ("prediction", pred))):
        for c in range(cols):
            ax = axes[row][c]
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            if c < len(seq):
                ax.imshow(seq[c], cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
