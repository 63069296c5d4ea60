"""Every bad input is answered in one line (`nowcast: error: ...`, exit 2) before any results
folder exists (README: "Every bad input ... stops with one line"). Each case runs the real
command line in a subprocess; none depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import TINY, TINY_FILE
from nowcast.cli import main as nowcast_main
from nowcast.config import load_config
from nowcast.data.check import check_inputs, frame_shapes
from nowcast.errors import NowcastError, first_line
from nowcast.launch import local, notebook
from nowcast.models import get_model

NOWCAST = [sys.executable, "-m", "nowcast"]


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*NOWCAST, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    """The single stderr line of a refused command, checked for exit 2 and the needles."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("nowcast: error: "), done.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture
def file_params(tmp_path):
    """Tiny params for dataset npz/radar runs (no Moving MNIST fields)."""
    path = tmp_path / "tiny-file.yaml"
    path.write_text(yaml.safe_dump(TINY_FILE))
    return path


def train(params, results, *extra):
    return cli("train", "-c", str(params), "--results", str(results), "-q", *extra)


def no_folder(results) -> None:
    """Nothing was written: not even a failed or running folder."""
    assert not results.exists() or not [p for p in results.iterdir() if p.name != ".staging"], \
        sorted(p.name for p in results.iterdir())


# ---------------------------------------------------------------------------------------------
# item 7: params files that are not text, not files, or hold impossible values
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    (bytes(range(256)) * 4, "tiny.yaml"),                               # binary
    (yaml.safe_dump(TINY).encode("utf-16"), "not UTF-8 text"),           # UTF-16 with BOM
])
def test_params_file_that_is_not_text(tmp_path, params, content, needle):
    params.write_bytes(content)
    one_line_error(train(params, tmp_path / "r"), needle)
    no_folder(tmp_path / "r")


def test_folder_as_params_file(tmp_path):
    one_line_error(train(tmp_path, tmp_path / "r"), str(tmp_path), "not a file")


@pytest.mark.parametrize("override, needle", [
    ("initial_lr=.nan", "'initial_lr' must be a finite number"),
    ("initial_lr=.inf", "'initial_lr' must be a finite number"),
    ("grad_clip=.nan", "'grad_clip' must be a finite number"),
    ("speed_max=.inf", "'speed_max' must be a finite number"),
    ("crop_size=-5", "'crop_size' is not used with dataset: mmnist"),
    ("batch_size=1000000000", "batch_size"),
    ("image_size=4000000", "image_size"),
    ("hidden_sizes=[100000, 100000]", "hidden_sizes"),
    ("job_id=" + "x" * 300, "'job_id' is too long"),
])
def test_impossible_values(tmp_path, params, override, needle):
    one_line_error(train(params, tmp_path / "r", "--set", override), needle)
    no_folder(tmp_path / "r")


