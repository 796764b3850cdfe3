#!/usr/bin/env bash
# Checks every way a project can take keel (README: Using keel in a project),
# each by building and running the same small program against it:
#   1. `make install PREFIX=...` (CMake's build and install), whose libkeel.a
#      and libkeel_mpi.a must hold one object per source the Makefile lists;
#   2. pkg-config keel, and keel-mpi under mpirun (3 ranks on this host);
#   3. find_package(keel <major.minor> COMPONENTS mpi): keel::keel, and
#      keel::mpi under mpirun; a request for the next minor version must fail;
#   4. FetchContent from this repository's HEAD (file://), and 5.
#      add_subdirectory(keel): keel's warnings, build type and install rules
#      stay out of the parent project. The parent sets CMAKE_UNITY_BUILD, so
#      keel builds here as one unit per source directory (its CMakeLists
#      groups them), as the Makefile builds it; 1 built every file alone.
# JOBS (default: all cores) is the parallelism of every build. Prints the
# seconds each part took.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
version=$(head -n1 VERSION)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
times=()
mark() { times+=("$1 ${SECONDS}s"); SECONDS=0; }
# A step's output only when it fails.
quiet() { "$@" >"$tmp/log" 2>&1 || { cat "$tmp/log"; echo "check_install: failed: $*" >&2; return 1; }; }
configure() { quiet cmake -S "$1" -B "$2" "${@:3}"; }
build() { MAKEFLAGS='' quiet cmake --build "$1" --parallel "$jobs" "${@:2}"; }
root_ok=()
[ "$(id -u)" -eq 0 ] && root_ok=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
mpi_run() {
  "${root_ok[@]}" timeout 120 mpirun --oversubscribe -n 3 --mca btl self,vader,tcp --mca btl_tcp_if_include lo \
    --mca oob_tcp_if_include lo --mca btl_vader_single_copy_mechanism none "$1"
}
SECONDS=0

# 1. Install, and the same sources in both builds.
JOBS=$jobs quiet make --no-print-directory install PREFIX="$prefix"
for lib in LIB_SRC:libkeel.a MPI_SRC:libkeel_mpi.a; do
  # shellcheck disable=SC2016 # $($*) is make's, not the shell's
  make --no-print-directory -s --eval='print-%: ; @echo $($*)' "print-${lib%%:*}" | tr ' ' '\n' |
    sed -n 's|.*/||; s|$|.o|; /^.\+\.cpp\.o$/p' | sort > "$tmp/want"
  ar t "$prefix/lib/${lib#*:}" | sort > "$tmp/have"
  [ -s "$tmp/want" ] || { echo "check_install: the Makefile lists no ${lib%%:*}" >&2; exit 1; }
  diff -u --label "Makefile ${lib%%:*}" --label "CMake ${lib#*:}" "$tmp/want" "$tmp/have" ||
    { echo "check_install: the CMake and Makefile builds compile different sources" >&2; exit 1; }
done
# The package's targets are per build type; make install's is RelWithDebInfo.
[ -f "$prefix/lib/cmake/keel/keelTargets-relwithdebinfo.cmake" ] ||
  { echo "check_install: make install did not install a RelWithDebInfo build" >&2; exit 1; }
mark install

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

# 2. pkg-config.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[ "$(pkg-config --modversion keel)" = "$version" ]
# shellcheck disable=SC2046 # pkg-config's flags are words
g++ "$tmp/app/main.cpp" $(pkg-config --cflags --libs keel) -o "$tmp/app/pc"
"$tmp/app/pc"
# shellcheck disable=SC2046
g++ "$tmp/app/cluster.cpp" $(pkg-config --cflags --libs keel-mpi) -o "$tmp/app/pc-cluster"
mpi_run "$tmp/app/pc-cluster"
unset PKG_CONFIG_PATH
mark pkg-config

