#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for tests and CI (Debian's slurm + munge packages).
#   scripts/slurm_local.sh install   # apt-get the packages (root)
#   scripts/slurm_local.sh up        # write config, start munged, slurmctld, slurmd; wait for the node
#   scripts/slurm_local.sh down      # cancel jobs, stop the daemons by their PID files, remove the config
# State lives under $SLURM_LOCAL_DIR (default /tmp/cryosift-slurm); all traffic stays on 127.0.0.1.
set -euo pipefail
DIR=${SLURM_LOCAL_DIR:-/tmp/cryosift-slurm}
CONF=/etc/slurm

install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    fi
}

up() {
    mkdir -p "$DIR"/{state,spool,log} "$CONF"
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)
    # Two fake GPUs so rules that ask for gpu=1 can be scheduled on a CPU-only node.
    for i in 0 1; do ln -sf /dev/null "$CONF/fakegpu$i"; done
    cat > "$CONF/gres.conf" <<GRES
Name=gpu File=$CONF/fakegpu0
Name=gpu File=$CONF/fakegpu1
GRES
    cat > "$CONF/slurm.conf" <<CONFEOF
ClusterName=cryosift
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
MinJobAge=300
ReturnToService=2
GresTypes=gpu
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
# A GPU partition on the same node: `cryosift install-profile slurm --gpu-partition gpu` sends GPU jobs there.
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
CONFEOF
    mkdir -p /run/munge && chown munge:munge /run/munge
    if ! pgrep -x munged >/dev/null; then
        su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/munged.pid" || /usr/sbin/munged --force
    fi
    rm -rf "$DIR/state"/*
    slurmctld -i
    slurmd -N localhost
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)'; then
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "slurm_local: node did not become idle" >&2
    sinfo -N -l >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    return 1
}

down() {
    [ -f "$CONF/slurm.conf" ] && scancel --user root >/dev/null 2>&1 || true
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" /run/munge/munged.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    # A config naming a stopped controller makes every SLURM client wait about 10 s for it, and
    # Snakemake's SLURM plugin asks scontrol on import: each snakemake start would pay that.
    rm -f "$CONF/slurm.conf" "$CONF/gres.conf" "$CONF/fakegpu0" "$CONF/fakegpu1"
    sleep 1
}

case "${1:-}" in
    install) install ;;
    up) up ;;
    down) down ;;
    *) echo "usage: $0 install|up|down" >&2; exit 2 ;;
esac
