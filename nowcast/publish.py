"""Report and slides from results folders: generated fragments, then render.

``build_report`` reads every ``results/<job_id>/`` folder (completed, failed and in-progress
``.running-<job_id>/`` ones) plus the committed ``reference_results/``, writes markdown fragments
and figures into ``report/_generated/``, then renders ``report/`` with Quarto when ``quarto`` is
on PATH, otherwise with pandoc (pypandoc-binary) -> HTML (self-contained, MathML) and pandoc ->
typst -> PDF (the ``typst`` Python bindings). ``build_slides`` does the same for the Marp deck in
``slides/`` (marp-cli from ``node_modules``; PDF when chromium is available).

Every number written here carries its protocol and data, taken from ``metrics.json``
(``protocol``, ``follows_protocol``, ``data``). Figures are regenerated only when their inputs
changed (content hash), and run artifacts are copied only when newer, so rebuilding a report over
many results folders takes seconds.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from .errors import NowcastError

def _project_root() -> Path:
    """The repository (editable install); else the current folder, for a copied checkout."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "report" / "index.qmd").is_file() else Path.cwd()


REPO = _project_root()
REPORT_DIR = REPO / "report"
SLIDES_DIR = REPO / "slides"
REFERENCE_DIR = REPO / "reference_results"
FIGURE_STYLE_VERSION = "3"  # bump to force regeneration of every generated figure

# --------------------------------------------------------------------------------------------
# Protocols, metrics and the published reference numbers (../shared/PROTOCOLS.md)
# --------------------------------------------------------------------------------------------

PROTOCOL_TITLES = {
    "mmnist-10": "MMNIST-10: Moving MNIST, 10 frames in, 10 out",
    "mmnist-t": "MMNIST-T: the thesis setting, 7 frames in, 7 out",
    "knmi-30-60": "KNMI-30/60: radar nowcasting, 30 min in, 60 min out",
    "none": "Runs that follow no protocol",
}
PROTOCOL_ORDER = ["mmnist-10", "mmnist-t", "knmi-30-60", "none"]

# key: (label, better direction: -1 lower is better, +1 higher is better)
METRIC_INFO: dict[str, tuple[str, int]] = {
    "mse_frame": ("MSE/frame", -1),
    "mae_frame": ("MAE/frame", -1),
    "mse_pixel255": ("MSE (0-255)", -1),
    "mae_pixel255": ("MAE (0-255)", -1),
    "ssim": ("SSIM", +1),
    "psnr": ("PSNR (dB)", +1),
    "mae_dbz": ("MAE (dBZ)", -1),
    "rmse_dbz": ("RMSE (dBZ)", -1),
}
for _t in (15, 20, 25, 30):
    METRIC_INFO[f"csi_{_t}"] = (f"CSI {_t}", +1)       # thresholds in dBZ (event: >=)
    METRIC_INFO[f"pod_{_t}"] = (f"POD {_t}", +1)
    METRIC_INFO[f"far_{_t}"] = (f"FAR {_t}", -1)
    METRIC_INFO[f"hss_{_t}"] = (f"HSS {_t}", +1)
    METRIC_INFO[f"fss_{_t}_5"] = (f"FSS {_t}, 20km", +1)
    METRIC_INFO[f"fss_{_t}_11"] = (f"FSS {_t}, 44km", +1)

# the columns of each protocol's table (in this order, when the run has them)
TABLE_METRICS = {
    "mmnist-10": ["mse_frame", "mae_frame", "ssim", "psnr"],
    "mmnist-t": ["mse_pixel255", "mae_pixel255", "ssim"],
    "knmi-30-60": ["csi_20", "fss_20_5", "fss_20_11", "pod_20", "far_20", "mae_dbz", "rmse_dbz"],
}
# the panels of the per-lead figure of each protocol
LEAD_METRICS = {
    "mmnist-10": ["mse_frame", "mae_frame", "ssim"],
    "mmnist-t": ["mse_pixel255", "mae_pixel255", "ssim"],
    "knmi-30-60": ["csi_20", "fss_20_5", "mae_dbz"],
}
# skill against persistence for radar: (metric, perfect score)
SKILL_METRICS = [("csi_20", 1.0), ("fss_20_5", 1.0), ("mae_dbz", 0.0), ("rmse_dbz", 0.0)]

# Published reference numbers (PROTOCOLS.md), as strings: printed with their published precision.
# They were measured on other test files, so the report calls the comparison indicative.
PUBLISHED: dict[str, list[dict[str, Any]]] = {
    "mmnist-10": [
        dict(model="ConvLSTM (PredRNN paper)", cite="wang2017predrnn", mean={"mse_frame": "103.3"}),
        dict(model="ConvLSTM-S, OpenSTL, 200 epochs", cite="tan2023openstl",
             mean={"mse_frame": "29.80", "ssim": "0.929"}),
        dict(model="ConvLSTM-S, OpenSTL, 2000 epochs", cite="tan2023openstl",
             mean={"mse_frame": "22.41"}),
        dict(model="PredRNN++, OpenSTL, 200 epochs", cite="tan2023openstl",
             mean={"mse_frame": "22.06"}),
    ],
    "mmnist-t": [
        dict(model="2-layer FC-LSTM 2048-2048", cite="wu2019thesis", parameters=92295168,
             mean={"mse_pixel255": "880.46", "mae_pixel255": "10.42"}),
        dict(model="1-layer ConvLSTM 128, 5x5", cite="wu2019thesis", parameters=3311617,
             mean={"mse_pixel255": "771.51", "mae_pixel255": "8.56"}),
        dict(model="2-layer ConvLSTM 64-64, 5x5", cite="wu2019thesis", parameters=2475521,
             mean={"mse_pixel255": "692.31", "mae_pixel255": "7.69"}),
        dict(model="3-layer ConvLSTM 64-32-32, 5x5", cite="wu2019thesis", parameters=1858049,
             mean={"mse_pixel255": "656.84", "mae_pixel255": "7.26"}),
    ],
}
PUBLISHED_NOTES = {
    "mmnist-10": ("Published numbers were measured on the public 10,000-sequence "
                  "`mnist_test_seq.npy` (some with a 7x7 SSIM window), not on our test file: "
                  "the comparison is indicative."),
    "mmnist-t": ("Published numbers: Wu (2019), Table 4.1, test split. The thesis drew its digits "
                 "from a pool of 500; our splits use each split's whole digit pool."),
}

