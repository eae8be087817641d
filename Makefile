# The two commands of the README, and the rest of the developer loop.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup bench lint
demo: setup            ## publish, discover, search, fetch, land and train on three local clusters
	$(PY) -m p2pdata.demo $(DEMO_ARGS)

test: setup            ## the whole test suite, with a real HDFS, libtorrent, zeroconf, TensorFlow, Chromium
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

bench: setup           ## every benchmark under bench/, table written to bench/results/
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check .
