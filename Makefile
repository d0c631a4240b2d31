# Two commands on a fresh machine with Python 3.11+:  make run  /  make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"Ironstar needs Python 3.11 or newer, but $(PYTHON) is Python {v[0]}.{v[1]}.{v[2]} ({sys.executable}); give a newer one, e.g. make run PYTHON=python3.12")'
	@echo "make: creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "make: installing ironstar and its runtime dependencies into $(VENV)"
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@echo "make: installing ironstar with the test extra into $(VENV)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed-run

# IRONSTAR_* variables reach `ironstar up` (e.g. IRONSTAR_GATEWAY_PORT=8001 make run);
# ARGS are its options (e.g. make run ARGS='--http-port 8001 --data-dir .ironstar-2').
run: $(VENV)/.installed-run
	@echo "make: starting ironstar (Ctrl-C stops everything)"
	IRONSTAR_RUN_BY=make $(BIN)/ironstar up $(ARGS)

lint: $(VENV)/.installed-test
	@echo "make: ruff and mypy"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	@echo "make: pytest"
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