STATUS_LABEL = {"completed": "completed", "failed": "**failed**", "running": "running",
                "unreadable": "**unreadable**"}

# --------------------------------------------------------------------------------------------
# Reading results folders
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    path: Path
    job_id: str
    name: str
    status: str                     # completed | failed | running | unreadable
    error: Optional[str] = None
    reference: bool = False
    params: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    metrics: Optional[dict] = None
    started: Optional[str] = None
    ended: Optional[str] = None

    @property
    def slug(self) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.job_id).strip("._") or "run"
        return ("ref-" if self.reference else "") + base

    @property
    def protocol(self) -> str:
        m = self.metrics or {}
        return str(m.get("protocol") or self.params.get("protocol") or "none")

    @property
    def follows_protocol(self) -> bool:
        m = self.metrics or {}
        return bool(m.get("follows_protocol", self.protocol != "none")) and self.protocol != "none"

    @property
    def group(self) -> str:
        """The table a run's numbers go to: its protocol, or 'none' when it follows none."""
        return self.protocol if self.follows_protocol else "none"

    @property
    def data(self) -> str:
        return str((self.metrics or {}).get("data") or "data not recorded")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.job_id})" if self.name and self.name != self.job_id else self.job_id

    def file(self, name: str) -> Optional[Path]:
        p = self.path / name
        return p if p.is_file() else None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _read_run(path: Path, reference: bool) -> Optional[Run]:
    """One results folder -> Run; None when the folder is not a results folder at all."""
    status_file, metrics_file = path / "status.json", path / "metrics.json"
    if not status_file.exists() and not metrics_file.exists():
        return None
    job_id = path.name[len(".running-"):] if path.name.startswith(".running-") else path.name
    run = Run(path=path, job_id=job_id, name=job_id, status="completed", reference=reference)
    problems = []
    try:
        if status_file.exists():
            st = _read_json(status_file)
            run.status = str(st.get("status") or "unreadable")
            run.job_id = str(st.get("job_id") or job_id)
            run.name = str(st.get("name") or run.job_id)
            run.error = st.get("error")
            run.started, run.ended = st.get("started"), st.get("ended")
        elif path.name.startswith(".running-"):
            run.status = "running"
    except (OSError, ValueError, AttributeError) as e:
        problems.append(f"status.json unreadable ({e})")
    for attr, fname, loader in (("params", "params.yaml", lambda p: yaml.safe_load(p.read_text())),
                                ("env", "env.json", _read_json)):
        f = path / fname
        if f.exists():
            try:
                value = loader(f)
                setattr(run, attr, value if isinstance(value, dict) else {})
            except (OSError, ValueError, yaml.YAMLError) as e:
                problems.append(f"{fname} unreadable ({str(e).splitlines()[0]})")
    if metrics_file.exists() and run.status != "running":
        try:
            m = _read_json(metrics_file)
            if not isinstance(m, dict) or not isinstance(m.get("mean", {}), dict):
                raise ValueError("not a metrics object")
            run.metrics = m
        except (OSError, ValueError) as e:
            problems.append(f"metrics.json unreadable ({e})")
    if run.name == run.job_id and run.params.get("name"):
        run.name = str(run.params["name"])
    if run.status == "completed" and run.metrics is None:
        problems.append("metrics.json missing")
    if problems:
        run.status = "unreadable" if run.status == "completed" else run.status
        run.error = "; ".join(([run.error] if run.error else []) + problems)
    return run


def find_runs(results_dirs: Iterable[Path | str],
              reference_dirs: Iterable[Path | str] = ()) -> list[Run]:
    """Every run under the given results folders (a folder may also be one run itself)."""
    runs: list[Run] = []
    for dirs, reference in ((results_dirs, False), (reference_dirs, True)):
        for d in dirs:
            d = Path(d)
            if not d.is_dir():  # a fresh clone has no results/ yet: the reference runs suffice
                continue
            single = _read_run(d, reference)
            if single is not None:
                runs.append(single)
                continue
            for child in sorted(d.iterdir()):
                if not child.is_dir():
                    continue
                if child.name.startswith(".") and not child.name.startswith(".running-"):
                    continue
                r = _read_run(child, reference)
                if r is not None:
                    runs.append(r)
    # de-duplicate slugs (two results roots may hold the same job id)
    seen: dict[str, int] = {}
    for r in runs:
        n = seen.get(r.slug, 0)
        seen[r.slug] = n + 1
        if n:
            r.job_id = f"{r.job_id}~{n}"
    order = {s: i for i, s in enumerate(["completed", "running", "failed", "unreadable"])}
    runs.sort(key=lambda r: (r.reference, PROTOCOL_ORDER.index(r.group)
                             if r.group in PROTOCOL_ORDER else 9,
                             order.get(r.status, 9), r.started or "", r.job_id))
    return runs


