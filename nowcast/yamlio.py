"""YAML as people write params: every params value nowcast reads (files, `--set`, papermill
`-p`, grids) goes through `load`.

- Numbers as YAML 1.2 (and Python, and every paper) write them: PyYAML implements YAML 1.1,
  whose floats need a dot and a signed exponent, so `1e-3`, `1e+8` and `5e4` were strings
  there. Here they are floats (`1e300` too; `.inf` and `.nan` as before).
- Integers as YAML 1.2 writes them: `010` is 10, `0o12` is 10, `0x1f` is 31; YAML 1.1's
  octal `010`, base-60 `1:04`, `0b101` and `1_6` are text (refused where a number is expected),
  so one typed value means one number on every surface (files, `--set`, grids, papermill `-p`).
- A key given twice in one mapping is refused, naming both lines: YAML 1.1 keeps the last one
  silently, so a params file could say two things and mean one.
- Bounded before anything is built: at most MAX_TEXT characters, MAX_NODES nodes with every
  alias counted where it is used (721 bytes of nested aliases, "billion laughs", expand to
  gigabytes) and MAX_DEPTH levels of nesting (100,000 brackets overflowed Python's stack).
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from .errors import NowcastError, first_line

# YAML 1.2's core schema float, less what only YAML 1.1 read as a float (sexagesimal 1:30)
FLOAT_1_2 = re.compile(r"""^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$
                          |^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$""", re.X)
FLOAT_TAG = "tag:yaml.org,2002:float"


MAX_TEXT = 1_000_000  # characters of one document: a params file is a few hundred
MAX_NODES = 100_000   # scalars, lists and mappings, aliases counted where they are used
MAX_DEPTH = 64        # lists and mappings inside each other


class DuplicateKey(yaml.MarkedYAMLError):
    pass


class TooLarge(yaml.YAMLError):
    """A document over MAX_TEXT, MAX_NODES or MAX_DEPTH."""


class _ParamsMapping:
    """Mappings with duplicate keys refused (mixed into both loaders below)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise DuplicateKey(None, None, f"key {key!r} is given twice (lines {seen[key]} "
                                               f"and {line})", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep)


class ParamsLoader(_ParamsMapping, yaml.SafeLoader):
    """yaml.SafeLoader with YAML 1.2 numbers and duplicate keys refused."""


# libyaml's parser (about 10x faster: `nowcast status` reads a params.yaml per run) composes
# by recursion in C, which a deep document crashes (a segmentation fault, not an error): it
# reads only documents `shallow` bounds; the others go to the Python parser, which raises
CFAST = getattr(yaml, "CSafeLoader", None)
CParamsLoader = type("CParamsLoader", (_ParamsMapping, CFAST), {}) if CFAST else None


# YAML 1.2's core schema integers: decimal (leading zeros are decimal: 010 is 10), 0o octal,
# 0x hexadecimal. YAML 1.1's others are text here, and refused where a number is expected:
# 010 as octal 8, 1:04 as base 60 (64), 0b101, 1_6 (16).
INT_1_2 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
INT_TAG = "tag:yaml.org,2002:int"

# the int and float resolvers replaced: integers ("10") match the int resolver first
ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (FLOAT_TAG, INT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-+0123456789":
    ParamsLoader.yaml_implicit_resolvers.setdefault(_first, []).append((INT_TAG, INT_1_2))
for _first in "-+0123456789.":
    ParamsLoader.yaml_implicit_resolvers.setdefault(_first, []).append((FLOAT_TAG, FLOAT_1_2))
if CParamsLoader is not None:  # one resolution for both parsers
    CParamsLoader.yaml_implicit_resolvers = ParamsLoader.yaml_implicit_resolvers
# (SafeLoader's float constructor reads every one of these: it ends in float(text))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An INT_1_2 scalar (or an explicit !!int) as YAML 1.2 reads it."""
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    try:
        return int(text, 10)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a YAML 1.2 integer", node.start_mark) from None


for _loader in (ParamsLoader, CParamsLoader):
    if _loader is not None:
        _loader.add_constructor(INT_TAG, _construct_int)

INDICATOR = re.compile(r"(?:^|\s)[-?:](?=\s|$)")


def shallow(text: str) -> bool:
    """Whether a document's nesting is surely under MAX_DEPTH: each level of a YAML document
    needs a flow opener ([ or {), a deeper indentation or a block indicator (- ? :) on the
    same line, so their count bounds its depth."""
    openers = text.count("[") + text.count("{")
    if openers >= MAX_DEPTH:
        return False
    lines = text.splitlines() or [""]
    indent = max(len(line) - len(line.lstrip()) for line in lines)
    indicators = max(len(INDICATOR.findall(line)) for line in lines)
    return openers + indent + indicators < MAX_DEPTH


def _check_size(node: yaml.Node) -> None:
    """TooLarge when the document, its aliases expanded, passes MAX_NODES or MAX_DEPTH (walked
    without recursion, and without building anything)."""
    count, stack = 0, [(node, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise TooLarge(f"more than {MAX_NODES:,} values or {MAX_DEPTH} levels of nesting "
                           "(aliases counted where they are used): not read")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            stack += [(child, depth + 1) for pair in node.value for child in pair]


def load(text: str) -> Any:
    """A YAML document as nowcast reads params (yaml.YAMLError on bad YAML; DuplicateKey and
    TooLarge too)."""
    if len(text) > MAX_TEXT:
        raise TooLarge(f"{len(text):,} characters, more than the {MAX_TEXT:,} of a params file")
    loader = (CParamsLoader if CParamsLoader is not None and shallow(text) else ParamsLoader)(text)
    try:  # composed once, checked, then built from the same nodes
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except RecursionError:
        raise TooLarge(f"nested deeper than Python can parse (at most {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def is_name(key: Any) -> bool:
    """Whether a mapping key looks like a parameter's name: only such a key is echoed in an
    error (a params path that points at another file must not print its content)."""
    return isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key) is not None


def shown(value: Any) -> str:
    """A value as an error message shows it: repr, cut short (a list or a text of any size is
    never printed whole)."""
    return reprlib.repr(value)


PARAMS_MAX_BYTES = 4 * MAX_TEXT  # UTF-8: at most 4 bytes a character


def read_params(path) -> dict[str, Any]:
    """A params file as a mapping: bounded (no FIFO or device read, PARAMS_MAX_BYTES),
    UTF-8, YAML as `load` reads it; NowcastError naming the file otherwise."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError
        if path.exists() and not path.is_file():  # a FIFO would block, /dev/zero never end
            raise NowcastError(f"{path}: not a regular file (a FIFO or a device): a params "
                               f"file is YAML text")
        with open(path, "rb") as f:  # bounded: a params file is a few hundred bytes
            data = f.read(PARAMS_MAX_BYTES + 1)
        if len(data) > PARAMS_MAX_BYTES:
            raise NowcastError(f"{path}: more than {PARAMS_MAX_BYTES:,} bytes: not a params file")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise NowcastError(f"{path}: no such params file") from None
    except IsADirectoryError:
        raise NowcastError(f"{path}: a folder, not a file (give a params .yaml file)") from None
    except UnicodeDecodeError as e:
        raise NowcastError(f"{path}: not UTF-8 text (byte {e.start}); a params file is YAML "
                           f"text, saved as UTF-8") from None
    except OSError as e:
        raise NowcastError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        data = load(text)
    except yaml.YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise NowcastError(f"{path}: not valid YAML ({at}{problem or first_line(e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NowcastError(f"{path}: expected a mapping of parameter: value")
    return data
