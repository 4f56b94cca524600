#!/usr/bin/env bash
# Bring up a miniature university Slurm cluster on loopback: munged, MariaDB, slurmdbd, slurmctld and one
# slurmd per node (n1, n2: CPU nodes; n3: two `a100` GPUs declared through GRES), each slurmd in its own
# UTS + mount namespace where its hostname is the node's and /etc/hosts resolves every node.
# Accounts physics (root's only one) and bio, QoS normal and short (MaxWall 5 min). See slurm/README.md.
#
#   slurm/up.sh [--no-accounting] [--port-base N] [--no-symlink] [STATE_DIR]
#
# STATE_DIR (default <repo>/.slurm, or $JOBKIT_SLURM_STATE) holds everything: generated configs
# (etc/), spool, logs, pid files, the munge key and MariaDB's datadir — `slurm/down.sh --purge` is one rm.
# Idempotent: when the cluster of STATE_DIR already runs, it changes nothing and returns in about a second;
# when only some of its daemons run, it starts the missing ones.
#
# A state dir remembers its mode (accounting, ports, nodes): later calls without options reuse it.
#   --no-accounting   no MariaDB/slurmdbd: AccountingStorageType=accounting_storage/none, so `sacct`
#                     fails (as on clusters without accounting); squeue/scontrol still answer.
#                     Same as JOBKIT_SLURM_ACCOUNTING=0.
#   --port-base N     slurmctld N, slurmd of n1 N+1, slurmdbd N+2, MariaDB N+3, slurmd of n2 N+4 and
#                     of n3 N+5: all within N..N+9 (default 6817 = Slurm's own).
#                     A second cluster on other ports can run beside the default one
#                     (e.g. `--no-accounting --port-base 7817 /tmp/noacct`); it never takes the
#                     /etc/slurm/slurm.conf link, so use it through SLURM_CONF.
#   --no-symlink      do not point /etc/slurm/slurm.conf at the generated config.
#   --enforce-memory  (or JOBKIT_SLURM_ENFORCE_MEMORY=1) end a job step past its --mem, as cgroups would:
#                     no cgroups here, so jobacct_gather polls every 5 s and OverMemoryKill kills (sacct:
#                     job FAILED, step CANCELLED with MaxRSS over ReqMem). Off by default: torch alone
#                     holds ~550 MB resident and many tests ask for mem = "500M". The OOM tests need it.
#
# Needs root (installs Debian's packages when missing, runs each slurmd in namespaces of its own,
# links /etc/slurm/slurm.conf).
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
        --enforce-memory) JOBKIT_SLURM_ENFORCE_MEMORY=1 ;;
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
DEV=$STATE/dev
mkdir -p "$ETC" "$PIDS" "$STATE/log" "$STATE/ctld" "$STATE/run" "$STATE/mysql" "$DEV"
chmod 755 "$STATE" "$STATE/run"
[ ${#MUNGE_SOCKET} -lt 100 ] || die "state dir path too long for a unix socket: $STATE (use a shorter STATE_DIR)"
export SLURM_CONF=$CONF

# Only one up.sh per state dir at a time (fd 9; closed for every daemon we start).
exec 9>"$STATE/up.lock"
flock -w 300 9 || die "another slurm/up.sh holds $STATE/up.lock"

# The nodes are those of the template's NodeName lines; node i's slurmd listens on PORT_BASE+1 (i=1),
# else PORT_BASE+2+i (n2 +4, n3 +5): every port of a cluster lies within PORT_BASE..PORT_BASE+9.
NODES=$(sed -n 's/^NodeName=\([^ ]*\) .*/\1/p' "$HERE/slurm.conf.in" | xargs)
[ -n "$NODES" ] || die "slurm/slurm.conf.in declares no NodeName"
slurmd_port() {  # slurmd_port NODE
    local i=0 n
    for n in $NODES; do i=$((i + 1)); [ "$n" = "$1" ] && break; done
    if [ "$i" = 1 ]; then echo $((PORT_BASE + 1)); else echo $((PORT_BASE + 2 + i)); fi
}

# The mode (accounting or not, ports, nodes) a state dir was started with stays with it.
MODE="accounting=$ACCOUNTING port_base=$PORT_BASE nodes=$(echo $NODES | tr ' ' ,)"
if [ -f "$STATE/mode" ] && [ "$(cat "$STATE/mode")" != "$MODE" ]; then
    running=0
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        d=$(basename "$f" .pid); d=${d%%-*}; p=$(cat "$f" 2>/dev/null || true)
        case "$d" in slurmctld|slurmd|slurmdbd) ;; *) continue ;; esac
        [ -n "$p" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = "$d" ] && running=1
    done
    [ "$running" = 0 ] || die "$STATE runs with '$(cat "$STATE/mode")', asked '$MODE': run slurm/down.sh $STATE first"
