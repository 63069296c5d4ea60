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
