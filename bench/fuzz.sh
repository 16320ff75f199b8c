#!/usr/bin/env bash
# Coverage-guided fuzzing of sluice-proto with libFuzzer, on the stable toolchain.
#
#   bench/fuzz.sh TARGET|all SECONDS [libFuzzer options...]
#
# TARGET is one of startup, client, server, auth (see fuzz/src/*.rs for what each drives and
# checks). Each selected target runs for SECONDS of wall time, one after the other, one process,
# at nice 15. SECONDS=0 replays the seeds, the regressions and the local corpus once and stops.
# The corpus a run grows is kept in fuzz/corpus/TARGET (not checked in) and reused by the next run;
# crashing inputs land in fuzz/artifacts/TARGET/, logs in fuzz/logs/. Exits 1 if a target crashed.
# Environment: FUZZ_NICE (default 15), CARGO_TARGET_DIR (default fuzz/target).
set -euo pipefail

usage() {
  echo "usage: $0 startup|client|server|auth|all SECONDS [libFuzzer options...]" >&2
  exit 2
}
[ $# -ge 2 ] || usage
which=$1
secs=$2
shift 2
[[ $secs =~ ^[0-9]+$ ]] || usage
all=(startup client server auth)
case $which in
  all) targets=("${all[@]}") ;;
  startup|client|server|auth) targets=("$which") ;;
  *) usage ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz=$root/fuzz
nice_level=${FUZZ_NICE:-15}
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$fuzz/target}

# What cargo-fuzz passes to rustc, minus `-Zsanitizer=address` (nightly only): LLVM's
# SanitizerCoverage pass with the counters, PC table and comparison hooks libFuzzer reads. The
# crate under test forbids unsafe code, so a sanitizer would have little to find; debug assertions
# and overflow checks stay on so that an arithmetic overflow is a crash too. `--target` keeps the
# flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
nice -n "$nice_level" cargo build --manifest-path "$fuzz/Cargo.toml" --release --target "$host" \
  --bins --quiet
bin_dir=$CARGO_TARGET_DIR/$host/release

# Sets cpu_total to the user+sys CPU seconds of this shell's finished children, from `times`
# (run in this shell: in a command substitution it would count the subshell's children only).
cpu_file=$(mktemp)
trap 'rm -f "$cpu_file"' EXIT
cpu_now() {
  times >"$cpu_file"
  cpu_total=$(tail -n 1 "$cpu_file" | awk '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
    printf "%.1f", t }')
}

mkdir -p "$fuzz/logs"
stamp=$(date +%Y%m%d-%H%M%S)
summary=()
crashed=0
for t in "${targets[@]}"; do
  corpus=$fuzz/corpus/$t
  artifacts=$fuzz/artifacts/$t
  log=$fuzz/logs/$t-$stamp.log
  mkdir -p "$corpus" "$artifacts"
  dirs=("$corpus" "$fuzz/seeds/$t")
  [ -d "$fuzz/regressions/$t" ] && dirs+=("$fuzz/regressions/$t")
  if [ "$secs" -eq 0 ]; then
    mode=(-runs=0)
  else
    mode=(-max_total_time="$secs")
  fi
  echo "== $t: ${secs}s, log $log" >&2
  cpu_now
  before=$cpu_total
  status=0
  # New inputs go to the first directory (the local corpus); the others are only read.
  nice -n "$nice_level" "$bin_dir/$t" "${mode[@]}" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -max_len=4096 -artifact_prefix="$artifacts/" "$@" "${dirs[@]}" \
    >"$log" 2>&1 || status=$?
  cpu_now
  cpu=$(awk -v a="$before" -v b="$cpu_total" 'BEGIN { printf "%.0f", b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  units=$(find "$corpus" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    crashed=1
    grep -E 'panicked at|SUMMARY|Test unit written|ERROR: libFuzzer' "$log" | head -n 8 >&2 || true
  fi
  summary+=("$(printf '%-8s %7s %7s %12s %6s %6s %7s %s' "$t" "$secs" "$cpu" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" "$units" "$([ "$status" -eq 0 ] && echo ok || echo "CRASH ($status)")")")
done

printf '%-8s %7s %7s %12s %6s %6s %7s %s\n' target wall_s cpu_s execs cov ft corpus result
printf '%s\n' "${summary[@]}"
exit "$crashed"
