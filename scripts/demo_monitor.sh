#!/usr/bin/env bash
# The online endpoint's data collection and monitoring, after `make demo` (behind `make demo-monitor`):
# serve the latest version with --collect-data, send a day of ordinary traffic and a day with
# drift, stop the endpoint (SIGTERM writes what is queued), run monitor.py over that traffic,
# then the report with its Online traffic section. Collected files go under collected/.
source "$(dirname "$0")/demo_lib.sh"  # set -euo pipefail, cd to the repo, PY, stage, free_port, start_api

if ! $PY registry.py list >/dev/null 2>&1; then
  echo "error: no model registered: run make demo (or python train.py) first" >&2
  exit 1
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

stage "1. Callers' records: a day as in training, a day with drift" "the applications calling the endpoint"
RAW_DIR="$WORK/raw" $PY generate_raw_data.py --date 2026-11-30 --rows 200 >/dev/null
RAW_DIR="$WORK/raw" $PY generate_raw_data.py --date 2026-12-01 --rows 200 --drift 1.5 >/dev/null
for day in 20261130 20261201; do  # as {"records": [...]}, without the account_id the scorer does not take
  $PY -c 'import json, sys, pandas as pd; f = pd.read_csv(sys.argv[1]).drop(columns="account_id"); json.dump({"records": f.to_dict("records")}, open(sys.argv[2], "w"))' \
    "$WORK/raw/new_data_$day.csv" "$WORK/records_$day.json"
done
echo "200 records each: $WORK/records_20261130.json, $WORK/records_20261201.json (5 features shifted by 1.5 sd)"

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)  # the monitor looks at this run's traffic only
stage "2. Serve with data collection on and send both days" "a managed online deployment with its data_collector"
(
  API_PORT=$(free_port)  # a free port, whatever API_PORT the environment holds
  start_api logs/score_api.log --collect-data
  for day in 20261130 20261201; do
    echo "\$ python client.py --url $API_URL --file records_$day.json --repeat 5"
    $PY client.py --url "$API_URL" --file "$WORK/records_$day.json" --repeat 5
  done
  kill -TERM "$API_PID"; wait "$API_PID" 2>/dev/null || true  # SIGTERM: the queue is written first
  echo "endpoint stopped (pid $API_PID); collected:"
  find collected/modelDataCollector/local-endpoint/default -name '*.jsonl' -newer "$WORK/records_20261130.json" | sort | sed 's/^/  /'
)

stage "3. Monitor this run's collected traffic" "an Azure ML monitor schedule: data drift, prediction drift, data quality"
echo "\$ python monitor.py --start $START --fail-on-alert   (the table's summary lines)"
set +e
$PY monitor.py --start "$START" --fail-on-alert >"$WORK/monitor.txt"
status=$?
set -e
tail -n 4 "$WORK/monitor.txt"
echo "exit code $status (1: a signal alerts; a scheduler would notify, as Azure's alert_notification does)"

stage "4. The report, with its Online traffic section" "a Power BI report beside the studio's monitoring page"
if ls curated/predictions_*.csv >/dev/null 2>&1; then
  $PY analyze_predictions.py | tail -n 2
else
  echo "no curated predictions yet (make demo writes them): the report needs them"
fi

printf '\n\033[1mdemo-monitor finished in %ss\033[0m\n' "$SECONDS"
