#!/usr/bin/env bash
# sluice's resident memory after a 5,000-client storm, and its throughput, with each allocator
# and purge setting. See bench/README.md, "Allocators".
#
#   bench/allocators.sh [--no-build] [--storm N] [--duration SECS] [--settle SECS] [--keep]
#
# Builds three release binaries (glibc's malloc, --features jemalloc, --features mimalloc; with
# --no-build it takes them from $ALLOC_BIN_DIR, default /tmp/sluice-alloc-bin), starts a throw-away
# PostgreSQL, then for each variant below: starts sluice, runs the storm (pgbench -c N: every
# client logs in, then all run two SELECT 1 at once against a pool of 20), reads VmHWM and VmRSS
# from /proc/PID/status right after and after --settle seconds of idleness, then measures
# throughput (pgbench -S, 32 clients, --duration seconds) and RSS again. Prints a Markdown table.
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
KEEP=0
BIN_DIR=${ALLOC_BIN_DIR:-/tmp/sluice-alloc-bin}
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --storm) STORM=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --settle) SETTLE=$2; shift ;;
        --keep) KEEP=1 ;;
        *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
    shift
done

# name | binary | environment
VARIANTS=(
    "glibc|glibc|"
    "glibc, MALLOC_TRIM_THRESHOLD_=128KiB MALLOC_MMAP_THRESHOLD_=128KiB|glibc|MALLOC_TRIM_THRESHOLD_=131072 MALLOC_MMAP_THRESHOLD_=131072"
    "glibc, MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=0|glibc|MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=0"
    "jemalloc (dirty_decay_ms 10000, no background thread)|jemalloc|"
    "jemalloc, background_thread, dirty_decay_ms:1000|jemalloc|_RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
    "jemalloc, background_thread, dirty_decay_ms:0|jemalloc|_RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
    "mimalloc (purge_delay 10 ms)|mimalloc|"
    "mimalloc, MIMALLOC_PURGE_DELAY=0|mimalloc|MIMALLOC_PURGE_DELAY=0"
)

if [ "$BUILD" = 1 ]; then
    mkdir -p "$BIN_DIR"
    for a in glibc jemalloc mimalloc; do
        feat=()
        [ "$a" = glibc ] || feat=(--features "$a")
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

ROWS=()
for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name alloc envs <<<"$v"
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
    log "$name"
    # shellcheck disable=SC2086
    (cd "$WORK" && exec env $envs SLUICE_LOG=warn "${SL_BIN[$alloc]}" --config "${SL_DIR[$alloc]}/sluice.toml" >>"${SL_DIR[$alloc]}/sluice.log" 2>&1) &
    SL_PID[$alloc]=$!
    pid=${SL_PID[$alloc]}
    wait_ready "$alloc" "${SL_PORT[$alloc]}" "$pid" "${SL_DIR[$alloc]}"
    start_kib=$(status_kib "$pid" VmRSS)
    "$PGBENCH" -n -h 127.0.0.1 -p "${SL_PORT[$alloc]}" -c "$STORM" -j 2 -t 2 -f "$WORK/select1.sql" bench \
        >"$WORK/storm.$alloc.log" 2>&1 || { tail -5 "$WORK/storm.$alloc.log" >&2; die "storm failed"; }
    hwm_kib=$(status_kib "$pid" VmHWM)
    after_kib=$(status_kib "$pid" VmRSS)
    sleep "$SETTLE"
    settled_kib=$(status_kib "$pid" VmRSS)
    tps=$("$PGBENCH" -n -S -h 127.0.0.1 -p "${SL_PORT[$alloc]}" -c 32 -j 2 -T "$DURATION" bench 2>&1 \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    load_kib=$(status_kib "$pid" VmRSS)
    ROWS+=("| $name | $(mib "$start_kib") | $(mib "$hwm_kib") | $(mib "$after_kib") | $(mib "$settled_kib") | ${tps%.*} | $(mib "$load_kib") |")
    stop_sluice "$alloc"
done

echo
echo "Storm: $STORM clients (pgbench -c $STORM -j 2 -t 2, SELECT 1, pool_size 20); throughput: pgbench -S -c 32 -j 2 -T $DURATION; RSS in MiB."
echo
echo "| allocator | RSS at start | peak (VmHWM) | right after the storm | after ${SETTLE} s idle | pgbench -S tps | RSS after the throughput run |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
