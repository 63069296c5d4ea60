"""The Marp deck, built from the same real results folder as the report's tests."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nowcast import publish
from nowcast.errors import NowcastError
from nowcast.publish import slides as publish_slides

try:  # the shared session fixture lives in test_report.py
    from tests.test_report import copy_sources, pixel_std, screenshot, shared_results
except ImportError:
    from test_report import copy_sources, pixel_std, screenshot, shared_results

REPO = Path(__file__).resolve().parents[1]
needs_marp = pytest.mark.skipif(
    not (REPO / "node_modules" / ".bin" / "marp").exists(),
    reason="marp-cli not installed: run `npm ci` in the repository root (make setup does)")


@pytest.fixture(scope="session")
def results(tmp_path_factory) -> Path:
    return shared_results(tmp_path_factory)


@pytest.fixture(scope="module")
def deck(results, tmp_path_factory):
    slides_dir = copy_sources(REPO / "slides", tmp_path_factory.mktemp("slides"),
                              ["deck.md", "theme.css"])
    out = publish.build_slides([results], reference_dirs=[], slides_dir=slides_dir, quiet=True)
    return slides_dir, out


def test_theme_is_local():
    css = (REPO / "slides" / "theme.css").read_text()
    assert "@theme nowcast" in css
    rules = css.split("*/", 1)[1]  # after the theme's header comment
    assert "@import" not in rules and "http" not in rules, "the theme must not load web fonts"
    src = (REPO / "slides" / "deck.md").read_text()
    assert "theme: nowcast" in src
    assert not re.search(r"!\[[^\]]*\]\((https?:)?//", src), "a figure linked by internet URL"


def _resources(page: str) -> list[str]:
    refs = re.findall(r'<img[^>]+src="([^"]+)"', page)
    refs += re.findall(r'url\((?:&quot;|["\'])?([^)"\'&]+)', page)
    return [html.unescape(r) for r in refs]


@needs_marp
def test_deck_html(deck, results):
    slides_dir, out = deck
    page = (out / "slides.html").read_text()
    for job in ("smoke-ok", "smoke-bad"):
        assert job in page
    assert "failed" in page and "Summary" in page
    # self-contained: every image inside the page (make clean, or a copy of slides.html
    # alone, keeps it whole), and the right run's GIFs among them
    refs = _resources(page)
    assert refs and all(r.startswith("data:image/") for r in refs), \
        [r[:60] for r in refs if not r.startswith("data:image/")]
    embedded = {base64.b64decode(r.split(",", 1)[1]) for r in refs if r.startswith("data:image/gif")}
    for name in ("test.gif", "train.gif"):
        assert (results / "smoke-ok" / name).read_bytes() in embedded, name
    assert "fonts.bunny.net" not in page and "fonts.googleapis" not in page
    # the PDF deck shows a prediction (the frame strip), never a GIF's first frame
    paper = (out / ".build" / "_generated" / "deck.pdf.md").read_text()  # the build's own
    assert "smoke-ok/test_strip.png" in paper and ".gif" not in paper
    assert (out / ".build" / "_generated" / "runs" / "smoke-ok" / "test_strip.png").is_file()


def test_a_sweep_gets_a_slide_comparing_what_it_varies(results, tmp_path):
    """Issue 41: no slide compared the runs of a sweep. Two copies of a run that differ in
    filter_size, and two seeds of one of them: one comparison slide, its varied field a
    column, the seeds as one mean row."""
    import yaml
    from nowcast.results import find_runs
    root = tmp_path / "results"
    for job, changes in (("f3-s0", {}), ("f3-s1", {"seed": 1}), ("f5", {"filter_size": 5})):
        shutil.copytree(results / "smoke-ok", root / job)
        params = yaml.safe_load((root / job / "params.yaml").read_text())
        params.update(changes, job_id=job, name=job.split("-")[0])
        (root / job / "params.yaml").write_text(yaml.safe_dump(params))
    runs = find_runs([root])
    (slide,) = publish_slides.comparison_slides(runs)
    rows = [line for line in slide.splitlines() if line.startswith("| ")]
    assert "### Compared:" in slide and rows[0].split(" | ")[1] == "filter\\_size"
    assert len(rows) == 3 and "mean of n = 2 seeds" in rows[1]  # header, then 2 models
    assert rows[1].split(" | ")[1] == "3" and rows[2].split(" | ")[1] == "5"
    assert publish_slides.comparison_slides(runs[:1]) == []


@needs_marp
def test_first_slide_not_blank(deck, tmp_path):
    slides_dir, out = deck
    png = screenshot((out / "slides.html").as_uri(), tmp_path / "slide1.png", "1280,720")
    assert pixel_std(png) > 8.0


@needs_marp
def test_deck_pdf(deck, tmp_path):
    slides_dir, out = deck
    if publish_slides.find_chromium() is None:
        pytest.skip("chromium not installed: slides PDF not built (HTML only)")
    pdf = out / "slides.pdf"
    assert pdf.is_file()
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(pdf), str(tmp_path / "s")], check=True)
    pages = sorted(tmp_path.glob("s*.png"))
    assert len(pages) >= 6
    assert all(pixel_std(p) > 3.0 for p in pages[:3])


@needs_marp
def test_html_only_without_chromium(results, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(publish_slides, "find_chromium", lambda: None)
    slides_dir = copy_sources(REPO / "slides", tmp_path / "slides", ["deck.md", "theme.css"])
    out = publish.build_slides([results], reference_dirs=[], slides_dir=slides_dir)
    assert (out / "slides.html").is_file() and not (out / "slides.pdf").exists()
    assert "chromium not found" in capsys.readouterr().out
    with pytest.raises(NowcastError, match="chromium"):
        publish.build_slides([results], reference_dirs=[], slides_dir=slides_dir, pdf=True)


def test_missing_marp_is_a_clear_message(results, tmp_path, monkeypatch):
    monkeypatch.setattr(publish_slides, "marp_path", lambda: None)
    slides_dir = copy_sources(REPO / "slides", tmp_path / "slides", ["deck.md", "theme.css"])
    with pytest.raises(NowcastError, match="npm ci"):
        publish.build_slides([results], reference_dirs=[], slides_dir=slides_dir)


def test_baseline_slide_lists_its_method_not_model_hyperparameters():
    from nowcast.publish.slides import slide_params
    from nowcast.results import find_runs
    runs = [r for r in find_runs([Path(__file__).resolve().parents[1] / "reference_results"])
            if (r.metrics or {}).get("architecture") == "persistence" and r.group == "knmi-30-60"]
    assert runs, "reference_results/ holds the committed KNMI-30/60 persistence baseline"
    listed = dict(slide_params(runs[0]))
    assert listed["method"] == "persistence" and listed["k_out"] == 12
    assert "hidden_sizes" not in listed and "architecture" not in listed
