"""The deck's talk: per protocol the headline comparison (the best model against every
baseline with intervals, the per-lead figure, one forecast animation) and its findings, then
the conclusions; at most TALK_SLIDES slides before the "Backup" divider, whatever the number
of runs (protocols past the limit move behind it). The per-run slides follow as backup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..paths import JobPaths
from ..protocols import protocol_or_none
from ..results import Run
from .describe import is_baseline, metric_heading
from .findings import _best, conclusion_lines, findings, pairs
from .fragments import per_lead_for
from .markdown import esc, table
from .uncertainty import baseline_items, fmt_interval, headline_keys, uncertainty

TALK_SLIDES = 20   # slides before the Backup divider, the fixed ones of deck.md included
FIXED_SLIDES = 4   # deck.md's title, problem, models and method slides before the talk
CONCLUSION_LINES = 12  # wrapped text lines the conclusions slide holds above its page number
CONCLUSION_CHARS = 70  # characters of a wrapped line there (theme.css's summary text)
TALK_FIGURE = "talk-per-lead-{}.png"


def _slide_image(path: Path, embed: bool, image) -> str:
    """A figure of the build's _generated/ folder: inside the HTML deck, by its path from the
    PDF deck (made in _generated/, as slides.REL)."""
    src = image(path, True) if embed else f"../_generated/{path.name}"
    return f'<img src="{src}" style="max-height:170px">'


def _shown(boots: list, keys: list[str]) -> Optional[Run]:
    """The run whose test forecast the talk shows: the best by the first headline metric among
    those that kept their weights (model.pt: their figures can be redrawn), else the best."""
    kept = [(r, u) for r, u in boots if r.file(JobPaths.MODEL) is not None]
    best = _best(keys, kept) or _best(keys, boots)
    return best[0] if best else None


def protocol_slides(group: str, runs: list[Run], gen: Path, embed: bool, image, media
                    ) -> tuple[list[str], list[str]]:
    """(slides, conclusions) of one protocol group: the headline comparison with the per-lead
    figure, the best model's forecast, the findings."""
    title = esc(protocol_or_none(group).title)
    keys = headline_keys(group, runs)[:2]
    scored = baseline_items(runs)
    boots = [(r, u) for r in runs if (u := uncertainty(r, scored)) is not None]
    best = _best(keys, boots) if keys else None
    slides = []
    if best is not None:
        r, u = best
        rows = [[f"**{esc(r.label)}**"] + [fmt_interval(u.means.get(k)) for k in keys]]
        for base, found in u.paired.items():
            rows.append([f"model − {esc(base)}"] + [
                f"{fmt_interval(found[k].difference, signed=True)} {found[k].verdict}"
                if k in found else "–" for k in keys])
        fig = per_lead_for(group, runs, gen / TALK_FIGURE.format(group))
        slides.append(f"<!-- _class: summary -->\n\n### {title}: the best model against the "
                      f"baselines\n\n" + table(["", *[metric_heading(k) for k in keys]], rows)
                      + (f"\n{_slide_image(fig, embed, image)}\n" if fig else ""))
        run = _shown(boots, keys)
        shown = media(gen / "runs" / run.slug, embed) if run else ""
        if shown:
            slides.append(f"<!-- _class: experiment -->\n\n### {title}: a test forecast of "
                          f"{esc(run.label)}\n\n{shown}\n")
    known = pairs(runs)  # once: findings and conclusions share its paired bootstraps
    found = [p for p in findings(runs, known) if p.a.runs[0].group == group]
    if found:
        bullets = []
        for p in found[:6]:
            field, (va, vb) = next(iter(p.fields.items()))
            said = ", ".join(f"{esc(k)} {p.evidence.paired[k].verdict}" for k in keys
                             if k in p.evidence.paired)
            bullets.append(f"- **{esc(field)}** {esc(va)} vs {esc(vb)}: {said} "
                           f"({p.a.n} vs {p.b.n} runs)")
        slides.append(f"### {title}: one parameter at a time\n\n" + "\n".join(bullets)
                      + "\n\nPaired bootstrap over the test items; details in the report.\n")
    return slides, conclusion_lines(group, runs, boots, known)


def talk_slides(runs: list[Run], gen: Path, embed: bool, image, media) -> tuple[list[str], list[str]]:
    """(talk slides, backup slides): the protocols' slides and the conclusions, within
    TALK_SLIDES; protocols that do not fit go to the backup."""
    done = [r for r in runs if r.status == "completed" and r.metrics]
    talk, backup, said = [], [], []
    room = TALK_SLIDES - FIXED_SLIDES - 1  # the conclusions slide
    for group in dict.fromkeys(r.group for r in done):
        mine = [r for r in done if r.group == group]
        if not any(not is_baseline(r) for r in mine):
            continue
        slides, lines = protocol_slides(group, mine, gen, embed, image, media)
        if len(talk) + len(slides) <= room:
            talk += slides
            said += [f"- **{esc(protocol_or_none(group).name)}**: {line}" for line in lines
                     if line is lines[0] or "residual models" in line]
        else:
            backup += slides
    conclusions = "\n".join(fitting(said)) or "- No completed model run to conclude from yet."
    talk.append("<!-- _class: summary -->\n\n### Conclusions\n\n" + conclusions + "\n")
    return talk, backup


def _shown_lines(bullet: str) -> int:
    """The lines a bullet wraps to on a slide (its text without markdown marks)."""
    text = bullet.replace("**", "").replace("\\", "")
    return -(-len(text) // CONCLUSION_CHARS)


def fitting(bullets: list[str]) -> list[str]:
    """The bullets that fit on the conclusions slide above its page number (CONCLUSION_LINES
    wrapped lines), in order; where they do not all fit, a last line counts the rest and
    points to the report (five wrapped conclusions ran over the page number)."""
    if sum(map(_shown_lines, bullets)) <= CONCLUSION_LINES:
        return bullets
    more = "- ... {} more in the report's conclusion"
    kept, used = [], _shown_lines(more)
    for bullet in bullets:
        used += _shown_lines(bullet)
        if used > CONCLUSION_LINES:
            break
        kept.append(bullet)
    return kept + [more.format(len(bullets) - len(kept))]

