#!/usr/bin/env bash
# Bring up a real single-node Slurm cluster (munged, MariaDB, slurmdbd, slurmctld, slurmd) on loopback.
#
#   slurm/up.sh [--no-accounting] [--port-base N] [--no-symlink] [STATE_DIR]
#
# STATE_DIR (default <repo>/.slurm, or $JOBKIT_SLURM_STATE) holds everything: generated configs
# (etc/), spool, logs, pid files, the munge key and MariaDB's datadir — `slurm/down.sh --purge` is one rm.
# Idempotent: when the cluster of STATE_DIR already runs, it changes nothing and returns in about a second;
# when only some of its daemons run, it starts the missing ones.
#
# A state dir remembers its mode (accounting, ports): later calls without options reuse it.
#   --no-accounting   no MariaDB/slurmdbd: AccountingStorageType=accounting_storage/none, so `sacct`
#                     fails (as on clusters without accounting); squeue/scontrol still answer.
#                     Same as JOBKIT_SLURM_ACCOUNTING=0.
#   --port-base N     slurmctld N, slurmd N+1, slurmdbd N+2, MariaDB N+3 (default 6817 = Slurm's own).
#                     A second cluster on other ports can run beside the default one
#                     (e.g. `--no-accounting --port-base 7817 /tmp/noacct`); it never takes the
#                     /etc/slurm/slurm.conf link, so use it through SLURM_CONF.
#   --no-symlink      do not point /etc/slurm/slurm.conf at the generated config.
#
# Needs root (installs Debian's packages when missing, links /etc/slurm/slurm.conf).
# Stdout is only the line `export SLURM_CONF=...` (so `eval "$(slurm/up.sh)"` works); progress goes
# to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
ACCOUNTING=${JOBKIT_SLURM_ACCOUNTING:-}
PORT_BASE=${JOBKIT_SLURM_PORT_BASE:-}
SYMLINK=1
STATE=${JOBKIT_SLURM_STATE:-}
CLUSTER=${JOBKIT_SLURM_CLUSTER:-jobkit}
T0=$(date +%s%N)

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --no-accounting) ACCOUNTING=0 ;;
        --accounting) ACCOUNTING=1 ;;
        --port-base) PORT_BASE=${2:?--port-base needs a number}; shift ;;
        --port-base=*) PORT_BASE=${1#*=} ;;
        --no-symlink) SYMLINK=0 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "up.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) STATE=$1 ;;
    esac
    shift
done
STATE=${STATE:-$REPO/.slurm}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd -P)
# Unless asked otherwise, a state dir keeps the mode it was first started with (file `mode`).
if [ -f "$STATE/mode" ]; then
    [ -n "$ACCOUNTING" ] || ACCOUNTING=$(sed -n 's/.*accounting=\([0-9]*\).*/\1/p' "$STATE/mode")
    [ -n "$PORT_BASE" ] || PORT_BASE=$(sed -n 's/.*port_base=\([0-9]*\).*/\1/p' "$STATE/mode")
fi
case "${ACCOUNTING:-1}" in 0|no|false|off) ACCOUNTING=0 ;; *) ACCOUNTING=1 ;; esac
PORT_BASE=${PORT_BASE:-6817}
[[ "$PORT_BASE" =~ ^[0-9]+$ ]] || { echo "up.sh: --port-base must be a number" >&2; exit 2; }
[ "$PORT_BASE" = 6817 ] || SYMLINK=0

