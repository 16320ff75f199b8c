#!/usr/bin/env bash
# sluice's resident memory after a 5,000-client storm, and its throughput, with each allocator
# and purge setting. See bench/README.md, "Memory and allocators".
#
#   bench/allocators.sh [--no-build] [--storm N] [--duration SECS] [--rounds N] [--settle SECS]
#                       [--only REGEX] [--keep]
#
# Builds three release binaries (glibc's malloc; jemalloc, sluice's default, with its settings
# from src/main.rs; mimalloc. With --no-build it takes them from $ALLOC_BIN_DIR, default
# /tmp/sluice-alloc-bin), starts a throw-away PostgreSQL, then for each variant below: starts
# sluice, runs the storm (pgbench -c N: every client logs in, then all run two SELECT 1 at once
# against a pool of 20), reads VmHWM and VmRSS
# from /proc/PID/status right after and after --settle seconds of idleness, then measures
# throughput (pgbench -S, 32 clients, --duration seconds) and RSS again. Then --rounds more
# throughput runs per variant, the variants taking turns (a fresh sluice each run), so that a
# busy machine weighs on all alike; the table gives the median. --only keeps the variants whose
# name matches REGEX (grep -E). Prints a Markdown table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
PY=${PYTHON:-python3}
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

BUILD=1
STORM=5000
DURATION=15
SETTLE=10
ROUNDS=3
ONLY=.
KEEP=0
BIN_DIR=${ALLOC_BIN_DIR:-/tmp/sluice-alloc-bin}
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --storm) STORM=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --settle) SETTLE=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --keep) KEEP=1 ;;
        *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
    shift
done

# name | binary | environment
VARIANTS=(
    "glibc|glibc|"
    "glibc, MALLOC_TRIM_THRESHOLD_=128KiB MALLOC_MMAP_THRESHOLD_=128KiB|glibc|MALLOC_TRIM_THRESHOLD_=131072 MALLOC_MMAP_THRESHOLD_=131072"
    "glibc, MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=0|glibc|MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=0"
    "jemalloc's defaults (dirty_decay_ms 10000, no background thread)|jemalloc|_RJEM_MALLOC_CONF=background_thread:false,dirty_decay_ms:10000"
    "jemalloc, background_thread, dirty_decay_ms:1000|jemalloc|_RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
    "jemalloc, background_thread, dirty_decay_ms:0 (sluice's default)|jemalloc|"
    "mimalloc (purge_delay 10 ms)|mimalloc|"
    "mimalloc, MIMALLOC_PURGE_DELAY=0|mimalloc|MIMALLOC_PURGE_DELAY=0"
)

SELECTED=()
for v in "${VARIANTS[@]}"; do
    if printf '%s\n' "${v%%|*}" | grep -Eq -- "$ONLY"; then SELECTED+=("$v"); fi
done
[ "${#SELECTED[@]}" -gt 0 ] || die "no variant matches --only $ONLY"
VARIANTS=("${SELECTED[@]}")

if [ "$BUILD" = 1 ]; then
    mkdir -p "$BIN_DIR"
    for a in glibc jemalloc mimalloc; do
        case $a in
            glibc) feat=(--no-default-features) ;;
            jemalloc) feat=() ;;
            mimalloc) feat=(--no-default-features --features mimalloc) ;;
        esac
        log "cargo build --release ${feat[*]}"
        (cd "$ROOT" && cargo build --release --locked --bin sluice "${feat[@]}" >&2)
        cp "$ROOT/target/release/sluice" "$BIN_DIR/sluice-$a"
    done
fi

bench_tools
raise_nofile
[ "$NOFILE" -gt $((STORM * 2 + 100)) ] || die "ulimit -n is $NOFILE: too low for a storm of $STORM"
bench_workdir sluice-alloc
HOLD_PID="" BOUNCER_PID="" SLUICE_NAMES=()
declare -A SL_DIR SL_PORT SL_PID SL_BIN
pg_start trust
pg_bench_db 10

echo 'SELECT 1;' >"$WORK/select1.sql"
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# name -> "start hwm after settled load" (KiB), and the throughput runs' tps
declare -A RSS TPS
start_variant() { # alloc envs
    local alloc=$1 envs=$2
    SLUICE_TOML=$(cat <<EOF
max_client_conn = $((STORM + 100))
auth_type = "trust"
default_pool_size = 20
[users.bench]
auth_type = "trust"
[databases.bench]
host = "127.0.0.1"
port = $PGPORT
EOF
)
    SL_BIN[$alloc]=$BIN_DIR/sluice-$alloc
    [ -x "${SL_BIN[$alloc]}" ] || die "no ${SL_BIN[$alloc]} (build without --no-build first)"
    sluice_prepare "$alloc"
    SLUICE_NAMES=("$alloc")
    # shellcheck disable=SC2086
    (cd "$WORK" && exec env $envs SLUICE_LOG=warn "${SL_BIN[$alloc]}" --config "${SL_DIR[$alloc]}/sluice.toml" >>"${SL_DIR[$alloc]}/sluice.log" 2>&1) &
    SL_PID[$alloc]=$!
    wait_ready "$alloc" "${SL_PORT[$alloc]}" "${SL_PID[$alloc]}" "${SL_DIR[$alloc]}"
}
throughput() { # alloc
    "$PGBENCH" -n -S -h 127.0.0.1 -p "${SL_PORT[$1]}" -c 32 -j 2 -T "$DURATION" bench 2>&1 \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | cut -d. -f1
}

for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name alloc envs <<<"$v"
    log "storm: $name"
    start_variant "$alloc" "$envs"
    pid=${SL_PID[$alloc]}
    start_kib=$(status_kib "$pid" VmRSS)
    "$PGBENCH" -n -h 127.0.0.1 -p "${SL_PORT[$alloc]}" -c "$STORM" -j 2 -t 2 -f "$WORK/select1.sql" bench \
        >"$WORK/storm.$alloc.log" 2>&1 || { tail -5 "$WORK/storm.$alloc.log" >&2; die "storm failed"; }
    hwm_kib=$(status_kib "$pid" VmHWM)
    after_kib=$(status_kib "$pid" VmRSS)
    sleep "$SETTLE"
    settled_kib=$(status_kib "$pid" VmRSS)
    TPS[$name]="$(throughput "$alloc")"
    load_kib=$(status_kib "$pid" VmRSS)
    RSS[$name]="$start_kib $hwm_kib $after_kib $settled_kib $load_kib"
    stop_sluice "$alloc"
done
for r in $(seq 1 "$ROUNDS"); do
    for v in "${VARIANTS[@]}"; do
        IFS='|' read -r name alloc envs <<<"$v"
        log "throughput round $r: $name"
        start_variant "$alloc" "$envs"
        TPS[$name]="${TPS[$name]} $(throughput "$alloc")"
        stop_sluice "$alloc"
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
echo
echo "Storm: $STORM clients (pgbench -c $STORM -j 2 -t 2, SELECT 1, pool_size 20). Throughput: pgbench -S -c 32 -j 2 -T $DURATION, median of $((ROUNDS + 1)) runs (all runs in brackets). RSS in MiB."
echo
echo "| allocator | RSS at start | peak (VmHWM) | right after the storm | after ${SETTLE} s idle | after a throughput run | pgbench -S tps |"
echo "|---|---|---|---|---|---|---|"
for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name alloc envs <<<"$v"
    read -r a b c d e <<<"${RSS[$name]}"
    echo "| $name | $(mib "$a") | $(mib "$b") | $(mib "$c") | $(mib "$d") | $(mib "$e") | $(echo "${TPS[$name]}" | median) (${TPS[$name]}) |"
done
