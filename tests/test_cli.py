"""The command line: one-line errors with a non-zero exit, and the three core commands on a real run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TINY

NOWCAST = [sys.executable, "-m", "nowcast.cli"]
ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([*NOWCAST, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.parametrize("extra, message", [
    (["--set", "strid=2"], "unknown parameter 'strid' (did you mean 'stride'?)"),
    (["--set", "stride=two"], "'stride' must be 1 | 2 or null, got 'two'"),
    (["--set", "hidden_sizes=[8, 8, 8]"], "stride 2 needs an even number of layers"),
    (["--set", "dataset=npz", "--set", "data_file=/nonexistent.npz"],
     "'image_size', 'speed_min', 'speed_max', 'val_sequences', 'test_sequences' are not used with dataset: npz"),
])
def test_bad_input_one_line_nonzero(params, tmp_path, extra, message):
    done = run("train", "-c", str(params), "--results", str(tmp_path / "r"), "-q", *extra)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nowcast: error: ") and message in lines[0]
    # nothing that looks like a completed run
    assert not list((tmp_path / "r").glob("*/metrics.json"))


def test_train_evaluate_predict(params, tmp_path):
    results = tmp_path / "r"
    done = run("train", "-c", str(params), "--results", str(results), "--job-id", "t1", "-q")
    assert done.returncode == 0, done.stderr
    folder = results / "t1"
    assert done.stdout.strip().endswith("t1")
    checkpoint = folder / "model.pt"

    # evaluate on an ad-hoc sequence file: scores land in a results folder of their own
    from nowcast.config import load_config
    from nowcast.data import get_data
    test = get_data(load_config(values=TINY)).split("test").frames
    np.savez(tmp_path / "seq.npz", frames=np.rint(test * 255).astype(np.uint8))
    done = run("evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "seq.npz"),
               "--results", str(results), "--job-id", "e1")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((results / "e1" / "metrics.json").read_text())
    assert metrics["follows_protocol"] is False and "seq.npz" in metrics["data"]
    assert len(metrics["per_lead"]["mse_frame"]) == 3
    assert metrics["n_sequences"] == 1 and "split by sequence 6/1/1" in done.stderr  # its test split
    done = run("evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "seq.npz"),
               "--all", "--results", str(results), "--job-id", "e2")
    assert done.returncode == 0, done.stderr
    every = json.loads((results / "e2" / "metrics.json").read_text())
    assert every["n_sequences"] == 8 and "8 sequences of 6 frames 32x32, every one scored" in every["data"]
    assert "every one scored" in done.stderr
    done = run("evaluate", "--checkpoint", str(checkpoint), "--protocol", "mmnist-10", "--all")
    assert done.returncode == 2 and "--all scores every sequence of a --data file" in done.stderr

    np.savez(tmp_path / "one.npz", np.rint(test[0, :3] * 255).astype(np.uint8))
    done = run("predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "one.npz"),
               "--steps", "5", "--out", str(tmp_path / "f.npz"))
    assert done.returncode == 0, done.stderr
    frames = np.load(tmp_path / "f.npz")["frames"]
    assert frames.shape == (5, 32, 32) and frames.dtype == np.uint8
    done = run("predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "one.npz"),
               "--steps", "2", "--out", str(tmp_path / "f.gif"))
    assert done.returncode == 0 and (tmp_path / "f.gif").stat().st_size > 1000

    for args, message in [
        (["--checkpoint", str(tmp_path / "none.pt")], "none.pt: no such checkpoint"),
        (["--checkpoint", str(params)], "tiny.yaml: not a nowcast checkpoint"),
        (["--checkpoint", str(checkpoint), "--out", str(tmp_path / "f.txt")], "must end in .gif or .npz"),
    ]:
        base = {"--checkpoint": None, "--input": str(tmp_path / "one.npz"), "--steps": "2",
                "--out": str(tmp_path / "g.npz")}
        base.update(dict(zip(args[::2], args[1::2])))
        done = run("predict", *[x for kv in base.items() for x in kv])
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_size_bound_model_on_other_frames_is_refused_before_any_folder(tmp_path):
    params = tmp_path / "bound.yaml"
    params.write_text(yaml.safe_dump(dict(TINY, peephole="per_position", num_epochs=1, train_sequences=8)))
    results = tmp_path / "r"
    assert run("train", "-c", str(params), "--results", str(results), "--job-id", "t", "-q").returncode == 0
    np.savez(tmp_path / "big.npz", frames=np.zeros((5, 6, 48, 48), np.uint8))
    done = run("evaluate", "--checkpoint", str(results / "t" / "model.pt"), "--data", str(tmp_path / "big.npz"),
               "--results", str(results), "--job-id", "e")
    assert done.returncode == 2 and "cannot run on (48, 48) frames" in done.stderr
    assert sorted(p.name for p in results.iterdir()) == ["t"]


# What a command imports: run in a fresh interpreter, then list the heavy modules it loaded.
PROBE = """import json, sys
from nowcast.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = ("torch", "nowcast.models", "nowcast.training", "nowcast.data", "nowcast.experiment")
print(json.dumps([m for m in sys.modules if m in heavy]))
sys.exit(code or 0)
"""


def loaded(*args: str, cwd=None) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["evaluate", "--help"],
                                  ["predict", "--help"], ["sweep", "--help"], ["status", "--help"],
                                  ["report", "--help"], ["slides", "--help"]])
def test_help_never_imports_torch(args):
    """`nowcast --help` answers at once: no torch, no model zoo, no training or data modules."""
    assert loaded(*args) == []


def test_status_report_and_slides_never_import_torch(tmp_path, tiny_values):
    from nowcast.config import load_config
    from nowcast.experiment import run_experiment
    run_experiment(load_config(values=dict(tiny_values, job_id="done")), progress=False)
    results = tiny_values["results_dir"]
    assert loaded("status", "--results", results) == []
    assert loaded("status", "--results", results, "--json") == []
    assert loaded("report", "--results", results, "--out", str(tmp_path / "report"),
                  "--no-reference") == []
    assert loaded("slides", "--results", results, "--out", str(tmp_path / "slides"),
                  "--no-reference", "--html-only") == []
    # a command that runs a model imports what it needs when it runs
    frames = tmp_path / "frames.npz"
    np.savez(frames, frames=np.zeros((3, 32, 32), np.uint8))
    assert {"torch", "nowcast.models"} <= set(loaded(
        "predict", "--checkpoint", f"{results}/done/model.pt", "--input", str(frames),
        "--steps", "2", "--out", str(tmp_path / "forecast.npz")))


def test_startup_benchmark_prints_every_command(capsys):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "cli_startup", Path(__file__).resolve().parents[1] / "benchmarks" / "cli_startup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--repeats", "1"]) == 0
    out = capsys.readouterr().out
    row = json.loads(out.strip().splitlines()[-1])
    assert set(row) == {"repeats", *bench.COMMANDS} and all(v > 0 for k, v in row.items() if k != "repeats")
    assert "| `nowcast --help` |" in out


@pytest.mark.parametrize("command", [["report", "--results", "{tmp}/none", "--out", "{file}"],
                                     ["slides", "--results", "{tmp}/none", "--out", "{file}/sub"],
                                     ["run", "params/smoke.yaml", "--results", "{file}"]])
def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, command):
    """Issue 56 item 15: --out naming an existing file (or a results root under one) was a
    traceback; every output folder that cannot be written is one line naming it, exit 2."""
    (tmp_path / "none").mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = [a.format(tmp=tmp_path, file=blocker) for a in command]
    done = run(*args, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nowcast: error: {blocker}") and "cannot write there" in lines[0]
    assert blocker.read_text() == "x"