# 3. find_package from the prefix, at the installed minor version; the next minor
# version is not compatible (0.x: SameMinorVersion), so asking for it fails.
mkdir -p "$tmp/find"
cp "$tmp/app/main.cpp" "$tmp/app/cluster.cpp" "$tmp/find/"
cat > "$tmp/find/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(keel_find CXX)
find_package(keel ${KEEL_REQUEST} REQUIRED COMPONENTS mpi)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE keel::keel)
add_executable(cluster cluster.cpp)
target_link_libraries(cluster PRIVATE keel::mpi)
CM
IFS=. read -r major minor _ <<<"$version"
too_high="$major.$((minor + 1))"
configure "$tmp/find" "$tmp/find/build" -DCMAKE_PREFIX_PATH="$prefix" -DKEEL_REQUEST="$major.$minor"
build "$tmp/find/build"
"$tmp/find/build/consumer"
mpi_run "$tmp/find/build/cluster"
if cmake -S "$tmp/find" -B "$tmp/find/too-high" -DCMAKE_PREFIX_PATH="$prefix" -DKEEL_REQUEST="$too_high" \
  >"$tmp/log" 2>&1; then
  echo "check_install: find_package(keel $too_high) accepted keel $version" >&2
  exit 1
fi
# CMake wraps its message: match it with the lines joined.
tr -s ' \n' ' ' <"$tmp/log" | grep -q "compatible with requested version \"$too_high\"" ||
  { cat "$tmp/log"; echo "check_install: find_package(keel $too_high) failed for another reason" >&2; exit 1; }
mark find_package

# 4 and 5. From source, in one build tree so that keel compiles once:
# FetchContent first (a clone of this repository's HEAD over file://), then
# the same tree configured again with add_subdirectory() of that clone into
# the binary directory FetchContent used: the same sources and flags, so
# nothing recompiles, while the targets come through add_subdirectory alone.
# Each time: sloppy.cpp has an unused variable, so keel's -Wall -Wextra -Werror
# leaking into the parent would fail the build; keel sets no build type; and
# the parent's install holds no keel.
[ -z "$(git status --porcelain)" ] ||
  echo "check_install: note: the tree has uncommitted changes; FetchContent builds HEAD" >&2
mkdir -p "$tmp/src"
cp "$tmp/app/main.cpp" "$tmp/src/"
printf 'int sloppy() {\n  int unused = 0;\n  return 0;\n}\n' > "$tmp/src/sloppy.cpp"
cat > "$tmp/src/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(keel_from_source CXX)
if(KEEL_VIA STREQUAL "FetchContent")
  include(FetchContent)
  FetchContent_Declare(keel GIT_REPOSITORY "file://${KEEL_ROOT}" GIT_TAG "${KEEL_COMMIT}")
  FetchContent_MakeAvailable(keel)
else()
  add_subdirectory("${CMAKE_BINARY_DIR}/_deps/keel-src" "${CMAKE_BINARY_DIR}/_deps/keel-build")
endif()
if(CMAKE_BUILD_TYPE)
  message(FATAL_ERROR "keel set its parent's build type (${CMAKE_BUILD_TYPE})")
endif()
add_executable(consumer main.cpp sloppy.cpp)
target_link_libraries(consumer PRIVATE keel::keel)
CM
for via in FetchContent add_subdirectory; do
  configure "$tmp/src" "$tmp/src/build" -DKEEL_VIA=$via -DKEEL_ROOT="$root" -DKEEL_COMMIT="$(git rev-parse HEAD)" \
    -DCMAKE_UNITY_BUILD=ON
  rm -f "$tmp/src/build/consumer"
  build "$tmp/src/build" --target consumer
  "$tmp/src/build/consumer"
  rm -rf "$tmp/src/prefix"
  quiet cmake --install "$tmp/src/build" --prefix "$tmp/src/prefix"
  if [ -e "$tmp/src/prefix/include/keel" ]; then
    echo "check_install: keel taken with $via installed itself with its parent" >&2
    exit 1
  fi
  mark $via
done

echo "install: keel $version; the CMake and Makefile libraries compile the same sources;" \
  "pkg-config (keel, keel-mpi under mpirun), find_package (keel::keel, keel::mpi under mpirun;" \
  "$too_high refused), add_subdirectory and FetchContent consumers build and run"
echo "install: seconds: ${times[*]}"
