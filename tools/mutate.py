#!/usr/bin/env python3
"""keel's `make mutate`: mutation testing of the kernel with generic operators.

The seeded-bug twins (`make verify`) prove that each check can fail on one
mistake someone thought of. This tool asks the opposite question: for mistakes
nobody planted, which checks notice? It generates mutants of the kernel
source, one operator application each, runs the checks that exercise the
mutated file against each mutant in a scratch copy of the tree, and prints a
kill table by layer and operator with the survivors by file and line.

Mutated files: kernel/src/** and kernel/include/keel/**, except
  - keel/platform/native/ (the native futex backend: no model compiles it;
    its mistakes are the test suite's to catch, and mutating raw syscall
    wrappers mostly yields crashes rather than verdicts of a named check),
  - keel/platform/inject.hpp (the injection mechanism itself),
  - keel/keel.hpp (includes only).
Code inside a seeded-bug branch (the `mistake` of `if (KEEL_INJECTED(p))
{ mistake } else { right }`, or of `KEEL_INJECTED(p) ? mistake : right`) is
never mutated: it does not run unless its twin is switched on.

Operators (MUTATE_OPS picks a subset):
  mo-weaken     a memory order weakened: seq_cst -> acq_rel/acquire/release,
                acq_rel -> acquire/release, acquire -> relaxed, release ->
                relaxed; only orders valid for the operation (a load is never
                given release, a CAS failure order never release/acq_rel)
  wake-drop     a futex_wake / notify / notify_one / notify_all call dropped
  wake-reduce   a wake count reduced: wake_all -> 1 (futex_wake's and
                notify's), n -> n - 1, notify_all() -> notify(1)
  cmp-off       a comparison off by one: < <-> <=, > <-> >=
  cas-blind     compare_exchange_*(e, d, ...) -> (store(d, seq_cst), true)
  store-blind   fetch_or/and/xor/add(v, ...) -> exchange(v, ...): a state
                update that kept the other bits becomes a blind store
  loop-bound    a loop condition's bound moved by one (i < n -> i < (n) - 1)
  recheck-drop  a wait loop's re-check removed: `while (c) { ...wait... }` ->
                `if (c) { ... }` (a loop of one turn, `for (bool once = true;
                once && (c); once = false)`, where the body has a break or
                continue of its own), `do { ...wait... } while (c);` ->
                while (false)

A mutant is named file:line:operator:index (index: its rank among that
operator's mutants on that line) and shown as its one-line diff. The list is
deterministic: the same tree always yields the same mutants in the same order.

Mutants are compiled as schemata (see the schemata section below): in one
scratch copy under build/mutate/ (the real tree is never modified) every
mutant is a run-time choice switched on by KEEL_MUTANT=<id>, each model and
the test binary is built once and must pass with no mutant on, and each
mutant is a run. Mutants whose schema does not compile are checked with a
build of their own, as --per-mutant checks every mutant. Checks per mutant,
each with a time limit, stopping at the first kill:
  1. the Relacy models whose includes reach the mutated file (through the
     model's own includes, not the unity headers every model shares), or, for
     shim headers every model reaches, all models; the model named like the
     file first, then its layer, then the rest. Built as `make verify` builds
     them (tools/verify.py's flags), run with no KEEL_INJECT, stopping at the
     first failing row.
  2. if build/g++/keel_tests exists: the test binary, run with a
     --gtest_filter of the mutated layer's suites. A failing test is re-run
     with no mutant on (same binary); failing there too, it is a flake, not a
     kill, and the mutant's tests run again.
Outcomes: killed-by-model (row), killed-by-test (test), killed-by-hang (time
limit, or a test the per-test watchdog named [  TIMEOUT ]), killed-by-crash
(signal or non-zero exit without a failed check), survived, build-failed (an
invalid mutant: not counted), equivalent (listed by hand with a reason in
proofs/mutate-equivalent.txt: not counted). Score = killed by a named check /
(mutants - build-failed - equivalent).

Knobs (environment, or the matching option): MUTATE_SAMPLE=N (a random sample
of N mutants, MUTATE_SEED, default 1), MUTATE_JOBS (scratch copies working in
parallel, default 1), MUTATE_FILTER=<regex on file path>, MUTATE_OPS=<comma
list>, MUTATE_IDS=<regex on mutant ids>. `--list` prints the mutants and
exits. The report goes to
build/mutate/report.md; a run over every mutant (no sample, filter or ops) or
`--publish` also writes proofs/mutation-report.md.
"""
import argparse
import difflib
import concurrent.futures as cf
import glob
import os
import platform as pyplatform
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = ["mo-weaken", "wake-drop", "wake-reduce", "cmp-off", "cas-blind", "store-blind", "loop-bound", "recheck-drop"]
LAYERS = ["sync", "future", "executor", "process_pool", "process", "cluster", "platform", "common"]
EXCLUDED = [re.compile(p) for p in (r"^kernel/include/keel/platform/native/", r"^kernel/include/keel/platform/inject\.hpp$",
                                    r"^kernel/include/keel/keel\.hpp$")]
UNITY = {"harness.hpp", "kernel_unity.hpp", "executor_unity.hpp", "pool_unity.hpp"}


# ---------------------------------------------------------------- source scan

def code_mask(text):
    """True for each character that is code: not in a comment, a string or
    character literal, or a preprocessor line."""
    n = len(text)
    mask = [True] * n
    i = 0
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c in " \t":
            i += 1
            continue
        if line_start and c == "#":
            j = i
            while j < n:
                if text[j] == "\n" and text[j - 1] != "\\":
                    break
                j += 1
            for k in range(i, j):
                mask[k] = False
            i = j
            continue
        line_start = c == "\n"
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                mask[k] = False
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        elif c == "R" and i + 1 < n and text[i + 1] == '"' and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^()\\ ]{0,16})\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        elif c == '"' or (c == "'" and not (i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum())):
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(n, j + 1)
            for k in range(i, j):
                mask[k] = False
            i = j
        else:
            i += 1
    return mask


