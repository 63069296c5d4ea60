"""Everything read from a results folder is data: escaped wherever the report renders it, never
followed as a path, and a damaged file costs its own run a figure (or a listing as unreadable),
never the report.

The folders are written by hand with hostile contents (no training needed); the report is
built with pandoc + typst into a copy of report/.
"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nowcast import publish
from nowcast.errors import NowcastError
from nowcast.publish.render import expand_includes
from nowcast.results import find_runs

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["_quarto.yml", "index.qmd", "references.bib", "crossref.lua", "style.css", "style.typ"]
SECRET = "nowcast-secret-file-contents-1234"
HTML_ATTACK = "<img src=x onerror=alert(3)>"
TYPST_ATTACK = '#set page(fill: red) $x$ @foo `code` *b* _i_ #read("/etc/hostname") <lab>'


def _run(root: Path, name: str, status: str, error=None, metrics=None, params=None, files=()):
    d = root / name
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps(dict(status=status, job_id=name, name=name,
                                                   error=error, started="2024-01-01T00:00:00")))
    (d / "params.yaml").write_text(json.dumps(params or {"name": name}))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    for f in files:
        Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(d / f)
    return d


def _metrics(name: str, **extra) -> dict:
    m = {"name": name, "job_id": name, "architecture": "convlstm_ed", "parameters": 12,
         "protocol": "none", "follows_protocol": False, "data": "some data", "k_in": 3,
         "k_out": 3, "losses": {"train": 0.1, "val": 0.2, "test": 0.3, "loss": "bce"},
         "mean": {"mse_frame": 1.5, "ssim": 0.4}, "per_lead": {"mse_frame": [1, None, 3]},
         "headline": ["mse_frame", "ssim"]}
    m.update(extra)
    return m


def build(results: Path, tmp_path: Path) -> tuple[Path, str]:
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    for n in SOURCES:
        shutil.copy2(REPO / "report" / n, report_dir / n)
    out = publish.build_report([results], reference_dirs=[], report_dir=report_dir,
                               renderer="pandoc+typst", quiet=True, out_dir=tmp_path / "out")
    pdf = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True,
                         text=True, check=True).stdout
    return out, re.sub(r"\s+", "", pdf)  # table cells wrap anywhere: compare without spaces


class _Live(html.parser.HTMLParser):
    """Elements and attributes that would act in a browser."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed") or any(k.startswith("on") for k, _ in attrs):
            self.found.append(f"<{tag} {attrs}>")
        if tag == "img" and any(v == "x" for k, v in attrs if k == "src"):
            self.found.append(f"<{tag} {attrs}>")


