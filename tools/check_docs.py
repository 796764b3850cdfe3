#!/usr/bin/env python3
"""Every public declaration of every public header has a doc comment.

Public headers: kernel/include/keel/**.hpp, minus detail/ folders and the
platform/ shim (internals a user never names), minus PENDING below. In them,
a public declaration is one outside any `detail` namespace that is either at
namespace scope (a class, enum, function, constant or alias) or a member of a
class under public access (a struct's default, a class's after `public:`;
a class nested in a private part is no user's). Its doc is a `///` comment on
the line directly above it (above its `template <...>` line, if any), or a
trailing `///<` on its first line: the forms Doxygen reads (a plain `//`
comment it does not). Exempt, as nothing a user looks up by itself: deleted
functions (`= delete`), inheriting constructors (`using Base::Base;`: they
take what the base's take), forward declarations and out-of-line
definitions (the declaration carries the doc), friend classes, enumerators.

The parse is line based and relies on the clang-format layout `make lint`
enforces (one declaration starts per line, braces at line ends); it skips
function bodies and initialiser blocks by counting braces, and strings and
comments are stripped before counting.

Usage: check_docs.py [ROOT] [FILE...]   (FILEs: check these instead)
Exit status 0: every public declaration documented; 1: some are not
(listed: file:line and the declaration).
"""
import os
import re
import subprocess
import sys

CLASS_RE = re.compile(r"^(?:template\s*<.*>\s*)?(class|struct|union)\s+(?:\[\[[^\]]*\]\]\s*)?(\w+)[^;]*\{\s*$")
NAMESPACE_RE = re.compile(r"^(?:inline\s+)?namespace\s*([\w:]*)\s*\{")
ACCESS_RE = re.compile(r"^(public|private|protected)\s*:\s*$")


# Public headers not checked yet, each with why; every run prints them, so a
# skip cannot be forgotten. Remove an entry once its header is documented.
PENDING = {}


def public_headers(root):
    out = subprocess.run(["git", "-C", root, "ls-files", "kernel/include/keel/*.hpp"], capture_output=True,
                         text=True, check=True).stdout.split()
    return [f for f in out if "/detail/" not in f and "/platform/" not in f]


def code_of(line):
    """The line without strings, character literals and comments."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])*'", "''", line)
    return line.split("//")[0].rstrip()


def check_file(path, text):
    lines = text.split("\n")
    problems = []
    # Each scope: [kind, public?, depth at which its members sit]; kind is
    # namespace, detail (a detail namespace), class, hidden (a class nested
    # in a private or protected part), or other (a body).
    scopes = [["namespace", True, 0]]
    depth = 0
    pending = False  # inside a declaration that started on an earlier line
    for i, raw in enumerate(lines):
        code = code_of(raw).strip()
        if not code or code.startswith("#"):
            continue
        top = scopes[-1]
        in_detail = any(s[0] in ("detail", "hidden") for s in scopes)
        at_member_level = top[0] == "class" and depth == top[2]
        at_namespace_level = top[0] == "namespace" and depth == top[2]
        if at_member_level and ACCESS_RE.match(code):
            top[1] = ACCESS_RE.match(code).group(1) == "public"
            continue
        if ((at_member_level and top[1]) or at_namespace_level) and not pending and not in_detail:
            start = i
            if re.match(r"^template\s*<.*>$", code) and i + 1 < len(lines):
                pass  # the declaration follows; its doc sits above this line
            elif i > 0 and re.match(r"^template\s*<.*>$", code_of(lines[i - 1]).strip()):
                start = i - 1
            if not re.match(r"^template\s*<.*>$", code) and not is_exempt(code):
                documented = "///<" in raw or (start > 0 and lines[start - 1].strip().startswith("///"))
                if not documented:
                    problems.append(f"{path}:{i + 1}: undocumented public declaration: {raw.strip()}")
        # Scopes opened on this line.
        opens, closes = code.count("{"), code.count("}")
        m_ns = NAMESPACE_RE.match(code)
        m_cls = CLASS_RE.match(code)
        new_depth = depth + opens - closes
        if opens > closes:
            if m_ns:
                kind = "detail" if "detail" in m_ns.group(1).split("::") else "namespace"
                scopes.append([kind, True, new_depth])
            elif m_cls and (top[0] != "class" or depth == top[2]) and top[0] != "other":
                # A class nested in a non-public part of another is no user's.
                hidden = top[0] == "class" and not top[1]
                scopes.append(["hidden" if hidden else "class", m_cls.group(1) != "class", new_depth])
            else:
                scopes.append(["other", False, new_depth])
        while len(scopes) > 1 and new_depth < scopes[-1][2]:
            scopes.pop()
        depth = new_depth
        # A declaration continues while its line ends with neither ; { } nor a label.
        ended = code.endswith((";", "{", "}")) or ACCESS_RE.match(code) or re.match(r"^template\s*<.*>$", code)
        if scopes[-1][0] in ("class", "namespace") and depth == scopes[-1][2]:
            pending = not ended
        else:
            pending = False
    return problems


def is_exempt(code):
    if re.search(r"=\s*delete\s*;", code):
        return True
    m = re.match(r"^using\s+([\w:]+)::(\w+)\s*;$", code)
    if m and m.group(1).split("::")[-1] == m.group(2):
        return True
    if code.startswith(("friend class", "friend struct", "}", "static_assert", "using namespace", "namespace",
                        "inline namespace")):
        return True
    if re.match(r"^[\w:<>,\s]*?\b\w+::~?\w+\s*\(", code) and not code.startswith("using"):
        return True  # an out-of-line definition: the declaration carries the doc
    if re.match(r"^(template\s*<.*>\s*)?(class|struct|union|enum( class)?)\s+[\w:]+\s*;$", code):
        return True  # a forward declaration: the definition carries the doc
    return False


def main(argv):
    root = argv[1] if len(argv) > 1 and os.path.isdir(argv[1]) else "."
    files = [a for a in argv[1:] if not os.path.isdir(a)]
    if not files:
        files = [f for f in public_headers(root) if f not in PENDING]
        for f, why in PENDING.items():
            print(f"check_docs: not checked yet: {f}: {why}")
    problems = []
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8") as fh:
            problems += check_file(f, fh.read())
    for p in problems:
        print(p)
    if problems:
        print(f"check_docs: {len(problems)} public declarations without a /// doc comment (see tools/check_docs.py)")
        return 1
    print(f"check_docs: every public declaration of {len(files)} public headers has a /// doc comment")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
