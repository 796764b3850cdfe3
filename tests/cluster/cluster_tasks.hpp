// Task bodies the cluster tests share (the in-process tests and the mpirun
// scenarios program); each registers them under its own names.
#pragma once

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace cluster_tasks {

inline int square(int x) { return x * x; }
inline int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
inline int die(int sig) {
  ::raise(sig);
  ::pause();
  return 0;
}
// Leaves a mark in `dir` (it started on its worker), then sleeps.
inline int mark_and_sleep(std::string dir, int ms) {
  const std::string mine = dir + "/" + std::to_string(::getpid());
  if (FILE* f = std::fopen(mine.c_str(), "w")) std::fclose(f);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
// How many marks are in `dir`.
inline int marks_in(const std::string& dir) {
  int seen = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) seen += e->d_name[0] != '.';
    ::closedir(d);
  }
  return seen;
}

}  // namespace cluster_tasks
