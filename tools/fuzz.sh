#!/usr/bin/env bash
# Runs keel's libFuzzer targets (make fuzz): each target for --seconds, over a
# working corpus seeded from fuzz/corpus/<target> and fuzz/regressions/<target>,
# --jobs targets at a time; then one row per target: executions, speed,
# coverage (edges), features, corpus size and what went wrong. Exits non-zero
# if any target crashed, leaked, hung, ran out of memory or broke an invariant.
#
# --san asan runs the libFuzzer binaries (coverage-guided); --san tsan runs the
# standalone driver over the seeds and the ASan stage's corpus, then mutations
# of them (libFuzzer and clang 14's TSan do not mix: see the Makefile).
#
# Per target, under <build>/fuzz/: work/<target>/ (new inputs libFuzzer kept),
# artifacts/<target>/ (crash-*, leak-*, timeout-*, oom-* inputs) and
# logs/<target>.log (the full output).
set -uo pipefail
cd "$(dirname "$0")/.."

build="" san="asan" seconds=60 jobs=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --san) san="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ -n "$build" ] || { echo "fuzz.sh: --build DIR is required" >&2; exit 2; }
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no targets" >&2; exit 2; }
case "$seconds" in '' | *[!0-9]*) echo "fuzz.sh: --seconds must be a whole number" >&2; exit 2 ;; esac

root="$build/fuzz"
mkdir -p "$root/logs"

# Sanitizer settings for the fuzzer and every worker process it starts. An
# invariant failure aborts; so does any sanitizer report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0 report_signal_unsafe=0}"
# The known false report (tools/tsan.supp), whoever set TSAN_OPTIONS.
case "$TSAN_OPTIONS" in
  *suppressions=*) ;;
  *) TSAN_OPTIONS="$TSAN_OPTIONS suppressions=$PWD/tools/tsan.supp" ;;
esac

run_one() {
  local t="$1"
  local work="$root/work/$t" art="$root/artifacts/$t/" log="$root/logs/$t.log"
  mkdir -p "$work" "$art"
  rm -f "$art"/* "$art"/.current 2>/dev/null
  local dirs=()
  [ -d "fuzz/corpus/$t" ] && dirs+=("fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  if [ "$san" = tsan ]; then
    # The standalone driver (no libFuzzer under TSan: see the Makefile) over
    # the seeds and the ASan stage's corpus, then mutations of them.
    local asan_work="${build%/*}/asan/fuzz/work/$t"
    [ -d "$asan_work" ] && dirs+=("$asan_work")
    "$root/standalone/$t" --seconds "$seconds" --seed "$RANDOM$RANDOM" --current "$art.current" "${dirs[@]}" \
      >"$log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ] && [ -f "$art.current" ]; then
      local kind=crash
      grep -q 'a hang$' "$log" && kind=timeout
      mv "$art.current" "$art$kind-$(sha1sum "$art.current" | cut -c1-40)"
    fi
    rm -f "$art.current"
    echo $rc >"$root/logs/$t.rc"
    return
  fi
  # -timeout: a single input running 25 s is a hang. -rss_limit_mb and
  # -malloc_limit_mb: an input that makes keel allocate without bound is an
  # out-of-memory finding, not a slow machine.
  "$root/bin/$t" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=3072 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$art" "$work" "${dirs[@]}" >"$log" 2>&1
  echo $? >"$root/logs/$t.rc"
}

pids=()
for t in "${targets[@]}"; do
  bin="$root/bin/$t"
  [ "$san" = tsan ] && bin="$root/standalone/$t"
  if [ ! -x "$bin" ]; then echo "fuzz.sh: $bin is not built" >&2; exit 2; fi
  echo "fuzz: $t ($san, ${seconds}s) $(date -u +%H:%M:%S)"
  run_one "$t" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait

status=0
printf '\n%-16s %-5s %12s %8s %7s %8s %7s  %s\n' target san execs exec/s cov features corpus result
for t in "${targets[@]}"; do
  log="$root/logs/$t.log"
  rc=$(cat "$root/logs/$t.rc" 2>/dev/null || echo 99)
  stat() { grep -oE "^stat::$1: *[0-9]+" "$log" | tail -1 | grep -oE '[0-9]+$' || echo "?"; }
  execs=$(stat number_of_executed_units)
  speed=$(stat average_exec_per_sec)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
  found=$(find "$root/artifacts/$t" -type f | wc -l)
  result="ok"
  if [ "$rc" != 0 ] || [ "$found" != 0 ]; then
    status=1
    kinds=$(find "$root/artifacts/$t" -type f -printf '%f\n' | sed -E 's/-.*//' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
    result="FAILED (exit $rc${kinds:+; $kinds}): see $log"
  fi
  printf '%-16s %-5s %12s %8s %7s %8s %7s  %s\n' "$t" "$san" "$execs" "$speed" "${cov:--}" "${ft:--}" "${corp:-?}" "$result"
done
if [ $status -ne 0 ]; then
  echo
  for t in "${targets[@]}"; do
    rc=$(cat "$root/logs/$t.rc" 2>/dev/null || echo 99)
    [ "$rc" = 0 ] && continue
    echo "--- $t: last lines of $root/logs/$t.log"
    grep -vE '^#[0-9]+' "$root/logs/$t.log" | tail -25
    if [ "$san" = tsan ]; then
      echo "    reproduce: $root/standalone/$t $(find "$root/artifacts/$t" -type f | head -1)"
    else
      echo "    reproduce: $root/bin/$t $(find "$root/artifacts/$t" -type f | head -1)"
    fi
  done
fi
exit $status
