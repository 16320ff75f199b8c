#!/usr/bin/env bash
# Benchmark sluice against PgBouncer and direct PostgreSQL on this machine. See bench/README.md.
#
#   bench/compare.sh [--quick] [--rounds N] [--duration SECS] [--clients "1 16 64"]
#                    [--modes "simple extended prepared"] [--idle "1000 10000"] [--no-build]
#                    [--ping SECS] [--keep] [--out DIR]
#
# Everything it starts (PostgreSQL, PgBouncer, sluice, load generators) is stopped on exit and its
# temporary directory removed (unless --keep).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
PY=${PYTHON:-python3}

QUICK=0
ROUNDS=3
DURATION=10
CLIENTS="1 16 64 256 1000"
MODES="simple extended prepared"
IDLE="1000 10000"
PING_SECS=10
BUILD=1
KEEP=0
OUT=""
SCALE=10
POOL_SIZE=20
PASSWORD="bench-$(date +%s)-pw"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
# --quick sets the defaults below; options given with it still win, wherever they stand.
for arg in "$@"; do
    if [ "$arg" = --quick ]; then
        # Under three minutes once sluice is built: 19 short runs (about 3 s measured each), 1,000 idle clients.
        QUICK=1 ROUNDS=1 DURATION=3 CLIENTS="16 128" IDLE="1000" PING_SECS=2
    fi
done
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --modes) MODES=$2; shift ;;
        --idle) IDLE=$2; shift ;;
        --ping) PING_SECS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 64 ;;
    esac
    shift
done

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
PGB=$(find_pg_bin)
if [ -z "$PGB" ]; then apt_install postgresql postgresql-contrib; PGB=$(find_pg_bin); fi
[ -n "$PGB" ] || die "no PostgreSQL server binaries found"
PGBENCH=$PGB/pgbench; [ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench || true)
PSQL=$PGB/psql; [ -x "$PSQL" ] || PSQL=$(command -v psql || true)
if [ -z "$PGBENCH" ] || [ -z "$PSQL" ]; then
    apt_install postgresql-client postgresql-contrib
    PGBENCH=$(command -v pgbench); PSQL=$(command -v psql)
fi
command -v pgbouncer >/dev/null || apt_install pgbouncer
command -v "$PY" >/dev/null || apt_install python3
command -v setpriv >/dev/null || apt_install util-linux

PGBOUNCER_VERSION=$(pgbouncer --version | sed -n 's/^PgBouncer \([0-9.]*\).*/\1/p' | head -1)
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
PGBOUNCER_PREPARED=0
version_ge "$PGBOUNCER_VERSION" 1.21 && PGBOUNCER_PREPARED=1

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SLUICE=${SLUICE_BIN:-$TARGET_DIR/release/sluice}
if [ "$BUILD" = 1 ] && [ -z "${SLUICE_BIN:-}" ]; then
    command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
    log "building sluice (release) into $TARGET_DIR"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --bin sluice >&2)
fi
[ -x "$SLUICE" ] || die "no sluice binary at $SLUICE"

# Many clients need many descriptors: pgbench, the poolers and the idle-connection holder inherit this.
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -gt 65536 ]; then ulimit -n 65536; else ulimit -n "$HARD"; fi
NOFILE=$(ulimit -n)

# ---------------------------------------------------------------------------------------------
# Work dir, run-as user, cleanup.

WORK=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$WORK"
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT" "$WORK/pgbench-logs"
RESULTS=$OUT/results.jsonl MEMORY=$OUT/memory.jsonl META=$OUT/meta.json
: >"$RESULTS"; : >"$MEMORY"

# PostgreSQL and PgBouncer refuse to run as root: as root, run them as nobody.
if [ "$(id -u)" = 0 ]; then
    RUN_AS=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups --)
    OWNER="$(id -u nobody):$(id -g nobody)"
else
    RUN_AS=()
    OWNER="$(id -u):$(id -g)"
fi

