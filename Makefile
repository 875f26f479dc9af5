# Quick start: `make demo` runs the main job on a shipped dataset, `make test` runs the test suite.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0

.PHONY: demo test venv docs case-studies bench clean

# pip's output (warnings about the machine's extra package folders, progress) goes to a log that is
# shown only when an install fails, so `make demo` prints the demo and nothing else.
PIP := $(PY) -m pip install -q --disable-pip-version-check
LOG := $(VENV)/install.log
QUIET = >>$(LOG) 2>&1 || { cat $(LOG); echo "pip failed; the log above is $(LOG)"; exit 1; }

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV)
	@echo "installing sysid into $(VENV) (pip's log: $(LOG))"
	@$(PIP) --upgrade pip $(QUIET)
	@# The CPU wheel of torch lies on this machine; install it first so pip never fetches a CUDA build.
	@$(PIP) torch==$(TORCH_VERSION) $(QUIET)
	@$(PIP) -e ".[test,distill,parallel]" $(QUIET)
	@touch $@

$(VENV)/.docs-installed: $(VENV)/.installed
	@$(PIP) -e ".[test,docs]" $(QUIET)
	@touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	@$(PY) -m sysid.demo --out demo_output

# The documentation site (Sphinx + sphinx-gallery + numpydoc); -W: any warning fails the build,
# and sphinx-gallery stops at the first example that raises.
docs: $(VENV)/.docs-installed
	rm -rf docs/_build docs/auto_examples docs/api/generated
	MPLBACKEND=Agg TQDM_DISABLE=1 $(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "documentation: docs/_build/html/index.html"

test: $(VENV)/.installed
	TQDM_DISABLE=1 MPLBACKEND=Agg $(PY) -m pytest -n 2 -q -p no:cacheprovider --durations=15

case-studies: $(VENV)/.installed
	$(PY) case_studies/run_all.py --out results/case_studies

bench: $(VENV)/.installed
	@$(PIP) -e ".[bench]" $(QUIET)
	$(PY) benchmarks/bench_fit_speed.py
	$(PY) benchmarks/bench_vs_sindy.py

clean:
	rm -rf $(VENV) demo_output results .pytest_cache docs/_build docs/auto_examples docs/api/generated
