#!/usr/bin/env bash
# The experiments behind the README's "Results" section: seeds, and what changes claim 3
# (the fall of the gradient statistics over epochs). Each runs in a temp copy of the repo
# (`dvc exp run --temp`); prepare and embed are restored from DVC's cache, MLflow runs land in
# ./mlflow.db tagged with dvc.exp. About 1 minute per experiment on 2 cores.
#   bash scripts/experiments.sh && .venv/bin/python scripts/experiments_table.py
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1  # stage commands call the venv's python
dvc=dvc
run() {  # run NAME PARAM=VALUE...
  local name=$1; shift
  $dvc exp remove "$name" >/dev/null 2>&1 || true
  local sets=(); for s in "$@"; do sets+=(-S "$s"); done
  echo "== $name: $*"
  $dvc exp run --temp -n "$name" "${sets[@]}" -q
}
run seed-1 train.seed=1
run seed-2 train.seed=2
run loss-ce train.loss=ce
run loss-mse train.loss=mse
run cosine-lr train.lr_schedule=cosine
run sgd train.optimizer=sgd train.lr=1.0 train.momentum=0.9
run epochs-100 train.epochs=100 'render.epochs=[0,30,60,90]'
run init-identity train.init=identity
