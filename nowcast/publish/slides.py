"""`nowcast slides`: the Marp deck (slides/deck.md + generated experiment slides) as HTML,
and PDF (and PPTX) when chromium is available. marp-cli comes from node_modules (npm ci)."""

from __future__ import annotations

import base64
import datetime as _dt
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from ..errors import NowcastError
from ..results import Run
from ..paths import JobPaths
from ..util import atomic_path, repo_root, write_if_changed
from .describe import (as_ran, headline, is_baseline, metric_heading, metrics_value, nondefault_params,
                       run_label, steps, steps_text, trained_on, varied_params)
from .costs import stopped_by
from .incremental import copy_artifacts, inputs_digest, private_build
from .markdown import esc, table, value_text
from .render import include_path, run_tool
from .talk import talk_slides
from .report import read_all
from .uncertainty import fmt_pm, headline_keys, seed_groups

# num_epochs is not listed: a time budget stops most runs long before it (the "trained" line
# says what stopped each run and after how many steps)
SLIDE_PARAMS = ["architecture", "hidden_sizes", "filter_size", "patch_size", "stride", "loss",
                "batch_size", "curriculum", "initial_lr"]
SLIDE_PARAMS_MAX = 10
BASELINE_PARAMS = ["dataset", "k_in", "k_out", "radar_recipe", "block_size"]
ROWS_PER_SUMMARY = 6  # rows of a table slide: more (their cells wrap) ran off the slide
ROWS_PER_COMPARISON = 5  # its model names wrap over three lines: fewer rows fit
FIELDS_PER_COMPARISON = 4  # varied fields a comparison slide shows as columns; the rest counted
FIELD_CELL_CHARS = 16  # a field with a longer value (file lists) is counted, not a column: it
#                        would push the table off the slide's right edge
SLIDE_FILES = (JobPaths.TRAIN_GIF, JobPaths.TEST_GIF, JobPaths.TEST_STRIP_PNG, JobPaths.LOSS_PNG,
               JobPaths.LOSS_MEDIAN_PNG)
SLIDE_INCLUDE = re.compile(r"^<!--\s*include:\s*(\S+)\s*-->\s*$", re.M)
REL = "../_generated/runs"  # valid from the build's _generated/, where the PDF deck is made
PDF_VARIANT = "{}.pdf.md"  # a generated fragment (or deck) as the PDF deck has it


def slide_params(run: Run) -> list[tuple[str, Any]]:
    """The hyperparameters a slide lists: the main ones, then those changed from the defaults.
    A baseline (no trainable parameters) has no model hyperparameters: only its method and data."""
    if (run.metrics or {}).get("parameters") == 0:
        return [("method", run.metrics.get("architecture"))] + [
            (k, run.params[k]) for k in BASELINE_PARAMS if k in run.params]
    out = [(k, run.params[k]) for k in SLIDE_PARAMS if run.params.get(k) is not None]
    if steps(run) is not None:
        out.append(("trained", f"{steps_text(run)} steps, stopped by {stopped_by(run)}"))
    for k, v in nondefault_params(run).items():
        if len(out) >= SLIDE_PARAMS_MAX:
            break
        if k not in SLIDE_PARAMS and k not in ("num_epochs", "time_budget_min"):
            out.append((k, v))
    return out


def _image(path: Path, embed: bool) -> str:
    """An image's src: the file itself as a data URI in the HTML deck (one self-contained file,
    whatever becomes of _generated/), its path from the deck in the PDF one."""
    if embed:
        kind = {".gif": "gif", ".png": "png"}[path.suffix]
        return f"data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"
    return f"{REL}/{path.parent.name}/{path.name}"


def _media(d: Path, embed: bool) -> str:
    """The right-hand panel of a run's slide: the train and test GIFs in the HTML deck; in the
    PDF deck the test frame strip (inputs, truth, forecast), as the PDF report shows it: a
    PDF page holds a GIF's first frame only, an input frame in both panels."""
    shown = ([(JobPaths.TRAIN_GIF, "train"), (JobPaths.TEST_GIF, "test")] if embed
             else [(JobPaths.TEST_STRIP_PNG, "test: inputs, truth, forecast")])
    figures = [f'<figure><img src="{_image(d / n, embed)}" alt="{label}"><figcaption>{label}'
               f"</figcaption></figure>" for n, label in shown if (d / n).exists()]
    return f'<div class="media">{"".join(figures)}</div>' if figures else ""


