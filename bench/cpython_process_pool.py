#!/usr/bin/env python3
"""CPython's process pools on the process_pool_bench workloads.

Throughput: N tiny tasks (each squares an int) go to a pool of W worker
processes; the time runs from the first submission until the last result has
been read. The workers are started (and have run a task) before the clock
starts, as process_pool_bench does for keel.

Cases (each prints one line that process_pool_bench parses, key=value fields):

  executor_submit  concurrent.futures.ProcessPoolExecutor: submit() x N, keep
                   every future, then result() on each in order
  apply_async      multiprocessing.Pool: apply_async() x N, then get() on each
  map_chunk1       multiprocessing.Pool.map(fn, range(N), chunksize=1)
  map_chunkC       multiprocessing.Pool.map(fn, range(N), chunksize=C)
                   (C = --chunksize, default 256; information only)

  cpython_process_pool case=executor_submit python=3.11.7 start=fork tasks=100000 workers=2 seconds=15.2 tasks_per_s=6579

Makespan: heterogeneous workloads; the time runs from the first submission
until the last result has been read (workers started and warm before). Each
workload runs through ProcessPoolExecutor.submit + result() (case suffix
_executor) or multiprocessing.Pool.apply_async + get() (suffix _apply_async),
one call per task, results read in submission order:

  makespan_a_*  W tasks of 1 s each on W workers (--workers); the tasks sleep
  makespan_b_*  one 2 s task, then ten 100 ms tasks right behind it, on
                --workers (2 in process_pool_bench); the tasks sleep. The ten
                short results are read first: short_seconds = when all ten
                were done, seconds = when the 2 s one was too
  makespan_c_*  2000 tasks with exponentially distributed durations, mean
                1 ms, from --seed (splitmix64, see exponential_ns); the tasks
                busy-wait on the monotonic clock (CPU-bound)

--scale S multiplies the durations of a and b, and the task count of c (its
durations stay as they are). Every makespan line gives work_ns (the sum of the
task durations, which process_pool_bench checks against its own list),
longest_ns, ideal_s and ratio = seconds / ideal_s:

  cpython_process_pool case=makespan_b_executor python=3.11.7 start=fork workers=2 cpus=2 tasks=11 work_ns=3000000000 longest_ns=2000000000 ideal_s=2.0000 seconds=2.0100 ratio=1.005 short_seconds=1.0100 short_ideal_s=1.0000

Usage: python3 bench/cpython_process_pool.py [--tasks N] [--workers W]
       [--chunksize C] [--scale S] [--seed X]
       [--cases executor_submit,apply_async,...,makespan_a_executor,...]
"""

import argparse
import math
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def square(x):
    return x * x


def expected(n):
    return (n - 1) * n * (2 * n - 1) // 6


def warm_executor(pool, workers):
    # ProcessPoolExecutor starts its processes on demand; a short burst of
    # tasks that each wait a little brings it to full size.
    for f in [pool.submit(time.sleep, 0.01) for _ in range(workers * 2)]:
        f.result()


def warm_pool(pool, workers):
    pool.map(time.sleep, [0.01] * (workers * 2), chunksize=1)


def executor_submit(n, workers, _chunk):
    with ProcessPoolExecutor(max_workers=workers) as pool:
        warm_executor(pool, workers)
        start = time.perf_counter()
        futures = [pool.submit(square, i) for i in range(n)]
        total = sum(f.result() for f in futures)
        del futures
        seconds = time.perf_counter() - start
    return seconds, total


def apply_async(n, workers, _chunk):
    with multiprocessing.Pool(workers) as pool:
        warm_pool(pool, workers)
        start = time.perf_counter()
        results = [pool.apply_async(square, (i,)) for i in range(n)]
        total = sum(r.get() for r in results)
        del results
        seconds = time.perf_counter() - start
    return seconds, total


def map_chunk(chunksize):
    def run(n, workers, _chunk):
        with multiprocessing.Pool(workers) as pool:
            warm_pool(pool, workers)
            start = time.perf_counter()
            total = sum(pool.map(square, range(n), chunksize=chunksize))
            seconds = time.perf_counter() - start
        return seconds, total

    return run


# ---------------------------------------------------------------------------
# Makespan workloads (process_pool_bench builds the same lists in C++)

MASK64 = (1 << 64) - 1
MAKESPAN_SEED = 20261127  # process_pool_bench's kMakespanSeed
C_TASKS = 2000
C_MEAN_NS = 1_000_000


def sleep_ns(ns):
    time.sleep(ns / 1e9)
    return ns


def spin_ns(ns):
    # Busy: keeps its CPU until the monotonic clock has moved on by ns.
    end = time.monotonic_ns() + ns
    while time.monotonic_ns() < end:
        pass
    return ns


def exponential_ns(count, mean_ns, seed):
    """count durations in ns, exponential with mean mean_ns, from splitmix64.

    The same arithmetic as process_pool_bench's exponential_ns: u = the top
    53 bits of each splitmix64 output / 2**53, d = -mean * log(1 - u),
    truncated to an integer, at least 1.
    """
    out = []
    state = seed & MASK64
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        u = float(z >> 11) * (1.0 / 9007199254740992.0)
        d = -float(mean_ns) * math.log(1.0 - u)
        out.append(max(1, int(d)))
    return out