fi

# ---------------------------------------------------------------------------------------------- configs
HOST=$(hostname -s)
CPUS=2   # per node, as the template says (config_overrides: the machine may have fewer cores)
MEM_TOTAL=$(free -m | awk '/^Mem:/ {print $2}')
REAL_MEM=$(( MEM_TOTAL * 90 / 100 ))   # a modest node: 8000 MB (a run asks 4096 MB by default), less on a small machine
[ "$REAL_MEM" -le 8000 ] || REAL_MEM=8000
DEF_MEM_PER_CPU=1024
[ $(( DEF_MEM_PER_CPU * CPUS )) -le "$REAL_MEM" ] || DEF_MEM_PER_CPU=$(( REAL_MEM / CPUS ))
CTLD_PORT=$PORT_BASE; DBD_PORT=$((PORT_BASE + 2)); MYSQL_PORT=$((PORT_BASE + 3))
PORT_SED=()
for n in $NODES; do PORT_SED+=(-e "s|@SLURMD_PORT_$n@|$(slurmd_port "$n")|g"); done
if [ "$PORT_BASE" = 6817 ]; then FIRST_JOB_ID=1; else FIRST_JOB_ID=$(( PORT_BASE * 100 )); fi
if [ ! -s "$STATE/dbpass" ]; then (umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$STATE/dbpass"); fi
DB_PASS=$(cat "$STATE/dbpass")
if [ "$ACCOUNTING" = 1 ]; then
    ACCT_BLOCK="AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nAccountingStoragePort=$DBD_PORT\n# for slurmdbd this names the munge socket (ours is not the system one)\nAccountingStoragePass=$MUNGE_SOCKET\n# a job needs an association (account), stays within its QoS limits, uses only QoS it may\nAccountingStorageEnforce=associations,limits,qos\nAccountingStorageTRES=gres/gpu"
else
    ACCT_BLOCK="# no accounting (slurm/up.sh --no-accounting): sacct does not work\nAccountingStorageType=accounting_storage/none"
fi

if [ "${JOBKIT_SLURM_ENFORCE_MEMORY:-0}" = 1 ]; then
    MEM_BLOCK="# slurm/up.sh --enforce-memory: a step past its --mem is killed (polled every 5 s; no cgroups)\nJobAcctGatherFrequency=task=5\nJobAcctGatherParams=OverMemoryKill"
else
    MEM_BLOCK="JobAcctGatherFrequency=30"
fi

render() {  # template -> stdout
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" "${PORT_SED[@]}" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@MYSQL_PORT@|$MYSQL_PORT|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@REAL_MEM@|$REAL_MEM|g" -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
        -e "s|@FIRST_JOB_ID@|$FIRST_JOB_ID|g" -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@ACCOUNTING@|$ACCT_BLOCK|g" \
        -e "s|@MEMORY@|$MEM_BLOCK|g" "$1"
}
install_file() {  # install_file TEMPLATE DEST MODE: rewrite DEST only when its content changes
    local tmp; tmp=$(mktemp "$2.XXXX")
    render "$1" >"$tmp"; chmod "$3" "$tmp"
    if cmp -s "$tmp" "$2"; then rm -f "$tmp"; return 1; fi
    mv -f "$tmp" "$2"; return 0
}

# ---------------------------------------------------------------------------------------------- daemons
pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
alive() {  # alive NAME: the PID in pids/NAME.pid runs, and is that daemon (slurmd-n1: a slurmd), not a recycled PID
    local p; p=$(pid_of "$1")
    [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "${1%%-*}" ] && ! zombie "$p"
}
zombie() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }   # PID 1 may reap late: Z = stopped
wait_for() {  # wait_for SECONDS WHAT CMD...
    local limit=$1 what=$2; shift 2
    local end=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_states() { timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null | sort -u; }   # "n1 idle" lines
nodes_ready() {  # every node of the template is registered and usable
    local states n; states=$(node_states)
    for n in $NODES; do
        case "$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$states")" in
            idle|mixed|allocated|completing|planned|reserved) ;;
            *) return 1 ;;
        esac
    done
}
munge_ok() { munge -n -S "$MUNGE_SOCKET" </dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null; }
mysql_ok() { mysqladmin --defaults-file="$MYCNF" -uroot ping; }
dbd_ok() { timeout 10 sacctmgr -n -P show cluster format=cluster; }
ctld_ok() { timeout 10 scontrol ping | grep -q UP; }

