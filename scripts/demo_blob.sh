#!/usr/bin/env bash
# `make demo-blob`: the nightly batch and the analysis against Azure Blob Storage, emulated by
# Azurite (from npm), started on a free loopback port with in-memory storage and stopped again.
# The scripts are the same as in `make demo`; only --storage blob and the connection string change.
source "$(dirname "$0")/demo_lib.sh"  # set -euo pipefail, cd to the repo, PY, stage, free_port, start_api
# Headings without the [Ns] of the other demos: the stages below run in a second process under Azurite.
stage() { printf '\n\033[1m== %s\033[0m  (Azure: %s)\n' "$1" "$2"; }

if [[ "${1:-}" != "--stages" ]]; then
  export DEMO_STARTED=$EPOCHSECONDS
  if ! $PY registry.py list >/dev/null 2>&1; then
    stage "0. No model registered yet: train one" "command job + model registry"
    $PY export_data.py
    $PY train.py
  fi

  stage "1. Start Azurite, the Azure Storage emulator" "a storage account"
  # The project's one Azurite launcher (scripts/azurite.py) starts it, waits until it answers,
  # runs the stages below with $AZURE_STORAGE_CONNECTION_STRING set (the emulator's published
  # development account; a real account changes only this string) and stops it by its PID.
  exec $PY -m scripts.azurite --in-memory -- bash scripts/demo_blob.sh --stages
fi

stage "2. Three nightly raw files in the raw container, the third with drift" "Blob Storage / Data Lake raw zone"
$PY generate_raw_data.py --storage blob --start 2026-11-24 --end 2026-11-25
$PY generate_raw_data.py --storage blob --date 2026-11-26 --drift 1.0

stage "3. The nightly batch pipeline, blob in and blob out" "Data Factory pipeline + Azure ML batch job"
$PY pipeline_run_batch.py --storage blob --start 2026-11-24 --end 2026-11-26

stage "4. What the curated container holds" "Blob Storage / Data Lake curated zone"
$PY - <<'PY'
import storage
backend = storage.get_storage("blob")
for name in backend.list_curated():
    print(f"  curated/{name}")
PY

stage "5. Analysis of the curated container" "model monitoring + Power BI"
$PY analyze_predictions.py --storage blob

printf '\n\033[1mdemo-blob finished in %ss\033[0m\n' "$((EPOCHSECONDS - ${DEMO_STARTED:-$EPOCHSECONDS}))"
