#!/usr/bin/env bash
# proofs/run_spin.sh -- run keel's Spin models and their seeded-bug twins.
#
# For every check: spin [-D...] -a <model>.pml in a scratch directory, compile
# pan.c (with tcc where it is installed, else clang -O0: fast_cc below; gcc
# -O2 or -Og for the model rows whose search repays it: optimised_cc), run
# pan exhaustively, and print one row to stdout:
#
#   KEEL-CHECK|<name>|<invariant ids>|spin|<search kind>|<states stored>|<seconds>|<pass|FAIL>|<verdict>|<model|twin>
#
# <pass|FAIL> is pan's outcome: pass = a complete search found no error,
# FAIL = pan reported an error.  A search that did not complete (depth limit
# hit, out of memory, tool failure) with no error found is FAIL on a model row
# and pass on a twin row (a twin that was not caught), so that it is never
# taken for a success.  <seconds> is the wall time of spin + cc + pan.
# Model rows must say pass and twin rows FAIL; the script exits 0 only then.
#
# Environment:
#   KEEL_LOG_DIR    where each check's full spin/cc/pan output (and, for an
#                   error, the replayed counterexample trail) is written;
#                   default: a fresh directory under $TMPDIR, named on stderr.
#   KEEL_SPIN_JOBS  checks run in parallel (default: number of CPUs).
#   KEEL_SPIN_DEPTH pan's -m search depth bound (default 20000).
#   KEEL_SPIN_SET   shipped (default): the models of the kernel's protocols;
#                   design: the design models of proofs/design/, protocols
#                   not yet in the kernel (make verify-design).
#
# Nothing is written inside the repository.
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for tool in spin gcc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run_spin.sh: $tool not found" >&2
    exit 2
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/keel-spin.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

if [[ -n "${KEEL_LOG_DIR:-}" ]]; then
  logdir=$KEEL_LOG_DIR
  mkdir -p "$logdir" || exit 2
else
  logdir=$(mktemp -d "${TMPDIR:-/tmp}/keel-spin-logs.XXXXXX") || exit 2
fi
echo "run_spin.sh: logs in $logdir" >&2

quick_cc=gcc
for cc in clang-14 clang; do
  if command -v "$cc" >/dev/null 2>&1; then quick_cc=$cc; break; fi
done
# pan.c is compiled with tcc where it is installed (make deps does), for
# every twin and every model row not in optimised_cc below: their searches
# end within seconds, and clang -O0's compile was a large part of them.
# Twins: most meet their counterexample within a few thousand states (the
# cluster model's compile took 0.9 s with clang against tcc's 0.06, for a
# 0.05 s search). tcc's code searches up to a quarter slower than clang
# -O0's: the longest twin (1.1M states) took 6.4 s with tcc against 6.0, and
# cluster.safety.n2c1k2f1 2.6 CPU-s against 2.1. The shipped model rows it
# compiles cost 5 CPU-s less in all with it (clang -O0 took 0.3-1.2 CPU-s a
# compile, tcc 0.02-0.07), and each stored the same number of states, at the
# same depth, as with clang (2026-12-07).
fast_cc="$quick_cc -O0"
command -v tcc >/dev/null 2>&1 && fast_cc=tcc

jobs_max=${KEEL_SPIN_JOBS:-$(nproc 2>/dev/null || echo 2)}
[[ $jobs_max =~ ^[1-9][0-9]*$ ]] || jobs_max=2

# pan -m: far above the deepest path (a few hundred steps); overridable to
# test the "search depth too small" handling.
depth=${KEEL_SPIN_DEPTH:-20000}
[[ $depth =~ ^[1-9][0-9]*$ ]] || depth=20000

