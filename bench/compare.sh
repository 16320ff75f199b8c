#!/usr/bin/env bash
# Benchmark sluice against PgBouncer, PgDoorman and direct PostgreSQL on this machine. See
# bench/README.md.
#
#   bench/compare.sh [--quick] [--rounds N] [--duration SECS] [--clients "1 16 64"]
#                    [--modes "simple extended prepared"] [--idle "5000 10000"] [--no-build]
#                    [--ping SECS] [--connect-clients N] [--threads "1 2"] [--no-pgdoorman]
#                    [--keep] [--out DIR] [--sluice NAME[=PATH]]... [--tls] [--tls-clients "64 256"]
#
# --threads runs sluice (`workers = N`) and PgDoorman (`worker_threads = N`) once per N, each as
# its own target (NAME-wN), in the same rounds. PgDoorman is skipped (and the log says so) when
# no binary is found: ../shared/peers/build.sh pg_doorman, or PGDOORMAN_BIN=/path.
#
# --tls adds TLS runs (bench/README.md, "TLS"): both poolers get a certificate (client TLS
# allowed, the plain runs stay plain with sslmode=disable), then pgbench -S with sslmode=require
# (simple and prepared, --tls-clients), pgbench -C connects per second plain and over TLS, and
# the idle-client memory again over TLS. PostgreSQL itself stays plain (direct is not run).
#
# --sluice (repeatable) benchmarks several sluice binaries in the same run, each as its own target
# alternating with the others; NAME alone is this tree's release build. Ratios against the first.
# Everything it starts (PostgreSQL, the poolers, load generators) is stopped on exit and its
# temporary directory removed (unless --keep).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
PY=${PYTHON:-python3}
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

QUICK=0
ROUNDS=3
DURATION=10
CLIENTS="1 16 64 256 1000"
MODES="simple extended prepared"
IDLE="5000 10000"
PING_SECS=10
BUILD=1
KEEP=0
OUT=""
TLS=0
TLS_CLIENTS="64 256"
CONNECT_CLIENTS=64
THREADS="1"
PGDOORMAN_WANTED=1
SCALE=10
POOL_SIZE=20
PASSWORD="bench-$(date +%s)-pw"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
# --quick sets the defaults below; options given with it still win, wherever they stand.
for arg in "$@"; do
    if [ "$arg" = --quick ]; then
        # About four minutes once sluice is built: 30 short runs (about 3 s measured each),
        # 1,000 idle clients per pooler.
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
        --sluice) sluice_spec "$2"; shift ;;
        --tls) TLS=1 ;;
        --tls-clients) TLS_CLIENTS=$2; shift ;;
        --connect-clients) CONNECT_CLIENTS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --no-pgdoorman) PGDOORMAN_WANTED=0 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 64 ;;
    esac
    shift
done

# ---------------------------------------------------------------------------------------------
# Tools: install what is missing.

bench_tools
find_pgbouncer
PGBOUNCER_PREPARED=0
version_ge "$PGBOUNCER_VERSION" 1.21 && PGBOUNCER_PREPARED=1
log "PgBouncer $PGBOUNCER_VERSION ($PGBOUNCER)"

PGDOORMAN=""
if [ "$PGDOORMAN_WANTED" = 1 ]; then
    find_pgdoorman
    if [ -n "$PGDOORMAN" ]; then log "PgDoorman $PGDOORMAN_VERSION ($PGDOORMAN)"
    else log "PgDoorman not found ($PEERS/pg_doorman/pg_doorman, PGDOORMAN_BIN): running without it (build it with ../shared/peers/build.sh pg_doorman)"; fi
fi

