#!/usr/bin/env bash
# clang-tidy over the kernel's sources (headers through them), with the
# project's .clang-tidy, one translation unit per core; fails on any finding.
#
# The sources of each kernel directory are checked as one unit,
# build/tidy/<dir>.cpp, which includes them, as the Makefile compiles them
# (KERNEL_UNITY): a file's own checks take a fraction of its clang-tidy run,
# and the standard and keel headers it parses and matches take the rest, so
# one run per directory took 4.3 s of CPU where its six files one by one took
# 26. The included sources are outside the main file, so the header filter
# names them too. Each file still compiles on its own in the CMake build
# (make install: CI's install step). What a unit cannot see: a using-declaration
# at namespace scope that only a later file of its directory uses is taken
# for used. LINT_UNITY=0 checks one file at a time, as before.
set -euo pipefail
cd "$(dirname "$0")/.."
# Open MPI's headers (for kernel/src/cluster/mpi/) as system headers.
mpi=$(mpicxx --showme:compile 2>/dev/null | sed 's/-I/-isystem /g')
export mpi
jobs=$(nproc 2>/dev/null || echo 2)
filter='kernel/(include/keel|src)/.*'
export filter
if [ "${LINT_UNITY:-1}" = 0 ]; then
  # shellcheck disable=SC2016 # $0 and $mpi are the inner shell's
  git ls-files -z 'kernel/src/*.cpp' |
    xargs -0 -P "$jobs" -n 1 sh -c 'clang-tidy-14 --quiet "$0" -- -std=c++20 -Ikernel/include -pthread $mpi'
  exit
fi
# Under build/, so that clang-tidy finds the project's .clang-tidy above it.
units=build/tidy
rm -rf "$units"
mkdir -p "$units"
# kernel/src/<dir>/*.cpp into a unit each, the largest directory first so
# that it does not start last; deeper files (cluster/mpi/) alone.
for dir in $(git ls-files 'kernel/src/*/*.cpp' | awk -F/ 'NF == 4 {print $3}' | sort | uniq -c | sort -rn | awk '{print $2}'); do
  git ls-files "kernel/src/$dir/*.cpp" | awk -F/ 'NF == 4' |
    sed 's|.*|#include "&" // NOLINT(bugprone-suspicious-include)|' > "$units/$dir.cpp"
  printf '%s\0' "$units/$dir.cpp"
done > "$units/list"
git ls-files -z 'kernel/src/*/*/*.cpp' >> "$units/list"
[ -s "$units/list" ] || { echo "lint: no kernel sources found" >&2; exit 1; }
# The units rest on findings in an included source being reported: a unit
# that includes a source with a planted one (a 0 returned as a pointer,
# under a path the filter names) must fail, naming the check and the file.
planted=$units/kernel/src/selftest/planted.cpp
mkdir -p "$(dirname "$planted")"
printf 'int* planted() { return 0; }\n' > "$planted"
printf '#include "%s" // NOLINT(bugprone-suspicious-include)\n' "$planted" > "$units/selftest.cpp"
if out=$(clang-tidy-14 --quiet --header-filter="$filter" "$units/selftest.cpp" -- -std=c++20 -I. 2>&1) ||
  ! grep -q "planted.cpp:1:.*modernize-use-nullptr" <<<"$out"; then
  printf '%s\n' "$out" >&2
  echo "lint: clang-tidy did not report a finding planted in an included source" >&2
  exit 1
fi
# shellcheck disable=SC2016 # $0, $filter and $mpi are the inner shell's
xargs -0 -P "$jobs" -n 1 \
  sh -c 'clang-tidy-14 --quiet --header-filter="$filter" "$0" -- -std=c++20 -Ikernel/include -I. -pthread $mpi' < "$units/list"
