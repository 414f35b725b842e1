#!/usr/bin/env bash
# A throw-away one-node SLURM cluster on this host, to test the slurm profile for real:
#   scripts/slurm_local_cluster.sh          install (if needed), configure, start, wait for idle
#   scripts/slurm_local_cluster.sh stop     stop the daemons this script started
# Debian 12 (slurm-wlm 22.05 + munge), run as root, no systemd. No accounting (no slurmdbd),
# no cgroups, no GRES: GPU rules need `gpu=0` overrides here. Idempotent: running daemons are
# left alone unless slurm.conf changed.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
DAEMONS=(munged:/run/munge/munged.pid slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid)

# Is the daemon $1 with pid file $2 alive (not a zombie, not a reused pid)?
running() {
    local pid
    pid=$(cat "$2" 2>/dev/null) || return 1
    [[ $(ps -o comm=,stat= -p "$pid" 2>/dev/null) =~ ^$1\ +[^Z] ]]
}

stop() {  # slurmd, slurmctld, munged: each by the pid in its own pid file
    local i name file
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]%%:*} file=${DAEMONS[i]#*:}
        if running "$name" "$file"; then
            kill "$(cat "$file")"
            for _ in {1..20}; do running "$name" "$file" || break; sleep 0.5; done
        fi
        rm -f "$file"
    done
}

if [[ ${1:-} == stop ]]; then stop; echo "slurm: stopped"; exit 0; fi
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }

# 1. Packages (the Debian postinst cannot start services without systemd; we start them below).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# 2. Munge key (the package usually makes one) and runtime folder.
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge

# 3. slurm.conf for this host: all CPUs, 90% of the memory (fixed, so reruns don't differ).
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
NEW=$(cat <<EOF
# Written by scripts/slurm_local_cluster.sh: one node (this host), one partition.
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# Finished jobs stay visible to squeue for 5 min (the plugin's squeue status check needs >= 120 s).
MinJobAge=300
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
if [[ ! -f $CONF ]] || [[ $(cat "$CONF") != "$NEW" ]]; then
    stop  # restart with the new configuration
    printf '%s\n' "$NEW" >"$CONF"
fi

# 4. Daemons (each forks into the background and writes its pid file).
running munged /run/munge/munged.pid || runuser -u munge -- munged
running slurmctld /run/slurmctld.pid || slurmctld
running slurmd /run/slurmd.pid || slurmd

# 5. Wait until the node accepts jobs.
for _ in {1..60}; do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    case $state in idle | mixed | allocated) echo "slurm: node $HOST $state"; sinfo; exit 0 ;; esac
    sleep 1
done
echo "slurm: node not ready (state '${state:-?}'); see /var/log/slurm/" >&2
exit 1
