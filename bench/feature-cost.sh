#!/usr/bin/env bash
# What a feature costs: pgbench -S through two sluice processes, one with the feature on and one
# with it off, runs alternating, and the ratio of their tps and of the pooler's CPU time per
# transaction. --key says which feature:
#   query_stats  query_stats = true (the default) against false (docs/diagnosis.md); ends with
#                SHOW QUERIES of the pooler that counted. pgbench -S sends a new literal in every
#                statement: the worst case for the fingerprint cache by text.
#   metrics      metrics_listen set, and /metrics scraped every second while measured, against no
#                metrics listener; ends with how many scrapes were answered.
#   cache_unnamed
#                cache_unnamed_statements = true against false (docs/unnamed-statements.md), with
#                pgbench -S -M extended (unnamed Parse/Bind/Execute, planned at every execution
#                unless cached). PgBouncer joins every round as a third contender when one is
#                found ($PGBOUNCER_BIN, else $PEERS/pgbouncer/bin/pgbouncer, PEERS defaulting to
#                /opt/sluice-peers; transaction mode, max_prepared_statements = 200, which leaves
#                unnamed statements alone); its tps and CPU per transaction are printed beside.
#
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=app PGPASSWORD=... PGDATABASE=app \
#     bench/feature-cost.sh --key query_stats|metrics|cache_unnamed [--rounds N] [--duration SECS]
#                           [--clients N] [--sluice PATH]
#
# The database must already hold pgbench's tables (pgbench -i -s 10). sluice is taken from
# target/release/sluice (or $CARGO_TARGET_DIR/release/sluice) unless --sluice says otherwise;
# build it with `cargo build --release` first. Each pooler gets a short warm-up run first (so
# opening its server connections falls in no measured round); rounds alternate which goes first.
# Prints each round's tps and the pooler's CPU time per transaction (utime + stime of the sluice
# process over the run, from /proc, divided by the transactions pgbench completed: less
# sensitive to a busy machine than tps), and the medians and their ratios on/off. Both poolers
# are stopped on exit.
set -euo pipefail

KEY=""
ROUNDS=3
DURATION=10
CLIENTS=64
POOL_SIZE=20
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
while [ $# -gt 0 ]; do
    case "$1" in
        --key) KEY=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --sluice) SLUICE=$2; shift ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 64 ;;
    esac
    shift
done
case "$KEY" in
    query_stats|metrics|cache_unnamed) ;;
    *) echo "--key must be query_stats, metrics or cache_unnamed (see --help)" >&2; exit 64 ;;
esac
# pgbench's protocol: extended (unnamed statements) is what cache_unnamed is about.
MODE=simple
[ "$KEY" = cache_unnamed ] && MODE=extended
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
die() { echo "feature-cost ($KEY): $*" >&2; exit 1; }

