#!/usr/bin/env bash
# `make demo-spark`: three nightly files scored by the Spark engine, the run log and the analysis,
# in zones of their own (a temporary folder, or $SPARK_DEMO_DIR) so nothing mixes with make demo's.
source "$(dirname "$0")/demo_lib.sh"  # set -euo pipefail, cd to the repo, PY, stage

if ! $PY registry.py list >/dev/null 2>&1; then
  stage "0. No model registered yet: train one" "command job + model registry"
  $PY export_data.py
  $PY train.py
fi

if [ -n "${SPARK_DEMO_DIR:-}" ]; then
  DEMO=$SPARK_DEMO_DIR  # kept
else
  DEMO=$(mktemp -d -t spark-demo-XXXXXX)
  trap 'rm -rf "$DEMO"' EXIT  # removed at the end, also on failure or Ctrl-C
fi
export RAW_DIR="$DEMO/raw" CURATED_DIR="$DEMO/curated" LOGS_DIR="$DEMO/logs" REPORTS_DIR="$DEMO/reports"
echo "zones under $DEMO (raw, curated, logs, reports)"

stage "1. Three nightly raw files, the third with drift" "files landing in the Data Lake raw zone"
$PY generate_raw_data.py --start 2026-11-24 --end 2026-11-25
$PY generate_raw_data.py --date 2026-11-26 --drift 1.0

stage "2. The nightly pipeline on Spark (local[2])" "a Synapse / Databricks / serverless Spark job"
$PY pipeline_run_batch.py --start 2026-11-24 --end 2026-11-26 --engine spark --spark-master "${SPARK_MASTER:-local[2]}"

stage "3. The same day with the streaming engine: the same bytes" "one machine"
cp "$CURATED_DIR/predictions_20261126.csv" "$DEMO/spark_20261126.csv"
$PY batch_score.py --input "$RAW_DIR/new_data_20261126.csv" --output "$DEMO/stream_20261126.csv" >/dev/null
cmp "$DEMO/spark_20261126.csv" "$DEMO/stream_20261126.csv" && echo "spark and stream outputs are byte-identical"

stage "4. The run log" "Azure Monitor / Log Analytics"
$PY pipeline_run_batch.py --show-log 3

stage "5. Analysis: risk buckets, trends, drift and the report" "Azure ML model monitoring + a Power BI report"
$PY analyze_predictions.py --start 2026-11-24 --end 2026-11-26
if [ -n "${SPARK_DEMO_DIR:-}" ]; then
  echo "done in ${SECONDS}s; the demo's files are in $DEMO"
else
  echo "done in ${SECONDS}s; $DEMO is removed (SPARK_DEMO_DIR=/some/folder make demo-spark keeps the files)"
fi
