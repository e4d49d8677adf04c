#!/usr/bin/env bash
# The walkthrough behind `make demo`: every stage in order, on local storage.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONWARNINGS=ignore

stage() { printf '\n\033[1m== %s\033[0m  (Azure ML: %s)\n' "$1" "$2"; }

stage "1. Export the training data" "data asset"
$PY export_data.py

stage "2. Train and register two versions" "command job + model registry"
$PY train.py
$PY train.py --random-state 7

stage "3. The registry" "az ml model list"
$PY registry.py list

stage "4. Score sample records with the latest version" "score.py init()/run()"
$PY score.py --sample 3
