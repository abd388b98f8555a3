#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and for trying `tfus generate --cluster slurm` before a
# real site. Debian's slurm-wlm + munge (installed here with apt-get when missing and run as root);
# everything it writes lives under $TFUS_SLURM_DIR (default /tmp/tfus-slurm): config, state, spool, logs.
#
#   deploy/slurm/test-cluster.sh start     # munged, slurmctld, slurmd; waits until the node is idle
#   eval "$(deploy/slurm/test-cluster.sh env)"   # SLURM_CONF for sbatch / squeue / scancel / sinfo
#   deploy/slurm/test-cluster.sh status
#   deploy/slurm/test-cluster.sh stop
#
# The node is this host (loopback addresses), partition `debug`, all CPUs, 90 % of the memory;
# ProctrackType=proctrack/linuxproc and TaskPlugin=task/none: no cgroups needed (containers, CI).
set -euo pipefail
DIR=${TFUS_SLURM_DIR:-/tmp/tfus-slurm}
PORT=${TFUS_SLURM_PORT:-16817}
CONF=$DIR/slurm.conf
# munged runs as the munge user, which cannot enter private folders (pytest's, a home): its files live in
# /tmp, one daemon per host shared by every test cluster
MUNGE=${TFUS_MUNGE_DIR:-/tmp/tfus-munge}
HOST=$(hostname -s)

die() { echo "error: $*" >&2; exit 1; }

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || die "slurm-wlm and munge are not installed; install them (apt-get install slurm-wlm munge)"
  echo "installing slurm-wlm and munge"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  mkdir -p "$DIR"/{state,spool,logs} "$MUNGE"
  cat >"$CONF" <<EOF
# written by deploy/slurm/test-cluster.sh
ClusterName=tfus-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/logs/slurmctld.log
SlurmdLogFile=$DIR/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install
  write_conf
  if ! running "$MUNGE/munged.pid"; then
    chown munge:munge "$MUNGE"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE/munge.socket" --pid-file="$MUNGE/munged.pid" \
      --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed" --force
  fi
  export SLURM_CONF=$CONF
  running "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
  running "$DIR/slurmd.pid" || slurmd -f "$CONF"
  for _ in $(seq 1 60); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
    case "$state" in idle|mix|alloc) echo "slurm test cluster up: node $HOST $state ($CONF)"; return 0;; esac
    [ "$state" = "drain" ] || [ "$state" = "down" ] && scontrol update nodename="$HOST" state=resume || true
    sleep 1
  done
  die "the node did not come up; see $DIR/logs/slurmctld.log and $DIR/logs/slurmd.log"
}

stop() {
  export SLURM_CONF=$CONF
  [ -f "$CONF" ] && scancel --full --user="$(id -un)" 2>/dev/null || true
  for pid in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    if running "$pid"; then kill "$(cat "$pid")"; fi
  done
  for _ in $(seq 1 20); do
    running "$DIR/slurmd.pid" || running "$DIR/slurmctld.pid" || break
    sleep 0.5
  done  # munged stays: other test clusters of this host may use it
  echo "slurm test cluster stopped"
}

status() {
  export SLURM_CONF=$CONF
  for pid in "$MUNGE/munged.pid" "$DIR/slurmctld.pid" "$DIR/slurmd.pid"; do
    name=$(basename "$pid" .pid)
    if running "$pid"; then echo "$name: running (pid $(cat "$pid"))"; else echo "$name: stopped"; fi
  done
  running "$DIR/slurmctld.pid" && sinfo -N && squeue || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
