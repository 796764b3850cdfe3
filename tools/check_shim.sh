#!/usr/bin/env bash
# PLAT-1: kernel code reaches atomics, futexes and threads only through the
# platform shim, kernel/include/keel/platform/ (its native backend included).
# Prints each offending line and fails the build.
set -u
root=${1:-.}
cd "$root" || exit 2
bad=$(grep -rnE '#[[:space:]]*include[[:space:]]*<(atomic|thread|mutex|condition_variable|semaphore|shared_mutex|stop_token|barrier|latch)>|SYS_futex|__NR_futex|syscall[[:space:]]*\([[:space:]]*(SYS|__NR)_futex' kernel \
  | grep -vE '^kernel/include/keel/platform/')
if [ -n "$bad" ]; then
  echo "shim boundary violated (PLAT-1): kernel code outside the platform shim reaches the OS directly:" >&2
  echo "$bad" >&2
  exit 1
fi
exit 0