start() { # name port on|off [metrics_port]
    local name=$1 port=$2 state=$3 mport=${4:-}
    {
        echo "[pooler]"
        echo "listen = \"127.0.0.1:$port\""
        echo "default_pool_size = $POOL_SIZE"
        echo "max_client_conn = 10000"
        echo "admin_users = [\"$PGUSER\"]"
        if [ "$KEY" = query_stats ]; then
            if [ "$state" = on ]; then echo "query_stats = true"; else echo "query_stats = false"; fi
        fi
        if [ "$KEY" = cache_unnamed ]; then
            if [ "$state" = on ]; then echo "cache_unnamed_statements = true"; else echo "cache_unnamed_statements = false"; fi
        fi
        [ -n "$mport" ] && echo "metrics_listen = \"127.0.0.1:$mport\""
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

wait_port() { # name port: until it accepts TCP connections (or 10 s passed)
    for _ in $(seq 1 100); do
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$2" \
            2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "sluice ($1) is not listening on $2; its log: $(cat "$DIR/${1%-metrics}.log")"
}

ON_PORT=$(free_port); OFF_PORT=$(free_port); METRICS_PORT=""
if [ "$KEY" = metrics ]; then
    METRICS_PORT=$(free_port)
    start on "$ON_PORT" on "$METRICS_PORT"
else
    start on "$ON_PORT" on
fi
start off "$OFF_PORT" off
wait_port on "$ON_PORT"; wait_port off "$OFF_PORT"

# PgBouncer beside them (cache_unnamed only), if one is installed; never installed here.
BOUNCER=""; BOUNCER_PID=""; BOUNCER_PORT=""
if [ "$KEY" = cache_unnamed ]; then
    BOUNCER=${PGBOUNCER_BIN:-${PEERS:-/opt/sluice-peers}/pgbouncer/bin/pgbouncer}
    [ -x "$BOUNCER" ] || BOUNCER=""
fi
if [ -n "$BOUNCER" ]; then
    BOUNCER_PORT=$(free_port)
    mkdir -p "$DIR/pgbouncer"
    printf '"%s" "%s"\n' "$PGUSER" "$PGPASSWORD" > "$DIR/pgbouncer/userlist.txt"
    {
        echo "[databases]"
        echo "$PGDATABASE = host=$PGHOST port=$PGPORT dbname=$PGDATABASE"
        echo "[pgbouncer]"
        echo "listen_addr = 127.0.0.1"
        echo "listen_port = $BOUNCER_PORT"
        echo "unix_socket_dir ="
        echo "auth_type = scram-sha-256"
        echo "auth_file = $DIR/pgbouncer/userlist.txt"
        echo "pool_mode = transaction"
        echo "default_pool_size = $POOL_SIZE"
        echo "max_client_conn = 10000"
        echo "max_prepared_statements = 200"
        echo "ignore_startup_parameters = extra_float_digits,options"
        echo "log_connections = 0"
        echo "log_disconnections = 0"
        echo "logfile = $DIR/pgbouncer/pgbouncer.log"
    } > "$DIR/pgbouncer/pgbouncer.ini"
    # PgBouncer refuses to run as root.
    RUN_AS=()
    if [ "$(id -u)" = 0 ]; then
        RUN_AS=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups --)
        chmod 755 "$DIR"; chown -R nobody "$DIR/pgbouncer"
    fi
    "${RUN_AS[@]}" "$BOUNCER" "$DIR/pgbouncer/pgbouncer.ini" > "$DIR/pgbouncer/stdout.log" 2>&1 &
    BOUNCER_PID=$!
    PIDS+=("$BOUNCER_PID")
    wait_port pgbouncer "$BOUNCER_PORT"
    echo "PgBouncer $("$BOUNCER" --version | head -1 | awk '{ print $2 }') ($BOUNCER) on port $BOUNCER_PORT"
fi
if [ "$KEY" = metrics ]; then
    wait_port on-metrics "$METRICS_PORT"
    page=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics") && [[ $page == *"# TYPE sluice_"* ]] \
        || die "the metrics endpoint on $METRICS_PORT does not serve sluice metrics"
fi

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of pid $1
bench() { # port pid seconds -> "tps cpu_us_per_transaction" (a failed run stops the script)
    local out before after
    before=$(cpu_ticks "$2")
    if ! out=$(PGHOST=127.0.0.1 PGPORT=$1 "$PG_BIN/pgbench" -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$3" 2>&1); then
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
if [ -n "$BOUNCER" ]; then bench "$BOUNCER_PORT" "$BOUNCER_PID" 2 >/dev/null; fi

if [ "$KEY" = metrics ]; then
    # Scrape the metrics-on pooler once a second for the whole run, as an eager Prometheus would.
    : > "$DIR/scrapes"
    ( while true; do
        if curl -fs -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics"; then echo ok; else echo failed; fi >> "$DIR/scrapes"
        sleep 1
    done ) &
    PIDS+=($!)
fi

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.3f'; }
ONS=(); OFFS=(); ON_CPU=(); OFF_CPU=(); BS=(); B_CPU=()
for r in $(seq 1 "$ROUNDS"); do
    # Alternate which goes first, so drift falls on both sides.
    if [ $((r % 2)) -eq 1 ]; then
        read -r on on_cpu < <(bench "$ON_PORT" "$ON_PID" "$DURATION")
        read -r off off_cpu < <(bench "$OFF_PORT" "$OFF_PID" "$DURATION")
    else
        read -r off off_cpu < <(bench "$OFF_PORT" "$OFF_PID" "$DURATION")
        read -r on on_cpu < <(bench "$ON_PORT" "$ON_PID" "$DURATION")
    fi
    [ -n "${on:-}" ] && [ -n "${off:-}" ] || die "round $r: no result (see above)"
    echo "round $r: $KEY on $on tps, off $off tps, on/off $(ratio "$on" "$off");" \
        "pooler CPU per transaction on $on_cpu us, off $off_cpu us"
    ONS+=("$on"); OFFS+=("$off"); ON_CPU+=("$on_cpu"); OFF_CPU+=("$off_cpu")
    if [ -n "$BOUNCER" ]; then
        read -r b b_cpu < <(bench "$BOUNCER_PORT" "$BOUNCER_PID" "$DURATION")
        [ -n "${b:-}" ] || die "round $r: no result from PgBouncer"
        echo "round $r: PgBouncer $b tps, CPU per transaction $b_cpu us;" \
            "sluice on/PgBouncer $(ratio "$on" "$b"), off/PgBouncer $(ratio "$off" "$b")"
        BS+=("$b"); B_CPU+=("$b_cpu")
        unset b
    fi
    unset on off
done
on_med=$(median "${ONS[@]}"); off_med=$(median "${OFFS[@]}")
printf 'median tps: on %.0f, off %.0f, on/off = %.3f\n' "$on_med" "$off_med" "$(ratio "$on_med" "$off_med")"
on_med=$(median "${ON_CPU[@]}"); off_med=$(median "${OFF_CPU[@]}")
printf 'median pooler CPU per transaction: on %.1f us, off %.1f us, on/off = %.3f\n' \
    "$on_med" "$off_med" "$(ratio "$on_med" "$off_med")"
if [ -n "$BOUNCER" ]; then
    b_med=$(median "${BS[@]}"); b_cpu_med=$(median "${B_CPU[@]}")
    on_tps=$(median "${ONS[@]}"); off_tps=$(median "${OFFS[@]}")
    printf 'PgBouncer median: %.0f tps (sluice on/PgBouncer = %.3f, off/PgBouncer = %.3f), CPU per transaction %.1f us\n' \
        "$b_med" "$(ratio "$on_tps" "$b_med")" "$(ratio "$off_tps" "$b_med")" "$b_cpu_med"
fi
if [ "$KEY" = cache_unnamed ]; then
    echo "sluice's statements on one server connection of the pooler with the key on:"
    PGHOST=127.0.0.1 PGPORT=$ON_PORT "$PG_BIN/psql" -X -At \
        -c "SELECT name || ': ' || statement FROM pg_prepared_statements WHERE name LIKE 'sluice\\_%'"
elif [ "$KEY" = metrics ]; then
    echo "scrapes: $(grep -c '^ok' "$DIR/scrapes" || true) answered, $(grep -c '^failed' "$DIR/scrapes" || true) failed"
else
    echo "SHOW QUERIES of the pooler with query_stats on:"
    PGHOST=127.0.0.1 PGPORT=$ON_PORT PGDATABASE=sluice "$PG_BIN/psql" -X -c 'SHOW QUERIES'
fi
