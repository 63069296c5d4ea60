#!/usr/bin/env bash
# Start a single-node SLURM cluster (Debian slurmctld + slurmd + munge, Slurm 22.05) as root,
# every file under one scratch folder. Idempotent: a cluster already up is left as it is.
#
#   .ci/slurm-up.sh            # install if missing, start, wait for an idle node
#   eval "$(.ci/slurm-up.sh --env)"   # the same, then export SLURM_CONF in this shell
#   .ci/slurm-down.sh          # stop it again
#
# Scratch folder: $NOWCAST_SLURM_DIR (default /tmp/nowcast-slurm). Clients find the cluster
# through SLURM_CONF=$NOWCAST_SLURM_DIR/slurm.conf (printed on the last line).
set -euo pipefail

DIR=${NOWCAST_SLURM_DIR:-/tmp/nowcast-slurm}
CONF=$DIR/slurm.conf
PRINT_ENV=0
[[ ${1:-} == --env ]] && PRINT_ENV=1
log() { echo "slurm-up: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  log "must run as root (slurmd runs jobs as root here)"; exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq slurmctld slurmd slurm-client munge >&2
fi

export SLURM_CONF=$CONF
up() { sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

if [[ -f $CONF ]] && up; then
  log "already up ($CONF)"
else
  mkdir -p "$DIR"/{state,spool,log}
  HOST=$(hostname -s)
  CPUS=$(nproc)
  MEM=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  cat > "$CONF" <<CONF
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# requeued jobs wait cred_expire seconds before they start again (default 120)
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# requeued jobs may start again at once (the test requeues on purpose)
JobRequeue=1
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

  # munge: the key comes with the Debian package; create one if it is missing
  if [[ ! -s /etc/munge/munge.key ]]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi

  pidalive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
  pidalive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
  for _ in $(seq 50); do scontrol -f "$CONF" ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
  pidalive "$DIR/slurmd.pid" || slurmd -f "$CONF"

  for _ in $(seq 150); do up && break; sleep 0.2; done
  if ! up; then
    # a node left DOWN/DRAIN by an earlier run: bring it back
    scontrol update nodename="$HOST" state=resume 2>/dev/null || true
    for _ in $(seq 50); do up && break; sleep 0.2; done
  fi
  if ! up; then
    log "node did not become idle:"; sinfo >&2 || true
    tail -n 20 "$DIR"/log/*.log >&2 || true
    exit 1
  fi
  log "up: $(sinfo -h -o '%P %D %T %c')"
fi

if [[ $PRINT_ENV == 1 ]]; then
  echo "export SLURM_CONF=$CONF"
else
  echo "SLURM_CONF=$CONF"
fi
