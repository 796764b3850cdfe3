#!/usr/bin/env bash
# clang-tidy over the kernel's sources (headers through them), with the
# project's .clang-tidy, one file per core; fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
# Open MPI's headers (for kernel/src/cluster/mpi/) as system headers.
mpi=$(mpicxx --showme:compile 2>/dev/null | sed 's/-I/-isystem /g')
export mpi
git ls-files -z 'kernel/src/*.cpp' |
  xargs -0 -P "$(nproc 2>/dev/null || echo 2)" -n 1 \
    sh -c 'clang-tidy-14 --quiet "$0" -- -std=c++20 -Ikernel/include -pthread $mpi'
