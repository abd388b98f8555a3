#!/usr/bin/env bash
# Start a Prefect server (SQLite), a Dask scheduler and N Dask workers, all on 127.0.0.1.
#
#   deploy/start-local.sh [RUN_DIR] [N_WORKERS]      (defaults: .tfus-local, 2)
#
# Writes into RUN_DIR: prefect_api_url, dask_address, *.pid, *.log and env.sh (source it to point
# `tfus generate --dask-address` and Prefect clients at these services). Stop with deploy/stop-local.sh RUN_DIR.
# With PREFECT_API_URL already set, no Prefect server is started and the workers use that API.
# Environment: TFUS_HOST (default 127.0.0.1), TFUS_PREFECT_PORT / TFUS_DASK_PORT (default: free ports),
# TFUS_WORKER_MEMORY (default auto), PYTHON_BIN_DIR (default: the directory of `python` on PATH, or .venv/bin).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run_dir="$(mkdir -p "${1:-.tfus-local}" && cd "${1:-.tfus-local}" && pwd)"
n_workers="${2:-2}"
host="${TFUS_HOST:-127.0.0.1}"
bin="${PYTHON_BIN_DIR:-}"
if [ -z "$bin" ]; then
  if [ -x "$here/../.venv/bin/dask" ]; then bin="$here/../.venv/bin"; else bin="$(dirname "$(command -v python)")"; fi
fi
free_port() { "$bin/python" -c 'import socket; s=socket.socket(); s.bind(("'"$host"'", 0)); print(s.getsockname()[1])'; }

export DASK_CONFIG="$here/dask-tfus.yaml"
export DASK_LOGGING__DISTRIBUTED=info  # the service logs are the record of what happened
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false
export PREFECT_UI_ENABLED=false

wait_for() {  # wait_for SECONDS CMD...: poll until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}
start() {  # start NAME CMD...: a daemon in its own session, pid and log in the run dir
  local name="$1"; shift
  setsid "$@" >"$run_dir/$name.log" 2>&1 < /dev/null &
  echo $! > "$run_dir/$name.pid"
}

if [ -z "${PREFECT_API_URL:-}" ]; then
  port="${TFUS_PREFECT_PORT:-$(free_port)}"
  export PREFECT_HOME="$run_dir/prefect-home"
  mkdir -p "$PREFECT_HOME"
  start prefect env -u PREFECT_API_URL "$bin/prefect" server start --host "$host" --port "$port" --no-ui \
    --analytics-off --log-level WARNING
  export PREFECT_API_URL="http://$host:$port/api"
  wait_for 120 "$bin/python" -c "import httpx,sys; sys.exit(httpx.get('$PREFECT_API_URL/health').status_code != 200)" \
    || { echo "error: prefect server not healthy; see $run_dir/prefect.log" >&2; exit 1; }
fi
echo "$PREFECT_API_URL" > "$run_dir/prefect_api_url"

dask_port="${TFUS_DASK_PORT:-$(free_port)}"
address="tcp://$host:$dask_port"
start scheduler "$bin/dask" scheduler --host "$host" --port "$dask_port" --dashboard-address "$host:0"
port_open() { "$bin/python" -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$@"; }
wait_for 180 port_open "$host" "$dask_port" \
  || { echo "error: dask scheduler did not start; see $run_dir/scheduler.log" >&2; exit 1; }
echo "$address" > "$run_dir/dask_address"

mkdir -p "$run_dir/dask-scratch"
for i in $(seq 1 "$n_workers"); do
  start "worker-$i" "$bin/dask" worker "$address" --host "$host" --dashboard-address "$host:0" \
    --nworkers 1 --nthreads 1 --memory-limit "${TFUS_WORKER_MEMORY:-auto}" --name "worker-$i" \
    --local-directory "$run_dir/dask-scratch"
done
"$bin/python" - "$address" "$n_workers" <<'PY' || { echo "error: dask workers did not connect; see $run_dir/worker-*.log" >&2; exit 1; }
import sys
from distributed import Client
with Client(sys.argv[1], timeout="60s") as c:
    c.wait_for_workers(int(sys.argv[2]), timeout=120)
PY

cat > "$run_dir/env.sh" <<ENV
export PREFECT_API_URL=$PREFECT_API_URL
export TFUS_DASK_ADDRESS=$address
export DASK_CONFIG=$DASK_CONFIG
ENV
echo "prefect: $PREFECT_API_URL"
echo "dask:    $address ($n_workers workers)"
echo "run dir: $run_dir (source $run_dir/env.sh; stop with deploy/stop-local.sh $run_dir)"
