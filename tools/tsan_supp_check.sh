#!/usr/bin/env bash
# Shows that tools/tsan.supp is needed and enough: a program where one thread
# reads an exception in a catch block and another then drops the last
# std::exception_ptr to it (libstdc++'s refcount orders the free; TSan cannot
# see it) is reported by TSan without the file and runs clean with it.
# Usage: tools/tsan_supp_check.sh [CXX]   (default clang++-14); exit 0 when both hold.
set -u
cd "$(dirname "$0")/.."
cxx=${1:-clang++-14}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/refcount.cpp" <<'CPP'
#include <chrono>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <thread>

int main() {
  std::exception_ptr p = std::make_exception_ptr(std::runtime_error("shared error"));
  std::thread last_owner([q = p]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    q = nullptr;  // the last reference: libstdc++ frees the exception here
  });
  try {
    std::rethrow_exception(p);
  } catch (const std::exception& e) {
    std::printf("caught: %s\n", e.what());
  }
  p = nullptr;
  last_owner.join();
}
CPP
if ! "$cxx" -std=c++20 -g -O1 -fsanitize=thread "$dir/refcount.cpp" -o "$dir/refcount" 2>"$dir/build.log"; then
  cat "$dir/build.log" >&2
  exit 2
fi
TSAN_OPTIONS="halt_on_error=1" "$dir/refcount" >"$dir/without.log" 2>&1
without=$?
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tools/tsan.supp" "$dir/refcount" >"$dir/with.log" 2>&1
with=$?
ok=0
if [ $without -eq 0 ] || ! grep -q "ThreadSanitizer: data race" "$dir/without.log"; then
  echo "tsan.supp check: TSan no longer reports the exception refcount (rc=$without): is the entry still needed?" >&2
  ok=1
fi
if [ $with -ne 0 ]; then
  echo "tsan.supp check: still reported with tools/tsan.supp (rc=$with):" >&2
  cat "$dir/with.log" >&2
  ok=1
fi
[ $ok -eq 0 ] && echo "tsan.supp: the exception refcount report appears without it and is suppressed with it"
exit $ok
