# Two set-up commands: `make run` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/emnist47
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run stop test train evaluate bench bench-model bench-scans bench-fields bench-marks bench-context bench-spaces bench-case chaos profile system-deps runtime-deps compose-config clean venv

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: sudo apt-get install -y python3.11 python3.11-venv"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Java 17 (TorchServe's frontend), redis-server, and Chromium for the browser test.
system-deps:
	@scripts/system-deps.sh

# What the running stack needs: no browser.
runtime-deps:
	@HWR_SKIP_BROWSER=1 scripts/system-deps.sh

run: $(STAMP) runtime-deps
	@scripts/run.sh

stop:
	@scripts/stop.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -ra

train: $(STAMP)
	$(BIN)/python -m training.train --data $(DATA) --out runs/default
	$(BIN)/python -m training.package --run runs/default
	$(BIN)/python -m training.evaluate --archive serve/model-store/emnist.mar --data $(DATA)

evaluate: $(STAMP)
	$(BIN)/python -m training.evaluate --archive serve/model-store/emnist.mar --data $(DATA) --json

bench-model: $(STAMP)
	$(BIN)/python -m bench.model_throughput

bench-scans: $(STAMP)
	$(BIN)/python -m training.scans --data $(DATA) --n 2000

bench-fields: $(STAMP)
	$(BIN)/python -m bench.fields --data $(DATA)

bench-marks: $(STAMP)
	$(BIN)/python -m bench.marks --data $(DATA)

bench-context: $(STAMP)
	$(BIN)/python -m bench.context --data $(DATA)

bench-spaces: $(STAMP)
	$(BIN)/python -m bench.spaces --data $(DATA) --split test
	$(BIN)/python -m bench.spaces --data $(DATA) --split test --letter-gaps 0.03 0.12

bench-case: $(STAMP)
	$(BIN)/python -m bench.case --data $(DATA) --split test
	$(BIN)/python -m bench.case --data $(DATA) --split test --capitals
	$(BIN)/python -m bench.case --data $(DATA) --split test --touching

bench: $(STAMP) runtime-deps bench-model bench-scans bench-fields bench-marks bench-context bench-spaces bench-case
	$(BIN)/python -m bench.e2e

# Where the web and worker tiers' CPU goes under load (py-spy; bench/results/<date>-profile-*.json).
profile: $(STAMP) runtime-deps
	$(BIN)/python -m bench.profile --scenario queue_char
	$(BIN)/python -m bench.profile --scenario queue_text64

chaos: $(STAMP) runtime-deps
	$(BIN)/python -m bench.chaos

compose-config:
	@scripts/compose-config.sh

clean:
	rm -rf var runs/cache .pytest_cache
