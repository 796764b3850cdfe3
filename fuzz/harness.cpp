// The fuzz harness's registry and failure reporting (see fuzz.hpp).
#include "fuzz/fuzz.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <utility>

namespace keel::fuzz {

namespace {

std::mutex& handler_mutex() {
  static std::mutex m;
  return m;
}

FailureHandler& handler() {
  static FailureHandler h;
  return h;
}

}  // namespace

std::vector<Target>& targets() {
  static std::vector<Target> all;
  return all;
}

Registration::Registration(const char* name, TargetFn fn) { targets().push_back({name, fn}); }

void run(std::string_view name, const std::uint8_t* data, std::size_t size) {
  const auto& all = targets();
  const Target* found = nullptr;
  if (name.empty()) {
    if (all.size() == 1) found = &all.front();
  } else {
    for (const auto& t : all) {
      if (t.name == name) found = &t;
    }
  }
  if (found == nullptr) {
    std::fprintf(stderr, "keel fuzz: no target '%.*s' (%zu linked)\n", static_cast<int>(name.size()), name.data(),
                 all.size());
    std::abort();
  }
  Input in(data, size);
  found->fn(in);
}

void fail(const char* invariant, const char* file, int line, const std::string& what) {
  const std::string message = std::string("keel fuzz: invariant ") + invariant + " broken at " + file + ":" +
                              std::to_string(line) + ": " + what;
  FailureHandler h;
  {
    std::lock_guard lock(handler_mutex());
    h = handler();
  }
  if (h) h(message);
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

void set_failure_handler(FailureHandler h) {
  std::lock_guard lock(handler_mutex());
  handler() = std::move(h);
}

}  // namespace keel::fuzz
