"""Which Config fields each architecture and each dataset uses: the one table (USES).

An option that the chosen architecture or dataset does not use does nothing, so a value given
for it (a params file, `--set`, papermill `-p` / values) is refused, with one line naming it and
what ignores it. Not given, it resolves to null in the Config (`to_yaml` writes null), and null
is always accepted for it: the resolved params.yaml of a run loads back to the same Config (for
resume and evaluate). Protocol presets are not given values: a preset never trips the rule.

Defaults adapt where the intent is clear:

- `max_pool` and `transpose` default to null, "follow the stride": true at stride 2 (the
  seed's choice), not used (null) at stride 1;
- `encoder_forecaster` and `predrnn` take `stride` 1 only: it defaults to 1, and 2 is refused;
- a null given for a used field means its default (`image_size: null` with mmnist: 64).

A *chooser* is a field whose value decides which of its FIELDS are used: `architecture` (the
model fields), `dataset` (the data fields), then `stride`, `norm`, `radar_recipe` and `head`. Choosers
are read in this order, each once it is itself resolved; a chooser that is itself not used
(`norm` for fc_lstm) decides nothing.

    resolve(values, given, defaults)   # in place; NowcastError naming given[key] and the key
    unused({"architecture": "fc_lstm"}, defaults)   # {'filter_size': ..., 'stride': ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import NowcastError


@dataclass(frozen=True)
class Choice:
    uses: frozenset[str]                 # of its chooser's FIELDS, those this choice reads
    why: str = ""                        # what it does instead: said when an unused one is given
    fixed: Mapping[str, Any] = field(default_factory=dict)  # used fields that take one value only


# The fields that do not change what a run computes: its name and folder, where the data and
# the run live (CPU and the GPU's reference mode compute the same bits), how often it saves. Two
# runs that differ only in these are the same run (results.params_hash: a completed one is
# skipped; a resume may move), and the report's parameter lists leave them out.
NON_SEMANTIC = frozenset({"name", "job_id", "results_dir", "data_dir", "device", "checkpoint_every"})

SIMVP = ("hid_S", "hid_T", "N_S", "N_T", "translator", "mlp_ratio", "tau_alpha")
MODEL = ("filter_size", "patch_size", "residual", "first_guess", "correction", "guess_sampling",
         "stride", "max_pool", "transpose", "norm", "norm_groups", "peephole",
         "bias", "leaky_slope", "feed_upward", "fused_gates", "head", "head_width") + SIMVP
HEAD = ("head", "head_width")  # encoder_forecaster's output layer
LOSS_NAMES = ("bce", "mse", "ssim", "mse_ssim", "balanced", "mse_csi")  # losses.py implements each
# models/speedups.py implements each; in the order of the gain predicted for the seed's step on
# an H200 (benchmarks/RESULTS.md), the order benchmarks/gpu_job.py measures them in
SPEEDUP_NAMES = ("split_layernorm", "cuda_graphs", "channels_last", "batched_input_convs",
                 "separable_maxpool", "zero_state")
FEEDBACK = ("teacher_forcing", "scheduled_sampling", "ss_decay_steps", "ss_min")  # fed-back frames
MMNIST = ("data_dir", "digits", "num_digits", "test_num_digits", "image_size", "speed_min",
          "speed_max", "train_fixed", "val_sequences", "test_sequences", "augment")
RADAR = ("data_dir", "data_file", "radar_recipe", "block_size", "crop_size", "augment",
         "train_files", "val_files", "val_events")

# chooser -> the fields whose use it decides
FIELDS: dict[str, tuple[str, ...]] = {
    "architecture": MODEL + FEEDBACK,
    "dataset": tuple(dict.fromkeys(MMNIST + ("data_file",) + RADAR)),
    "stride": ("max_pool", "transpose"),
    "norm": ("norm_groups",),
    "radar_recipe": ("block_size",),
    "head": ("head_width",),
    "scheduler": ("gamma", "step_size"),
    "loss": ("ssim_weight", "csi_weight"),
    "scheduled_sampling": ("ss_decay_steps", "ss_min"),
    "residual": ("first_guess", "correction", "guess_sampling"),
    "first_guess": ("guess_sampling",),
    "translator": ("mlp_ratio", "tau_alpha"),
}

# chooser -> value -> Choice. architecture: hidden_sizes, activation and output are used by all
USES: dict[str, dict[Any, Choice]] = {
    "architecture": {
        "simvp": Choice(
            frozenset({"filter_size", "patch_size", "residual", "first_guess", "correction",
                       "guess_sampling", *SIMVP}),
            "its encoder, translator and decoder are fixed blocks (ConvSC, gSTA/TAU/IncepU), "
            "it predicts all frames in one pass and is fed no frame in training"),
        "convlstm_ed": Choice(frozenset(MODEL + FEEDBACK) - set(HEAD) - set(SIMVP),
                              "its output is a 1x1 convolution of the last layer's state"),
        "encoder_forecaster": Choice(
            frozenset(MODEL + FEEDBACK) - {"max_pool", "transpose", "feed_upward"} - set(SIMVP),
            "it keeps every state at full size and feeds each layer the hidden state below",
            fixed={"stride": 1}),
        "predrnn": Choice(
            frozenset(MODEL + FEEDBACK) - {"max_pool", "transpose", "feed_upward", "peephole",
                                           "leaky_slope", "fused_gates"} - set(HEAD) - set(SIMVP),
            "its ST-LSTM keeps every state at full size, its gates read x, h and M (no "
            "peepholes), and its output is a 1x1 convolution of the top layer's state",
            fixed={"stride": 1}),
        "fc_lstm": Choice(frozenset(), "fully connected LSTM layers on flattened frames: it uses "
                                       "hidden_sizes, activation and output; its forecaster is "
                                       "fed no frame"),
    },
    "dataset": {
        "mmnist": Choice(frozenset(MMNIST), "Moving MNIST is generated at image_size, whole "
                                            "frames, no data file"),
        "npz": Choice(frozenset({"data_file"}), "a sequence file brings its own frames and is "
                                                "split 80/10/10 by sequence"),
        "radar": Choice(frozenset(RADAR), "radar data brings its own frames and is split by "
                                          "storm event"),
    },
    "stride": {
        1: Choice(frozenset(), "stride 1 keeps the frame size: nothing is down- or up-sampled"),
        2: Choice(frozenset(FIELDS["stride"])),
    },
    "norm": {
        "none": Choice(frozenset(), "norm_groups is for norm: group"),
        "layer": Choice(frozenset(), "norm_groups is for norm: group"),
        "group": Choice(frozenset({"norm_groups"})),
    },
    "radar_recipe": {
        "blocks": Choice(frozenset({"block_size"})),
        "seed": Choice(frozenset(), "recipe seed crops and resizes to 128x128"),
    },
    "head": {
        "1x1": Choice(frozenset(), "head_width is for head: row"),
        "row": Choice(frozenset({"head_width"})),
    },
    "scheduler": {
        "none": Choice(frozenset(), "the learning rate stays initial_lr"),
        "step": Choice(frozenset(FIELDS["scheduler"])),
        "onecycle": Choice(frozenset(), "gamma and step_size are for scheduler: step"),
    },
    "loss": {name: Choice(frozenset({"mse_ssim": {"ssim_weight"}, "mse_csi": {"csi_weight"}}
                                    .get(name, ())),
                          "ssim_weight weighs the SSIM term of loss: mse_ssim, csi_weight the "
                          "CSI term of loss: mse_csi")
             for name in LOSS_NAMES},
    "scheduled_sampling": {
        False: Choice(frozenset(), "ss_decay_steps and ss_min are for scheduled_sampling: true"),
        True: Choice(frozenset(FIELDS["scheduled_sampling"])),
    },
    "translator": {
        "gsta": Choice(frozenset({"mlp_ratio"}), "tau_alpha weighs TAU's regulariser (translator: tau)"),
        "tau": Choice(frozenset({"mlp_ratio", "tau_alpha"})),
        "incepu": Choice(frozenset(), "the inception translator has no MLP and no divergence term"),
    },
    "residual": {
        False: Choice(frozenset(), "first_guess and correction are for a residual: true model"),
        True: Choice(frozenset(FIELDS["residual"])),
    },
    "first_guess": {
        "persistence": Choice(frozenset(), "guess_sampling is for first_guess: extrapolation"),
        "extrapolation": Choice(frozenset(FIELDS["first_guess"])),
    },
}

# fields whose Config default is null ("follow the choosers"): their value where they are used
# (head_width 64: the thesis's code for its 1- and 2-layer models)
WHEN_USED: dict[str, Any] = {"max_pool": True, "transpose": True, "head": "1x1", "head_width": 64,
                             # simvp: OpenSTL's Moving MNIST configuration
                             "hid_S": 64, "hid_T": 512, "N_S": 4, "N_T": 8, "translator": "gsta",
                             "mlp_ratio": 8.0, "tau_alpha": 0.1}

CONDITIONAL = frozenset(key for keys in FIELDS.values() for key in keys)

# the frame side an architecture is checked at when the data brings its own frames (npz, radar)
NOMINAL_SIZE = 64


def resolve(values: dict[str, Any], given: Mapping[str, str], defaults: Mapping[str, Any],
            spelled_null: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Fill `values` in place: unused fields null, adapted defaults set; a given value (a key of
    `given`, which names where it was given) for an unused field is refused. `spelled_null`:
    keys given as null that YAML choice words turned into 'none' (norm, peephole)."""
    for chooser, choices in USES.items():
        value = values.get(chooser, defaults[chooser])
        choice = choices.get(value)
        if choice is None:  # the chooser is itself unused (null)
            continue
        _refuse([key for key in FIELDS[chooser] if key not in choice.uses and key in given
                 and values.get(key) is not None and key not in spelled_null],
                given, f"{chooser}: {value} ({choice.why})")
        for key in FIELDS[chooser]:
            if key not in choice.uses:
                values[key] = None
            elif key in choice.fixed:
                if key in given and values[key] != choice.fixed[key]:
                    raise NowcastError(f"{given[key]}: {chooser} {value} takes '{key}' "
                                       f"{choice.fixed[key]!r} only ({choice.why}), got {values[key]!r}")
                values[key] = choice.fixed[key]
            elif values.get(key, defaults[key]) is None and key in WHEN_USED:
                values[key] = WHEN_USED[key]
    return values


