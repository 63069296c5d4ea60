"""Every params set in params/ loads, validates and says what its comments say."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nowcast.config import load_config
from nowcast.launch.params import expand_grid
from nowcast.protocols import PRESETS
from nowcast.errors import NowcastError
from nowcast.models import count_parameters, get_model
from nowcast.launch.params import collect

ROOT = Path(__file__).resolve().parents[1]
PARAMS = sorted((ROOT / "params").glob("*.yaml")) + sorted((ROOT / "params" / "demo").glob("*.yaml"))
GRIDS = sorted((ROOT / "params" / "grids").glob("*.yaml"))


def test_expected_sets_exist():
    names = {p.stem for p in PARAMS}
    for stem in ["smoke", "seed-best-mmnist", "seed-best-radar", "thesis-ef-1x128", "thesis-ef-2x64",
                 "thesis-ef-3-64-32-32", "thesis-fclstm-2x2048", "mmnist-10", "mmnist-t", "knmi-30-60"]:
        assert stem in names, stem
    assert len(list((ROOT / "params" / "demo").glob("*.yaml"))) >= 2
    assert GRIDS


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: str(p.relative_to(ROOT)))
def test_params_file_loads(path):
    load_config(path)  # types, choices, cross-field checks, the model built on 'meta'
    assert yaml.safe_load(path.read_text()).get("name")  # papermill -f FILE gets its name too
    text = path.read_text()
    assert "/home/" not in text and "/Users/" not in text and "\n/" not in text  # no personal paths


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_grid_expands(path):
    points = expand_grid(path)
    assert len(points) >= 2
    names = [name for name, _ in points]
    assert len(set(names)) == len(names)


def test_demo_sets_differ_in_one_hyperparameter():
    cfgs = [load_config(p).to_dict() for p in sorted((ROOT / "params" / "demo").glob("*.yaml"))]
    differing = {k for k in cfgs[0] if k != "name" and len({repr(c[k]) for c in cfgs}) > 1}
    assert len(differing) == 1, differing


def test_seed_best_mmnist_is_the_seed_model():
    cfg = load_config(ROOT / "params" / "seed-best-mmnist.yaml")
    assert cfg.hidden_sizes == [64, 32, 32, 16] and cfg.stride == 2 and cfg.filter_size == 5
    assert cfg.max_pool and cfg.transpose and cfg.norm == "layer" and not cfg.bias
    assert cfg.loss == "bce" and cfg.batch_size == 64 and cfg.num_epochs == 1
    assert cfg.curriculum == [2, 3, 4, 5, 6, 7, 8] and cfg.initial_lr == 0.01
    assert cfg.scheduler == "step" and cfg.gamma == 0.95 and cfg.restart_lr_per_stage
    # SEED_NOTES.md: 4,273,424 parameters
    assert count_parameters(get_model(cfg, device="meta")) == 4_273_424


@pytest.mark.parametrize("stem", ["thesis-ef-1x128", "thesis-ef-2x64", "thesis-ef-3-64-32-32",
                                  "thesis-fclstm-2x2048"])
def test_thesis_sets(stem):
    cfg = load_config(ROOT / "params" / f"{stem}.yaml")
    assert cfg.protocol == "mmnist-t" and cfg.loss == "mse" and cfg.early_stopping == 5
    assert cfg.architecture == ("fc_lstm" if "fclstm" in stem else "encoder_forecaster")
    # options.USES: encoder_forecaster takes stride 1 only; fc_lstm uses no convolution field
    assert cfg.stride == (None if cfg.architecture == "fc_lstm" else 1)
    assert cfg.max_pool is None and cfg.transpose is None and cfg.feed_upward is None


@pytest.mark.parametrize("protocol", sorted(PRESETS))
def test_protocol_presets(protocol):
    cfg = load_config(ROOT / "params" / f"{protocol}.yaml")
    assert cfg.protocol == protocol
    for key, value in PRESETS[protocol].items():
        assert getattr(cfg, key) == value


def test_seed_best_radar_follows_knmi():
    cfg = load_config(ROOT / "params" / "seed-best-radar.yaml")
    assert cfg.protocol == "knmi-30-60" and cfg.dataset == "radar" and cfg.loss != "bce"


def _write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_rejected_with_suggestion(tmp_path):
    with pytest.raises(NowcastError, match="did you mean 'stride'"):
        collect([_write(tmp_path, "strde: 2\n")])


def test_wrong_type_is_rejected(tmp_path):
    with pytest.raises(NowcastError, match="batch_size"):
        collect([_write(tmp_path, "batch_size: eight\n")])


def test_impossible_combination_is_rejected(tmp_path):
    with pytest.raises(NowcastError, match="exclude each other"):
        collect([_write(tmp_path, "teacher_forcing: true\nscheduled_sampling: true\n")])


def test_missing_data_file_is_rejected_before_anything_runs(tmp_path):
    with pytest.raises(NowcastError, match="file.npz: no such data file"):
        collect([_write(tmp_path, "dataset: npz\ndata_file: no/such/file.npz\n")])


def test_a_bad_set_among_good_ones_stops_everything(tmp_path):
    with pytest.raises(NowcastError, match="bad.yaml"):
        collect([ROOT / "params" / "smoke.yaml", _write(tmp_path, "stride: 3\n")])


@pytest.mark.parametrize("typed,value", [("1e-3", 0.001), ("1.0e-3", 0.001), ("1e+8", 1e8),
                                         ("5E-4", 5e-4), ("0.002", 0.002), ("2", 2)])
def test_numbers_as_people_write_them(tmp_path, typed, value):
    """YAML 1.2 numbers in a params file, in --set and in a grid (YAML 1.1 reads 1e-3 as a
    string, and PyYAML implements 1.1)."""
    f = tmp_path / "p.yaml"
    f.write_text(f"initial_lr: {typed}\n")
    assert load_config(f).initial_lr == value
    assert load_config(overrides=[f"initial_lr={typed}"]).initial_lr == value
    grid = tmp_path / "g.yaml"
    grid.write_text(f"base: p.yaml\naxes:\n  initial_lr: [{typed}, 0.5]\n")
    assert [s.cfg.initial_lr for s in collect([str(grid)])] == [value, 0.5]


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("stride: 1\nseed: 3\nstride: 2\n")
    with pytest.raises(NowcastError, match=r"p.yaml: not valid YAML \(line 3, column 1: key "
                                           r"'stride' is given twice \(lines 1 and 3\)\)"):
        load_config(f)


def test_names_and_ids_are_text_as_typed():
    cfg = load_config(overrides=["name=#1 model", "job_id=run #2"])
    assert (cfg.name, cfg.job_id) == ("#1 model", "run #2")
    assert load_config(overrides=["job_id='quoted'"]).job_id == "'quoted'"
    assert load_config(values={"job_id": "~"}).job_id == "~"   # nowcast train --job-id "~"
    assert load_config(overrides=["job_id=17_0"]).job_id == "17_0"


def test_the_demo_validates_often_enough_for_a_loss_curve():
    """Issue 41: the demo's loss curves had two points per line (one validation per epoch)."""
    from nowcast.training import make_plan
    for path in sorted((ROOT / "params" / "demo").glob("*.yaml")):
        assert make_plan(load_config(path)).validations() >= 8, path.name


def test_two_params_sets_with_one_job_id_are_refused_before_anything_runs(tmp_path):
    """Issue 37: `run` trained the first of two sets sharing a job_id, then stopped at the
    second; now collect refuses them together, naming both."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            (ROOT / "params" / "smoke.yaml").read_text() + "\njob_id: shared\n")
    with pytest.raises(NowcastError, match=r"b\.yaml: job_id 'shared' is also .*a\.yaml's"):
        collect([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert len(collect([tmp_path / "a.yaml"])) == 1
