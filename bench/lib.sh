# Shell helpers shared by bench/compare.sh and bench/callgrind.sh: finding or installing the tools,
# a throw-away PostgreSQL, sluice processes (one per binary under test), cleanup. Sourced, not run.
#
# A script sets ROOT, BENCH and PY, sources this file, then calls in this order:
#   sluice_spec NAME[=PATH] ...   while parsing its options (--sluice)
#   bench_tools; sluice_binaries (builds the tree when needed); bench_workdir
#   pg_start AUTH; pg_bench_db SCALE [PASSWORD]
#   SLUICE_TOML=...; sluice_prepare NAME; start_sluice NAME; wait_ready ...
# and gets everything it started stopped (and its work dir removed) when it exits.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools: install what is missing.

apt_install() {
    [ "$(id -u)" = 0 ] || die "missing $*; install it (apt-get install $*) or run as root"
    log "installing $*"
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

find_pg_bin() {
    local d
    for d in ${PG_BIN:-} $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
}

# Sets PGB (PostgreSQL's bin dir), PGBENCH, PSQL; makes sure python3 and setpriv exist.
bench_tools() {
    PGB=$(find_pg_bin)
    if [ -z "$PGB" ]; then apt_install postgresql postgresql-contrib; PGB=$(find_pg_bin); fi
    [ -n "$PGB" ] || die "no PostgreSQL server binaries found"
    PGBENCH=$PGB/pgbench; [ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench || true)
    PSQL=$PGB/psql; [ -x "$PSQL" ] || PSQL=$(command -v psql || true)
    if [ -z "$PGBENCH" ] || [ -z "$PSQL" ]; then
        apt_install postgresql-client postgresql-contrib
        PGBENCH=$(command -v pgbench); PSQL=$(command -v psql)
    fi
    command -v "$PY" >/dev/null || apt_install python3
    command -v setpriv >/dev/null || apt_install util-linux
}

# PgBouncer built from source by ../shared/peers/build.sh (1.25: max_prepared_statements works in
# transaction mode) is preferred to the distribution's. Sets PGBOUNCER and PGBOUNCER_VERSION.
PEERS=${PEERS:-/opt/sluice-peers}
find_pgbouncer() {
    PGBOUNCER=${PGBOUNCER_BIN:-}
    if [ -z "$PGBOUNCER" ] && [ -x "$PEERS/pgbouncer/bin/pgbouncer" ]; then PGBOUNCER=$PEERS/pgbouncer/bin/pgbouncer; fi
    if [ -z "$PGBOUNCER" ]; then
        command -v pgbouncer >/dev/null || apt_install pgbouncer
        PGBOUNCER=$(command -v pgbouncer)
    fi
    [ -x "$PGBOUNCER" ] || die "no PgBouncer binary at $PGBOUNCER"
    PGBOUNCER_VERSION=$("$PGBOUNCER" --version | sed -n 's/^PgBouncer \([0-9.]*\).*/\1/p' | head -1)
}
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

# PgDoorman (a multi-threaded Rust pooler) built by ../shared/peers/build.sh pg_doorman, or
# $PGDOORMAN_BIN. Not installed when missing (it is a 7-minute Rust build from a tarball kept
# outside this repository): PGDOORMAN is left empty and the caller runs without it. Sets
# PGDOORMAN and PGDOORMAN_VERSION.
find_pgdoorman() {
    PGDOORMAN=${PGDOORMAN_BIN:-}
    if [ -z "$PGDOORMAN" ] && [ -x "$PEERS/pg_doorman/pg_doorman" ]; then PGDOORMAN=$PEERS/pg_doorman/pg_doorman; fi
    PGDOORMAN_VERSION=""
    [ -n "$PGDOORMAN" ] || return 0
    [ -x "$PGDOORMAN" ] || die "no PgDoorman binary at $PGDOORMAN"
    PGDOORMAN_VERSION=$("$PGDOORMAN" --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1)
}

# Many clients need many descriptors: pgbench, the poolers and the idle-connection holder inherit this.
raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
    NOFILE=$(ulimit -n)
}

# ---------------------------------------------------------------------------------------------
# The sluice binaries under test. `--sluice NAME=PATH` names a binary; `--sluice NAME` (no path)
# is the release build of this tree, built unless --no-build; no --sluice at all means one
# target called `sluice`, the tree's build.

SLUICE_SPECS=()
SLUICE_NAMES=()
declare -A SL_BIN=() SL_DESC=() SL_PORT=() SL_PID=() SL_DIR=()
SLUICE_WRAP=() # a command prefix for every sluice started (callgrind.sh: valgrind)

