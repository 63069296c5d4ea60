"""Integers as YAML 1.2 reads them, on every surface nowcast parses (issue: one typed value,
one run): files, --set, grid axes and bases."""

from __future__ import annotations

import pytest

from nowcast import yamlio
from nowcast.config import load_config, parse_override
from nowcast.launch.params import expand_grid
from nowcast.errors import NowcastError


@pytest.mark.parametrize("text, value", [("010", 10), ("0o12", 10), ("0x1f", 31), ("-7", -7),
                                         ("+3", 3), ("007", 7)])
def test_yaml_1_2_integers(text, value):
    assert yamlio.load(text) == value and type(yamlio.load(text)) is int


@pytest.mark.parametrize("text", ["1:04", "0b101", "1_6", "0o19"])
def test_yaml_1_1_only_integers_are_text(text):
    assert yamlio.load(text) == text


def test_every_surface_reads_010_as_ten(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("seed: 010\nbatch_size: 0o20\n")
    cfg = load_config(params)
    assert (cfg.seed, cfg.batch_size) == (10, 16)
    assert load_config(overrides=["seed=010"]).seed == 10
    assert parse_override("seed=010") == ("seed", 10)
    grid = tmp_path / "g.yaml"
    grid.write_text("base: {seed: 010}\naxes:\n  batch_size: [010, 0x10]\n")
    assert [p["batch_size"] for _, p in expand_grid(grid)] == [10, 16]
    assert all(p["seed"] == 10 for _, p in expand_grid(grid))


@pytest.mark.parametrize("text", ["1:04", "0b101", "1_6"])
def test_yaml_1_1_integers_are_refused_where_a_number_is_expected(tmp_path, text):
    params = tmp_path / "p.yaml"
    params.write_text(f"seed: {text}\n")
    with pytest.raises(NowcastError, match="'seed' must be int"):
        load_config(params)


def test_the_fast_parser_reads_every_params_file_as_the_python_one():
    """yamlio.load takes libyaml's parser for shallow documents: the same values as PyYAML's
    own parser, for every params file of the repository and the tricky numbers above."""
    from pathlib import Path
    if yamlio.CParamsLoader is None:
        pytest.skip("PyYAML without libyaml: the Python parser reads everything")
    texts = [p.read_text() for p in Path(__file__).resolve().parents[1].glob("params/**/*.yaml")]
    texts.append("a: 010\nb: 0o12\nc: 1:04\nd: 1e-3\ne: [1_6, 0b101, .inf]\nf: {g: 0x1f}\n")
    assert len(texts) > 30
    for text in texts:
        assert yamlio.shallow(text)
        python = yamlio.ParamsLoader(text)
        try:
            want = python.construct_document(python.get_single_node())
        finally:
            python.dispose()
        assert yamlio.load(text) == want


@pytest.mark.parametrize("text", ["[" * 200000, "- " * 5000 + "1", "{a: " * 64 + "1" + "}" * 64,
                                  "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 100))])
def test_a_deep_document_never_reaches_the_c_parser(text):
    """libyaml's composer recurses in C: a deep document would crash the process. `shallow`
    sends it to the Python parser, which refuses it in one line (run in a child process, so
    that a crash is a failure and not the end of the test run)."""
    import subprocess
    import sys
    assert not yamlio.shallow(text)
    code = ("import sys; from nowcast import yamlio\ntry:\n    yamlio.load(sys.stdin.read())\n"
            "except yamlio.TooLarge as e:\n    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("refused: "), done.stderr[-300:]