def _refuse(keys: list[str], given: Mapping[str, str], what: str) -> None:
    """One line naming the given keys (those of the first one's layer) that `what` ignores."""
    if not keys:
        return
    keys = [key for key in keys if given[key] == given[keys[0]]]
    names = ", ".join(f"'{key}'" for key in keys)
    verb, them = ("is", "it") if len(keys) == 1 else ("are", "them")
    raise NowcastError(f"{given[keys[0]]}: {names} {verb} not used with {what}; remove {them}")


def forget_nulls(values: dict[str, Any], given: dict[str, str], nulls: set[str]) -> frozenset[str]:
    """A null (or '' for data_dir, data_file) given for a field the table decides about counts
    as not given (unused: null; used: its default). Removes those from `values` and `given`;
    returns the keys given as null that a choice word kept ('none' for norm, peephole):
    accepted where unused."""
    for key in nulls & CONDITIONAL:
        if values.get(key) in (None, ""):
            values.pop(key, None)
            given.pop(key, None)
    return frozenset(key for key in nulls & CONDITIONAL if key in values)


def unused(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, str]:
    """The fields that `values` (its choosers) leave unused -> why (for docs and stored configs)."""
    resolved = resolve(dict(values), {}, defaults)
    out = {}
    for chooser, choices in USES.items():
        choice = choices.get(resolved.get(chooser, defaults[chooser]))
        for key in FIELDS[chooser] if choice is not None else ():
            if key not in choice.uses and key not in out:
                out[key] = f"{chooser}: {resolved.get(chooser, defaults[chooser])} ({choice.why})"
    return out


def without_unused(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config (a checkpoint's, or the params.yaml of a run made before this rule) with
    the fields its architecture and dataset do not use set to null: what a run wrote is not
    user-given, so load_config(values=without_unused(...)) accepts it."""
    drop = unused(values, defaults)
    return {k: (None if k in drop else v) for k, v in values.items()}


def of_its_time(values: dict) -> dict:
    """A run's values (a model.pt's config, a results folder's params.yaml) with the values
    of the code that wrote them where a field came later: a run without `guess_sampling`
    (written before 2026-12-07) advected its extrapolation first guess bilinearly, and
    forecasts as it was scored only so (checkpoint.load_checkpoint); the report compares runs
    as they ran (publish.describe.as_ran)."""
    if values.get("residual") and values.get("first_guess") == "extrapolation":
        values = {"guess_sampling": "bilinear", **values}
    return values