def run_slides(r: Run, gen: Path, embed: bool = True) -> list[str]:
    """One slide per run (two with its loss curve); a failed run gets a short one. embed: the
    HTML deck's slides (images inside), else the PDF deck's (see _media)."""
    head = f"### {esc(run_label(r))}"
    if r.status != "completed":
        return [f"<!-- _class: failed -->\n\n{head}\n\n**{esc(r.state)}**"
                + (f": {esc(r.error)[:200]}" if r.error else "") + "\n"]
    d = gen / "runs" / r.slug
    proto = r.protocol if r.follows_protocol else "no protocol"
    lines = ["<!-- _class: experiment -->", "", head, "", _media(d, embed), "",
             # the data's first clause (the test set): the report and the summary say the rest
             f"<span class=\"proto\">{esc(proto)} · {esc(r.data.split('; ')[0])}</span>\n"]
    lines += [f"- **{esc(k)}**: {esc(value_text(v))}" for k, v in slide_params(r)]
    lines += ["", " · ".join(f"**{n}** {v}" for n, v in headline(r))]
    slides = ["\n".join(lines) + "\n"]
    loss = JobPaths.LOSS_MEDIAN_PNG if (d / JobPaths.LOSS_MEDIAN_PNG).exists() else JobPaths.LOSS_PNG
    if (d / loss).exists():
        slides.append(f"### {esc(run_label(r))}: loss\n\n![h:520]({_image(d / loss, embed)})\n")
    return slides


def table_slides(title: str, header: list[str], rows: list[list[str]], note: str = "",
                 align: Optional[str] = None, per_slide: int = ROWS_PER_SUMMARY) -> list[str]:
    """A table over as many slides as its rows need (`per_slide` each), numbered when more
    than one; `note` under each."""
    slides = []
    for i in range(0, len(rows), per_slide):
        more = f" ({i // per_slide + 1})" if len(rows) > per_slide else ""
        slides.append(f"<!-- _class: summary -->\n\n### {title}{more}\n\n"
                      + table(header, rows[i:i + per_slide], align=align) + note)
    return slides


def comparison_slides(runs: list[Run]) -> list[str]:
    """Per protocol whose trained runs differ in a hyperparameter or repeat a seed: a table
    with a row per model (runs repeated over seeds as their mean ± 95 % t half-width, as in
    the report), the fields that differ between them (the FIELDS_PER_COMPARISON with the most
    distinct values among those whose values fit FIELD_CELL_CHARS; the others counted below),
    and the protocol's headline."""
    slides = []
    for group in dict.fromkeys(r.group for r in runs):
        models = [r for r in runs if r.group == group and r.status == "completed"
                  and not is_baseline(r) and r.params]
        groups = seed_groups(models)
        varied = sorted(varied_params(models) - {"seed"})  # seeds: the mean rows say them
        if len(models) < 2 or not (varied or any(g.n > 1 for g in groups)):
            continue
        ran = {id(r): as_ran(r) for r in models}  # once a run, not once a field
        distinct = {k: len({repr(ran[id(r)].get(k)) for r in models}) for k in varied}
        narrow = [k for k in varied
                  if max(len(value_text(ran[id(r)].get(k))) for r in models) <= FIELD_CELL_CHARS]
        shown = sorted(sorted(narrow, key=lambda k: -distinct[k])[:FIELDS_PER_COMPARISON])
        keys = [k for k in headline_keys(group, models)
                if any(k in (metrics_value(r, "mean") or {}) for r in models)][:3]
        rows = []
        for g in groups:
            first = g.runs[0]
            label = f"**{g.label}, mean of {g.count_text}**" if g.n > 1 else esc(first.label)
            rows.append([label] + [esc(value_text(ran[id(first)].get(k))) for k in shown]
                        + [fmt_pm(g.interval("mean", k)) for k in keys])
        header = ["Model"] + [esc(k) for k in shown] + [metric_heading(k) for k in keys]
        rest = [k for k in varied if k not in shown]
        note = (f"\n{len(rest)} more fields differ: the report's parameter table.\n"
                if rest else "")
        title = esc(group) if group != "none" else "runs of no protocol"
        slides += table_slides(f"Compared: {title}", header, rows, note,
                               per_slide=ROWS_PER_COMPARISON)
    return slides


def summary_slides(runs: list[Run]) -> list[str]:
    rows = [[esc(r.name), esc(r.job_id), esc(r.state),
             esc(r.protocol if r.follows_protocol else "none"),
             "; ".join(f"{n} {v}" for n, v in headline(r)) if r.metrics else "–", trained_on(r)]
            for r in runs]
    return table_slides("Summary", ["Run", "Job", "Status", "Protocol", "Headline (test)",
                                    "Trained on"], rows, align="llllll")


