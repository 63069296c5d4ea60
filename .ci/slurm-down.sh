#!/usr/bin/env bash
# Stop the single-node cluster started by .ci/slurm-up.sh (its slurmctld and slurmd only;
# munged is left running: other tools may use it). Idempotent.
set -uo pipefail
DIR=${NOWCAST_SLURM_DIR:-/tmp/nowcast-slurm}
export SLURM_CONF=$DIR/slurm.conf
if [[ -f $SLURM_CONF ]]; then
  scancel --user=root 2>/dev/null || true
fi
for daemon in slurmd slurmctld; do
  pidfile=$DIR/$daemon.pid
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
done
if [[ ${1:-} == --purge ]]; then rm -rf "$DIR"; fi
echo "slurm-down: stopped ($DIR)" >&2
