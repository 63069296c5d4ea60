"""The report: built from results folders made by a real tiny training run (params/smoke.yaml).

The session's results folder holds one completed run, one failed run (a data file that exists
but is corrupt, so it fails at run time) and one run left in progress, all made by
nowcast.experiment.run_experiment. test_slides.py reuses the same folder.
"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml

from nowcast import publish
from nowcast.publish import fragments
from nowcast.publish.markdown import fmt_loss, fmt_value
from nowcast.publish.slides import find_chromium
from nowcast.publish.tables import results_table
from nowcast.results import find_runs
from nowcast.errors import NowcastError

ROOT = Path(__file__).resolve().parents[1]

REPO = Path(__file__).resolve().parents[1]
REPORT_SOURCES = ["_quarto.yml", "index.qmd", "references.bib", "crossref.lua", "style.css",
                  "style.typ"]


# ---------------------------------------------------------------------------------------------
# shared fixture: real runs, made once per session (test_slides.py imports shared_results)
# ---------------------------------------------------------------------------------------------

def shared_results(tmp_path_factory) -> Path:
    """results/ with a completed, a failed and a preempted (in progress, resumable) job, from
    real (tiny) training runs."""
    root = tmp_path_factory.getbasetemp() / "publish-results"
    done = root / ".made"
    if done.exists():
        return root / "results"
    from nowcast.config import load_config
    from nowcast.experiment import run_experiment

    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    common = [f"results_dir={results}", "device=cpu"]
    run_experiment(load_config(REPO / "params" / "smoke.yaml",
                               overrides=common + ["job_id=smoke-ok"]), progress=False)
    corrupt = root / "corrupt.npz"
    corrupt.write_bytes(b"this is not an npz file")
    bad = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    for key in ("num_digits", "image_size", "train_sequences", "val_sequences", "test_sequences"):
        bad.pop(key, None)  # Moving MNIST generator fields: refused with a sequence file
    bad.update(results_dir=str(results), device="cpu", job_id="smoke-bad", dataset="npz",
               data_file=str(corrupt))
    with pytest.raises(Exception):
        run_experiment(load_config(values=bad), progress=False)
    try:  # stopped after one step and never finalised: stays results/.running-smoke-run/
        run_experiment(load_config(REPO / "params" / "smoke.yaml",
                                   overrides=common + ["job_id=smoke-run"]),
                       progress=False, finalize=False, stop_after_steps=1)
    except BaseException as e:  # noqa: BLE001 - stopping.Preempted by design
        if isinstance(e, KeyboardInterrupt):
            raise
    done.touch()
    return results


def copy_sources(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy2(src / n, dst / n)
    return dst


def chromium() -> str | None:
    return find_chromium()


def page_requests(netlog: Path) -> list[str]:
    """Network (non-file) URLs the page itself requested, from a chromium --log-net-log file.

    Chromium's own background requests carry no file:// isolation key and are ignored.
    """
    import json
    d = json.loads(netlog.read_text())
    names = {v: k for k, v in d["constants"]["logEventTypes"].items()}
    urls, page = {}, set()
    for e in d["events"]:
        n, p, src = names.get(e["type"]), e.get("params") or {}, (e.get("source") or {}).get("id")
        if n == "REQUEST_ALIVE" and "url" in p:
            urls[src] = p["url"]
        if n == "URL_REQUEST_START_JOB" and "file://" in str(p.get("network_isolation_key", "")):
            page.add(src)
    return sorted({urls[s] for s in page
                   if s in urls and not urls[s].startswith(("file:", "data:", "blob:"))})


def screenshot(url: str, out: Path, size: str) -> Path:
    """Headless chromium screenshot; fails when the page requests anything from the network."""
    exe = chromium()
    if exe is None:
        pytest.skip("chromium not installed: screenshot check skipped (apt-get install chromium)")
    netlog = out.with_suffix(".netlog.json")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--screenshot={out}",
                        f"--log-net-log={netlog}", f"--window-size={size}", url],
                       capture_output=True, timeout=120, check=False)
    assert out.is_file(), f"chromium wrote no screenshot of {url}"
    if netlog.is_file():
        assert page_requests(netlog) == [], f"{url} requests resources from the internet"
    return out


def pixel_std(png: Path) -> float:
    import numpy as np
    from PIL import Image
    return float(np.asarray(Image.open(png).convert("L"), dtype=float).std())


@pytest.fixture(scope="session")
def results(tmp_path_factory) -> Path:
    return shared_results(tmp_path_factory)


@pytest.fixture(scope="module")
def built(results, tmp_path_factory):
    """The report built once from the session's results, in a copy of report/."""
    report_dir = copy_sources(REPO / "report", tmp_path_factory.mktemp("report"), REPORT_SOURCES)
    out = publish.build_report([results], reference_dirs=[], report_dir=report_dir,
                               renderer="pandoc+typst", quiet=True)
    return report_dir, out


