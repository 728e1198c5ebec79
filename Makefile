# The project's entry points on a fresh machine (README): `make benchmark` runs the benchmark on its demo data,
# `make test` the whole test suite (what .ci/run calls), `make test-fast` the unit tests (a few minutes).
# The environment `make setup` makes; tests run make with their own (VENV=its prefix).
VENV ?= .venv
STAMP := $(VENV)/.installed
# mmcv without compiled ops, and without its opencv-python requirement (datumaro brings opencv-python-headless):
# pipelines/engines/mmdet/ops.py provides the two ops Mask R-CNN needs.
MMCV := mmcv-lite==2.1.0
# Vega's scripts for `dvc plots show`'s page (.dvc/plots/page.html), so that it draws without a network.
VEGA := vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
# The reference implementation the error analysis is tested against: it requires opencv-python, which would sit
# beside datumaro's opencv-python-headless (which it uses as cv2), so it installs without its requirements.
TIDECV := tidecv==1.0.1
# dvc.yaml's commands call `python`: make it the project's interpreter.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: benchmark test test-fast setup fetch track compare race-grid race-replay small-objects

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --progress-bar off -e '.[test]'
	$(VENV)/bin/python -m pip install --progress-bar off --no-deps $(MMCV) $(TIDECV)
	mkdir -p $(VENV)/vega && cd $(VENV)/vega && for package in $(VEGA); do \
		npm pack --silent $$package > /dev/null && tar xzf $${package%@*}-*.tgz --strip-components=2 package/build/$${package%@*}.min.js && rm $${package%@*}-*.tgz; \
	done || echo "npm could not fetch Vega: dvc plots show's page will load it from its CDN"
	touch $(STAMP)

# The stages' processes start as forks of one that has imported torch and the engines' libraries
# (pipelines/preload.py): about 5 s less per stage, the same bytes. `dvc repro` alone computes the same.
PRELOAD := python -m pipelines.preload
benchmark: $(STAMP)
	$(PRELOAD) dvc repro
	@echo "Report: reports/benchmark.md"

# The scale-out test runs a real Slurm job array and an SSH remote: their daemons are installed where missing.
test: $(STAMP)
	cluster/install-test-tools
	python -m pytest -ra --durations=15

test-fast: $(STAMP)
	python -m pytest -ra -m "not slow" --durations=10

# The real Pets and WGISD and the seed templates' COCO snapshots into data/raw, under DVC (Cityscapes needs an
# account: see README).
fetch: $(STAMP)
	python -m pipelines.datasets.fetch --out data/raw

# Every folder of data/raw (your own datasets too) under DVC, so that queued experiments and other machines get it.
track: $(STAMP)
	python -m pipelines.datasets.track

# Experiments against their baselines (after `make benchmark` and `dvc exp run`s): per template, per dataset and
# on average, the difference in test segm mAP with its paired 95% interval, and the params that differ.
compare: $(STAMP)
	python -m pipelines.experiments

# The recorded grid the racing policy is replayed over (benchmarks/racing.py, docs/racing.md): 4 templates (the
# smallest and largest EfficientNet-Lite sizes, the same Lite0 on MMDetection, and tiny, a ResNet-18 from random
# weights) x 5 datasets x 3 seeds, 12 epochs, validation splits of 35% of the training images; trained and scored
# on test (no export), with the race off (every cell trains its whole schedule, so the replay has every epoch), as
# a temporary experiment named race-grid whose outputs stay in DVC's cache (2 h 12 min on 2 cores). The warm-up
# is 8 steps, as short against the 12 epochs as real recipes' are against theirs (about 4%): the default 40 steps
# span 2 to 4 of the demo's epochs, whose validation mAP is then 0 for every template. `make race-replay` then
# brings it into the workspace and replays the race over it.
RACE_TEMPLATES := tv_lite0 tv_lite2 tiny mmdet_lite0
RACE_DATASETS := cityscapes pets pets_half wgisd_1 wgisd_5
RACE_GRID := -S race.enabled=false -S 'run.templates.torchvision=[tv_lite0,tv_lite2,tiny]' -S 'run.templates.mmdet=[mmdet_lite0]' \
	-S 'run.datasets=[cityscapes,pets,pets_half,wgisd_1,wgisd_5]' -S 'run.seeds=[0,1,2]' \
	$(foreach t,$(RACE_TEMPLATES),-S templates.$(t).epochs=12 -S templates.$(t).warmup_iters=8) \
	$(foreach d,$(RACE_DATASETS),-S datasets.$(d).val_ratio=0.35)
race-grid: $(STAMP)
	$(PRELOAD) dvc exp run --temp -n race-grid $(RACE_GRID) evaluate_torchvision evaluate_mmdet

race-replay: $(STAMP)
	dvc exp apply race-grid
	python -m benchmarks.racing --metrics metrics

# The small-object demo (docs/training.md, "Tiling"): tv_lite0 with and without `tiling: auto`, and tv_lite0_long
# (untiled, as many training steps as the tiled one: is it the tiles or the steps?) on 768 x 384 frames of 16-40 px
# objects in Cityscapes' layout (data/demo/cityscapes_small, written by demo_data), 2 seeds, as an experiment in the
# workspace named small-objects (about 25 minutes on 2 cores); then read reports/benchmark.md ("Segm AP by object
# size").
# `git checkout params.yaml && dvc checkout` returns the workspace to the default run.
SMALL_OBJECTS := -S '++datasets.small_objects={format: cityscapes_instances, path: cityscapes_small, subsets: {train: train, val: test}, val_ratio: 0.25, seed: 0}' \
	-S 'run.datasets=[small_objects]' -S 'run.templates.torchvision=[tv_lite0,tv_lite0_tiled,tv_lite0_long]' -S 'run.templates.mmdet=[]'
small-objects: $(STAMP)
	-dvc exp remove small-objects 2> /dev/null  # a second run replaces the first one's experiment
	$(PRELOAD) dvc exp run -n small-objects $(SMALL_OBJECTS)
	@echo "Report: reports/benchmark.md"
