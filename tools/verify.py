#!/usr/bin/env python3
"""keel's `make verify`: build and run every model check, prove every check can
fail, and print the invariant report.

Steps:
  1. The shim boundary (PLAT-1) on the real tree, and on a planted violation;
     the shared-state audit (PLAT-2, tools/check_shared_state.py) likewise.
  2. Every Relacy model (models/**/*_model.cpp), built against the real
     kernel source with -DKEEL_MODEL_RELACY -DKEEL_INJECT_AT_RUNTIME (the
     models of one kernel configuration into one binary: GROUP_HEADERS), run clean
     and then once per seeded-bug twin it declares (`// KEEL-TWIN <injection
     point>`) with KEEL_INJECT=<point> in its environment. Every exhaustive
     explorer (models/**/*_explore.cpp: the real kernel state machines under
     every event order up to stated bounds, no Relacy) is built natively with
     -O2 -DKEEL_INJECT_AT_RUNTIME and run the same way; its rows' tool is
     "explore" and their "explored" column counts distinct states.
  3. The Spin models (proofs/run_spin.sh), with their own twins.
  4. proofs/INVARIANTS.md: every invariant names at least one check; every
     named check exists (and, for model checks, ran and passed here).
Then one table, a row per check, and the twins' kill score. Exits non-zero if
any check fails, any twin survives, or any invariant is left uncovered.

--deep (`make verify-deep`, not in CI): the same binaries run their deep rows
instead (KEEL_MODEL_DEEP=1 selects the harness's deep_check rows: exhaustive
context-bounded or full searches, 3-thread variants), for the models that
have any, with every twin under the deep search too; no Spin, no shim check,
and the invariant catalogue is checked only for the rows that ran.
"""
import argparse
import concurrent.futures as cf
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "verify")
CXX = os.environ.get("KEEL_MODEL_CXX", "g++")
CXXFLAGS = ["-std=c++20", "-O1", "-g0", "-w", "-DKEEL_MODEL_RELACY", "-DKEEL_INJECT_AT_RUNTIME", "-fno-sized-deallocation",
            "-I" + os.path.join(ROOT, "kernel", "include"), "-I" + os.path.join(ROOT, "models", "support")]
EXPLORE_CXXFLAGS = ["-std=c++20", "-O2", "-g0", "-w", "-DKEEL_INJECT_AT_RUNTIME",
                    "-I" + os.path.join(ROOT, "kernel", "include"), "-I" + os.path.join(ROOT, "models", "support")]


def tool_of(src):
    return "explore" if src.endswith("_explore.cpp") else "relacy"


class Row:
    def __init__(self, name, invariants, tool, search, explored, seconds, ok, verdict):
        self.name, self.invariants, self.tool, self.search = name, invariants, tool, search
        self.explored, self.seconds, self.ok, self.verdict = explored, seconds, ok, verdict


def kernel_inputs():
    files = glob.glob(os.path.join(ROOT, "kernel", "**", "*.[ch]pp"), recursive=True)
    files += glob.glob(os.path.join(ROOT, "models", "support", "*"))
    # The simulated worlds the models share with the tests and fuzz targets.
    files += glob.glob(os.path.join(ROOT, "tests", "support", "sim_*.hpp"))
    return files


