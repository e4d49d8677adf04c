#!/usr/bin/env bash
# `make demo-blob`: the nightly batch and the analysis against Azure Blob Storage, emulated by
# Azurite (from npm), started on a free loopback port with in-memory storage and stopped again.
# The scripts are the same as in `make demo`; only --storage blob and the connection string change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONWARNINGS=ignore
SECONDS=0

stage() { printf '\n\033[1m== %s\033[0m  (Azure: %s)\n' "$1" "$2"; }

if ! $PY registry.py list >/dev/null 2>&1; then
  stage "0. No model registered yet: train one" "command job + model registry"
  $PY export_data.py
  $PY train.py
fi

stage "1. Start Azurite, the Azure Storage emulator" "a storage account"
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$PORT" --inMemoryPersistence \
  --silent --skipApiVersionCheck --disableTelemetry &
AZURITE_PID=$!
trap 'status=$?; kill "$AZURITE_PID" 2>/dev/null; wait "$AZURITE_PID" 2>/dev/null || true; echo "Azurite stopped (pid $AZURITE_PID)"; exit $status' EXIT
# The emulator's published development account; a real account changes only this string.
export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$PORT/devstoreaccount1;"
$PY - "$PORT" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("error: Azurite did not start within 30 s")
        time.sleep(0.05)
PY
echo "Azurite pid $AZURITE_PID on http://127.0.0.1:$PORT (containers raw and curated are created on first use)"

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

printf '\n\033[1mdemo-blob finished in %ss\033[0m\n' "$SECONDS"
