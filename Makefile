# nowcast — every command a user types. `make help` lists them.
SHELL := bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NOWCAST := $(VENV)/bin/nowcast
PARAMS ?= params/demo/*.yaml
RESULTS ?= results
STAMP := $(VENV)/.setup-stamp

.PHONY: help setup demo test experiments sweep report slides bench clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a bare 'torch' requirement could pull the multi-GB CUDA build
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	touch $@

setup: $(STAMP)  ## create .venv with pinned dependencies (constraints.txt)
	@if [ -f package.json ] && command -v npm >/dev/null; then [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; fi

test: setup  ## run the test suite
	$(PY) -m pytest -q

demo: setup  ## a few short experiments on CPU, then report and slides
	$(NOWCAST) run $(PARAMS) --results $(RESULTS)
	$(NOWCAST) report --results $(RESULTS)
	$(NOWCAST) slides --results $(RESULTS)

experiments: setup  ## run params sets locally through papermill (PARAMS=...)
	$(NOWCAST) run $(PARAMS) --results $(RESULTS)

sweep: setup  ## one SLURM array task per params file, then the report job (PARAMS=...)
	$(NOWCAST) sweep $(PARAMS) --results $(RESULTS)

report: setup  ## HTML + PDF report from results/ and the reference results
	$(NOWCAST) report --results $(RESULTS)

slides: setup  ## Marp deck (HTML; PDF when chromium is present)
	$(NOWCAST) slides --results $(RESULTS)

bench: setup  ## training-step throughput (GPU figures need a GPU)
	$(PY) benchmarks/throughput.py

clean:  ## remove generated report/slides output (never results/)
	rm -rf report/_output report/_generated slides/_output slides/_generated
