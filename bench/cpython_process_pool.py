#!/usr/bin/env python3
"""CPython's process pools on the process_pool_bench workload.

N tiny tasks (each squares an int) go to a pool of W worker processes; the
time runs from the first submission until the last result has been read. The
workers are started (and have run a task) before the clock starts, as
process_pool_bench does for keel.

Cases (each prints one line that process_pool_bench parses, key=value fields):

  executor_submit  concurrent.futures.ProcessPoolExecutor: submit() x N, keep
                   every future, then result() on each in order
  apply_async      multiprocessing.Pool: apply_async() x N, then get() on each
  map_chunk1       multiprocessing.Pool.map(fn, range(N), chunksize=1)
  map_chunkC       multiprocessing.Pool.map(fn, range(N), chunksize=C)
                   (C = --chunksize, default 256; information only)

  cpython_process_pool case=executor_submit python=3.11.7 start=fork tasks=100000 workers=2 seconds=15.2 tasks_per_s=6579

Usage: python3 bench/cpython_process_pool.py [--tasks N] [--workers W]
       [--chunksize C] [--cases executor_submit,apply_async,...]
"""

import argparse
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100000, help="tasks per case (default 100000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--chunksize", type=int, default=256, help="chunksize of the map_chunkC case (default 256)")
    parser.add_argument(
        "--cases",
        default="executor_submit,apply_async,map_chunk1,map_chunkC",
        help="comma-separated cases to run, in order",
    )
    args = parser.parse_args()
    if args.tasks <= 0 or args.workers <= 0 or args.chunksize <= 0:
        parser.error("--tasks, --workers and --chunksize must be positive")
    cases = {
        "executor_submit": executor_submit,
        "apply_async": apply_async,
        "map_chunk1": map_chunk(1),
        "map_chunkC": map_chunk(args.chunksize),
    }
    for name in args.cases.split(","):
        if name not in cases:
            parser.error("unknown case %r" % name)
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
