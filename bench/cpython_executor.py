#!/usr/bin/env python3
"""CPython's concurrent.futures.ThreadPoolExecutor on the executor_bench workload.

One submitting thread submits N tiny tasks (each returns its argument), keeps
every future, then calls result() on each in submission order; the time runs
from the first submit to the moment the last future has been read and the
list of futures freed. The pool is created and its threads started before the
clock starts, as executor_bench does for keel and its C++ peers.

Prints one line that executor_bench parses (key=value fields):

  cpython_executor python=3.11.7 tasks=200000 workers=2 seconds=4.41 ns_per_task=22050.1 tasks_per_s=45351

Usage: python3 bench/cpython_executor.py [--tasks N] [--workers W]
(--workers 0 uses CPython's default, min(32, os.cpu_count() + 4)).
"""

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def tiny(i):
    return i


def measure(tasks, workers):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Start every worker first: CPython adds a thread per submit while
        # fewer than max_workers exist and none is idle, so a short burst of
        # tasks that each wait a little brings the pool to full size.
        warm = [pool.submit(time.sleep, 0.005) for _ in range(pool._max_workers * 2)]
        for f in warm:
            f.result()
        threads = len(pool._threads)
        start = time.perf_counter()
        futures = [pool.submit(tiny, i) for i in range(tasks)]
        total = 0
        for f in futures:
            total += f.result()
        del futures
        seconds = time.perf_counter() - start
        max_workers = pool._max_workers
    if total != tasks * (tasks - 1) // 2:
        raise SystemExit("cpython_executor: wrong sum of results %d" % total)
    return seconds, max_workers, threads


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200000, help="tasks to submit (default 200000)")
    parser.add_argument("--workers", type=int, default=0, help="max_workers; 0: CPython's default")
    args = parser.parse_args()
    if args.tasks <= 0:
        parser.error("--tasks must be positive")
    seconds, max_workers, threads = measure(args.tasks, args.workers or None)
    print(
        "cpython_executor python=%s tasks=%d workers=%d threads=%d cpus=%d seconds=%.4f ns_per_task=%.1f tasks_per_s=%.0f"
        % (
            platform.python_version(),
            args.tasks,
            max_workers,
            threads,
            os.cpu_count() or 0,
            seconds,
            seconds * 1e9 / args.tasks,
            args.tasks / seconds,
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