def completed_metrics(results: Path) -> list[dict]:
    import json
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/metrics.json"))]


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

def test_fixture_is_real(results):
    statuses = {p.parent.name: p.read_text() for p in results.glob("*/status.json")}
    statuses.update({p.parent.name: p.read_text() for p in results.glob(".running-*/status.json")})
    assert '"completed"' in statuses["smoke-ok"]
    assert '"failed"' in statuses["smoke-bad"]
    assert '"preempted"' in statuses[".running-smoke-run"]
    assert (results / "smoke-ok" / "model.pt").is_file()


def test_pdf_holds_the_metrics(built, results):
    report_dir, out = built
    pdf = out / "report.pdf"
    assert pdf.is_file() and pdf.stat().st_size > 10_000
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = re.sub(r"\s+", " ", text)
    metrics = completed_metrics(results)
    assert metrics, "the fixture has no completed run"
    for m in metrics:
        for key in m["headline"]:
            assert fmt_value(m["mean"][key]) in flat, (key, m["mean"][key])
        assert fmt_value(m["parameters"]) in flat
        assert fmt_loss(m["losses"]["test"]) in flat
        assert m["job_id"] in flat
    # protocol and data stated; a run that follows none says so
    assert "following no protocol" in flat
    assert "Moving MNIST" in flat
    # cross-references resolved, no raw markdown left
    assert "??" not in flat and "@fig-" not in flat and "@sec-" not in flat
    assert "{{<" not in flat


def test_failed_and_preempted_jobs_are_listed(built):
    report_dir, out = built
    html = (out / "report.html").read_text()
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*smoke-bad(?:(?!</tr>).)*</tr>", html, re.S)
    assert row, "the failed job is missing from the report"
    assert "failed" in row.group(0) and ".npz" in row.group(0), "the failure and its error"
    assert "smoke-run" in html and "preempted (resumable)" in html
    pdf_text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
    assert "smoke-bad" in pdf_text and "failed" in pdf_text


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.src: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("img", "script", "source", "video", "iframe") and a.get("src"):
            self.src.append(a["src"])
        if tag == "link" and a.get("href"):
            self.links.append(a["href"])


def test_html_is_self_contained(built):
    report_dir, out = built
    page = out / "report.html"
    parser = _Refs()
    parser.feed(page.read_text())
    assert parser.src, "the report shows no image"
    for src in parser.src + parser.links:
        if src.startswith("data:"):
            continue
        assert not re.match(r"^(https?:)?//", src), f"external resource in report: {src[:80]}"
        assert (page.parent / src).exists(), f"missing image {src}"
    text = page.read_text()
    assert "<math" in text, "math should be MathML"
    assert "mathjax" not in text.lower() and "cdn.jsdelivr" not in text
    # the animated GIF is in the HTML (embedded), the strip only in the PDF
    assert "data:image/gif" in text


def test_report_screenshot_not_blank(built, tmp_path):
    report_dir, out = built
    png = screenshot((out / "report.html").as_uri(), tmp_path / "report.png", "1000,1400")
    assert pixel_std(png) > 8.0


def test_pdf_page_not_blank(built, tmp_path):
    report_dir, out = built
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "4", "-l", "4", str(out / "report.pdf"),
                    str(tmp_path / "page")], check=True)
    pages = list(tmp_path.glob("page*.png"))
    assert pages and pixel_std(pages[0]) > 5.0