# name | model | spin -D flags | search | invariant ids | role
checks=(
  "futex_mutex.safety.3p|futex_mutex||safety|SYNC-1,SYNC-2|model"
  "futex_mutex.safety.3p+twin:BUG_SKIP_WAKE|futex_mutex|-DBUG_SKIP_WAKE|safety|SYNC-2|twin"
  "futex_mutex.safety.3p+twin:BUG_WOKEN_MARKS_LOCKED|futex_mutex|-DBUG_WOKEN_MARKS_LOCKED|safety|SYNC-2|twin"
  "futex_mutex.liveness.3p|futex_mutex|-DLIVENESS|liveness|SYNC-13|model"
  "futex_mutex.liveness.3p+twin:BUG_SKIP_WAKE|futex_mutex|-DLIVENESS -DBUG_SKIP_WAKE|liveness|SYNC-13|twin"
  "condvar.prodcons.3c1p|condvar||safety|SYNC-2,SYNC-10|model"
  "condvar.prodcons.3c1p+twin:BUG_NOTIFY_SKIP_WAKE|condvar|-DBUG_NOTIFY_SKIP_WAKE|safety|SYNC-2|twin"
  "condvar.prodcons.3c1p+twin:BUG_ENQUEUE_AFTER_RELEASE|condvar|-DBUG_ENQUEUE_AFTER_RELEASE|safety|SYNC-2|twin"
  "condvar.prodcons.3c1p+twin:BUG_NOTIFY_IGNORES_N|condvar|-DBUG_NOTIFY_IGNORES_N|safety|SYNC-10|twin"
  "condvar.prodcons.3c1p+twin:BUG_TIMEOUT_DROPS_SIGNAL|condvar|-DBUG_TIMEOUT_DROPS_SIGNAL|safety|SYNC-2,SYNC-10|twin"
  "executor.safety.c1m2q1.2s4t|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DCANCEL_OUTSIDE_LOCK|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-6,EXEC-12|model"
  "executor.safety.c1m2q1.2s4t+twin:BUG_CLAIM_SKIPS_WAKE|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DBUG_CLAIM_SKIPS_WAKE -DCANCEL_OUTSIDE_LOCK|safety|EXEC-5|twin"
  "executor.safety.c1m2q1.2s4t+twin:BUG_SUBMIT_AFTER_SHUTDOWN|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DBUG_SUBMIT_AFTER_SHUTDOWN -DCANCEL_OUTSIDE_LOCK|safety|EXEC-3|twin"
  "executor.safety.c1m2q1.2s4t+twin:BUG_QUEUE_WHILE_IDLE|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DBUG_QUEUE_WHILE_IDLE -DCANCEL_OUTSIDE_LOCK|safety|EXEC-12|twin"
  "executor.liveness.c1m2q1.2s4t|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DLIVENESS -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|model"
  "executor.liveness.c1m2q1.2s4t+twin:BUG_CLAIM_SKIPS_WAKE|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DLIVENESS -DBUG_CLAIM_SKIPS_WAKE -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|twin"
  "executor.safety.c0m2q1.2s4t|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DCANCEL_OUTSIDE_LOCK|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-6,EXEC-12|model"
  "executor.safety.c0m2q1.2s4t+twin:BUG_NO_WORKER_FOR_QUEUE|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DBUG_NO_WORKER_FOR_QUEUE -DCANCEL_OUTSIDE_LOCK|safety|EXEC-5|twin"
  "executor.safety.c0m2q1.2s4t+twin:BUG_TIMEOUT_IGNORES_CLAIM|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DBUG_TIMEOUT_IGNORES_CLAIM -DCANCEL_OUTSIDE_LOCK|safety|EXEC-1|twin"
  "executor.liveness.c0m2q1.2s4t|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DLIVENESS -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|model"
  "executor.liveness.c0m2q1.2s4t+twin:BUG_NO_WORKER_FOR_QUEUE|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DLIVENESS -DBUG_NO_WORKER_FOR_QUEUE -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|twin"
  "executor.liveness.c0m2q1.2s4t+twin:BUG_TIMEOUT_IGNORES_CLAIM|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DLIVENESS -DBUG_TIMEOUT_IGNORES_CLAIM -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|twin"
  "executor.safety.c1m2q1ct.2s4t|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DALLOW_CORE_TIMEOUT=1 -DCANCEL_OUTSIDE_LOCK|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-6,EXEC-12|model"
  "executor.liveness.c1m2q1ct.2s4t|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DALLOW_CORE_TIMEOUT=1 -DLIVENESS -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|model"
  "executor.safety.c0m2q1st.2s3t|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=3 -DSTALE_TIMED_OUT -DCANCEL_OUTSIDE_LOCK|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-6,EXEC-12|model"
  "executor.safety.c0m2q1st.2s3t+twin:BUG_RETIRE_IGNORES_QUEUE|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=3 -DSTALE_TIMED_OUT -DBUG_RETIRE_IGNORES_QUEUE -DCANCEL_OUTSIDE_LOCK|safety|EXEC-5|twin"
  "executor.liveness.c0m2q1st.2s3t|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=3 -DSTALE_TIMED_OUT -DLIVENESS -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|model"
  "executor.liveness.c0m2q1st.2s3t+twin:BUG_RETIRE_IGNORES_QUEUE|executor|-DCORE=0 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=3 -DSTALE_TIMED_OUT -DLIVENESS -DBUG_RETIRE_IGNORES_QUEUE -DCANCEL_OUTSIDE_LOCK|liveness|EXEC-5|twin"
  "executor.safety.c1m2q1.2s4t+twin:BUG_CANCEL_AFTER_UNLOCK|executor|-DCORE=1 -DMAXT=2 -DQCAP=1 -DNSUB=2 -DNTASK=4 -DBUG_CANCEL_AFTER_UNLOCK|safety|EXEC-1|twin"
  "process_pool.safety.w2k2d2n1m0r1c|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1|safety|POOL-1,POOL-2,POOL-3,POOL-5,POOL-6,POOL-7,POOL-8,POOL-9|model"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_REQUEUE_ONLY_HEAD|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_REQUEUE_ONLY_HEAD|safety|POOL-1|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_EXIT_BEFORE_DRAIN|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_EXIT_BEFORE_DRAIN|safety|POOL-1,POOL-2|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_NO_REPLACE_IN_SHUTDOWN|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_NO_REPLACE_IN_SHUTDOWN|safety|POOL-1,POOL-3|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_RESPAWN_UNLIMITED|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_RESPAWN_UNLIMITED|safety|POOL-5|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_EXIT_LOSES_UNSTARTED|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_EXIT_LOSES_UNSTARTED|safety|POOL-8|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_CANCEL_IGNORES_SLOT|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_CANCEL_IGNORES_SLOT|safety|POOL-2,POOL-7|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_REVOKE_WITHOUT_SLOT|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_REVOKE_WITHOUT_SLOT|safety|POOL-2,POOL-7|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_WORKER_IGNORES_DEAD_SLOT|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_WORKER_IGNORES_DEAD_SLOT|safety|POOL-2,POOL-7|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_GATE_IGNORES_CANCEL|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_GATE_IGNORES_CANCEL|safety|POOL-2,POOL-7|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_NO_STEAL|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_NO_STEAL|safety|POOL-9|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_MARK_STARTED_THROUGH|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_MARK_STARTED_THROUGH|safety|POOL-7|twin"
  "process_pool.safety.w2k2d2n1m0r1c+twin:BUG_CANCEL_FUTURES_STOPS_AT_STARTED|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DBUG_CANCEL_FUTURES_STOPS_AT_STARTED|safety|POOL-1,POOL-3|twin"
  "process_pool.safety.w2k3d2n1m0r1|process_pool|-DW=2 -DK=3 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=0|safety|POOL-1,POOL-2,POOL-3,POOL-5,POOL-6,POOL-7,POOL-8,POOL-9|model"
  "process_pool.liveness.w2k2d2n1m0r1c|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DLIVENESS|liveness|POOL-1,POOL-3|model"
  "process_pool.liveness.w2k2d2n1m0r1c+twin:BUG_CANCEL_FUTURES_STOPS_AT_STARTED|process_pool|-DW=2 -DK=2 -DD=2 -DN=1 -DM=0 -DR=1 -DNCANCEL=1 -DLIVENESS -DBUG_CANCEL_FUTURES_STOPS_AT_STARTED|liveness|POOL-1,POOL-3|twin"
  "process_pool.safety.w1k3d2n1m0r2c|process_pool|-DW=1 -DK=3 -DD=2 -DN=1 -DM=0 -DR=2 -DNCANCEL=1|safety|POOL-1,POOL-2,POOL-3,POOL-5,POOL-6,POOL-7,POOL-8|model"
  "process_pool.safety.w1k3d2n1m0r2c+twin:BUG_RETRY_UNBOUNDED|process_pool|-DW=1 -DK=3 -DD=2 -DN=1 -DM=0 -DR=2 -DNCANCEL=1 -DBUG_RETRY_UNBOUNDED|safety|POOL-2|twin"
  "process_pool.liveness.w1k3d2n1m0r2c|process_pool|-DW=1 -DK=3 -DD=2 -DN=1 -DM=0 -DR=2 -DNCANCEL=1 -DLIVENESS|liveness|POOL-1,POOL-3|model"
  "process_pool.liveness.w1k3d2n1m0r2c+twin:BUG_REQUEUE_ONLY_HEAD|process_pool|-DW=1 -DK=3 -DD=2 -DN=1 -DM=0 -DR=2 -DNCANCEL=1 -DLIVENESS -DBUG_REQUEUE_ONLY_HEAD|liveness|POOL-1|twin"
  "process_pool.liveness.w1k3d2n1m0r2c+twin:BUG_NO_REPLACE_IN_SHUTDOWN|process_pool|-DW=1 -DK=3 -DD=2 -DN=1 -DM=0 -DR=2 -DNCANCEL=1 -DLIVENESS -DBUG_NO_REPLACE_IN_SHUTDOWN|liveness|POOL-1,POOL-3|twin"
  "process_pool.liveness.w1k3d2n1m0r2c+twin:BUG_RESPAWN_UNLIMITED|process_pool|-DW=1 -DK=3 -DD=2 -DN=1 -DM=0 -DR=2 -DNCANCEL=1 -DLIVENESS -DBUG_RESPAWN_UNLIMITED|liveness|POOL-3,POOL-5|twin"
  "process_pool.liveness.w1k2d2n0m2r1tcx2|process_pool|-DW=1 -DK=2 -DD=2 -DN=0 -DM=2 -DR=1 -DTIMED=1 -DNCANCEL=1 -DCRASHES=2 -DLIVENESS|liveness|POOL-1,POOL-3|model"
  "process_pool.liveness.w1k2d2n0m2r1tcx2+twin:BUG_TICK_ONLY_READY|process_pool|-DW=1 -DK=2 -DD=2 -DN=0 -DM=2 -DR=1 -DTIMED=1 -DNCANCEL=1 -DCRASHES=2 -DLIVENESS -DBUG_TICK_ONLY_READY|liveness|POOL-1,POOL-3|twin"
  "process_pool.safety.w1k2d2n0m2r1tc|process_pool|-DW=1 -DK=2 -DD=2 -DN=0 -DM=2 -DR=1 -DTIMED=1 -DNCANCEL=1|safety|POOL-1,POOL-2,POOL-3,POOL-5,POOL-6,POOL-7,POOL-8,POOL-9|model"
  "process_pool.safety.w1k2d2n0m2r1tc+twin:BUG_TICK_ONLY_READY|process_pool|-DW=1 -DK=2 -DD=2 -DN=0 -DM=2 -DR=1 -DTIMED=1 -DNCANCEL=1 -DBUG_TICK_ONLY_READY|safety|POOL-1|twin"
  "process_pool.safety.w1k2d2n0m2r1tc+twin:BUG_TIMEOUT_RESOLVES_TWICE|process_pool|-DW=1 -DK=2 -DD=2 -DN=0 -DM=2 -DR=1 -DTIMED=1 -DNCANCEL=1 -DBUG_TIMEOUT_RESOLVES_TWICE|safety|POOL-1|twin"
  "process_pool.safety.w1k2d2n0m2r1tc+twin:BUG_SEND_TO_RETIRING|process_pool|-DW=1 -DK=2 -DD=2 -DN=0 -DM=2 -DR=1 -DTIMED=1 -DNCANCEL=1 -DBUG_SEND_TO_RETIRING|safety|POOL-6|twin"
  "cluster.safety.n2c1k2f1|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1|safety|CLUSTER-1,CLUSTER-2,CLUSTER-3,CLUSTER-4,CLUSTER-5,CLUSTER-6|model"
  "cluster.safety.n2c1k2f1+twin:BUG_GO_WITHOUT_GATE|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1 -DBUG_GO_WITHOUT_GATE|safety|CLUSTER-2|twin"
  "cluster.safety.n2c1k2f1+twin:BUG_LATE_ANSWER_RESOLVES|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1 -DBUG_LATE_ANSWER_RESOLVES|safety|CLUSTER-1|twin"
  "cluster.safety.n2c1k2f1+twin:BUG_NO_BALANCE|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1 -DBUG_NO_BALANCE|safety|CLUSTER-4|twin"
  "cluster.safety.n2c1k2f1+twin:BUG_CANCEL_SKIPS_OFFERS|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1 -DBUG_CANCEL_SKIPS_OFFERS|safety|CLUSTER-5|twin"
  "cluster.safety.n2c1k2f1+twin:BUG_BREAK_KEEPS_OFFERS|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1 -DBUG_BREAK_KEEPS_OFFERS|safety|CLUSTER-1,CLUSTER-6|twin"
  "cluster.liveness.n2c1k2f0|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=0 -DLIVENESS|liveness|CLUSTER-1,CLUSTER-5|model"
  "cluster.liveness.n2c1k2f0+twin:BUG_TERMINATE_SKIPS_CLOSE|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=0 -DLIVENESS -DBUG_TERMINATE_SKIPS_CLOSE|liveness|CLUSTER-5|twin"
  "cluster.liveness.n2c1k2f1|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1 -DLIVENESS|liveness|CLUSTER-1,CLUSTER-5,CLUSTER-6|model"
  "cluster.liveness.n2c1k2f1+twin:BUG_BREAK_KEEPS_OFFERS|cluster|-DK=2 -DCAP=1 -DAH=1 -DNCANCEL=1 -DNFAIL=1 -DLIVENESS -DBUG_BREAK_KEEPS_OFFERS|liveness|CLUSTER-1,CLUSTER-6|twin"
)