PG_PID="" BOUNCER_PID="" SLUICE_PID="" HOLD_PID=""
stop_pid() { # pid signal
    local pid=$1 sig=$2 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    set +e
    stop_pid "$HOLD_PID" TERM
    stop_pid "$SLUICE_PID" TERM
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
trap cleanup EXIT
trap 'exit 130' INT TERM

freeport() { "$PY" "$BENCH/benchlib.py" freeport; }

# ---------------------------------------------------------------------------------------------
# PostgreSQL

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
host  all all 127.0.0.1/32 scram-sha-256
EOF
(cd "$WORK" && exec "${RUN_AS[@]}" "$PGB/postgres" -D "$PGDATA" >"$WORK/pg/postgres.log" 2>&1) &
PG_PID=$!
for i in $(seq 1 100); do
    "$PGB/pg_isready" -q -h "$WORK/pg/sock" -p "$PGPORT" && break
    kill -0 "$PG_PID" 2>/dev/null || { cat "$WORK/pg/postgres.log" >&2; die "postgres did not start"; }
    sleep 0.2
done
SUPER=("$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PGPORT" -U postgres)
"${SUPER[@]}" -d postgres -c "CREATE ROLE bench LOGIN PASSWORD '$PASSWORD'" -c "CREATE DATABASE bench OWNER bench"
export PGPASSWORD=$PASSWORD PGUSER=bench PGDATABASE=bench PGHOST=127.0.0.1
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -s "$SCALE" -q -p "$PGPORT" bench >"$WORK/pg/init.log" 2>&1 || { cat "$WORK/pg/init.log" >&2; die "pgbench -i failed"; }
PG_VERSION=$("${SUPER[@]}" -d postgres -At -c "SHOW server_version")

# ---------------------------------------------------------------------------------------------
# PgBouncer and sluice

BOUNCER_PORT=$(freeport)
B=$WORK/pgbouncer
mkdir -p "$B"
# The SCRAM secret as PostgreSQL stores it, as a production auth_file (or auth_query) would hold
# it: PgBouncer checks clients against it and logs in to PostgreSQL by SCRAM pass-through. (With a
# plaintext password here, PgBouncer derives a new salted secret, 4096 PBKDF2 rounds, per login.)
SECRET=$("${SUPER[@]}" -d postgres -At -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")
printf '"bench" "%s"\n' "$SECRET" >"$B/userlist.txt"
cat >"$B/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $B/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 20000
listen_backlog = 4096
query_wait_timeout = 60
ignore_startup_parameters = extra_float_digits,options
log_connections = 0
log_disconnections = 0
logfile = $B/pgbouncer.log
EOF
if [ "$PGBOUNCER_PREPARED" = 1 ]; then echo "max_prepared_statements = 200" >>"$B/pgbouncer.ini"; fi
chown -R "$OWNER" "$B"
chmod 600 "$B/userlist.txt"

start_pgbouncer() {
    (cd "$WORK" && exec "${RUN_AS[@]}" pgbouncer "$B/pgbouncer.ini" >>"$B/stdout.log" 2>&1) &
    BOUNCER_PID=$!
}

SLUICE_PORT=$(freeport)
S=$WORK/sluice
mkdir -p "$S"
cat >"$S/sluice.toml" <<EOF
[pooler]
listen = "127.0.0.1:$SLUICE_PORT"
pool_mode = "transaction"
default_pool_size = $POOL_SIZE
max_client_conn = 20000
query_wait_timeout = "60s"

[users.bench]
password = "$PASSWORD"

[databases.bench]
host = "127.0.0.1"
port = $PGPORT
EOF
start_sluice() {
    (cd "$WORK" && SLUICE_LOG=${SLUICE_LOG:-warn} exec "$SLUICE" --config "$S/sluice.toml" >>"$S/sluice.log" 2>&1) &
    SLUICE_PID=$!
}

wait_ready() { # name port pid-var
    local i
    for i in $(seq 1 100); do
        "$PSQL" -X -q -At -h 127.0.0.1 -p "$2" -c "SELECT 1" >/dev/null 2>&1 && return 0
        kill -0 "${!3}" 2>/dev/null || break
        sleep 0.2
    done
    log "$1 did not come up; its log:"; tail -20 "$WORK/$1"/*.log >&2 || true
    die "$1 not ready"
}

log "PgBouncer $PGBOUNCER_VERSION on 127.0.0.1:$BOUNCER_PORT, sluice on 127.0.0.1:$SLUICE_PORT"
start_pgbouncer; wait_ready pgbouncer "$BOUNCER_PORT" BOUNCER_PID
start_sluice; wait_ready sluice "$SLUICE_PORT" SLUICE_PID

# A pooler that died during a run is reported (the run fails) and started again for the next one.
ensure_alive() {
    if ! kill -0 "$BOUNCER_PID" 2>/dev/null; then
        log "PgBouncer died; restarting (see $B/pgbouncer.log)"; start_pgbouncer; wait_ready pgbouncer "$BOUNCER_PORT" BOUNCER_PID
    fi
    if ! kill -0 "$SLUICE_PID" 2>/dev/null; then
        log "sluice died; restarting. Last log lines:"; tail -5 "$S/sluice.log" >&2
        echo "--- restarted after a crash ---" >>"$S/sluice.log"
        start_sluice; wait_ready sluice "$SLUICE_PORT" SLUICE_PID
    fi
}

port_of() { case $1 in direct) echo "$PGPORT" ;; pgbouncer) echo "$BOUNCER_PORT" ;; sluice) echo "$SLUICE_PORT" ;; esac; }
pid_of() { case $1 in direct) echo 0 ;; pgbouncer) echo "$BOUNCER_PID" ;; sluice) echo "$SLUICE_PID" ;; esac; }

SLUICE_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$ROOT" && git status --porcelain -- src proto Cargo.toml 2>/dev/null)" ]; then SLUICE_REV="$SLUICE_REV+dirty"; fi
cat >"$META" <<EOF
{"date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
 "machine": "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//;s/"//g')), $(free -h | awk '/^Mem:/{print $2}') RAM, kernel $(uname -r), open files $NOFILE",
 "postgres": "$PG_VERSION (fsync=off, max_connections=1100, shared_buffers=256MB, pgbench scale $SCALE)",
 "pgbouncer": "$PGBOUNCER_VERSION (transaction mode, pool size $POOL_SIZE, SCRAM)",
 "pgbouncer_version": "$PGBOUNCER_VERSION",
 "sluice": "$SLUICE_REV (release build; transaction mode, pool size $POOL_SIZE, SCRAM)",
 "settings": "$([ "$QUICK" = 1 ] && echo "--quick: ")pgbench -S -j 2 (-j 1 for 1 client), about $DURATION s measured per run after the connection phase, $ROUNDS round(s) alternating direct/PgBouncer/sluice, medians; SELECT 1 ping-pong $PING_SECS s"}
EOF

# ---------------------------------------------------------------------------------------------
# Runs

echo 'SELECT 1;' >"$WORK/select1.sql"

run_one() { # mode clients target round secs
    local mode=$1 clients=$2 target=$3 round=$4 secs=$5 jobs=2 args
    [ "$clients" -lt 2 ] && jobs=1
    if [ "$mode" = ping ]; then
        args=(-n -M simple -f "$WORK/select1.sql" -c 1 -j 1)
    else
        args=(-n -S -M "$mode" -c "$clients" -j "$jobs")
    fi
    # benchlib.py adds -T (secs plus an allowance for the connection phase) and -l.
    "$PY" "$BENCH/benchlib.py" run \
        --label "{\"mode\": \"$mode\", \"clients\": $clients, \"target\": \"$target\", \"round\": $round}" \
        --pid "$(pid_of "$target")" --logdir "$WORK/pgbench-logs" --out "$RESULTS" \
        --duration "$secs" --state "$WORK/connect-times.json" -- \
        "$PGBENCH" -h 127.0.0.1 -p "$(port_of "$target")" "${args[@]}" bench || log "run wrapper failed"
    ensure_alive
}

targets_for() { # mode
    if [ "$1" = prepared ] && [ "$PGBOUNCER_PREPARED" = 0 ]; then echo "direct sluice"; else echo "direct pgbouncer sluice"; fi
}

log "warm-up (not recorded)"
"$PGBENCH" -h 127.0.0.1 -p "$PGPORT" -n -S -c 4 -j 2 -T 3 bench >/dev/null 2>&1 || true

if [ "$PING_SECS" -gt 0 ]; then
    log "single-client SELECT 1 ping-pong, $PING_SECS s per run"
    for round in $(seq 1 "$ROUNDS"); do
        for target in direct pgbouncer sluice; do run_one ping 1 "$target" "$round" "$PING_SECS"; done
    done
fi

for mode in $MODES; do
    for clients in $CLIENTS; do
        log "pgbench -S -M $mode -c $clients: $ROUNDS round(s) of $(targets_for "$mode")"
        for round in $(seq 1 "$ROUNDS"); do
            for target in $(targets_for "$mode"); do run_one "$mode" "$clients" "$target" "$round" "$DURATION"; done
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Idle connections: RSS per client

HOLD_READY=$WORK/hold.ready
hold_idle() { # target clients
    local target=$1 n=$2 pid port before with closed i
    pid=$(pid_of "$target"); port=$(port_of "$target")
    if [ "$n" -gt $((NOFILE - 100)) ]; then
        log "skipping $n idle clients: open-file limit is $NOFILE"; return
    fi
    sleep 1
    before=$("$PY" "$BENCH/benchlib.py" rss "$pid")
    rm -f "$HOLD_READY"
    "$PY" "$BENCH/benchlib.py" hold -n "$n" --port "$port" --user bench --dbname bench \
        --ready-file "$HOLD_READY" 2>>"$WORK/hold.log" &
    HOLD_PID=$!
    for i in $(seq 1 6000); do
        [ -f "$HOLD_READY" ] && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ ! -f "$HOLD_READY" ]; then
        log "idle-connection holder failed for $target $n"; tail -3 "$WORK/hold.log" >&2
        stop_pid "$HOLD_PID" TERM; HOLD_PID=""; return
    fi
    sleep 2
    with=$("$PY" "$BENCH/benchlib.py" rss "$pid")
    stop_pid "$HOLD_PID" TERM; wait "$HOLD_PID" 2>/dev/null || true; HOLD_PID=""
    sleep 2
    closed=$("$PY" "$BENCH/benchlib.py" rss "$pid")
    "$PY" - "$HOLD_READY" "$MEMORY" "$target" "$n" "$before" "$with" "$closed" <<'EOF'
import json, sys
ready, out, target, n, before, with_, closed = sys.argv[1:]
r = json.load(open(ready))
rec = {"target": target, "clients": int(n), "rss_before_kib": int(before), "rss_with_kib": int(with_),
       "rss_closed_kib": int(closed), **r}
open(out, "a").write(json.dumps(rec) + "\n")
print(f"  idle {target} {n}: opened {r['opened']} failed {r['failed']} in {r['secs']} s, "
      f"RSS {int(before)//1024} -> {int(with_)//1024} MiB", flush=True)
EOF
    ensure_alive
}

# Each count is measured on a freshly started pooler (after one login, so its pool has a server
# connection): after the throughput runs a pooler's allocator already holds the memory of
# 1,000 busy clients, which idle clients would reuse without a byte more of RSS.
restart_pooler() { # target
    case $1 in
    pgbouncer)
        stop_pid "$BOUNCER_PID" TERM; wait "$BOUNCER_PID" 2>/dev/null || true
        start_pgbouncer; wait_ready pgbouncer "$BOUNCER_PORT" BOUNCER_PID ;;
    sluice)
        stop_pid "$SLUICE_PID" TERM; wait "$SLUICE_PID" 2>/dev/null || true
        start_sluice; wait_ready sluice "$SLUICE_PORT" SLUICE_PID ;;
    esac
}

for n in $IDLE; do
    log "idle connections: $n clients"
    for target in pgbouncer sluice; do restart_pooler "$target"; hold_idle "$target" "$n"; done
done

# ---------------------------------------------------------------------------------------------

log "done; raw records in $RESULTS and $MEMORY"
echo
"$PY" "$BENCH/benchlib.py" report --results "$RESULTS" --memory "$MEMORY" --meta "$META" | tee "$OUT/report.md"
