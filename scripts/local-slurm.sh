#!/usr/bin/env bash
# A single-node SLURM cluster for tests and CI: munged + slurmctld + slurmd from Debian's slurm-wlm, with 4 fake
# GPUs (gres typed A100: `--gres=gpu:A100:N` and untyped `--gres=gpu:N` both match) and two partitions on the
# node: `debug` (the default) and `gpu`, so that a clusters.yaml written for a real site (partition gpu, gpu_type
# A100, mem 64G) is accepted as it is. Everything lives in a fresh temporary directory; its path is recorded in
# $MILL_LOCAL_SLURM_RECORD (default ${TMPDIR:-/tmp}/mill-local-slurm.current) so that `stop` finds it. Ports are
# chosen free at start, and munged gets its own socket, so several clusters (one per build dir) can coexist.
#
# Usage: scripts/local-slurm.sh start [--if-available]   start (idempotent) and wait until the node is idle
#        scripts/local-slurm.sh stop                     cancel its jobs (every partition), stop the daemons by their pid files
#        scripts/local-slurm.sh status                   say whether it runs; print SLURM_CONF=...
#        scripts/local-slurm.sh env                      print SLURM_CONF=<path> (for `export $(...)`)
# Clients need SLURM_CONF=<state dir>/slurm.conf in their environment. Must run as root (SlurmUser=root).
# --if-available: exit 0 with a message instead of failing when the SLURM or munge binaries are not installed
# or when not running as root (the [slurm] tests then skip).
# Exit codes: 0 ok, 1 failure, 77 binaries missing (without --if-available).
set -euo pipefail

record=${MILL_LOCAL_SLURM_RECORD:-${TMPDIR:-/tmp}/mill-local-slurm.current}
node=$(hostname -s)
say() { echo "local-slurm: $*" >&2; }

state_dir() { [ -f "$record" ] && cat "$record" || true; }

pid_alive() {  # pid file → 0 if the process it names is alive
  [ -f "$1" ] || return 1
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

running() {  # state dir → 0 if all three daemons are alive and slurmctld answers
  local dir=$1
  [ -n "$dir" ] && [ -f "$dir/slurm.conf" ] || return 1
  pid_alive "$dir/run/munged.pid" && pid_alive "$dir/run/slurmctld.pid" && pid_alive "$dir/run/slurmd.pid" || return 1
  SLURM_CONF="$dir/slurm.conf" scontrol ping >/dev/null 2>&1
}

free_port() {  # a TCP port nobody listens on, from a range away from SLURM's defaults
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 20000))
    if ! ss -Htln "sport = :$port" 2>/dev/null | grep -q . && ! ss -Htln "sport = :$((port + 1))" 2>/dev/null | grep -q .; then
      echo "$port"
      return 0
    fi
  done
  say "no free TCP port found"
  return 1
}

