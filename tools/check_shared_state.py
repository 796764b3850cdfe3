#!/usr/bin/env python3
"""PLAT-2: every data member of every kernel class is classified, and the
classification matches its type.

The kernel's rule (platform/var.hpp): state that several threads touch is an
atomic (platform::Atomic, FutexWord) or a platform::Var / RaceMark, so the
Relacy models see every access; a plain field is allowed only when no two
threads touch it unordered by a lock the models run. x86 and the tests hide a
memory order weakened on a plain shared field, and Relacy cannot see one it
does not know is shared, so the rule is checked here rather than trusted.

The audit list, proofs/shared_state.txt, names every class (and struct) in
kernel/ outside the platform shim with a verdict, either for the whole class
or member by member:

    [kernel/src/future/wait.cpp]          a file
    MultiWait::Slot                       a class; members follow, indented
      owner   published  set before add_hook publishes the slot (hook lock)
      next_ready  var
    ThreadPoolOptions  value              a whole class: copied, never shared

Member verdicts (the type is checked where the verdict implies one):
  atomic           a platform::Atomic<...> or platform::FutexWord
  var              a platform::Var<...> or platform::RaceMark
  sync             a keel lock or synchronizer (Mutex, Condition, Event, ...),
                   itself checked by its own models
  const            declared const (or constexpr / a reference)
  published        written before the object is shared (constructor, or
                   before the release that hands it to other threads), then
                   only read
  marked(<mark>)   plain data that a Var cannot hold (a result of any type):
                   every access sits beside an access of <mark>, a
                   platform::RaceMark member of the same class, so the model
                   checks the order of the data's accesses through the mark
  guarded(<lock>)  read and written only while <lock> is held; a scalar under
                   a lock that a model runs should be a var (then the model
                   also sees a path that forgets the lock)
  confined(<who>)  touched by one thread (or process) only
Class verdicts: `value` (a value type, copied rather than shared between
threads) or `confined(<who>)`.
Anything after the verdict is the reason (free text, encouraged).

Members of type Atomic/FutexWord/Var/RaceMark need no line (their type says
it); every other member must have one. The check fails on a class or member
missing from the list, a listed one the source does not have (the list is
kept exact), a verdict the type contradicts (`var` on a plain field, `atomic`
on a non-atomic, `const` on a mutable one), and an unknown verdict.

Usage: check_shared_state.py [ROOT] [--list FILE] [--dump]
  --dump prints every class and member found (to write or review the list).
Exit status 0: clean; 1: violations (printed); 2: usage or parse error.
"""
import argparse
import os
import re
import sys

ATOMIC_T = re.compile(r"\b(platform::)?(Atomic|FutexWord)\b")
VAR_T = re.compile(r"\b(platform::)?(Var|RaceMark)\b")
# Waker and Mailbox (kernel/src/cluster/transport.hpp) are a Mutex and a
# Condition with the state they guard, and nothing else. SubmitGate and
# EventCount (the thread pool's ring mode) are atomics with their own models;
# TaskBlockDepot (the task-block cache) is Vars behind its own Mutex, with its
# own model.
SYNC_T = re.compile(r"^(mutable\s+)?(keel::|platform::|cluster::|detail::)?"
                    r"(Mutex|RecursiveMutex|RobustMutex|RobustMutexCore|Condition|Event|Semaphore|BoundedSemaphore|Barrier"
                    r"|Waker|Mailbox|SubmitGate|EventCount|TaskBlockDepot)\b")
MEMBER_VERDICT = re.compile(r"^(atomic|var|sync|const|published|marked\(\w+\)|guarded\([^)]+\)|confined\([^)]+\))$")
CLASS_VERDICT = re.compile(r"^(value|confined\([^)]+\))$")


def kernel_files(root):
    out = []
    for base, _, files in os.walk(os.path.join(root, "kernel")):
        rel = os.path.relpath(base, root)
        # The shim is the abstraction the rule is written in; its backends
        # hold the raw std and Relacy types by design.
        if rel.startswith(os.path.join("kernel", "include", "keel", "platform")):
            continue
        out += [os.path.join(rel, f) for f in files if f.endswith((".hpp", ".cpp"))]
    return sorted(out)