def _no_runs_error(results_dirs: list[Path], reference_dirs: list[Path]) -> NowcastError:
    where = ", ".join(str(d) + ("" if Path(d).is_dir() else " (does not exist)")
                      for d in list(results_dirs) + list(reference_dirs)) or "(none given)"
    return NowcastError(f"no results found in {where}: train a model first "
                        f"(nowcast train -c params/<name>.yaml, or make demo)")


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def fmt_value(x: Any) -> str:
    """A metric value as the report prints it (tests use this to find numbers in the PDF)."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, str):  # already formatted (published numbers keep their precision)
        return x
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if x != x:
        return "NaN"
    a = abs(x)
    text = f"{a:.2f}" if a >= 1 else f"{a:.3f}"
    return ("\u2212" + text) if x < 0 and float(text) != 0 else text  # a true minus sign


def fmt_loss(x: Any) -> str:
    if x is None:
        return "–"
    try:
        return f"{float(x):.4f}".replace("-", "\u2212")
    except (TypeError, ValueError):
        return str(x)


def fmt_seconds(s: Any) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d} min"


def _cell(text: Any) -> str:
    """Safe text for a pipe-table cell."""
    return re.sub(r"(?<!\\)\|", r"\\|", str(text).replace("\n", " "))


def _esc(text: Any) -> str:
    """Markdown-escape free text (job ids with underscores, error messages)."""
    s = str(text).replace("\n", " ")
    return re.sub(r"([\\`*_{}\[\]<>#|@$~^])", r"\\\1", s)


def _table(header: list[str], rows: list[list[str]], caption: str = "", ident: str = "",
           align: Optional[str] = None) -> str:
    align = align or ("l" + "r" * (len(header) - 1))
    # pandoc sizes wide pipe-table columns by the dashes of the separator line: make them
    # proportional to the longest cell (headers wrap at spaces, so count their longest word)
    widths = []
    for i, h in enumerate(header):
        head = len(h) if len(h) <= 12 else max([len(w) for w in h.split()] + [len(h) // 2])
        cells = [len(re.sub(r"\[@[^\]]*\]|[*\\]", "", str(r[i]))) for r in rows if i < len(r)]
        longest = max([head] + cells + [3])
        widths.append(max(4, min(longest, 24)) + 3)
    def mark(a: str, w: int) -> str:
        return {"l": ":" + "-" * (w - 1), "r": "-" * (w - 1) + ":", "c": ":" + "-" * (w - 2) + ":"}[a]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(mark(a, w) for a, w in zip(align, widths)) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if caption:
        lines += ["", f": {caption}" + (f" {{#{ident}}}" if ident else "")]
    return "\n".join(lines) + "\n"


def _env(run: Run, *keys: str) -> Any:
    """First present key of env.json; 'a.b' digs into nested mappings."""
    for key in keys:
        cur: Any = run.env
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur not in (None, ""):
            return cur
    return None


def _commit(run: Run) -> str:
    c = _env(run, "git_commit", "git.commit", "commit")
    if not c:
        return "–"
    dirty = _env(run, "git_dirty", "git.dirty", "dirty")
    return str(c)[:10] + (" (dirty)" if dirty else "")


def _device(run: Run) -> str:
    d = _env(run, "device_name", "gpu", "device")
    if isinstance(d, dict):
        d = d.get("name") or d.get("type") or json.dumps(d)
    return str(d) if d else "–"


def _wall(run: Run) -> str:
    return fmt_seconds(_env(run, "wall_seconds", "runtime_seconds", "seconds"))


def _architecture(run: Run) -> str:
    p = run.params
    arch = (run.metrics or {}).get("architecture") or p.get("architecture") or "?"
    names = {"convlstm_ed": "ConvLSTM-ED", "encoder_forecaster": "ConvLSTM-EF",
             "fc_lstm": "FC-LSTM", "persistence": "persistence",
             "extrapolation": "optical-flow extrapolation"}
    text = names.get(arch, str(arch))
    hs = p.get("hidden_sizes")
    if hs and arch not in ("persistence", "extrapolation"):
        text += " " + "-".join(str(h) for h in hs)
        fs = p.get("filter_size")
        if isinstance(fs, int):
            text += f", {fs}x{fs}"
        elif isinstance(fs, list) and fs:
            text += ", " + "/".join(f"{k}x{k}" for k in fs)
    return text


def _default_params() -> dict:
    try:
        from .config import Config
        return Config().to_dict()
    except Exception:  # the report must not depend on the core's import health
        return {}


_DEFAULTS: Optional[dict] = None


def nondefault_params(run: Run) -> dict:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = _default_params()
    skip = {"name", "job_id", "results_dir", "data_dir", "protocol"}
    return {k: v for k, v in run.params.items()
            if k not in skip and (k not in _DEFAULTS or _DEFAULTS[k] != v)}


def _param_text(d: dict) -> str:
    def v(x):
        if isinstance(x, list):
            return "[" + ",".join(str(i) for i in x) + "]"
        return str(x)
    return ", ".join(f"{k}={v(x)}" for k, x in d.items()) or "defaults"


# --------------------------------------------------------------------------------------------
# Incremental file helpers
# --------------------------------------------------------------------------------------------


def _copy_if_newer(src: Path, dst: Path) -> Path:
    try:
        s = src.stat()
        d = dst.stat()
        if d.st_size == s.st_size and d.st_mtime_ns >= s.st_mtime_ns:
            return dst
    except FileNotFoundError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return dst


def _write_if_changed(path: Path, text: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _needs(path: Path, digest: str) -> bool:
    stamp = path.with_name("." + path.name + ".hash")
    return not (path.exists() and stamp.exists() and stamp.read_text() == digest)


def _stamp(path: Path, digest: str) -> None:
    path.with_name("." + path.name + ".hash").write_text(digest)


_PLT = None


def _plt():
    global _PLT
    if _PLT is None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                             "axes.grid": True, "grid.alpha": 0.3, "savefig.dpi": 150,
                             "figure.dpi": 100, "legend.fontsize": 7, "legend.frameon": False})
        _PLT = plt
    return _PLT


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _series(run: Run) -> list[tuple[str, dict, str]]:
    """(label, per_lead, style) for a run and its baselines."""
    m = run.metrics or {}
    out = [(run.label, m.get("per_lead") or {}, "-")]
    for bname, b in (m.get("baselines") or {}).items():
        if isinstance(b, dict) and b.get("per_lead"):
            out.append((f"{bname} [{run.job_id}]", b["per_lead"], "--"))
    return out


def per_lead_figure(runs: list[Run], group: str, out: Path) -> Optional[Path]:
    """Per-lead-time panels, one line per model and baseline; None when nothing to plot."""
    metrics = LEAD_METRICS.get(group)
    if metrics is None:
        seen: list[str] = []
        for r in runs:
            for k in (r.metrics or {}).get("headline") or []:
                if k not in seen:
                    seen.append(k)
        metrics = seen[:3]
    data = []
    for r in runs:
        for label, pl, style in _series(r):
            lines = {k: pl.get(k) for k in metrics if isinstance(pl.get(k), list) and pl.get(k)}
            if lines:
                data.append((label, style, lines))
    metrics = [k for k in metrics if any(k in d[2] for d in data)]
    if not data or not metrics:
        return None
    digest = _digest([FIGURE_STYLE_VERSION, metrics, data])
    if not _needs(out, digest):
        return out
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 1.2, 2.7),
                             squeeze=False, constrained_layout=True)
    model_labels = [d[0] for d in data if d[1] == "-"]
    cmap = plt.get_cmap("tab10" if len(model_labels) <= 10 else "tab20")
    for ax, key in zip(axes[0], metrics):
        ci = 0
        for label, style, lines in data:
            if key not in lines:
                continue
            y = lines[key]
            color = cmap(model_labels.index(label) % cmap.N) if style == "-" else "0.45"
            if style == "-":
                ci += 1
            ax.plot(range(1, len(y) + 1), y, style, color=color, lw=1.4,
                    marker="o" if style == "-" else None, ms=2.5, label=label)
        name, better = METRIC_INFO.get(key, (key, 0))
        parts = key.split("_")
        if parts[0] in ("csi", "pod", "far", "hss", "fss") and len(parts) > 1:
            name = f"{parts[0].upper()} {parts[1]} dBZ" + (
                f", {'20' if parts[2] == '5' else '44' if parts[2] == '11' else parts[2]} km"
                if len(parts) > 2 else "")
        ax.set_title(name + (" (lower is better)" if better < 0 else " (higher is better)"
                             if better > 0 else ""), fontsize=8)
        ax.set_xlabel("lead time (frames)" if group != "knmi-30-60" else "lead time (x 5 min)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="outside right center")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    _stamp(out, digest)
    return out


def _history(run: Run) -> list[dict]:
    f = run.file("history.csv")
    if f is None:
        return []
    try:
        with open(f, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error):
        return []


def loss_overview_figure(runs: list[Run], out: Path) -> Optional[Path]:
    """Validation loss of every run against optimiser step, one panel per loss function."""
    curves = []
    for r in runs:
        rows = _history(r)
        pts = []
        for i, row in enumerate(rows):
            try:
                x = float(row.get("step") or i)
                y = float(row.get("val_loss") or row.get("train_loss"))
            except (TypeError, ValueError):
                continue
            pts.append((x, y))
        if pts:
            loss = str(r.params.get("loss") or ((r.metrics or {}).get("losses") or {}).get("loss")
                       or "loss")
            curves.append((r.label, loss, pts))
    if not curves:
        return None
    digest = _digest([FIGURE_STYLE_VERSION, curves])
    if not _needs(out, digest):
        return out
    plt = _plt()
    losses = sorted({c[1] for c in curves})
    fig, axes = plt.subplots(1, len(losses), figsize=(3.6 * len(losses) + 1.4, 2.7),
                             squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    for ax, loss in zip(axes[0], losses):
        for i, (label, l, pts) in enumerate(curves):
            if l != loss:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", marker="o", ms=2,
                    color=cmap(i % 10), lw=1.2, label=label)
        ax.set_title(f"validation loss ({loss})", fontsize=8)
        ax.set_xlabel("optimiser step")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right center")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    _stamp(out, digest)
    return out


# --------------------------------------------------------------------------------------------
# Report fragments
# --------------------------------------------------------------------------------------------


RUN_FILES = ("loss.png", "loss_median.png", "per_lead.png", "test_strip.png", "train.gif", "test.gif")


def _copy_artifacts(runs: list[Run], gen: Path, files: Iterable[str] = RUN_FILES) -> None:
    keep = {r.slug for r in runs}
    if (gen / "runs").is_dir():  # runs whose results folder is gone leave no stale copies
        for old in (gen / "runs").iterdir():
            if old.is_dir() and old.name not in keep:
                shutil.rmtree(old)
    for r in runs:
        for name in files:
            src = r.file(name)
            if src is not None:
                _copy_if_newer(src, gen / "runs" / r.slug / name)


def _protocol_caption(group: str, runs: list[Run]) -> str:
    if group == "none":
        return "following no protocol (numbers are not comparable with published ones)"
    return f"protocol {group}"


def _data_note(runs: list[Run]) -> str:
    datas = sorted({r.data for r in runs})
    if len(datas) == 1:
        return f"Data: {_esc(datas[0])}."
    return "Data: " + "; ".join(f"{_esc(r.job_id)}: {_esc(r.data)}" for r in runs) + "."


def results_table(group: str, runs: list[Run], ident: str) -> str:
    """The thesis's Table 4.1 for one protocol: ours beside the published numbers."""
    keys = list(TABLE_METRICS.get(group, []))
    for r in runs:  # a run's headline metrics always appear, first when the table is generic
        for k in (r.metrics or {}).get("headline") or []:
            if k not in keys and k in ((r.metrics or {}).get("mean") or {}):
                keys.append(k)
    if group not in TABLE_METRICS:
        for r in runs:
            for k in ((r.metrics or {}).get("mean") or {}):
                if k not in keys and len(keys) < 5:
                    keys.append(k)
    present = [k for k in keys if any(k in ((r.metrics or {}).get("mean") or {}) for r in runs)
               or any(k in p["mean"] for p in PUBLISHED.get(group, []))]
    loss_names = sorted({str(((r.metrics or {}).get("losses") or {}).get("loss") or "loss")
                         for r in runs})
    header = (["Model (job)", "Params"]
              + [f"{METRIC_INFO.get(k, (k, 0))[0]} {'↓' if METRIC_INFO.get(k, (k, 0))[1] < 0 else '↑'}"
                 for k in present]
              + ["Train loss", "Val. loss", "Test loss", "Wall time", "Device"])
    rows = []
    for r in runs:
        m = r.metrics or {}
        mean = m.get("mean") or {}
        losses = m.get("losses") or {}
        ref = " (reference)" if r.reference else ""
        rows.append([f"{_esc(r.name)}{ref} ({_esc(r.job_id)})", fmt_value(m.get("parameters"))]
                    + [fmt_value(mean.get(k)) for k in present]
                    + [fmt_loss(losses.get(s)) for s in ("train", "val", "test")]
                    + [_wall(r), _esc(_device(r))])
        for bname, b in (m.get("baselines") or {}).items():
            bmean = (b or {}).get("mean") or {}
            rows.append([f"*{_esc(bname)}* ({_esc(r.job_id)})", "0"]
                        + [fmt_value(bmean.get(k)) for k in present] + ["–"] * 5)
    for p in PUBLISHED.get(group, []):
        rows.append([f"*{p['model']}* [@{p['cite']}]", fmt_value(p.get("parameters"))]
                    + [fmt_value(p["mean"].get(k)) if k in p["mean"] else "–" for k in present]
                    + ["–"] * 5)
    caption = (f"Test-set results, {_protocol_caption(group, runs)}; ours first, then "
               + ("published results in italics (cited), " if group in PUBLISHED else "")
               + ("baselines in italics, " if any((r.metrics or {}).get("baselines") for r in runs) else "")
               + ("CSI/POD/FAR/FSS at the threshold in dBZ the column names (event: value >= "
                  "threshold), FSS over 20 km or 44 km neighbourhoods; " if group == "knmi-30-60" else "")
               + f"metrics are means over lead "
               f"times, losses ({'/'.join(loss_names)}) are the final mean training losses on each split. "
               f"{_data_note(runs)}")
    out = _table(header, rows, caption, ident)
    if group in PUBLISHED_NOTES:
        out += f"\n{PUBLISHED_NOTES[group]}\n"
    return out


