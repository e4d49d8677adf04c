#!/usr/bin/env bash
# The walkthrough behind `make demo-credit`: the whole flow on the German credit data
# (data/german_credit.csv: 13 categorical and 7 numeric features, target good/bad), in a
# registry, zones and logs of its own under demo_credit/, so it never mixes with `make demo`.
# The score is the probability of `bad`: "high risk" means a high probability of default.
source "$(dirname "$0")/demo_lib.sh"  # set -euo pipefail, cd to the repo, PY, stage, free_port, start_api
BASE=${DEMO_CREDIT_DIR:-demo_credit}
export LOCAL_REGISTRY_DIR=$BASE/local_registry RAW_DIR=$BASE/raw CURATED_DIR=$BASE/curated LOGS_DIR=$BASE/logs
export REPORTS_DIR=$BASE/reports ARTIFACTS_DIR=$BASE/artifacts MLFLOW_TRACKING_URI=sqlite:///$BASE/mlflow.db
mkdir -p "$BASE"
DATA=(--data data/german_credit.csv --target creditability)

stage "1. Train, track and register two versions on the credit data" "an Azure ML command job, tracked with MLflow"
$PY train.py "${DATA[@]}" --positive-class bad --experiment credit-risk --model-name credit-risk-classifier
$PY train.py "${DATA[@]}" --positive-class bad --experiment credit-risk --model-name credit-risk-classifier --random-state 7

stage "2. The registry (its own folder: $LOCAL_REGISTRY_DIR)" "the Azure ML model registry"
$PY registry.py list

stage "3. Score sample records with the latest version (probability of bad)" "the scoring script init()/run() of an endpoint"
$PY score.py --sample 3 --format table

stage "4. Serve the latest version online and call it" "an Azure ML managed online endpoint"
(
  start_api "$LOGS_DIR/score_api.log"
  echo "ready: $API_READY"
  $PY - "$API_URL" <<'PY'  # what /model, /openapi.json and a bad category say
import json, sys, urllib.error, urllib.request
url = sys.argv[1]
with urllib.request.urlopen(url + "/model", timeout=5) as answer:
    model = json.load(answer)
kinds = [f["type"] for f in model["feature_schema"]]
print(f"/model: {model['model_version']}, positive class {model['positive_class']!r}, "
      f"{kinds.count('category')} category and {kinds.count('number')} number features")
with urllib.request.urlopen(url + "/openapi.json", timeout=5) as answer:
    record = json.load(answer)["components"]["schemas"]["PredictRequest"]["properties"]["records"]["items"]
print("/openapi.json: purpose must be one of", ", ".join(record["properties"]["purpose"]["enum"][:4]), "...")
bad = json.dumps({"records": [{**json.load(open("examples/credit_records.json"))["records"][0], "purpose": "yacht"}]})
try:
    urllib.request.urlopen(urllib.request.Request(url + "/predict", bad.encode(), {"Content-Type": "application/json"}))
except urllib.error.HTTPError as error:
    print(f"an unknown category is a {error.code}:", json.load(error)["detail"][:110], "...")
PY
  echo "\$ python client.py --url $API_URL --file examples/credit_records.json"
  $PY client.py --url "$API_URL" --file examples/credit_records.json
)

stage "5. Three nightly raw files, the third with drift (purpose, housing, credit_amount)" "files landing in the Blob / Data Lake raw zone"
$PY generate_raw_data.py "${DATA[@]}" --start 2026-11-24 --end 2026-11-25
$PY generate_raw_data.py "${DATA[@]}" --date 2026-11-26 --drift 1.0 --drift-features purpose,housing,credit_amount

stage "6. The nightly batch pipeline for those three days" "a Data Factory pipeline triggering an Azure ML batch endpoint"
$PY pipeline_run_batch.py --start 2026-11-24 --end 2026-11-26

stage "7. The run log" "Azure Monitor / Log Analytics"
$PY pipeline_run_batch.py --show-log 3

stage "8. Analysis: risk buckets (high risk: a high probability of bad), drift and the report" "Azure ML model monitoring + a Power BI report"
$PY analyze_predictions.py --start 2026-11-24 --end 2026-11-26
echo "the drift table of the last run, category features first:"
awk -F, 'NR == 1 || $3 == "category"' "$LOGS_DIR/drift/drift_20261126.csv" | cut -d, -f2,3,4,6,7,15 | column -t -s,

printf '\n\033[1mdemo-credit finished in %ss\033[0m: everything it wrote is under %s/; every process it started is stopped.\n' "$SECONDS" "$BASE"