def match_close(text, i):
    """Index just past the bracket that closes the one at text[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    j = i
    while j < len(text):
        c = text[j]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if not stack or stack.pop() != c:
                return -1
            if not stack:
                return j + 1
        j += 1
    return -1


def masked_text(text, mask):
    """The text with every non-code character replaced by a space (positions kept)."""
    return "".join(ch if m or ch == "\n" else " " for ch, m in zip(text, mask))


def mask_seeded_bugs(code, mask):
    """Clear the mask over the mistake branch of each injection point."""
    for m in re.finditer(r"\bKEEL_INJECTED\s*\(", code):
        call_end = match_close(code, m.end() - 1)
        for k in range(m.start(), call_end):
            mask[k] = False
        # if (KEEL_INJECTED(p)) { mistake } / if (KEEL_INJECTED(p)) mistake;
        head = re.search(r"\bif\s*\(\s*$", code[max(0, m.start() - 40):m.start()])
        after = re.match(r"\s*\)\s*", code[call_end:])
        if head and after:
            j = call_end + after.end()
            end = match_close(code, j) if code[j] == "{" else code.find(";", j) + 1
            for k in range(j, end):
                mask[k] = False
            continue
        # KEEL_INJECTED(p) [&& x] ? mistake : right
        j, depth = call_end, 0
        while j < len(code) and code[j] not in ";{}":
            if code[j] in "([":
                depth += 1
            elif code[j] in ")]":
                depth -= 1
                if depth < 0:
                    break
            elif code[j] in ":," and depth == 0:
                break
            elif code[j] == "?" and depth == 0:
                k, d2 = j + 1, 0
                while k < len(code) and not (code[k] == ":" and d2 == 0 and code[k - 1] != ":" and code[k + 1] != ":"):
                    d2 += code[k] in "([{"
                    d2 -= code[k] in ")]}"
                    k += 1
                for q in range(j, k):
                    mask[q] = False
                break
            j += 1


class Mutant:
    def __init__(self, path, start, end, repl, op, line):
        self.path, self.start, self.end, self.repl, self.op, self.line = path, start, end, repl, op, line
        self.index = 0
        self.outcome, self.by, self.seconds, self.detail, self.log = None, "", 0.0, "", ""

    @property
    def id(self):
        return f"{self.path}:{self.line}:{self.op}:{self.index}"

    @property
    def layer(self):
        return layer_of(self.path)

    def apply(self, text):
        return text[:self.start] + self.repl + text[self.end:]

    def diff(self, text):
        ls = text.rfind("\n", 0, self.start) + 1
        le = text.find("\n", self.end)
        le = len(text) if le < 0 else le
        old = text[ls:le]
        new = text[ls:self.start] + self.repl + text[self.end:le]
        squash = lambda s: re.sub(r"\s+", " ", s).strip()
        return f"- {squash(old)}\n+ {squash(new)}"


def layer_of(path):
    m = re.match(r"kernel/(?:src|include/keel)/(\w+)/", path)
    return m.group(1) if m and m.group(1) in LAYERS else "common"


def call_context(code, pos):
    """(function name, argument index) of the call whose argument list holds pos."""
    depth, j, commas = 0, pos - 1, 0
    while j >= 0:
        c = code[j]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth == 0:
                if c != "(":
                    return None, 0
                m = re.search(r"(\w+)\s*$", code[:j])
                return (m.group(1) if m else None), commas
            depth -= 1
        elif c == "," and depth == 0:
            commas += 1
        elif c == ";" and depth == 0:
            return None, 0
        j -= 1
    return None, 0


def receiver_start(code, i):
    """Start of the object expression before the '.' or '->' at code[i]."""
    j = i
    while j > 0:
        c = code[j - 1]
        if c.isalnum() or c == "_":
            j -= 1
        elif c == "." or (c == ">" and j > 1 and code[j - 2] == "-") or (c == ":" and j > 1 and code[j - 2] == ":"):
            j -= 2 if c in ">:" else 1
        elif c in ")]":
            k, depth = j - 1, 0
            while k >= 0:
                depth += code[k] in ")]"
                depth -= code[k] in "(["
                if depth == 0:
                    break
                k -= 1
            j = k
        else:
            break
    return j


LOADS = {"load"}
STORES = {"store"}
WEAKER = {"seq_cst": ["acq_rel", "acquire", "release"], "acq_rel": ["acquire", "release"], "acquire": ["relaxed"],
          "release": ["relaxed"]}


def gen_mutants(path, text):
    mask = code_mask(text)
    code0 = masked_text(text, mask)
    mask_seeded_bugs(code0, mask)
    code = masked_text(text, mask)
    out = []

    def is_code(a, b):
        return all(mask[a:b])

    def add(a, b, repl, op):
        if is_code(a, b) and text[a:b] != repl:
            out.append(Mutant(path, a, b, repl, op, text.count("\n", 0, a) + 1))

    # mo-weaken
    for m in re.finditer(r"\bstd::memory_order(?:_|::)(seq_cst|acq_rel|acquire|release)\b", code):
        fn, arg = call_context(code, m.start())
        allowed = list(WEAKER[m.group(1)])
        if fn in LOADS:
            allowed = [o for o in allowed if o in ("acquire", "relaxed")]
        elif fn in STORES:
            allowed = [o for o in allowed if o in ("release", "relaxed")]
        elif fn and fn.startswith("compare_exchange") and arg == 3:
            allowed = [o for o in allowed if o in ("acquire", "relaxed")]
        sep = "_" if "memory_order_" in m.group(0) else "::"
        for o in allowed:
            add(m.start(), m.end(), f"std::memory_order{sep}{o}", "mo-weaken")

    # wake-drop, wake-reduce
    for m in re.finditer(r"(?:\b(?:platform::)?futex_wake|(?:\.|->)(?:notify_one|notify_all|notify))\s*\(", code):
        start = m.start() if m.group(0)[0] not in ".-" else receiver_start(code, m.start())
        end = match_close(code, m.end() - 1)
        if end < 0:
            continue
        # A declaration (`inline int futex_wake(...) {`), not a call: there is
        # nothing to drop (its "mutant" did not compile).
        if re.search(r"\b(?:int|void|bool|auto|long|unsigned)\s*$", code[max(0, start - 64):start]):
            continue
        add(start, end, "(void)0", "wake-drop")
        args_text = code[m.end():end - 1]
        if "futex_wake" in m.group(0):
            comma = args_text.rfind(",")
            n_start = m.end() + comma + 1
            n_text = text[n_start:end - 1].strip()
            lead = len(text[n_start:end - 1]) - len(text[n_start:end - 1].lstrip())
            if n_text.endswith("wake_all"):
                add(n_start + lead, end - 1, "1", "wake-reduce")
            elif n_text and n_text != "1" and "source_location" not in n_text:
                add(n_start + lead, end - 1, f"{n_text} - 1", "wake-reduce")
        elif m.group(0).rstrip("( ").endswith("notify") and args_text.strip():
            # notify(wake_all) as futex_wake's: to one (wake_all - 1 would
            # still wake every thread there is, a mutant no check can kill).
            lead = len(args_text) - len(args_text.lstrip())
            reduced = "1" if args_text.strip().endswith("wake_all") else f"{args_text.strip()} - 1"
            add(m.end() + lead, m.end() + lead + len(args_text.strip()), reduced, "wake-reduce")
        elif m.group(0).rstrip("( ").endswith("notify_all"):
            # keel::Condition has notify(n = 1) and notify_all(), no notify_one.
            name_at = m.start() + m.group(0).index("notify_all")
            add(name_at, end, "notify(1)", "wake-reduce")

    # cmp-off
    swap = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
    for m in re.finditer(r"(?<=\s)(<=|>=|<|>)(?=\s)", code):
        ls = code.rfind("\n", 0, m.start()) + 1
        if "static_assert" in code[ls:code.find("\n", m.start())] or re.search(r"\btemplate\s*$", code[ls:m.start()]):
            continue
        add(m.start(), m.end(), swap[m.group(1)], "cmp-off")

    # cas-blind
    for m in re.finditer(r"(?:\.|->)compare_exchange_(?:strong|weak)\s*\(", code):
        start = receiver_start(code, m.start())
        end = match_close(code, m.end() - 1)
        if end < 0:
            continue
        args = split_args(text, m.end(), end - 1)
        if len(args) < 2:
            continue
        recv = text[start:m.start()] + text[m.start():m.start() + (2 if text[m.start()] == "-" else 1)]
        # seq_cst: the shim's atomics take no default order, and the strongest
        # one keeps the mutant about blindness alone (a weaker store is
        # mo-weaken's business).
        add(start, end, f"({recv}store({args[1]}, std::memory_order_seq_cst), true)", "cas-blind")

    # store-blind
    for m in re.finditer(r"(?:\.|->)(fetch_(?:or|and|xor|add))\s*\(", code):
        name_at = m.start(1)
        add(name_at, name_at + len(m.group(1)), "exchange", "store-blind")

    # loop-bound
    for m in re.finditer(r"\b(for|while)\s*\(", code):
        close = match_close(code, m.end() - 1)
        if close < 0:
            continue
        a, b = m.end(), close - 1
        if m.group(1) == "for":
            parts = split_args(code, a, b, sep=";")
            if len(parts) != 3:
                continue
            a = a + code[a:b].index(";") + 1
            b = a + code[a:b].index(";")
        cond = code[a:b]
        for c in re.finditer(r"(?<=\s)(<=|>=|<|>)(?=\s)", cond):
            rs = a + c.end()
            j, depth = rs, 0
            while j < b:
                if code[j] in "([{":
                    depth += 1
                elif code[j] in ")]}":
                    depth -= 1
                    if depth < 0:
                        break  # the bracket that encloses the comparison
                elif depth == 0 and code.startswith(("&&", "||", "?"), j):
                    break
                j += 1
            bound = text[rs:j].strip()
            if not bound:
                continue
            bs = rs + (len(text[rs:j]) - len(text[rs:j].lstrip()))
            delta = "- 1" if c.group(1) in ("<", "<=") else "+ 1"
            add(bs, bs + len(bound), f"({bound}) {delta}", "loop-bound")

    # recheck-drop
    for m in re.finditer(r"\bwhile\s*\(", code):
        close = match_close(code, m.end() - 1)
        if close < 0:
            continue
        before = code[:m.start()].rstrip()
        if before.endswith("}"):
            # do { body } while (cond);
            open_ = find_open(code, len(before) - 1)
            if open_ is None or not re.search(r"\bdo\s*$", code[:open_]):
                continue
            if re.search(r"wait", code[open_:len(before)]):
                add(m.end(), close - 1, "false", "recheck-drop")
            continue
        rest = code[close:]
        body_start = close + len(rest) - len(rest.lstrip())
        body_end = match_close(code, body_start) if code[body_start] == "{" else code.find(";", body_start) + 1
        if body_end > 0 and re.search(r"wait", code[body_start:body_end]):
            if _escapes(code, body_start, body_end):
                # A body with a break or continue of its own: as `if` it
                # would not compile (or would leave an outer loop), so the
                # body runs at most once by a loop of one turn instead.
                cond = text[m.end():close - 1]
                add(m.start(), close, f"for (bool keel_once = true; keel_once && ({cond}); keel_once = false)",
                    "recheck-drop")
            else:
                add(m.start(), m.start() + len("while"), "if", "recheck-drop")

    # Stable order and per-line indices.
    out.sort(key=lambda x: (x.line, OPS.index(x.op), x.start, x.repl))
    seen = {}
    for x in out:
        k = (x.line, x.op)
        x.index = seen.get(k, 0)
        seen[k] = x.index + 1
    return out


def split_args(text, a, b, sep=","):
    """Top-level pieces of text[a:b] split at sep (brackets respected)."""
    parts, depth, cur = [], 0, a
    for j in range(a, b):
        c = text[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[cur:j].strip())
            cur = j + 1
    parts.append(text[cur:b].strip())
    return parts


def find_open(code, close_at):
    depth = 0
    for j in range(close_at, -1, -1):
        if code[j] == "}":
            depth += 1
        elif code[j] == "{":
            depth -= 1
            if depth == 0:
                return j
    return None


def kernel_files(root):
    files = sorted(glob.glob(os.path.join(root, "kernel", "src", "**", "*.[ch]pp"), recursive=True) +
                   glob.glob(os.path.join(root, "kernel", "include", "keel", "**", "*.hpp"), recursive=True))
    rel = [os.path.relpath(f, root) for f in files]
    return [r for r in rel if not any(p.search(r) for p in EXCLUDED)]


def all_mutants(root, filt=None, ops=None):
    res = []
    for path in kernel_files(root):
        if filt and not filt.search(path):
            continue
        with open(os.path.join(root, path)) as f:
            text = f.read()
        res += [m for m in gen_mutants(path, text) if not ops or m.op in ops]
    return res


# ---------------------------------------------------------------- relevance

def resolve_include(root, frm, name):
    for base in (os.path.dirname(frm), os.path.join(root, "kernel", "include"), os.path.join(root, "models", "support")):
        p = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(p):
            return p
    return None


def closure(root, start, skip_unity):
    seen, stack = set(), [start]
    while stack:
        f = stack.pop()
        if f in seen:
            continue
        seen.add(f)
        with open(f) as fh:
            for name in re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', fh.read(), re.M):
                if skip_unity and os.path.basename(name) in UNITY:
                    continue
                p = resolve_include(root, f, name)
                # Models also include the simulated worlds they share with the
                # tests (tests/support/sim_*.hpp), which include kernel files.
                followed = ("kernel", "models", os.path.join("tests", "support"))
                if p and any(p.startswith(os.path.join(root, d)) for d in followed):
                    stack.append(p)
    return {os.path.relpath(p, root) for p in seen}


def unit_files(path):
    """The mutated file and the header that declares its unit."""
    stem = os.path.splitext(os.path.basename(path))[0]
    layer = layer_of(path)
    return {path, f"kernel/include/keel/{layer}/{stem}.hpp", f"kernel/src/{layer}/{stem}.hpp"}


class Relevance:
    def __init__(self, root):
        # Relacy models and the exhaustive explorers (*_explore.cpp) alike.
        self.models = sorted(os.path.relpath(m, root) for pattern in ("*_model.cpp", "*_explore.cpp")
                             for m in glob.glob(os.path.join(root, "models", "**", pattern), recursive=True))
        self.full = {m: closure(root, os.path.join(root, m), False) for m in self.models}
        self.own = {m: closure(root, os.path.join(root, m), True) for m in self.models}

    def models_for(self, path):
        reach = [m for m in self.models if path in self.full[m]]
        units = unit_files(path)
        own = [m for m in reach if units & self.own[m]]
        layer = layer_of(path)
        same = [m for m in own if m.startswith(f"models/{layer}/")]
        chosen = same or own or reach
        stem = os.path.splitext(os.path.basename(path))[0]

        def key(m):
            mstem = model_stem(m)
            return (mstem != stem, not m.startswith(f"models/{layer}/"), len(self.full[m]), m)

        return sorted(chosen, key=key)


# ---------------------------------------------------------------- running

def model_stem(m):
    base = os.path.basename(m)
    return base[:-len("_model.cpp")] if base.endswith("_model.cpp") else base[:-len(".cpp")]


def model_flags(root):
    sys.path.insert(0, os.path.join(root, "tools"))
    try:
        import verify  # the same flags `make verify` builds models (and explorers) with
    finally:
        sys.path.pop(0)
    flags = [f for f in verify.CXXFLAGS if not f.startswith("-I")]
    explore = [f for f in verify.EXPLORE_CXXFLAGS if not f.startswith("-I")]
    # and the malloc settings its explorers run with (verify.EXPLORE_TUNABLES)
    return verify.CXX, (flags, explore, lambda env: verify.with_tunables(env, verify.EXPLORE_TUNABLES))


def test_suites(root):
    """gtest suite names per layer directory of tests/."""
    out = {}
    for f in glob.glob(os.path.join(root, "tests", "*", "*.cpp")):
        layer = os.path.basename(os.path.dirname(f))
        with open(f) as fh:
            names = re.findall(r"^\s*(?:TEST|TEST_F|TEST_P|RC_GTEST_PROP|RC_GTEST_FIXTURE_PROP)\s*\(\s*(\w+)", fh.read(), re.M)
        out.setdefault(layer, set()).update(names)
    return out


TEST_LAYERS = {"sync": ["sync"], "future": ["future"], "executor": ["executor"], "process_pool": ["process_pool"],
               # The process layer's child.cpp (spawn, fork, the daemon lifeline,
               # reaping), frame.cpp and the codec are what every ProcessPool worker
               # runs on; tests/process reaches little of child.cpp (its first full
               # run: every child.cpp mutant survived it), the pool's suites all of it.
               "process": ["process", "process_pool"],
               # The shim's wrappers are used by every layer; the sync and future
               # suites reach each of them (fetch_or only the future's observed
               # bit: platform's first full run had atomic.hpp:107 surviving
               # platform and sync alone).
               "platform": ["platform", "sync", "future"],
               # Each node of a ClusterPool runs a ProcessPool; its own suites are
               # tests/cluster (before, cluster/ was not a layer, and its mutants ran
               # the "common" suites, none of which builds a ClusterPool).
               "cluster": ["cluster"],
               # keel/error.hpp: WorkerLost's status is the process pool's to judge.
               "common": ["sync", "future", "process_pool"]}

# Tests of a layer that live in tests/ directories named after what they do,
# not the layer: a layer's mutants run these too (gtest patterns). The fuzz
# corpus replay (tests/fuzz, one instance per target) drives the pool's
# worker loop, wire protocol and slot page (pool_worker), its state machine
# (pool_machine) and the whole pool (process_pool_ops), and the hostile
# suites (tests/hostile) its limits, signals and exits; none is named after
# tests/process_pool, so without this they never ran for a process-pool
# mutant. Both cost seconds.
TEST_EXTRA = {"process_pool": ["*/FuzzCorpus.*/pool_machine", "*/FuzzCorpus.*/pool_worker",
                               "*/FuzzCorpus.*/process_pool_ops", "HostileProcessPool*.*", "HostileTimeout.ProcessPool*"],
              # Child roles and hostile environments (tests/hostile/child_role_test.cpp),
              # shared-memory cleanup by the resource tracker, and the decoders' corpora.
              "process": ["*/FuzzCorpus.*/codec", "*/FuzzCorpus.*/frame_reader", "*/FuzzCorpus.*/pool_worker",
                          "*/FuzzCorpus.*/process_pool_ops", "HostileChildRole*.*", "HostileShm*.*",
                          "HostileProcessPool*.*", "HostileTimeout.ProcessPool*"]}

# Files of a layer that only a part of its suites reach: their mutants run
# that part (a subset of the layer's filter, so the layer's baseline covers
# it). No process pool uses a ProcessQueue or a named SharedMemory: the pool
# suites took 20 of each such mutant's 30 s and could not kill it.
TEST_NARROW = [(re.compile(r"kernel/src/process/(queue|queue_ring|shared_memory|shared_list_header|resource_tracker|robust_mutex)\.cpp$"),
                ["process"], ["HostileShm*.*"])]

# Files of a layer that another layer's suites reach too: their mutants run
# those as well. The map progress tracker is the executor's, but only the
# process pool's chunked maps count a chunk's calls (chunk_done): the
# executor's suites never reach that code.
TEST_WIDEN = [(re.compile(r"kernel/include/keel/executor/map_progress\.hpp$"),
               ["ProcessPoolMapProgress.*", "ProcessPoolChunkResults.*"])]


# The tree as it was when the run started (see snapshot_tree): every scratch
# copy is made from it, so a run that lasts hours checks one tree, however the
# working tree changes meanwhile (a per-mutant scratch made an hour in used to
# copy whatever the developer had half-edited by then).
SNAP = None
TREE_PARTS = ("kernel", "models", "tools", "proofs", "tests", "fuzz", "examples", "Makefile")


def copy_tree_parts(src_root, dst, with_tests):
    for d in TREE_PARTS:
        src = os.path.join(src_root, d)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dst, d), symlinks=True)
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(dst, d))
    if with_tests:
        os.makedirs(os.path.join(dst, "build"), exist_ok=True)
        shutil.copytree(os.path.join(src_root, "build", "g++"), os.path.join(dst, "build", "g++"), symlinks=True)
        stamp = os.path.join(src_root, "build", ".deps-ok")
        if os.path.exists(stamp):
            shutil.copy2(stamp, os.path.join(dst, "build", ".deps-ok"))


def snapshot_tree(out_dir, with_tests, texts):
    """Copies the tree (and the g++ build the tests start from) once, and
    checks that the mutated files are still the ones the mutants were made
    from."""
    d = os.path.join(out_dir, "base")
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    copy_tree_parts(ROOT, d, with_tests)
    for path, text in texts.items():
        with open(os.path.join(d, path)) as f:
            if f.read() != text:
                sys.exit(f"mutate: {path} changed while the run started; start it again")
    return d


class Scratch:
    """A private copy of the tree that one worker mutates and restores."""

    def __init__(self, base, idx, with_tests, reuse=False):
        self.dir = os.path.join(base, f"scratch{idx}")  # idx: a number, or "schema"
        self.tests = with_tests
        self.bin = os.path.join(self.dir, "build", "mutate-models")
        if reuse and os.path.isdir(os.path.join(self.dir, "kernel")):
            return  # a previous run's copy (--reuse): its objects are up to date for unchanged files
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        copy_tree_parts(SNAP or ROOT, self.dir, with_tests)
        self.tests = with_tests
        self.bin = os.path.join(self.dir, "build", "mutate-models")
        os.makedirs(self.bin, exist_ok=True)


def run(cmd, cwd, timeout, env=None):
    """Runs cmd in a session of its own; returns (rc, output, seconds, timed
    out). Whatever is left in that session when cmd ends or times out is
    killed: a mutant can leave a forked child spinning after its test binary
    aborted (queue_ring.cpp:83 left two for an hour, each holding a core's
    share), and subprocess.run killed only cmd itself, and only on a timeout."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                         env=env, start_new_session=True)
    timed_out = False
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_session(p.pid)
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a process outside the session holds the pipe open
            p.kill()
            out = ""
    kill_session(p.pid)
    return (None if timed_out else p.returncode), out or "", time.time() - t0, timed_out


