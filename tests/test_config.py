import pytest

from nowcast.config import Config, load_config, parse_override
from nowcast.launch.params import expand_grid
from nowcast.errors import NowcastError


def test_defaults_and_overrides_types():
    cfg = load_config(overrides=["stride=1", "hidden_sizes=[16, 8]", "initial_lr=0.1",
                                 "leaky_slope=0.2"])
    assert cfg.stride == 1 and cfg.max_pool is None and cfg.hidden_sizes == [16, 8]
    assert cfg.initial_lr == 0.1 and cfg.leaky_slope == 0.2
    assert isinstance(load_config(overrides=["initial_lr=1"]).initial_lr, float)  # ints pass as floats


def test_unknown_key_suggests_closest(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("strid: 2\n")
    with pytest.raises(NowcastError, match=r"x.yaml: unknown parameter 'strid' \(did you mean 'stride'\?\)"):
        load_config(f)


@pytest.mark.parametrize("override, message", [
    ("stride=3", "'stride' must be 1 | 2 or null, got 3"),
    ("batch_size=eight", "'batch_size' must be int"),
    ("max_pool=1", "'max_pool' must be bool or null, got 1"),
    ("batch_size=0", "'batch_size' must be >= 1"),
    ("filter_size=4", "must be odd"),
    ("hidden_sizes=[8, 8, 8]", "even number of layers"),
    ("image_size=62", "frame size 62x62 is not divisible by the total down-sampling 4"),
])
def test_bad_values_are_one_line_errors(override, message):
    with pytest.raises(NowcastError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as e:
        load_config(overrides=[override])
    assert "\n" not in str(e.value)


def test_impossible_combinations():
    with pytest.raises(NowcastError, match="'max_pool' is not used with stride: 1"):
        load_config(overrides=["stride=1", "max_pool=true"])
    with pytest.raises(NowcastError, match="exclude each other"):
        load_config(overrides=["teacher_forcing=true", "scheduled_sampling=true"])
    with pytest.raises(NowcastError, match="fused gates"):
        load_config(overrides=["fused_gates=true", "norm=layer"])


def test_protocol_preset_fills_and_guards():
    cfg = load_config(values={"protocol": "mmnist-t"})
    assert (cfg.k_in, cfg.k_out, cfg.speed_min, cfg.speed_max, cfg.train_fixed) == (7, 7, 1.0, 4.0, True)
    with pytest.raises(NowcastError, match="protocol 'mmnist-10' fixes k_in=10"):
        load_config(values={"protocol": "mmnist-10", "k_in": 5})


def test_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(NowcastError, match="nope.yaml: no such params file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(NowcastError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_parse_override():
    assert parse_override("hidden_sizes=[1, 2]") == ("hidden_sizes", [1, 2])
    assert parse_override("leaky_slope=null") == ("leaky_slope", None)
    with pytest.raises(NowcastError):
        parse_override("stride")


def test_grid_expands_and_validates(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("base: {stride: 1, hidden_sizes: [8, 8]}\n"
                    "axes: {filter_size: [3, 5], loss: [bce, mse]}\n")
    points = expand_grid(grid)
    assert [name for name, _ in points] == ["g-filter_size=3-loss=bce", "g-filter_size=3-loss=mse",
                                            "g-filter_size=5-loss=bce", "g-filter_size=5-loss=mse"]
    grid.write_text("base: {}\naxes: {stride: [2, 3]}\n")
    with pytest.raises(NowcastError, match="'stride' must be"):
        expand_grid(grid)


def test_every_field_has_a_default():
    assert Config().to_dict()["hidden_sizes"] == [64, 32, 32, 16]
