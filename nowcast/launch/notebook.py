"""The glue experiments/train.ipynb calls, and the generation of its parameters cell.

The notebook's cells, in order: `begin_parameters` (what the kernel holds before the
parameters), the parameters cell (every Config field, then the notebook-only `finalize` and
`collective_timeout_s`), papermill's injected cell when launched, `notebook_config`,
`run_notebook_experiment`, `show_results`. `sync_notebook` regenerates the parameters cell from Config's field metadata.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import yaml

from .. import results, yamlio
from ..config import FIELDS, Config, defaults, load_config
from ..errors import NowcastError, one_line
from ..experiment import default_name, run_experiment
from ..paths import JobPaths
from ..progress import in_kernel
from ..limits import collective_timeout
from ..stopping import install_preemption_handler
from ..util import optional_import, repo_file, write_text

NOTEBOOK = Path("experiments/train.ipynb")
NOTEBOOK_PY = Path("experiments/train.py")  # its jupytext pair, the one to review and edit

# Parameters of the notebook that are not Config fields: name -> (default, help).
NOTEBOOK_ONLY: dict[str, tuple[Any, str]] = {
    "finalize": (True, "set False by nowcast run/sweep, which complete the run after saving "
                       "the executed notebook"),
    "collective_timeout_s": (None, "several processes (set by nowcast task): seconds a "
                                   "collective waits for the others; None: the default"),
}
NOTEBOOK_SECTION = "notebook (not Config fields)"


# --------------------------------------------------------------------------------------------
# which parameters were given
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParametersMark:
    """Taken just before the parameters cell runs."""
    names_before: frozenset[str]   # the kernel's names then: not parameters
    history: Optional[int]         # index of the parameters cell in the kernel's input history
                                   # (None outside IPython)


def _shell() -> Any:
    """The running IPython shell, or None (plain Python, or IPython not installed)."""
    try:
        ipython = optional_import("IPython", "notebooks")
    except NowcastError:
        return None
    return ipython.get_ipython()


def _input_history() -> Optional[list[str]]:
    shell = _shell()
    return None if shell is None else list(shell.user_ns.get("_ih") or [])


def begin_parameters(namespace: Mapping[str, Any]) -> ParametersMark:
    """The notebook's first cell: remember what is not a parameter and where the parameters
    cell will be in the input history (the cell being run is the history's last entry)."""
    _say_errors_on_the_terminal()
    history = _input_history()
    return ParametersMark(frozenset(namespace), None if history is None else len(history))


def _say_errors_on_the_terminal() -> None:
    """In a kernel, a NowcastError's one line also goes to the kernel's own stderr (papermill's
    terminal, the SLURM log) the moment it is raised, before papermill's traceback; the
    cell's output shows the same line (NowcastError._render_traceback_)."""
    shell = _shell()
    if shell is None or not in_kernel():
        return

    def said(shell, etype, value, tb, tb_offset=None):
        print(f"nowcast: error: {one_line(value)}", file=sys.__stderr__, flush=True)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((NowcastError,), said)


def given_parameters(mark: ParametersMark, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The names defined since the mark: the parameters cell's and papermill's injected ones."""
    return {k: v for k, v in namespace.items() if k not in mark.names_before and not k.startswith("_")}


def injected_names(mark: ParametersMark) -> set[str]:
    """Names that papermill's injected-parameters cell assigned: those of the cells run after
    the parameters cell and before the current one. Empty outside IPython or when nothing was
    injected."""
    history = _input_history()
    if history is None or mark.history is None:
        return set()
    return _assigned_names(history[mark.history + 1:-1])


def _assigned_names(sources: typing.Iterable[str]) -> set[str]:
    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names |= {t.id for node in tree.body if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Name)}
    return names


# --------------------------------------------------------------------------------------------
# the notebook's cells
# --------------------------------------------------------------------------------------------

def _default(name: str) -> Any:
    return defaults()[name]


def _accepts_str(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is str:
        return True
    if origin is Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return any(_accepts_str(a) for a in typing.get_args(tp))
    return False


def _from_command_line(value: Any) -> Any:
    """papermill -p passes some values as strings: read them as YAML (1.2: yamlio)."""
    try:
        return yamlio.load(value)
    except yaml.YAMLError:
        return value


def notebook_config(parameters: dict[str, Any], injected: typing.Collection[str] = ()) -> Config:
    """The Config of the notebook's parameters (its parameters cell plus papermill's injected cell).

    - A name that is not a Config field is rejected with the closest field name (a typo in
      `-p strde 2` must not silently run the default); the notebook-only parameters
      (NOTEBOOK_ONLY: finalize, collective_timeout_s) are not Config fields and are left to
      the notebook.
    - A value counts as given when papermill injected it (`injected`, see injected_names) or
      when it differs from the parameters cell's default (edited by hand). Others count as not
      given, so that a protocol preset (`-p protocol mmnist-t`) fills its own data fields, while
      `-p protocol mmnist-t -p k_in 10` is refused as a contradiction, as a params file would be.
    - A string given for a field that takes no strings is read as YAML: `-p hidden_sizes "[8, 8]"`
      and `-p max_pool false` work from the papermill command line.
    """
    hints = typing.get_type_hints(Config)
    values: dict[str, Any] = {}
    for key, value in parameters.items():
        if key in NOTEBOOK_ONLY:
            continue
        if key not in FIELDS:
            if isinstance(value, (types.ModuleType, type, Config, Path)) or callable(value):
                continue  # the notebook's own names, when its cells are run again by hand
            values[key] = value  # load_config rejects it, naming the closest field
            continue
        if isinstance(value, str) and not _accepts_str(hints[key]):
            value = _from_command_line(value)
        default = _default(key)
        if key not in injected and type(value) is type(default) and value == default:
            continue
        values[key] = value
    return load_config(values=values)


def with_identity(cfg: Config) -> Config:
    """cfg with its name and job id resolved as the run will resolve them (a name from what it
    is, a job id from SLURM or the time and params hash), so that the notebook's configuration
    cell shows what params.yaml will say, not name '' and job_id null."""
    cfg.name = cfg.name or default_name(cfg)
    cfg.job_id = results.resolve_job_id(cfg)
    return cfg


def run_notebook_experiment(cfg: Config, finalize: bool = True,
                            collective_timeout_s: Optional[float] = None) -> Path:
    """What the notebook's run cell does: install the preemption handler, train, evaluate.

    finalize (the notebook's own parameter): True, run by hand, completes the run and returns
    results/<job_id>/; False (nowcast run/sweep) returns results/.running-<job_id>/, which the
    launcher completes once the executed notebook is saved into it. collective_timeout_s (its
    parameter too): what `nowcast task` gives rank 0 of several processes.
    """
    if isinstance(finalize, str):
        finalize = _from_command_line(finalize)
    if not isinstance(finalize, bool):
        raise NowcastError(f"parameters: 'finalize' must be true or false, got {finalize!r}")
    if isinstance(collective_timeout_s, str):
        collective_timeout_s = _from_command_line(collective_timeout_s)
    if collective_timeout_s is not None:  # None stays None: run_experiment's default
        collective_timeout_s = collective_timeout(collective_timeout_s,
                                                  "parameters: 'collective_timeout_s'")
    install_preemption_handler()
    return run_experiment(cfg, finalize=finalize, collective_timeout_s=collective_timeout_s)


def _headline(run_dir: Path, metrics: dict) -> str:
    losses = metrics.get("losses", {})
    follows = metrics.get("follows_protocol", True)
    lines = [f"**{metrics.get('name', '')}** ({metrics.get('architecture', '')}, "
             f"{metrics.get('parameters', 0):,} parameters), protocol `{metrics.get('protocol')}`"
             f"{'' if follows else ' (not following it: ' + str(metrics.get('data')) + ')'}",
             "",
             f"- data: {metrics.get('data', '')}",
             f"- {losses.get('loss', 'loss')}: train {losses.get('train')}, "
             f"val {losses.get('val')}, test {losses.get('test')}"]
    for key in metrics.get("headline", []):
        value = metrics.get("mean", {}).get(key)
        if value is not None:
            lines.append(f"- test {key}: {value:.4g} (mean over lead times)")
    lines.append(f"- results folder: `{run_dir}`")
    return "\n".join(lines)


def show_results(run_dir: str | Path) -> None:
    """The figures and headline numbers of a run, inline in the notebook."""
    display = optional_import("IPython.display", "notebooks")
    run_dir, paths = Path(run_dir), JobPaths(run_dir)
    metrics = results.read_json(paths.metrics)  # also in a folder not completed yet
    if metrics:
        display.display(display.Markdown(_headline(run_dir, metrics)))
    for path, caption in ((paths.loss_png, "Loss per epoch"),
                          (paths.loss_median_png, "Median batch loss"),
                          (paths.per_lead_png, "Test metrics per lead time"),
                          (paths.test_strip_png, "A test sequence: input, target, prediction")):
        if path.is_file():
            display.display(display.Markdown(f"### {caption}"))
            display.display(display.Image(filename=str(path)))


# --------------------------------------------------------------------------------------------
# the parameters cell, generated from Config
# --------------------------------------------------------------------------------------------

def _assignment(name: str, default: Any, help: str) -> str:
    text = f"{name} = {default!r}"
    if not help:
        return text
    # papermill's parameter inspection gives up on a help comment holding '='
    comment = re.sub(r"\s*=\s*", " is ", help)
    return f"{text:<34s}  # {comment}"


def parameters_cell() -> str:
    """The source of the notebook's `parameters` cell: every Config field with its default and
    help, in the dataclass's order and sections (field metadata), then NOTEBOOK_ONLY."""
    lines: list[str] = []
    for f in dataclasses.fields(Config):
        if f.metadata.get("section"):
            lines += ([""] if lines else []) + [f"# {f.metadata['section']}"]
        lines.append(_assignment(f.name, _default(f.name), f.metadata.get("help", "")))
    lines += ["", f"# {NOTEBOOK_SECTION}"]
    lines += [_assignment(name, default, help) for name, (default, help) in NOTEBOOK_ONLY.items()]
    return "\n".join(lines)


def _render(text: str) -> tuple[str, str]:
    """experiments/train.py with the parameters cell regenerated, and its .ipynb pair."""
    jupytext = optional_import("jupytext", "notebooks")
    pattern = re.compile(r'(# %% tags=\["parameters"\]\n)(.*?)(\n\n# %%)', re.S)
    if not pattern.search(text):
        raise NowcastError(f"{NOTEBOOK_PY}: no '# %% tags=[\"parameters\"]' cell")
    new = pattern.sub(lambda m: m.group(1) + parameters_cell() + m.group(3), text, count=1)
    notebook = jupytext.reads(new, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                       "language": "python"}
    notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    for i, cell in enumerate(notebook.cells):  # stable ids: a regenerated notebook diffs cleanly
        cell["id"] = f"cell-{i:02d}"
    return new, jupytext.writes(notebook, fmt="ipynb")


def sync_notebook(py_path: Optional[Path] = None, check: bool = False) -> bool:
    """Regenerate the parameters cell of experiments/train.py from Config and pair the .ipynb;
    True when both were already up to date. check=True changes nothing."""
    py_path = Path(py_path) if py_path is not None else repo_file(NOTEBOOK_PY)
    text = py_path.read_text()
    new, rendered = _render(text)
    ipynb = py_path.with_suffix(".ipynb")
    up_to_date = new == text and ipynb.is_file() and ipynb.read_text() == rendered
    if not check and not up_to_date:
        write_text(py_path, new)
        write_text(ipynb, rendered)
    return up_to_date