def test_run_data_is_inert_in_html_and_pdf(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    include = f"{{{{< include {secret} >}}}}"
    results = tmp_path / "results"
    _run(results, "failed-html", "failed", error=f"{HTML_ATTACK} {TYPST_ATTACK}")
    _run(results, "failed-include", "failed", error=f"x\n{include}\n<script>alert(9)</script>")
    _run(results, "odd-status", "<img src=x onerror=alert(5)>", error="e")
    _run(results, "proto", "completed", metrics=_metrics(
        "proto", protocol="<img src=x onerror=alert(4)>", follows_protocol=True, data=HTML_ATTACK))
    _run(results, "typed", "completed", params={"name": "typed $\\undefined$", "norm": HTML_ATTACK},
         metrics=_metrics("typed", mean={"mse_frame": 1.0, "<img src=x onerror=alert(7)>": 0.5,
                                         f"k\n{include}\nz": 0.1},
                          headline=["mse_frame", "<img src=x onerror=alert(7)>"]))
    out, pdf = build(results, tmp_path)
    page = (out / "report.html").read_text()
    live = _Live()
    live.feed(page)
    assert live.found == [], live.found
    assert SECRET not in page and SECRET not in pdf, "a path from a results folder was included"
    assert "onerror=alert(3)" in page and "alert(9)" in page  # shown, as text
    assert "#setpage(fill:red)" in pdf and "onerror=alert(3)" in pdf  # typst printed it
    # a run whose protocol is no protocol's name is listed with the runs that follow none
    assert "onerror=alert(4)" in pdf and "proto" in pdf


def test_includes_stay_inside_the_report_and_out_of_generated_text(tmp_path):
    (tmp_path / "_generated").mkdir()
    (tmp_path / "_generated" / "a.md").write_text("{{< include ../chapter.qmd >}}\n")
    (tmp_path / "chapter.qmd").write_text("chapter text\n")
    assert expand_includes("{{< include chapter.qmd >}}\n", tmp_path) == "chapter text\n"
    # a fragment is inserted as it is: a shortcode in it is never followed
    assert expand_includes("{{< include _generated/a.md >}}\n", tmp_path) == \
        "{{< include ../chapter.qmd >}}\n"
    for bad in ("/etc/passwd", "../outside.md", "_generated/../../outside.md"):
        with pytest.raises(NowcastError, match="outside the project folder"):
            expand_includes(f"{{{{< include {bad} >}}}}\n", tmp_path)


def test_damaged_figure_is_left_out_with_a_warning(tmp_path, capsys):
    results = tmp_path / "results"
    good = _run(results, "good", "completed", metrics=_metrics("good"), files=["loss.png"])
    bad = _run(results, "broken", "completed", metrics=_metrics("broken"),
               files=["loss.png", "test_strip.png"])
    data = (bad / "loss.png").read_bytes()
    (bad / "loss.png").write_bytes(data[:len(data) // 2])  # truncated by a full disk
    out, pdf = build(results, tmp_path)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "broken" in warnings[0] and "loss.png" in warnings[0], warnings
    gen = out / ".build" / "_generated" / "runs"  # the build's own (incremental.private_build)
    assert not (gen / "broken" / "loss.png").exists() and (gen / "broken" / "test_strip.png").exists()
    assert (gen / "good" / "loss.png").exists()
    assert "broken" in pdf and (out / "report.html").is_file()
    assert good.is_dir()


@pytest.mark.parametrize("field, value, needle", [
    ("mean", {"ssim": "abc"}, "'mean': 'ssim' must be a number"),
    ("baselines", {"persistence": {"mean": 5}}, "'baselines': 'persistence'"),
    ("per_lead", {"mse_frame": "abc"}, "'per_lead': 'mse_frame' must be a list"),
    ("headline", "ssim", "'headline' must be a list"),
    ("parameters", "many", "'parameters' must be an integer"),
    ("losses", [1, 2], "'losses' must be a mapping"),
])
def test_wrong_typed_metrics_make_the_run_unreadable(tmp_path, capsys, field, value, needle):
    results = tmp_path / "results"
    _run(results, "ok", "completed", metrics=_metrics("ok"))
    _run(results, "odd", "completed", metrics=_metrics("odd", **{field: value}))
    runs = {r.job_id: r for r in find_runs([results])}
    assert runs["odd"].status == "unreadable" and needle in runs["odd"].error
    assert runs["ok"].status == "completed"
    out, pdf = build(results, tmp_path)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("nowcast: warning: ")
    assert "metrics.json" in warnings[0] and needle in warnings[0]
    assert "odd" in pdf and "unreadable" in pdf


def test_links_and_fifos_in_a_results_folder_are_never_followed(tmp_path):
    """Issue 37: a loss.png linked to a file outside its folder was embedded in report.html and
    copied by the slides; a FIFO as status.json or progress.json hung every reader. A results
    folder's reader opens regular files of the folder only."""
    import os
    import sys
    from nowcast.publish.incremental import copy_artifacts
    from nowcast.results import read_run
    results = tmp_path / "results"
    d = _run(results, "linked", "completed", metrics=_metrics("linked"), files=["test_strip.png"])
    outside = tmp_path / "secret.png"
    Image.fromarray(np.full((40, 60, 3), 7, np.uint8)).save(outside)
    (d / "loss.png").symlink_to(outside)
    (run,) = find_runs([results])
    assert run.file("loss.png") is None and run.file("test_strip.png") is not None
    copy_artifacts([run], tmp_path / "gen", ["loss.png", "test_strip.png"])
    assert not (tmp_path / "gen" / "runs" / "linked" / "loss.png").exists()
    assert (tmp_path / "gen" / "runs" / "linked" / "test_strip.png").is_file()
    # a link as status.json: its target is not read (the run is unreadable, not the target's)
    e = _run(results, "evil", "completed", metrics=_metrics("evil"))
    (e / "status.json").unlink()
    (e / "status.json").symlink_to(results / "linked" / "status.json")
    assert read_run(e).job_id == "evil" and "status.json unreadable" in read_run(e).error
    # FIFOs as status.json and progress.json: `nowcast status` answers (in a child process,
    # so that a regression fails on the timeout instead of hanging the suite)
    f = _run(results, "fifo", "running")
    (f / "status.json").unlink()
    os.mkfifo(f / "status.json")
    os.mkfifo(f / "progress.json")
    done = subprocess.run([sys.executable, "-m", "nowcast", "status", "--results", str(results)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "fifo" in done.stdout, done.stderr


def test_a_failed_render_leaves_the_previous_report(tmp_path, monkeypatch):
    """Issue 37: on a full disk report.html was left truncated, replacing the good one. The
    renderers write beside the target and rename when complete."""
    from nowcast.errors import NowcastError as Error
    from nowcast.publish import render
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the previous, good report")

    def cut_short(cmd, cwd, what, env=None):
        Path(cmd[cmd.index("-o") + 1]).write_text("half a rep")  # then the disk was full
        raise Error(f"{what} failed: No space left on device")
    monkeypatch.setattr(render, "run_tool", cut_short)
    with pytest.raises(Error, match="No space left"):
        render._pandoc_html(["pandoc"], tmp_path, out)
    assert (out / "report.html").read_text() == "the previous, good report"
    assert [p.name for p in out.iterdir()] == ["report.html"]  # no temporary file left


def test_a_linked_run_folder_is_not_a_run_of_the_root(tmp_path):
    """Third faults pass, item 5: a symlink in a results root to a run folder elsewhere was
    listed by status, published by the report and counted as completed by sweep."""
    import shutil
    from nowcast.results import completed_by_params, find_runs
    reference = Path(__file__).resolve().parents[1] / "reference_results" / "knmi-30-60-persistence"
    outside, root = tmp_path / "outside", tmp_path / "results"
    shutil.copytree(reference, outside / "real")
    root.mkdir()
    (root / "linked").symlink_to(outside / "real", target_is_directory=True)
    shutil.copytree(reference, root / "own")
    assert [r.path.name for r in find_runs([root])] == ["own"]
    assert [p.name for p in completed_by_params(root).values()] == ["own"]
    assert [r.path.name for r in find_runs([outside])] == ["real"]  # where it really is: found


@pytest.mark.parametrize("name", ["status.json", "metrics.json", "env.json", "progress.json"])
def test_deeply_nested_files_cost_their_run_not_everyone(tmp_path, name):
    """Third faults pass, item 6: '[' * 200000 in one file was a RecursionError traceback for
    status, report, slides, sweep and run over the whole root."""
    from nowcast.launch.queue import sweep_tasks
    from nowcast.results import find_runs
    reference = Path(__file__).resolve().parents[1] / "reference_results" / "knmi-30-60-persistence"
    root = tmp_path / "results"
    shutil.copytree(reference, root / "bad")
    shutil.copytree(reference, root / "good")
    (root / "bad" / name).write_text("[" * 200_000)
    sweeps = root / ".sweeps" / "x"
    sweeps.mkdir(parents=True)
    (sweeps / "jobs.yaml").write_text("[" * 200_000)
    runs = find_runs([root])
    assert any(r.path.name == "good" and r.status == "completed" for r in runs)
    assert sweep_tasks(root) == []
    done = subprocess.run([sys.executable, "-m", "nowcast", "status", "--results", str(root)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_scores_file_declaring_millions_of_rows_is_refused_unread(tmp_path, capsys):
    """Third faults pass, item 8: a 424 KB scores.npz of 2,000,000 rows made the report
    allocate 14.9 GiB. Its header is read, never its data: one warning, no intervals."""
    import numpy as np
    from nowcast.publish.uncertainty import MAX_SCORE_VALUES, read_scores
    np.savez_compressed(tmp_path / "big.npz", contingency=np.zeros((2_000_000, 4, 4, 12), np.int64))
    assert read_scores(tmp_path / "big.npz") is None
    assert "384,000,000 values" in capsys.readouterr().err
    ok = np.ones((2000, 10), np.float32)
    np.savez_compressed(tmp_path / "ok.npz", mse=ok)
    assert np.array_equal(read_scores(tmp_path / "ok.npz")["mse"], ok)
    assert 2000 * 10 < MAX_SCORE_VALUES


def test_huge_and_non_finite_values_cost_a_point_not_the_figure(tmp_path):
    """Third faults pass, item 8: +-1e308 in per_lead or history.csv crashed the figures."""
    from nowcast import figures
    from nowcast.publish.fragments import _val_curve
    from nowcast.results import find_runs
    series = [("model", {"csi_20": [0.5, 1e308, -1e308, float("inf"), None, "x", 0.4]}, "-"),
              ("persistence", {"csi_20": [0.3] * 7}, "--")]
    figures.per_lead_figure(series, ["csi_20"], tmp_path / "lead.png")
    assert (tmp_path / "lead.png").stat().st_size > 1000
    reference = Path(__file__).resolve().parents[1] / "reference_results" / "knmi-abl-free-csi"
    shutil.copytree(reference, tmp_path / "run")
    history = tmp_path / "run" / "history.csv"
    lines = history.read_text().splitlines()
    head = lines[0].split(",")
    row = lines[1].split(",")
    row[head.index("val_loss")] = "1e308"
    history.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    (run,) = find_runs([tmp_path / "run"])
    points = _val_curve(run)
    assert len(points) == len(lines) - 2 and all(abs(v) < 1e12 for _, v in points)
    figures.val_loss_figure([("run", "mse", points)], tmp_path / "val.png")
    assert (tmp_path / "val.png").stat().st_size > 1000
