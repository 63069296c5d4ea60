"""The PDF report over the committed reference runs, read as pages (issue 55 items 1, 2, 4):
no word printed over another (table cells, the page number), a table longer than a page
continues on the next, and the cost table, the findings and a generated conclusion are there."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nowcast import publish
from nowcast.publish.markdown import LINE_BREAKS, _widths

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["_quarto.yml", "index.qmd", "references.bib", "crossref.lua", "style.css", "style.typ"]
WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


def overprinted(pdf: Path) -> list[tuple[int, str, str]]:
    """(page, word, word) for every two words whose boxes overlap (more than a point across,
    more than half a line high), from pdftotext's word boxes."""
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for page, text in enumerate(out.split("<page ")[1:], 1):
        words = [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in WORD.findall(text)]
        for i, (x0, y0, x1, y1, w) in enumerate(words):
            for a0, b0, a1, b1, v in words[i + 1:]:
                if (min(x1, a1) - max(x0, a0) > 1.0
                        and min(y1, b1) - max(y0, b0) > 0.5 * min(y1 - y0, b1 - b0)):
                    found.append((page, w, v))
    return found


@pytest.fixture(scope="module")
def reference_pdf(tmp_path_factory):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    if not (REPO / "reference_results" / "knmi-abl-gated-csi").is_dir():
        pytest.skip("reference_results absent")
    report_dir = tmp_path_factory.mktemp("report")
    for name in SOURCES:
        shutil.copy2(REPO / "report" / name, report_dir / name)
    empty = tmp_path_factory.mktemp("none")
    out = publish.build_report([empty], tmp_path_factory.mktemp("out"), report_dir=report_dir,
                               renderer="pandoc+typst", formats=("pdf",), quiet=True)
    return out / "report.pdf"


def test_no_word_of_the_reference_report_prints_over_another(reference_pdf):
    assert overprinted(reference_pdf) == []


def test_the_report_concludes_with_costs_and_findings(reference_pdf):
    text = re.sub(r"\s+", " ", subprocess.run(["pdftotext", str(reference_pdf), "-"],
                                              capture_output=True, text=True, check=True).stdout)
    assert "What each run cost" in text and "Stopped by" in text and "time budget (95 min)" in text
    assert "Experiments that differ in one parameter" in text
    conclusion = text.split("Conclusion")[-1]
    assert "residual models added skill to the first guess" in conclusion


def test_columns_are_sized_for_the_words_typst_cannot_break():
    # "2026-12-02" and "knmi-30-60-" hold together (a digit after the hyphen): the column
    # must be as wide as the whole date, where a break at every hyphen would allow "2026"
    assert re.split(LINE_BREAKS, "knmi-30-60-cpu-p4 2026-12-02") == ["knmi-30-60", "cpu", "p4", "2026-12-02"]
    widths = _widths(["Ended", "Folder"], [["2026-12-02", "reference_results/knmi"]])
    assert widths[0] >= len("2026-12-02") + 3


def page_texts(pdf: Path) -> list[str]:
    n = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True,
                                                        text=True, check=True).stdout).group(1))
    return [subprocess.run(["pdftotext", "-f", str(i), "-l", str(i), str(pdf), "-"],
                           capture_output=True, text=True, check=True).stdout for i in range(1, n + 1)]


def test_the_main_text_of_the_reference_report_fits_twelve_pages(reference_pdf):
    """Introduction to conclusion within 12 pages for the committed runs (the tables behind
    the results and every run's figures are in the appendix)."""
    pages = page_texts(reference_pdf)
    toc = next(i for i, t in enumerate(pages) if "Contents" in t or "Introduction" in t)
    start = next(i for i, t in enumerate(pages) if i > toc and "1. Introduction" in t
                 and "Appendix" not in t.split("1. Introduction")[0][-200:])
    appendix = next(i for i, t in enumerate(pages) if i > start and "Appendix: results in detail" in t)
    assert appendix - start <= 12, f"main text on pages {start + 1}-{appendix}"
