#!/usr/bin/env bash
# Installs keel into a temporary prefix and builds a consumer against it twice:
# through pkg-config and through CMake's find_package(keel).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make --no-print-directory install PREFIX="$tmp/prefix" >/dev/null
mkdir -p "$tmp/app"
cat > "$tmp/app/main.cpp" <<'CPP'
#include <keel/keel.hpp>
int triple(int x) { return 3 * x; }
inline const auto triple_task = keel::register_task("triple", triple);
int main(int argc, char** argv) {
  keel::bootstrap(argc, argv);
  {
    keel::ProcessPool procs({.workers = 1});
    if (procs.submit(triple_task, 14).result() != 42) return 1;
  }
  keel::Mutex m;
  keel::Condition cv(m);
  keel::Event e;
  m.lock();
  cv.notify_all();
  m.unlock();
  e.set();
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  if (pool.submit([](int x) { return x * 2; }, 21).result() != 42) return 1;
  return e.is_set() ? 0 : 1;
}
CPP
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" g++ "$tmp/app/main.cpp" $(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs keel) -o "$tmp/app/pc"
"$tmp/app/pc"
cat > "$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(keel_consumer CXX)
find_package(keel 0.1 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE keel::keel)
CM
cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/app/build" >/dev/null
"$tmp/app/build/consumer"
# The cluster layer through pkg-config keel-mpi, under mpirun (3 ranks on
# this host: rank 0 and two nodes).
cat > "$tmp/app/cluster.cpp" <<'CPP'
#include <keel/cluster/cluster_pool.hpp>
#include <keel/cluster/mpi.hpp>
int triple(int x) { return 3 * x; }
inline const auto triple_task = keel::register_task("triple", triple);
int main(int argc, char** argv) {
  keel::cluster::init(argc, argv);
  keel::ClusterPool pool({.workers_per_node = 1});
  return pool.submit(triple_task, 14).result() == 42 && pool.nodes() == 2 ? 0 : 1;
}
CPP
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" g++ "$tmp/app/cluster.cpp" $(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs keel-mpi) -o "$tmp/app/cluster"
root_ok=()
[ "$(id -u)" -eq 0 ] && root_ok=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
"${root_ok[@]}" timeout 120 mpirun --oversubscribe -n 3 --mca btl self,vader,tcp --mca btl_tcp_if_include lo \
  --mca oob_tcp_if_include lo --mca btl_vader_single_copy_mechanism none "$tmp/app/cluster"
echo "install: pkg-config (keel, keel-mpi under mpirun) and find_package(keel) consumers build and run"