# The rows whose search repays an optimised pan: every other row and every
# twin compiles pan.c with fast_cc, in well under a second. gcc -O2 takes
# 1.5-8 s on the executor, mutex and pool models' pan.c and 15-20 s on the
# cluster model's, and its search is 1.3-2x as fast: a loss for every search
# that ends within seconds. Measured row by row (2026-12-05, one row at a
# time on this 2-vCPU VM; seconds of compile + search):
#   executor.liveness.c0m2q1.2s4t        gcc -O2 2.6 + 38.7, clang -O0 0.6 + 60.5
#   process_pool.liveness.w2k2d2n1m0r1c  gcc -O2 5.0 + 21.6, clang -O0 0.9 + 40.6
#   cluster.liveness.n2c1k2f1            gcc -Og 7.3 + 14.6, gcc -O2 19.6 + 16.0,
#                                        clang -O0 1.0 + 26.0
#   cluster.safety.n2c1k2f1              gcc -O2 15.4 + 3.2, clang -O0 1.1 + 4.7
#   process_pool.safety.w2k2d2n1m0r1c    gcc -O2 7.9 + 3.0, clang -O0 0.6 + 6.2
# which took the script's CPU time from about 370 s to about 250 s.
declare -A optimised_cc=(
  [executor.liveness.c1m2q1.2s4t]="gcc -O2"
  [executor.liveness.c0m2q1.2s4t]="gcc -O2"
  [executor.liveness.c1m2q1ct.2s4t]="gcc -O2"
  [executor.liveness.c0m2q1st.2s3t]="gcc -O2"
  [process_pool.liveness.w2k2d2n1m0r1c]="gcc -O2"
  [process_pool.liveness.w1k2d2n0m2r1tcx2]="gcc -O2"
  [cluster.liveness.n2c1k2f1]="gcc -Og"
)

