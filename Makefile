# Two commands set up a fresh machine and run (README): `make demo` and `make test`.
# Both create .venv on first use: Python >= 3.11 checked, uv installed into .venv from PyPI (no
# script download), then the universal lock installed with every hash checked, then qmd-ft.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv

.PHONY: setup demo test lint lock gguf-runtime

$(VENV)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"error: qmd-ft needs Python 3.11 or newer; $(PYTHON) is {v.major}.{v.minor} (run: make PYTHON=python3.12 ...)")'
	$(PYTHON) -m venv $(VENV)
	@# uv itself comes from the lock too, hash-checked by pip.
	awk '/^uv==/{p=1} p{print} p && !/\\$$/{exit}' requirements.lock > $(VENV)/uv-requirement.txt
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(VENV)/uv-requirement.txt
	$(UV) pip sync -q --python $(PY) --require-hashes requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/qmd-ft demo

test: setup
	$(PY) -m pytest -q

# Optional: llama.cpp for GGUF verification, K-quants and gguf eval. llama-cpp-python has no
# wheel on PyPI, so this compiles llama.cpp (~10 min, needs a C++ compiler); on x86-64 Linux
# without AMX, which crashed a native build on Q8_0 tensors (qmd_ft.gguf.runtime.SAFE_CMAKE_ARGS).
gguf-runtime: setup
	CMAKE_ARGS="$${CMAKE_ARGS:-$$($(PY) -c 'import platform; from qmd_ft.gguf.runtime import SAFE_CMAKE_ARGS as a; print(a if platform.machine() == "x86_64" else "")')}" \
	  $(UV) pip install --python $(PY) -e '.[gguf-runtime]'

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Re-pin after changing dependencies in pyproject.toml: one universal, hashed lock for the
# platforms in [tool.uv] environments, with no index URL in it.
lock: setup
	$(UV) pip compile pyproject.toml --extra all --universal --generate-hashes \
	  --python-version 3.11 -o requirements.lock
