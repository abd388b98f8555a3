#!/usr/bin/env bash
# Serve tfus through the flow API on this machine: a Prefect server (SQLite, 127.0.0.1) and `tfus serve`.
#
#   deploy/serve-local.sh --model runs/NAME [--output-root DIR] [--poll-s S] [--limit N]
#
# Arguments go to `tfus serve`. Stops both on Ctrl-C or SIGTERM. Clients then use
#   export PREFECT_API_URL=http://127.0.0.1:4200/api        (see docs/SERVING.md)
# Environment: TFUS_SERVE_DIR (server home + logs, default .tfus-serve), TFUS_HOST (default 127.0.0.1; anything
# else exposes the API: set PREFECT_SERVER_API_AUTH_STRING first), TFUS_PREFECT_PORT (default 4200),
# PYTHON_BIN_DIR (default .venv/bin next to this script, else the directory of `python` on PATH).
# With PREFECT_API_URL already set, no server is started and `tfus serve` uses that API.
#
# Both children are started from this script and stopped explicitly by the trap: a background job of a
# non-interactive shell ignores SIGINT, so Ctrl-C must not be relied on to reach it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run_dir="$(mkdir -p "${TFUS_SERVE_DIR:-.tfus-serve}" && cd "${TFUS_SERVE_DIR:-.tfus-serve}" && pwd)"
host="${TFUS_HOST:-127.0.0.1}"
port="${TFUS_PREFECT_PORT:-4200}"
bin="${PYTHON_BIN_DIR:-}"
if [ -z "$bin" ]; then
  if [ -x "$here/../.venv/bin/tfus" ]; then bin="$here/../.venv/bin"; else bin="$(dirname "$(command -v python)")"; fi
fi
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false
export PREFECT_UI_ENABLED="${PREFECT_UI_ENABLED:-false}"

server_pid="" serve_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if [ -n "$server_pid" ]; then   # the server runs in its own session: stop its whole process group
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${PREFECT_API_URL:-}" ]; then
  export PREFECT_HOME="$run_dir/prefect-home"
  mkdir -p "$PREFECT_HOME"
  setsid env -u PREFECT_API_URL PREFECT_SERVER_API_HOST="$host" "$bin/prefect" server start --host "$host" \
    --port "$port" --no-ui --analytics-off --log-level WARNING >"$run_dir/prefect.log" 2>&1 </dev/null &
  server_pid=$!
  export PREFECT_API_URL="http://$host:$port/api"
  deadline=$((SECONDS + 120))
  until "$bin/python" -c "import httpx,sys; sys.exit(httpx.get('$PREFECT_API_URL/health').status_code != 200)" \
      >/dev/null 2>&1; do
    if ! kill -0 "$server_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "error: prefect server did not start on $host:$port; see $run_dir/prefect.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "prefect server: $PREFECT_API_URL (home $PREFECT_HOME, log $run_dir/prefect.log)"
fi

"$bin/tfus" serve "$@" &
serve_pid=$!
echo "tfus serve: pid $serve_pid; Ctrl-C stops both"
wait "$serve_pid"
