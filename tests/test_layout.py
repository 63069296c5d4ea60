"""The code's shape (docs/architecture.md): imports point one way, modules and functions stay
small enough to read in one sitting. Checked on the source with `ast`, so imports inside
functions count as much as those at the top."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nowcast"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
LONG_MARK = "# long:"   # a comment on the line above a longer function says why it is long


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The nowcast modules a module imports anywhere in its source (explicit imports only:
    importing a.b.c also runs a/__init__ and a/b/__init__, which is not counted)."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from . import figures` names a module
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path.read_text(), path.name == "__init__.py", set(mods))
            for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    """The check can fail: a constructed cycle through a function-level import is found."""
    graph = {"nowcast.a": {"nowcast.b"}, "nowcast.b": {"nowcast.c"}, "nowcast.c": {"nowcast.a"},
             "nowcast.d": {"nowcast.a"}}
    assert cycles(graph) == [["nowcast.a", "nowcast.b", "nowcast.c"]]
    known = {"nowcast.x.a", "nowcast.x.b", "nowcast.c", "nowcast.x"}
    source = "import os\ndef f():\n    from .b import g\n    from ..c import h\n    from . import a\n"
    assert imported("nowcast.x.a", source, False, known) == {"nowcast.x.b", "nowcast.c"}
    assert imported("nowcast.x", "from . import b\n", True, known) == {"nowcast.x.b"}


def test_data_layer_imports_no_scoring():
    """data -> verification/baselines -> scoring -> experiment: never back."""
    graph = import_graph()
    later = {"nowcast.verification", "nowcast.baselines", "nowcast.scoring", "nowcast.experiment",
             "nowcast.training", "nowcast.publish", "nowcast.cli"}
    for name, deps in graph.items():
        if name.startswith("nowcast.data"):
            assert not {d for d in deps if d in later or d.startswith("nowcast.publish")}, name


def documented_layers() -> list[set[str]]:
    """docs/architecture.md's import-direction line: groups of modules, earliest first."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    line = text[text.index("Import direction"):].split("`status` <- `cli`")[0] + "`status` <- `cli`"
    line = line[line.index(":") + 1:]
    return [{f"nowcast.{m.strip()}" for m in group.split(",")}
            for group in re.findall(r"`([^`]+)`\s*(?:<-|$)", line.replace("\n", " "))]


def layer_violations(graph: dict[str, set[str]], layers: list[set[str]]) -> list[str]:
    """Imports of a later group (each module counted in the group of its top package)."""
    def group(name: str):
        top = ".".join(name.split(".")[:2])
        return next((i for i, g in enumerate(layers) if top in g), None)
    bad = []
    for name, deps in graph.items():
        for dep in deps:
            gn, gd = group(name), group(dep)
            if gn is not None and gd is not None and gd > gn:
                bad.append(f"{name} -> {dep}")
    return sorted(bad)


def test_documented_import_direction_is_the_codes():
    layers = documented_layers()
    graph = import_graph()
    tops = {".".join(n.split(".")[:2]) for n in graph} - {"nowcast", "nowcast.__main__"}
    assert set().union(*layers) == tops  # every module is placed, and only those that exist
    assert layer_violations(graph, layers) == []
    # the check can fail: the direction the line used to state (config <- models) is refused
    assert layer_violations({"nowcast.config": {"nowcast.training"}}, layers) == [
        "nowcast.config -> nowcast.training"]


def test_modules_are_small():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def long_functions(source: str) -> dict[str, int]:
    """Functions over MAX_FUNCTION_LINES lines without a `# long:` reason above them."""
    lines = source.splitlines()
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES and LONG_MARK not in lines[first - 2]:
                out[f"{node.name}:{node.lineno}"] = n
    return out


def test_functions_are_short():
    found = {f"{name}.{f}": n for name, path in modules().items()
             for f, n in long_functions(path.read_text()).items()}
    assert found == {}


def test_long_function_check_bites():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    assert list(long_functions(f"def f():\n{body}\n")) == ["f:1"]
    assert long_functions(f"{LONG_MARK} one loop, kept whole\ndef f():\n{body}\n") == {}


def test_imports_are_at_module_top():
    """Dependencies are visible at the top of each module (optional packages go through
    util.optional_import, a call, so a missing one is an error message, not an import)."""
    inside = []
    for name, path in modules().items():
        for f in ast.walk(ast.parse(path.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{name}.{f.name}" for n in ast.walk(f)
                           if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert inside == []
