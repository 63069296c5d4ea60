"""Markdown for the report and the slides: number formats, escaping, tables, figures.

Everything read from a results folder is data: it passes through `esc` (free text) or a
`fmt_*` function (numbers) before it reaches a fragment.
"""

from __future__ import annotations

import re
from typing import Any, Optional


def fmt_value(x: Any) -> str:
    """A metric value as the report prints it (tests use this to find numbers in the PDF)."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, str):  # text where a number belongs: data, shown as it is, escaped
        return esc(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return esc(x)
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
        return esc(x)


def esc(text: Any) -> str:
    """Free text from a results folder (job ids with underscores, error messages) as inert
    markdown on one line: every character markdown, raw HTML, citations, math or a Quarto
    shortcode would act on is backslash-escaped, so pandoc prints it as text in HTML (`<`
    as &lt;) and its typst writer escapes it again for the PDF (`#`, `$`, `@`, `<`, ...).
    Line breaks and control characters become spaces: no line of data starts a block."""
    s = re.sub(r"[\s\x00-\x1f\x7f]+", " ", str(text))
    return re.sub(r"([\\`*_{}\[\]<>#|@$~^&\-])", r"\\\1", s)  # &: no entities; -: no dashes


def _cell(text: Any) -> str:
    """Safe text for a pipe-table cell."""
    return re.sub(r"(?<!\\)\|", r"\\|", str(text).replace("\n", " "))


# the characters a table line holds in the PDF (typst, A4, the report's table font), about
PAGE_CHARS = 90
# where typst may break a line inside a cell (Unicode line breaking, UAX 14): at spaces and
# slashes, and after a hyphen unless a digit follows ("knmi-30-60-" and "2026-12-02" hold)
LINE_BREAKS = r"[\s/]+|-(?!\d)"


def _widths(header: list[str], rows: list[list[str]]) -> list[int]:
    """Separator widths: pandoc sizes wide pipe-table columns by the dashes of the separator
    line. Each column first gets its longest unbreakable word (a header's words, or a third of
    the header: it may wrap over three lines), so that no word runs into the next column
    ("completede9ed6be4"); what is left of PAGE_CHARS goes to the columns whose cells are
    longer than that, in proportion to how much longer (capped at 24 characters)."""
    least, extra = [], []
    for i, h in enumerate(header):
        head = max([len(w) for w in h.split()] + [-(-len(h) // 3)])
        cells = [re.sub(r"\[@[^\]]*\]|[*\\]", "", str(r[i])) for r in rows if i < len(r)]
        words = [len(w) for c in cells for w in re.split(LINE_BREAKS, c)]
        least.append(max([head, 3] + words))
        extra.append(max([0] + [min(len(c), 24) - least[-1] for c in cells]))
    spare = max(PAGE_CHARS - sum(least), 0)
    return [w + round(spare * e / max(sum(extra), 1)) + 3 for w, e in zip(least, extra)]


def table(header: list[str], rows: list[list[str]], caption: str = "", ident: str = "",
          align: Optional[str] = None) -> str:
    """A pipe table with a caption and a cross-reference id (`tbl-...`)."""
    align = align or ("l" + "r" * (len(header) - 1))

    def mark(a: str, w: int) -> str:
        return {"l": ":" + "-" * (w - 1), "r": "-" * (w - 1) + ":", "c": ":" + "-" * (w - 2) + ":"}[a]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(mark(a, w) for a, w in zip(align, _widths(header, rows))) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if caption:
        lines += ["", f": {caption}" + (f" {{#{ident}}}" if ident else "")]
    return "\n".join(lines) + "\n"


def figure(path: str, caption: str, ident: str, width: str = "100%") -> str:
    return f"![{caption}]({path}){{#{ident} width={width}}}\n"


def html_only(text: str) -> str:
    return f'::: {{.content-visible when-format="html"}}\n{text}\n:::\n'


def not_html(text: str) -> str:
    return f'::: {{.content-hidden when-format="html"}}\n{text}\n:::\n'


def value_text(v: Any) -> str:
    """A parameter value on one line: lists as [a,b]."""
    if isinstance(v, list):
        return "[" + ",".join(str(i) for i in v) + "]"
    return str(v)


def params_text(d: dict) -> str:
    return ", ".join(f"{k}={value_text(x)}" for k, x in d.items()) or "defaults"
