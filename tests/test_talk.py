"""The deck as a talk (issue 55 item 5): per protocol the best model against the baselines with
its per-lead figure, a forecast, the findings; the conclusions; at most TALK_SLIDES slides before
the Backup divider whatever the number of runs, the rest behind it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nowcast.publish import slides, talk


@pytest.fixture(scope="module")
def runs(reference_runs):  # conftest: the committed folders
    return reference_runs


def count(text: str) -> int:
    return text.count("\n---\n") + 1


def test_the_talk_fits_before_the_backup_and_tells_the_story(runs, tmp_path):
    slides.write_slide_fragments(runs, tmp_path)
    text = (tmp_path / "talk.md").read_text()
    deck = (Path(slides.repo_root()) / "slides" / "deck.md").read_text()
    before = deck.split("<!-- include: _generated/talk.md -->")[0]
    assert before.count("\n---\n") - 1 == talk.FIXED_SLIDES  # front matter, then the fixed slides
    assert talk.FIXED_SLIDES + count(text) <= talk.TALK_SLIDES
    assert deck.index("_generated/talk.md") < deck.index("## Backup") < deck.index("_generated/experiments.md")
    plain = text.replace("\\", "")
    assert "KNMI-30/60: radar nowcasting, 30 min in, 60 min out: the best model against the baselines" in plain
    assert "model − torch_extrapolation" in plain and "talk-per-lead-knmi-30-60.png" not in plain  # embedded
    assert "a test forecast of" in plain and "one parameter at a time" in plain
    assert plain.rstrip().split("\n---\n")[-1].count("residual models added skill") >= 1
    pdf = (tmp_path / "talk.pdf.md").read_text()
    assert "../_generated/talk-per-lead-knmi-30-60.png" in pdf and (tmp_path / "talk-per-lead-knmi-30-60.png").is_file()


def test_protocols_past_the_limit_move_behind_the_backup(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(talk, "TALK_SLIDES", talk.FIXED_SLIDES + 4)
    shown, backup = talk.talk_slides(runs, tmp_path, False, slides._image, slides._media)
    assert len(shown) <= 4 and backup
    assert shown[-1].count("Conclusions") == 1


def test_the_conclusions_fit_above_the_page_number_and_count_the_rest(runs, tmp_path):
    """Five wrapped conclusions of the reference runs ran over the slide's page number: the
    slide keeps the bullets that fit in CONCLUSION_LINES wrapped lines and counts the rest."""
    shown, _ = talk.talk_slides(runs, tmp_path, False, slides._image, slides._media)
    bullets = [line for line in shown[-1].splitlines() if line.startswith("- ")]
    assert sum(map(talk._shown_lines, bullets)) <= talk.CONCLUSION_LINES
    assert bullets[-1].startswith("- ... ") and bullets[-1].endswith("more in the report's conclusion")
    assert len(bullets) >= 3 and "residual models added skill" in "".join(bullets)
    short = ["- **a**: one line"] * 3
    assert talk.fitting(short) == short  # what fits is shown whole, with no count
    long = ["- " + "x" * (2 * talk.CONCLUSION_CHARS)] * 8  # 3 lines each
    assert talk.fitting(long) == long[:3] + ["- ... 5 more in the report's conclusion"]


def test_a_run_slide_says_what_stopped_it_not_the_epochs_it_never_reached(runs):
    run = next(r for r in runs if r.job_id == "knmi-30-60-cpu-p4-gated-csi")
    listed = dict(slides.slide_params(run))
    assert "num_epochs" not in listed and "time_budget_min" not in listed
    assert listed["trained"] == "2,648 steps, stopped by time budget (95 min)"
    planned = dict(slides.slide_params(next(r for r in runs if r.job_id == "knmi-abl-gated-csi")))
    assert planned["trained"] == "400 steps, stopped by plan"


def test_backup_table_slides_fit_and_lose_no_row(runs):
    """The comparison slide ran off the slide (30 varied fields as columns, 14 rows cut at
    8 without a word) and the summary's wrapped rows over the page number: tables are paged,
    a comparison shows its most varied fields and counts the rest."""
    from nowcast.publish.uncertainty import seed_groups
    knmi = [s for s in slides.comparison_slides(runs) if "Compared: knmi\\-30\\-60" in s]
    rows = [[line for line in s.splitlines() if line.startswith("| ")][1:] for s in knmi]
    models = [r for r in runs if r.group == "knmi-30-60" and r.status == "completed"
              and r.params and not slides.is_baseline(r)]
    assert sum(map(len, rows)) == len(seed_groups(models))
    assert all(0 < len(r) <= slides.ROWS_PER_COMPARISON for r in rows) and len(knmi) > 1
    header = [line for line in knmi[0].splitlines() if line.startswith("| ")][0]
    assert header.count(" | ") + 1 <= 1 + slides.FIELDS_PER_COMPARISON + 3
    assert "more fields differ: the report's parameter table." in knmi[0]
    # the training-files column (npz lists, 70 characters) ran off the slide's right edge
    fields = [c for c in header.strip("| ").split(" | ")[1:] if not c.endswith(("↑", "↓"))]
    assert "train\\_files" not in fields and fields
    for line in (ln for s in knmi for ln in s.splitlines()[1:] if ln.startswith("| ")):
        cells = line.split(" | ")[1:1 + len(fields)]
        assert all(len(c.replace("\\", "")) <= slides.FIELD_CELL_CHARS for c in cells), line
    summary = slides.summary_slides(runs)
    assert all(len([ln for ln in s.splitlines() if ln.startswith("| ")]) - 1 <= slides.ROWS_PER_SUMMARY
               for s in summary)
    assert sum(len([ln for ln in s.splitlines() if ln.startswith("| ")]) - 1 for s in summary) == len(runs)