# The design models (proofs/design/README.md): each row as above, the model
# named by its path under proofs/.
case ${KEEL_SPIN_SET:-shipped} in
  shipped) ;;
  design)
    d="design/executor_ring"
    checks=(
      "executor_ring.w2t2|$d||safety|EXEC-1,EXEC-2,EXEC-5,EXEC-12|model"
      "executor_ring.w2t2+twin:BUG_TRUST_SPINNER|$d|-DBUG_TRUST_SPINNER|safety|EXEC-12|twin"
      "executor_ring.w2t2+twin:BUG_TRUST_HEAD_ONLY|$d|-DBUG_TRUST_HEAD_ONLY|safety|EXEC-12|twin"
      "executor_ring.w2t2+twin:BUG_TRUST_HEAD_LATE|$d|-DBUG_TRUST_HEAD_LATE|safety|EXEC-12|twin"
      "executor_ring.w2t2+twin:BUG_NO_RECHECK|$d|-DBUG_NO_RECHECK|safety|EXEC-5|twin"
      "executor_ring.w2t2+twin:BUG_EPOCH_LATE|$d|-DBUG_EPOCH_LATE|safety|EXEC-5|twin"
      "executor_ring.w2t2s|$d|-DSHUT=1|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-12|model"
      "executor_ring.w2t2s+twin:BUG_TRUST_SPINNER|$d|-DSHUT=1 -DBUG_TRUST_SPINNER|safety|EXEC-12|twin"
      "executor_ring.w2t2s+twin:BUG_NO_INFLIGHT_WAIT|$d|-DSHUT=1 -DBUG_NO_INFLIGHT_WAIT|safety|EXEC-3|twin"
      "executor_ring.w2t2s+twin:BUG_RETIRE_ON_SHUTDOWN|$d|-DSHUT=1 -DBUG_RETIRE_ON_SHUTDOWN|safety|EXEC-3|twin"
      "executor_ring.w2t3s|$d|-DNTASK=3 -DSHUT=1|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-12|model"
      "executor_ring.w3t3|$d|-DW=3 -DNTASK=3|safety|EXEC-1,EXEC-2,EXEC-5,EXEC-12|model"
      "executor_ring.w2t3s.go|$d|-DNTASK=3 -DSHUT=1 -DTRUST_SPINNER -DGO_RULE|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-12|model"
      "executor_ring.w2t2.stats|$d|-DSTATS=1|safety|EXEC-8|model"
      "executor_ring.w2t2.stats+twin:BUG_STATS_NO_GATE|$d|-DSTATS=1 -DBUG_STATS_NO_GATE|safety|EXEC-8|twin"
      "executor_ring.w2t2.stats+twin:BUG_STATS_NO_PARK|$d|-DSTATS=1 -DBUG_STATS_NO_PARK|safety|EXEC-8|twin"
      "executor_ring.w2t2.stats+twin:BUG_STATS_NO_WAIT|$d|-DSTATS=1 -DBUG_STATS_NO_WAIT|safety|EXEC-8|twin"
      "executor_ring.w2t2.stats+twin:BUG_STATS_FINISHING_IDLE|$d|-DSTATS=1 -DBUG_STATS_FINISHING_IDLE|safety|EXEC-8|twin"
      "executor_ring.w2t2s.stats|$d|-DSTATS=1 -DSHUT=1|safety|EXEC-1,EXEC-3,EXEC-8|model"
      "executor_ring.w2t2.mon|$d|-DMONITOR=1|safety|EXEC-1,EXEC-2,EXEC-5,EXEC-12|model"
      "executor_ring.w2t2.mon+twin:BUG_MONITOR_NO_RECHECK|$d|-DMONITOR=1 -DBUG_MONITOR_NO_RECHECK|safety|EXEC-12|twin"
      "executor_ring.w2t2.mon+twin:BUG_MONITOR_TRUST_SPINNER|$d|-DMONITOR=1 -DBUG_MONITOR_TRUST_SPINNER|safety|EXEC-12|twin"
      "executor_ring.w2t2.mon+twin:BUG_MONITOR_LEFT_ASLEEP|$d|-DMONITOR=1 -DBUG_MONITOR_LEFT_ASLEEP|safety|EXEC-12|twin"
      "executor_ring.w2t2s.mon|$d|-DMONITOR=1 -DSHUT=1|safety|EXEC-1,EXEC-2,EXEC-3,EXEC-5,EXEC-12|model"
    )
    # The largest searches (1.2M to 7.6M states); COLLAPSE keeps the
    # three-worker one near 250 MB. The monitor's three-task row
    # (-DMONITOR=1 -DNTASK=3 -DSHUT=1) passes too, outside the set: 106M
    # states, 210 s and 4.7 GB with COLLAPSE (proofs/design/README.md).
    unset optimised_cc
    declare -A optimised_cc=(
      [executor_ring.w2t3s]="gcc -O2"
      [executor_ring.w2t3s.go]="gcc -O2"
      [executor_ring.w3t3]="gcc -O2 -DCOLLAPSE"
      [executor_ring.w2t2s.stats]="gcc -O2"
      [executor_ring.w2t2s.mon]="gcc -O2"
    )
    ;;
  *)
    echo "run_spin.sh: KEEL_SPIN_SET must be shipped or design, not '$KEEL_SPIN_SET'" >&2
    exit 2
    ;;
