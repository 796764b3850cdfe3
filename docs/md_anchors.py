#!/usr/bin/env python3
"""Doxygen input filter for README.md (docs/Doxyfile: FILTER_PATTERNS).

Gives each section heading the id GitHub gives it ({#slug}), so that the
README's links to its own sections ([Fuzzing](#fuzzing)) resolve on the
reference's main page too. Code blocks pass through unchanged; the level-1
heading is the page's title and keeps none.
"""
import re
import sys

fenced = False
with open(sys.argv[1], encoding="utf-8") as readme:
    for line in readme:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"^(#{2,6}) (.+?)\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(2).lower()).replace(" ", "-")
            line = f"{heading.group(1)} {heading.group(2)} {{#{slug}}}\n"
        sys.stdout.write(line)