def skill_table(runs: list[Run], ident: str) -> Optional[str]:
    """Skill against each baseline: SS = (S - S_ref) / (S_perfect - S_ref)."""
    rows = []
    keys = [(k, p) for k, p in SKILL_METRICS
            if any(k in ((r.metrics or {}).get("mean") or {}) for r in runs)]
    for r in runs:
        m = r.metrics or {}
        mean = m.get("mean") or {}
        for bname, b in (m.get("baselines") or {}).items():
            bmean = (b or {}).get("mean") or {}
            cells = []
            for k, perfect in keys:
                s, s0 = mean.get(k), bmean.get(k)
                try:
                    cells.append(fmt_value((float(s) - float(s0)) / (perfect - float(s0))))
                except (TypeError, ValueError, ZeroDivisionError):
                    cells.append("–")
            rows.append([_esc(r.label), _esc(bname)] + cells)
    if not rows or not keys:
        return None
    header = ["Model", "Against"] + [f"skill {METRIC_INFO.get(k, (k, 0))[0]}" for k, _ in keys]
    align = "ll" + "r" * len(keys)
    caption = (f"Skill scores against the baselines (protocol knmi-30-60; 0: no better than the "
               f"baseline, 1: perfect). {_data_note(runs)}")
    return _table(header, rows, caption, ident, align=align)


