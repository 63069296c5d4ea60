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

Import what you need from its module (`nowcast.publish.report.build_report`): this package
imports nothing itself, so `nowcast --help` can list the renderers without matplotlib.
"""
