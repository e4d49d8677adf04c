#!/usr/bin/env bash
# The walkthrough behind `make demo`: every stage in order, on local storage.
source "$(dirname "$0")/demo_lib.sh"  # set -euo pipefail, cd to the repo, PY, stage, free_port, start_api

stage "1. Export the training data" "an Azure ML data asset"
$PY export_data.py

stage "2. Train, track and register two versions" "an Azure ML command job, tracked with MLflow"
$PY train.py
$PY train.py --random-state 7

stage "3. The registry" "the Azure ML model registry"
$PY registry.py list

stage "4. Score sample records with the latest version" "the scoring script init()/run() of an endpoint"
$PY score.py --sample 3 --format table

stage "5. Serve the latest version online and call it" "an Azure ML managed online endpoint"
# In a subshell with its own trap, so the API is stopped by its PID even when a step fails.
(
  start_api logs/score_api.log
  echo "API pid $API_PID on $API_URL: $API_READY"
  echo "\$ python client.py --url $API_URL --n 3"
  $PY client.py --url "$API_URL" --n 3
  PAYLOAD=examples/one_record.json  # the data's first row, as {"records": [...]}
  AUTH=()
  [[ -n "${SCORING_API_KEY:-}" ]] && AUTH=(-H "Authorization: Bearer $SCORING_API_KEY")
  echo "\$ curl -s $API_URL/predict -H 'Content-Type: application/json' -d @examples/one_record.json"
  if command -v curl >/dev/null; then
    curl -s "$API_URL/predict" -H 'Content-Type: application/json' "${AUTH[@]}" -d @"$PAYLOAD"
  else  # the same request without curl
    $PY -c 'import sys, urllib.request; r = urllib.request.Request(sys.argv[1] + "/predict", open(sys.argv[2], "rb").read(), {"Content-Type": "application/json"}); print(urllib.request.urlopen(r).read().decode(), end="")' "$API_URL" "$PAYLOAD"
  fi
  echo
)

stage "6. Three nightly raw files, the third with drift" "files landing in the Blob / Data Lake raw zone"
$PY generate_raw_data.py --start 2026-11-24 --end 2026-11-25
$PY generate_raw_data.py --date 2026-11-26 --drift 1.0

stage "7. The nightly batch pipeline for those three days" "a Data Factory pipeline triggering an Azure ML batch endpoint"
$PY pipeline_run_batch.py --start 2026-11-24 --end 2026-11-26
echo "curated/predictions_20261126.csv (first columns ... the three the scorer adds):"
head -n 4 curated/predictions_20261126.csv | awk -F, '{print "  " $1 "," $2 "," $3 ",...," $(NF-2) "," $(NF-1) "," $NF}'

stage "8. The run log" "Azure Monitor / Log Analytics"
$PY pipeline_run_batch.py --show-log 3

stage "9. Analysis: risk buckets, trends, drift and the report" "Azure ML model monitoring + a Power BI report"
$PY analyze_predictions.py --start 2026-11-24 --end 2026-11-26
echo "open the HTML report in a browser (one file, works offline), or: make report-screenshot"

printf '\n\033[1mdemo finished in %ss\033[0m: every process it started is stopped; run it again any time.\n' "$SECONDS"
