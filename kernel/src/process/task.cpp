// The process-wide task table and the error encoding.
//
// The table is built once, at registration (static-init or early main), and
// read about once per task run in a worker, so a lookup is one uncontended
// Mutex round trip and a hash probe. Entries are never removed: an invoker
// found under the lock stays valid after it is released, so the task itself
// runs unlocked.
#include "keel/process/task.hpp"

#include <cxxabi.h>
#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <unordered_map>
#include <utility>

#include "keel/sync/mutex.hpp"

namespace keel::detail {

namespace {

struct NameHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct TaskEntry {
  std::unique_ptr<TaskInvoker> invoker;
  const std::type_info* signature = nullptr;
};

struct Registry {
  Mutex mu;
  std::unordered_map<std::string, TaskEntry, NameHash, std::equal_to<>> tasks KEEL_GUARDED_BY(mu);

  const TaskEntry* find(std::string_view name) {
    LockGuard<Mutex> g(mu);
    const auto it = tasks.find(name);
    return it == tasks.end() ? nullptr : &it->second;
  }
};

// Never destroyed: a task may still be looked up from a thread that outlives
// static destruction (a worker calling exit() while another thread runs).
Registry& registry() {
  static Registry* const r = new Registry;
  return *r;
}

#if !KEEL_MODEL
// fork() (the opt-in start method) copies only the forking thread: a registry
// lock held by another thread at that moment would stay locked in the child
// for ever, and the child's first task lookup would hang. The lock is held
// across every fork, so it is free on both sides afterwards.
void lock_registry_for_fork() KEEL_NO_TSA { registry().mu.lock(); }
void unlock_registry_after_fork() KEEL_NO_TSA { registry().mu.unlock(); }

// Built, and the handlers registered, while the program starts: a fork() from
// then on finds them in place. (Registered on first use, a fork() while
// another thread was inside that first construction left the child waiting
// on the static's guard for ever, and one before the registration went
// unguarded.)
const int registry_fork_handlers =
    (registry(), ::pthread_atfork(&lock_registry_for_fork, &unlock_registry_after_fork, &unlock_registry_after_fork));
// (The models, which include this file, have no fork(), and their locks
// exist only inside a model run: nothing is built when they start.)
#endif

}  // namespace

void register_task_entry(std::string name, std::unique_ptr<TaskInvoker> invoker, const std::type_info& signature) {
  if (name.empty()) throw ValueError("keel: a task name must not be empty");
  Registry& r = registry();
  LockGuard<Mutex> g(r.mu);
  if (r.tasks.find(name) != r.tasks.end()) {
    throw ValueError("keel: a task named '" + name + "' is already registered");
  }
  r.tasks.emplace(std::move(name), TaskEntry{std::move(invoker), &signature});
}

bool task_registered(std::string_view name) { return registry().find(name) != nullptr; }

bool task_signature_matches(std::string_view name, const std::type_info& signature) {
  const TaskEntry* e = registry().find(name);
  return e != nullptr && *e->signature == signature;
}

TaskInvoker& find_task(std::string_view name) {
  const TaskEntry* e = registry().find(name);
  if (e == nullptr) throw ValueError("keel: no task named '" + std::string(name) + "' is registered");
  return *e->invoker;
}

std::string invoke_task(std::string_view name, std::string_view args) { return find_task(name).invoke(name, args); }

std::string demangle(const char* mangled) {
  int status = 0;
  char* s = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || s == nullptr) {
    std::free(s);
    return mangled;
  }
  std::string out(s);
  std::free(s);
  return out;
}

std::string type_name(const std::type_info& t) { return demangle(t.name()); }

namespace {

std::pair<std::string, std::string> error_parts(const std::exception_ptr& e) {
  if (!e) throw ValueError("keel: encode_error of a null exception_ptr");
  std::string type;
  std::string message;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    type = type_name(typeid(ex));
    message = detail::what_of(ex);
  } catch (...) {
    // Not a std::exception: there is no what(), but the runtime still knows
    // the thrown object's type.
    const std::type_info* t = abi::__cxa_current_exception_type();
    type = t != nullptr ? type_name(*t) : std::string("unknown exception");
    message = "unknown exception";
  }
  return {std::move(type), std::move(message)};
}

// s cut to at most n bytes, the cut marked.
std::string cut_to(const std::string& s, std::size_t n) {
  if (s.size() <= n) return s;
  const std::string mark = " [cut from " + std::to_string(s.size()) + " bytes]";
  return s.substr(0, n > mark.size() ? n - mark.size() : 0) + mark.substr(0, n);
}

}  // namespace

std::string encode_error(const std::exception_ptr& e) {
  auto [type, message] = error_parts(e);
  return keel::encode(type, message);
}

std::string encode_error(const std::exception_ptr& e, std::size_t max_bytes) {
  if (max_bytes < min_error_bytes) {
    throw ValueError("keel: an error report needs at least " + std::to_string(min_error_bytes) + " bytes, not " +
                     std::to_string(max_bytes));
  }
  auto [type, message] = error_parts(e);
  constexpr std::size_t lengths = 8;  // the two u32 lengths
  const std::size_t room = max_bytes - lengths;
  if (type.size() + message.size() > room) {
    // The type keeps what the message leaves, and at least half the room.
    type = cut_to(type, std::max(room / 2, room - std::min(message.size(), room)));
    message = cut_to(message, room - type.size());
  }
  return keel::encode(type, message);
}

RemoteError decode_error(std::string_view bytes) {
  try {
    auto [type, message] = decode_tuple<std::tuple<std::string, std::string>>(bytes);
    return RemoteError(std::move(type), std::move(message));
  } catch (const ProtocolError& e) {
    throw ProtocolError(std::string("keel: malformed error bytes: ") + detail::what_of(e));
  }
}

}  // namespace keel::detail