def build(src):
    name = os.path.splitext(os.path.basename(src))[0]
    out = os.path.join(BUILD, name)
    if os.path.islink(out):  # a group's link (build_group): the compiler would write through it
        os.remove(out)
    inputs = kernel_inputs() + [src, os.path.abspath(__file__)]
    if os.path.exists(out) and os.path.getmtime(out) >= max(os.path.getmtime(f) for f in inputs):
        return name, out, None
    cmd = [CXX] + (EXPLORE_CXXFLAGS if tool_of(src) == "explore" else CXXFLAGS) + [src, "-o", out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return name, None, p.stderr[-4000:]
    return name, out, None


# Relacy models that share a kernel configuration: the same unity headers, no
# macro of their own, no kernel source included directly. Each group's models
# are compiled into one binary (the kernel, Relacy and the harness parsed and
# instantiated once, not once per model: the 13 models took 146 CPU-s to
# build apart and 73 together), and each model's name is a link to it that
# selects that model's main. Any other model is built on its own.
GROUP_HEADERS = {"executor_unity.hpp": "executor_group", None: "sync_group"}
# The groups compiled at -O2 rather than CXXFLAGS' -O1: those whose runs
# repay the longer compile. A binary's compile is nearly all code generation
# (parsing the kernel and Relacy is 2-3 s), and since the harness runs every
# row as an ErasedSuite (harness.hpp), one Relacy engine is generated per
# thread layout and scheduler rather than per suite: the sync group's binary
# holds 9 engines, not 51, and compiles in 14.5 CPU-s at -O1, 26.5 at -O2
# (51.5 at -O2 before). Its exhaustive rows are the longest Relacy runs
# (condition.rlock-depth, rmutex.non-owner, barrier.timeout-breaks-all: 30-40
# s each at -O1), which at -O2 run in 0.65-0.8 of the time. The executor
# group (10 engines; its code generation is mostly the pool's and the
# futures' code) compiles in 29.8 CPU-s at -O1 and 37.1 at -O2, and the
# executor model's rows ran in 63.9 CPU-s at -O2 against 76.9 at -O1, but
# the longer compile is the build phase's critical path: a whole make verify
# took 352 s with it at -O2, 341 s at -O1 (2026-12-07), so it keeps -O1, as
# do the models built on their own, whose runs are short.
GROUP_OPT = {"sync_group": "-O2"}


def group_of(src):
    if tool_of(src) != "relacy":
        return None
    with open(src) as f:
        text = f.read()
    if re.search(r"^\s*#\s*define\b", text, re.M) or re.search(r'^\s*#include\s+"[^"]*/src/[^"]*\.cpp"', text, re.M):
        return None
    # pool_unity.hpp's models each bring their own kernel sources; a model
    # without a plain `int main()` could not have it renamed.
    if "pool_unity.hpp" in text or not re.search(r"^int main\(\)", text, re.M):
        return None
    return GROUP_HEADERS["executor_unity.hpp" if "executor_unity.hpp" in text else None]


def write_if_changed(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(text)


def group_source(srcs):
    """One translation unit holding every model of srcs: each model's own text
    inside a namespace named after it (its includes hoisted to the top, once,
    and its lines kept where they were, so Relacy's reports name the model's
    file and line), its main renamed, and a main that runs the model the
    binary was invoked as."""
    head, seen, body = [], set(), []
    for src in srcs:
        name = os.path.splitext(os.path.basename(src))[0]
        here = os.path.dirname(src)
        lines = []
        for line in open(src).read().split("\n"):
            m = re.match(r'\s*#\s*include\s+([<"])([^>"]+)[>"]', line)
            if m:
                inc = m.group(2)
                if m.group(1) == '"' and os.path.exists(os.path.join(here, inc)):
                    key = '"' + os.path.normpath(os.path.join(here, inc)) + '"'
                else:
                    key = (m.group(1) + inc + (">" if m.group(1) == "<" else '"'))
                if key not in seen:
                    seen.add(key)
                    head.append("#include " + key)
                lines.append("")
            else:
                lines.append(re.sub(r"^int main\(\)", "int model_main()", line))
        body.append(f'namespace keel_model_{name} {{\n#line 1 "{src}"\n' + "\n".join(lines) +
                    f"\n}}  // namespace keel_model_{name}\n")
    dispatch = ["int main(int, char** argv) {", "  const char* slash = std::strrchr(argv[0], '/');",
                "  const char* self = slash ? slash + 1 : argv[0];"]
    for src in srcs:
        name = os.path.splitext(os.path.basename(src))[0]
        dispatch.append(f'  if (std::strcmp(self, "{name}") == 0) return keel_model_{name}::model_main();')
    dispatch += ['  std::fprintf(stderr, "%s: not a model of this binary\\n", self);', "  return 2;", "}"]
    return ("// Generated by tools/verify.py from the models below; not edited by hand.\n" +
            "\n".join(head) + "\n#include <cstdio>\n#include <cstring>\n" + "\n".join(body) + "\n".join(dispatch) + "\n")


def build_group(group, srcs):
    """Builds the group's binary and links each model's name to it. Returns
    [(src, binary or None, error or None)]."""
    # Named by its members too: a run of part of a group (--only, --deep)
    # builds a binary of its own, and neither replaces the other's.
    members = hashlib.sha1("\n".join(sorted(os.path.relpath(s, ROOT) for s in srcs)).encode()).hexdigest()[:8]
    group = f"{group}.{members}"
    unity = os.path.join(BUILD, group + ".cpp")
    out = os.path.join(BUILD, group)
    write_if_changed(unity, group_source(srcs))
    inputs = kernel_inputs() + srcs + [unity, os.path.abspath(__file__)]
    if not (os.path.exists(out) and os.path.getmtime(out) >= max(os.path.getmtime(f) for f in inputs)):
        flags = [GROUP_OPT.get(group.split(".")[0], f) if f == "-O1" else f for f in CXXFLAGS]
        p = subprocess.run([CXX] + flags + [unity, "-o", out], capture_output=True, text=True)
        if p.returncode != 0:
            return [(src, None, p.stderr[-4000:]) for src in srcs]
    result = []
    for src in srcs:
        link = os.path.join(BUILD, os.path.splitext(os.path.basename(src))[0])
        if os.path.lexists(link) and not (os.path.islink(link) and os.readlink(link) == group):
            os.remove(link)
        if not os.path.lexists(link):
            os.symlink(group, link)
        result.append((src, link, None))
    return result


# glibc's malloc settings for an explorer (explore.hpp), which copies its
# system once per event and frees a whole depth's frontier at a time: a
# thread cache of 7 chunks per size (the default) sent nearly every copy's
# allocations to the shared bins (malloc was 40% of a search), and the
# visited set and frontiers are touched at random across hundreds of
# megabytes, where transparent huge pages (THP "madvise", as on these VMs)
# spare the TLB. pool.explore.w1d2: 5.8-5.9 CPU-s with both, 6.7 with the
# cache alone, 7.7-8.0 with neither (2026-12-07). Tunables are read when a
# process starts, so the runner sets them; the caller's own come first.
EXPLORE_TUNABLES = "glibc.malloc.tcache_count=65535:glibc.malloc.hugetlb=1"


def with_tunables(env, tunables):
    env["GLIBC_TUNABLES"] = env["GLIBC_TUNABLES"] + ":" + tunables if env.get("GLIBC_TUNABLES") else tunables
    return env


def model_env(twin=None, deep=False, tool="relacy", **extra):
    """The environment of a model run: the caller's, less anything a model
    reads, plus what this run sets."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KEEL_INJECT", "KEEL_MODEL_ROWS", "KEEL_MODEL_ROW", "KEEL_MODEL_LIST", "KEEL_EXPLORE_ONLY")}
    if tool == "explore":
        with_tunables(env, EXPLORE_TUNABLES)
    env["KEEL_MODEL_DEEP"] = "1" if deep else "0"
    if twin:
        env["KEEL_INJECT"] = twin
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def list_rows(binary, deep):
    """The rows a model binary runs in this mode, by name, in its order; []
    when it cannot say (then it runs whole)."""
    p = subprocess.run([binary], capture_output=True, text=True, env=model_env(deep=deep, KEEL_MODEL_LIST="1"))
    names = [line.split("|", 1)[1] for line in p.stdout.splitlines() if line.startswith("KEEL-ROW|")]
    # A name may have two rows (an exhaustive and a random search of the same
    # case): KEEL_MODEL_ROW=<name> runs both, in one job.
    return list(dict.fromkeys(names)) if p.returncode == 0 else []


def run_model(binary, twin, log, tool, deep=False, only_rows=None, row=None):
    t0 = time.time()
    env = model_env(twin, deep, tool, KEEL_MODEL_ROWS=only_rows, KEEL_MODEL_ROW=row)
    with open(log, "w") as f:
        p = subprocess.run([binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        f.write(p.stdout)
    rows = []
    for line in p.stdout.splitlines():
        if line.startswith("KEEL-CHECK|"):
            _, name, inv, search, iters, secs, res, verdict = line.split("|", 7)
            rows.append(Row(name, inv, tool, search, iters, float(secs), res == "pass", verdict))
    return p.returncode, rows, time.time() - t0


def run_twin(binary, twin, log, tool, deep, row):
    """A twin whose KEEL-TWIN line names the row that catches it runs that row
    first (seconds instead of the whole model); if that row does not catch it,
    the whole model runs, and verify asks for the line to be corrected. The
    deep run does the same with the row's deep variant (same name); a model
    without one runs whole. (A twin may also crash other rows of its model:
    condition_timeout_drops_signal corrupts the waiter list, and the deep
    notify-n row dies of it before the row that names the bug is reached.)"""
    if row:
        rc, rows, secs = run_model(binary, twin, log, tool, deep, only_rows=row)
        if rc != 0 and any(not r.ok for r in rows):
            return rc, rows, secs, None
        rc2, rows2, secs2 = run_model(binary, twin, log, tool, deep)
        # No deep variant of the row: nothing to correct in the line.
        return rc2, rows2, secs + secs2, (None if deep and not rows else row)
    return run_model(binary, twin, log, tool, deep) + (None,)


def shim_rows():
    rows, twins = [], []
    t0 = time.time()
    ok = subprocess.run([os.path.join(ROOT, "tools", "check_shim.sh"), ROOT], capture_output=True).returncode == 0
    files = len(glob.glob(os.path.join(ROOT, "kernel", "**", "*.[ch]pp"), recursive=True))
    rows.append(Row("shim-boundary", "PLAT-1", "grep", "every kernel file", str(files), time.time() - t0, ok,
                    "clean" if ok else "violations"))
    # Its twin: the same check over a tree with a planted direct <atomic> include.
    with tempfile.TemporaryDirectory() as d:
        shutil.copytree(os.path.join(ROOT, "kernel"), os.path.join(d, "kernel"))
        with open(os.path.join(d, "kernel", "src", "sync", "planted.cpp"), "w") as f:
            f.write("#include <atomic>\n")
        caught = subprocess.run([os.path.join(ROOT, "tools", "check_shim.sh"), d], capture_output=True).returncode != 0
    twins.append(("shim-boundary", "planted_direct_atomic_include", caught, "shim-boundary" if caught else "-",
                  "violation reported" if caught else "not reported", "PLAT-1"))
    return rows, twins


def shared_state_rows():
    """PLAT-2: tools/check_shared_state.py on the real tree, and its twins on
    a copy with a planted violation of each kind it exists to catch."""
    script = os.path.join(ROOT, "tools", "check_shared_state.py")
    t0 = time.time()
    p = subprocess.run([sys.executable, script, ROOT], capture_output=True, text=True)
    ok = p.returncode == 0
    m = re.search(r"(\d+) data members", p.stdout)
    rows = [Row("shared-state", "PLAT-2", "audit", "every kernel class", m.group(1) if m else "-", time.time() - t0, ok,
                "clean" if ok else (p.stderr.strip().splitlines() or ["failed"])[-1].strip())]
    planted = {
        # A new class shares a plain pointer and says nothing about it.
        "planted_unlisted_plain_member": ("struct Planted {\n  Planted* next = nullptr;\n};\n", ""),
        # The list claims a Var, the code declares a plain field.
        "planted_var_declared_plain": ("struct Planted {\n  Planted* next = nullptr;\n};\n",
                                       "\n[kernel/src/sync/planted.cpp]\nPlanted\n  next  var\n"),
    }
    twins = []
    for twin, (source, listed) in planted.items():
        with tempfile.TemporaryDirectory() as d:
            shutil.copytree(os.path.join(ROOT, "kernel"), os.path.join(d, "kernel"))
            os.makedirs(os.path.join(d, "proofs"))
            shutil.copy(os.path.join(ROOT, "proofs", "shared_state.txt"), os.path.join(d, "proofs"))
            with open(os.path.join(d, "kernel", "src", "sync", "planted.cpp"), "w") as f:
                f.write(source)
            with open(os.path.join(d, "proofs", "shared_state.txt"), "a") as f:
                f.write(listed)
            q = subprocess.run([sys.executable, script, d], capture_output=True, text=True)
        caught = q.returncode == 1 and "Planted" in q.stderr
        twins.append(("shared-state", twin, caught, "shared-state" if caught else "-",
                      "violation reported" if caught else f"not reported (rc={q.returncode})"))
    return rows, twins


def spin_rows(logdir):
    script = os.path.join(ROOT, "proofs", "run_spin.sh")
    if not os.path.exists(script):
        return [], [], False
    env = dict(os.environ, KEEL_LOG_DIR=logdir)
    p = subprocess.run(["bash", script], capture_output=True, text=True, env=env, cwd=ROOT)
    rows, twins = [], []
    for line in p.stdout.splitlines():
        if not line.startswith("KEEL-CHECK|"):
            continue
        f = line.split("|")
        name, inv, tool, search, states, secs, res, verdict, kind = f[1:10]
        if kind == "twin":
            base, bug = name.split("+twin:", 1)
            twins.append((base, bug, res == "FAIL", base if res == "FAIL" else "-", verdict, inv))
        else:
            rows.append(Row(name, inv, tool, search, states, float(secs), res == "pass", verdict))
    return rows, twins, True


def ids(text):
    return {i.strip() for i in text.split(",") if i.strip()}


def spin_code_rows(twins, failures, partial=False):
    """proofs/spin-code-twins.md: each Spin twin planted in the code too, both
    caught, under a shared invariant. One row per Spin model (MODEL-1).
    partial (--only): a row only for the Spin models whose twins ran and
    whose every listed code point was declared by a model that ran."""
    path = os.path.join(ROOT, "proofs", "spin-code-twins.md")
    t0 = time.time()
    table = []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 4 and cells[1].startswith("BUG_"):
                table.append(cells)
    spin = {}  # (pml model, BUG_X) -> [(caught, invariants)] over every configuration
    code = {}  # injection point -> [(caught, invariants of the check that caught it, where)]
    for t in twins:
        if "+twin:" in str(t[3]) or t[1].startswith("BUG_"):
            spin.setdefault((t[0].split(".")[0], t[1]), []).append((t[2], ids(t[5] if len(t) > 5 else "")))
        else:
            code.setdefault(t[1], []).append((t[2], ids(t[5] if len(t) > 5 else ""), t[3]))
    listed = {(m, b) for m, b, _, _ in table}
    for key in spin:
        if key not in listed:
            failures.append(f"spin-code-twins.md: Spin twin {key[1]} of {key[0]}.pml is not listed")
    rows = []
    for model in sorted({m for m, _, _, _ in table} | {k[0] for k in spin}):
        if partial and any((m, b) not in spin or (p not in ("-", "") and p not in code)
                           for m, b, p, _ in table if m == model):
            continue
        tied, untied, problems = 0, 0, []
        for m, bug, point, note in table:
            if m != model:
                continue
            if (m, bug) not in spin:
                problems.append(f"{bug} is listed but run_spin.sh runs no such twin")
                continue
            if point in ("-", ""):
                untied += 1
                if not note:
                    problems.append(f"{bug} has no code twin and no reason")
                continue
            s_caught = [inv for ok, inv in spin[(m, bug)] if ok]
            c_caught = [(inv, where) for ok, inv, where in code.get(point, []) if ok]
            if not code.get(point):
                problems.append(f"{bug}: code twin {point} is declared by no model")
            elif not s_caught or not c_caught:
                problems.append(f"{bug}: caught by Spin {bool(s_caught)}, {point} caught in code {bool(c_caught)}")
            elif not set().union(*s_caught) & set().union(*(inv for inv, _ in c_caught)):
                problems.append(f"{bug} (Spin: {','.join(sorted(set().union(*s_caught)))}) and {point} "
                                f"(code: {','.join(sorted(set().union(*(i for i, _ in c_caught))))}) "
                                "are caught under no common invariant")
            else:
                tied += 1
        if tied == 0:
            problems.append("no twin of this model is tied to the code")
        for p in problems:
            failures.append(f"spin-code.{model}: {p}")
        rows.append(Row(f"spin-code.{model}", "MODEL-1", "pairing", f"{tied} twins tied, {untied} not tied",
                        str(tied + untied), time.time() - t0, not problems,
                        "agree" if not problems else problems[0]))
    return rows


def parse_invariants():
    path = os.path.join(ROOT, "proofs", "INVARIANTS.md")
    invariants = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^\|\s*([A-Z]+-\d+)\s*\|(.*)\|\s*$", line)
            if not m:
                continue
            cells = [c.strip() for c in m.group(2).split("|")]
            checks = re.findall(r"`([^`]+)`", cells[-1])
            invariants[m.group(1)] = checks
    return invariants


def gtest_names():
    names = set()
    for src in glob.glob(os.path.join(ROOT, "tests", "**", "*.cpp"), recursive=True):
        with open(src, errors="replace") as f:
            for m in re.finditer(r"\bTEST(?:_F|_P)?\(\s*(\w+)\s*,\s*(\w+)\s*\)", f.read()):
                names.add(m.group(1) + "." + m.group(2))
    return names


def fuzz_targets():
    """Fuzz target name -> the invariant IDs its checks cite."""
    targets = {}
    for src in glob.glob(os.path.join(ROOT, "fuzz", "*.cpp")):
        with open(src, errors="replace") as f:
            text = f.read()
        m = re.search(r"\bKEEL_FUZZ_TARGET\((\w+)\)", text)
        if m:
            # A target may drive a simulated world it shares with the tests
            # (tests/support/sim_*.hpp), whose checks are its own: they fail
            # through the KEEL_FUZZ_CHECK the target maps them to.
            for inc in re.findall(r'^#include "(tests/support/[^"]+)"', text, re.M):
                with open(os.path.join(ROOT, inc), errors="replace") as g:
                    text += g.read()
            # Checks name their invariant as a string literal, through
            # KEEL_FUZZ_CHECK or a target's own recording helper.
            targets[m.group(1)] = set(re.findall(r'"([A-Z]+-\d+)"', text))
    return targets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", metavar="REGEX",
                    help="run only the models whose path matches (and Spin only if 'spin' matches, with the "
                         "spin-code pairing rows of the Spin models whose code twins all ran); "
                         "for work in progress: checks that did not run are not reported as missing")
    ap.add_argument("--deep", action="store_true",
                    help="run the models' deep rows (make verify-deep) instead of the quick ones")
    ap.add_argument("--save-durations", action="store_true",
                    help="write this run's times to proofs/verify-durations*.json, the order a fresh clone's "
                         "first run takes (a whole run only)")
    args = ap.parse_args()
    only = re.compile(args.only) if args.only else None
    os.makedirs(BUILD, exist_ok=True)
    logdir = os.path.join(BUILD, "logs")
    os.makedirs(logdir, exist_ok=True)
    t_start = time.time()
    failures = []

    rows, twins = shim_rows() if not args.deep else ([], [])
    if not args.deep:
        audit_rows, audit_twins = shared_state_rows()
        rows += audit_rows
        twins += audit_twins

    models = sorted(glob.glob(os.path.join(ROOT, "models", "**", "*_model.cpp"), recursive=True))
    models += sorted(glob.glob(os.path.join(ROOT, "models", "**", "*_explore.cpp"), recursive=True))
    if only:
        models = [m for m in models if only.search(os.path.relpath(m, ROOT))]
    if args.deep:
        models = [m for m in models if "deep_check<" in open(m).read()]
    jobs = []
    catching_row = {}
    for src in models:
        with open(src) as f:
            # `// KEEL-TWIN <point> [<row that catches it>]`
            declared = re.findall(r"^//\s*KEEL-TWIN\s+(\w+)[ \t]*(\S*)", f.read(), re.M)
        if not declared:
            failures.append(f"{os.path.relpath(src, ROOT)} declares no seeded-bug twin")
        jobs.append((src, None))
        jobs += [(src, t) for t, _ in declared]
        for t, row in declared:
            catching_row[(src, t)] = row or None

    mode = "verify-deep" if args.deep else "verify"
    print(f"keel {mode}: {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {os.uname().nodename} "
          f"({os.cpu_count()} CPUs, {CXX})", flush=True)
    n_bins = len({group_of(m) or m for m in models})
    print(f"keel {mode}: building {len(models)} models into {n_bins} binaries (each model runs clean and once per "
          f"twin: {len(jobs)} runs) with {args.jobs} jobs", flush=True)
    # Spin needs none of the model binaries, but it does not start beside
    # their builds and runs: run_spin.sh keeps `jobs` checks going itself, and
    # with the models' `jobs` beside them twice as many processes as cores
    # shared the caches (pan's hash tables are hundreds of megabytes). That
    # cost a make verify about 14% more CPU (686 CPU-s against 375 for the
    # models alone plus 224 for Spin alone, 2026-12-06). It starts when the
    # last model run has started, so that it fills the cores the models'
    # last long runs leave idle, and overlaps nothing else.
    spin_pool = cf.ThreadPoolExecutor(1)
    spin_end = []  # when its last check ended (the rows are collected after the model runs)
    spin_wanted = not args.deep and (not only or only.search("spin"))
    spin_started = []  # its future, once started
    spin_lock = threading.Lock()

    def spin_timed(d):
        try:
            return spin_rows(d)
        finally:
            spin_end.append(time.time())

    def start_spin():
        with spin_lock:
            if spin_wanted and not spin_started:
                spin_started.append(spin_pool.submit(spin_timed, logdir))

    binaries = {}
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        groups = {}
        for src in models:
            groups.setdefault(group_of(src) or src, []).append(src)
        futs = [ex.submit(build_group, g, members) if len(members) > 1 else
                ex.submit(lambda s: [(s, *build(s)[1:])], members[0]) for g, members in groups.items()]
        for fut in futs:
            for src, binary, err in fut.result():
                if err:
                    failures.append(f"build of {os.path.relpath(src, ROOT)} failed:\n{err}")
                binaries[src] = binary
    print(f"keel {mode}: models built at {time.time() - t_start:.0f} s", flush=True)
    # A model's clean run is one job per row (the binary lists them), so that
    # the cores share a model's rows and the longest row, not the longest
    # model, is the longest job; a twin is one job, as run_twin says.
    runs = []  # (src, twin, row): in the order the report lists them
    for src, twin in jobs:
        if not binaries[src]:
            continue
        names = list_rows(binaries[src], args.deep) if twin is None else []
        runs += [(src, twin, row) for row in names] if names else [(src, twin, None)]

    def run_name(key):
        src, twin, row = key
        return os.path.splitext(os.path.basename(src))[0] + ("+" + twin if twin else "") + ("/" + row if row else "")

    spin_result = {}
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        # Longest first (by the last run's times), so no long run starts last
        # and leaves the other jobs idle.
        # A fresh clone has no last run: it takes the committed times of one
        # (proofs/verify-durations*.json, written by --save-durations), else
        # its first run would list the sync models' long exhaustive rows last
        # (by path) and end with one core idle behind them.
        timing_name = "durations" + (".deep" if args.deep else "") + ".json"
        timing_path = os.path.join(BUILD, timing_name)
        seed_path = os.path.join(ROOT, "proofs", "verify-" + timing_name)
        last = {}
        for path in (timing_path, seed_path):
            try:
                with open(path) as f:
                    last = json.load(f)
                break
            except (OSError, ValueError):
                continue
        futs = {}
        started = [0]

        def counted(fn, *a):
            # The last run to start starts Spin (start_spin above).
            with spin_lock:
                started[0] += 1
                last_one = started[0] == len(runs)
            if last_one:
                start_spin()
            return fn(*a)

        for key in sorted(runs, key=lambda k: -float(last.get(run_name(k), 1e9))):
            src, twin, row = key
            log = os.path.join(logdir, run_name(key).replace("/", ".") + (".deep" if args.deep else "") + ".log")
            if twin is None:
                futs[key] = ex.submit(counted, lambda *a: run_model(*a) + (None,), binaries[src], None, log,
                                      tool_of(src), args.deep, None, row)
            else:
                futs[key] = ex.submit(counted, run_twin, binaries[src], twin, log, tool_of(src), args.deep,
                                      catching_row.get((src, twin)))
        durations = {}
        for key in runs:
            src, twin, row = key
            rc, model_rows, secs, missed_row = futs[key].result()
            name = run_name(key)
            durations[name] = secs
            if twin is None:
                if not model_rows:
                    failures.append(f"{name} reported no checks (rc={rc})")
                rows += model_rows
                if rc != 0 and all(r.ok for r in model_rows):
                    failures.append(f"{name} exited {rc}")
            else:
                caught_by = [r for r in model_rows if not r.ok]
                caught = rc != 0 and bool(caught_by)
                first = caught_by[0] if caught_by else None
                if missed_row and caught:
                    failures.append(f"twin {twin} of {os.path.relpath(src, ROOT)}: its KEEL-TWIN line names row "
                                    f"{missed_row}, which did not catch it; {first.name} did: correct the line")
                twins.append((os.path.splitext(os.path.basename(src))[0], twin, caught,
                              first.name + " [" + first.search + "]" if first else "-",
                              first.verdict if first else f"not caught (rc={rc})",
                              first.invariants if first else ""))
        # Merged into the last times, not written over them: a partial run
        # (--only) would otherwise leave the next full run without the order.
        with open(timing_path, "w") as f:
            json.dump({**last, **durations}, f, indent=0, sort_keys=True)
        if args.save_durations and not only:
            with open(seed_path, "w") as f:
                json.dump({k: round(v, 1) for k, v in durations.items()}, f, indent=0, sort_keys=True)
                f.write("\n")
        print(f"keel {mode}: model runs done at {time.time() - t_start:.0f} s", flush=True)
        start_spin()  # no run started it: there were none
        spin_future = spin_started[0] if spin_started else None
        srows, stwins, present = spin_future.result() if spin_future else ([], [], True)
        if spin_future:
            print(f"keel {mode}: Spin done at {spin_end[0] - t_start:.0f} s", flush=True)
        spin_pool.shutdown()
        if not present:
            failures.append("proofs/run_spin.sh is missing")
        rows += srows
        twins += stwins

    if not args.deep and (not only or only.search("spin")):
        rows += spin_code_rows(twins, failures, partial=bool(only))

    # Each check runs once: a row job that ran more than its row would only
    # cost time, and a report listing a check twice says less than it seems.
    seen = set()
    for r in rows:
        if (r.tool, r.name, r.search) in seen:
            failures.append(f"check {r.tool}:{r.name} [{r.search}] ran more than once")
        seen.add((r.tool, r.name, r.search))

    # Invariant catalogue cross-check.
    invariants = parse_invariants()
    tests = gtest_names()
    fuzzers = fuzz_targets()
    ran = {(r.tool, r.name): r for r in rows}
    coverage = {}
    for inv, checks in invariants.items():
        good = []
        for c in checks:
            kind, _, name = c.partition(":")
            kind, name = kind.strip(), name.strip()
            if kind == "gtest":
                if name in tests:
                    good.append(c)
                else:
                    failures.append(f"INVARIANTS.md: {inv} names missing test {name}")
            elif kind == "fuzz":
                # The target runs in make fuzz and over its corpus in make
                # test; here: it exists and checks this invariant.
                if name not in fuzzers:
                    failures.append(f"INVARIANTS.md: {inv} names fuzz target {name}, which fuzz/ does not define")
                elif inv not in fuzzers[name]:
                    failures.append(f"INVARIANTS.md: {inv} names fuzz:{name}, which has no KEEL_FUZZ_CHECK for {inv}")
                else:
                    good.append(c)
            elif kind in ("relacy", "spin", "grep", "pairing", "audit", "explore"):
                hits = [r for (tool, n), r in ran.items() if tool == kind and n == name]
                if not hits and (only or args.deep):
                    good.append(c)  # not selected by --only, or not a deep row
                elif not hits:
                    failures.append(f"INVARIANTS.md: {inv} names check {kind}:{name}, which did not run")
                elif not all(r.ok for r in hits):
                    failures.append(f"INVARIANTS.md: {inv}: check {kind}:{name} failed")
                else:
                    good.append(c)
            else:
                failures.append(f"INVARIANTS.md: {inv}: unknown check kind in `{c}`")
        coverage[inv] = good
        if not good:
            failures.append(f"invariant {inv} is covered by no check that runs")
    for r in rows:
        for inv in filter(None, (i.strip() for i in r.invariants.split(","))):
            if inv not in invariants:
                failures.append(f"check {r.name} names {inv}, which proofs/INVARIANTS.md does not define")

    # The report.
    print()
    hdr = ("check", "invariants", "tool", "search", "explored", "seconds", "result")
    table = [hdr] + [(r.name, r.invariants, r.tool, r.search, r.explored, f"{r.seconds:.2f}",
                      "pass" if r.ok else "FAIL: " + r.verdict) for r in rows]
    widths = [max(len(str(t[i])) for t in table) for i in range(len(hdr))]
    for i, t in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(t, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if not r.ok:
            failures.append(f"check {r.tool}:{r.name} [{r.search}] failed: {r.verdict}")

    print()
    thdr = ("seeded-bug twin", "model", "caught by", "verdict")
    ttable = [thdr] + [(t[1], t[0], t[3], t[4]) for t in twins]
    widths = [max(len(str(t[i])) for t in ttable) for i in range(len(thdr))]
    for i, t in enumerate(ttable):
        print("  ".join(str(c).ljust(w) for c, w in zip(t, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    killed = sum(1 for t in twins if t[2])
    for t in twins:
        if not t[2]:
            failures.append(f"seeded-bug twin {t[1]} of {t[0]} was NOT caught")
    print()
    if not args.deep:
        print(f"invariants covered: {sum(1 for v in coverage.values() if v)}/{len(coverage)}")
    print(f"twins killed: {killed}/{len(twins)}")
    print(f"checks passed: {sum(1 for r in rows if r.ok)}/{len(rows)}   total time: {time.time() - t_start:.0f} s")
    if only:
        print(f"(--only {args.only}: a partial run; `make verify` runs everything)")
    if args.deep:
        print("(deep rows only: `make verify` runs the quick rows, Spin and the shim check)")
    if failures:
        print("\nverify FAILED:")
        for f in failures:
            print("  - " + f)
        return 1
    print(f"{mode}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