def makespan_workload(which, workers, scale, seed):
    """(task function, durations in submission order, index of the first
    short task, ideal seconds, ideal seconds for the short tasks or None)."""
    if which == "a":
        d = [max(1, int(1e9 * scale))] * workers
        return sleep_ns, d, 0, d[0] / 1e9, None
    if which == "b":
        long_ns, short_ns = max(1, int(2e9 * scale)), max(1, int(1e8 * scale))
        d = [long_ns] + [short_ns] * 10
        ideal = max(long_ns, sum(d) / workers) / 1e9
        short_ideal = 10 * short_ns / max(1, workers - 1) / 1e9
        return sleep_ns, d, 1, ideal, short_ideal
    if which == "c":
        d = exponential_ns(max(1, int(C_TASKS * scale + 0.5)), C_MEAN_NS, seed)
        return spin_ns, d, 0, max(max(d), sum(d) / workers) / 1e9, None
    raise ValueError(which)


def makespan(which, peer, workers, scale, seed):
    fn, durations, short_from, ideal, short_ideal = makespan_workload(which, workers, scale, seed)
    n = len(durations)
    if peer == "executor":
        pool = ProcessPoolExecutor(max_workers=workers)
        warm_executor(pool, workers)
        submit = lambda d: pool.submit(fn, d)  # noqa: E731
        get = lambda h: h.result()  # noqa: E731
    else:
        pool = multiprocessing.Pool(workers)
        warm_pool(pool, workers)
        submit = lambda d: pool.apply_async(fn, (d,))  # noqa: E731
        get = lambda h: h.get()  # noqa: E731
    with pool:
        start = time.perf_counter()
        handles = [submit(d) for d in durations]
        # The tasks behind the first short_from ones first: for b, the time at
        # which the ten short tasks were all done.
        total = 0
        for h in handles[short_from:]:
            total += get(h)
        short_seconds = time.perf_counter() - start
        for h in handles[:short_from]:
            total += get(h)
        seconds = time.perf_counter() - start
        del handles
    if total != sum(durations):
        raise SystemExit("cpython_process_pool: makespan_%s_%s: wrong sum of results" % (which, peer))
    fields = "tasks=%d work_ns=%d longest_ns=%d ideal_s=%.4f seconds=%.4f ratio=%.3f" % (
        n,
        sum(durations),
        max(durations),
        ideal,
        seconds,
        seconds / ideal,
    )
    if short_ideal is not None:
        fields += " short_seconds=%.4f short_ideal_s=%.4f" % (short_seconds, short_ideal)
    return fields


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100000, help="tasks per case (default 100000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--chunksize", type=int, default=256, help="chunksize of the map_chunkC case (default 256)")
    parser.add_argument("--scale", type=float, default=1.0, help="makespan: scale of workloads a, b, c (default 1)")
    parser.add_argument("--seed", type=int, default=MAKESPAN_SEED, help="makespan c: seed of the durations")
    parser.add_argument(
        "--cases",
        default="executor_submit,apply_async,map_chunk1,map_chunkC",
        help="comma-separated cases to run, in order",
    )
    args = parser.parse_args()
    if args.tasks <= 0 or args.workers <= 0 or args.chunksize <= 0 or not args.scale > 0:
        parser.error("--tasks, --workers, --chunksize and --scale must be positive")
    cases = {
        "executor_submit": executor_submit,
        "apply_async": apply_async,
        "map_chunk1": map_chunk(1),
        "map_chunkC": map_chunk(args.chunksize),
    }
    makespan_cases = {
        "makespan_%s_%s" % (w, p): (w, p) for w in "abc" for p in ("executor", "apply_async")
    }
    for name in args.cases.split(","):
        if name not in cases and name not in makespan_cases:
            parser.error("unknown case %r" % name)
    for name in args.cases.split(","):
        if name in makespan_cases:
            which, peer = makespan_cases[name]
            fields = makespan(which, peer, args.workers, args.scale, args.seed)
            print(
                "cpython_process_pool case=%s python=%s start=%s workers=%d cpus=%d %s"
                % (
                    name,
                    platform.python_version(),
                    multiprocessing.get_start_method(),
                    args.workers,
                    os.cpu_count() or 0,
                    fields,
                )
            )
            sys.stdout.flush()
            continue
        seconds, total = cases[name](args.tasks, args.workers, args.chunksize)
        if total != expected(args.tasks):
            raise SystemExit("cpython_process_pool: %s: wrong sum of results %d" % (name, total))
        label = name if name != "map_chunkC" else "map_chunk%d" % args.chunksize
        print(
            "cpython_process_pool case=%s python=%s start=%s tasks=%d workers=%d cpus=%d seconds=%.4f tasks_per_s=%.0f"
            % (
                label,
                platform.python_version(),
                multiprocessing.get_start_method(),
                args.tasks,
                args.workers,
                os.cpu_count() or 0,
                seconds,
                args.tasks / seconds,
            )
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
