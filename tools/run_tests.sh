#!/usr/bin/env bash
# tools/run_tests.sh BINARY SHARDS [GoogleTest flags...]
#
# Runs keel's test binary as SHARDS processes at once, each running every
# SHARDS-th test (GoogleTest's own sharding: GTEST_TOTAL_SHARDS and
# GTEST_SHARD_INDEX), and prints each shard's output whole, in shard order,
# once all have ended. Exits 0 only if every shard did.
#
# Why: most of the suite waits (on workers, timeouts, child processes), so one
# process leaves the cores idle; two shards on two cores took the run's wall
# time down by about 40%. Each shard is its own process, so the per-test
# checks (no child or fd left behind, the watchdog) hold per shard as before.
# SHARDS=1 runs the binary directly, output unbuffered.
set -u -o pipefail

if [[ $# -lt 2 || ! $2 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: tools/run_tests.sh BINARY SHARDS [flags...] (SHARDS a positive integer)" >&2
  exit 2
fi
bin=$1 shards=$2
shift 2
if (( shards == 1 )); then
  exec "$bin" "$@"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/keel-shards.XXXXXX") || exit 2
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ((i = 0; i < shards; i++)); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i "$bin" "$@" >"$dir/$i.log" 2>&1 &
  pids+=($!)
done

status=0
failed=()
for ((i = 0; i < shards; i++)); do
  wait "${pids[$i]}"
  rc=$?
  echo "=== test shard $((i + 1)) of $shards (exit $rc)"
  cat "$dir/$i.log"
  if (( rc != 0 )); then
    status=1
    failed+=("$((i + 1))")
  fi
done
pids=()
if (( status != 0 )); then
  echo "run_tests.sh: shard(s) ${failed[*]} of $shards failed" >&2
fi
exit $status
