#!/usr/bin/env bash
# clang-tidy over the kernel's sources (headers through them), with the
# project's .clang-tidy; fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for f in $(git ls-files 'kernel/src/*.cpp'); do
  clang-tidy-14 --quiet "$f" -- -std=c++20 -Ikernel/include -pthread || status=1
done
exit $status
