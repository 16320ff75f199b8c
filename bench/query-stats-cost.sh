#!/usr/bin/env bash
# What query statistics cost (docs/diagnosis.md): pgbench -S through two sluice processes, one
# with query_stats = true (the default) and one with query_stats = false, runs alternating, and
# the ratio of their tps and of the pooler's CPU time per transaction. Ends with SHOW QUERIES of
# the pooler that counted.
#
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=app PGPASSWORD=... PGDATABASE=app \
#     bench/query-stats-cost.sh [--rounds N] [--duration SECS] [--clients N] [--sluice PATH]
#
# The database must already hold pgbench's tables (pgbench -i -s 10). sluice is taken from
# target/release/sluice (or $CARGO_TARGET_DIR/release/sluice) unless --sluice says otherwise;
# build it with `cargo build --release` first. Same method as bench/metrics-cost.sh: a short
# warm-up per pooler, rounds alternating which goes first, tps and the sluice process's CPU
# time (utime + stime from /proc) per transaction, medians and their ratios on/off. pgbench -S
# uses the simple protocol with a new literal in every statement: each one is fingerprinted
# (the per-session cache by text never hits), the worst case for the hot path.
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
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
die() { echo "query-stats-cost: $*" >&2; exit 1; }

start() { # name port query_stats
    local name=$1 port=$2 qs=$3
    {
        echo "[pooler]"
        echo "listen = \"127.0.0.1:$port\""
        echo "default_pool_size = $POOL_SIZE"
        echo "max_client_conn = 10000"
        echo "query_stats = $qs"
        echo "admin_users = [\"$PGUSER\"]"
        echo "[users.$PGUSER]"
        echo "password = \"$PGPASSWORD\""
        echo "[databases.$PGDATABASE]"
        echo "host = \"$PGHOST\""
        echo "port = $PGPORT"
    } > "$DIR/$name.toml"
    SLUICE_LOG=warn "$SLUICE" --config "$DIR/$name.toml" 2> "$DIR/$name.log" &
    PIDS+=($!)
    eval "${name^^}_PID=$!"
}

wait_port() { # name port: until the pooler accepts TCP connections (or died, or 10 s passed)
    for _ in $(seq 1 100); do
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$2" \
            2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "sluice ($1) is not listening on $2; its log: $(cat "$DIR/$1.log")"
}

ON_PORT=$(free_port); OFF_PORT=$(free_port)
start on "$ON_PORT" true
start off "$OFF_PORT" false
wait_port on "$ON_PORT"; wait_port off "$OFF_PORT"

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of pid $1
bench() { # port pid seconds -> "tps cpu_us_per_transaction" (a failed run stops the script)
    local out before after
    before=$(cpu_ticks "$2")
    if ! out=$(PGHOST=127.0.0.1 PGPORT=$1 "$PG_BIN/pgbench" -n -S -c "$CLIENTS" -j 2 -T "$3" 2>&1); then
        die "pgbench through port $1 failed: $(echo "$out" | tail -5)"
    fi
    after=$(cpu_ticks "$2")
    echo "$out" | awk -v ticks=$((after - before)) -v hz="$TICK" '
        /^tps = / { tps = $3 }
        /^number of transactions actually processed: / { n = $6 }
        END { if (!tps || !n) exit 1; printf "%s %.1f\n", tps, ticks / hz * 1e6 / n }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Warm-up: both pools open their server connections outside the measured rounds.
bench "$ON_PORT" "$ON_PID" 2 >/dev/null; bench "$OFF_PORT" "$OFF_PID" 2 >/dev/null

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.3f'; }
ONS=(); OFFS=(); ON_CPU=(); OFF_CPU=()
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        read -r on on_cpu < <(bench "$ON_PORT" "$ON_PID" "$DURATION")
        read -r off off_cpu < <(bench "$OFF_PORT" "$OFF_PID" "$DURATION")
    else
        read -r off off_cpu < <(bench "$OFF_PORT" "$OFF_PID" "$DURATION")
        read -r on on_cpu < <(bench "$ON_PORT" "$ON_PID" "$DURATION")
    fi
    [ -n "${on:-}" ] && [ -n "${off:-}" ] || die "round $r: no result (see above)"
    echo "round $r: query_stats on $on tps, off $off tps, on/off $(ratio "$on" "$off");" \
        "pooler CPU per transaction on $on_cpu us, off $off_cpu us"
    ONS+=("$on"); OFFS+=("$off"); ON_CPU+=("$on_cpu"); OFF_CPU+=("$off_cpu")
    unset on off
done
on_med=$(median "${ONS[@]}"); off_med=$(median "${OFFS[@]}")
printf 'median tps: on %.0f, off %.0f, on/off = %.3f\n' "$on_med" "$off_med" "$(ratio "$on_med" "$off_med")"
on_med=$(median "${ON_CPU[@]}"); off_med=$(median "${OFF_CPU[@]}")
printf 'median pooler CPU per transaction: on %.1f us, off %.1f us, on/off = %.3f\n' \
    "$on_med" "$off_med" "$(ratio "$on_med" "$off_med")"
echo "SHOW QUERIES of the pooler with query_stats on:"
PGHOST=127.0.0.1 PGPORT=$ON_PORT PGDATABASE=sluice "$PG_BIN/psql" -X -c 'SHOW QUERIES'
