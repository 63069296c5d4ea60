"""`nowcast slides`: the Marp deck (slides/deck.md + generated experiment slides) as HTML,
and PDF (and PPTX) when chromium is available. marp-cli comes from node_modules (npm ci)."""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from ..errors import NowcastError
from ..results import Run
from ..paths import JobPaths
from ..util import repo_root, write_if_changed
from .describe import headline, nondefault_params, trained_on
from .incremental import copy_artifacts, inputs_digest
from .markdown import esc, table, value_text
from .render import include_path, run_tool
from .report import read_all

SLIDE_PARAMS = ["architecture", "hidden_sizes", "filter_size", "patch_size", "stride", "loss",
                "batch_size", "num_epochs", "curriculum", "initial_lr"]
SLIDE_PARAMS_MAX = 10
BASELINE_PARAMS = ["dataset", "k_in", "k_out", "radar_recipe", "block_size"]
ROWS_PER_SUMMARY = 8
SLIDE_FILES = (JobPaths.TRAIN_GIF, JobPaths.TEST_GIF, JobPaths.LOSS_PNG, JobPaths.LOSS_MEDIAN_PNG)
SLIDE_INCLUDE = re.compile(r"^<!--\s*include:\s*(\S+)\s*-->\s*$", re.M)
REL = "../_generated/runs"  # valid from slides/_generated/ and from slides/_output/


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
        if k not in SLIDE_PARAMS:
            out.append((k, v))
    return out


def run_slides(r: Run, gen: Path) -> list[str]:
    """One slide per run (two with its loss curve); a failed run gets a short one."""
    head = f"### {esc(r.label)}"
    if r.status != "completed":
        return [f"<!-- _class: failed -->\n\n{head}\n\n**{esc(r.state)}**"
                + (f": {esc(r.error)[:200]}" if r.error else "") + "\n"]
    d = gen / "runs" / r.slug
    proto = r.protocol if r.follows_protocol else "no protocol"
    lines = [f"![bg vertical right:38% fit]({REL}/{r.slug}/{n})"
             for n in (JobPaths.TRAIN_GIF, JobPaths.TEST_GIF) if (d / n).exists()]
    lines += ["", "<!-- _class: experiment -->", "", head, "",
              f"<span class=\"proto\">{esc(proto)} · {esc(r.data)}</span>\n"]
    lines += [f"- **{esc(k)}**: {esc(value_text(v))}" for k, v in slide_params(r)]
    lines += ["", " · ".join(f"**{n}** {v}" for n, v in headline(r))]
    slides = ["\n".join(lines) + "\n"]
    loss = JobPaths.LOSS_MEDIAN_PNG if (d / JobPaths.LOSS_MEDIAN_PNG).exists() else JobPaths.LOSS_PNG
    if (d / loss).exists():
        slides.append(f"### {esc(r.label)}: loss\n\n![h:520]({REL}/{r.slug}/{loss})\n")
    return slides


def summary_slides(runs: list[Run]) -> list[str]:
    rows = [[esc(r.name), esc(r.job_id), esc(r.state),
             esc(r.protocol if r.follows_protocol else "none"),
             "; ".join(f"{n} {v}" for n, v in headline(r)) if r.metrics else "–", trained_on(r)]
            for r in runs]
    slides = []
    for i in range(0, len(rows), ROWS_PER_SUMMARY):
        more = f" ({i // ROWS_PER_SUMMARY + 1})" if len(rows) > ROWS_PER_SUMMARY else ""
        slides.append("<!-- _class: summary -->\n\n### Summary" + more + "\n\n"
                      + table(["Run", "Job", "Status", "Protocol", "Headline (test)", "Trained on"],
                              rows[i:i + ROWS_PER_SUMMARY], align="llllll"))
    return slides


def write_slide_fragments(runs: list[Run], gen: Path) -> Path:
    gen.mkdir(parents=True, exist_ok=True)
    visible = [r for r in runs if r.status != "running"]
    copy_artifacts(visible, gen, SLIDE_FILES)
    slides = [s for r in visible for s in run_slides(r, gen)] + summary_slides(runs)
    out = gen / "experiments.md"
    write_if_changed(out, ("\n---\n\n".join(slides) if slides else "### No results yet\n") + "\n")
    return out


