#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying and testing the cluster profile
# (profiles/slurm) without a real cluster. docs/CLUSTER.md.
#
#   scripts/local_slurm.sh start    install slurm-wlm + munge if missing (apt-get), start munged,
#                                   slurmctld and slurmd by hand (no systemd, no cgroups), wait
#                                   until the node takes jobs
#   scripts/local_slurm.sh stop     stop the three daemons (scontrol shutdown, then munged)
#   scripts/local_slurm.sh status   exit 0 and show the node when the cluster answers, else exit 3
#
# Runs as root. One node with this machine's CPUs and memory (as `slurmd -C` detects them),
# partition `local` (the default), proctrack/linuxproc, task/none, select/cons_tres,
# accounting_storage/none (no slurmdbd: sacct cannot answer, hence the profile's
# `slurm-status-command: squeue`) and MinJobAge 300 (squeue shows a finished job for 5 minutes).
# The node also advertises AQA_SLURM_GPUS (default 1) GPU slots with no device behind them, so
# that a job asking for a GPU (sbatch --gpus) is scheduled as on a GPU cluster; its program
# finds no CUDA device and runs on the CPU.
#
# Settings (environment): AQA_SLURM_DIR (state, spool, logs, pid files; default
# /var/lib/aqa-slurm), AQA_SLURM_GPUS. The configuration goes to /etc/slurm/slurm.conf, where
# sbatch, squeue and sinfo look for it; an existing file not written by this script is left
# alone and the start refused.
set -euo pipefail

DIR=${AQA_SLURM_DIR:-/var/lib/aqa-slurm}
GPUS=${AQA_SLURM_GPUS:-1}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by aqa scripts/local_slurm.sh"
MUNGE_PID=$DIR/run/munged.pid
MUNGE_SOCKET=/run/munge/munge.socket.2   # where the SLURM commands' munge plugin looks

say() { echo "local_slurm: $*"; }
die() { echo "local_slurm: error: $*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts the SLURM daemons)"
}

install_packages() {
    local missing=()
    for cmd in munged slurmctld slurmd sbatch; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing slurm-wlm and munge (missing: ${missing[*]})"
    # The packages' scripts would start the daemons through init, which is not there (or would
    # start them with a configuration not yet written): forbid it for the install, as Debian's
    # policy-rc.d allows, unless the machine already has such a policy.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
    fi
    local rc=0
    { apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    } || rc=$?
    if [ "$ours" -eq 1 ]; then rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get could not install slurm-wlm and munge (exit $rc)"
    for cmd in munged slurmctld slurmd sbatch; do
        command -v "$cmd" >/dev/null || die "$cmd still missing after installing slurm-wlm and munge"
    done
}

is_up() {
    scontrol ping 2>/dev/null | grep -q "is UP"
}

write_config() {
    if [ -e "$CONF" ] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
        die "$CONF exists and was not written by this script: a SLURM of this machine is configured; not touching it"
    fi
    mkdir -p "$CONF_DIR" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
    local node host
    node=$(slurmd -C | head -n1)                 # NodeName=<host> CPUs=... RealMemory=...
    host=${node#NodeName=}
    host=${host%% *}
    local gres_types="" node_gres=""
    if [ "$GPUS" -gt 0 ]; then
        gres_types="GresTypes=gpu"
        node_gres="Gres=gpu:$GPUS"
        # SLURM keeps a GPU only with a device file: give each slot a node with /dev/null's
        # numbers (nothing binds it without cgroups; the slots are only scheduled)
        mkdir -p "$DIR/dev"
        local i
        for i in $(seq 0 $((GPUS - 1))); do
            [ -c "$DIR/dev/gpu$i" ] || mknod "$DIR/dev/gpu$i" c 1 3
        done
        printf '%s\nNodeName=%s Name=gpu File=%s\n' "$MARK" "$host" "$DIR/dev/gpu[0-$((GPUS - 1))]" >"$CONF_DIR/gres.conf"
    else
        rm -f "$CONF_DIR/gres.conf"
    fi
    cat >"$CONF" <<EOF
$MARK (docs/CLUSTER.md)
ClusterName=aqa-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
$gres_types
$node NodeAddr=127.0.0.1 $node_gres State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    local pid
    if pid=$(cat "$MUNGE_PID" 2>/dev/null) && running "$pid"; then
        return 0
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    # munged runs as root here (--force: it would rather run as user munge; this cluster is one
    # machine's own, its jobs run as the user who submits them either way)
    munged --force --socket="$MUNGE_SOCKET" --pid-file="$MUNGE_PID" \
        --key-file=/etc/munge/munge.key --log-file="$DIR/log/munged.log"
}

start() {
    need_root
    install_packages
    if is_up; then
        say "already running"; sinfo; return 0
    fi
    write_config
    start_munge
    slurmctld -c       # a fresh state: no node drained or job left by an earlier run
    slurmd
    local i
    for i in $(seq 1 100); do                  # up to ~30 s; it usually takes under a second
        if [ "$(sinfo -h -N -o %T 2>/dev/null | head -n1)" = "idle" ]; then
            say "started: $(sinfo -h -N -o '%N, %c CPUs, %m MB, gres %G, partition %P')"
            return 0
        fi
        sleep 0.3
    done
    sinfo -N -l || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    die "the node did not become idle (logs in $DIR/log)"
}

running() {   # running <pid>: the process exists and has not ended (a zombie has)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

wait_gone() {   # wait_gone <name> <pid>: until the process has ended (up to ~15 s, then TERM)
    local i
    for i in $(seq 1 50); do
        running "$2" || return 0
        sleep 0.3
    done
    say "$1 (pid $2) still running after shutdown: sending TERM"
    kill "$2" 2>/dev/null || true
}

stop() {
    need_root
    # the daemons' pids, read first: each removes its pid file before it has finished exiting
    local name pid ctld="" slurmd="" munged=""
    ctld=$(cat "$DIR/run/slurmctld.pid" 2>/dev/null) || true
    slurmd=$(cat "$DIR/run/slurmd.pid" 2>/dev/null) || true
    munged=$(cat "$MUNGE_PID" 2>/dev/null) || true
    if is_up; then
        scontrol shutdown >/dev/null        # slurmctld and every slurmd
    else                                    # slurmctld down: end what is left, by its pid
        for pid in $ctld $slurmd; do kill "$pid" 2>/dev/null || true; done
    fi
    [ -z "$ctld" ] || wait_gone slurmctld "$ctld"
    [ -z "$slurmd" ] || wait_gone slurmd "$slurmd"
    if [ -n "$munged" ]; then               # last: slurmctld and slurmd use it until they end
        kill "$munged" 2>/dev/null || true
        wait_gone munged "$munged"
    fi
    say "stopped"
}

status() {
    if command -v scontrol >/dev/null && is_up; then
        sinfo -N -o '%N %T %c %m %G %P'
    else
        say "not running"; exit 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