# Thread counts (--threads "1 2"): every sluice binary runs once per count N, as its own target
# NAME-wN with `workers = N`; a single count keeps the names and only sets `workers`.
declare -A SL_WORKERS=()
sluice_threads() { # "N ..." (after sluice_binaries)
    local counts name n t names=()
    read -r -a counts <<<"$1"
    [ ${#counts[@]} -gt 0 ] || return 0
    for n in "${counts[@]}"; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--threads: '$n' is not a thread count"; done
    for name in "${SLUICE_NAMES[@]}"; do
        for n in "${counts[@]}"; do
            if [ ${#counts[@]} = 1 ]; then t=$name; else t=$name-w$n; fi
            SL_BIN[$t]=${SL_BIN[$name]}
            SL_DESC[$t]="${SL_DESC[$name]}, workers $n"
            SL_WORKERS[$t]=$n
            names+=("$t")
        done
    done
    SLUICE_NAMES=("${names[@]}")
}

sluice_spec() { # NAME[=PATH]
    local name=${1%%=*} s
    [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "--sluice $1: the name must be letters, digits, '_', '.', '-'"
    case "$name" in direct|pgbouncer|pgdoorman*|pg) die "--sluice $1: '$name' is taken by another target" ;; esac
    for s in "${SLUICE_SPECS[@]}"; do [ "${s%%=*}" != "$name" ] || die "--sluice $name given twice"; done
    SLUICE_SPECS+=("$1")
}

# Fills SLUICE_NAMES, SL_BIN and SL_DESC (for the report) from the specs; builds the tree if one
# of them is the tree's build (BUILD=1, no SLUICE_BIN). The tree's binary is $SLUICE_BIN or
# $CARGO_TARGET_DIR/release/sluice.
sluice_binaries() {
    local spec name path tree_needed=0 target_dir tree rev
    [ ${#SLUICE_SPECS[@]} -gt 0 ] || SLUICE_SPECS=(sluice)
    for spec in "${SLUICE_SPECS[@]}"; do [[ "$spec" == *=* ]] || tree_needed=1; done
    target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    tree=${SLUICE_BIN:-$target_dir/release/sluice}
    if [ "$tree_needed" = 1 ] && [ "${BUILD:-1}" = 1 ] && [ -z "${SLUICE_BIN:-}" ]; then
        command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
        log "building sluice (release) into $target_dir"
        (cd "$ROOT" && CARGO_TARGET_DIR=$target_dir cargo build --release --bin sluice >&2)
    fi
    rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(cd "$ROOT" && git status --porcelain -- src proto Cargo.toml 2>/dev/null)" ]; then rev="$rev+dirty"; fi
    for spec in "${SLUICE_SPECS[@]}"; do
        name=${spec%%=*}
        if [[ "$spec" == *=* ]]; then
            path=${spec#*=}
            [ -x "$path" ] || die "--sluice $spec: no executable at $path"
            path=$(realpath "$path")
            SL_DESC[$name]="$path, sha256 $(sha256sum "$path" | cut -c1-12)"
        else
            path=$tree
            [ -x "$path" ] || die "no sluice binary at $path"
            SL_DESC[$name]="$rev, release build of this tree"
        fi
        SL_BIN[$name]=$path
        SLUICE_NAMES+=("$name")
    done
}

# ---------------------------------------------------------------------------------------------
# Work dir, run-as user, cleanup.

# Sets WORK (a fresh temp dir), OUT (default $WORK/out), RUN_AS and OWNER; installs the cleanup.
bench_workdir() { # prefix
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$WORK"
    OUT=${OUT:-$WORK/out}
    mkdir -p "$OUT"
    # PostgreSQL and PgBouncer refuse to run as root: as root, run them as nobody.
    if [ "$(id -u)" = 0 ]; then
        RUN_AS=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups --)
        OWNER="$(id -u nobody):$(id -g nobody)"
    else
        RUN_AS=()
        OWNER="$(id -u):$(id -g)"
    fi
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

PG_PID="" BOUNCER_PID="" HOLD_PID="" KEEP=${KEEP:-0}
declare -A PD_PID=() # PgDoorman processes by target name (compare.sh)
stop_pid() { # pid signal [seconds before SIGKILL, default 10]
    local pid=$1 sig=$2 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 $((${3:-10} * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
bench_cleanup() {
    local rc=$? name
    set +e
    stop_pid "$HOLD_PID" TERM
    for name in "${SLUICE_NAMES[@]}"; do stop_pid "${SL_PID[$name]:-}" TERM; done
    for name in "${!PD_PID[@]}"; do stop_pid "${PD_PID[$name]}" TERM; done
    stop_pid "$BOUNCER_PID" TERM
    stop_pid "$PG_PID" INT
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then
        log "kept $WORK"
    else
        case "$OUT" in "$WORK"/*) ;; *) log "results kept in $OUT" ;; esac
        rm -rf "$WORK"
    fi
    exit "$rc"
}

freeport() { "$PY" "$BENCH/benchlib.py" freeport; }

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# initdb and start PostgreSQL in $WORK/pg on a free port; TCP logins use AUTH (scram-sha-256 or
# trust). Sets PGPORT, PGDATA, PG_PID, SUPER (psql as the superuser) and PG_VERSION.
pg_start() { # auth
    local i
    PGPORT=$(freeport)
    PGDATA=$WORK/pg/data
    mkdir -p "$WORK/pg/sock"
    chown -R "$OWNER" "$WORK/pg"
    log "initdb ($PGB), PostgreSQL on 127.0.0.1:$PGPORT"
    (cd "$WORK" && "${RUN_AS[@]}" "$PGB/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-locale >"$WORK/pg/initdb.log" 2>&1) \
        || { cat "$WORK/pg/initdb.log" >&2; die "initdb failed"; }
    cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK/pg/sock'
max_connections = 1100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
logging_collector = off
log_min_messages = warning
EOF
    cat >"$PGDATA/pg_hba.conf" <<EOF
local all postgres trust
host  all all 127.0.0.1/32 $1
EOF
    (cd "$WORK" && exec "${RUN_AS[@]}" "$PGB/postgres" -D "$PGDATA" >"$WORK/pg/postgres.log" 2>&1) &
    PG_PID=$!
    for i in $(seq 1 100); do
        "$PGB/pg_isready" -q -h "$WORK/pg/sock" -p "$PGPORT" && break
        kill -0 "$PG_PID" 2>/dev/null || { cat "$WORK/pg/postgres.log" >&2; die "postgres did not start"; }
        sleep 0.2
    done
    SUPER=("$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PGPORT" -U postgres)
    PG_VERSION=$("${SUPER[@]}" -d postgres -At -c "SHOW server_version")
}

# Role `bench` (with PASSWORD if given) owning database `bench`, filled by pgbench -i -s SCALE.
# Exports PGUSER, PGDATABASE, PGHOST (and PGPASSWORD) for the clients started afterwards.
pg_bench_db() { # scale [password]
    if [ -n "${2:-}" ]; then
        "${SUPER[@]}" -d postgres -c "CREATE ROLE bench LOGIN PASSWORD '$2'" -c "CREATE DATABASE bench OWNER bench"
        export PGPASSWORD=$2
    else
        "${SUPER[@]}" -d postgres -c "CREATE ROLE bench LOGIN" -c "CREATE DATABASE bench OWNER bench"
    fi
    export PGUSER=bench PGDATABASE=bench PGHOST=127.0.0.1
    log "pgbench -i -s $1"
    "$PGBENCH" -i -s "$1" -q -p "$PGPORT" bench >"$WORK/pg/init.log" 2>&1 || { cat "$WORK/pg/init.log" >&2; die "pgbench -i failed"; }
}

# ---------------------------------------------------------------------------------------------
# Poolers

wait_ready() { # name port pid logdir: until `SELECT 1` works through it
    local i
    for i in $(seq 1 150); do
        "$PSQL" -X -q -At -h 127.0.0.1 -p "$2" -c "SELECT 1" >/dev/null 2>&1 && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.2
    done
    log "$1 did not come up; its log:"; tail -20 "$4"/*.log >&2 || true
    die "$1 not ready"
}

# A port, a dir ($WORK/sluice or $WORK/sluice.NAME) and a config for sluice NAME: the listen line,
# then $SLUICE_TOML (the rest of [pooler] and the other sections).
sluice_prepare() { # name
    local name=$1 dir
    if [ "$name" = sluice ]; then dir=$WORK/sluice; else dir=$WORK/sluice.$name; fi
    mkdir -p "$dir"
    SL_DIR[$name]=$dir
    SL_PORT[$name]=$(freeport)
    {
        printf '[pooler]\nlisten = "127.0.0.1:%s"\n' "${SL_PORT[$name]}"
        [ -z "${SL_WORKERS[$name]:-}" ] || printf 'workers = %s\n' "${SL_WORKERS[$name]}"
        printf '%s\n' "$SLUICE_TOML"
    } >"$dir/sluice.toml"
}
start_sluice() { # name
    local name=$1 dir=${SL_DIR[$1]}
    (cd "$WORK" && SLUICE_LOG=${SLUICE_LOG:-warn} exec "${SLUICE_WRAP[@]}" "${SL_BIN[$name]}" --config "$dir/sluice.toml" >>"$dir/sluice.log" 2>&1) &
    SL_PID[$name]=$!
}
stop_sluice() { # name [seconds before SIGKILL]
    local pid=${SL_PID[$1]:-}
    stop_pid "$pid" TERM "${2:-10}"
    [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    SL_PID[$1]=""
}