sluice_binaries
sluice_threads "$THREADS"
read -r -a THREAD_COUNTS <<<"$THREADS"
# PgDoorman's targets: `pgdoorman` (one thread count) or pgdoorman-wN, like sluice's.
PD_NAMES=()
declare -A PD_THREADS=() PD_PORT=() PD_DIR=()
if [ -n "$PGDOORMAN" ]; then
    for n in "${THREAD_COUNTS[@]}"; do
        if [ ${#THREAD_COUNTS[@]} = 1 ]; then t=pgdoorman; else t=pgdoorman-w$n; fi
        PD_NAMES+=("$t"); PD_THREADS[$t]=$n
    done
fi
raise_nofile

# ---------------------------------------------------------------------------------------------
# Work dir, run-as user, cleanup (bench/lib.sh).

bench_workdir sluice-bench
mkdir -p "$WORK/pgbench-logs"
RESULTS=$OUT/results.jsonl MEMORY=$OUT/memory.jsonl META=$OUT/meta.json
: >"$RESULTS"; : >"$MEMORY"

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_start scram-sha-256
pg_bench_db "$SCALE" "$PASSWORD"

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
SLUICE_TLS=""
if [ "$TLS" = 1 ]; then
    # One self-signed ECDSA P-256 certificate for both poolers (what rcgen makes in the tests).
    T=$WORK/tls
    mkdir -p "$T"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$T/server.key" -out "$T/server.crt" 2>/dev/null
    chown -R "$OWNER" "$T"; chmod 600 "$T/server.key"
    {
        echo "client_tls_sslmode = allow"
        echo "client_tls_cert_file = $T/server.crt"
        echo "client_tls_key_file = $T/server.key"
    } >>"$B/pgbouncer.ini"
    SLUICE_TLS=$(printf 'client_tls_mode = "allow"\nclient_tls_cert_file = "%s"\nclient_tls_key_file = "%s"' "$T/server.crt" "$T/server.key")
    # The plain runs stay plain: libpq's default (prefer) would take the offered TLS.
    export PGSSLMODE=disable
fi
chown -R "$OWNER" "$B"
chmod 600 "$B/userlist.txt"

start_pgbouncer() {
    (cd "$WORK" && exec "${RUN_AS[@]}" "$PGBOUNCER" "$B/pgbouncer.ini" >>"$B/stdout.log" 2>&1) &
    BOUNCER_PID=$!
}

# PgDoorman, configured like PgBouncer: transaction mode, pool 20, clients checked against the
# role's SCRAM secret, which it also uses to log in to PostgreSQL (its pass-through: no
# server_username/server_password), prepared statements on (its default cache), and its
# `worker_threads` from --threads. No web listener, no per-connection log lines.
for name in "${PD_NAMES[@]}"; do
    PD_DIR[$name]=$WORK/$name
    PD_PORT[$name]=$(freeport)
    mkdir -p "${PD_DIR[$name]}"
    cat >"${PD_DIR[$name]}/pg_doorman.toml" <<EOF
[general]
host = "127.0.0.1"
port = ${PD_PORT[$name]}
max_connections = 20000
worker_threads = ${PD_THREADS[$name]}
log_client_connections = false
log_client_disconnections = false
prepared_statements = true
admin_username = "admin"
admin_password = "$PASSWORD-admin"

[pools.bench]
server_host = "127.0.0.1"
server_port = $PGPORT
pool_mode = "transaction"

[pools.bench.users.0]
username = "bench"
password = "$SECRET"
pool_size = $POOL_SIZE
EOF
    chown -R "$OWNER" "${PD_DIR[$name]}"; chmod 600 "${PD_DIR[$name]}/pg_doorman.toml"
done

start_pgdoorman() { # name
    local dir=${PD_DIR[$1]}
    (cd "$dir" && exec "${RUN_AS[@]}" "$PGDOORMAN" -l warn --no-color "$dir/pg_doorman.toml" >>"$dir/pg_doorman.log" 2>&1) &
    PD_PID[$1]=$!
}

# Every sluice under test gets the same config (bench/lib.sh adds its own listen line).
SLUICE_TOML=$(cat <<EOF
pool_mode = "transaction"
default_pool_size = $POOL_SIZE
max_client_conn = 20000
query_wait_timeout = "60s"
$SLUICE_TLS

[users.bench]
password = "$PASSWORD"

[databases.bench]
host = "127.0.0.1"
port = $PGPORT
EOF
)
for name in "${SLUICE_NAMES[@]}"; do sluice_prepare "$name"; done

log "PgBouncer $PGBOUNCER_VERSION on 127.0.0.1:$BOUNCER_PORT"
start_pgbouncer; wait_ready pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" "$B"
for name in "${PD_NAMES[@]}"; do
    log "PgDoorman $PGDOORMAN_VERSION '$name' (worker_threads ${PD_THREADS[$name]}) on 127.0.0.1:${PD_PORT[$name]}"
    start_pgdoorman "$name"; wait_ready "$name" "${PD_PORT[$name]}" "${PD_PID[$name]}" "${PD_DIR[$name]}"
done
for name in "${SLUICE_NAMES[@]}"; do
    log "sluice '$name' (${SL_DESC[$name]}) on 127.0.0.1:${SL_PORT[$name]}"
    start_sluice "$name"; wait_ready "$name" "${SL_PORT[$name]}" "${SL_PID[$name]}" "${SL_DIR[$name]}"
done

# A pooler that died during a run is reported (the run fails) and started again for the next one.
ensure_alive() {
    local name
    if ! kill -0 "$BOUNCER_PID" 2>/dev/null; then
        log "PgBouncer died; restarting (see $B/pgbouncer.log)"; start_pgbouncer; wait_ready pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" "$B"
    fi
    for name in "${PD_NAMES[@]}"; do
        if ! kill -0 "${PD_PID[$name]}" 2>/dev/null; then
            log "PgDoorman '$name' died; restarting. Last log lines:"; tail -5 "${PD_DIR[$name]}/pg_doorman.log" >&2
            start_pgdoorman "$name"; wait_ready "$name" "${PD_PORT[$name]}" "${PD_PID[$name]}" "${PD_DIR[$name]}"
        fi
    done
    for name in "${SLUICE_NAMES[@]}"; do
        if ! kill -0 "${SL_PID[$name]}" 2>/dev/null; then
            log "sluice '$name' died; restarting. Last log lines:"; tail -5 "${SL_DIR[$name]}/sluice.log" >&2
            echo "--- restarted after a crash ---" >>"${SL_DIR[$name]}/sluice.log"
            start_sluice "$name"; wait_ready "$name" "${SL_PORT[$name]}" "${SL_PID[$name]}" "${SL_DIR[$name]}"
        fi
    done
}

port_of() { case $1 in direct) echo "$PGPORT" ;; pgbouncer) echo "$BOUNCER_PORT" ;; pgdoorman*) echo "${PD_PORT[$1]}" ;; *) echo "${SL_PORT[$1]}" ;; esac; }
pid_of() { case $1 in direct) echo 0 ;; pgbouncer) echo "$BOUNCER_PID" ;; pgdoorman*) echo "${PD_PID[$1]}" ;; *) echo "${SL_PID[$1]}" ;; esac; }