@pytest.mark.parametrize("error", [
    MemoryError("Unable to allocate 9.77 GiB for an array with shape (400000, 6, 32, 32)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                 "allocate memory: you tried to allocate 40000000000 bytes.")])
def test_allocation_failure_names_the_size(tmp_path, params, monkeypatch, capsys, error):
    """A size that passes validation but does not fit this machine's memory: one line naming
    the allocation and the sizes, not a traceback (the allocation is made to fail)."""
    from nowcast import cli, experiment

    def no_memory(*args, **kwargs):
        raise error
    monkeypatch.setattr(experiment, "get_data", no_memory)
    code = cli.main(["train", "-c", str(params), "--results", str(tmp_path / "r"), "-q",
                     "--job-id", "big"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("nowcast: error: "), err
    assert "out of memory" in err[0] and "allocate" in err[0] and "batch_size=8" in err[0], err


def test_corrupt_params_in_a_running_folder(tmp_path, params):
    running = tmp_path / "r" / ".running-j"
    running.mkdir(parents=True)
    (running / "params.yaml").write_text("{[: not yaml\n")
    one_line_error(train(params, tmp_path / "r", "--job-id", "j"), ".running-j", "params.yaml")
    assert (running / "params.yaml").read_text() == "{[: not yaml\n"  # left for the user to see


# ---------------------------------------------------------------------------------------------
# items 2 and 5: data checked before any folder exists
# ---------------------------------------------------------------------------------------------

def _radar_file(path, size=64):
    """PV-encoded radar sequences (no clock: each sequence is an event)."""
    rng = np.random.default_rng(0)
    np.savez(path, frames=rng.integers(0, 200, (6, 8, size, size), dtype=np.uint8))
    return path


@pytest.mark.parametrize("bound", ["peephole=per_position", "norm=layer"])
def test_size_bound_model_trained_on_crops_is_refused_before_any_folder(tmp_path, file_params, bound):
    """A size-bound model is built for its training frames (here 8x8 crops): the 16x16 test
    frames cannot go through it, found before any folder exists."""
    data = _radar_file(tmp_path / "radar.npz")  # 4x4 blocks: 16x16 frames
    done = train(file_params, tmp_path / "r", "--set", "dataset=radar", "--set", f"data_file={data}",
                 "--set", "crop_size=8", "--set", bound,
                 *(["--set", "norm_groups=null", "--set", "peephole=per_channel"]
                   if bound == "norm=layer" else []))
    one_line_error(done, "built for 8x8 training frames", "cannot run on 16x16")
    no_folder(tmp_path / "r")


@pytest.mark.parametrize("dataset", ["npz", "radar"])
def test_size_bound_model_is_built_for_the_data_frames(tmp_path, dataset):
    """image_size means Moving MNIST's canvas; a file's frames give the model its size."""
    if dataset == "npz":
        data = tmp_path / "frames48.npz"
        np.savez(data, frames=np.zeros((6, 8, 48, 48), np.uint8))
        shape = (48, 48)
    else:
        data, shape = _radar_file(tmp_path / "radar.npz"), (16, 16)
    cfg = load_config(values=dict(TINY_FILE, dataset=dataset, data_file=str(data),
                                  peephole="per_position", norm="layer", norm_groups=None))
    assert cfg.image_size is None
    check_inputs(cfg)  # the model fits the data's frames: no error
    assert frame_shapes(cfg) == ({"data": shape} if dataset == "npz" else {"train": shape, "test": shape})
    model = get_model(cfg, frame_shape=shape)
    assert model.frame_shape == shape and model.cells[0].peephole.shape[-2:] == (shape[0] // 2, shape[1] // 2)


def test_crop_larger_than_radar_frames_is_refused_before_any_folder(tmp_path, file_params):
    data = _radar_file(tmp_path / "radar.npz")
    done = train(file_params, tmp_path / "r", "--set", "dataset=radar", "--set", f"data_file={data}",
                 "--set", "crop_size=24")
    one_line_error(done, "crop_size 24", "16x16")
    no_folder(tmp_path / "r")


def test_missing_data_file_writes_no_folder(tmp_path, file_params):
    done = train(file_params, tmp_path / "r", "--set", "dataset=npz", "--set",
                 f"data_file={tmp_path / 'absent.npz'}")
    one_line_error(done, "absent.npz: no such data file")
    no_folder(tmp_path / "r")


def test_curriculum_longer_than_the_file_sequences(tmp_path, file_params):
    data = tmp_path / "short.npz"
    np.savez(data, frames=np.zeros((6, 6, 32, 32), np.uint8))
    done = train(file_params, tmp_path / "r", "--set", "dataset=npz", "--set", f"data_file={data}",
                 "--set", "curriculum=[2, 4]")
    one_line_error(done, "short.npz", "curriculum stage 4 needs 8 frames", "6")
    no_folder(tmp_path / "r")


def test_radar_meta_that_is_not_a_mapping(tmp_path, file_params):
    data = tmp_path / "meta.npz"
    np.savez(data, frames=np.zeros((6, 8, 128, 128), np.uint8), meta=json.dumps([1, 2]))
    done = train(file_params, tmp_path / "r", "--set", "dataset=radar", "--set", f"data_file={data}")
    one_line_error(done, "meta.npz", "'meta'")
    no_folder(tmp_path / "r")  # read from the file before the run starts


def test_mnist_file_of_the_wrong_shape(tmp_path, params):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((100, 5), np.uint8), x_test=np.zeros((10, 5), np.uint8))
    done = train(params, tmp_path / "r", "--set", "digits=mnist", "--set", f"data_dir={tmp_path}")
    one_line_error(done, "mnist.npz", "28x28")


# ---------------------------------------------------------------------------------------------
# item 7: checkpoints whose weights do not match their config
# ---------------------------------------------------------------------------------------------

def test_checkpoint_weights_that_do_not_match_the_config(tmp_path):
    cfg = load_config(values=TINY)
    ckpt = tmp_path / "model.pt"
    torch.save({"config": cfg.to_dict(), "model": {"not.a.weight": torch.zeros(3)}}, ckpt)
    np.savez(tmp_path / "in.npz", np.zeros((3, 32, 32), np.uint8))
    done = cli("predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in.npz"),
               "--steps", "2", "--out", str(tmp_path / "f.npz"))
    one_line_error(done, "model.pt", "weights do not match")
    torch.save({"config": "not a mapping", "model": {}}, ckpt)
    done = cli("evaluate", "--checkpoint", str(ckpt), "--protocol", "mmnist-10",
               "--results", str(tmp_path / "r"))
    one_line_error(done, "model.pt", "config")
    no_folder(tmp_path / "r")


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    """Third faults pass, item 3: NaN weights forecast NaN, clamped to zeros, exit 0."""
    from nowcast.models import get_model
    cfg = load_config(values=TINY)
    weights = get_model(cfg).state_dict()
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name][...] = float("nan")
    ckpt = tmp_path / "model.pt"
    torch.save({"config": cfg.to_dict(), "model": weights}, ckpt)
    np.savez(tmp_path / "in.npz", np.zeros((3, 32, 32), np.uint8))
    done = cli("predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in.npz"),
               "--steps", "2", "--out", str(tmp_path / "f.npz"))
    one_line_error(done, "model.pt", f"'{name}'", "NaN or infinite")
    assert not (tmp_path / "f.npz").exists()


# ---------------------------------------------------------------------------------------------
# item 6: nothing non-finite is accepted, and metrics.json is strict JSON
# ---------------------------------------------------------------------------------------------

def test_strict_json_maps_undefined_scores_to_null(tmp_path):
    from nowcast.util import finite_or_none, write_json
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"a": float("nan")})
    assert finite_or_none({"a": [1.0, float("inf")], "b": float("nan"), "c": "x"}) == \
        {"a": [1.0, None], "b": None, "c": "x"}


