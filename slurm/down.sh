#!/usr/bin/env bash
# Stop the Slurm cluster that slurm/up.sh started from STATE_DIR — exactly the daemons whose PIDs it
# recorded there (one slurmd per node, each holding its node's namespace; slurmctld, slurmdbd, MariaDB,
# munged), nothing found by name.
#
#   slurm/down.sh [STATE_DIR] [--purge]
#
# STATE_DIR defaults to <repo>/.slurm (or $JOBKIT_SLURM_STATE). Jobs are kept: the next up.sh resumes
# them from the saved state. --purge cancels every job first, then deletes STATE_DIR (and the
# /etc/slurm/slurm.conf link when it points there).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
STATE=${JOBKIT_SLURM_STATE:-}
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) echo "down.sh: unknown option $1" >&2; exit 2 ;;
        *) STATE=$1 ;;
    esac
    shift
done
STATE=${STATE:-$REPO/.slurm}
if [ ! -d "$STATE" ]; then echo "slurm/down.sh: nothing to stop ($STATE does not exist)" >&2; exit 0; fi
STATE=$(cd "$STATE" && pwd -P)
PIDS=$STATE/pids
CONF=$STATE/etc/slurm.conf
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF=$CONF

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
comm_of() { echo "${1%%-*}"; }   # pids/slurmd-n1.pid holds a slurmd
runs() {  # runs PID NAME: PID is NAME's daemon and not a zombie (PID 1 here reaps late: Z = stopped)
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$(comm_of "$2")" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && runs "$p" "$1"; }

stop() {  # stop NAME...: TERM the recorded PIDs together, wait, KILL what still runs after 15 s
    local name p i left
    local -a names=() pids=()
    for name in "$@"; do
        if alive "$name"; then names+=("$name"); pids+=("$(pid_of "$name")"); kill -TERM "$(pid_of "$name")" 2>/dev/null || true; fi
    done
    for i in $(seq 1 150); do
        left=0
        for j in "${!pids[@]}"; do runs "${pids[$j]}" "${names[$j]}" && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for j in "${!pids[@]}"; do
        if runs "${pids[$j]}" "${names[$j]}"; then
            echo "slurm/down.sh: ${names[$j]} (pid ${pids[$j]}) ignored TERM for 15 s: killing it" >&2
            kill -KILL "${pids[$j]}" 2>/dev/null || true
        fi
        rm -f "$PIDS/${names[$j]}.pid"
        echo "stopped ${names[$j]} (pid ${pids[$j]})" >&2
    done
}

if [ "$PURGE" = 1 ] && alive slurmctld; then
    # Cancel all jobs so that no job step outlives the cluster whose state is being deleted.
    if [ -n "$(timeout 10 squeue -h -o %i 2>/dev/null)" ]; then
        timeout 10 scancel --full --quiet $(timeout 10 squeue -h -o %i) 2>/dev/null || true
        for i in $(seq 1 60); do
            [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi

# slurmctld saves its state and flushes accounting to slurmdbd before that stops; munged goes last.
# The node daemons: pids/slurmd-NODE.pid (pids/slurmd.pid: a state dir of the former single-node layout).
slurmds=()
for f in "$PIDS"/slurmd.pid "$PIDS"/slurmd-*.pid; do [ -e "$f" ] && slurmds+=("$(basename "$f" .pid)"); done
stop "${slurmds[@]}" slurmctld
stop slurmdbd
stop mariadbd munged

if [ "$PURGE" = 1 ]; then
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$CONF" ]; then rm -f /etc/slurm/slurm.conf; fi
    rm -rf "$STATE"
    echo "removed $STATE" >&2
fi
