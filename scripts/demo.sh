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
$PY score.py --sample 3 --format table

stage "5. Serve the latest version online and call it" "managed online endpoint"
# In a subshell with its own trap, so the API is stopped by its PID even when a step fails.
(
  API_PORT=${API_PORT:-$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  API_URL="http://127.0.0.1:$API_PORT"
  mkdir -p logs
  $PY app_score_api.py --host 127.0.0.1 --port "$API_PORT" >>logs/score_api.log 2>&1 &
  API_PID=$!
  trap 'status=$?; kill "$API_PID" 2>/dev/null; wait "$API_PID" 2>/dev/null || true; echo "API stopped (pid $API_PID)"; exit $status' EXIT
  for _ in $(seq 300); do
    kill -0 "$API_PID" 2>/dev/null || { echo "the API exited: see logs/score_api.log" >&2; exit 1; }
    curl -sf "$API_URL/ready" >/dev/null && break
    sleep 0.1
  done
  echo "API pid $API_PID on $API_URL: $(curl -sf "$API_URL/ready")"
  echo "\$ python client.py --url $API_URL --n 3"
  $PY client.py --url "$API_URL" --n 3
  PAYLOAD=$(mktemp)
  $PY -c 'import json, score; print(json.dumps({"records": score.sample_records(1)}))' >"$PAYLOAD"
  AUTH=()
  [[ -n "${SCORING_API_KEY:-}" ]] && AUTH=(-H "Authorization: Bearer $SCORING_API_KEY")
  echo "\$ curl -s $API_URL/predict -H 'Content-Type: application/json' -d @one_record.json"
  curl -s "$API_URL/predict" -H 'Content-Type: application/json' "${AUTH[@]}" -d @"$PAYLOAD"
  echo
  rm -f "$PAYLOAD"
)

stage "6. Three nightly raw files, the third with drift" "data landing in the Blob raw container"
$PY generate_raw_data.py --start 2026-11-24 --end 2026-11-25
$PY generate_raw_data.py --date 2026-11-26 --drift 1.0

stage "7. The nightly batch pipeline for those three days" "Data Factory pipeline + Azure ML batch job"
$PY pipeline_run_batch.py --start 2026-11-24 --end 2026-11-26
echo "curated/predictions_20261126.csv (first columns ... the three the scorer adds):"
head -n 4 curated/predictions_20261126.csv | awk -F, '{print "  " $1 "," $2 "," $3 ",...," $(NF-2) "," $(NF-1) "," $NF}'

stage "8. The run log" "Log Analytics / Azure Monitor"
$PY pipeline_run_batch.py --show-log 3

stage "9. Analysis: risk buckets, trends, drift and the report" "model monitoring + a Power BI report"
$PY analyze_predictions.py --start 2026-11-24 --end 2026-11-26
echo "open the HTML report in a browser (one file, works offline), or: make report-screenshot"
