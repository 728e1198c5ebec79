# Two entry points for a fresh machine: `make benchmark` and `make test` (see README).
VENV := .venv
STAMP := $(VENV)/.installed
# mmcv without compiled ops, and without its opencv-python requirement (datumaro brings opencv-python-headless):
# pipelines/engines/mmdet/ops.py provides the two ops Mask R-CNN needs.
MMCV := mmcv-lite==2.1.0
# dvc.yaml's commands call `python`: make it the project's interpreter.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: benchmark test setup fetch compare

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --progress-bar off -e '.[test]'
	$(VENV)/bin/python -m pip install --progress-bar off --no-deps $(MMCV)
	touch $(STAMP)

benchmark: $(STAMP)
	dvc repro
	@echo "Report: reports/benchmark.md"

test: $(STAMP)
	python -m pytest -ra --durations=15

# The real Pets and WGISD into data/raw (Cityscapes needs an account: see README).
fetch: $(STAMP)
	python -m pipelines.datasets.fetch --out data/raw

# Experiments side by side (after `make benchmark`): per template average and per-dataset test segm mAP,
# and the params that differ; a column equal in every row is left out.
compare:
	dvc exp show --md --only-changed --drop 'Created|State|Executor|^(data|models|pipelines|stages)/.*|^metrics$$'
