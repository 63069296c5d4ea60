"""experiments/train.ipynb: its parameters are exactly the Config fields (plus its own
`finalize`), and it runs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from papermill.translators import PythonTranslator

import nowcast
from nowcast.config import FIELDS, Config, load_config
from nowcast.errors import NowcastError
from nowcast.launch.notebook import (NOTEBOOK_ONLY, ParametersMark, _default, begin_parameters,
                                     given_parameters, injected_names, notebook_config,
                                     parameters_cell, sync_notebook)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "experiments" / "train.ipynb"


def _parameters_cell() -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def _assignments(source: str) -> dict:
    out = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def test_parameter_names_are_the_config_fields_and_the_notebooks_own():
    names = _assignments(_parameters_cell().source)
    assert set(names) == set(FIELDS) | set(NOTEBOOK_ONLY)
    assert list(names)[-len(NOTEBOOK_ONLY):] == list(NOTEBOOK_ONLY)  # after the Config fields


def test_parameter_defaults_are_the_config_defaults():
    names = _assignments(_parameters_cell().source)
    defaults = dict(Config().to_dict(), **{k: d for k, (d, _) in NOTEBOOK_ONLY.items()})
    assert names["finalize"] is True  # run by hand, the notebook completes its own run
    for key, value in names.items():
        assert value == defaults[key] and type(value) is type(defaults[key]), key


def test_parameters_cell_comes_from_field_metadata():
    cell = parameters_cell()
    assert cell.startswith("# experiment\nname = ''")
    assert "\n\n# model\narchitecture = 'convlstm_ed'\n" in cell
    assert "# stage lengths L (k_in is k_out is L); None: one stage" in cell  # no '=' for papermill
    assert "finalize = True" in cell.split("# notebook")[-1]


def test_notebook_is_in_sync_with_config_and_its_py_pair():
    # python -m nowcast sync-notebook regenerates both after a Config change
    assert sync_notebook(ROOT / "experiments" / "train.py", check=True)
    assert _parameters_cell().source == parameters_cell()


def test_notebook_metadata_and_papermill_inspection():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"  # papermill refuses a notebook without it
    assert nb.metadata["kernelspec"]["language"] == "python"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed clean
    inspected = PythonTranslator.inspect(_parameters_cell())
    assert {p.name for p in inspected} == set(FIELDS) | set(NOTEBOOK_ONLY)


def test_notebook_config_rejects_unknown_names_with_suggestion():
    with pytest.raises(NowcastError, match="did you mean 'stride'"):
        notebook_config({"strde": 2})


def test_notebook_config_ignores_the_notebooks_own_names_when_rerun():
    given = {name: _default(name) for name in FIELDS}
    cfg = notebook_config(dict(given, launch=nowcast, to_yaml=yaml.safe_dump, cfg=Config(),
                               run_dir=Path("results/x"), finalize=False))
    assert cfg == load_config()


def test_given_parameters_are_the_names_defined_after_the_mark():
    namespace = {"launch": object(), "to_yaml": yaml.safe_dump}
    mark = begin_parameters(namespace)
    assert mark.history is None  # outside IPython: no input history
    namespace.update(stride=1, finalize=False, _private=3)
    assert given_parameters(mark, namespace) == {"stride": 1, "finalize": False}
    assert injected_names(mark) == set()
    assert injected_names(ParametersMark(frozenset(), 5)) == set()


def test_notebook_config_defaults_do_not_fight_protocol_presets():
    given = {name: _default(name) for name in FIELDS}
    given["protocol"] = "mmnist-t"
    cfg = notebook_config(given)
    assert (cfg.k_in, cfg.k_out, cfg.train_sequences) == (7, 7, 8000)


def test_notebook_config_reads_strings_from_the_command_line():
    given = {name: _default(name) for name in FIELDS}
    given.update(hidden_sizes="[8, 8]", max_pool="false", filter_size="3", name="x")
    cfg = notebook_config(given)
    assert cfg.hidden_sizes == [8, 8] and cfg.max_pool is False and cfg.filter_size == 3
    assert cfg.stride == 2 and cfg.name == "x"


def test_notebook_config_equals_load_config_of_the_params_file():
    path = ROOT / "params" / "smoke.yaml"
    given = {name: _default(name) for name in FIELDS}
    given.update(yaml.safe_load(path.read_text()))
    assert notebook_config(given) == load_config(path)


def _papermill(*args, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def test_papermill_rejects_an_unknown_injected_parameter(tmp_path):
    done = _papermill(str(tmp_path / "out.ipynb"), "-p", "strde", "2", "-p", "results_dir",
                      str(tmp_path / "results"), cwd=ROOT)
    assert done.returncode != 0
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    errors = [o for c in out.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and "did you mean 'stride'" in errors[0].evalue
    # the one line that matters comes first (the kernel's stderr, as it is raised) and last
    # (papermill's exception quotes the cell's traceback: that line alone); the cell too shows
    # only it. Between them papermill prints its own frames (outside nowcast's reach)
    said = "nowcast: error: parameters: unknown parameter 'strde'"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(said), lines[-3:]
    first = next(i for i, line in enumerate(lines) if said in line)
    assert first < next(i for i, line in enumerate(lines) if line.startswith("Traceback"))
    assert [line for line in errors[0].traceback if line.strip()] == [lines[-1]]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


@pytest.mark.slow
def test_papermill_with_smoke_params_writes_a_complete_results_folder(tmp_path):
    results = tmp_path / "results"
    done = _papermill(str(tmp_path / "out.ipynb"), "-p", "stride", "2", "-f",
                      str(ROOT / "params" / "smoke.yaml"), "-p", "results_dir", str(results),
                      cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [p for p in results.iterdir() if not p.name.startswith(".")]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed"
    for name in ["params.yaml", "env.json", "history.csv", "metrics.json", "loss.png",
                 "per_lead.png", "test_strip.png", "train.gif", "test.gif", "model.pt"]:
        assert (run / name).is_file(), name
    assert yaml.safe_load((run / "params.yaml").read_text())["name"] == "smoke"
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    images = [o for c in out.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # loss, per-lead, test strip shown inline
    # the configuration cell shows what params.yaml says: the resolved name and job id
    shown = next(yaml.safe_load(o["text"]) for c in out.cells if "to_yaml(cfg)" in c.source
                 for o in c.get("outputs", []) if o.get("name") == "stdout")
    assert (shown["name"], shown["job_id"]) == ("smoke", run.name)
    # papermill shows only its cell counter: the plan lines reach the terminal on stderr too,
    # the first estimate after the first step
    assert "nowcast: smoke: " in done.stderr and "the first step took" in done.stderr


@pytest.mark.slow
def test_bare_papermill_to_stdout_still_writes_results(tmp_path):
    # the card's bare form: no output path (the executed notebook goes to stdout); run from a
    # folder holding nothing but the notebook's working files, results/ relative to it
    work = tmp_path / "work"
    work.mkdir()
    done = _papermill("-p", "stride", "2", "-f", str(ROOT / "params" / "smoke.yaml"), cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["cells"]  # the executed notebook, on stdout
    runs = [p for p in (work / "results").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1
    assert json.loads((runs[0] / "status.json").read_text())["status"] == "completed"


def test_papermill_refuses_a_contradiction_of_the_protocol(tmp_path):
    """-p protocol mmnist-t -p k_in 10: k_in is given (injected), so it contradicts the preset
    (k_in 7) and is refused, as the same params file would be; nothing runs."""
    done = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "experiments" / "train.ipynb"),
                           str(tmp_path / "out.ipynb"), "-p", "protocol", "mmnist-t", "-p", "k_in", "10",
                           "-p", "results_dir", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0
    assert "protocol 'mmnist-t' fixes k_in=7, got 10" in done.stderr + done.stdout
    assert not (tmp_path / "r").exists()