def kill_session(sid):
    """SIGKILLs every process of session sid (its leader's pid) still alive."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


# A test that failed by its own check (the watchdog's FAILED line for a hung
# test ends in "(timed out)" and is not one).
FAILED_RX = r"^\[\s*FAILED\s*\]\s+([\w/]+\.[\w/]+)(?=[\s,]|$)(?! \(timed out\))"


class Runner:
    def __init__(self, args, relevance, cxx, flags):
        self.args, self.rel, self.cxx, self.flags = args, relevance, cxx, flags
        self.model_run_limit = {}
        self.test_limit = {}
        self.cost = {}
        self.suites = {}
        self.test_make = None
        self.lock = threading.Lock()
        self.flakes = []  # (mutant id, tests that failed without the mutant too)

    def build_model(self, s, model, timeout):
        out = os.path.join(s.bin, os.path.basename(model)[:-4])
        # Explorers are native builds: KEEL_MUTANT_SEEN gives their schema switches the
        # evaluation record models have (harmless where no schema is compiled in).
        flags = self.flags[1] + ["-DKEEL_MUTANT_SEEN"] if model.endswith("_explore.cpp") else self.flags[0]
        cmd = [self.cxx] + flags + ["-I" + os.path.join(s.dir, "kernel", "include"),
                                         "-I" + os.path.join(s.dir, "models", "support"), os.path.join(s.dir, model), "-o", out]
        rc, log, secs, to = run(cmd, s.dir, timeout)
        return (out if rc == 0 else None), log, secs, to

    def run_model(self, binary, timeout, mutant=0, seen=False):
        env = dict(os.environ)
        env.pop("KEEL_MUTANT_SEEN", None)
        if seen:
            env["KEEL_MUTANT_SEEN"] = "1"
        env.pop("KEEL_INJECT", None)
        env.pop("KEEL_MODEL_PROGRESS", None)
        env.pop("KEEL_MUTANT", None)
        if mutant:
            env["KEEL_MUTANT"] = str(mutant)  # a schema binary's one mutant; the harness stops at its first failing row
        if os.path.basename(binary).endswith("_explore"):
            self.flags[2](env)
        rc, log, secs, to = run([binary], os.path.dirname(binary), timeout, env)
        rows = [line.split("|") for line in log.splitlines() if line.startswith("KEEL-CHECK|")]
        return rc, rows, log, secs, to

    def test_filter(self, layer, path=None):
        dirs, extra = TEST_LAYERS.get(layer, [layer]), TEST_EXTRA.get(layer, [])
        for rx, narrow_dirs, narrow_extra in TEST_NARROW:
            if path is not None and rx.search(path):
                dirs, extra = narrow_dirs, narrow_extra
        for rx, wider in TEST_WIDEN:
            if path is not None and rx.search(path):
                extra = extra + wider
        names = set()
        for d in dirs:
            names |= self.suites.get(d, set())
        # A TEST_P suite runs as <Instantiation>/<Suite>.<Test>: match both forms
        # (before, a value-parameterised suite never ran for any mutant).
        patterns = sorted(p for n in names for p in (n + ".*", "*/" + n + ".*"))
        return ":".join(patterns + extra)

    def build_tests(self, s, timeout):
        return run(self.test_make, s.dir, timeout)

    def run_tests(self, s, layer, timeout, mutant=0, only=None, path=None):
        env = dict(os.environ)
        env.setdefault("KEEL_TEST_TIMEOUT", str(self.args.test_timeout))
        # One RapidCheck seed for every run: a mutant's tests see the same
        # inputs as the baseline's, so a property that fails is the mutant's doing.
        env.setdefault("RC_PARAMS", "seed=1")
        env.pop("KEEL_MUTANT", None)
        if mutant:
            env["KEEL_MUTANT"] = str(mutant)
        # Not --gtest_brief: the [ RUN ] lines say which test a crash or the
        # layer's limit cut short (see culprits).
        cmd = [os.path.join(s.dir, "build", "g++", "keel_tests"),
               "--gtest_filter=" + (only or self.test_filter(layer, path))]
        return run(cmd, s.dir, timeout, env)

    @staticmethod
    def culprits(log):
        """The tests a run could not finish: those the watchdog timed out, and
        the one still running when the run ended (a crash, or the layer's limit)."""
        names = re.findall(r"^\[\s*TIMEOUT\s*\]\s+(\S+)", log, re.M)
        started = re.findall(r"^\[ RUN      \] (\S+)", log, re.M)
        ended = set(re.findall(r"^\[\s*(?:OK|FAILED|SKIPPED)\s*\] (\S+)", log, re.M))
        if started and started[-1] not in ended and started[-1] not in names:
            names.append(started[-1])
        return names

    def named_beyond(self, s, mut, mutant, log, limit):
        """A hang or a crash ends a test run before the tests after it: run
        the rest (without the tests that hung or crashed, up to three rounds)
        and return (the first test that fails by name, the tests left out), or
        None. A named check that catches the mutant is its verdict, as a model
        row is after an earlier model hung."""
        excluded = []
        for _ in range(3):
            more = [n for n in self.culprits(log) if n not in excluded]
            if not more:
                return None
            excluded += more
            only = self.test_filter(mut.layer, mut.path) + "-" + ":".join(excluded)
            rc, log, _, to = self.run_tests(s, mut.layer, limit, mutant, only)
            failed = re.findall(FAILED_RX, log, re.M)
            if failed:
                return failed[0], excluded
            if rc == 0 and not to:
                return None
        return None

    def judge_tests(self, s, mut, mutant=0):
        """Run the mutated layer's tests and set mut's outcome if they fail.
        Flaky-test guard: a test that fails is run again on the same binary with
        no mutant (schema) or on the baseline binary's verdict (per-mutant); if
        it fails there too the failure is a flake, not a kill, and the mutant's
        tests run once more. Returns True when the tests killed the mutant."""
        limit = self.test_limit.get(mut.layer, 300)
        for attempt in range(2):
            rc, log, secs, to = self.run_tests(s, mut.layer, limit, mutant, path=mut.path)
            mut.log = log
            timeouts = re.findall(r"^\[\s*TIMEOUT\s*\]\s+(\S+)", log, re.M)
            # A TEST_P case is named <Instantiation>/<Suite>.<Test>/<Param>: before
            # this matched only plain names, and a failing parameterised test read
            # as a crash (exit 1 with no failure named).
            # The watchdog ends its [  TIMEOUT ] report with a FAILED line for
            # the same test, marked "(timed out)": that one is the hang's, not
            # a failed check.
            failed = re.findall(FAILED_RX, log, re.M)
            # A test that failed by name before another hung is the named
            # check that caught the mutant: the hang is not the verdict.
            if failed:
                mut.outcome, mut.by = "killed-by-test", f"gtest:{failed[0]}"
            elif timeouts:
                mut.outcome, mut.by = "killed-by-hang", f"gtest:{timeouts[0]} (watchdog)"
            elif to:
                mut.outcome, mut.by = "killed-by-hang", f"tests of {mut.layer} (> {limit:.0f} s)"
            elif rc != 0:
                mut.outcome, mut.by = "killed-by-crash", f"tests of {mut.layer} (exit {rc})"
            else:
                return False
            if mut.outcome in ("killed-by-hang", "killed-by-crash") and mutant:
                beyond = self.named_beyond(s, mut, mutant, log, limit)
                if beyond:
                    failed = [beyond[0]]
                    mut.outcome = "killed-by-test"
                    mut.by = f"gtest:{beyond[0]} (with {', '.join(beyond[1])} left out: {mut.by})"
            names = failed or timeouts
            if not names or not mutant:
                return True
            # The same tests with no mutant on: do they pass?
            crc, clog, _, cto = self.run_tests(s, mut.layer, limit, 0, ":".join(sorted(set(names))))
            if crc == 0 and not cto:
                return True
            with self.lock:
                self.flakes.append((mut.id, ", ".join(sorted(set(names)))))
                print(f"flake: {mut.id}: {', '.join(sorted(set(names)))}", flush=True)
            mut.outcome, mut.by = None, ""
        mut.outcome, mut.by = "survived", "(tests flaky twice: no verdict)"
        return True

    def baseline_model(self, s, m):
        """Build and run one model on the unmutated copy: it must pass, and its
        run time sets the mutants' limit. Done the first time a mutant needs the
        model (most mutants fall to their first model, so most models are never
        built twice)."""
        with self.lock:
            if m in self.cost:
                return
            t0 = time.time()
            binary, log, _, _ = self.build_model(s, m, 900)
            if not binary:
                raise SystemExit(f"mutate: baseline build of {m} failed:\n{log[-3000:]}")
            rc, rows, log, secs, to = self.run_model(binary, 900)
            if rc != 0 or not rows or any(r[6] != "pass" for r in rows):
                raise SystemExit(f"mutate: baseline run of {m} failed (rc={rc}):\n{log[-3000:]}")
            self.model_run_limit[m] = max(30.0, 5 * secs + 10)
            self.cost[m] = time.time() - t0
            print(f"  baseline {m}: {len(rows)} rows pass, build+run {self.cost[m]:.0f} s", flush=True)

    def baseline(self, s, layers):
        """The test binary and each needed layer's tests on the unmutated copy."""
        if s.tests:
            self.suites = test_suites(s.dir)
            self.test_make = test_make_command(s.dir)
            rc, log, secs, to = self.build_tests(s, 3600)
            if rc != 0:
                sys.exit(f"mutate: baseline test build failed:\n{log[-3000:]}")
            if " -c " in log:
                print(f"  note: the baseline test build recompiled objects ({secs:.0f} s)", flush=True)
            for layer in layers:
                if not self.test_filter(layer):
                    continue
                rc, log, secs, to = self.run_tests(s, layer, 1800)
                if rc != 0:
                    sys.exit(f"mutate: baseline tests of layer {layer} fail:\n{log[-3000:]}")
                self.test_limit[layer] = max(60.0, 3 * secs + 30)
                print(f"  baseline tests {layer}: pass in {secs:.0f} s", flush=True)

    def check(self, s, mut, original):
        t0 = time.time()
        path = os.path.join(s.dir, mut.path)
        mutated = mut.apply(original)

        def write(text):
            with open(path, "w") as f:
                f.write(text)

        try:
            self._check(s, mut, lambda: write(original), lambda: write(mutated))
        finally:
            write(original)
            # The restored file must look older than nothing it feeds: touch it
            # so make rebuilds the objects the mutant left behind.
            os.utime(path, None)
        mut.seconds = time.time() - t0

    def _check(self, s, mut, restore, apply):
        built_any = False
        fallback = None  # a hang or crash: not a named check, so the others still run
        for m in self.rel.models_for(mut.path):
            if m not in self.cost:
                restore()
                self.baseline_model(s, m)
            apply()
            binary, log, _, to = self.build_model(s, m, self.args.build_timeout)
            if not binary:
                mut.log = log
                if to:
                    mut.outcome, mut.by = "build-failed", f"{m}: build timed out"
                    return
                continue  # the mutant may not compile in this model only (e.g. a model-only overload)
            built_any = True
            rc, rows, log, secs, to = self.run_model(binary, self.model_run_limit[m])
            mut.log = log
            failed = [r for r in rows if len(r) > 7 and r[6] != "pass"]
            name = model_stem(m)
            if failed:
                mut.outcome, mut.by, mut.detail = "killed-by-model", ("explore:" if m.endswith("_explore.cpp") else "relacy:") + failed[0][1], failed[0][7]
                return
            if to:
                fallback = fallback or ("killed-by-hang", f"{name} model (> {self.model_run_limit[m]:.0f} s)")
                continue
            if rc != 0:
                fallback = fallback or ("killed-by-crash", f"{name} model (exit {rc})")
                continue
        apply()
        if s.tests and self.test_filter(mut.layer):
            rc, log, secs, to = self.build_tests(s, self.args.build_timeout)
            if rc != 0:
                if not built_any:
                    mut.outcome, mut.by = "build-failed", "test build"
                    return
            else:
                built_any = True
                if self.judge_tests(s, mut):
                    if fallback and mut.outcome not in NAMED:
                        mut.outcome, mut.by = fallback  # the first hang or crash, not the tests' own
                    return
        if fallback:
            mut.outcome, mut.by = fallback
            return
        if not built_any:
            if not self.rel.models_for(mut.path) and not s.tests:
                mut.outcome, mut.by = "not-checked", "no model reaches the file and the test binary is absent"
            else:
                mut.outcome, mut.by = "build-failed", "no model or test build compiled it"
            return
        mut.outcome = "survived"


# ---------------------------------------------------------------- schemata
#
# Building every model and the test binary once per mutant is what made a full
# run cost a night. A mutant schema compiles many mutants into one binary: each
# mutant's text becomes a choice made at run time,
#     (KEEL_MUT(17) ? (mutated text) : (original text)),
# where KEEL_MUT(id) is true only in a process started with KEEL_MUTANT=id.
# With KEEL_MUTANT unset every choice takes the original text, so the schema
# binary is the shipped code plus branches that are never taken.
#
# A mutant's schema span is the smallest text that can be chosen as a whole
# expression: the mutated token itself for memory orders, wake counts, loop
# bounds and CAS/wake calls; both operands for a comparison; the receiver and
# call for a fetch_* or notify_all rewrite. A wait loop's `while (c)` becomes
#     for (int keel_mut_N = 0; (!KEEL_MUT(N) || keel_mut_N++ == 0) && (c);)
# which, with the mutant on, tests c once and runs the body at most once:
# exactly `if (c)` (bodies with break or continue are left to the per-mutant
# build, since for `if` those would bind to an outer loop). Spans of one group
# must nest or be disjoint; a nested mutant is rewritten inside the original
# branch of the span around it (the mutated branch never needs it: one mutant
# is on at a time). Spans that overlap partly go to the next group. A mutant
# whose schema does not compile (a case label, a constant expression) leaves
# the group and is checked the old way, one build per mutant.

SCHEMA_HEADER = "keel/keel_mutant_schema.hpp"
SCHEMA_HEADER_TEXT = """// Generated by tools/mutate.py in its scratch copy only: the switch of the
// mutant schemata. KEEL_MUTANT=<id> in the environment turns on one mutant.
#pragma once
#include <cstdlib>
#include <type_traits>
// A switch reached while the compiler evaluates a constant (a constexpr
// constructor of a constinit object: the task-block depot) reads as off
// there: `active` is known only at run time. Run-time calls of the same code
// still see the mutant.
namespace keel_mutant {
// Read once before main; 0 (also the value before this initializer ran) is no mutant.
inline const int active = [] {
  const char* s = std::getenv("KEEL_MUTANT");  // NOLINT(concurrency-mt-unsafe): before main
  return s != nullptr ? std::atoi(s) : 0;
}();
}  // namespace keel_mutant
#if defined(KEEL_MODEL_RELACY) || defined(KEEL_MUTANT_SEEN)
// Models (one process, deterministic): which switches a run evaluated. With
// KEEL_MUTANT_SEEN set, the ids are printed at exit; a mutant whose switch a
// clean run never evaluated cannot change that run.
#include <iostream>
namespace keel_mutant {
inline unsigned char seen[MAX_ID + 1];
inline bool on(int id) {
  seen[id] = 1;
  return active == id;
}
struct Report {
  ~Report() {
    if (std::getenv("KEEL_MUTANT_SEEN") == nullptr) return;  // NOLINT(concurrency-mt-unsafe): at exit
    std::cout << "KEEL-MUTANT-SEEN|";
    for (int i = 1; i <= MAX_ID; ++i)
      if (seen[i] != 0) std::cout << i << ' ';
    std::cout << std::endl;
  }
};
inline Report report;
}  // namespace keel_mutant
#define KEEL_MUT(id) (!std::is_constant_evaluated() && ::keel_mutant::on(id))
#else
#define KEEL_MUT(id) (!std::is_constant_evaluated() && ::keel_mutant::active == (id))
#endif
"""


_WORD = re.compile(r"[A-Za-z_]\w*")
_STOP_WORDS = {"return", "case", "co_return", "co_yield", "throw", "else", "do", "and", "or", "xor", "bitand", "bitor",
               "if", "while", "for", "switch", "const", "auto", "bool", "int"}


def _match_open(code, i):
    """Index of the bracket that opens the one closing at code[i] (or -1)."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    j = i
    while j >= 0:
        c = code[j]
        if c in pairs:
            stack.append(pairs[c])
        elif c in "([{":
            if not stack or stack.pop() != c:
                return -1
            if not stack:
                return j
        j -= 1
    return -1


def _match_angle(code, i, step):
    """Index of the '<' (step -1) or '>' (step 1) matching the angle bracket at code[i], or -1."""
    depth, j = 0, i
    while 0 <= j < len(code):
        c = code[j]
        if c in ";{}":
            return -1
        if c in "([" and step == 1:
            j = match_close(code, j)
            if j < 0:
                return -1
            continue
        if c in ")]" and step == -1:
            j = _match_open(code, j)
            if j < 0:
                return -1
            j -= 1
            continue
        if c == "<" and code[j - 1:j + 1] != "<<" and code[j:j + 2] != "<<":
            depth += 1 if step == 1 else -1
        elif c == ">" and code[j - 1] != "-" and code[j - 1:j + 1] != ">>" and code[j:j + 2] != ">>":
            depth += -1 if step == 1 else 1
        if depth == 0:
            return j
        j += step
    return -1


def _left_operand(code, op):
    """Start of the left operand of the relational operator at code[op], or None
    when it cannot be told safely (another relational operator, a template's '<')."""
    j = op  # code[j:op] is the operand read so far
    expect = "end"  # "end": the next token leftwards must end an operand; "op": the operand may be complete

    def skip(k):
        while k > 0 and code[k - 1].isspace():
            k -= 1
        return k

    while True:
        k = skip(j)
        if k == 0:
            return j if expect == "op" else None
        c, two = code[k - 1], code[max(0, k - 2):k]
        word_at = k
        while word_at > 0 and (code[word_at - 1].isalnum() or code[word_at - 1] == "_"):
            word_at -= 1
        word = code[word_at:k]
        if expect == "end":
            if code.startswith("::", j) and not word:
                return j  # a name qualified from the global namespace: ::write(...)
            if two in ("++", "--"):
                j = k - 2  # postfix: the operand ends before it
                continue
            if word:
                if word in _STOP_WORDS:
                    return None
                j, expect = word_at, "op"
            elif c in ")]":
                o = _match_open(code, k - 1)
                if o < 0:
                    return None
                j, expect = o, "op"
            elif c == ">" and two not in ("->", ">>"):
                o = _match_angle(code, k - 1, -1)
                if o < 0:
                    return None
                j, expect = o, "end"  # template arguments: their name comes before them
            else:
                return None
            continue
        if word:
            # A name right before a group is a call; any other word (a keyword, a
            # type in a declaration) ends the operand.
            if code[j] in "([" and word not in _STOP_WORDS:
                j, expect = word_at, "op"
                continue
            return j
        if c in ")]":
            o = _match_open(code, k - 1)  # a cast or a call through an expression
            if o < 0:
                return None
            j, expect = o, "op"
        elif c == "." or two in ("->", "::"):
            j, expect = k - (1 if c == "." else 2), "end"
        elif c == ">" and two not in (">>",):
            o = _match_angle(code, k - 1, -1)
            if o < 0:
                return None
            j, expect = o, "end"
        elif two in ("++", "--"):
            j = k - 2
        elif c in "+-*/%" and two not in ("->",):
            b = skip(k - 1)
            if b > 0 and (code[b - 1].isalnum() or code[b - 1] in "_)]"):
                j, expect = k - 1, "end"  # binary: binds tighter than <
            else:
                j = k - 1  # unary
        elif c in "!~":
            j = k - 1
        elif c == "&" and two != "&&":
            b = skip(k - 1)
            if b > 0 and (code[b - 1].isalnum() or code[b - 1] in "_)]"):
                return j  # binary &: looser than <
            j = k - 1
        elif two == "<<":
            j, expect = k - 2, "end"
        elif c in "<>" or two in ("<=", ">="):
            return None
        else:
            return j


def _right_operand(code, op_end):
    """End (exclusive) of the right operand starting after code[op_end - 1], or None."""
    j = op_end
    n = len(code)
    state = "need"
    end = None
    while True:
        while j < n and code[j].isspace():
            j += 1
        if j >= n:
            return None
        c = code[j]
        two = code[j:j + 2]
        if state == "need":
            if c.isalnum() or c == "_":
                m = _WORD.match(code, j) or re.compile(r"[\w.']+").match(code, j)
                word = m.group(0)
                if word in _STOP_WORDS:
                    return None
                j = m.end()
                if word in ("sizeof", "alignof", "not", "co_await"):
                    continue
                if code.startswith("<", j) and not code.startswith("<<", j) and word.isidentifier():
                    e = _match_angle(code, j, 1)
                    if e < 0:
                        return None
                    j = e + 1
                state, end = "have", j
            elif c in "([":
                e = match_close(code, j)
                if e < 0:
                    return None
                j, state, end = e, "have", e
            elif two in ("++", "--") or c in "!~-+*&":
                j += 2 if two in ("++", "--") else 1
            else:
                return None
        else:  # have an operand: postfix parts continue it, looser operators end it
            if c in "([":
                e = match_close(code, j)
                if e < 0:
                    return None
                j = end = e
            elif c == "{" and (code[j - 1].isalnum() or code[j - 1] == "_"):
                e = match_close(code, j)
                if e < 0:
                    return None
                j = end = e
            elif c == "." or two == "->" or two == "::":
                j += 1 if c == "." else 2
                state = "need"
            elif two in ("++", "--"):
                j = end = j + 2
            elif two in ("<<", ">>") and code[j + 2:j + 3] != "=":
                j += 2
                state = "need"
            elif c in "+-*/%" and code[j + 1:j + 2] != "=":
                j += 1
                state = "need"
            elif c in "<>" or two == "<=" or two == ">=":
                return None  # another relational operator: which one binds is not ours to guess
            else:
                return end


def _case_label(code, a):
    ls = code.rfind("\n", 0, a) + 1
    return re.search(r"\bcase\s*$", code[ls:a]) is not None


def _escapes(code, a, b):
    """Whether code[a:b] (a loop body) has a break or continue that belongs to
    the loop itself, not to a loop or switch nested in it."""
    shields = []  # (start, end, shields_continue)
    for n in re.finditer(r"\b(for|while|switch|do)\b", code[a:b]):
        s = a + n.start()
        j = s + len(n.group(1))
        while j < b and code[j].isspace():
            j += 1
        if n.group(1) != "do" and j < b and code[j] == "(":
            j = match_close(code, j)
            while j < b and code[j].isspace():
                j += 1
        if j < 0 or j >= b:
            continue
        e = match_close(code, j) if code[j] == "{" else code.find(";", j) + 1
        shields.append((s, e, n.group(1) != "switch"))
    for n in re.finditer(r"\b(break|continue)\b", code[a:b]):
        p = a + n.start()
        if not any(s <= p < e and (cont or n.group(1) == "break") for s, e, cont in shields):
            return True
    return False


def schema_span(text, code, m):
    """(start, end, kind, inner) for mutant m, or (None, reason). kind 'expr':
    text[start:end] is replaced by a choice between the mutated and the original
    span; kind 'while': m.start..end is `while (cond)`, inner = (a, b) the
    condition's extent."""
    if m.op == "mo-weaken":
        if _case_label(code, m.start):
            return None, "a case label (constant expression)"
        return (m.start, m.end, "expr", None), ""
    if m.op in ("wake-drop",):
        return (m.start, m.end, "void", None), ""
    if m.op == "wake-reduce":
        if m.repl == "notify(1)":
            i = m.start - 1 if code[m.start - 1] == "." else m.start - 2
            return (receiver_start(code, i), m.end, "expr", None), ""
        return (m.start, m.end, "expr", None), ""
    if m.op in ("cas-blind", "loop-bound"):
        return (m.start, m.end, "expr", None), ""
    if m.op == "store-blind":
        i = m.start - 1 if code[m.start - 1] == "." else m.start - 2
        paren = code.find("(", m.end)
        close = match_close(code, paren) if paren >= 0 and not code[m.end:paren].strip() else -1
        if close < 0:
            return None, "call not found"
        return (receiver_start(code, i), close, "expr", None), ""
    if m.op == "cmp-off":
        a = _left_operand(code, m.start)
        b = _right_operand(code, m.end)
        if a is None or b is None or a >= m.start or b <= m.end:
            return None, "operands not delimited"
        return (a, b, "expr", None), ""
    if m.op == "recheck-drop":
        if m.repl == "false":
            return (m.start, m.end, "expr", None), ""
        # The schema's loop of one turn (render_schema) is the mutant's
        # `if`, and its `for` of one turn where the body breaks or continues.
        paren = code.find("(", m.start + len("while"))
        close = match_close(code, paren)
        return (m.start, close, "while", (paren + 1, close - 1)), ""
    return None, f"no schema for {m.op}"


def _nests(x, y):
    """Two spans may share a group: disjoint, or one inside the other (a while's
    children must sit inside its condition)."""
    (a1, b1, k1, in1), (a2, b2, k2, in2) = x, y
    if b1 <= a2 or b2 <= a1:
        return True
    if a1 <= a2 and b2 <= b1 and (a1, b1) != (a2, b2):
        return k1 != "while" or (in1[0] <= a2 and b2 <= in1[1])
    if a2 <= a1 and b1 <= b2 and (a1, b1) != (a2, b2):
        return k2 != "while" or (in2[0] <= a1 and b1 <= in2[1])
    # The same span: alternatives chain (a ? x : b ? y : orig); a while never shares.
    return k1 != "while" and k2 != "while"


def render_schema(text, entries):
    """The text with every entry's schema applied. entries: (id, mutant, span)
    with nesting or disjoint spans."""
    # Outer spans first; among equal spans the earlier mutant is outside.
    order = sorted(entries, key=lambda e: (e[2][0], -e[2][1], e[0]))

    def render(lo, hi, items):
        out, pos, i = [], lo, 0
        while i < len(items):
            mid, m, (a, b, kind, inner) = items[i]
            kids = []
            j = i + 1
            while j < len(items) and items[j][2][0] < b:
                kids.append(items[j])
                j += 1
            out.append(text[pos:a])
            mutated = _flat(text, a, m.start) + m.repl + _flat(text, m.end, b)
            if kind == "while":
                cond = render(inner[0], inner[1], kids)
                out.append(f"for (int keel_mut_{mid} = 0; (!KEEL_MUT({mid}) || keel_mut_{mid}++ == 0) && ({cond});)")
            else:
                orig = render(a, b, kids)
                if kind == "void":
                    out.append(f"(KEEL_MUT({mid}) ? (void)({mutated}) : (void)({orig}))")
                else:
                    out.append(f"(KEEL_MUT({mid}) ? ({mutated}) : ({orig}))")
            pos, i = b, j
        out.append(text[pos:hi])
        return "".join(out)

    body = render(0, len(text), order)
    # The switch header first; #line keeps every later line's number (and so
    # the file:line in model histories and test failures) as in the real tree.
    return f"#include <{SCHEMA_HEADER}>\n#line 1\n" + body


def scan_code(text):
    """The text with comments and preprocessor lines blanked and every string or
    character literal turned into a run of '_' (an operand, for the scanners)."""
    mask = code_mask(text)
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        if mask[i]:
            i += 1
            continue
        j = i
        while j < n and not mask[j]:
            j += 1
        lit = text[i] in "'\"" or (text[i] == "R" and text[i + 1:i + 2] == '"')
        for k in range(i, j):
            if text[k] != "\n":
                out[k] = "_" if lit else " "
        i = j
    return "".join(out)


def plan_schemata(muts, texts, ids):
    """Per mutant: its group (1, 2, ...) and span, or the reason it has no
    schema. Returns ({id(m): (group, span)}, {id(m): reason})."""
    placed, fallback = {}, {}
    by_file = {}
    for m in muts:
        by_file.setdefault(m.path, []).append(m)
    for path, ms in by_file.items():
        text = texts[path]
        code = scan_code(text)
        groups = []
        for m in sorted(ms, key=lambda m: ids[m.id]):
            span, why = schema_span(text, code, m)
            if span is None:
                fallback[id(m)] = why
                continue
            for gi, g in enumerate(groups):
                if all(_nests(span, s) for s in g):
                    g.append(span)
                    placed[id(m)] = (gi + 1, span)
                    break
            else:
                groups.append([span])
                placed[id(m)] = (len(groups), span)
    return placed, fallback


def _flat(text, a, b):
    """text[a:b] on one line, comments blanked: the copy a schema adds must not
    add lines (every later line keeps its number) or let a // comment swallow code."""
    seg = text[a:b]
    out = []
    for c, s in zip(seg, scan_code(seg)):
        out.append(" " if c == "\n" or (s == " " and not c.isspace()) else c)
    return "".join(out)


class SchemaBuild:
    """One scratch copy of the tree with every schema of a group applied, its
    models and test binary built once, and the runs of each mutant against them."""

    def __init__(self, out_dir, runner, with_tests, texts, ids, entries, reuse=False):
        self.runner, self.texts, self.ids = runner, texts, ids
        self.entries = dict(entries)  # id(m) -> (mid, m, span)
        self.evicted = {}  # id(m) -> reason
        self.s = Scratch(out_dir, "schema", with_tests, reuse)
        self.binaries = {}
        self.reach = {}  # binary key (a model, or "tests") -> the mutant ids compiled into it
        self.write(os.path.join("kernel", "include", SCHEMA_HEADER),
                   SCHEMA_HEADER_TEXT.replace("MAX_ID", str(max(ids.values()))))
        self.write_all()

    def write(self, path, text):
        # Unchanged files keep their date: a reused scratch copy rebuilds only what changed.
        full = os.path.join(self.s.dir, path)
        if os.path.exists(full):
            with open(full) as f:
                if f.read() == text:
                    return
        with open(full, "w") as f:
            f.write(text)

    def write_file(self, path):
        es = [e for e in self.entries.values() if e[1].path == path]
        text = self.texts[path]
        self.write(path, render_schema(text, es) if es else text)

    def scan_reach(self, key, cmds):
        """Which mutants' switches survive the preprocessor in the sources of
        one binary (cmds: the compile commands with -E). A mutant whose switch is
        in none of them (code under #if for the other backend) cannot change
        that binary, so its run there would only repeat the baseline."""
        ids = set()
        for cmd in cmds:
            rc, out, _, _ = run(cmd, self.s.dir, 600)
            if rc != 0:
                return  # unknown: run everything
            ids |= {int(x) for x in re.findall(r"::keel_mutant::(?:active == \(|on\()(\d+)\)", out)}
        self.reach[key] = ids

    def write_all(self):
        for path in sorted({e[1].path for e in self.entries.values()}):
            self.write_file(path)

    def evict_for(self, log):
        """Move the mutants whose schema the compiler rejected out of the group;
        returns the files rewritten (empty: the errors are not the schemata's)."""
        touched = set()
        prefix = self.s.dir.rstrip("/") + "/"
        # Only the first error: later ones are often its echoes (a broken
        # declaration makes every use of it an error), and evicting for them
        # would take out sound schemata. An error inside KEEL_MUT is reported at
        # the macro's definition; the note that follows names the real line.
        lines = log.splitlines()
        first = None
        for i, ln in enumerate(lines):
            e = re.match(r"^(\S+?):(\d+):\d+: error:", ln)
            if not e:
                continue
            first = (e.group(1), e.group(2))
            if e.group(1).endswith(SCHEMA_HEADER):
                for ln2 in lines[i + 1:i + 40]:
                    n = re.match(r"^(\S+?):(\d+):\d+: note: in expansion of macro", ln2)
                    if n:
                        first = (n.group(1), n.group(2))
                        break
            break
        for f, line in [first] if first else []:
            f = os.path.normpath(f if os.path.isabs(f) else os.path.join(self.s.dir, f))
            if not f.startswith(prefix):
                continue
            path = f[len(prefix):]
            line = int(line)
            mine = [k for k, e in self.entries.items() if e[1].path == path]
            text = self.texts.get(path)
            if not mine or text is None:
                continue
            hit = [k for k in mine if text.count("\n", 0, self.entries[k][2][0]) + 1 <= line <=
                   text.count("\n", 0, self.entries[k][2][1]) + 1]
            for k in hit or mine:
                self.evicted[k] = f"schema does not compile ({path}:{line})"
                del self.entries[k]
            touched.add(path)
        for path in touched:
            self.write_file(path)
        return touched

    def build_model(self, model, timeout):
        """Build one model, evicting mutants until it compiles. A binary built
        before an eviction stays valid: an evicted mutant's schema is simply
        never switched on in it."""
        for _ in range(20):
            binary, log, secs, to = self.runner.build_model(self.s, model, timeout)
            if binary:
                self.binaries[model] = binary
                return binary, secs
            if to or not self.evict_for(log):
                raise SystemExit(f"mutate: schema build of {model} failed:\n{log[-3000:]}")
        raise SystemExit(f"mutate: schema build of {model} kept failing")

    def build_tests(self, timeout):
        for _ in range(20):
            rc, log, secs, to = self.runner.build_tests(self.s, timeout)
            if rc == 0:
                return secs
            if to or not self.evict_for(log):
                raise SystemExit(f"mutate: schema build of the test binary failed:\n{log[-3000:]}")
        raise SystemExit("mutate: schema build of the test binary kept failing")


def schema_baseline(runner, sb, models, layers):
    """Build the schema copy's models and test binary once, and check that with
    no mutant on they pass exactly as the shipped code must: every model row,
    and each needed layer's tests. Sets the per-model and per-layer limits."""
    cxx = runner.cxx
    for m in models:
        t0 = time.time()
        binary, bsecs = sb.build_model(m, 1800)
        flags = runner.flags[1] + ["-DKEEL_MUTANT_SEEN"] if m.endswith("_explore.cpp") else runner.flags[0]
        sb.scan_reach(m, [[cxx] + flags + ["-I" + os.path.join(sb.s.dir, "kernel", "include"),
                                           "-I" + os.path.join(sb.s.dir, "models", "support"), "-E",
                                           os.path.join(sb.s.dir, m)]])
        rc, rows, log, secs, to = runner.run_model(binary, 1800, seen=True)
        if rc != 0 or not rows or any(r[6] != "pass" for r in rows):
            raise SystemExit(f"mutate: schema baseline of {m} (no mutant on) failed (rc={rc}):\n{log[-3000:]}")
        seen = re.findall(r"^KEEL-MUTANT-SEEN\|(.*)$", log, re.M)
        if seen and m in sb.reach:
            # A model is one deterministic process: a switch its clean run never
            # evaluated is one no run of it can reach.
            sb.reach[m] &= {int(x) for x in seen[-1].split()}
        runner.model_run_limit[m] = max(30.0, 5 * secs + 10)
        runner.cost[m] = time.time() - t0
        print(f"  schema baseline {m}: {len(rows)} rows pass; build {bsecs:.0f} s, run {secs:.1f} s", flush=True)
    if sb.s.tests:
        runner.suites = test_suites(sb.s.dir)
        runner.test_make = test_make_command(sb.s.dir, runner.args.jobs)
        secs = sb.build_tests(7200)
        print(f"  schema build of the test binary: {secs:.0f} s", flush=True)
        srcs = sorted(glob.glob(os.path.join(sb.s.dir, "kernel", "src", "*", "*.cpp")) +
                      glob.glob(os.path.join(sb.s.dir, "tests", "*", "*.cpp")) + glob.glob(os.path.join(sb.s.dir, "fuzz", "*.cpp")) +
                      [os.path.join(sb.s.dir, "tests", "main.cpp")])
        # The MPI half and the programs the ClusterMpi tests run under mpirun.
        mpi_srcs = sorted(glob.glob(os.path.join(sb.s.dir, "kernel", "src", "cluster", "mpi", "*.cpp")) +
                          glob.glob(os.path.join(sb.s.dir, "tests", "cluster", "mpi", "*.cpp")) +
                          [os.path.join(sb.s.dir, "examples", "cluster.cpp")])
        try:
            mpi_flags = subprocess.run(["mpicxx", "--showme:compile"], capture_output=True, text=True).stdout.split()
        except OSError:  # no Open MPI (make deps installs it): those sources are then unscanned, as before
            mpi_flags, mpi_srcs = [], []
        sb.scan_reach("tests", [["g++", "-std=c++20", "-E", "-I" + os.path.join(sb.s.dir, "kernel", "include"),
                                 "-I" + sb.s.dir, "-DKEEL_SOURCE_DIR=\"x\"", f] for f in srcs] +
                      [["g++", "-std=c++20", "-E", "-I" + os.path.join(sb.s.dir, "kernel", "include"), "-I" + sb.s.dir]
                       + mpi_flags + [f] for f in mpi_srcs if os.path.exists(f)])
        print(f"  {len(sb.reach.get('tests', ()))} mutant switches compiled into the test binary", flush=True)
        for layer in layers:
            if not runner.test_filter(layer):
                continue
            rc, log, secs, to = runner.run_tests(sb.s, layer, 1800)
            if rc != 0:
                raise SystemExit(f"mutate: schema baseline tests of layer {layer} (no mutant on) fail:\n{log[-3000:]}")
            runner.test_limit[layer] = max(60.0, 3 * secs + 30)
            print(f"  schema baseline tests {layer}: pass in {secs:.1f} s", flush=True)


def check_schema(runner, sb, mut, mid):
    """One mutant of a schema build: its models, then its layer's tests, each
    run with KEEL_MUTANT=mid; stops at the first kill."""
    t0 = time.time()
    try:
        ran = False
        fallback = None  # a hang or crash: not a named check, so the others still run
        for m in runner.rel.models_for(mut.path):
            binary = sb.binaries.get(m)
            if binary is None:
                continue
            ran = True
            if m in sb.reach and mid not in sb.reach[m]:
                continue  # not compiled into this model: its run is the baseline's, which passed
            rc, rows, log, secs, to = runner.run_model(binary, runner.model_run_limit[m], mid)
            mut.log = log
            failed = [r for r in rows if len(r) > 7 and r[6] != "pass"]
            if failed:
                mut.outcome, mut.by, mut.detail = "killed-by-model", ("explore:" if m.endswith("_explore.cpp") else
                                                                      "relacy:") + failed[0][1], failed[0][7]
                return
            if to:
                fallback = fallback or ("killed-by-hang", f"{model_stem(m)} model (> {runner.model_run_limit[m]:.0f} s)")
                continue
            if rc != 0:
                fallback = fallback or ("killed-by-crash", f"{model_stem(m)} model (exit {rc})")
                continue
        if sb.s.tests and runner.test_filter(mut.layer):
            ran = True
            if "tests" in sb.reach and mid not in sb.reach["tests"]:
                mut.outcome, mut.by = fallback or ("survived", "")  # its tests are the baseline's
                return
            if runner.judge_tests(sb.s, mut, mid):
                if fallback and mut.outcome not in NAMED:
                    mut.outcome, mut.by = fallback  # the first hang or crash, not the tests' own
                return
        if fallback:
            mut.outcome, mut.by = fallback
            return
        if not ran:
            mut.outcome, mut.by = "not-checked", "no model reaches the file and the test binary is absent"
            return
        mut.outcome = "survived"
    finally:
        mut.seconds = time.time() - t0


def test_make_command(scratch_dir, jobs=1):
    """make for the scratch copy's test binary, with -Wno-error: a mutant may
    leave a variable unused. The flags stamp is rewritten to match and dated
    back, so the flag alone rebuilds nothing. The ClusterMpi tests start
    keel_mpi_scenarios and the cluster example under mpirun: they are built
    from the schema too, so a mutant of the cluster layer (mpi/mpi.cpp is
    reached only there) runs in every rank, which inherit KEEL_MUTANT from
    mpirun as local processes do."""
    # KERNEL_UNITY=0: one object per kernel file, so a mutant built on its
    # own (one outside the schema) rebuilds its file, not its directory.
    cmd = ["make", f"-j{max(1, jobs)}", "--no-print-directory", "KERNEL_UNITY=0", "build/g++/keel_tests",
           "build/g++/keel_mpi_scenarios", "build/g++/examples/cluster"]
    stamp = os.path.join(scratch_dir, "build", "g++", ".flags")
    if os.path.exists(stamp):
        with open(stamp) as f:
            flags = f.read().rstrip("\n")
        m = re.search(r"-Werror (.*?) -pthread", flags)
        if m:
            # A kept copy's stamp already carries -Wno-error: do not add it twice
            # (a new flag string would rebuild every object).
            opt = re.sub(r"\s*-Wno-error\b", "", m.group(1))
            flags = flags.replace(m.group(1), opt)
            cmd.append(f"OPT={opt} -Wno-error")
            old = os.path.getmtime(stamp)
            with open(stamp, "w") as f:
                f.write(flags.replace(f" {opt} ", f" {opt} -Wno-error ", 1) + "\n")
            os.utime(stamp, (old, old))
    return cmd


# ---------------------------------------------------------------- report

KILLED = ("killed-by-model", "killed-by-test", "killed-by-hang", "killed-by-crash")
NAMED = ("killed-by-model", "killed-by-test")


def read_equivalent(root):
    eq = {}
    p = os.path.join(root, "proofs", "mutate-equivalent.txt")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    mid, _, reason = line.partition(" ")
                    eq[mid] = reason.strip()
    return eq


def remap_equivalent(rev):
    """Rewrites the line numbers of proofs/mutate-equivalent.txt's ids for
    lines that are unchanged since rev but moved: each id's line is looked up
    in the line map of difflib's equal blocks between the file at rev and the
    file now. An id whose line was edited (or whose file is gone) is left as
    it is and named: its mutant may be another one now, to be re-checked."""
    path = os.path.join(ROOT, "proofs", "mutate-equivalent.txt")
    with open(path) as f:
        lines = f.read().split("\n")
    maps, moved, left = {}, 0, []
    for i, line in enumerate(lines):
        m = re.match(r"([^\s#:][^\s:]*):(\d+):(\S+)(.*)", line)
        if not m:
            continue
        name, old_line, rest = m.group(1), int(m.group(2)), m.group(3) + m.group(4)
        if name not in maps:
            then = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{name}"], capture_output=True, text=True)
            try:
                with open(os.path.join(ROOT, name)) as f:
                    now = f.read().split("\n")
            except OSError:
                now = None
            table = {}
            if then.returncode == 0 and now is not None:
                matcher = difflib.SequenceMatcher(None, then.stdout.split("\n"), now, autojunk=False)
                for tag, a0, a1, b0, _ in matcher.get_opcodes():
                    if tag == "equal":
                        table.update((a0 + k + 1, b0 + k + 1) for k in range(a1 - a0))
            maps[name] = table
        new_line = maps[name].get(old_line)
        if new_line is None:
            left.append(f"{name}:{old_line}:{rest.split()[0]}")
        elif new_line != old_line:
            lines[i] = f"{name}:{new_line}:{rest}"
            moved += 1
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"mutate: {moved} equivalent id(s) moved with their lines since {rev}")
    for m in left:
        print(f"mutate: {m}: its line changed since {rev} (or its file is gone): re-check it by hand")
    return 1 if left else 0


def report(muts, texts, meta, flakes=(), per_mutant=()):
    counted = [m for m in muts if m.outcome not in ("build-failed", "equivalent", "not-checked")]
    named = [m for m in counted if m.outcome in ("killed-by-model", "killed-by-test")]
    killed = [m for m in counted if m.outcome in KILLED]
    L = []
    L.append("# keel mutation report\n")
    for k, v in meta:
        L.append(f"- {k}: {v}")
    L.append("")
    pct = lambda a, b: f"{100.0 * a / b:.1f}%" if b else "n/a"
    L.append(f"**Score: {len(named)}/{len(counted)} non-equivalent mutants killed by a named check "
             f"({pct(len(named), len(counted))})**; {len(killed)}/{len(counted)} killed in any way "
             f"({pct(len(killed), len(counted))}).\n")
    by = {}
    for m in muts:
        by[m.outcome] = by.get(m.outcome, 0) + 1
    L.append("| outcome | mutants |\n|---|---|")
    for o in KILLED + ("survived", "equivalent", "build-failed", "not-checked"):
        L.append(f"| {o} | {by.get(o, 0)} |")
    L.append("")
    L.append("## Kill table (killed by a named check / counted mutants)\n")
    ops = [o for o in OPS if any(m.op == o for m in muts)]
    layers = [l for l in LAYERS if any(m.layer == l for m in muts)]
    L.append("| layer | " + " | ".join(ops) + " | all |")
    L.append("|---|" + "---|" * (len(ops) + 1))
    for l in layers + ["all"]:
        cells = []
        for o in ops + ["all"]:
            c = [m for m in counted if (l == "all" or m.layer == l) and (o == "all" or m.op == o)]
            k = [m for m in c if m.outcome in ("killed-by-model", "killed-by-test")]
            cells.append(f"{len(k)}/{len(c)}" if c else "-")
        L.append(f"| {l} | " + " | ".join(cells) + " |")
    L.append("")
    surv = [m for m in muts if m.outcome == "survived"]
    L.append(f"## Survivors ({len(surv)})\n")
    for m in surv:
        L.append(f"- `{m.id}`\n\n  ```diff\n  " + m.diff(texts[m.path]).replace("\n", "\n  ") + "\n  ```")
    if not surv:
        L.append("none")
    L.append("")
    other = [m for m in muts if m.outcome in ("killed-by-hang", "killed-by-crash")]
    if other:
        L.append(f"## Killed only by a hang or a crash ({len(other)})\n")
        for m in other:
            L.append(f"- `{m.id}` {m.outcome}: {m.by}\n\n  ```diff\n  " + m.diff(texts[m.path]).replace("\n", "\n  ") +
                     "\n  ```")
        L.append("")
    L.append(f"## Flaky tests ({len(flakes)})\n")
    L.append("A test that failed under a mutant and again with no mutant on (same binary) is a flake, not a kill; "
             "the mutant's tests were run again.\n")
    for mid, names in flakes:
        L.append(f"- `{mid}`: {names}")
    if not flakes:
        L.append("none")
    L.append("")
    if per_mutant:
        L.append(f"## Built one by one ({len(per_mutant)})\n")
        L.append("Mutants with no schema that compiles, checked with a build of their own:\n")
        for m, why in per_mutant:
            L.append(f"- `{m.id}` {m.outcome}: {why}")
        L.append("")
    L.append("## Every mutant\n")
    L.append("| mutant | outcome | by | seconds | diff |\n|---|---|---|---|---|")
    for m in muts:
        d = m.diff(texts[m.path]).split("\n")[1][2:].replace("|", "\\|")
        by_ = (m.by + (f" ({m.detail})" if m.detail else "")).replace("|", "\\|")
        L.append(f"| `{m.id}` | {m.outcome} | {by_} | {m.seconds:.0f} | `{d}` |")
    return "\n".join(L) + "\n", len(named), len(counted)


def report_from_log(args, muts, texts, total):
    """The report of a stopped run: the verdicts its output printed, one
    `[k/n] <id>: <outcome> <by> (<s> s)` line per mutant; mutants it never
    reached are left out, and the header says so."""
    with open(args.report_from) as f:
        log = f.read()
    got = {}
    for mid, outcome, by, secs in re.findall(r"^\[\d+/\d+\] (\S+): (\S+) ?(.*?) \((\d+) s\)$", log, re.M):
        got[mid] = (outcome, by, float(secs))
    equivalent = read_equivalent(ROOT)
    ran = []
    for m in muts:
        if m.id in equivalent:
            m.outcome, m.by = "equivalent", equivalent[m.id]
            ran.append(m)
        elif m.id in got:
            m.outcome, m.by, m.seconds = got[m.id]
            ran.append(m)
    flakes = re.findall(r"^flake: (\S+): (.*)$", log, re.M)
    head = re.findall(r"^(keel mutate: .*|schema group .*|  schema .*|  \d+ mutant switches .*)$", log, re.M)
    meta = [("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(args.report_from)))),
            ("run", f"PARTIAL, not a full run: {len(ran)} of {total} mutants have a verdict (the run was stopped; "
                    "mutants are run in --list order, so the rest are the later files)"),
            ("machine", f"Linux {pyplatform.machine()}, {os.cpu_count()} CPUs"),
            ("method", "mutant schemata (see proofs/README.md); the verdicts are the run's own output lines"),
            ("run log", "".join("\n  - " + h.strip() for h in head))]
    text, killed, counted = report(ran, texts, meta, flakes)
    path = os.path.join(ROOT, "build", "mutate", "report.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if args.publish:
        with open(os.path.join(ROOT, "proofs", "mutation-report.md"), "w") as f:
            f.write(text)
    print(f"score: {killed}/{counted} killed by a named check over {len(ran)} mutants with a verdict; report: "
          f"{os.path.relpath(path, ROOT)}")
    return 0


def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", type=int, default=int(env("MUTATE_SAMPLE") or 0))
    ap.add_argument("--seed", type=int, default=int(env("MUTATE_SEED") or 1))
    ap.add_argument("--jobs", type=int, default=int(env("MUTATE_JOBS") or 1))
    ap.add_argument("--filter", default=env("MUTATE_FILTER") or "")
    ap.add_argument("--ops", default=env("MUTATE_OPS") or "")
    ap.add_argument("--ids", default=env("MUTATE_IDS") or "", help="regex on mutant ids (re-check chosen mutants)")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--check-equivalent", action="store_true",
                    help="exit 1 if proofs/mutate-equivalent.txt names a mutant this tree does not have (make lint)")
    ap.add_argument("--remap-equivalent", metavar="REV",
                    help="move the ids in proofs/mutate-equivalent.txt of lines that only moved since REV (a commit "
                         "where they were right) to where those lines are now; entries of changed lines are left "
                         "for --check-equivalent to name")
    ap.add_argument("--publish", action="store_true", help="also write proofs/mutation-report.md")
    ap.add_argument("--no-tests", action="store_true", help="run the models only")
    ap.add_argument("--per-mutant", action="store_true",
                    help="build each mutant on its own (the slow way, no schemata): to cross-check a schema verdict")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies under build/mutate/")
    ap.add_argument("--report-from", metavar="LOG",
                    help="write the report of a run that was stopped, from the [k/n] lines of its output; "
                         "with --publish, to proofs/ too (its header says how many mutants ran)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a kept schema copy (build/mutate/scratchschema): only files that changed rebuild")
    ap.add_argument("--build-timeout", type=float, default=600)
    ap.add_argument("--test-timeout", type=int, default=int(env("KEEL_TEST_TIMEOUT") or 60))
    args = ap.parse_args()
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in ops if o not in OPS]
    if bad:
        sys.exit(f"mutate: unknown operator(s) {bad}; known: {', '.join(OPS)}")
    if args.remap_equivalent:
        return remap_equivalent(args.remap_equivalent)
    if args.check_equivalent:
        # Ids carry line numbers: an edit above a listed mutant moves it, and
        # the entry would silently stop matching (or match another mutant).
        known = {m.id for m in all_mutants(ROOT)}
        stale = sorted(set(read_equivalent(ROOT)) - known)
        for m in stale:
            print(f"mutate: proofs/mutate-equivalent.txt lists {m}, which is no mutant of this tree "
                  f"(re-check it with --list --filter; if only its line moved, --remap-equivalent <rev>)",
                  file=sys.stderr)
        return 1 if stale else 0
    filt = re.compile(args.filter) if args.filter else None
    muts = all_mutants(ROOT, filt, ops)
    if args.ids:
        muts = [m for m in muts if re.search(args.ids, m.id)]
    total = len(muts)
    if args.sample and args.sample < total:
        chosen = set(id(m) for m in random.Random(args.seed).sample(muts, args.sample))
        muts = [m for m in muts if id(m) in chosen]
    texts = {}
    for m in muts:
        if m.path not in texts:
            with open(os.path.join(ROOT, m.path)) as f:
                texts[m.path] = f.read()
    if args.list:
        for m in muts:
            print(m.id)
            print("  " + m.diff(texts[m.path]).replace("\n", "\n  "))
        print(f"{len(muts)} of {total} mutants", file=sys.stderr)
        return 0

    if args.report_from:
        return report_from_log(args, muts, texts, total)
    t_start = time.time()
    out_dir = os.path.join(ROOT, "build", "mutate")
    os.makedirs(out_dir, exist_ok=True)
    with_tests = not args.no_tests and os.path.exists(os.path.join(ROOT, "build", "g++", "keel_tests"))
    global SNAP
    SNAP = snapshot_tree(out_dir, with_tests, texts)
    equivalent = read_equivalent(ROOT)
    known = {m.id for m in all_mutants(ROOT)}
    for stale in sorted(set(equivalent) - known):
        print(f"mutate: warning: proofs/mutate-equivalent.txt lists {stale}, which is no mutant of this tree", flush=True)
    todo = []
    for m in muts:
        if m.id in equivalent:
            m.outcome, m.by = "equivalent", equivalent[m.id]
        else:
            todo.append(m)
    print(f"keel mutate: {len(muts)} of {total} mutants ({len(todo)} to run), {args.jobs} job(s), "
          f"tests {'on' if with_tests else 'off (no build/g++/keel_tests)'}", flush=True)

    rel = Relevance(ROOT)
    cxx, flags = model_flags(ROOT)
    runner = Runner(args, rel, cxx, flags)
    lock = threading.Lock()
    done = [0]

    def finish(m):
        if m.log:
            # The last check's output (the killing model's history, a test's
            # failure, a build error), for reading a kill or a crash later.
            os.makedirs(os.path.join(out_dir, "logs"), exist_ok=True)
            with open(os.path.join(out_dir, "logs", re.sub(r"[^\w.-]", "_", m.id) + ".log"), "w") as f:
                f.write(m.log[-200000:])
            m.log = ""
        with lock:
            done[0] += 1
            print(f"[{done[0]}/{len(todo)}] {m.id}: {m.outcome} {m.by} ({m.seconds:.0f} s)", flush=True)

    # Mutant ids for KEEL_MUTANT: the rank in the whole tree's list, from 1.
    ids = {m.id: i + 1 for i, m in enumerate(all_mutants(ROOT))}
    per_mutant, fallback_why, schema_builds = [], {}, 0
    if args.per_mutant:
        per_mutant = list(todo)
    else:
        placed, fallback_why = plan_schemata(todo, texts, ids)
        groups = sorted({g for g, _ in placed.values()})
        per_mutant = [m for m in todo if id(m) in fallback_why]
        for g in groups:
            entries = {id(m): (ids[m.id], m, placed[id(m)][1]) for m in todo if id(m) in placed and placed[id(m)][0] == g}
            members = [m for m in todo if id(m) in entries]
            print(f"schema group {g}: {len(members)} mutants in {len({m.path for m in members})} files", flush=True)
            t_build = time.time()
            sb = SchemaBuild(out_dir, runner, with_tests, texts, ids, entries, args.reuse)
            models = sorted({x for m in members for x in rel.models_for(m.path)}, key=lambda x: rel.models.index(x))
            schema_baseline(runner, sb, models, sorted({m.layer for m in members}))
            schema_builds += 1
            for k, why in sb.evicted.items():
                fallback_why[k] = why
            members = [m for m in members if id(m) in sb.entries]
            per_mutant += [m for m in todo if id(m) in sb.evicted]
            print(f"schema group {g}: built and baseline passed in {time.time() - t_build:.0f} s; {len(sb.evicted)} "
                  f"mutant(s) left the group (their schema did not compile)", flush=True)

            def work(m, sb=sb):
                check_schema(runner, sb, m, ids[m.id])
                finish(m)

            with cf.ThreadPoolExecutor(max(1, args.jobs)) as ex:
                list(ex.map(work, members))
            if not args.keep:
                shutil.rmtree(sb.s.dir, ignore_errors=True)
        for m in per_mutant:
            print(f"  per-mutant build: {m.id} ({fallback_why.get(id(m), '')})", flush=True)

    if per_mutant:
        scratches = queue.Queue()
        first = Scratch(out_dir, 0, with_tests)
        runner.baseline(first, sorted({m.layer for m in per_mutant}))
        scratches.put(first)
        for i in range(1, args.jobs):
            scratches.put(Scratch(out_dir, i, with_tests))

        def work1(m):
            s = scratches.get()
            try:
                runner.check(s, m, texts[m.path])
            finally:
                scratches.put(s)
            finish(m)

        with cf.ThreadPoolExecutor(max(1, args.jobs)) as ex:
            list(ex.map(work1, per_mutant))

    full_run = not (args.sample or args.filter or ops or args.ids)
    meta = [("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
            ("run", "full run" if full_run else
             f"SAMPLE, not a full run: {len(muts)} of {total} mutants" +
             (f" (MUTATE_SAMPLE={args.sample}, MUTATE_SEED={args.seed})" if args.sample else "")),
            ("filter", args.filter or "none"), ("operators", ",".join(ops) if ops else "all"),
            ("ids", args.ids or "all"),
            ("checks", "Relacy models" + (" + g++ test binary by layer" if with_tests else " only (no build/g++/keel_tests)")),
            ("machine", f"{pyplatform.node() and 'Linux'} {pyplatform.machine()}, {os.cpu_count()} CPUs, "
                        f"MUTATE_JOBS={args.jobs}"),
            ("method", ("per-mutant builds (--per-mutant)" if args.per_mutant else
                        f"mutant schemata: {schema_builds} schema build(s) of each model and the test binary, "
                        f"each mutant a run with KEEL_MUTANT=<id>; {len(per_mutant)} mutant(s) without a schema "
                        f"that compiles, built one by one")),
            ("duration", f"{time.time() - t_start:.0f} s")]
    text, killed, counted = report(muts, texts, meta, runner.flakes,
                                   [(m, fallback_why.get(id(m), "")) for m in per_mutant if not args.per_mutant])
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write(text)
    if full_run or args.publish:
        with open(os.path.join(ROOT, "proofs", "mutation-report.md"), "w") as f:
            f.write(text)
    print(f"\nscore: {killed}/{counted} killed by a named check; report: {os.path.relpath(path, ROOT)}")
    for i in range(0, args.jobs if per_mutant and not args.keep else 0):
        shutil.rmtree(os.path.join(out_dir, f"scratch{i}"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