elapsed() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)); }
log() { printf '[slurm/up %5ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { echo "slurm/up.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------- install
PKGS="slurm-wlm slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
need_install=0
for bin in slurmctld slurmd slurmdbd sbatch scontrol sacctmgr munged mungekey mariadbd mariadb-install-db mysqladmin; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need_install=1
done
if [ "$need_install" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root: apt-get install $PKGS"
    log "installing Debian packages: $PKGS"
    # The packages must start no service of their own: we run the daemons ourselves.
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_added=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $PKGS; } >"$STATE/apt.log" 2>&1 \
        || { [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -20 "$STATE/apt.log" >&2; die "apt-get install failed (log: $STATE/apt.log)"; }
    [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
    log "packages installed"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# ---------------------------------------------------------------------------------------------- layout
ETC=$STATE/etc
CONF=$ETC/slurm.conf
PIDS=$STATE/pids
MUNGE_DIR=$STATE/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
MYCNF=$STATE/mysql/my.cnf
mkdir -p "$ETC" "$PIDS" "$STATE/log" "$STATE/ctld" "$STATE/slurmd" "$STATE/run" "$STATE/mysql"
chmod 755 "$STATE" "$STATE/run"
[ ${#MUNGE_SOCKET} -lt 100 ] || die "state dir path too long for a unix socket: $STATE (use a shorter STATE_DIR)"
export SLURM_CONF=$CONF

# Only one up.sh per state dir at a time (fd 9; closed for every daemon we start).
exec 9>"$STATE/up.lock"
flock -w 300 9 || die "another slurm/up.sh holds $STATE/up.lock"

# The mode (accounting or not, ports) a state dir was started with stays with it.
MODE="accounting=$ACCOUNTING port_base=$PORT_BASE"
if [ -f "$STATE/mode" ] && [ "$(cat "$STATE/mode")" != "$MODE" ]; then
    running=0
    for d in slurmctld slurmd slurmdbd; do
        p=$(cat "$PIDS/$d.pid" 2>/dev/null || true)
        [ -n "$p" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = "$d" ] && running=1
    done
    [ "$running" = 0 ] || die "$STATE runs with '$(cat "$STATE/mode")', asked '$MODE': run slurm/down.sh $STATE first"
fi

# ---------------------------------------------------------------------------------------------- configs
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_TOTAL=$(free -m | awk '/^Mem:/ {print $2}')
REAL_MEM=$(( MEM_TOTAL * 90 / 100 ))   # below `free -m`, or slurmd drains the node
DEF_MEM_PER_CPU=1024
[ $(( DEF_MEM_PER_CPU * CPUS )) -le "$REAL_MEM" ] || DEF_MEM_PER_CPU=$(( REAL_MEM / CPUS ))
CTLD_PORT=$PORT_BASE; SLURMD_PORT=$((PORT_BASE + 1)); DBD_PORT=$((PORT_BASE + 2)); MYSQL_PORT=$((PORT_BASE + 3))
if [ "$PORT_BASE" = 6817 ]; then FIRST_JOB_ID=1; else FIRST_JOB_ID=$(( PORT_BASE * 100 )); fi
if [ ! -s "$STATE/dbpass" ]; then (umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$STATE/dbpass"); fi
DB_PASS=$(cat "$STATE/dbpass")
if [ "$ACCOUNTING" = 1 ]; then
    ACCT_BLOCK="AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nAccountingStoragePort=$DBD_PORT\n# for slurmdbd this names the munge socket (ours is not the system one)\nAccountingStoragePass=$MUNGE_SOCKET"
else
    ACCT_BLOCK="# no accounting (slurm/up.sh --no-accounting): sacct does not work\nAccountingStorageType=accounting_storage/none"
fi

render() {  # template -> stdout
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@MYSQL_PORT@|$MYSQL_PORT|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@REAL_MEM@|$REAL_MEM|g" -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
        -e "s|@FIRST_JOB_ID@|$FIRST_JOB_ID|g" -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@ACCOUNTING@|$ACCT_BLOCK|g" "$1"
}
install_file() {  # install_file TEMPLATE DEST MODE: rewrite DEST only when its content changes
    local tmp; tmp=$(mktemp "$2.XXXX")
    render "$1" >"$tmp"; chmod "$3" "$tmp"
    if cmp -s "$tmp" "$2"; then rm -f "$tmp"; return 1; fi
    mv -f "$tmp" "$2"; return 0
}

# ---------------------------------------------------------------------------------------------- daemons
pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
alive() {  # alive NAME: the recorded PID runs, and is that daemon (not a recycled PID)
    local p; p=$(pid_of "$1")
    [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ]
}
wait_for() {  # wait_for SECONDS WHAT CMD...
    local limit=$1 what=$2; shift 2
    local end=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_state() { timeout 10 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1; }
node_ready() { case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac; }
munge_ok() { munge -n -S "$MUNGE_SOCKET" </dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null; }
mysql_ok() { mysqladmin --defaults-file="$MYCNF" -uroot ping; }
dbd_ok() { timeout 10 sacctmgr -n -P show cluster format=cluster; }
ctld_ok() { timeout 10 scontrol ping | grep -q UP; }

required_daemons() { if [ "$ACCOUNTING" = 1 ]; then echo munged mariadbd slurmdbd slurmctld slurmd; else echo munged slurmctld slurmd; fi; }

print_usage() {
    local parts; parts=$(timeout 10 sinfo -h -o '%P' 2>/dev/null | tr '\n' ' ')
    local link="not linked from /etc/slurm/slurm.conf: export SLURM_CONF in every shell"
    [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$CONF" ] && link="also linked from /etc/slurm/slurm.conf"
    cat >&2 <<EOF
Slurm cluster '$CLUSTER' is up on node $HOST (partitions: ${parts:-?}; accounting: $([ "$ACCOUNTING" = 1 ] && echo slurmdbd || echo none)).
  state dir: $STATE   (logs in $STATE/log)
  config:    $CONF   ($link)
  From another shell:
    export SLURM_CONF=$CONF
    sinfo; sbatch -p test -t 5 --wrap 'hostname'; squeue$([ "$ACCOUNTING" = 1 ] && echo '; sacct')
  Stop: slurm/down.sh $STATE   (add --purge to delete the state dir)
EOF
    echo "export SLURM_CONF=$CONF"
}

link_conf() {
    [ "$SYMLINK" = 1 ] || return 0
    [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$CONF" ] && return 0
    if [ "$(id -u)" != 0 ]; then log "not root: /etc/slurm/slurm.conf not linked (use SLURM_CONF)"; return 0; fi
    mkdir -p /etc/slurm
    if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ] && [ ! -e /etc/slurm/slurm.conf.jobkit-orig ]; then
        mv /etc/slurm/slurm.conf /etc/slurm/slurm.conf.jobkit-orig
        log "moved the existing /etc/slurm/slurm.conf to slurm.conf.jobkit-orig"
    fi
    ln -sfn "$CONF" /etc/slurm/slurm.conf
    log "linked /etc/slurm/slurm.conf -> $CONF"
}

# Fast path: everything of this state dir runs and the node answers -> change nothing.
all_alive=1
for d in $(required_daemons); do alive "$d" || all_alive=0; done
if [ "$all_alive" = 1 ] && [ -f "$CONF" ] && node_ready; then
    for t in slurm.conf; do
        if ! render "$HERE/$t.in" | cmp -s - "$ETC/$t"; then
            log "note: slurm/$t.in changed since this cluster started; apply with: slurm/down.sh $STATE && slurm/up.sh $STATE"
        fi
    done
    link_conf
    log "already running (state dir $STATE)"
    print_usage
    exit 0
fi

# Ports must be ours: a daemon of another state dir (or a system Slurm) must not be mistaken for ours.
for pair in "slurmctld:$CTLD_PORT" "slurmd:$SLURMD_PORT"; do
    d=${pair%%:*}; port=${pair#*:}
    if ! alive "$d" && port_busy "$port"; then
        die "port $port ($d) is in use by another process: is another cluster running? (slurm/down.sh ITS_STATE_DIR, or --port-base)"
    fi
done
if [ "$ACCOUNTING" = 1 ]; then
    for pair in "slurmdbd:$DBD_PORT" "mariadbd:$MYSQL_PORT"; do
        d=${pair%%:*}; port=${pair#*:}
        if ! alive "$d" && port_busy "$port"; then die "port $port ($d) is in use by another process"; fi
    done
fi

echo "$MODE" >"$STATE/mode"
: >"$ETC/plugstack.conf"
install_file "$HERE/slurm.conf.in" "$CONF" 644 && log "wrote $CONF" || true
if [ "$ACCOUNTING" = 1 ]; then
    install_file "$HERE/slurmdbd.conf.in" "$ETC/slurmdbd.conf" 600 || true   # slurmdbd insists on 600
    install_file "$HERE/my.cnf.in" "$MYCNF" 644 || true
fi

# munged: our own key and socket, so nothing of the system's munge is touched.
if ! alive munged; then
    mkdir -p "$MUNGE_DIR"; chmod 755 "$MUNGE_DIR"
    if [ ! -s "$MUNGE_DIR/munge.key" ]; then
        mungekey -c -k "$MUNGE_DIR/munge.key" 2>/dev/null \
            || (umask 077; dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none)
        chmod 600 "$MUNGE_DIR/munge.key"
    fi
    munged --force -S "$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" --log-file="$STATE/log/munged.log" \
        --pid-file="$PIDS/munged.pid" --seed-file="$MUNGE_DIR/munged.seed" 9>&- </dev/null >/dev/null 2>&1 \
        || die "munged did not start (log: $STATE/log/munged.log)"
    wait_for 20 munged munge_ok || die "munged does not answer on $MUNGE_SOCKET (log: $STATE/log/munged.log)"
    log "munged up (pid $(pid_of munged))"
fi

if [ "$ACCOUNTING" = 1 ]; then
    if ! alive mariadbd; then
        if [ ! -d "$STATE/mysql/data/mysql" ]; then
            rm -rf "$STATE/mysql/data"
            mariadb-install-db --defaults-file="$MYCNF" --user=root --skip-test-db \
                --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 \
                || { tail -20 "$STATE/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
            log "MariaDB datadir created"
        fi
        rm -f "$PIDS/mariadbd.pid"
        setsid mariadbd --defaults-file="$MYCNF" 9>&- </dev/null >>"$STATE/log/mariadb.log" 2>&1 &
        disown || true
        wait_for 60 mariadbd mysql_ok || { tail -20 "$STATE/log/mariadb.log" >&2; die "MariaDB did not start"; }
        wait_for 10 pidfile test -s "$PIDS/mariadbd.pid" || die "MariaDB wrote no pid file"
        mysql --defaults-file="$MYCNF" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
        log "MariaDB up (pid $(pid_of mariadbd), port $MYSQL_PORT)"
    fi
    if ! alive slurmdbd; then
        rm -f "$PIDS/slurmdbd.pid"
        slurmdbd 9>&- </dev/null >>"$STATE/log/slurmdbd.log" 2>&1 || die "slurmdbd did not start (log: $STATE/log/slurmdbd.log)"
        wait_for 30 slurmdbd dbd_ok || { tail -20 "$STATE/log/slurmdbd.log" >&2; die "slurmdbd does not answer"; }
        log "slurmdbd up (pid $(pid_of slurmdbd))"
    fi
    # Register the cluster, an account and the users (sacctmgr -i: no prompt). Idempotent.
    user=${SUDO_USER:-$(id -un)}
    exists() { [ -n "$(timeout 10 sacctmgr -n -P show "$@" 2>/dev/null)" ]; }
    exists cluster "$CLUSTER" format=cluster || timeout 20 sacctmgr -i add cluster "$CLUSTER" >/dev/null
    exists account jobkit format=account || timeout 20 sacctmgr -i add account jobkit Cluster="$CLUSTER" Description=jobkit Organization=jobkit >/dev/null
    for u in $(printf "%s\n" root "$user" | sort -u); do
        exists association user="$u" account=jobkit cluster="$CLUSTER" format=user \
            || timeout 20 sacctmgr -i add user "$u" Account=jobkit Cluster="$CLUSTER" >/dev/null
    done
    log "accounting registered (cluster $CLUSTER, account jobkit, users $(printf "%s " root "$user" | tr " " "\n" | sort -u | xargs))"
fi

if ! alive slurmctld; then
    rm -f "$PIDS/slurmctld.pid"
    slurmctld -f "$CONF" 9>&- </dev/null >>"$STATE/log/slurmctld.log" 2>&1 || die "slurmctld did not start (log: $STATE/log/slurmctld.log)"
    wait_for 30 slurmctld ctld_ok || { tail -20 "$STATE/log/slurmctld.log" >&2; die "slurmctld does not answer"; }
    log "slurmctld up (pid $(pid_of slurmctld), port $CTLD_PORT)"
fi

if ! alive slurmd; then
    rm -f "$PIDS/slurmd.pid"
    slurmd -f "$CONF" -N "$HOST" 9>&- </dev/null >>"$STATE/log/slurmd.log" 2>&1 || die "slurmd did not start (log: $STATE/log/slurmd.log)"
    wait_for 20 slurmd test -s "$PIDS/slurmd.pid" || die "slurmd wrote no pid file (log: $STATE/log/slurmd.log)"
    log "slurmd up (pid $(pid_of slurmd))"
fi

# Wait for the node; a node left DOWN/DRAINED by an earlier run is resumed.
if ! wait_for 30 node node_ready; then
    st=$(node_state)
    case "$st" in
        down*|drain*|unknown*|*"*") scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    wait_for 30 node node_ready || { tail -5 "$STATE/log/slurmd.log" >&2; die "node $HOST is '$(node_state)', not idle (logs: $STATE/log)"; }
fi
log "node $HOST is $(node_state)"
link_conf
print_usage