binaries_present() {
  local missing=()
  for binary in munged slurmctld slurmd sbatch squeue scontrol sinfo scancel; do
    command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || missing+=("$binary")
  done
  if ((${#missing[@]})); then
    say "not available: ${missing[*]} not installed (apt-get install slurm-wlm slurm-client munge)"
    return 1
  fi
}

stop_pid_file() {  # pid file → stop that process (TERM, then KILL after 10 s)
  local file=$1 pid
  pid_alive "$file" || return 0
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "pid $pid ($file) did not stop on TERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_cluster() {
  local dir
  dir=$(state_dir)
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    say "not running (no record at $record)"
    rm -f "$record"
    return 0
  fi
  if running "$dir"; then
    # Cancel every job first, in every partition, so that no job step outlives slurmd. An array is cancelled
    # whole by its array job id (%F; a plain job's own id).
    local jobs
    jobs=$(SLURM_CONF="$dir/slurm.conf" squeue -h -o %F 2>/dev/null | sort -u || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086 # one id per word
      SLURM_CONF="$dir/slurm.conf" scancel $jobs >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 50); do
      [ -z "$(SLURM_CONF="$dir/slurm.conf" squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_pid_file "$dir/run/slurmd.pid"
  stop_pid_file "$dir/run/slurmctld.pid"
  stop_pid_file "$dir/run/munged.pid"
  rm -f "$record"
  if [ "${MILL_LOCAL_SLURM_KEEP:-0}" = "1" ]; then
    say "stopped; state kept in $dir"
  else
    rm -rf "$dir"
    say "stopped"
  fi
}

start_cluster() {
  local dir
  dir=$(state_dir)
  if [ -n "$dir" ] && running "$dir"; then
    say "already running (state in $dir)"
    echo "SLURM_CONF=$dir/slurm.conf"
    return 0
  fi
  if [ -n "$dir" ]; then
    say "a stale cluster record ($dir) exists; cleaning it up"
    stop_cluster
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (the test cluster uses SlurmUser=root)"
    return 1
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/mill-local-slurm.XXXXXX")
  chmod 755 "$dir"
  mkdir -p "$dir/run" "$dir/log" "$dir/state" "$dir/spool" "$dir/munge" "$dir/dev"
  chmod 700 "$dir/munge"
  echo "$dir" >"$record"

  # Fake GPUs: character devices with /dev/null's numbers, so slurmd accepts them as device files. Where mknod
  # is not allowed (some containers), plain files do: slurmd only complains about them.
  local devices=()
  for i in 0 1 2 3; do
    mknod "$dir/dev/gpu$i" c 1 3 2>/dev/null || : >"$dir/dev/gpu$i"
    devices+=("$dir/dev/gpu$i")
  done
  # A munge key of this cluster's own, so nothing depends on /etc/munge.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"

  local ctld_port slurmd_port memory_mb
  ctld_port=$(free_port)
  slurmd_port=$((ctld_port + 1))
  # Half the machine's memory, but at least 128 GiB: profiles written for real GPU nodes ask for 64G and more.
  # Nothing enforces it (no cgroups), and config_overrides lets slurmd accept more than the machine has.
  memory_mb=$(awk '/MemTotal/ {m = int($2 / 1024 / 2); print (m > 131072 ? m : 131072)}' /proc/meminfo)

  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/local-slurm.sh: a single-node test cluster.
ClusterName=millocal
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=30
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
MpiDefault=none
ReturnToService=2
# More CPUs than the machine has, so that the GPUs and the array throttle (not 2 cores) limit concurrency.
SlurmdParameters=config_overrides
SchedulerParameters=sched_min_interval=100000
MinJobAge=600
KillWait=5
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 RealMemory=$memory_mb Gres=gpu:A100:4 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
EOF
  cat >"$dir/gres.conf" <<EOF
AutoDetect=off
NodeName=$node Name=gpu Type=A100 File=$(IFS=,; echo "${devices[*]}")
EOF
  # slurmd reads cgroup.conf only with cgroup plugins; none here.

  # The daemons must not inherit the lock's descriptor (9), or the lock would be held as long as they run.
  munged --force --socket="$dir/munge/munge.socket" --pid-file="$dir/run/munged.pid" \
    --seed-file="$dir/munge/munged.seed" --log-file="$dir/log/munged.log" --key-file="$dir/munge/munge.key" 9>&-
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF" 9>&-
  for _ in $(seq 1 100); do
    scontrol ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  slurmd -f "$SLURM_CONF" 9>&-
  # Wait for the node to register, resume it, then wait until it is idle.
  local state=""
  for _ in $(seq 1 300); do
    state=$(sinfo -h -n "$node" -o %t 2>/dev/null | head -n1 || true)
    case "$state" in
      idle) break ;;
      down* | drain* | unk*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
  done
  if [ "$state" != "idle" ]; then
    say "node $node did not become idle (state '${state:-none}'); logs in $dir/log:"
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop_cluster
    return 1
  fi
  say "running: node $node idle, partitions debug (default) and gpu, 4 fake A100 GPUs; state in $dir"
  echo "SLURM_CONF=$dir/slurm.conf"
}

case "${1:-}" in
  start)
    if ! binaries_present; then
      [ "${2:-}" = "--if-available" ] && exit 0
      exit 77
    fi
    if [ "$(id -u)" -ne 0 ] && [ "${2:-}" = "--if-available" ]; then
      say "not started: the test cluster needs root (SlurmUser=root)"
      exit 0
    fi
    # One start at a time per record (tests may race to start the same cluster).
    exec 9>"$record.lock"
    flock -w 120 9 || { say "timed out waiting for $record.lock"; exit 1; }
    start_cluster
    ;;
  stop)
    exec 9>"$record.lock"
    flock -w 120 9 || { say "timed out waiting for $record.lock"; exit 1; }
    stop_cluster
    ;;
  status)
    dir=$(state_dir)
    if [ -n "$dir" ] && running "$dir"; then
      say "running (state in $dir)"
      SLURM_CONF="$dir/slurm.conf" sinfo >&2 || true
      echo "SLURM_CONF=$dir/slurm.conf"
    else
      say "not running"
      exit 3
    fi
    ;;
  env)
    dir=$(state_dir)
    [ -n "$dir" ] || { say "not running"; exit 3; }
    echo "SLURM_CONF=$dir/slurm.conf"
    ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
