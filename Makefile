# Quick start: `make demo` runs the main job on a shipped dataset, `make test` runs the test suite.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0

.PHONY: demo test venv case-studies bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel of torch lies on this machine; install it first so pip never fetches a CUDA build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m sysid.demo --out demo_output

test: $(VENV)/.installed
	TQDM_DISABLE=1 MPLBACKEND=Agg $(PY) -m pytest -n 2 -q -p no:cacheprovider

case-studies: $(VENV)/.installed
	$(PY) case_studies/run_all.py --out results/case_studies

bench: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_fit_speed.py
	$(PY) benchmarks/bench_vs_sindy.py

clean:
	rm -rf $(VENV) demo_output results .pytest_cache
