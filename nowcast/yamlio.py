"""YAML as people write params: every params value nowcast reads (files, `--set`, papermill
`-p`, grids) goes through `load`.

- Numbers as YAML 1.2 (and Python, and every paper) write them: PyYAML implements YAML 1.1,
  whose floats need a dot and a signed exponent, so `1e-3`, `1e+8` and `5e4` were strings
  there. Here they are floats (`1e300` too; `.inf` and `.nan` as before).
- A key given twice in one mapping is refused, naming both lines: YAML 1.1 keeps the last one
  silently, so a params file could say two things and mean one.
- Bounded before anything is built: at most MAX_TEXT characters, MAX_NODES nodes with every
  alias counted where it is used (721 bytes of nested aliases, "billion laughs", expand to
  gigabytes) and MAX_DEPTH levels of nesting (100,000 brackets overflowed Python's stack).
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

import yaml

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


class ParamsLoader(yaml.SafeLoader):
    """yaml.SafeLoader with YAML 1.2 floats and duplicate keys refused."""

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


# the float resolver replaced: integers ("10") still match the int resolver first
ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-+0123456789.":
    ParamsLoader.yaml_implicit_resolvers.setdefault(_first, []).append((FLOAT_TAG, FLOAT_1_2))
# (SafeLoader's float constructor reads every one of these: it ends in float(text))


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
    loader = ParamsLoader(text)
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
