#!/usr/bin/env bash
# make install PREFIX=...: headers, libkeel.a, libkeel_mpi.a (the cluster
# layer's MPI half), pkg-config files (keel, keel-mpi) and a CMake package
# config (find_package(keel) gives the imported targets keel::keel and, with
# MPI found, keel::mpi).
set -euo pipefail
prefix=$1
lib=$2
mpi_lib=$3
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(cat "$root/VERSION" 2>/dev/null || echo 0.1.0)

install -d "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/keel"
cp -R "$root/kernel/include/keel" "$prefix/include/"
install -m 644 "$lib" "$prefix/lib/libkeel.a"
install -m 644 "$mpi_lib" "$prefix/lib/libkeel_mpi.a"

cat > "$prefix/lib/pkgconfig/keel.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: keel
Description: model-checked concurrency kernel for C++20 (Python threading semantics on futexes)
Version: $version
Cflags: -I\${includedir} -std=c++20 -pthread
Libs: -L\${libdir} -lkeel -pthread
PC

cat > "$prefix/lib/pkgconfig/keel-mpi.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib

Name: keel-mpi
Description: keel's ClusterPool over MPI ranks (keel::cluster::init)
Version: $version
Requires: keel ompi-cxx
Libs: -L\${libdir} -lkeel_mpi
PC

cat > "$prefix/lib/cmake/keel/keelConfig.cmake" <<'CM'
# keel CMake package: find_package(keel) defines the imported target keel::keel.
get_filename_component(_keel_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET keel::keel)
  find_package(Threads REQUIRED)
  add_library(keel::keel STATIC IMPORTED)
  set_target_properties(keel::keel PROPERTIES
    IMPORTED_LOCATION "${_keel_prefix}/lib/libkeel.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_keel_prefix}/include"
    INTERFACE_COMPILE_FEATURES cxx_std_20
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
if(NOT TARGET keel::mpi)
  find_package(MPI QUIET COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    add_library(keel::mpi STATIC IMPORTED)
    set_target_properties(keel::mpi PROPERTIES
      IMPORTED_LOCATION "${_keel_prefix}/lib/libkeel_mpi.a"
      INTERFACE_LINK_LIBRARIES "keel::keel;MPI::MPI_CXX")
  endif()
endif()
unset(_keel_prefix)
CM

cat > "$prefix/lib/cmake/keel/keelConfigVersion.cmake" <<CV
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
CV
echo "keel $version installed under $prefix"
