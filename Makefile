# Two commands on a fresh machine:  make demo  ·  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## run the bundled demo upstreams and the edge on http://127.0.0.1:8080
	$(BIN)/edge demo

test: $(STAMP)  ## lint, type-check and run the test suite (needs Redis at $$REDIS_URL)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/edge check --strict --no-env config
	$(BIN)/edge check --strict config/examples/shared-cache
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/proxy.py

schema: $(STAMP)  ## regenerate config/schema/*.json from the typed config
	$(BIN)/edge schema

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