esac

# pan's hash table (2^24 slots, 128 MB, -w24) and its state store are
# touched at random: in 4 KB pages most lookups missed the TLB. glibc's
# hugetlb=1 asks for transparent huge pages for what malloc maps, where the
# kernel offers them on request (THP "madvise", as on these VMs; "never"
# leaves it without effect): the same states, process_pool.safety.w2k2d2n1m0r1c
# in 2.0-2.1 CPU-s against 2.8-2.9 in alternating runs, and the whole set
# in 184 CPU-s against 194 (2026-12-07). The liveness rows gained least,
# within this VM's run-to-run noise: most of their time goes to work on
# the state at hand (compress(), its hash, the transitions), not to the
# table. The caller's own tunables come first; ours win.
pan_tunables=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1

now() { printf '%s' "${EPOCHREALTIME:-$(date +%s.%N)}"; }

# run_check INDEX SPEC: does one check, writes its row to $work/INDEX.row
run_check() {
  local idx=$1 spec=$2
  local name model defs search inv role
  IFS='|' read -r name model defs search inv role <<<"$spec"

  local dir=$work/$idx
  local log
  log=$logdir/$(printf '%02d' "$idx")-${name//[^A-Za-z0-9._-]/_}.log
  mkdir -p "$dir"
  cp "$here/$model.pml" "$dir/"
  model=${model##*/}  # a design model's path: the copy is in $dir

  local cflags kind panflags
  if [[ $search == liveness ]]; then
    cflags="-DNFAIR=3"
    panflags="-a -f -m$depth"
    kind="exhaustive liveness (weak fairness)"
  else
    # NOCOMP: a safety search stores each state vector as it is, without
    # first squeezing out its padding bytes (pan's compress(), which liveness
    # searches need and pan refuses to leave out with -a). The same states
    # are stored (process_pool.safety.w2k3d2n1m0r1: 1,181,819 both ways) in
    # about a fifth more memory (532 MB against 448), and the search took
    # 6.9-7.1 CPU-s against 8.3-9.0 (2026-12-07).
    cflags="-DSAFETY -DNOCOMP"
    panflags="-m$depth"
    kind="exhaustive safety"
  fi

  # pan.c is compiled for its search, at the level that costs least in all
  # (fast_cc and optimised_cc above). A twin's hash table needs no 2^24
  # slots (-w24, 128 MB cleared for a search that mostly ends within a
  # thousand states): 2^20 slots still hold the largest twin search (about
  # 1.1M states) at a chain of one or two.
  local cc=$fast_cc
  [[ $role == model ]] && cc=${optimised_cc[$name]:-$cc}
  [[ $role == twin ]] && panflags="$panflags -w20"
  # pan refuses NOCOMP with its other state stores (a design row's COLLAPSE).
  [[ $cc == *-DCOLLAPSE* || $cc == *-DHC* ]] && cflags=${cflags/ -DNOCOMP/}

  local t0 t1 secs states="0" result verdict tool_ok=1
  t0=$(now)
  {
    echo "# check:   $name"
    echo "# spin:    spin $defs -a $model.pml"
    echo "# cc:      $cc -w $cflags -o pan pan.c"
    echo "# pan:     GLIBC_TUNABLES=$pan_tunables ./pan $panflags"
  } >"$log"
  # shellcheck disable=SC2086  # $defs, $cflags, $panflags are word lists
  (
    cd "$dir" || exit 1
    echo "## spin -a" && spin $defs -a "$model.pml" || exit 1
    echo "## cc" && $cc -w $cflags -o pan pan.c || exit 1
    echo "## pan" && GLIBC_TUNABLES=$pan_tunables ./pan $panflags
  ) >>"$log" 2>&1 || tool_ok=0
  t1=$(now)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')

  local out errors="" incomplete=""
  out=$(sed -n '/^## pan$/,$p' "$log")
  errors=$(grep -oE 'errors: [0-9]+' <<<"$out" | tail -n 1 | awk '{print $2}')
  states=$(grep -oE '^ *[0-9]+ states, stored' <<<"$out" | tail -n 1 | awk '{print $1}')
  [[ -n $states ]] || states=0
  if grep -q 'depth too small' <<<"$out"; then
    incomplete="search depth too small"
  elif grep -qiE 'out of memory|MEMLIM' <<<"$out"; then
    incomplete="out of memory"
  elif [[ $tool_ok -eq 0 || -z $errors ]]; then
    incomplete="tool failure (see log)"
  elif [[ $errors -eq 0 ]] && grep -q 'Search not completed' <<<"$out"; then
    incomplete="search not completed"
  fi

  if [[ -n $errors && $errors -gt 0 ]]; then
    result=FAIL
    verdict=$(grep -m1 -E '^pan:1: ' <<<"$out" | sed -E 's/^pan:1: //; s/ \(at depth [0-9]+\)$//')
    [[ -n $verdict ]] || verdict="errors: $errors"
    [[ -z $incomplete ]] || verdict="$verdict; $incomplete"
    # replay the counterexample into the log
    if [[ -f $dir/$model.pml.trail ]]; then
      # shellcheck disable=SC2086
      { echo "## counterexample (spin -t -p)"; (cd "$dir" && spin $defs -t -p "$model.pml"); } >>"$log" 2>&1
    fi
  elif [[ -n $incomplete ]]; then
    verdict=$incomplete
    if [[ $role == twin ]]; then result=pass; else result=FAIL; fi
  else
    result=pass
    verdict="errors: 0"
  fi
  verdict=${verdict//|//}

  printf 'KEEL-CHECK|%s|%s|spin|%s|%s|%s|%s|%s|%s\n' \
    "$name" "$inv" "$kind" "$states" "$secs" "$result" "$verdict" "$role" >"$work/$idx.row"
  rm -rf "$dir"
}

# Every optimised row names a model row (a misspelt name would quietly
# compile that row at -O0); they are the longest searches, so they start
# first and none is left running alone at the end.
first=() rest=()
for i in "${!checks[@]}"; do
  IFS='|' read -r name _ _ _ _ role <<<"${checks[$i]}"
  if [[ $role == model && -n ${optimised_cc[$name]:-} ]]; then first+=("$i"); else rest+=("$i"); fi
done
if (( ${#first[@]} != ${#optimised_cc[@]} )); then
  echo "run_spin.sh: optimised_cc names a row that is not a model row of checks" >&2
  exit 2
fi

running=0
for i in "${first[@]}" "${rest[@]}"; do
  if (( running >= jobs_max )); then
    wait -n
    running=$((running - 1))
  fi
  run_check "$i" "${checks[$i]}" &
  running=$((running + 1))
done
wait

status=0
for i in "${!checks[@]}"; do
  row_file=$work/$i.row
  if [[ ! -s $row_file ]]; then
    IFS='|' read -r name _ _ _ inv role <<<"${checks[$i]}"
    printf 'KEEL-CHECK|%s|%s|spin|%s|0|0.00|FAIL|runner produced no result|%s\n' "$name" "$inv" "unknown" "$role"
    status=1
    continue
  fi
  row=$(<"$row_file")
  printf '%s\n' "$row"
  IFS='|' read -r -a f <<<"$row"
  result=${f[7]} role=${f[9]}
  if [[ $role == model && $result != pass ]]; then
    echo "run_spin.sh: model check ${f[1]} failed: ${f[8]}" >&2
    status=1
  elif [[ $role == twin && $result != FAIL ]]; then
    echo "run_spin.sh: seeded bug not caught: ${f[1]} (${f[8]})" >&2
    status=1
  fi
done
exit $status
