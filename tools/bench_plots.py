#!/usr/bin/env python3
"""Plots keel's benchmark results (the JSON files the bench programs write
with --json_out) as PNG files, with gnuplot.

    tools/bench_plots.py [--require-all | --require NAME,...] [--markdown] IN_DIR OUT_DIR

IN_DIR holds sync_bench.json, executor_bench.json and process_pool_bench.json
(`make bench` writes them to build/bench/); each plot whose data is there is
written to OUT_DIR as <name>.png, next to the gnuplot data (<name>.dat) and
script (<name>.gp) it came from, so a plot can be redrawn or restyled by hand.

Plots: per-task cost against the peers (sync_cost, executor_cost,
process_pool_cost: bars, log scale), submit-to-start latency percentiles
(latency), process-pool makespan on the heterogeneous workloads against the
ideal (makespan), and cost against the number of threads or workers
(scaling_threads, scaling_workers).

Exit status: 1 if gnuplot fails or writes no PNG, or if a plot lacks its
data that --require-all (every plot) or --require (the plots named) asks
for; a plot without data is otherwise skipped with a note. A PNG counts
only if it starts with PNG's signature and is over 1000 bytes. --markdown also prints the runs' target lines, versions and load
averages as Markdown tables (what bench/README.md shows).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

PROGRAMS = ("sync_bench", "executor_bench", "process_pool_bench")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

COMMON = """set terminal pngcairo size 900,480 font ",9" noenhanced
set output '{png}'
set datafile missing '?'
set title "{title}"
set key top left
set grid ytics
"""

BARS = """set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -25 scale 0
set bmargin 7
"""


def load_runs(in_dir):
    runs = {}
    for p in PROGRAMS:
        path = os.path.join(in_dir, p + ".json")
        if os.path.exists(path):
            with open(path) as f:
                runs[p] = json.load(f)
    return runs


def ns(run, name):
    b = run.get("benchmarks", {}).get(name)
    return None if b is None else b.get("real_ns")


def counter(run, name, key):
    b = run.get("benchmarks", {}).get(name)
    return None if b is None else b.get("counters", {}).get(key)


def cell(v, scale=1.0):
    return "?" if v is None else "%.6g" % (v * scale)


def subtitle(run):
    return "%s, %s cpus, load %s -> %s" % (
        run.get("time_utc", "?"),
        run.get("cpus", "?"),
        run.get("load_before", "?"),
        run.get("load_after", "?"),
    )


class Plotter:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.made = []
        self.missing = []
        self.failed = []

    def plot(self, name, rows, columns, script):
        """rows: [(label, [values...])]; rows without a value are left out,
        and a plot needs at least one row."""
        rows = [(label, vals) for label, vals in rows if any(v is not None for v in vals)]
        if not rows:
            self.missing.append(name)
            return
        dat = os.path.join(self.out_dir, name + ".dat")
        gp = os.path.join(self.out_dir, name + ".gp")
        png = os.path.join(self.out_dir, name + ".png")
        with open(dat, "w") as f:
            f.write("# label " + " ".join(c.replace(" ", "_") for c in columns) + "\n")
            for label, vals in rows:
                key = label if label.isdigit() else '"%s"' % label.replace('"', "'")
                f.write("%s %s\n" % (key, " ".join(cell(v) for v in vals)))
        with open(gp, "w") as f:
            f.write(script.format(png=png, dat=dat))
        if os.path.exists(png):
            os.remove(png)
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        ok = r.returncode == 0 and os.path.exists(png)
        if ok:
            with open(png, "rb") as f:
                ok = f.read(8) == PNG_MAGIC and os.path.getsize(png) > 1000
        if ok:
            self.made.append(png)
        else:
            self.failed.append("%s: gnuplot %s" % (name, (r.stderr or "wrote no PNG").strip()[-400:]))


def bar_script(title, ylabel, columns, log=True, extra=""):
    s = COMMON.replace("{title}", title.replace('"', "'")) + BARS
    s += "set ylabel '%s'\n" % ylabel
    if log:
        s += "set logscale y\nset yrange [*:*]\n"
    else:
        s += "set yrange [0:*]\n"
    s += extra
    plots = []
    for i, c in enumerate(columns):
        using = "%d:xtic(1)" % (i + 2) if i == 0 else "%d" % (i + 2)
        plots.append("%s using %s title '%s'" % ("'{dat}'" if i == 0 else "''", using, c))
    return s + "plot " + ", \\\n     ".join(plots) + "\n"


def line_script(title, xlabel, ylabel, columns, extra=""):
    s = COMMON.replace("{title}", title.replace('"', "'"))
    s += "set xlabel '%s'\nset ylabel '%s'\nset logscale x 2\nset logscale y\n" % (xlabel, ylabel)
    s += "set key outside right\n" + extra
    plots = []
    for i, c in enumerate(columns):
        plots.append("%s using 1:%d with linespoints lw 2 pt 7 title '%s'" % ("'{dat}'" if i == 0 else "''", i + 2, c))
    return s + "plot " + ", \\\n     ".join(plots) + "\n"


def plot_sync(p, run):
    t = lambda n: ns(run, n)
    rows = [
        ("uncontended, 1 thread", [t("uncontended/keel"), t("uncontended/std"), t("uncontended/absl")]),
        ("uncontended, 2 threads alive", [t("uncontended_2t/keel"), t("uncontended_2t/std"), t("uncontended_2t/absl")]),
        ("contended (2 threads)", [t("contended/keel/0"), t("contended/std/0"), t("contended/absl/0")]),
        ("contended + work", [t("contended/keel/64"), t("contended/std/64"), t("contended/absl/64")]),
        ("semaphore ping-pong", [t("sem_pingpong/keel"), t("sem_pingpong/std"), None]),
        ("event ping-pong (std: condvar)", [t("event_pingpong/keel"), t("event_pingpong/condvar"), None]),
    ]
    cols = ["keel", "std", "absl"]
    p.plot(
        "sync_cost",
        rows,
        cols,
        bar_script("sync: ns per operation / round trip (lower is better)\\n" + subtitle(run), "ns (log)", cols),
    )


def plot_executor(p, run):
    t = lambda n: ns(run, n)
    both = lambda n: [t("throughput/cold/" + n), t("throughput/warm/" + n)]
    rows = [
        ("keel (max_threads = cpus)", both("keel/hw_threads")),
        ("keel (default max_threads)", both("keel/default")),
        ("boost::asio + std::promise", both("boost_promise")),
        ("thread_pool Submit + future", both("thread_pool")),
        ("oneTBB task_group, no future", both("tbb")),
        ("oneTBB + std::promise", both("tbb_promise")),
        ("CPython ThreadPoolExecutor", [t("throughput/cpython/hw_threads"), None]),
    ]
    cols = ["cold heap", "warm heap"]
    p.plot(
        "executor_cost",
        rows,
        cols,
        bar_script("thread pool: ns per tiny task with its future (lower is better)\\n" + subtitle(run), "ns (log)", cols),
    )
    lat = []
    for label, name in (
        ("keel, no gap", "latency/keel/gap_us:0"),
        ("boost, no gap", "latency/boost/gap_us:0"),
        ("thread_pool, no gap", "latency/thread_pool/gap_us:0"),
        ("keel, 200 us gap", "latency/keel/gap_us:200"),
        ("boost, 200 us gap", "latency/boost/gap_us:200"),
        ("thread_pool, 200 us gap", "latency/thread_pool/gap_us:200"),
        ("keel, bursts", "latency/keel/burst"),
        ("boost, bursts", "latency/boost/burst"),
        ("thread_pool, bursts", "latency/thread_pool/burst"),
    ):
        vals = [counter(run, name, k) for k in ("p50_ns", "p99_ns", "max_ns")]
        lat.append((label, [None if v is None else v / 1e3 for v in vals]))
    cols = ["p50", "p99", "max"]
    p.plot(
        "latency",
        lat,
        cols,
        bar_script("thread pool: submit-to-start latency (lower is better)\\n" + subtitle(run), "us (log)", cols),
    )
    counts = sorted(
        {int(k.rsplit(":", 1)[1]) for k in run.get("benchmarks", {}) if k.startswith("scaling/") and ":" in k}
    )
    peers = [("keel", "keel"), ("boost_promise", "boost + promise"), ("thread_pool", "thread_pool"),
             ("tbb", "oneTBB, no future")]
    rows = [(str(c), [t("scaling/%s/threads:%d" % (peer, c)) for peer, _ in peers]) for c in counts]
    cols = [label for _, label in peers]
    p.plot(
        "scaling_threads",
        rows,
        cols,
        line_script("thread pool: ns per task against pool threads (warm heap)\\n" + subtitle(run), "threads",
                    "ns per task (log)", cols),
    )


def plot_process_pool(p, run):
    t = lambda n: ns(run, n)
    rows = [
        ("keel submit + future", [t("throughput/keel/submit/workers:2")]),
        ("keel map, chunk 1", [t("throughput/keel/map/chunksize:1")]),
        ("keel map, chunk 256", [t("throughput/keel/map/chunksize:256")]),
        ("raw frames, 16 in flight", [t("ceiling/frames/in_flight:16")]),
        ("raw frames, 256 in flight", [t("ceiling/frames/in_flight:256")]),
        ("raw frames, batched echo", [t("ceiling/frames_batched/in_flight:256")]),
        ("CPython ProcessPoolExecutor", [t("throughput/cpython/executor_submit")]),
        ("CPython apply_async", [t("throughput/cpython/apply_async")]),
        ("CPython map, chunk 1", [t("throughput/cpython/map_chunk1")]),
        ("CPython map, chunk 256", [t("throughput/cpython/map_chunk256")]),
    ]
    cols = ["ns per task, 2 workers"]
    p.plot(
        "process_pool_cost",
        rows,
        cols,
        bar_script("process pool: ns per tiny task (lower is better)\\n" + subtitle(run), "ns (log)", cols),
    )
    ms = []
    for wid, label in (("a", "(a) n x 1 s, sleep"), ("b", "(b) 2 s + 10 x 100 ms: all"), ("c", "(c) 2000 x exp(1 ms), busy")):
        base = "makespan/%s/" % wid
        vals = []
        for peer in ("keel", "cpython_executor", "cpython_apply_async"):
            m, ideal = counter(run, base + peer, "makespan_s"), counter(run, base + peer, "ideal_s")
            vals.append(None if m is None or not ideal else m / ideal)
        ms.append((label, vals))
        if wid == "b":
            vals = []
            for peer in ("keel", "cpython_executor", "cpython_apply_async"):
                m, ideal = counter(run, base + peer, "short_s"), counter(run, base + peer, "short_ideal_s")
                vals.append(None if m is None or not ideal else m / ideal)
            ms.append(("(b) the ten short tasks done", vals))
    cols = ["keel", "CPython ProcessPoolExecutor", "CPython Pool.apply_async"]
    p.plot(
        "makespan",
        ms,
        cols,
        bar_script(
            "process pool makespan / ideal (1.0 = ideal; target: keel <= 1.10)\\n" + subtitle(run),
            "makespan / ideal",
            cols,
            log=False,
            extra="set arrow from graph 0, first 1.10 to graph 1, first 1.10 nohead dt 2 lw 2 lc rgb 'red'\n",
        ),
    )
    counts = sorted(
        {int(k.rsplit(":", 1)[1]) for k in run.get("benchmarks", {}) if k.startswith("scaling/keel/submit/")}
    )
    rows = []
    for c in counts:
        name = "scaling/keel/submit/workers:%d" % c
        rows.append((str(c), [t(name), counter(run, name, "parent_cpu_ns"), counter(run, name, "worker_cpu_ns")]))
    cols = ["wall time per task", "CPU per task, parent", "CPU per task, all workers"]
    p.plot(
        "scaling_workers",
        rows,
        cols,
        line_script("process pool: submit + future, ns per task against workers\\n" + subtitle(run), "workers",
                    "ns per task (log)", cols),
    )


def markdown(runs):
    out = []
    # The round trips say which kind of window the run had (bench/README.md:
    # compare runs only when they agree); files written before they were
    # measured have none.
    def trip(r, when):
        v = r.get("cache_round_trip_ns_" + when)
        return "-" if v is None else "%.0f ns" % v

    out.append("| program | time (UTC) | cpus | load before | load after | round trip before | round trip after |")
    out.append("|---|---|---|---|---|---|---|")
    for p in PROGRAMS:
        r = runs.get(p)
        if r:
            out.append("| %s | %s | %s | %s | %s | %s | %s |" % (p, r.get("time_utc"), r.get("cpus"), r.get("load_before"),
                                                               r.get("load_after"), trip(r, "before"), trip(r, "after")))
    out.append("")
    versions = {}
    for p in PROGRAMS:
        for k, v in runs.get(p, {}).get("versions", {}).items():
            versions.setdefault(k, v)
    out.append("Versions: " + "; ".join("%s %s" % kv for kv in versions.items()))
    out.append("")
    out.append("| program | target line | value | target | verdict |")
    out.append("|---|---|---|---|---|")
    for p in PROGRAMS:
        for t in runs.get(p, {}).get("targets", []):
            out.append("| %s | %s | %.2f | %s %.2f | %s |" % (p, t["line"], t["value"], t["op"], t["goal"],
                                                              "OK" if t["ok"] else "MISSED"))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("in_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--require-all", action="store_true", help="fail when any plot lacks its data")
    ap.add_argument("--require", default="", help="comma-separated plots that must be made")
    ap.add_argument("--markdown", action="store_true", help="print target lines, versions and loads as Markdown")
    args = ap.parse_args()
    if shutil.which("gnuplot") is None:
        print("bench_plots: gnuplot not found (Debian: gnuplot-nox; `make deps` installs it)", file=sys.stderr)
        return 1
    runs = load_runs(args.in_dir)
    if not runs:
        print("bench_plots: no results in %s (run `make bench` first)" % args.in_dir, file=sys.stderr)
        return 1
    os.makedirs(args.out_dir, exist_ok=True)
    p = Plotter(args.out_dir)
    plotters = {"sync_bench": plot_sync, "executor_bench": plot_executor, "process_pool_bench": plot_process_pool}
    expected = {"sync_bench": ["sync_cost"], "executor_bench": ["executor_cost", "latency", "scaling_threads"],
                "process_pool_bench": ["process_pool_cost", "makespan", "scaling_workers"]}
    for prog, fn in plotters.items():
        if prog in runs:
            fn(p, runs[prog])
        else:
            p.missing.extend(expected[prog])
    for png in p.made:
        print("bench_plots: wrote %s (%d bytes)" % (png, os.path.getsize(png)))
    all_plots = [n for names in expected.values() for n in names]
    required = set(all_plots) if args.require_all else {n for n in args.require.split(",") if n}
    unknown = required - set(all_plots)
    if unknown:
        print("bench_plots: no such plot: %s" % ", ".join(sorted(unknown)), file=sys.stderr)
        return 1
    made = {os.path.splitext(os.path.basename(png))[0] for png in p.made}
    lacking = sorted(n for n in required if n not in made)
    for m in p.missing:
        print("bench_plots: no data for %s%s" % (m, "" if m in required else " (skipped)"), file=sys.stderr)
    for f in p.failed:
        print("bench_plots: %s" % f, file=sys.stderr)
    if args.markdown:
        print(markdown(runs))
    if p.failed or lacking:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
