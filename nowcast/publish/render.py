"""Rendering the report project (report/) to HTML and PDF, behind a registry of renderers
(as papermill keeps its engines):

| renderer       | needs                                  | how                                         |
|----------------|----------------------------------------|---------------------------------------------|
| `quarto`       | `quarto` on PATH                       | `quarto render report/` as the project says |
| `pandoc+typst` | pypandoc-binary, typst (nowcast[report]) | includes expanded here, pandoc -> HTML (self-contained, MathML) and pandoc -> typst -> PDF |

`auto` picks quarto when it is on PATH, else pandoc+typst. Both read the same sources
(index.qmd, references.bib, crossref.lua for cross-references under pandoc).
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional

from ..errors import NowcastError, first_line
from ..util import atomic_path, optional_import, write_if_changed
from .incremental import inputs_digest



class Rendered(list):
    """The output files of a render (a list of paths); `fresh`: False where nothing changed
    since the last render, so none was written (the command says "up to date", not "wrote")."""

    def __init__(self, paths, fresh: bool = True):
        super().__init__(paths)
        self.fresh = fresh


Renderer = Callable[[Path, Path, tuple[str, ...]], Rendered]
INCLUDE = re.compile(r"^\{\{<\s*include\s+(\S+)\s*>\}\}\s*$", re.M)
GENERATED = "_generated"  # fragments written from run data: inserted, never expanded


def include_path(base: Path, name: str, root: Optional[Path] = None) -> Path:
    """The file an include line of the project's own sources names, relative to `base`: a
    relative path that stays inside `root` (default base; no absolute path, no '..' out of
    it) and exists."""
    path = (base / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(Path(root or base).resolve()):
        raise NowcastError(f"{base}: include {name!r} points outside the project folder")
    if not path.is_file():
        raise NowcastError(f"{base / name}: included file missing")
    return path


def expand_includes(text: str, base: Path, depth: int = 0, root: Optional[Path] = None) -> str:
    """Quarto's {{< include path >}} shortcode, resolved as Quarto does (relative to the
    including file), in the report's own sources only: a generated fragment (_generated/)
    holds run data and is inserted as it is, so no path taken from a results folder is ever
    followed. Every include stays inside the report folder (root, default base)."""
    if depth > 5:
        raise NowcastError(f"{base}: includes nested too deeply")
    root = Path(root or base)
    generated = (root / GENERATED).resolve()

    def sub(m: re.Match) -> str:
        path = include_path(base, m.group(1), root)
        if path.is_relative_to(generated):
            return path.read_text()
        return expand_includes(path.read_text(), path.parent, depth + 1, root)
    return INCLUDE.sub(sub, text)


def run_tool(cmd: list[str], cwd: Path, what: str, env: Optional[dict] = None) -> None:
    """Run an external renderer; its failure becomes one line naming the tool."""
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise NowcastError(f"{what} failed: {' | '.join(msg[-5:]) or f'exit {p.returncode}'}")


def _pandoc_command(report_dir: Path, source: Path) -> list[str]:
    pandoc = optional_import("pypandoc", "report").get_pandoc_path()
    return [pandoc, str(source.relative_to(report_dir)), "-f", "markdown", "--standalone",
            "--lua-filter", "crossref.lua", "--citeproc", "--bibliography", "references.bib",
            "--resource-path", ".", "--metadata", "link-citations=true",
            "--metadata", f"date={_dt.date.today().isoformat()}"]  # Quarto's `date: today`


def _pandoc_html(common: list[str], report_dir: Path, out_dir: Path) -> Path:
    html = out_dir / "report.html"
    with atomic_path(html) as tmp:  # a failed or cut-short render leaves the previous one
        run_tool(common + ["-t", "html5", "--embed-resources", "--mathml", "--toc",
                           "--toc-depth=2", "--number-sections", "--css", "style.css",
                           "-o", str(tmp.resolve())], report_dir, "pandoc (HTML)")
    return html


def _pandoc_pdf(common: list[str], report_dir: Path, out_dir: Path) -> Path:
    typ = report_dir / "_generated" / "report.typ"
    run_tool(common + ["-t", "typst", "--toc", "--toc-depth=2", "-V", "section-numbering=1.1.",
                       "-V", "page-numbering=1", "-V", "papersize=a4", "-V", "fontsize=10.5pt",
                       "-V", "mainfont=Libertinus Serif", "-V", "margin.x=2.2cm",
                       "-V", "margin.y=2.4cm", "--include-in-header", "style.typ",
                       "-o", str(typ.relative_to(report_dir))], report_dir, "pandoc (typst)")
    typst = optional_import("typst", "report")
    pdf = out_dir / "report.pdf"
    try:
        with atomic_path(pdf) as tmp:
            typst.compile(str(typ), output=str(tmp), root=str(report_dir), format="pdf")
    except Exception as e:  # typst raises its own error type with the source location
        raise NowcastError(f"typst failed on {typ}: {first_line(e)}") from None
    return pdf


def render_pandoc(report_dir: Path, out_dir: Path, formats: tuple[str, ...]) -> Rendered:
    """pandoc (+ typst for the PDF); skipped when no input changed since the last render."""
    gen = report_dir / "_generated"
    combined = gen / "report.md"
    write_if_changed(combined, expand_includes((report_dir / "index.qmd").read_text(), report_dir))
    steps = {"html": _pandoc_html, "pdf": _pandoc_pdf}
    wanted = [f for f in formats if f in steps]
    targets = [out_dir / f"report.{f}" for f in wanted]
    inputs = [p for p in gen.rglob("*") if p.is_file() and not p.name.startswith(".")
              and p.suffix not in (".typ", ".tmp")]
    inputs += [p for p in report_dir.iterdir() if p.is_file()]
    stamp, stamp_file = inputs_digest(inputs, [str(t) for t in targets]), out_dir / ".render.hash"
    if all(t.exists() for t in targets) and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return Rendered(targets, fresh=False)  # nothing changed since the last render
    out_dir.mkdir(parents=True, exist_ok=True)
    common = _pandoc_command(report_dir, combined)
    outputs = [steps[f](common, report_dir, out_dir) for f in wanted]
    stamp_file.write_text(stamp)
    return Rendered(outputs)


def render_quarto(report_dir: Path, out_dir: Path, formats: tuple[str, ...]) -> Rendered:  # noqa: ARG001
    """quarto renders every format the project lists; outputs are copied to out_dir."""
    run_tool(["quarto", "render", str(report_dir)], report_dir, "quarto render")
    made = report_dir / "_output"
    outputs = [made / "report.html", made / "report.pdf"]
    if out_dir.resolve() != made.resolve():
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs = [Path(shutil.copy2(p, out_dir / p.name)) for p in outputs if p.exists()]
    return Rendered(outputs)


RENDERERS: dict[str, Renderer] = {"quarto": render_quarto, "pandoc+typst": render_pandoc}


def get_renderer(name: str) -> Renderer:
    """A renderer by name; 'auto' is quarto when on PATH, else pandoc+typst."""
    if name == "auto":
        name = "quarto" if shutil.which("quarto") else "pandoc+typst"
    try:
        return RENDERERS[name]
    except KeyError:
        raise NowcastError(f"unknown renderer {name!r}: expected auto or one of "
                           f"{', '.join(RENDERERS)}") from None
