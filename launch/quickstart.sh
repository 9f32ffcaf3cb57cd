#!/usr/bin/env bash
# The main job on a fresh machine: install, then MCL training + evaluation (Algorithm 1) on
# the embedded synthetic faces, no download. Usage: bash launch/quickstart.sh [WORKDIR]
source "$(dirname "$0")/_venv.sh"
workdir="${1:-runs/quickstart}"
python -m lmjax.main --config=configs/mcl68.py:runlocal,data=synthetic --workdir="$workdir"
python -m lmjax.evaluate --checkpoint="$workdir/models/am" --dataset=synthetic --split=test \
  --output="$workdir/eval/metrics.json" --predictions="$workdir/eval/preds.npz"