def strip(text):
    """Comments, string and character literals and preprocessor lines become
    spaces (newlines kept, so offsets still map to lines)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c == "#" or (line_start and c in " \t" and text[i:].lstrip(" \t").startswith("#")):
            j = text.find("\n", i)
            while j != -1 and text[j - 1] == "\\":
                j = text.find("\n", j + 1)
            j = n if j == -1 else j
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        line_start = False
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j == -1 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"' and re.search(r"\bR$", text[max(0, i - 1):i]):
            m = re.match(r'"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i)
            out.append(re.sub(r"[^\n]", " ", text[i:end + len(m.group(1)) + 2]))
            i = end + len(m.group(1)) + 2
        elif c in "\"'":
            # A digit separator (1'000) is not a character literal.
            if c == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum():
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            if c == "\n":
                line_start = True
            i += 1
    return "".join(out)


def match_brace(text, i):
    """Index just past the brace that closes the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError("unbalanced braces")


CLASS_HEAD = re.compile(r"\b(class|struct|union)\s+(?:alignas\([^)]*\)\s+)?(?:[A-Z][A-Z0-9_]*(?:\([^()]*(?:\([^()]*\))?[^()]*\))?\s+)*"
                        r"(\w+(?:::\w+)*)\s*(<[^;{]*?>)?\s*(final\s*)?(:[^;{]*)?\{")


def without_templates(s):
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"<[^<>]*>", "", s)
    return s


def is_function(stmt):
    if re.search(r"\boperator\b", stmt):
        return True
    s = without_templates(stmt)
    s = re.sub(r"\balignas\s*\([^)]*\)", "", s)
    s = re.sub(r"\[\[[^\]]*\]\]", "", s)
    s = re.sub(r"\[[^\]]*\]", "[]", s)
    s = re.sub(r"\{\}", "", s)
    head = s.split("=", 1)[0]
    return "(" in head


