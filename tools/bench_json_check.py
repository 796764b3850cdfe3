#!/usr/bin/env python3
"""Checks what a bench program's JSON file (--json_out) promises, on a short
live run of sync_bench's uncontended rows (`make bench-plots-check`).

    tools/bench_json_check.py build/bench-plots-check/live/sync_bench.json

It fails (exit 1, saying why) unless:
  - the one-thread rows (uncontended/{keel,std,absl}) ran in a process with
    one thread and the uncontended_2t rows with two (their single_threaded
    counter: glibc's __libc_single_threaded);
  - the load average before and after is there (three numbers each), and
    so is the cache line round trip, before and after: measured (above zero)
    between the two CPUs it names, or 0 where the run had fewer than two;
  - every version is known: Abseil's package version reached the program
    from the Makefile (dpkg-query), not the "unknown" fallback;
  - each target line's verdict agrees with its value, operator and goal, and
    the two-thread Mutex line is among them.
"""

import json
import sys


def problems(run):
    out = []
    bench = run.get("benchmarks", {})
    want = {}
    for prefix, single in (("uncontended", 1), ("uncontended_2t", 0)):
        for lock in ("keel", "std", "absl"):
            want[prefix + "/" + lock] = single
    got = {name: bench.get(name, {}).get("counters", {}).get("single_threaded") for name in want}
    if got != want:
        out.append("single_threaded counters %s, expected %s" % (got, want))
    for key in ("load_before", "load_after"):
        fields = str(run.get(key, "")).split()
        if len(fields) != 3 or not all(f.replace(".", "", 1).isdigit() for f in fields):
            out.append("%s is %r, not three load averages" % (key, run.get(key)))
    # Measured (above zero) between the two CPUs named, or 0 where the run
    # could not use two CPUs and names none.
    pair = run.get("cache_round_trip_cpus")
    if not isinstance(pair, list) or len(pair) not in (0, 2) or not all(isinstance(c, int) for c in pair):
        out.append("cache_round_trip_cpus is %r, not two CPUs or none" % (pair,))
        pair = []
    for key in ("cache_round_trip_ns_before", "cache_round_trip_ns_after"):
        v = run.get(key)
        if not isinstance(v, (int, float)) or (v > 0) != (len(pair) == 2) or v < 0:
            out.append("%s is %r with round-trip CPUs %r: measured between two CPUs, else 0" % (key, v, pair))
    versions = run.get("versions", {})
    if not versions.get("absl (libabsl-dev)") or versions["absl (libabsl-dev)"].startswith("unknown"):
        out.append("Abseil's version did not reach the program: %r" % versions)
    for peer, version in versions.items():
        if not version:
            out.append("empty version for %s" % peer)
    targets = run.get("targets", [])
    for t in targets:
        ok = t["value"] >= t["goal"] if t["op"] == ">=" else t["value"] <= t["goal"]
        if t["op"] not in (">=", "<=") or ok != t["ok"]:
            out.append("target line %r: value %s %s goal %s, but ok is %s" % (t["line"], t["value"], t["op"],
                                                                             t["goal"], t["ok"]))
    if not any("2 threads alive" in t["line"] for t in targets):
        out.append("no target line for the uncontended Mutex with 2 threads alive: %r" % targets)
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        run = json.load(f)
    found = problems(run)
    for p in found:
        print("bench_json_check: %s" % p, file=sys.stderr)
    if not found:
        print("bench_json_check: %s ok (%d benchmarks, %d target lines)" % (sys.argv[1], len(run["benchmarks"]),
                                                                          len(run["targets"])))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
