# Two entry points for a fresh machine (Python 3.11+, Java 17+, Maven):
#   make demo   - set everything up and show the bus working
#   make test   - set everything up and run the whole test suite against the real components
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint install up down bench clean

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint requirements.lock --editable '.[test]'
	touch $@

install: $(INSTALLED)

up: install
	$(BIN)/circulation local up

down: install
	$(BIN)/circulation local down

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

demo: install
	$(BIN)/circulation demo

test: lint up
	$(BIN)/pytest

bench: up
	$(BIN)/python benchmarks/catalog_codec.py
	$(BIN)/python benchmarks/publish_throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
