#!/usr/bin/env bash
# Stops the one-node cluster of slurm-up.sh: cancels its jobs, then stops slurmd, slurmctld and
# munged by the PIDs in their PID files. --purge also removes the folder (state, logs, key).
# Environment: MARGINLAB_SLURM_DIR (default /tmp/marginlab-slurm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
dir=${MARGINLAB_SLURM_DIR:-/tmp/marginlab-slurm}
export SLURM_CONF=$dir/slurm.conf

pid_of() {
  cat "$dir/$1.pid" 2>/dev/null || true
}

if alive "$(pid_of slurmctld)"; then
  # Every job on this private cluster is the test's; give their tasks KillWait to end cleanly.
  scancel --partition=local 2>/dev/null || true
  for _ in $(seq 1 150); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.2
  done
fi
for daemon in slurmd slurmctld munged; do
  pid=$(pid_of "$daemon")
  if alive "$pid"; then
    stop_pid "$pid" "$daemon"
    note "stopped $daemon (pid $pid)"
  fi
  rm -f "$dir/$daemon.pid"
done
if [ "${1:-}" = --purge ]; then
  rm -rf "$dir"
fi
