# One command sets up and runs the demo; one sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: all setup test demo lint clean bench

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, from the local CPU wheel; the constraint keeps every later install on it.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/pytest -q --durations=15 tests

demo: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/demo.sh

# The rules as the workflow catalog checks them: snakefmt and Snakemake's linter.
lint: $(STAMP)
	$(VENV)/bin/snakefmt --check workflow/
	PATH=$(abspath $(VENV))/bin:$$PATH snakemake --lint --snakefile workflow/Snakefile

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
