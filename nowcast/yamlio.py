"""YAML as people write params: every params value nowcast reads (files, `--set`, papermill
`-p`, grids) goes through `load`.

- Numbers as YAML 1.2 (and Python, and every paper) write them: PyYAML implements YAML 1.1,
  whose floats need a dot and a signed exponent, so `1e-3`, `1e+8` and `5e4` were strings
  there. Here they are floats (`1e300` too; `.inf` and `.nan` as before).
- A key given twice in one mapping is refused, naming both lines: YAML 1.1 keeps the last one
  silently, so a params file could say two things and mean one.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# YAML 1.2's core schema float, less what only YAML 1.1 read as a float (sexagesimal 1:30)
FLOAT_1_2 = re.compile(r"""^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$
                          |^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$""", re.X)
FLOAT_TAG = "tag:yaml.org,2002:float"


class DuplicateKey(yaml.MarkedYAMLError):
    pass


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


def load(text: str) -> Any:
    """A YAML document as nowcast reads params (yaml.YAMLError on bad YAML, DuplicateKey too)."""
    return yaml.load(text, Loader=ParamsLoader)