def _fig(path: str, caption: str, ident: str, width: str = "100%") -> str:
    return f"![{caption}]({path}){{#{ident} width={width}}}\n"


def _html_only(text: str) -> str:
    return f'::: {{.content-visible when-format="html"}}\n{text}\n:::\n'


def _not_html(text: str) -> str:
    return f'::: {{.content-hidden when-format="html"}}\n{text}\n:::\n'


def write_report_fragments(runs: list[Run], gen: Path) -> dict[str, Path]:
    """All generated markdown fragments and figures of the report; returns name -> path."""
    gen.mkdir(parents=True, exist_ok=True)
    _copy_artifacts([r for r in runs if r.status != "running"], gen)
    completed = [r for r in runs if r.status == "completed" and r.metrics]
    frags: dict[str, str] = {}

    # --- summary (abstract / experiments) ----------------------------------------------------
    counts = {s: sum(r.status == s for r in runs) for s in ("completed", "running", "failed", "unreadable")}
    groups = [g for g in PROTOCOL_ORDER if any(r.group == g for r in completed)]
    n_ref = sum(r.reference for r in runs)
    summary = (f"This build of the report reads {len(runs)} results folder"
               f"{'s' if len(runs) != 1 else ''} ({counts['completed']} completed, "
               f"{counts['running']} running, {counts['failed']} failed"
               + (f", {counts['unreadable']} unreadable" if counts["unreadable"] else "")
               + (f"; {n_ref} of them committed reference runs" if n_ref else "")
               + "). Completed runs by protocol: "
               + (", ".join(f"{g}: {sum(r.group == g for r in completed)}" for g in groups) or "none")
               + ".\n")
    frags["summary.md"] = summary

    # --- status of every run ------------------------------------------------------------------
    rows = []
    for r in runs:
        err = _esc(r.error)[:160] if r.error else ""
        rows.append([_esc(r.name), _esc(r.job_id), STATUS_LABEL.get(r.status, _esc(r.status)),
                     r.group if r.status == "completed" else _esc(r.protocol),
                     _esc((r.started or "–")[:16].replace("T", " ")), err])
    frags["runs.md"] = _table(["Run", "Job", "Status", "Protocol", "Started (UTC)", "Error"], rows,
                              "Every results folder this report read, with its status; a failed "
                              "run keeps the error it ended with.", "tbl-runs", align="llllll")

    # --- models: parameter counts ------------------------------------------------------------
    seen: dict[str, list[str]] = {}
    pcount: dict[str, Any] = {}
    for r in completed:
        if (r.metrics or {}).get("architecture") in ("persistence", "extrapolation"):
            continue
        a = _architecture(r)
        seen.setdefault(a, []).append(r.job_id)
        pcount[a] = (r.metrics or {}).get("parameters")
    if seen:
        frags["models.md"] = _table(
            ["Architecture (hidden sizes, filter)", "Parameters", "Runs"],
            [[_esc(a), fmt_value(pcount[a]), _esc(", ".join(j[:4])) + (" ..." if len(j) > 4 else "")]
             for a, j in seen.items()],
            "Trainable parameters of the architectures trained in this report "
            "(counted by the training code, metrics.json).", "tbl-models", align="lrl")
    else:
        frags["models.md"] = "*No completed run yet: parameter counts appear here once one finishes.*\n"

    # --- experiments: params of every run -------------------------------------------------------
    rows = [[_esc(r.label), r.protocol, _esc(_param_text(nondefault_params(r)))] for r in runs]
    frags["experiments.md"] = _table(["Run", "Protocol", "Parameters that differ from the defaults"],
                                     rows, "The params set of every run (full set: params.yaml "
                                     "in its results folder).", "tbl-params", align="lll")

    # --- results per protocol ---------------------------------------------------------------
    parts = []
    if not completed:
        parts.append("*No run has completed yet: tables and figures appear here once one does.*\n")
    for g in groups:
        gruns = [r for r in completed if r.group == g]
        parts.append(f"## {PROTOCOL_TITLES.get(g, g)} {{#sec-results-{g}}}\n")
        protos = sorted({r.protocol for r in gruns})
        if g == "none":
            parts.append("These runs follow no evaluation protocol (an ad-hoc data file, the "
                         "fallback digits, or changed protocol settings"
                         + (f"; declared protocol: {', '.join(protos)}" if protos != ["none"] else "")
                         + "). Their numbers describe their own data only.\n")
        parts.append(results_table(g, gruns, f"tbl-results-{g}"))
        fig = per_lead_figure(gruns, g, gen / "fig" / f"per_lead-{g}.png")
        if fig is not None:
            parts.append(_fig(f"_generated/fig/{fig.name}",
                              f"Scores by lead time, {_protocol_caption(g, gruns)}: one line per "
                              "model (solid) and baseline (dashed). " + _data_note(gruns),
                              f"fig-lead-{g}"))
        if g == "knmi-30-60":
            sk = skill_table(gruns, "tbl-skill")
            if sk:
                parts.append(sk)
    frags["results.md"] = "\n".join(parts)

    # --- training: loss curves, test sequences -------------------------------------------------
    parts = []
    fig = loss_overview_figure([r for r in runs if r.status != "running"], gen / "fig" / "val_loss.png")
    if fig is not None:
        parts.append(_fig("_generated/fig/val_loss.png", "Validation loss during training, every "
                          "run with a history (history.csv).", "fig-val-loss"))
    for r in runs:
        if r.status == "running":
            continue
        have = {n: (gen / "runs" / r.slug / n).exists() for n in RUN_FILES}
        if not any(have.values()) and r.status == "completed":
            continue
        proto = (("no protocol" if r.group == "none" else f"protocol {r.group}")
                 + f"; data: {_esc(r.data)}" if r.metrics else "no metrics")
        parts.append(f"### {_esc(r.label)} {{#sec-run-{r.slug} .unnumbered}}\n")
        if r.status != "completed":
            parts.append(f"Status: **{r.status}**" + (f": `{r.error}`" if r.error else "") + "\n")
        if have["loss.png"]:
            parts.append(_fig(f"_generated/runs/{r.slug}/loss.png",
                              f"Training and validation loss of {_esc(r.label)}.",
                              f"fig-loss-{r.slug}", "55%"))
        if have["test.gif"]:
            parts.append(_html_only(_fig(
                f"_generated/runs/{r.slug}/test.gif",
                f"A test-split sequence of {_esc(r.label)} ({proto}): left, the input then the "
                "target frames; right, the same input then the prediction (red border).",
                f"fig-gif-{r.slug}", "60%")))
        if have["test_strip.png"]:
            strip = _fig(f"_generated/runs/{r.slug}/test_strip.png",
                         f"A test-split sequence of {_esc(r.label)} ({proto}): input frames, "
                         "target frames and prediction.", f"fig-strip-{r.slug}")
            parts.append(_not_html(strip) if have["test.gif"] else strip)
    frags["training.md"] = "\n".join(parts) if parts else "*No training history yet.*\n"

    # --- provenance --------------------------------------------------------------------------
    rows = []
    for r in runs:
        rows.append([_esc(r.job_id), _esc(r.name), r.status, _esc(_commit(r)), _esc(_device(r)),
                     _esc(str(_env(r, "precision") or "–")), _wall(r),
                     _esc((r.ended or r.started or "–")[:16].replace("T", " ")),
                     "reference_results" if r.reference else _esc(r.path.parent.name + "/")])
    frags["provenance.md"] = _table(
        ["Job", "Run", "Status", "Git commit", "Device", "Precision", "Wall time", "Ended (UTC)",
         "Folder"], rows, "Provenance of every run (env.json, status.json).", "tbl-provenance",
        align="lllllllll")
    vers = []
    for r in runs:
        v = _env(r, "versions")
        if isinstance(v, dict) and v:
            vers.append([_esc(r.job_id)] + [_esc(", ".join(f"{k} {x}" for k, x in v.items()))])
    if vers:
        frags["provenance.md"] += "\n" + _table(["Job", "Software versions"], vers,
                                                "Software versions of every run (env.json).",
                                                "tbl-versions", align="ll")

    for name, text in frags.items():
        _write_if_changed(gen / name, text)
    return {name: gen / name for name in frags}