# The sluice targets of one round, in turn; with several, the order rotates by one each round so
# that none always runs right after PgBouncer (or right after another sluice).
sluices_in_round() { # round
    local n=${#SLUICE_NAMES[@]} i
    for ((i = 0; i < n; i++)); do printf '%s ' "${SLUICE_NAMES[$(((i + $1 - 1) % n))]}"; done
}
# The same for the PgDoorman and sluice targets together (after direct and PgBouncer).
ROTATED=("${PD_NAMES[@]}" "${SLUICE_NAMES[@]}")
poolers_in_round() { # round
    local n=${#ROTATED[@]} i
    for ((i = 0; i < n; i++)); do printf '%s ' "${ROTATED[$(((i + $1 - 1) % n))]}"; done
}

if [ ${#SLUICE_NAMES[@]} = 1 ] && [ "${SLUICE_NAMES[0]}" = sluice ]; then
    SLUICE_META="${SL_DESC[sluice]}"
else
    SLUICE_META=""
    for name in "${SLUICE_NAMES[@]}"; do SLUICE_META+="${SLUICE_META:+; }$name = ${SL_DESC[$name]}"; done
fi
SLUICE_JSON=$(printf '"%s", ' "${SLUICE_NAMES[@]}"); SLUICE_JSON="[${SLUICE_JSON%, }]"
PEERS_JSON="[]"
if [ ${#PD_NAMES[@]} -gt 0 ]; then PEERS_JSON=$(printf '"%s", ' "${PD_NAMES[@]}"); PEERS_JSON="[${PEERS_JSON%, }]"; fi
PD_META="not run (no binary found)"
[ "$PGDOORMAN_WANTED" = 1 ] || PD_META="not run (--no-pgdoorman)"
[ -z "$PGDOORMAN" ] || PD_META="$PGDOORMAN_VERSION, $PGDOORMAN (transaction mode, pool size $POOL_SIZE, SCRAM pass-through, prepared statements on, worker_threads $(IFS=/; echo "${THREAD_COUNTS[*]}"))"
cat >"$META" <<EOF
{"date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
 "machine": "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//;s/"//g')), $(free -h | awk '/^Mem:/{print $2}') RAM, kernel $(uname -r), open files $NOFILE",
 "postgres": "$PG_VERSION (fsync=off, max_connections=1100, shared_buffers=256MB, pgbench scale $SCALE)",
 "pgbouncer": "$PGBOUNCER_VERSION, $PGBOUNCER (transaction mode, pool size $POOL_SIZE, SCRAM$([ "$PGBOUNCER_PREPARED" = 1 ] && echo ", max_prepared_statements 200"))",
 "pgbouncer_version": "$PGBOUNCER_VERSION",
 "pgdoorman": "$PD_META",
 "sluice": "$SLUICE_META (transaction mode, pool size $POOL_SIZE, SCRAM)",
 "sluices": $SLUICE_JSON,
 "peers": $PEERS_JSON,
 "settings": "$([ "$QUICK" = 1 ] && echo "--quick: ")pgbench -S -j 2 (-j 1 for 1 client), about $DURATION s measured per run after the connection phase, $ROUNDS round(s) alternating direct/PgBouncer/$(IFS=/; echo "${ROTATED[*]}"), medians; SELECT 1 ping-pong $PING_SECS s; logins: pgbench -S -C -c $CONNECT_CLIENTS"}
EOF

# ---------------------------------------------------------------------------------------------
# Runs

echo 'SELECT 1;' >"$WORK/select1.sql"

run_one() { # mode clients target round secs
    local mode=$1 clients=$2 target=$3 round=$4 secs=$5 jobs=2 args
    [ "$clients" -lt 2 ] && jobs=1
    case $mode in
    ping) args=(-n -M simple -f "$WORK/select1.sql" -c 1 -j 1) ;;
    # A new connection (and login) per transaction: connects per second.
    connect | tls-connect) args=(-n -S -C -M simple -c "$clients" -j "$jobs") ;;
    tls-*) args=(-n -S -M "${mode#tls-}" -c "$clients" -j "$jobs") ;;
    *) args=(-n -S -M "$mode" -c "$clients" -j "$jobs") ;;
    esac
    # benchlib.py adds -T (secs plus an allowance for the connection phase) and -l.
    local sslmode=${PGSSLMODE:-prefer}
    case $mode in tls-*) sslmode=require ;; esac
    PGSSLMODE=$sslmode "$PY" "$BENCH/benchlib.py" run \
        --label "{\"mode\": \"$mode\", \"clients\": $clients, \"target\": \"$target\", \"round\": $round}" \
        --pid "$(pid_of "$target")" --logdir "$WORK/pgbench-logs" --out "$RESULTS" \
        --duration "$secs" --state "$WORK/connect-times.json" -- \
        "$PGBENCH" -h 127.0.0.1 -p "$(port_of "$target")" "${args[@]}" bench || log "run wrapper failed"
    ensure_alive
}

targets_for() { # mode round
    if [ "$1" = prepared ] && [ "$PGBOUNCER_PREPARED" = 0 ]; then echo "direct $(poolers_in_round "$2")"
    else echo "direct pgbouncer $(poolers_in_round "$2")"; fi
}

log "warm-up (not recorded)"
"$PGBENCH" -h 127.0.0.1 -p "$PGPORT" -n -S -c 4 -j 2 -T 3 bench >/dev/null 2>&1 || true

if [ "$PING_SECS" -gt 0 ]; then
    log "single-client SELECT 1 ping-pong, $PING_SECS s per run"
    for round in $(seq 1 "$ROUNDS"); do
        for target in direct pgbouncer $(poolers_in_round "$round"); do run_one ping 1 "$target" "$round" "$PING_SECS"; done
    done
fi

for mode in $MODES; do
    for clients in $CLIENTS; do
        log "pgbench -S -M $mode -c $clients: $ROUNDS round(s) of $(targets_for "$mode" 1)"
        for round in $(seq 1 "$ROUNDS"); do
            for target in $(targets_for "$mode" "$round"); do run_one "$mode" "$clients" "$target" "$round" "$DURATION"; done
        done
    done
done

# Logins: a new connection (SCRAM, plain TCP) per transaction, so tps = logins per second.
# Direct is PostgreSQL forking a backend per login, for scale. --connect-clients 0 skips it.
if [ "$CONNECT_CLIENTS" -gt 0 ]; then
    log "pgbench -S -C -c $CONNECT_CLIENTS (a login per transaction): $ROUNDS round(s)"
    for round in $(seq 1 "$ROUNDS"); do
        for target in direct pgbouncer $(poolers_in_round "$round"); do run_one connect "$CONNECT_CLIENTS" "$target" "$round" "$DURATION"; done
    done
fi

if [ "$TLS" = 1 ] && [ "$CONNECT_CLIENTS" -gt 0 ]; then
    # PostgreSQL is plain: the TLS figures are the poolers' alone (direct is not run). PgDoorman
    # gets no certificate: the TLS runs compare sluice with PgBouncer only.
    log "pgbench -S -C (tls-connect) -c $CONNECT_CLIENTS: $ROUNDS round(s)"
    for round in $(seq 1 "$ROUNDS"); do
        for target in pgbouncer $(sluices_in_round "$round"); do run_one tls-connect "$CONNECT_CLIENTS" "$target" "$round" "$DURATION"; done
    done
fi
if [ "$TLS" = 1 ]; then
    for mode in tls-simple tls-prepared; do
        for clients in $TLS_CLIENTS; do
            log "pgbench -S -M ${mode#tls-} -c $clients, sslmode=require: $ROUNDS round(s)"
            for round in $(seq 1 "$ROUNDS"); do
                for target in pgbouncer $(sluices_in_round "$round"); do
                    [ "$mode" = tls-prepared ] && [ "$target" = pgbouncer ] && [ "$PGBOUNCER_PREPARED" = 0 ] && continue
                    run_one "$mode" "$clients" "$target" "$round" "$DURATION"
                done
            done
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# Idle connections: RSS per client

HOLD_READY=$WORK/hold.ready
hold_idle() { # target clients [tls]
    local target=$1 n=$2 tls=${3:-} pid port before with closed i label=$1 tls_arg=()
    [ -n "$tls" ] && { label="$target TLS"; tls_arg=(--tls); }
    pid=$(pid_of "$target"); port=$(port_of "$target")
    if [ "$n" -gt $((NOFILE - 100)) ]; then
        log "skipping $n idle clients: open-file limit is $NOFILE"; return
    fi
    sleep 1
    before=$("$PY" "$BENCH/benchlib.py" rss "$pid")
    rm -f "$HOLD_READY"
    "$PY" "$BENCH/benchlib.py" hold -n "$n" --port "$port" --user bench --dbname bench \
        --ready-file "$HOLD_READY" "${tls_arg[@]}" 2>>"$WORK/hold.log" &
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
    "$PY" - "$HOLD_READY" "$MEMORY" "$label" "$n" "$before" "$with" "$closed" <<'EOF'
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
        start_pgbouncer; wait_ready pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" "$B" ;;
    pgdoorman*)
        stop_pid "${PD_PID[$1]}" TERM; wait "${PD_PID[$1]}" 2>/dev/null || true
        start_pgdoorman "$1"; wait_ready "$1" "${PD_PORT[$1]}" "${PD_PID[$1]}" "${PD_DIR[$1]}" ;;
    *)
        stop_sluice "$1"
        start_sluice "$1"; wait_ready "$1" "${SL_PORT[$1]}" "${SL_PID[$1]}" "${SL_DIR[$1]}" ;;
    esac
}

for n in $IDLE; do
    log "idle connections: $n clients"
    for target in pgbouncer "${PD_NAMES[@]}" "${SLUICE_NAMES[@]}"; do restart_pooler "$target"; hold_idle "$target" "$n"; done
    if [ "$TLS" = 1 ]; then
        log "idle TLS connections: $n clients"
        for target in pgbouncer "${SLUICE_NAMES[@]}"; do restart_pooler "$target"; hold_idle "$target" "$n" tls; done
    fi
done

# ---------------------------------------------------------------------------------------------

log "done; raw records in $RESULTS and $MEMORY"
echo
"$PY" "$BENCH/benchlib.py" report --results "$RESULTS" --memory "$MEMORY" --meta "$META" | tee "$OUT/report.md"
