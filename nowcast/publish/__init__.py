"""Report and slides from results folders.

| module          | what it owns                                                          |
|-----------------|-----------------------------------------------------------------------|
| report.py       | `build_report`: read runs (results.find_runs), fragments, render      |
| slides.py       | `build_slides`: the Marp deck and its generated experiment slides     |
| fragments.py    | the report's generated markdown, one function per fragment            |
| tables.py       | results table per protocol (with published numbers), skill table      |
| uncertainty.py  | seed groups (t interval), one run's bootstrap from scores.npz, paired |
| intervals.py    | interval, paired-comparison and train/val/test tables; methods text   |
| describe.py     | what is said about one run: architecture, provenance, headline        |
| markdown.py     | number formats, escaping, tables, figure markup                       |
| render.py       | the renderer registry: quarto | pandoc+typst                          |
| incremental.py  | content stamps and copies: rebuild only what changed                  |

Every number written carries its protocol and data, taken from metrics.json; every value read
from a results folder is escaped before it is rendered.

`build_report` and `build_slides` are loaded from their modules when first used (PEP 562):
importing the package (for `publish.render`'s renderer names in `nowcast --help`) does not
import matplotlib.
"""

import importlib

_LAZY = {"build_report": "report", "build_slides": "slides"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