def find_chromium() -> Optional[str]:
    for cand in (os.environ.get("CHROME_PATH"), shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    return None


def _deck(slides_dir: Path, gen: Path) -> Path:
    """deck.md with its <!-- include: --> lines expanded and the date filled in."""
    def sub(m: re.Match) -> str:
        return include_path(slides_dir, m.group(1)).read_text().strip() + "\n"
    deck = SLIDE_INCLUDE.sub(sub, (slides_dir / "deck.md").read_text())
    out = gen / "deck.md"
    write_if_changed(out, deck.replace("{{date}}", _dt.date.today().isoformat()))
    return out


def marp_path() -> Optional[Path]:
    marp = repo_root() / "node_modules" / ".bin" / "marp"
    return marp if marp.exists() else None


def _marp(slides_dir: Path, deck: Path, targets: list[Path], chrome: Optional[str]) -> None:
    marp = marp_path()
    if marp is None:
        raise NowcastError("marp-cli not found in node_modules: run `npm ci` (or make setup) "
                           "in the repository root")
    base = [str(marp), "--no-stdin", "--no-config-file", "--html", "--allow-local-files",
            "--theme-set", str(slides_dir / "theme.css")]
    env = dict(os.environ)
    if chrome:
        env["CHROME_PATH"] = chrome
        if hasattr(os, "getuid") and os.getuid() == 0:
            env["CHROME_NO_SANDBOX"] = "1"
    for target in targets:
        flag = {".html": [], ".pdf": ["--pdf", "--browser-timeout", "120"],
                ".pptx": ["--pptx", "--browser-timeout", "120"]}[target.suffix]
        run_tool(base + flag + ["-o", str(target), "--", str(deck)], slides_dir,
                 f"marp ({target.name})", env)


def build_slides(results_dirs: list[Path], out_dir: Optional[Path] = None, *,
                 reference_dirs: Optional[list[Path]] = None, slides_dir: Optional[Path] = None,
                 pdf: Optional[bool] = None, pptx: bool = False, quiet: bool = False) -> Path:
    """Build the Marp deck; returns the output folder (slides.html; slides.pdf with chromium).

    pdf: None = when chromium is found; True = required (error without chromium).
    """
    slides_dir = Path(slides_dir or repo_root() / "slides").resolve()
    out_dir = Path(out_dir).resolve() if out_dir else slides_dir / "_output"
    if not (slides_dir / "deck.md").is_file():
        raise NowcastError(f"{slides_dir / 'deck.md'}: slide deck source missing")
    chrome = find_chromium()
    if pdf and chrome is None:
        raise NowcastError("slides PDF needs chromium (apt-get install chromium) or CHROME_PATH")
    gen = slides_dir / "_generated"
    write_slide_fragments(read_all([Path(d) for d in results_dirs], reference_dirs), gen)
    deck = _deck(slides_dir, gen)
    make_pdf = bool(chrome) and pdf is not False
    targets = [out_dir / "slides.html"] + ([out_dir / "slides.pdf"] if make_pdf else []) \
        + ([out_dir / "slides.pptx"] if make_pdf and pptx else [])
    stamp = inputs_digest([deck, slides_dir / "theme.css"]
                          + [p for p in (gen / "runs").rglob("*") if p.is_file()],
                          [str(t) for t in targets])
    stamp_file = out_dir / ".render.hash"
    if all(t.exists() for t in targets) and stamp_file.is_file() and stamp_file.read_text() == stamp:
        if not quiet:
            print(f"up to date: {', '.join(str(t) for t in targets)}")
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    _marp(slides_dir, deck, targets, chrome)
    stamp_file.write_text(stamp)
    if not quiet:
        if chrome is None:
            print("chromium not found: slides.html only (install chromium for slides.pdf)")
        for t in targets:
            print(f"wrote {t}")
    return out_dir