def test_nan_test_loss_fails_the_run(tiny_values, monkeypatch):
    from nowcast import experiment
    original = experiment.score_test_split

    def nan_loss(*args, **kwargs):
        scores = original(*args, **kwargs)
        scores.loss = float("nan")
        return scores
    monkeypatch.setattr(experiment, "score_test_split", nan_loss)
    cfg = load_config(values=dict(tiny_values, job_id="nan", num_epochs=1))
    with pytest.raises(NowcastError, match="test loss is nan"):
        experiment.run_experiment(cfg, progress=False)
    status = json.loads((Path(cfg.results_dir) / "nan" / "status.json").read_text())
    assert status["status"] == "failed" and "test loss is nan" in status["error"]
    assert not (Path(cfg.results_dir) / "nan" / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# item 9: where exactly the mistake is
# ---------------------------------------------------------------------------------------------

def test_yaml_syntax_error_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nk_in: 3\nhidden_sizes: [8, 8\nstride: 2\n")
    with pytest.raises(NowcastError, match=r"bad.yaml: not valid YAML \(line \d+, column \d+: ") as e:
        load_config(bad)
    assert "\n" not in str(e.value)


def test_preset_conflict_blames_the_layer_that_set_it(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("protocol: mmnist-10\n")
    with pytest.raises(NowcastError, match=r"^--set: protocol 'mmnist-10' \(set in .*p.yaml\) "
                                           r"fixes k_in=10, got 3"):
        load_config(params, ["k_in=3"])
    params.write_text("k_in: 3\n")
    with pytest.raises(NowcastError, match=r"p.yaml: protocol 'mmnist-10' \(set in --set\) fixes k_in=10"):
        load_config(params, ["protocol=mmnist-10"])


# ---------------------------------------------------------------------------------------------
# item 11: option values that YAML reads as another type
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, field, value", [
    ("compile: on", "compile", "on"), ("compile: off", "compile", "off"),
    ("compile: yes", "compile", "on"), ("compile: no", "compile", "off"),
    ("compile: auto", "compile", "auto"),
    ("norm: none", "norm", "none"), ("norm: null", "norm", "none"),
    ("peephole: none", "peephole", "none"), ("peephole: ~", "peephole", "none"),
    ("scheduler: none", "scheduler", "none"), ("scheduler: null", "scheduler", "none"),
    ("protocol: none", "protocol", "none"),
])
def test_documented_values_that_yaml_reads_as_other_types(tmp_path, text, field, value):
    f = tmp_path / "p.yaml"
    f.write_text(text + "\n")
    assert getattr(load_config(f), field) == value
    key, raw = text.split(": ")
    assert getattr(load_config(overrides=[f"{key}={raw}"]), field) == value


@pytest.mark.parametrize("override, field, value", [
    ("job_id=17_0", "job_id", "17_0"), ("job_id=0012", "job_id", "0012"),
    ("name=2024", "name", "2024"), ("name=true", "name", "true"), ("job_id=null", "job_id", None)])
def test_text_fields_from_the_command_line_stay_text(override, field, value):
    """--set job_id=<array>_<task> (how a cancelled SLURM task is resumed): YAML reads 17_0
    as the number 170."""
    assert getattr(load_config(overrides=[override]), field) == value


def test_compile_on_from_the_command_line(tmp_path, params):
    done = cli("train", "-c", str(params), "--results", str(tmp_path / "r"), "-q",
               "--set", "compile=off", "--set", "num_epochs=1", "--job-id", "c")
    assert done.returncode == 0, done.stderr[-2000:]
    assert yaml.safe_load((tmp_path / "r" / "c" / "params.yaml").read_text())["compile"] == "off"


def test_other_booleans_for_choices_are_still_refused():
    with pytest.raises(NowcastError, match="'norm' must be"):
        load_config(overrides=["norm=yes"])


# ---------------------------------------------------------------------------------------------
# the collective timeout: 0 or less would end every collective at once; refused, naming where
# it was given, before anything runs (distributed.collective_timeout)
# ---------------------------------------------------------------------------------------------

def must_not_run(*args, **kwargs):
    raise AssertionError("a refused collective timeout went on to run")


@pytest.mark.parametrize("command", ["task", "sweep"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_collective_timeout_of_zero_or_less_is_refused(tmp_path, params, monkeypatch, capsys,
                                                       command, value):
    monkeypatch.setattr(local, "run_one", must_not_run)  # `nowcast task` would run the notebook
    results = tmp_path / "r"
    argv = {"task": ["task", str(params), str(results)],
            "sweep": ["sweep", str(params), "--results", str(results), "--procs-per-task", "2",
                      "--dry-run"]}[command]
    code = nowcast_main([*argv, f"--collective-timeout={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == f"nowcast: error: --collective-timeout must be a positive number of seconds, " \
                     f"got {float(value)!r}", err
    no_folder(results)  # a sweep's dry run would have written results/.sweeps/


@pytest.mark.parametrize("value", [0, -1.5, "0", "-5"])
def test_notebook_collective_timeout_of_zero_or_less_is_refused(params, monkeypatch, value):
    monkeypatch.setattr(notebook, "install_preemption_handler", must_not_run)
    monkeypatch.setattr(notebook, "run_experiment", must_not_run)
    with pytest.raises(NowcastError, match=r"^parameters: 'collective_timeout_s' must be a "
                                           r"positive number of seconds, got -?[0-9.]+$"):
        notebook.run_notebook_experiment(load_config(params), finalize=False,
                                         collective_timeout_s=value)


@pytest.mark.parametrize("what, expected", [
    (ValueError("bad value\nTraceback ..."), "bad value"), (ValueError(""), "ValueError"),
    (OSError(), "OSError"), ("  \n  two words \n more", "two words"), ("", "")])
def test_an_error_line_is_one_line_even_of_an_empty_message(what, expected):
    """The one way a report's line is cut from a message (errors.first_line): an exception with
    no text gives its type, where `str(e).splitlines()[0]` raised IndexError instead."""
    assert first_line(what) == expected


def test_a_cross_field_error_names_the_set_values_beside_the_file(tmp_path):
    """A check of several fields cannot tell which one is wrong: it names the file and the
    --set values, not the file alone (the file was fine)."""
    f = tmp_path / "p.yaml"
    f.write_text("hidden_sizes: [8, 8]\nstride: 2\n")
    with pytest.raises(NowcastError) as e:
        load_config(f, ["image_size=35"])
    assert str(e.value).startswith(f"{f} with --set image_size=35: frame size 35x35 is not divisible")
    with pytest.raises(NowcastError) as e:
        load_config(f, (o for o in ["image_size=35"]))  # any iterable of overrides
    assert "with --set image_size=35" in str(e.value)


def test_a_fifo_as_checkpoint_or_radar_file_is_refused_not_waited_on(tmp_path):
    """Issue 37: `predict --checkpoint FIFO` and `evaluate --data FIFO` hung for ever."""
    import os
    from nowcast.checkpoint import load_checkpoint
    from nowcast.config import load_config as _load
    from nowcast.data.radar.dataset import resolve_data_file
    os.mkfifo(tmp_path / "model.pt")
    os.mkfifo(tmp_path / "frames.npz")
    with pytest.raises(NowcastError, match="not a regular file"):
        load_checkpoint(tmp_path / "model.pt")
    with pytest.raises(NowcastError, match="not a regular file"):
        resolve_data_file(_load(values=dict(protocol="knmi-30-60")), str(tmp_path / "frames.npz"))


def test_yaml_bombs_and_deep_nesting_are_refused_in_one_short_line(tmp_path):
    """Issue 37: 721 bytes of nested aliases under `name:` made a 35.8 MB error line (and ran
    past 120 s at 9 levels); 100,000 brackets gave a RecursionError traceback."""
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nname: *i\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    for path in (bomb, deep):
        with pytest.raises(NowcastError) as e:
            load_config(path)
        assert str(e.value).startswith(f"{path}: not valid YAML") and len(str(e.value)) < 300
    # a big value of the wrong type is shown cut short, never whole
    (tmp_path / "long.yaml").write_text("name: [" + ", ".join(["1"] * 5000) + "]\n")
    with pytest.raises(NowcastError, match=r"'name' must be str, got \[1, 1, 1, 1, 1, 1, \.\.\.\]$"):
        load_config(tmp_path / "long.yaml")


def test_a_file_that_is_no_params_file_is_not_echoed(tmp_path):
    """Issue 37: a params path linked to /etc/shadow printed its first line inside 'unknown
    parameter'. A key that is no parameter name is not shown."""
    secret = tmp_path / "secret"
    secret.write_text("root:$6$saltsalt$hashhashhash: 19000\n")
    (tmp_path / "p.yaml").symlink_to(secret)
    with pytest.raises(NowcastError) as e:
        load_config(tmp_path / "p.yaml")
    assert "hash" not in str(e.value) and "not shown" in str(e.value)
    with pytest.raises(NowcastError, match="unknown parameter 'strde'"):
        load_config(values={"strde": 2})


# ---------------------------------------------------------------------------------------------
# issue 37, item 16 and items 9, 12, 14: caught before a folder exists, in one line
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames, needle", [
    (np.zeros((6, 6, 32, 32), np.float32), "got float32 (6, 6, 32, 32)"),
    (np.zeros((6, 6, 32), np.uint8), "got uint8 (6, 6, 32)"),
])
def test_a_sequence_file_of_the_wrong_dtype_or_rank_writes_no_folder(tmp_path, file_params, frames, needle):
    """Issue 37: told by the file's header, yet refused only after a failed folder existed."""
    np.savez(tmp_path / "bad.npz", frames=frames)
    done = train(file_params, tmp_path / "r", "--set", "dataset=npz", "--set",
                 f"data_file={tmp_path / 'bad.npz'}")
    one_line_error(done, "bad.npz: expected (N,T,H,W) uint8 frames", needle)
    no_folder(tmp_path / "r")


@pytest.mark.parametrize("override, needle", [
    ("seed=-1", "'seed' must be in [0, 2**32), got -1"),
    ("seed=99999999999999999999999", "'seed' must be in [0, 2**32)"),
    ("image_size=16", "image_size 16 is smaller than a 28px digit"),
])
def test_seeds_and_canvases_no_run_can_use_write_no_folder(tmp_path, params, override, needle):
    done = train(params, tmp_path / "r", "--set", override)
    one_line_error(done, needle)
    no_folder(tmp_path / "r")


@pytest.mark.parametrize("args, needle", [
    (["--watch", "-1"], "--watch must be between 0.5 and 86400 seconds, got -1.0"),
    (["--watch", "nan"], "--watch must be between 0.5 and 86400 seconds, got nan"),
    (["--watch", "0"], "--watch must be between 0.5 and 86400 seconds, got 0.0"),
    (["--results", "FILE"], "--results FILE: not a folder"),
    (["--results", "MISSING"], "--results MISSING: no such folder"),
])
def test_status_arguments_that_mean_nothing(tmp_path, args, needle):
    """Issue 37: --watch -1 / nan were tracebacks, --watch 0 busy-looped, and a file or a
    missing folder as --results said '0 runs'."""
    (tmp_path / "FILE").write_text("not a folder")
    done = cli("status", *args, cwd=tmp_path)
    one_line_error(done, needle)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A trained tiny Moving MNIST model (k_in 3, k_out 3, 32x32): its model.pt."""
    root = tmp_path_factory.mktemp("model")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = train(root / "tiny.yaml", root / "r", "--job-id", "m")
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "r" / "m" / "model.pt"


def predict(checkpoint, frames, out, steps="2"):
    return cli("predict", "--checkpoint", str(checkpoint), "--input", str(frames), "--steps",
               steps, "--out", str(out))


def test_predict_reads_16_bit_pngs_by_their_range(tiny_model, tmp_path):
    """Issue 37: 16-bit PNGs were divided by 255 (inputs near 257) and gave a garbage forecast."""
    import imageio.v3 as iio
    rng = np.random.default_rng(0)
    frames = (rng.random((3, 32, 32)) > 0.8).astype(np.float64)
    for name, dtype, full in (("png8", np.uint8, 255), ("png16", np.uint16, 65535)):
        (tmp_path / name).mkdir()
        for t, frame in enumerate(frames):
            iio.imwrite(tmp_path / name / f"{t}.png", (frame * full).astype(dtype))
    outs = []
    for name in ("png8", "png16"):
        done = predict(tiny_model, tmp_path / name, tmp_path / f"{name}.npz")
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(np.load(tmp_path / f"{name}.npz")["frames"])
    assert np.array_equal(outs[0], outs[1])  # the same frames, whatever their bit depth


@pytest.mark.parametrize("make, steps, needle", [
    (lambda d: d / "frames", "2", "0.png: not a readable PNG image"),
    (lambda d: d / "cut.npz", "2", "cut.npz: not a readable .npz file"),
    (lambda d: d / "two.npz", "2", "2 input frames; the model reads the last k_in = 3"),
    (lambda d: d / "four.npz", "13", "--steps must be in [1, 12] (4 x the model's k_out 3), got 13"),
    (lambda d: d / "four.npz", "0", "--steps must be in [1, 12]"),
])
def test_predict_inputs_that_cannot_be_forecast(tiny_model, tmp_path, make, steps, needle):
    np.savez(tmp_path / "four.npz", frames=np.zeros((4, 32, 32), np.uint8))
    np.savez(tmp_path / "two.npz", frames=np.zeros((2, 32, 32), np.uint8))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "four.npz").read_bytes()[:200])
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0.png").write_text("not an image")
    done = predict(tiny_model, make(tmp_path), tmp_path / "f.npz", steps)
    one_line_error(done, needle)
    assert not (tmp_path / "f.npz").exists()


def test_predict_output_that_cannot_be_written(tiny_model, tmp_path):
    np.savez(tmp_path / "four.npz", frames=np.zeros((4, 32, 32), np.uint8))
    (tmp_path / "out.npz").mkdir()
    one_line_error(predict(tiny_model, tmp_path / "four.npz", tmp_path / "out.npz"),
                   "out.npz: a folder; --out names the forecast file")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: a file where a folder must be
            target = tmp_path / "four.npz" / "f.npz"
        else:
            target = locked / "f.npz"
        one_line_error(predict(tiny_model, tmp_path / "four.npz", target), "cannot write")
    finally:
        locked.chmod(0o700)
    # past k_out: forecast, with one note that those leads were never trained
    done = predict(tiny_model, tmp_path / "four.npz", tmp_path / "long.npz", "5")
    assert done.returncode == 0 and np.load(tmp_path / "long.npz")["frames"].shape == (5, 32, 32)
    assert "leads 4-5 lie past the model's k_out 3" in done.stderr


def test_a_checkpoint_config_of_sizes_no_machine_holds_is_refused_unallocated(tmp_path):
    """Issue 37: a model.pt whose config says hidden_sizes [20000, 20000] (57.6 GB of weights)
    beside a small file gave an allocation traceback: its weights are compared with the model
    built on the meta device first."""
    cfg = load_config(values=dict(TINY, hidden_sizes=[20000, 20000]))
    ckpt = tmp_path / "model.pt"
    torch.save({"config": cfg.to_dict(), "model": get_model(load_config(values=TINY)).state_dict()}, ckpt)
    np.savez(tmp_path / "in.npz", frames=np.zeros((3, 32, 32), np.uint8))
    done = predict(ckpt, tmp_path / "in.npz", tmp_path / "f.npz")
    one_line_error(done, "model.pt: its weights do not match its config", "the model's [3, 20000, 1, 1]")


def test_a_training_step_larger_than_the_device_is_refused_before_any_folder(tmp_path, params):
    """Issue 37: `k_in: 100000` grew to 21 GB and was killed by the out-of-memory killer after
    9 minutes, its folder left stale; the 1 TiB limit is no limit on a 24 GiB machine. The
    lower bound of a step's memory is compared with what the device has, before anything."""
    done = train(params, tmp_path / "r", "--set", "k_in=100000")
    line = one_line_error(done, "this run needs at least", "on cpu", "batch_size 8 x 100003 frames")
    assert "which has" in line
    no_folder(tmp_path / "r")


def test_the_memory_bound_is_its_formula():
    from nowcast import limits
    cfg = load_config(values=TINY)  # batch 8, 3 + 3 frames, hidden [8, 8]
    # 16 B a parameter + 8 x 6 x 32 x 32 x 4 B of frames + 8 x 6 x 6 x 16 x (8 x 8) x 4 B
    need = 16 * 1000 + 8 * 6 * 32 * 32 * 4 + 8 * 6 * 6 * 16 * 64 * 4
    limits.check_memory(cfg, 1000, (32, 32), 4, need, "cpu")  # exactly enough
    with pytest.raises(NowcastError, match="needs at least 1.3 MiB on cpu .* which has 1.3 MiB"):
        limits.check_memory(cfg, 1000, (32, 32), 4, need - 1, "cpu")


@pytest.mark.parametrize("shape", [(3, 3), (1, 64), (2, 2)])
def test_frames_under_the_ssim_window_train_and_score(tmp_path, file_params, shape):
    """Issue 37: frames under the SSIM window (3x3, 1x100000) trained to the end, then failed
    in scoring with a traceback. SSIM now takes the largest odd window that fits the frame
    (metrics.ssim_value), so such a run completes with finite scores."""
    from nowcast.metrics import ssim_value
    x = torch.rand(2, *shape)
    assert float(ssim_value(x, x)) == pytest.approx(1.0, abs=1e-6)
    data = tmp_path / "small.npz"
    np.savez(data, frames=np.random.default_rng(0).integers(0, 255, (40, 6, *shape), dtype=np.uint8))
    done = train(file_params, tmp_path / "r", "--set", "dataset=npz", "--set", f"data_file={data}",
                 "--set", "stride=1", "--set", "max_pool=null", "--set", "loss=mse",
                 "--job-id", "small")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "r" / "small" / "metrics.json").read_text())
    assert all(np.isfinite(v) for v in metrics["per_lead"]["ssim"])


@pytest.mark.parametrize("dt, shown", [('"five"', '"five"'), ("-5", "-5"), ("2.5", "2.5"), ("true", "true")])
def test_a_radar_time_step_that_is_no_number_of_minutes_writes_no_folder(tmp_path, file_params, dt, shown):
    """Issue 37: meta dt_min "five" was a traceback, and -5 was reported as 'no event has the
    6 frames'. Checked from the file's meta before any folder exists."""
    data = tmp_path / "dt.npz"
    times = np.datetime64("2021-01-01T00:00", "m") + 5 * np.arange(6 * 8).reshape(6, 8).astype("timedelta64[m]")
    np.savez(data, frames=np.zeros((6, 8, 128, 128), np.uint8), times=times,
             meta=json.dumps({"dt_min": json.loads(dt)}))
    done = train(file_params, tmp_path / "r", "--set", "dataset=radar", "--set", f"data_file={data}")
    one_line_error(done, "dt.npz: meta 'dt_min' must be a positive whole number of minutes, got " + shown)
    no_folder(tmp_path / "r")


def test_png_frames_are_read_in_natural_order(tmp_path):
    """Third faults pass, item 4: frame_10.png sorted before frame_7.png as text."""
    import imageio.v3 as iio
    from nowcast.predict import read_frames
    for i in (7, 8, 9, 10, 11):
        image = np.zeros((8, 8), np.uint8)
        image[0, 0], image[1, 1] = 255, 20 * i  # its own range: the corner sets the scale
        iio.imwrite(tmp_path / f"frame_{i}.png", image)
    frames = read_frames(str(tmp_path))
    assert [round(float(f[1, 1]) * 255 / 20) for f in frames] == [7, 8, 9, 10, 11]


@pytest.mark.parametrize("command", ["train", "run", "sweep"])
def test_contradictory_results_roots_are_refused(tmp_path, params, command):
    """Third faults pass, item 17: --results A with --set results_dir=B resolved silently,
    to B for train and to A for sweep."""
    args = ([command, "-c", str(params)] if command == "train" else [command, str(params)])
    done = cli(*args, "--results", str(tmp_path / "A"), "--set", f"results_dir={tmp_path / 'B'}",
               *(["--dry-run"] if command == "sweep" else []))
    one_line_error(done, "--results", "results_dir=", "contradict")
    assert not (tmp_path / "A").exists() and not (tmp_path / "B").exists()


def test_an_error_echoing_a_typed_newline_stays_one_line(tmp_path, params):
    """Third faults pass, item 19: --set $'job_id=a\\nb' was echoed raw over two lines."""
    done = cli("train", "-c", str(params), "--results", str(tmp_path / "r"), "--set",
               "job_id=a\nb\x1b[31m")
    one_line_error(done, "nowcast: error:")
    assert "\x1b" not in done.stderr and "a\\nb\\x1b[31m" in done.stderr


@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "/dev/urandom", "grid-base-fifo"])
def test_params_that_are_no_regular_file_are_refused_unread(tmp_path, what):
    """Third faults pass, item 7: train -c <fifo> hung, -c /dev/zero ran out of memory."""
    import os
    if what.startswith("/dev/"):
        target = what
    else:
        target = tmp_path / "params.yaml"
        os.mkfifo(target)
    if what == "grid-base-fifo":
        grid = tmp_path / "grid.yaml"
        grid.write_text(f"base: {target}\naxes:\n  seed: [1, 2]\n")
        done = cli("run", str(grid), "--results", str(tmp_path / "r"))
    else:
        done = cli("train", "-c", str(target), "--results", str(tmp_path / "r"))
    one_line_error(done, str(target), "not a regular file")


