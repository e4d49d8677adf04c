# Sourced by the scripts/demo*.sh walkthroughs, never run: their shared preamble, the stage
# headings, a free port, and the scoring API started in the background, awaited and stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
export PYTHONWARNINGS=ignore

SECONDS=0
# A stage heading: the step, the Azure service it stands for, the seconds since the start.
stage() { printf '\n\033[1m== %s\033[0m  (Azure: %s)  [%ss]\n' "$1" "$2" "$SECONDS"; }

# A free loopback port.
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_api LOG [ARG...]: app_score_api.py on 127.0.0.1:$API_PORT (a free port when API_PORT is
# unset), its output appended to LOG, the ARGs passed on. Returns once /ready answers, with
# API_PORT, API_URL, API_PID and API_READY (the /ready answer) set; exits with an error naming LOG
# if the API exits first or is not ready within 60 s. Call it inside a subshell `( ... )`: the EXIT
# trap it installs there stops the API by its PID when the subshell ends, also when a step fails,
# and prints "API stopped (pid N)" when it stopped a running API.
start_api() {
  local log=$1
  shift
  API_PORT=${API_PORT:-$(free_port)}
  API_URL="http://127.0.0.1:$API_PORT"
  mkdir -p "$(dirname "$log")"
  $PY app_score_api.py --host 127.0.0.1 --port "$API_PORT" "$@" >>"$log" 2>&1 &
  API_PID=$!
  trap 'status=$?; if kill "$API_PID" 2>/dev/null; then wait "$API_PID" 2>/dev/null || true; echo "API stopped (pid $API_PID)"; fi; exit $status' EXIT
  API_READY=$($PY scripts/wait_ready.py "$API_URL" "$API_PID" "$log")
}
