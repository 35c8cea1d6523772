# Two entry points: `make demo` and `make test`. Both bootstrap .venv themselves: the
# demo installs the package alone (what a user installs), the tests add the test extra.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python demo/demo.py

lint: $(STAMP)
	$(BIN)/ruff check glarelite mirror tests bench demo
	$(BIN)/ruff format --check glarelite mirror tests bench demo

typecheck: $(STAMP)
	$(BIN)/mypy glarelite mirror

pytest: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/catalog.py
	$(BIN)/python bench/blobs.py
	$(BIN)/python bench/register.py
	$(BIN)/python bench/mirror.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
