# nowcast — every command a user types. `make help` lists them.
SHELL := bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NOWCAST := $(VENV)/bin/nowcast
PARAMS ?= params/demo/*.yaml params/grids/demo-seeds.yaml
RESULTS ?=
SWEEP_ARGS ?=
# --results only when RESULTS is given: otherwise each params set's own results_dir applies
RESULTS_ARG = $(if $(RESULTS),--results $(RESULTS))
REPORT_ARG = --results $(or $(RESULTS),results)
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
	$(NOWCAST) run $(PARAMS) $(RESULTS_ARG)
	$(NOWCAST) report $(REPORT_ARG)
	$(NOWCAST) slides $(REPORT_ARG)

experiments: setup  ## run params sets locally through papermill (PARAMS=...)
	$(NOWCAST) run $(PARAMS) $(RESULTS_ARG)

sweep: setup  ## SLURM array + report job (PARAMS=..., SWEEP_ARGS="--partition gpu --time 08:00:00")
	$(NOWCAST) sweep $(PARAMS) $(RESULTS_ARG) $(SWEEP_ARGS)

report: setup  ## HTML + PDF report from results/ and the reference results
	$(NOWCAST) report $(REPORT_ARG)

slides: setup  ## Marp deck (HTML; PDF when chromium is present)
	$(NOWCAST) slides $(REPORT_ARG)

bench: setup  ## training-step throughput (GPU figures need a GPU)
	$(PY) benchmarks/throughput.py

clean:  ## remove generated report/slides output (never results/)
	rm -rf report/_output report/_generated slides/_output slides/_generated
