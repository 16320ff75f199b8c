#!/usr/bin/env bash
# Read/write splitting: pgbench -S through sluice with a streaming replica vs without it.
#
#   bench/replica.sh [--rounds N] [--duration SECS] [--clients N] [--modes "simple prepared"]
#
# Starts a PostgreSQL 15 primary (pgbench scale 10) and a streaming replica of it
# (pg_basebackup -R), and two sluice processes (release build: target/release/sluice, or
# $CARGO_TARGET_DIR/release/sluice): one whose database lists the replica, one without. Runs
# pgbench -S against each in alternation and prints per-round tps, medians and the ratio
# with/without, plus where the reads went (sluice_routed_total). Everything it starts is stopped
# on exit. On a small machine primary, replica, pgbench and sluice share the cores: the ratio shows
# what routing costs or gains there, not what a replica on its own machine would add.
set -euo pipefail

ROUNDS=3
DURATION=10
CLIENTS=64
MODES="simple prepared"
POOL_SIZE=20
SCALE=10
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
PGB=${PG_BIN:-/usr/lib/postgresql/15/bin}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --modes) MODES=$2; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 64 ;;
    esac
    shift
done
[ -x "$SLUICE" ] || { echo "no sluice binary at $SLUICE (cargo build --release)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/sluice-replica-bench.XXXXXX)
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    RUN_AS=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups --)
    chown "$(id -u nobody):$(id -g nobody)" "$WORK"
fi
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for d in "$WORK/replica" "$WORK/primary"; do
        [ -f "$d/postmaster.pid" ] && (cd "$WORK" && "${RUN_AS[@]}" "$PGB/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1) || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
pg() { (cd "$WORK" && "${RUN_AS[@]}" "$@"); }

PPORT=$(free_port); RPORT=$(free_port)
pg "$PGB/initdb" -D "$WORK/primary" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1
cat >> "$WORK/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
port = $PPORT
wal_level = replica
max_wal_senders = 5
max_connections = 200
shared_buffers = '128MB'
fsync = off
synchronous_commit = off
EOF
echo "host replication postgres 127.0.0.1/32 trust" >> "$WORK/primary/pg_hba.conf"
pg "$PGB/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w start >/dev/null
export PGHOST=127.0.0.1 PGUSER=postgres PGDATABASE=postgres
PGPORT=$PPORT "$PGB/pgbench" -i -q -s "$SCALE" >/dev/null 2>&1
pg "$PGB/pg_basebackup" -h 127.0.0.1 -p "$PPORT" -U postgres -D "$WORK/replica" -R -X stream -c fast
echo "port = $RPORT" >> "$WORK/replica/postgresql.conf"
pg "$PGB/pg_ctl" -D "$WORK/replica" -l "$WORK/replica.log" -w start >/dev/null
echo "primary on $PPORT, replica on $RPORT (scale $SCALE)"

start() { # name port metrics_port with_replica
    {
        echo "[pooler]"
        echo "listen = \"127.0.0.1:$2\""
        echo "default_pool_size = $POOL_SIZE"
        echo "auth_type = \"trust\""
        echo "metrics_listen = \"127.0.0.1:$3\""
        echo "[users.postgres]"
        echo "[databases.postgres]"
        echo "port = $PPORT"
        if [ "$4" = 1 ]; then
            echo "[[databases.postgres.replicas]]"
            echo "port = $RPORT"
        fi
    } > "$WORK/$1.toml"
    SLUICE_LOG=warn "$SLUICE" --config "$WORK/$1.toml" 2> "$WORK/$1.log" &
    PIDS+=($!)
}
WITH=$(free_port); WITHOUT=$(free_port); MWITH=$(free_port); MWITHOUT=$(free_port)
start with "$WITH" "$MWITH" 1
start without "$WITHOUT" "$MWITHOUT" 0
for port in "$WITH" "$WITHOUT"; do
    for _ in $(seq 100); do PGPORT=$port "$PGB/psql" -Atqc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
done
# The replica enters rotation after the health checker's first poll.
for _ in $(seq 100); do
    [ "$(PGPORT=$WITH "$PGB/psql" -Atc 'SELECT pg_is_in_recovery()')" = t ] && break; sleep 0.1
done

bench() { # port mode -> tps
    PGPORT=$1 "$PGB/pgbench" -n -S -M "$2" -c "$CLIENTS" -j 2 -T "$DURATION" 2>&1 \
        | awk '/^tps = / { print $3 } /number of failed transactions: [1-9]/ { print "FAILED: " $0 > "/dev/stderr" }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "pgbench -S -c $CLIENTS, pool_size $POOL_SIZE, $ROUNDS rounds of ${DURATION}s, alternating"
for mode in $MODES; do
    : > "$WORK/with.$mode"; : > "$WORK/without.$mode"
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then
            w=$(bench "$WITH" "$mode"); wo=$(bench "$WITHOUT" "$mode")
        else
            wo=$(bench "$WITHOUT" "$mode"); w=$(bench "$WITH" "$mode")
        fi
        echo "$w" >> "$WORK/with.$mode"; echo "$wo" >> "$WORK/without.$mode"
        echo "  -M $mode round $r: with replica $w tps, without $wo tps"
    done
    mw=$(median < "$WORK/with.$mode"); mwo=$(median < "$WORK/without.$mode")
    printf -- '-M %s median: with replica %.0f tps, without %.0f tps, with/without = %.3f\n' \
        "$mode" "$mw" "$mwo" "$(echo "$mw / $mwo" | bc -l)"
done
echo "routing decisions of the pooler with the replica:"
curl -s "http://127.0.0.1:$MWITH/metrics" | grep '^sluice_routed_total' | awk '$2 != 0'