# --------------------------------------------------------------------------------------------
# Rendering the report
# --------------------------------------------------------------------------------------------

INCLUDE = re.compile(r"^\{\{<\s*include\s+(\S+)\s*>\}\}\s*$", re.M)


def expand_includes(text: str, base: Path, depth: int = 0) -> str:
    """Quarto's {{< include path >}} shortcode, resolved as Quarto does (relative to base)."""
    if depth > 5:
        raise NowcastError(f"{base}: includes nested too deeply")

    def sub(m: re.Match) -> str:
        path = base / m.group(1)
        if not path.is_file():
            raise NowcastError(f"{path}: included file missing")
        return expand_includes(path.read_text(), path.parent if depth else base, depth + 1)
    return INCLUDE.sub(sub, text)


def _pandoc() -> str:
    try:
        import pypandoc
        return pypandoc.get_pandoc_path()
    except Exception:
        exe = shutil.which("pandoc")
        if exe:
            return exe
        raise NowcastError("pandoc not found: install pypandoc-binary (pip install "
                           "'nowcast[report]') or Quarto") from None


def _run(cmd: list[str], cwd: Path, what: str, env: Optional[dict] = None) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise NowcastError(f"{what} failed: {' | '.join(msg[-5:]) or f'exit {p.returncode}'}")