def members_of(body):
    """Data members (type, name) declared at the top level of a class body,
    and the offsets of the nested class bodies (handled on their own)."""
    members = []
    stmt = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "{":
            text = "".join(stmt).strip()
            text = re.sub(r"^((public|private|protected)\s*:\s*)+", "", text)
            end = match_brace(body, i)
            if re.match(r"^(template\s*<.*>\s*)?(enum|class|struct|union)\b", text, re.S) or is_function(text):
                # A nested type or a function body: skip it and an optional ';'.
                i = end
                j = i
                while j < n and body[j] in " \t\n":
                    j += 1
                if j < n and body[j] == ";":
                    i = j + 1
                stmt = []
                continue
            stmt.append("{}")  # a brace initializer
            i = end
            continue
        if c == ";":
            declare(members, "".join(stmt))
            stmt = []
        elif c == "(":
            # Parentheses may hold braces (lambdas in default arguments).
            depth, j = 0, i
            while j < n:
                if body[j] == "(":
                    depth += 1
                elif body[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            stmt.append(body[i:j + 1])
            i = j + 1
            continue
        else:
            stmt.append(c)
        i += 1
    return members


def declare(members, text):
    text = " ".join(text.split())
    # Clang thread-safety annotations (KEEL_GUARDED_BY(mu)) are not calls.
    text = re.sub(r"\s*\bKEEL_[A-Z_]+\([^()]*\)", "", text)
    # Attributes ([[no_unique_address]]) say nothing about sharing.
    text = re.sub(r"\[\[[^\[\]]*\]\]\s*", "", text)
    # Nor does a layout macro (KEEL_CACHE_ALIGNED: alignas natively, empty in a model).
    text = re.sub(r"\bKEEL_CACHE_ALIGNED\s+", "", text)
    text = re.sub(r"^((public|private|protected)\s*:\s*)+", "", text)
    if not text or re.match(r"^(using|typedef|friend|static|template|static_assert|enum|class|struct|union)\b", text):
        return
    if re.match(r"^(inline\s+)?(static|constexpr)\b", text) or is_function(text):
        return
    # Template arguments may hold any of the separators: mask them first.
    masked, prev = text, None
    while prev != masked:
        prev = masked
        masked = re.sub(r"<[^<>]*>", lambda t: "\x01" * len(t.group(0)), masked)
    cut = re.search(r"\s*(=|\{\}|\[|(?<!:):(?!:))", masked)
    decl = text[:cut.start() if cut else len(text)].strip()
    m = re.match(r"^(.*?)([A-Za-z_]\w*)$", decl, re.S)
    if not m or not m.group(1).strip():
        raise ValueError(f"cannot read the member in `{text}`")
    members.append((m.group(1).strip(), m.group(2)))


def classes_in(text):
    """(qualified class name, [(type, member)]) for every class defined in text."""
    found = []
    stack = []  # (end offset, name) of the enclosing classes
    for m in CLASS_HEAD.finditer(text):
        before = text[max(0, m.start() - 10):m.start()]
        if re.search(r"\benum\s*$", before):
            continue
        open_brace = m.end() - 1
        end = match_brace(text, open_brace)
        while stack and stack[-1][0] <= m.start():
            stack.pop()
        name = m.group(2)
        qual = "::".join([s[1] for s in stack] + [name]) if "::" not in name else name
        if m.group(3):
            qual += m.group(3).replace(" ", "")
        members = members_of(text[open_brace + 1:end - 1])
        found.append((qual, members))
        stack.append((end, qual))
    return found


def parse_list(path):
    """{file: {class: ('class', verdict, line) | ('members', {member: (verdict, line)}, line)}}"""
    audit, errors = {}, []
    cur_file = cur_class = None
    with open(path) as f:
        for no, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = re.match(r"^\[(.+)\]\s*$", line)
            if m:
                cur_file, cur_class = m.group(1).strip(), None
                if cur_file in audit:
                    errors.append(f"{path}:{no}: [{cur_file}] appears twice")
                audit.setdefault(cur_file, {})
                continue
            if cur_file is None:
                errors.append(f"{path}:{no}: an entry before any [file] line")
                continue
            # A verdict's parentheses may hold spaces: confined(the supervisor).
            fields = re.match(r"^\s*(\S+)(?:\s+(\w+\([^)]*\)|\S+))?", line).groups()
            fields = [f for f in fields if f]
            if not line[0].isspace():
                cur_class = fields[0]
                if cur_class in audit[cur_file]:
                    errors.append(f"{path}:{no}: class {cur_class} appears twice")
                if len(fields) > 1:
                    if not CLASS_VERDICT.match(fields[1]):
                        errors.append(f"{path}:{no}: unknown class verdict `{fields[1]}` (value | confined(<who>))")
                    audit[cur_file][cur_class] = ("class", fields[1], no)
                else:
                    audit[cur_file][cur_class] = ("members", {}, no)
                continue
            if cur_class is None or audit[cur_file][cur_class][0] != "members":
                errors.append(f"{path}:{no}: a member line outside a class that lists members")
                continue
            if len(fields) < 2:
                errors.append(f"{path}:{no}: `{fields[0]}` has no verdict")
                continue
            if not MEMBER_VERDICT.match(fields[1]):
                errors.append(f"{path}:{no}: unknown verdict `{fields[1]}`")
            mems = audit[cur_file][cur_class][1]
            if fields[0] in mems:
                errors.append(f"{path}:{no}: member {cur_class}::{fields[0]} appears twice")
            mems[fields[0]] = (fields[1], no)
    return audit, errors


def is_atomic(typ):
    # A pointer or reference to an atomic is itself a plain field.
    return bool(ATOMIC_T.search(typ)) and not typ.rstrip().endswith(("*", "&"))


def is_var(typ):
    return bool(VAR_T.search(typ)) and not typ.rstrip().endswith(("*", "&"))


def self_checked(typ):
    return is_atomic(typ) or is_var(typ)


def type_errors(where, typ, verdict, members):
    is_atomic_, is_var_ = is_atomic(typ), is_var(typ)
    if verdict == "var" and not is_var_:
        return [f"{where}: listed `var` but declared `{typ}`, not a platform::Var or RaceMark"]
    if verdict == "atomic" and not is_atomic_:
        return [f"{where}: listed `atomic` but declared `{typ}`, not a platform::Atomic or FutexWord"]
    if verdict == "sync" and not SYNC_T.match(typ):
        return [f"{where}: listed `sync` but declared `{typ}`, not a keel lock or synchronizer"]
    if verdict == "const" and not re.search(r"(^|\s)(const|constexpr)\b|&$", typ):
        return [f"{where}: listed `const` but declared `{typ}`, which is not const"]
    if verdict not in ("var", "atomic") and (is_atomic_ or is_var_):
        return [f"{where}: declared `{typ}` but listed `{verdict}`"]
    mark = re.match(r"marked\((\w+)\)", verdict)
    if mark and not re.search(r"\bRaceMark\b", members.get(mark.group(1), "")):
        return [f"{where}: listed `{verdict}` but the class has no platform::RaceMark {mark.group(1)}"]
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--list", help="the audit list (default ROOT/proofs/shared_state.txt)")
    ap.add_argument("--dump", action="store_true")
    args = ap.parse_args()
    root = args.root
    list_path = args.list or os.path.join(root, "proofs", "shared_state.txt")

    found = {}
    for rel in kernel_files(root):
        with open(os.path.join(root, rel), errors="replace") as f:
            text = strip(f.read())
        try:
            classes = classes_in(text)
        except ValueError as e:
            print(f"{rel}: {e}", file=sys.stderr)
            return 2
        if classes:
            found[rel] = classes
    if args.dump:
        for rel, classes in found.items():
            print(f"[{rel}]")
            for cls, members in classes:
                print(cls)
                for typ, name in members:
                    print(f"  {name}  ({typ})")
        return 0

    audit, errors = parse_list(list_path)
    for rel, classes in found.items():
        listed = audit.get(rel, {})
        seen = set()
        for cls, members in classes:
            seen.add(cls)
            entry = listed.get(cls)
            if entry is None:
                # A class of atomics and Vars only says it all by its types.
                if not all(self_checked(t) for t, _ in members):
                    errors.append(f"{rel}: class {cls} is not in {os.path.relpath(list_path, root)}")
                continue
            if entry[0] == "class":
                if any(self_checked(t) for t, _ in members):
                    errors.append(f"{rel}: class {cls} is listed `{entry[1]}` but has atomic or var members: "
                                  f"list them")
                continue
            mems = entry[1]
            names = set()
            for typ, name in members:
                names.add(name)
                where = f"{rel}: {cls}::{name}"
                if name not in mems:
                    if not self_checked(typ):
                        errors.append(f"{where} (`{typ}`) is neither listed nor an atomic or a platform::Var")
                    continue
                errors += type_errors(where, typ, mems[name][0], dict((n, t) for t, n in members))
            for name in sorted(set(mems) - names):
                errors.append(f"{list_path}:{mems[name][1]}: {cls}::{name} is not a member in {rel}")
        for cls in sorted(set(listed) - seen):
            errors.append(f"{list_path}:{listed[cls][2]}: class {cls} is not defined in {rel}")
    for rel in sorted(set(audit) - set(found)):
        errors.append(f"{list_path}: [{rel}] defines no class (or does not exist)")

    if errors:
        print("shared state rule broken (PLAT-2): see proofs/shared_state.txt", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    n = sum(len(c) for c in found.values())
    m = sum(len(mem) for c in found.values() for _, mem in c)
    print(f"shared state: {n} classes, {m} data members in {len(found)} files: every one classified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
