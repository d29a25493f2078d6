#!/usr/bin/env bash
# A one-node SLURM cluster with accounting, for tests and trying the SLURM launcher on one machine:
#   eval "$(scripts/slurm_cluster.sh start)"      # prints export SLURM_CONF=... DLLAB_SLURM_DIR=...
#   dllab-train -m hydra/launcher=slurm optimizer.lr=0.01,0.1
#   scripts/slurm_cluster.sh stop "$DLLAB_SLURM_DIR"
# Debian's packages (munge slurmctld slurmd slurm-client slurmdbd mariadb-server), run as root.
# munged, MariaDB, slurmdbd, slurmctld and slurmd all keep their files in one temporary dir, listen
# on 127.0.0.1 only, on free ports, so the machine's own SLURM (if any) is left alone; stop kills
# exactly the processes start recorded there.
set -euo pipefail

log() { echo "slurm_cluster: $*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start a daemon in the foreground of its own session, its output in <name>.out, its pid recorded.
spawn() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$DIR/$name.out" 2>&1 &
    echo "$name $!" >>"$DIR/pids"
}

# wait_for <seconds> <what> <command...>: poll until the command succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "$what not ready after ${seconds}s"
            return 1
        fi
        sleep 0.3
    done
}

stop() {
    local dir=$1
    [[ -f $dir/pids ]] || { [[ -d $dir ]] && rm -rf "$dir"; return 0; }
    if [[ -f $dir/slurm.conf ]]; then # jobs first: their slurmstepd outlive slurmd
        export SLURM_CONF=$dir/slurm.conf
        if timeout 10 squeue -h -o %i 2>/dev/null | grep -q .; then
            timeout 10 squeue -h -o %A 2>/dev/null | sort -u | xargs -r timeout 10 scancel --quiet 2>/dev/null || true
            for _ in $(seq 30); do
                timeout 5 squeue -h -o %i 2>/dev/null | grep -q . || break
                sleep 0.5
            done
        fi
    fi
    local pids=() name pid
    # the reverse order of start: slurmd, slurmctld, slurmdbd, MariaDB, munged
    while read -r name pid; do pids=("$pid" "${pids[@]}"); done <"$dir/pids"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}

start() {
    for program in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr; do
        command -v "$program" >/dev/null || { log "$program not found (apt-get install munge slurmctld slurmd slurm-client slurmdbd mariadb-server)"; exit 2; }
    done
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/dllab-slurm.XXXXXX")
    chmod 755 "$DIR"
    trap 'failed' ERR
    local host cpus memory
    host=$(hostname)
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    local db_port dbd_port ctld_port d_port
    db_port=$(free_port)
    dbd_port=$(free_port)
    ctld_port=$(free_port)
    d_port=$(free_port)
    mkdir -p "$DIR/ctld" "$DIR/d" "$DIR/mysql"

    # munge: its own key and socket (munged refuses root in /tmp without --force)
    dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge.key"
    spawn munged munged --foreground --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" \
        --pid-file="$DIR/munged.pid" --seed-file="$DIR/munge.seed" --log-file="$DIR/munged.log"

    # MariaDB for slurmdbd: its own datadir, TCP on 127.0.0.1 only; no grant tables (nothing but
    # slurmdbd on this machine can reach it, and it keeps no password around)
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --skip-test-db \
        --auth-root-authentication-method=normal >"$DIR/mariadb-install.out" 2>&1
    spawn mariadbd mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DIR/mysql.sock" \
        --bind-address=127.0.0.1 --port="$db_port" --pid-file="$DIR/mariadbd.pid" --log-error="$DIR/mariadbd.log" \
        --skip-grant-tables --innodb-buffer-pool-size=32M --skip-log-bin
    wait_for 60 "munged" test -S "$DIR/munge.socket"
    wait_for 60 "MariaDB" test -S "$DIR/mysql.sock"

    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge.socket
DbdAddr=127.0.0.1
DbdHost=$host
DbdPort=$dbd_port
SlurmUser=root
LogFile=$DIR/slurmdbd.log
PidFile=$DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"
    # AccountingStoragePass: the munge socket slurmctld talks to slurmdbd through; cred_expire: a
# requeued job waits that long before it starts again (default 120 s)
    cat >"$DIR/slurm.conf" <<EOF
ClusterName=dllab
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket,cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
MinJobAge=300
JobRequeue=1
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$DIR/munge.socket
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$DIR/slurm.conf
    spawn slurmdbd slurmdbd -D
    wait_for 60 "slurmdbd" sacctmgr -n list cluster
    sacctmgr -i add cluster dllab >"$DIR/sacctmgr.out" 2>&1
    spawn slurmctld slurmctld -D -i -f "$DIR/slurm.conf"
    wait_for 30 "slurmctld" scontrol ping
    spawn slurmd slurmd -D -f "$DIR/slurm.conf"
    wait_for 60 "the node" bash -c '[[ $(sinfo -h -o %t) == idle ]]'
    wait_for 30 "sacct" sacct -n -X
    trap - ERR
    echo "export SLURM_CONF=$DIR/slurm.conf; export DLLAB_SLURM_DIR=$DIR"
}

failed() {
    log "start failed; the ends of the logs in $DIR:"
    local file
    for file in "$DIR"/*.log "$DIR"/*.out; do
        [[ -s $file ]] || continue
        echo "--- $file" >&2
        tail -n 15 "$file" >&2
    done
    stop "$DIR"
    exit 1
}

case ${1:-} in
start) start ;;
stop)
    [[ -n ${2:-} ]] || { log "usage: $0 stop <dir printed by start>"; exit 2; }
    stop "$2"
    ;;
*)
    log "usage: eval \"\$($0 start)\"; ...; $0 stop \"\$DLLAB_SLURM_DIR\""
    exit 2
    ;;
esac