def test_rebuild_is_incremental(built, results, capsys):
    report_dir, out = built
    gen = out / ".build" / "_generated"  # the build's own (incremental.private_build)
    figs = sorted(gen.rglob("*.png")) + sorted(gen.rglob("*.gif"))
    assert figs
    before = {p: p.stat().st_mtime_ns for p in figs}
    rendered = {p: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".html", ".pdf")}
    capsys.readouterr()
    publish.build_report([results], reference_dirs=[], report_dir=report_dir, renderer="pandoc+typst")
    assert capsys.readouterr().out.startswith("up to date: ")  # not "wrote": nothing was rendered
    assert {p: p.stat().st_mtime_ns for p in figs} == before, "unchanged figures were rewritten"
    # nothing changed, so nothing is rendered again (what makes a rebuild take seconds; the
    # check counts work, not seconds, so that it holds on a slow machine too)
    assert {p: p.stat().st_mtime_ns for p in rendered} == rendered, "unchanged report re-rendered"


def test_empty_results_folder_is_a_clear_message(tmp_path):
    empty = tmp_path / "results"
    empty.mkdir()
    with pytest.raises(NowcastError, match="no results found"):
        publish.build_report([empty], reference_dirs=[], report_dir=REPO / "report")
    with pytest.raises(NowcastError, match=r"no results found in .*missing \(does not exist\)"):
        publish.build_report([tmp_path / "missing"], reference_dirs=[], report_dir=REPO / "report")
    done = subprocess.run([sys.executable, "-m", "nowcast.cli", "report", "--results", str(empty),
                           "--no-reference"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no results found" in done.stderr


def test_published_numbers_beside_ours(results):
    """Table 4.1 layout: a protocol's published reference rows follow ours."""
    run = next(r for r in find_runs([results]) if r.status == "completed")
    table = results_table("mmnist-t", [run], "tbl-x")
    for number in ("656.84", "7.26", "880.46", "1,858,049"):
        assert number in table
    assert "wu2019thesis" in table and "{#tbl-x}" in table
    table = results_table("mmnist-10", [run], "tbl-y")
    assert "103.3" in table and "29.80" in table and "indicative" in table


def test_broken_folder_is_reported_not_raised(results, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(results / "smoke-ok", root / "smoke-ok")
    (root / "smoke-ok" / "metrics.json").write_text("{ truncated")
    runs = find_runs([root])
    assert len(runs) == 1 and runs[0].status == "unreadable" and "metrics.json" in runs[0].error


def test_reference_runs_are_read_and_labelled(results, tmp_path):
    ref = tmp_path / "reference_results"
    shutil.copytree(results / "smoke-ok", ref / "smoke-ok")
    runs = find_runs([results], [ref, tmp_path / "absent"])
    refs = [r for r in runs if r.reference]
    assert len(refs) == 1 and refs[0].slug == "ref-smoke-ok"
    assert len({r.slug for r in runs}) == len(runs)
    table = results_table("none", [r for r in runs if r.status == "completed"], "tbl-z")
    assert "(reference)" in table
    # a missing results/ is fine when reference runs exist (a fresh clone)
    assert find_runs([tmp_path / "no-results-yet"], [ref])


def test_each_run_section_shows_its_own_figures(results, tmp_path):
    """Defect 12 of the seed: its report embedded another run's GIF. Two runs with different
    figures: each run's section names its own copy, and that copy holds its own bytes."""
    runs_dir = tmp_path / "results"
    for n, job in enumerate(("first", "second")):
        folder = shutil.copytree(results / "smoke-ok", runs_dir / job)
        frames = np.full((2, 8, 8), 40 * (n + 1), np.uint8)  # a different GIF per run
        iio.imwrite(folder / "test.gif", frames, extension=".gif")
        iio.imwrite(folder / "loss.png", frames[0] + n, extension=".png")
    runs = [r for r in find_runs([runs_dir]) if r.status == "completed"]
    assert len(runs) == 2 and len({r.slug for r in runs}) == 2
    gen = tmp_path / "_generated"
    fragments.copy_artifacts(runs, gen)
    for r in runs:
        for name in ("test.gif", "loss.png"):
            assert (gen / "runs" / r.slug / name).read_bytes() == (r.path / name).read_bytes()
        section = "\n".join(fragments.run_figures(r, gen))
        assert f"_generated/runs/{r.slug}/test.gif" in section
        others = [o.slug for o in runs if o.slug != r.slug]
        assert not any(f"_generated/runs/{o}/" in section for o in others)


def test_a_figure_removed_from_its_run_leaves_the_report(results, tmp_path):
    """A rebuild over a run whose test strip was removed (reference_results' weightless
    ablations, whose greyscale strips went) showed the earlier build's copy: black frames
    in the PDF. The copy goes with its source, and the section no longer names it."""
    folder = shutil.copytree(results / "smoke-ok", tmp_path / "results" / "run")
    iio.imwrite(folder / "test_strip.png", np.full((8, 8), 90, np.uint8), extension=".png")
    gen = tmp_path / "_generated"
    (run,) = [r for r in find_runs([tmp_path / "results"]) if r.status == "completed"]
    fragments.copy_artifacts([run], gen)
    assert (gen / "runs" / run.slug / "test_strip.png").is_file()
    (folder / "test_strip.png").unlink()
    (run,) = [r for r in find_runs([tmp_path / "results"]) if r.status == "completed"]
    fragments.copy_artifacts([run], gen)
    assert not (gen / "runs" / run.slug / "test_strip.png").exists()
    assert "test_strip.png" not in "\n".join(fragments.run_figures(run, gen))


def test_trained_on_says_where_and_how_long():
    """Every results row says where its run trained and for how long, from env.json alone."""
    from types import SimpleNamespace
    from nowcast.publish.describe import trained_on
    cases = [(dict(device="cpu (x86_64)", cpu_threads=1, cpu_cores=2, wall_seconds=3490),
              "1 thread of a 2\\-core CPU, 58 min"),
             (dict(device="cpu (x86_64)", cpu_threads=2, cpu_cores=2, wall_seconds=44.6), "2\\-core CPU, 45 s"),
             (dict(device="cpu (x86_64)", cpu_threads=1, wall_seconds=120),
              "CPU, 1 thread (cores not recorded), 2 min"),
             (dict(device="NVIDIA H200", wall_seconds=400), "NVIDIA H200, 7 min"),
             (dict(device="cpu", wall_seconds="soon"), "CPU"), ({}, "–")]
    for env, text in cases:
        assert trained_on(SimpleNamespace(env=env)) == text
    # one wording for a machine: the provenance and cost tables say it as the results do
    from nowcast.publish.describe import device
    run = SimpleNamespace(env=cases[0][0])
    assert device(run) == trained_on(run).rsplit(", ", 1)[0] == "1 thread of a 2\\-core CPU"


def test_each_baseline_has_its_own_line_in_per_lead_figures(tmp_path, monkeypatch):
    """Persistence and the mean frame were the same grey dashed line: a legend could not tell
    them apart. Each baseline now has its own dashes and grey, whatever its label adds."""
    from nowcast import figures
    drawn = {}
    real_plot = figures.plt.Axes.plot

    def plot(ax, x, y, fmt, **kw):
        drawn[kw["label"]] = (fmt, kw["color"])
        return real_plot(ax, x, y, fmt, **kw)
    monkeypatch.setattr(figures.plt.Axes, "plot", plot)
    metrics = {"protocol": "none", "per_lead": {"mse_frame": [1.0, 2.0]},
               "baselines": {b: {"per_lead": {"mse_frame": [1.5, 2.5]}}
                             for b in ("persistence", "mean_frame")}}
    figures.per_lead_plot(metrics, tmp_path / "p.png", names=["mse_frame"])
    assert drawn["persistence"] != drawn["mean_frame"] and drawn["model"][0] == "-"
    assert figures.baseline_line("persistence (job 7)") == drawn["persistence"]
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize("models, suffix", [(3, ""), (27, ""),
                                            (3, " @ fmi_pysteps_5min.npz (fmi-knmi-win-gated-mse)")])
def test_a_per_lead_legend_stays_inside_its_figure(tmp_path, monkeypatch, models, suffix):
    """The report's radar figure had 27 entries in a legend right of the panels: the first
    and last ran off the figure (knmi-30-60-cpu-p4, persistence, the bicubic runs were not
    named), and labels that name a data file squeezed the panels to slivers. Every entry is
    drawn inside the figure, a short and narrow legend still at the right."""
    from nowcast import figures
    kept = []
    monkeypatch.setattr(figures.plt, "close", kept.append)
    series = [(f"knmi-30-60-run-number-{i}{suffix}", {"csi_20": [0.5, 0.4]}, "-")
              for i in range(models)]
    series += [(b, {"csi_20": [0.4, 0.3]}, "--") for b in ("persistence", "sprog")]
    figures.per_lead_figure(series, ["csi_20", "csi_20"], tmp_path / "lead.png")
    # the skill-against-cost figure: the same legend, the same runs
    figures.cost_figure([(label, 1e15 * i, 0.4, None, None) for i, (label, *_) in
                         enumerate(series[:models])], [("persistence", 0.2), ("sprog", 0.3)],
                        "CSI 20 dBZ", tmp_path / "cost.png")
    monkeypatch.undo()
    for fig in kept:
        fig.canvas.draw()
        (legend,) = fig.legends
        box, frame = legend.get_window_extent(), fig.bbox
        assert len(legend.get_texts()) == models + 2
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1
        panels = fig.axes[0].get_window_extent()
        assert (box.x0 >= panels.x1) == (models + 2 <= figures.LEGEND_ROWS_RIGHT and not suffix)
        assert panels.width >= 1.8 * fig.dpi  # long labels once squeezed the panels to slivers
        figures.plt.close(fig)
    assert len(kept) == 2
    # 27 models: tab20's colours come round again, the markers tell the runs apart
    styles = {(figures.marker(i, cmap), cmap(i % cmap.N)) for i in range(models)
              for cmap in [figures.plt.get_cmap("tab10" if models <= 10 else "tab20")]}
    assert len(styles) == models


def test_a_varied_parameter_shows_at_its_default_too():
    """demo-filter-5's row said nothing of filter_size (5 is the default) beside filter-3's
    filter_size 3: every field the compared runs vary is shown, default or not."""
    from nowcast.publish.fragments import params_table
    from nowcast.results import Run
    runs = [Run(path=Path(n), job_id=n, name=n, status="completed", params=dict(
                name=n, job_id=n, filter_size=f, hidden_sizes=[8, 8], seed=0),
                metrics={"protocol": "none", "architecture": "convlstm_ed"})
            for n, f in (("f3", 3), ("f5", 5))]
    rows = {line.split("|")[1].strip(): line for line in params_table(runs).splitlines()
            if line.startswith("| f")}
    assert "filter\\_size=5" in rows["f5"] and "filter\\_size=3" in rows["f3"]
    assert "seed" not in rows["f5"]  # seed 0 in both: not varied, and the default


def test_a_run_without_figures_of_that_section_gets_no_heading(tmp_path):
    """The baselines' folders hold a per-lead figure only: their training-and-test headings
    were empty. A section names only what it shows."""
    from nowcast.publish.fragments import run_figures
    from nowcast.results import Run
    gen = tmp_path / "gen"
    (gen / "runs" / "ref-p").mkdir(parents=True)
    (gen / "runs" / "ref-p" / "per_lead.png").write_bytes(b"png")
    run = Run(path=tmp_path / "p", job_id="p", name="persistence", status="completed",
              reference=True, metrics={"protocol": "knmi-30-60", "architecture": "persistence"})
    assert run_figures(run, gen) == []
    (gen / "runs" / "ref-p" / "loss.png").write_bytes(b"png")
    parts = run_figures(run, gen)
    assert parts and "loss.png" in "".join(parts)


def test_a_table_of_baselines_alone_names_no_model_of_ours():
    from nowcast.publish.tables import _caption
    from nowcast.results import Run
    base = Run(path=Path("p"), job_id="p", name="persistence", status="completed",
               metrics={"protocol": "knmi-30-60", "architecture": "persistence", "mean": {}})
    model = Run(path=Path("m"), job_id="m", name="m", status="completed",
                metrics={"protocol": "knmi-30-60", "architecture": "convlstm_ed", "mean": {},
                         "losses": {"loss": "mse"}})
    alone = _caption("knmi-30-60", [base])
    assert "ours first" not in alone and "training losses" not in alone
    both = _caption("knmi-30-60", [model, base])
    assert "ours first" in both and "losses (mse) are the final mean training losses" in both
    # a TAU SimVP trains and validates on mse plus its divergence: the caption says so
    tau = Run(path=Path("t"), job_id="t", name="t", status="completed",
              metrics={"protocol": "mmnist-t", "architecture": "simvp", "mean": {},
                       "losses": {"loss": "mse"}},
              params={"architecture": "simvp", "translator": "tau", "tau_alpha": 0.1})
    gsta = Run(path=Path("g"), job_id="g", name="g", status="completed",
               metrics=tau.metrics, params={"architecture": "simvp", "translator": "gsta"})
    assert "losses (mse/mse + 0.1 x TAU divergence) are" in _caption("mmnist-t", [tau, gsta])


def test_one_row_per_baseline_and_data_whatever_float_noise():
    """The same baseline scored beside two models (float32 sums in other batch orders) is one
    entry, labelled without a job id; another data's baseline is its own."""
    from nowcast.publish.describe import baseline_label, embedded_baselines
    from nowcast.results import Run

    def model(job, mse):
        return Run(path=Path(job), job_id=job, name=job, status="completed", metrics={
            "architecture": "convlstm_ed", "baselines": {"persistence": {"mean": {"mse_frame": mse}}}})
    entries = embedded_baselines([model("a", 123.456781234), model("b", 123.456781301)])
    assert len(entries) == 1 and baseline_label("persistence", entries[0][2], entries) == "persistence"
    entries = embedded_baselines([model("a", 123.4), model("b", 98.7)])
    assert [baseline_label("persistence", r, entries) for _, _, r in entries] == [
        "persistence (a)", "persistence (b)"]


def test_the_data_section_describes_each_data_set_once_and_captions_name_it():
    """Issue 55: the KNMI description was printed in every caption (15 times): the data
    section numbers each distinct description once, captions name the numbers."""
    from types import SimpleNamespace
    from nowcast.publish.describe import data_note
    from nowcast.publish.fragments import data_used
    from nowcast.results import Run
    runs = [Run(path=Path(n), job_id=n, name=n, status="completed",
                metrics={"data": d, "protocol": "none", "mean": {}})
            for n, d in (("a", "fallback digits: 1 digit(s), 32px"), ("b", "fallback digits: 1 digit(s), 32px"),
                         ("c", "KNMI-30/60: 40 test windows"))]
    text = data_used(runs)
    assert "| D1 | fallback digits: 1 digit(s), 32px | a, b |" in text
    assert "| D2 | KNMI\\-30/60: 40 test windows | c |" in text and "{#tbl-data-sets}" in text
    assert data_note(runs) == "Data: D1, D2 (@tbl-data-sets)."
    assert data_note(runs[2:]) == "Data: D2 (@tbl-data-sets)."
    # a description this build has not numbered is written out (escaped)
    assert data_note([SimpleNamespace(data="X_one")]) == "Data: X\\_one."


def test_table_columns_hold_their_longest_word():
    """Issue 41: pandoc sizes PDF columns by the separator's dashes: a short column beside long
    ones got less than its one word ("completede9ed6be4b4cpu"). Every column now gets at least
    its longest word (hyphens and slashes may break), the rest shared by the long ones."""
    from nowcast.publish.markdown import PAGE_CHARS, _widths
    header = ["Job", "Run", "Status", "Git commit", "Device", "Precision", "Wall time",
              "Ended (UTC)", "Folder"]
    rows = [["knmi-30-60-cpu-p4-res2-long-name", "a run name of many words here", "completed",
             "e9ed6be4b4 (dirty)", "cpu (x86_64)", "bf16", "51 min", "2026-12-02 03:55",
             "reference_results"]] * 3
    widths = [w - 3 for w in _widths(header, rows)]
    share = [w / sum(widths) * PAGE_CHARS for w in widths]
    assert share[2] >= len("completed") and share[3] >= len("e9ed6be4b4")
    assert widths[7] >= len("2026-12-02")  # a hyphen before a digit does not break (UAX 14)
    assert widths[0] > widths[2]  # the long columns take the rest


def test_a_baseline_run_is_named_by_its_baseline_in_tables_and_legends():
    """Issue 36/41: 'persistence @ knmi-30-60 (reference) (knmi-30-60-persistence)' wrapped
    over five lines of the radar table: a baseline run is its baseline's name, in italics as
    the baselines scored inside model runs, once per table."""
    from nowcast.publish.describe import run_label
    runs = [r for r in find_runs([], [ROOT / "reference_results"]) if r.group == "knmi-30-60"]
    if not runs:  # (a model scored on another radar file is of group none, its own table)
        pytest.skip("no knmi-30-60 reference results")
    text = results_table("knmi-30-60", runs, "tbl-knmi")
    assert "@" not in text.split("\n: ")[0]  # the table's rows (the caption follows)
    for name in ("persistence", "extrapolation", "torch\\_extrapolation"):
        assert text.count(f"| *{name}* (reference) |") == 1, name
    assert {run_label(r) for r in runs if r.job_id == "knmi-30-60-persistence"} == {"persistence"}


def test_varied_fields_are_compared_as_each_run_ran():
    """A params.yaml that predates a field ran at its default (first_guess: persistence), and a
    field its choosers leave unused is no difference (ss_min 0.0 written before unused fields
    were nulled, null after): the comparison slide and table showed ss_min, hid first_guess."""
    from types import SimpleNamespace as Run
    from nowcast.publish.describe import varied_params
    old = Run(params={"residual": True, "ss_min": 0.0, "loss": "mse"}, metrics={})
    new = Run(params={"residual": True, "first_guess": "extrapolation", "ss_min": None,
                      "loss": "mse"}, metrics={})
    assert varied_params([old, new]) == {"first_guess"}
    # a run that predates guess_sampling sampled its first guess bilinearly (options.of_its_time)
    newer = Run(params=dict(new.params, guess_sampling="bicubic"), metrics={})
    assert varied_params([new, newer]) == {"guess_sampling"}
    assert varied_params([new, Run(params=dict(new.params, guess_sampling="bilinear"), metrics={})]) == set()


def test_two_builds_into_different_folders_never_mix_their_runs(results, tmp_path, monkeypatch):
    """Issue 37: two `nowcast report` at once (two sweeps' report jobs) both wrote
    <checkout>/report/_generated and mixed each other's runs. A second build that runs
    entirely while the first is between its fragments and its render (a renderer that starts
    it) leaves the first's report its own runs only."""
    from nowcast.publish import render as render_module
    other = tmp_path / "other"
    shutil.copytree(results / "smoke-ok", other / "lonely-run")
    meta = json.loads((other / "lonely-run" / "status.json").read_text())
    (other / "lonely-run" / "status.json").write_text(json.dumps(dict(meta, job_id="lonely-run")))
    report_dir = copy_sources(REPO / "report", tmp_path / "report", REPORT_SOURCES)
    real = render_module.RENDERERS["pandoc+typst"]
    nested = []

    def render_after_another_build(project, out_dir, formats):
        if not nested:  # the first render only: the other build's own render is the real one
            nested.append(tmp_path / "out-b")
            publish.build_report([other], nested[0], reference_dirs=[], report_dir=report_dir,
                                 renderer="pandoc+typst", formats=("html",), quiet=True)
        return real(project, out_dir, formats)
    monkeypatch.setitem(render_module.RENDERERS, "pandoc+typst", render_after_another_build)
    out_a = publish.build_report([results], tmp_path / "out-a", reference_dirs=[],
                                 report_dir=report_dir, renderer="pandoc+typst", formats=("html",),
                                 quiet=True)
    a, b = (out_a / "report.html").read_text(), (nested[0] / "report.html").read_text()
    assert "smoke-ok" in a and "lonely-run" not in a
    assert "lonely-run" in b and "smoke-bad" not in b