def _inputs_digest(files: Iterable[Path], extra: Any = None) -> str:
    """Names, sizes and mtimes of the inputs of a render: unchanged inputs, no re-render."""
    stats = []
    for f in sorted(set(files)):
        try:
            st = f.stat()
            stats.append((str(f), st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            stats.append((str(f), None))
    return _digest([FIGURE_STYLE_VERSION, stats, extra])


def _render_pandoc(report_dir: Path, out_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    gen = report_dir / "_generated"
    src = expand_includes((report_dir / "index.qmd").read_text(), report_dir)
    combined = gen / "report.md"
    _write_if_changed(combined, src)
    targets = {"html": out_dir / "report.html", "pdf": out_dir / "report.pdf"}
    wanted = [targets[f] for f in formats if f in targets]
    inputs = [p for p in gen.rglob("*") if p.is_file() and not p.name.startswith(".")
              and p.suffix not in (".typ", ".partial")]
    inputs += [p for p in report_dir.iterdir() if p.is_file()]
    digest = _inputs_digest(inputs, [str(w) for w in wanted])
    stamp = out_dir / ".render.hash"
    if all(w.exists() for w in wanted) and stamp.exists() and stamp.read_text() == digest:
        return wanted  # nothing changed since the last render
    pandoc = _pandoc()
    out_dir.mkdir(parents=True, exist_ok=True)
    common = [pandoc, str(combined.relative_to(report_dir)), "-f", "markdown", "--standalone",
              "--lua-filter", "crossref.lua", "--citeproc", "--bibliography", "references.bib",
              "--resource-path", ".", "--metadata", "link-citations=true",
              "--metadata", f"date={_dt.date.today().isoformat()}"]  # Quarto's `date: today`
    outputs = []
    if "html" in formats:
        html = out_dir / "report.html"
        cmd = common + ["-t", "html5", "--embed-resources", "--mathml", "--toc", "--toc-depth=2",
                        "--number-sections", "--css", "style.css", "-o", str(html.resolve())]
        _run(cmd, report_dir, "pandoc (HTML)")
        outputs.append(html)
    if "pdf" in formats:
        typ = gen / "report.typ"
        cmd = common + ["-t", "typst", "--toc", "--toc-depth=2",
                        "-V", "section-numbering=1.1.", "-V", "page-numbering=1",
                        "-V", "papersize=a4", "-V", "fontsize=10.5pt",
                        "-V", "mainfont=Libertinus Serif", "-V", "margin.x=2.2cm", "-V", "margin.y=2.4cm",
                        "--include-in-header", "style.typ", "-o", str(typ.relative_to(report_dir))]
        _run(cmd, report_dir, "pandoc (typst)")
        try:
            import typst
        except ImportError:
            raise NowcastError("the typst Python package is missing: pip install 'nowcast[report]'") from None
        pdf = out_dir / "report.pdf"
        try:
            typst.compile(str(typ), output=str(pdf), root=str(report_dir))
        except Exception as e:  # typst raises its own error type with the source location
            raise NowcastError(f"typst failed on {typ}: {str(e).strip().splitlines()[0]}") from None
        outputs.append(pdf)
    stamp.write_text(digest)
    return outputs


def _render_quarto(report_dir: Path, out_dir: Path) -> list[Path]:
    _run(["quarto", "render", str(report_dir)], report_dir, "quarto render")
    made = report_dir / "_output"
    outputs = [made / "report.html", made / "report.pdf"]
    if out_dir.resolve() != made.resolve():
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs = [Path(shutil.copy2(p, out_dir / p.name)) for p in outputs if p.exists()]
    return outputs


def build_report(results_dirs: list[Path], out_dir: Optional[Path] = None, *,
                 reference_dirs: Optional[list[Path]] = None, report_dir: Optional[Path] = None,
                 renderer: str = "auto", formats: tuple[str, ...] = ("html", "pdf"),
                 quiet: bool = False) -> Path:
    """Build the report from results folders; returns the output folder (report.html, report.pdf).

    results_dirs: results roots (each holding <job_id>/ folders) or single run folders.
    reference_dirs: default [reference_results/] of the repository when it exists.
    report_dir: the Quarto project (default report/ of the repository); fragments go to its
    _generated/. renderer: 'auto' (quarto when on PATH, else pandoc), 'quarto' or 'pandoc'.
    """
    report_dir = Path(report_dir or REPORT_DIR).resolve()
    out_dir = Path(out_dir).resolve() if out_dir else report_dir / "_output"
    results_dirs = [Path(d) for d in results_dirs]
    if reference_dirs is None:
        reference_dirs = [REFERENCE_DIR] if REFERENCE_DIR.is_dir() else []
    if not (report_dir / "index.qmd").is_file():
        raise NowcastError(f"{report_dir}: not a report project (index.qmd missing)")
    runs = find_runs(results_dirs, reference_dirs)
    if not runs:
        raise _no_runs_error(results_dirs, reference_dirs)
    write_report_fragments(runs, report_dir / "_generated")
    use_quarto = renderer == "quarto" or (renderer == "auto" and shutil.which("quarto"))
    if use_quarto:
        outputs = _render_quarto(report_dir, out_dir)
    else:
        outputs = _render_pandoc(report_dir, out_dir, formats)
    if not quiet:
        for p in outputs:
            print(f"wrote {p}")
    return out_dir


# --------------------------------------------------------------------------------------------
# Slides
# --------------------------------------------------------------------------------------------

SLIDE_PARAMS = ["architecture", "hidden_sizes", "filter_size", "stride", "loss", "batch_size",
                "num_epochs", "curriculum", "initial_lr"]
SLIDE_PARAMS_MAX = 10
SLIDE_SKIP = {"name", "job_id", "results_dir", "data_dir", "data_file", "protocol", "device",
              "checkpoint_every", "compile", "precision"}


BASELINE_PARAMS = ["dataset", "k_in", "k_out", "radar_recipe", "block_size"]


def slide_params(run: Run) -> list[tuple[str, Any]]:
    """The hyperparameters a slide lists: the main ones, then those changed from the defaults.
    A baseline (no trainable parameters) has no model hyperparameters: only its method and data."""
    if (run.metrics or {}).get("parameters") == 0:
        return [("method", run.metrics.get("architecture"))] + [
            (k, run.params[k]) for k in BASELINE_PARAMS if k in run.params]
    out = [(k, run.params[k]) for k in SLIDE_PARAMS if run.params.get(k) is not None]
    for k, v in nondefault_params(run).items():
        if len(out) >= SLIDE_PARAMS_MAX:
            break
        if k not in SLIDE_SKIP and k not in SLIDE_PARAMS:
            out.append((k, v))
    return out


ROWS_PER_SUMMARY = 8


def _headline(run: Run) -> list[tuple[str, str]]:
    m = run.metrics or {}
    mean = m.get("mean") or {}
    keys = [k for k in (m.get("headline") or []) if k in mean] or list(mean)[:2]
    return [(METRIC_INFO.get(k, (k, 0))[0], fmt_value(mean[k])) for k in keys]


def _md_value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def write_slide_fragments(runs: list[Run], gen: Path) -> Path:
    gen.mkdir(parents=True, exist_ok=True)
    visible = [r for r in runs if r.status != "running"]
    _copy_artifacts(visible, gen, ("train.gif", "test.gif", "loss.png", "loss_median.png"))
    rel = "../_generated/runs"  # valid from slides/_generated/ and from slides/_output/
    slides = []
    for r in runs:
        m = r.metrics or {}
        if r.status == "running":
            continue
        d = gen / "runs" / r.slug
        head = f"### {_esc(r.label)}"
        if r.status != "completed":
            slides.append(f"<!-- _class: failed -->\n\n{head}\n\n**{r.status}**"
                          + (f": `{_esc(r.error)[:200]}`" if r.error else "") + "\n")
            continue
        lines = ["<!-- _class: experiment -->", "", head, ""]
        proto = r.protocol if r.follows_protocol else "no protocol"
        lines.append(f"<span class=\"proto\">{_esc(proto)} · {_esc(r.data)}</span>\n")
        for k, v in slide_params(r):
            lines.append(f"- **{k}**: {_esc(_md_value(v))}")
        lines.append("")
        lines.append(" · ".join(f"**{n}** {v}" for n, v in _headline(r)))
        bgs = []
        for n in ("train.gif", "test.gif"):
            if (d / n).exists():
                bgs.append(f"![bg vertical right:38% fit]({rel}/{r.slug}/{n})")
        slides.append("\n".join(bgs + [""] + lines) + "\n")
        loss = "loss_median.png" if (d / "loss_median.png").exists() else "loss.png"
        if (d / loss).exists():
            slides.append(f"### {_esc(r.label)}: loss\n\n![h:520]({rel}/{r.slug}/{loss})\n")
    # summary table(s)
    rows = []
    for r in runs:
        hl = "; ".join(f"{n} {v}" for n, v in _headline(r)) if r.metrics else "–"
        rows.append([_esc(r.name), _esc(r.job_id), r.status,
                     (r.protocol if r.follows_protocol else "none"), hl, _wall(r)])
    for i in range(0, len(rows), ROWS_PER_SUMMARY):
        chunk = rows[i:i + ROWS_PER_SUMMARY]
        more = f" ({i // ROWS_PER_SUMMARY + 1})" if len(rows) > ROWS_PER_SUMMARY else ""
        slides.append("<!-- _class: summary -->\n\n### Summary" + more + "\n\n"
                      + _table(["Run", "Job", "Status", "Protocol", "Headline (test)", "Wall time"],
                               chunk, align="llllll"))
    text = "\n---\n\n".join(slides) if slides else "### No results yet\n"
    out = gen / "experiments.md"
    _write_if_changed(out, text + "\n")
    return out


SLIDE_INCLUDE = re.compile(r"^<!--\s*include:\s*(\S+)\s*-->\s*$", re.M)


def _marp() -> Optional[Path]:
    exe = REPO / "node_modules" / ".bin" / "marp"
    return exe if exe.exists() else None


def find_chromium() -> Optional[str]:
    for cand in (os.environ.get("CHROME_PATH"), shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    return None


def build_slides(results_dirs: list[Path], out_dir: Optional[Path] = None, *,
                 reference_dirs: Optional[list[Path]] = None, slides_dir: Optional[Path] = None,
                 pdf: Optional[bool] = None, pptx: bool = False, quiet: bool = False) -> Path:
    """Build the Marp deck; returns the output folder (slides.html; slides.pdf with chromium).

    pdf: None = when chromium is found; True = required (error without chromium).
    """
    slides_dir = Path(slides_dir or SLIDES_DIR).resolve()
    out_dir = Path(out_dir).resolve() if out_dir else slides_dir / "_output"
    results_dirs = [Path(d) for d in results_dirs]
    if reference_dirs is None:
        reference_dirs = [REFERENCE_DIR] if REFERENCE_DIR.is_dir() else []
    src = slides_dir / "deck.md"
    if not src.is_file():
        raise NowcastError(f"{src}: slide deck source missing")
    runs = find_runs(results_dirs, reference_dirs)
    if not runs:
        raise _no_runs_error(results_dirs, reference_dirs)
    gen = slides_dir / "_generated"
    write_slide_fragments(runs, gen)

    def sub(m: re.Match) -> str:
        p = slides_dir / m.group(1)
        if not p.is_file():
            raise NowcastError(f"{p}: included file missing")
        return p.read_text().strip() + "\n"
    deck = SLIDE_INCLUDE.sub(sub, src.read_text())
    deck = deck.replace("{{date}}", _dt.date.today().isoformat())
    deck_out = gen / "deck.md"
    _write_if_changed(deck_out, deck)

    marp = _marp()
    if marp is None:
        raise NowcastError("marp-cli not found in node_modules: run `npm ci` (or make setup) "
                           "in the repository root")
    theme = slides_dir / "theme.css"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = [str(marp), "--no-stdin", "--no-config-file", "--html", "--allow-local-files",
            "--theme-set", str(theme), "--", str(deck_out)]
    env = dict(os.environ)
    outputs = [out_dir / "slides.html"]
    chrome = find_chromium()
    if pdf and chrome is None:
        raise NowcastError("slides PDF needs chromium (apt-get install chromium) or CHROME_PATH")
    make_pdf = bool(chrome) and pdf is not False
    wanted = outputs + ([out_dir / "slides.pdf"] if make_pdf else []) + \
        ([out_dir / "slides.pptx"] if make_pdf and pptx else [])
    digest = _inputs_digest([deck_out, theme] + [p for p in (gen / "runs").rglob("*") if p.is_file()],
                            [str(w) for w in wanted])
    stamp = out_dir / ".render.hash"
    if all(w.exists() for w in wanted) and stamp.exists() and stamp.read_text() == digest:
        if not quiet:
            print(f"up to date: {', '.join(str(w) for w in wanted)}")
        return out_dir
    _run(base[:-2] + ["-o", str(outputs[0]), "--", str(deck_out)], slides_dir, "marp (HTML)", env)
    if make_pdf:
        env["CHROME_PATH"] = chrome
        if hasattr(os, "getuid") and os.getuid() == 0:
            env["CHROME_NO_SANDBOX"] = "1"
        kinds = [("--pdf", "slides.pdf")] + ([("--pptx", "slides.pptx")] if pptx else [])
        for flag, name in kinds:
            target = out_dir / name
            _run(base[:-2] + [flag, "--browser-timeout", "120", "-o", str(target), "--",
                              str(deck_out)], slides_dir, f"marp ({name})", env)
            outputs.append(target)
    elif not quiet and chrome is None:
        print("chromium not found: slides.html only (install chromium for slides.pdf)")
    stamp.write_text(digest)
    if not quiet:
        for p in outputs:
            print(f"wrote {p}")
    return out_dir
