#!/usr/bin/env bash
# Instructions sluice executes per transaction, counted by valgrind's callgrind. See bench/README.md.
#
#   bench/callgrind.sh [--modes "simple extended prepared"] [--clients "1 64"] [--tx "1280 3840"]
#                      [--repeat K] [--threads "1 2"] [--no-build] [--keep] [--out DIR]
#                      [--config-extra [NAME:]LINE]...
#                      [--sluice] NAME[=PATH]...
#
# For each binary, mode and client count: `pgbench -S -M MODE -c CLIENTS -t N` through a freshly
# started sluice under callgrind (trust auth), once with LOW and once with HIGH transactions in all
# (--tx; at 64 clients -t 20 and -t 60), and (Ir of the second - Ir of the first) / (HIGH - LOW):
# start-up, the clients' logins and shutdown are in both runs and cancel out. --sluice NAME=PATH
# (repeatable) names the binaries; NAME alone, or no --sluice, is this tree's release build.
# --config-extra (repeatable) adds LINE to the [pooler] section of binary NAME's config (of every
# binary without NAME:), e.g. `off=target/release/sluice --config-extra 'off:query_stats = false'`.
# --threads runs each binary once per `workers = N` as target NAME-wN (valgrind runs one thread at
# a time, so the count is every thread's instructions: what a second worker adds, not its speed).
# Everything it starts is stopped on exit and its temporary directory removed (unless --keep).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
PY=${PYTHON:-python3}
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

MODES="simple extended prepared"
CLIENTS="1 64"
TX="1280 3840"
REPEAT=1
THREADS=""
BUILD=1
KEEP=0
OUT=""
SCALE=1
POOL_SIZE=20

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
EXTRA=() # "NAME:LINE" or ":LINE" (every binary)
declare -A SL_EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --modes) MODES=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --tx) TX=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --out) OUT=$2; shift ;;
        --config-extra)
            if [[ "$2" =~ ^([A-Za-z0-9][A-Za-z0-9_.-]*):(.*)$ ]]; then EXTRA+=("$2"); else EXTRA+=(":$2"); fi
            shift ;;
        --sluice) sluice_spec "$2"; shift ;;
        -h|--help) usage 0 ;;
        -*) echo "unknown argument: $1" >&2; usage 64 ;;
        *) sluice_spec "$1" ;;
    esac
    shift
done
read -r TX_LOW TX_HIGH <<<"$TX"
[ -n "${TX_HIGH:-}" ] && [ "$TX_HIGH" -gt "$TX_LOW" ] || die "--tx needs two totals, the second larger: \"1280 3840\""

bench_tools
command -v valgrind >/dev/null || apt_install valgrind
sluice_binaries
sluice_threads "$THREADS"
raise_nofile

bench_workdir sluice-callgrind
mkdir -p "$WORK/cg"
RESULTS=$OUT/callgrind.jsonl META=$OUT/meta.json
: >"$RESULTS"

pg_start trust
pg_bench_db "$SCALE"