def test_sweep_task_files_take_no_line_from_a_file_name(tmp_path, params):
    """Third faults pass, item 14: a params file named with a newline injected `seed: 77`
    into the task that ran; a results path with a newline split params.txt."""
    import yaml
    from nowcast.launch import slurm
    hostile = tmp_path / "nl2\nseed: 77\n#.yaml"
    hostile.write_text(params.read_text())
    out = slurm.submit_sweep([str(hostile)], str(tmp_path / "r"), dry_run=True)
    (task,) = Path(out["sweep_dir"], "params").iterdir()
    values = yaml.safe_load(task.read_text())
    assert values.get("seed", 0) != 77 and len(task.read_text().splitlines()[0].split("\n")) == 1
    assert Path(out["list"]).read_text().count("\n") == 1
    done = cli("sweep", str(params), "--results", str(tmp_path / "a\nb"), "--dry-run")
    one_line_error(done, "newline or control character")


@pytest.mark.parametrize("n", [0, 2])
def test_a_sequence_file_too_small_to_split_is_refused_before_any_folder(tmp_path, file_params, n):
    """Third faults pass, item 18: 0 or 2 sequences in an .npz left a failed folder."""
    data = tmp_path / f"s{n}.npz"
    np.savez(data, frames=np.zeros((n, 8, 16, 16), np.uint8))
    done = train(file_params, tmp_path / "r", "--set", "dataset=npz", "--set", f"data_file={data}")
    one_line_error(done, "need at least 3 sequences", f"got {n}")
    no_folder(tmp_path / "r")
