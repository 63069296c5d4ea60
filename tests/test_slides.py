"""The Marp deck, built from the same real results folder as the report's tests."""

from __future__ import annotations

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
    refs = [r for r in _resources(page) if not r.startswith("data:")]
    assert any(r.endswith("test.gif") for r in refs) and any(r.endswith("train.gif") for r in refs)
    for r in refs:
        assert not re.match(r"^(https?:)?//", r), f"slides load {r} from the internet"
        assert (out / r).resolve().is_file(), f"slides reference a missing file: {r}"
    # the right run's GIFs: every GIF comes from the run folder of the slide's job
    gen = slides_dir / "_generated" / "runs" / "smoke-ok"
    assert (gen / "test.gif").read_bytes() == (results / "smoke-ok" / "test.gif").read_bytes()
    assert "fonts.bunny.net" not in page and "fonts.googleapis" not in page


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
            if (r.metrics or {}).get("architecture") == "persistence"]
    assert runs, "reference_results/ holds the committed KNMI-30/60 persistence baseline"
    listed = dict(slide_params(runs[0]))
    assert listed["method"] == "persistence" and listed["k_out"] == 12
    assert "hidden_sizes" not in listed and "architecture" not in listed