SLUICE_TOML=$(cat <<EOF
pool_mode = "transaction"
default_pool_size = $POOL_SIZE
max_client_conn = 20000
query_wait_timeout = "60s"
auth_type = "trust"

[users.bench]

[databases.bench]
host = "127.0.0.1"
port = $PGPORT
EOF
)
for name in "${SLUICE_NAMES[@]}"; do
    sluice_prepare "$name"
    # The [pooler] section is the first lines of the file, up to the first blank one.
    lines=()
    for e in "${EXTRA[@]}"; do
        if [ "${e%%:*}" = "" ] || [ "${e%%:*}" = "$name" ]; then lines+=("${e#*:}"); fi
    done
    if [ ${#lines[@]} -gt 0 ]; then
        toml=${SL_DIR[$name]}/sluice.toml
        { sed '/^$/,$d' "$toml"; printf '%s\n' "${lines[@]}"; sed -n '/^$/,$p' "$toml"; } >"$toml.new"
        mv "$toml.new" "$toml"
        SL_EXTRA[$name]=$(IFS=';'; echo "${lines[*]//\"/\\\"}")
    fi
done

SLUICE_META=""
for name in "${SLUICE_NAMES[@]}"; do
    SLUICE_META+="${SLUICE_META:+; }$name = ${SL_DESC[$name]}${SL_EXTRA[$name]:+ with ${SL_EXTRA[$name]}}"
done
SLUICE_JSON=$(printf '"%s", ' "${SLUICE_NAMES[@]}"); SLUICE_JSON="[${SLUICE_JSON%, }]"
cat >"$META" <<EOF
{"date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
 "postgres": "$PG_VERSION (pgbench scale $SCALE, trust)",
 "sluice": "$SLUICE_META (transaction mode, pool size $POOL_SIZE, trust, workers $([ -n "$THREADS" ] && echo "$THREADS" | tr ' ' / || echo "default"))",
 "sluices": $SLUICE_JSON,
 "settings": "$(valgrind --version) --tool=callgrind; pgbench -S -j 2 (-j 1 for 1 client) -t N through a fresh sluice, $TX_LOW and $TX_HIGH transactions in all; (Ir difference) / $((TX_HIGH - TX_LOW)); $REPEAT repetition(s), median"}
EOF

# One run: a fresh sluice NAME under callgrind, pgbench through it, sluice stopped (callgrind writes
# its counts at exit), one JSON record with the total.
cg_run() { # name mode clients tx_per_client rep
    local name=$1 mode=$2 clients=$3 per=$4 rep=$5 jobs=2 out ir
    [ "$clients" -lt 2 ] && jobs=1
    out=$WORK/cg/$name.$mode.c$clients.t$per.r$rep.out
    SLUICE_WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$out")
    start_sluice "$name"
    wait_ready "$name" "${SL_PORT[$name]}" "${SL_PID[$name]}" "${SL_DIR[$name]}"
    if ! "$PGBENCH" -h 127.0.0.1 -p "${SL_PORT[$name]}" -n -S -M "$mode" -c "$clients" -j "$jobs" -t "$per" bench \
        >"$WORK/pgbench.log" 2>&1 || ! grep -q "number of failed transactions: 0" "$WORK/pgbench.log"; then
        tail -5 "$WORK/pgbench.log" >&2
        die "pgbench through '$name' failed ($mode, $clients clients); sluice's log: ${SL_DIR[$name]}/sluice.log (--keep keeps it)"
    fi
    stop_sluice "$name" 120
    ir=$("$PY" "$BENCH/benchlib.py" cgtotal "$out")
    printf '{"sluice": "%s", "mode": "%s", "clients": %d, "tx_per_client": %d, "tx": %d, "rep": %d, "ir": %d}\n' \
        "$name" "$mode" "$clients" "$per" $((clients * per)) "$rep" "$ir" >>"$RESULTS"
    log "  $name $mode c=$clients t=$per: $ir instructions"
}

for mode in $MODES; do
    for clients in $CLIENTS; do
        low=$((TX_LOW / clients)) high=$((TX_HIGH / clients))
        [ "$low" -ge 1 ] && [ "$high" -gt "$low" ] || die "--tx $TX is too small for $clients clients"
        log "pgbench -S -M $mode -c $clients, -t $low and -t $high"
        for rep in $(seq 1 "$REPEAT"); do
            n=${#SLUICE_NAMES[@]}
            for ((i = 0; i < n; i++)); do # the binaries' order rotates each repetition
                name=${SLUICE_NAMES[$(((i + rep - 1) % n))]}
                cg_run "$name" "$mode" "$clients" "$low" "$rep"
                cg_run "$name" "$mode" "$clients" "$high" "$rep"
            done
        done
    done
done

log "done; raw records in $RESULTS"
echo
"$PY" "$BENCH/benchlib.py" cgreport --results "$RESULTS" --meta "$META" | tee "$OUT/report.md"