required_daemons() {
    if [ "$ACCOUNTING" = 1 ]; then echo munged mariadbd slurmdbd slurmctld; else echo munged slurmctld; fi
    for n in $NODES; do echo "slurmd-$n"; done
}

print_usage() {
    local parts; parts=$(timeout 10 sinfo -h -o '%P' 2>/dev/null | tr '\n' ' ')
    local link="not linked from /etc/slurm/slurm.conf: export SLURM_CONF in every shell"
    [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$CONF" ] && link="also linked from /etc/slurm/slurm.conf"
    cat >&2 <<EOF
Slurm cluster '$CLUSTER' is up: nodes $NODES (partitions: ${parts:-?}; accounting: $([ "$ACCOUNTING" = 1 ] && echo "slurmdbd, accounts physics/bio, QoS normal/short" || echo none)).
  state dir: $STATE   (logs in $STATE/log)
  config:    $CONF   ($link)
  From another shell:
    export SLURM_CONF=$CONF
    sinfo -N -o '%N %P %T %f %G'; sbatch -p test -t 5 --wrap 'hostname'; squeue$([ "$ACCOUNTING" = 1 ] && echo '; sacct')
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

# Fast path: everything of this state dir runs and every node is up -> change nothing.
all_alive=1
for d in $(required_daemons); do alive "$d" || all_alive=0; done
if [ "$all_alive" = 1 ] && [ -f "$CONF" ] && nodes_ready; then
    for t in slurm.conf gres.conf; do
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
for pair in "slurmctld:$CTLD_PORT" $(for n in $NODES; do echo "slurmd-$n:$(slurmd_port "$n")"; done); do
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
install_file "$HERE/gres.conf.in" "$ETC/gres.conf" 644 || true
# The GPUs' device files: character devices (like /dev/null), so that Slurm sets CUDA_VISIBLE_DEVICES.
while read -r f; do   # File=DIR/nvidia[0-1] or File=DIR/nvidia0
    if [[ "$f" =~ ^(.*)\[([0-9]+)-([0-9]+)\]$ ]]; then
        devs=(); for i in $(seq "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"); do devs+=("${BASH_REMATCH[1]}$i"); done
    else devs=("$f"); fi
    for dev in "${devs[@]}"; do [ -c "$dev" ] || { rm -f "$dev"; mknod -m 666 "$dev" c 1 3; }; done
done < <(sed -n 's/^NodeName=.* File=\([^ ]*\).*/\1/p' "$ETC/gres.conf")
# The nodes' /etc/hosts (bind-mounted in their namespaces only): the machine's, plus every node name.
{ grep -v '# slurm/up.sh nodes$' /etc/hosts; echo "127.0.0.1 $NODES # slurm/up.sh nodes"; } >"$ETC/hosts.new"
if cmp -s "$ETC/hosts.new" "$ETC/hosts"; then rm -f "$ETC/hosts.new"; else chmod 644 "$ETC/hosts.new"; mv -f "$ETC/hosts.new" "$ETC/hosts"; fi
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
    # Register the cluster, accounts, QoS and users (sacctmgr -i: no prompt). Three reads decide what is
    # missing, so a restart only reads, and a state dir of an older layout converges to this one.
    user=${SUDO_USER:-$(id -un)}
    users=$(printf "%s\n" root "$user" | sort -u | xargs)
    sam() { timeout 20 sacctmgr -i "$@" >/dev/null; }
    show() { timeout 10 sacctmgr -n -P show "$@" 2>/dev/null; }
    assocs=$(show association cluster="$CLUSTER" format=account,user,qos,defaultqos)   # "physics|root|normal,short|normal"
    qos=$(show qos format=name,maxwall,flags)                                          # "short|00:05:00|DenyOnLimit"
    defaults=$(show user format=user,defaultaccount)                                   # "root|physics"
    if [ -z "$assocs" ]; then   # `add cluster` also makes the association root/root, removed below
        sam add cluster "$CLUSTER"
        assocs=$(show association cluster="$CLUSTER" format=account,user,qos,defaultqos)
    fi
    missing=$(for a in physics bio; do grep -q "^$a||" <<<"$assocs" || echo "$a"; done | paste -sd,)
    [ -z "$missing" ] || sam add account "$missing" Cluster="$CLUSTER" Organization=jobkit
    grep -q '^normal|' <<<"$qos" || sam add qos normal
    if ! grep -q '^short|' <<<"$qos"; then
        sam add qos short MaxWall=00:05:00 Flags=DenyOnLimit
    elif ! grep -qx 'short|00:05:00|DenyOnLimit' <<<"$qos"; then
        sam modify qos short set MaxWall=00:05:00 Flags=DenyOnLimit
    fi
    for u in $users; do   # an association with physics only: QoS normal (its default) and short
        if ! grep -q "^physics|$u|" <<<"$assocs"; then
            sam add user "$u" Account=physics Cluster="$CLUSTER" QOS=normal,short DefaultQOS=normal
        elif ! grep -qx "physics|$u|normal,short|normal" <<<"$assocs"; then
            sam modify user "$u" where account=physics cluster="$CLUSTER" set QOS=normal,short DefaultQOS=normal
        fi
        grep -qx "$u|physics" <<<"$defaults" || sam modify user "$u" set DefaultAccount=physics
        for a in $(awk -F'|' -v u="$u" '$2 == u && $1 != "physics" {print $1}' <<<"$assocs" | sort -u); do
            sam remove user "$u" where account="$a" cluster="$CLUSTER"
        done
    done
    log "accounting registered (cluster $CLUSTER; accounts physics, bio; QoS normal, short; users $users in physics)"
fi

if ! alive slurmctld; then
    rm -f "$PIDS/slurmctld.pid"
    slurmctld -f "$CONF" 9>&- </dev/null >>"$STATE/log/slurmctld.log" 2>&1 || die "slurmctld did not start (log: $STATE/log/slurmctld.log)"
    wait_for 30 slurmctld ctld_ok || { tail -20 "$STATE/log/slurmctld.log" >&2; die "slurmctld does not answer"; }
    log "slurmctld up (pid $(pid_of slurmctld), port $CTLD_PORT)"
fi

# One slurmd per node, each in its own UTS + mount namespace: there its hostname is the node's name and
# the cluster's hosts file and config dir are bind-mounted over /etc/hosts and /etc/slurm, so jobs see
# "n2", resolve every node and find the config; the machine's own /etc is untouched. The network stays
# shared (loopback). slurmd daemonizes: its PID (pids/slurmd-NODE.pid) keeps the namespace alive.
[ "$(id -u)" = 0 ] || die "the nodes' slurmd run in their own namespaces (unshare --uts --mount): that needs root"
mkdir -p /etc/slurm   # the mount point (the machine's /etc/slurm itself is not changed)
# Where namespaces are not allowed (a container without CAP_SYS_ADMIN) the nodes still schedule, but
# their jobs see the machine's hostname and cannot resolve n1..: say so rather than fail.
NS=(unshare --uts --mount --propagation private --)
if ! unshare --uts --mount --propagation private true 2>/dev/null; then
    log "WARNING: cannot create UTS/mount namespaces here: the nodes' jobs will see hostname $HOST and not resolve $NODES"
    NS=()
fi
for n in $NODES; do
    alive "slurmd-$n" && continue
    rm -f "$PIDS/slurmd-$n.pid"
    mkdir -p "$STATE/slurmd-$n"
    if [ ${#NS[@]} -gt 0 ]; then
        "${NS[@]}" /bin/sh -c \
            'hostname "$1" && mount --bind "$2" /etc/hosts && mount --bind "$3" /etc/slurm && exec slurmd -f "$4" -N "$1"' \
            sh "$n" "$ETC/hosts" "$ETC" "$CONF" 9>&- </dev/null >>"$STATE/log/slurmd-$n.out" 2>&1
    else
        slurmd -f "$CONF" -N "$n" 9>&- </dev/null >>"$STATE/log/slurmd-$n.out" 2>&1
    fi || die "slurmd of $n did not start (logs: $STATE/log/slurmd-$n.log, $STATE/log/slurmd-$n.out)"
done
for n in $NODES; do
    wait_for 20 slurmd test -s "$PIDS/slurmd-$n.pid" || die "slurmd of $n wrote no pid file (log: $STATE/log/slurmd-$n.log)"
done
log "slurmd up on $(for n in $NODES; do printf '%s (pid %s, port %s) ' "$n" "$(pid_of "slurmd-$n")" "$(slurmd_port "$n")"; done)"

# Wait for the nodes; a node left DRAINED or DOWN by an earlier run (the reason survives restarts) is
# resumed as soon as its slurmd has registered.
end=$(( $(date +%s) + 45 ))
until nodes_ready; do
    [ "$(date +%s)" -lt "$end" ] || { node_states >&2; die "nodes not idle after 45 s (logs: $STATE/log/slurmd-*.log)"; }
    while read -r n st; do
        case "$st" in
            drain*|down|fail|draining|drained) scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 \
                && log "resumed node $n (was $st)" || true ;;
        esac
    done < <(node_states)
    sleep 0.3
done
log "nodes: $(node_states | xargs)"
link_conf
print_usage
