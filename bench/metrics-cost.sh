#!/usr/bin/env bash
# What /metrics costs: pgbench -S through two sluice processes, one with metrics_listen (scraped
# every second while measured) and one without, runs alternating, and the ratio of their tps.
#
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=app PGPASSWORD=... PGDATABASE=app \
#     bench/metrics-cost.sh [--rounds N] [--duration SECS] [--clients N] [--sluice PATH]
#
# The database must already hold pgbench's tables (pgbench -i -s 10). sluice is taken from
# target/release/sluice (or $CARGO_TARGET_DIR/release/sluice) unless --sluice says otherwise;
# build it with `cargo build --release` first. Both poolers are stopped on exit.
set -euo pipefail

ROUNDS=3
DURATION=10
CLIENTS=64
POOL_SIZE=20
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --sluice) SLUICE=$2; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 64 ;;
    esac
    shift
done
: "${PGHOST:?}" "${PGPORT:?}" "${PGUSER:?}" "${PGPASSWORD:?}" "${PGDATABASE:?}"
[ -x "$SLUICE" ] || { echo "no sluice binary at $SLUICE (cargo build --release)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DIR=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

start() { # name port [metrics_port]
    local name=$1 port=$2 mport=${3:-}
    {
        echo "[pooler]"
        echo "listen = \"127.0.0.1:$port\""
        echo "default_pool_size = $POOL_SIZE"
        echo "max_client_conn = 10000"
        [ -n "$mport" ] && echo "metrics_listen = \"127.0.0.1:$mport\""
        echo "[users.$PGUSER]"
        echo "password = \"$PGPASSWORD\""
        echo "[databases.$PGDATABASE]"
        echo "host = \"$PGHOST\""
        echo "port = $PGPORT"
    } > "$DIR/$name.toml"
    SLUICE_LOG=warn "$SLUICE" --config "$DIR/$name.toml" 2> "$DIR/$name.log" &
    PIDS+=($!)
}

ON_PORT=$(free_port); OFF_PORT=$(free_port); METRICS_PORT=$(free_port)
start on "$ON_PORT" "$METRICS_PORT"
start off "$OFF_PORT"
sleep 1

bench() { # port -> tps
    PGHOST=127.0.0.1 PGPORT=$1 "$PG_BIN/pgbench" -n -S -c "$CLIENTS" -j 2 -T "$DURATION" 2>&1 \
        | awk '/^tps = / { print $3 }'
}

# Scrape the metrics-on pooler once a second for the whole run, as an eager Prometheus would.
( while true; do curl -s -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics" || true; sleep 1; done ) &
PIDS+=($!)

on_total=0; off_total=0
for r in $(seq 1 "$ROUNDS"); do
    # Alternate which goes first, so warm-up and drift fall on both sides.
    if [ $((r % 2)) -eq 1 ]; then
        on=$(bench "$ON_PORT"); off=$(bench "$OFF_PORT")
    else
        off=$(bench "$OFF_PORT"); on=$(bench "$ON_PORT")
    fi
    echo "round $r: metrics on $on tps, off $off tps"
    on_total=$(echo "$on_total + $on" | bc -l); off_total=$(echo "$off_total + $off" | bc -l)
done
printf 'mean: on %.0f tps, off %.0f tps, on/off = %.4f\n' \
    "$(echo "$on_total / $ROUNDS" | bc -l)" "$(echo "$off_total / $ROUNDS" | bc -l)" \
    "$(echo "$on_total / $off_total" | bc -l)"
