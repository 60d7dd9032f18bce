# Two entry points for a fresh machine (Python 3.11+, Java 17+, Maven):
#   make demo   - set everything up and show the bus working
#   make test   - set everything up and run the whole test suite against the real components
# and, while working on the code:
#   make lint   - ruff, mypy (strict) and import-linter (the layers of ARCHITECTURE.md)
#   make unit   - the unit tests alone, without the stack
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test unit lint install up down bench clean promtool browser

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
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest --collect-only -qq -p no:cacheprovider

demo: install
	$(BIN)/circulation demo

# promtool checks the alert rules; it comes from Debian's prometheus package, unpacked (not
# installed) into the venv. Where apt cannot fetch it, those three tests fail saying so in one
# line (`pytest -m 'not promtool'` leaves them out on purpose).
PROMTOOL := $(VENV)/prometheus/usr/bin/promtool
$(PROMTOOL):
	-mkdir -p $(VENV)/prometheus && cd $(VENV)/prometheus && \
	  { apt-get download prometheus 2>/dev/null || \
	    { apt-get update -qq && apt-get download prometheus; }; } && \
	  dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb

promtool: $(PROMTOOL)

# The journal page's browser test drives Debian's chromium through Playwright (never
# `playwright install`, whose browser download is not used): installed when absent.
browser:
	test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium; }

test: lint up promtool browser
	PROMTOOL=$(abspath $(PROMTOOL)) $(BIN)/pytest

unit: install promtool
	PROMTOOL=$(abspath $(PROMTOOL)) $(BIN)/pytest tests/unit

bench: up
	$(BIN)/python tests/benchmarks/catalog_codec.py
	$(BIN)/python tests/benchmarks/publish_throughput.py
	$(BIN)/python tests/benchmarks/journal.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