def write_slide_fragments(runs: list[Run], gen: Path) -> Path:
    """_generated/talk.md (the talk: talk.talk_slides) and experiments.md (the backup: every
    run's slides), each as the HTML deck has them (images inside) and as the PDF deck's
    .pdf.md (frame strips by path); returns experiments.md."""
    gen.mkdir(parents=True, exist_ok=True)
    visible = [r for r in runs if r.status != "running"]
    copy_artifacts(visible, gen, SLIDE_FILES)
    for embed, suffix in ((True, ".md"), (False, ".pdf.md")):
        talk, overflow = talk_slides(visible, gen, embed, _image, _media)
        write_if_changed(gen / f"talk{suffix}", "\n---\n\n".join(talk) + "\n")
        slides = (overflow + [s for r in visible for s in run_slides(r, gen, embed)]
                  + comparison_slides(visible) + summary_slides(runs))
        write_if_changed(gen / f"experiments{suffix}", ("\n---\n\n".join(slides) if slides
                                                       else "### No results yet\n") + "\n")
    return gen / "experiments.md"


def find_chromium() -> Optional[str]:
    for cand in (os.environ.get("CHROME_PATH"), shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    return None


def _deck(slides_dir: Path, gen: Path, pdf: bool = False) -> Path:
    """deck.md with its <!-- include: --> lines expanded (for the PDF deck a generated
    fragment's PDF variant where there is one) and the date filled in."""
    def sub(m: re.Match) -> str:
        path = include_path(slides_dir, m.group(1))
        variant = path.with_name(PDF_VARIANT.format(path.stem))
        return (variant if pdf and variant.is_file() else path).read_text().strip() + "\n"
    deck = SLIDE_INCLUDE.sub(sub, (slides_dir / "deck.md").read_text())
    out = gen / (PDF_VARIANT.format("deck") if pdf else "deck.md")
    write_if_changed(out, deck.replace("{{date}}", _dt.date.today().isoformat()))
    return out


def marp_path() -> Optional[Path]:
    marp = repo_root() / "node_modules" / ".bin" / "marp"
    return marp if marp.exists() else None


def _marp(slides_dir: Path, decks: dict[str, Path], targets: list[Path], chrome: Optional[str]) -> None:
    """Each target from its deck: decks maps a target's suffix to the deck it is made from."""
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
        # a failed or cut-short render leaves the previous deck
        with atomic_path(target, keep_suffix=True) as tmp:
            run_tool(base + flag + ["-o", str(tmp), "--", str(decks[target.suffix])], slides_dir,
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
    runs = read_all([Path(d) for d in results_dirs], reference_dirs)
    with private_build(slides_dir, out_dir) as build:  # fragments of this build alone
        _build_slides(build, runs, out_dir, chrome, pdf, pptx, quiet)
    return out_dir


def _build_slides(build: Path, runs: list[Run], out_dir: Path, chrome: Optional[str],
                  pdf: Optional[bool], pptx: bool, quiet: bool) -> None:
    """The deck's fragments and renders, in the build folder (incremental.private_build)."""
    slides_dir, gen = build, build / "_generated"
    write_slide_fragments(runs, gen)
    # the HTML deck plays the GIFs; a PDF page (and a PPTX slide) shows the frame strips
    paper = _deck(slides_dir, gen, pdf=True)
    decks = {".html": _deck(slides_dir, gen), ".pdf": paper, ".pptx": paper}
    make_pdf = bool(chrome) and pdf is not False
    targets = [out_dir / "slides.html"] + ([out_dir / "slides.pdf"] if make_pdf else []) \
        + ([out_dir / "slides.pptx"] if make_pdf and pptx else [])
    stamp = inputs_digest([decks[".html"], paper, slides_dir / "theme.css"]
                          + [p for p in (gen / "runs").rglob("*") if p.is_file()],
                          [str(t) for t in targets])
    stamp_file = out_dir / ".render.hash"
    if all(t.exists() for t in targets) and stamp_file.is_file() and stamp_file.read_text() == stamp:
        if not quiet:
            print(f"up to date: {', '.join(str(t) for t in targets)}")
        return
    _marp(slides_dir, decks, targets, chrome)
    stamp_file.write_text(stamp)
    if not quiet:
        if chrome is None:
            print("chromium not found: slides.html only (install chromium for slides.pdf)")
        for t in targets:
            print(f"wrote {t}")
