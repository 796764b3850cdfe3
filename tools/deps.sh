#!/usr/bin/env bash
# Installs the Debian packages keel's targets need, only when some are missing.
# Idempotent and silent when everything is present. With arguments, it
# installs just those packages (e.g. `tools/deps.sh afl++` for make fuzz-afl).
set -euo pipefail

packages=(
  build-essential g++ make python3
  clang-14 libclang-rt-14-dev clang-format-14 clang-tidy-14 llvm-14
  libgtest-dev libgmock-dev librapidcheck-dev relacy-dev spin tcc
  libbenchmark-dev libabsl-dev libboost-dev libtbb-dev libthread-pool-dev gnuplot-nox
  pkg-config cmake doxygen
  libopenmpi-dev openmpi-bin
)
[ $# -gt 0 ] && packages=("$@")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "keel deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "keel deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
