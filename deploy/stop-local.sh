#!/usr/bin/env bash
# Stop what deploy/start-local.sh started in RUN_DIR (default .tfus-local): workers, scheduler, server.
set -uo pipefail
run_dir="${1:-.tfus-local}"
[ -d "$run_dir" ] || { echo "error: no run directory $run_dir" >&2; exit 1; }
stop() {  # TERM the process group started for NAME, KILL it if it lingers
  local pidfile="$run_dir/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
for pidfile in "$run_dir"/worker-*.pid; do [ -e "$pidfile" ] && stop "$(basename "$pidfile" .pid)"; done
stop scheduler
stop prefect
rm -f "$run_dir/dask_address" "$run_dir/prefect_api_url"
echo "stopped services in $run_dir"
