// keel::cluster::proto. See protocol.hpp.
#include "protocol.hpp"

#include "keel/error.hpp"
#include "keel/process/codec.hpp"

namespace keel::cluster::proto {

namespace {

std::int64_t ns(std::chrono::nanoseconds d) { return static_cast<std::int64_t>(d.count()); }

// ProcessPoolStats as a fixed list of counters, in declaration order, then
// the pids (a node's snapshot keeps workers == pids.size() on rank 0 too).
void put_stats(Encoder& e, const ProcessPoolStats& s) {
  e.put(std::uint64_t{s.workers});
  e.put(std::uint64_t{s.ready});
  e.put(std::uint64_t{s.spares});
  e.put(std::uint64_t{s.queued});
  e.put(std::uint64_t{s.in_flight});
  for (std::uint64_t v :
       {s.submitted, s.completed, s.lost, s.timed_out, s.cancelled, s.broken, s.retried, s.requeued, s.spawned,
        s.deaths, s.replacements, s.retirements, s.rejected, s.revoked, s.stolen, s.skipped}) {
    e.put(v);
  }
  e.put(s.pids);
}

ProcessPoolStats get_stats(Decoder& d) {
  ProcessPoolStats s;
  s.workers = static_cast<unsigned>(d.get<std::uint64_t>());
  s.ready = static_cast<unsigned>(d.get<std::uint64_t>());
  s.spares = static_cast<unsigned>(d.get<std::uint64_t>());
  s.queued = d.get<std::uint64_t>();
  s.in_flight = d.get<std::uint64_t>();
  for (std::uint64_t* v :
       {&s.submitted, &s.completed, &s.lost, &s.timed_out, &s.cancelled, &s.broken, &s.retried, &s.requeued, &s.spawned,
        &s.deaths, &s.replacements, &s.retirements, &s.rejected, &s.revoked, &s.stolen, &s.skipped}) {
    *v = d.get<std::uint64_t>();
  }
  s.pids = d.get<std::vector<int>>();
  return s;
}

void put_options(Encoder& e, const ClusterOptions& o) {
  e.put(o.workers_per_node);
  e.put(o.max_tasks_per_child);
  e.put(o.retries);
  e.put(o.restart_limit);
  e.put(ns(o.restart_window));
  e.put(o.task_timeout ? std::optional<std::int64_t>(ns(*o.task_timeout)) : std::nullopt);
  e.put(o.initializer ? std::optional<std::pair<std::string, std::string>>({o.initializer->task, o.initializer->args})
                      : std::nullopt);
  e.put(static_cast<std::uint64_t>(o.max_message));
  e.put(ns(o.terminate_grace));
  e.put(ns(o.idle_poll));
  e.put(o.spare_workers);
}

ClusterOptions get_options(Decoder& d) {
  ClusterOptions o;
  o.workers_per_node = d.get<unsigned>();
  o.max_tasks_per_child = d.get<unsigned>();
  o.retries = d.get<unsigned>();
  o.restart_limit = d.get<unsigned>();
  o.restart_window = std::chrono::nanoseconds(d.get<std::int64_t>());
  if (auto t = d.get<std::optional<std::int64_t>>()) o.task_timeout = std::chrono::nanoseconds(*t);
  if (auto i = d.get<std::optional<std::pair<std::string, std::string>>>()) {
    o.initializer = BoundCall{std::move(i->first), std::move(i->second)};
  }
  o.max_message = static_cast<std::size_t>(d.get<std::uint64_t>());
  o.terminate_grace = std::chrono::nanoseconds(d.get<std::int64_t>());
  o.idle_poll = std::chrono::nanoseconds(d.get<std::int64_t>());
  o.spare_workers = d.get<unsigned>();
  return o;
}

}  // namespace

std::string encode(const Message& m) {
  Encoder e;
  e.put(static_cast<std::uint8_t>(m.kind));
  switch (m.kind) {
    case Kind::open:
      put_options(e, m.options);
      break;
    case Kind::ready:
      e.put(m.capacity);
      e.put(m.pid);
      e.put(m.text);
      break;
    case Kind::open_failed:
    case Kind::broken:
      e.put(m.text);
      break;
    case Kind::offer:
      e.put(m.task);
      e.put(m.gen);
      e.put(m.chunk);
      e.put(m.timeout_ns);
      e.put(m.text);
      break;
    case Kind::claim:
    case Kind::go:
    case Kind::drop:
    case Kind::withdraw:
      e.put(m.task);
      e.put(m.gen);
      break;
    case Kind::answer:
      e.put(m.task);
      e.put(m.ok);
      e.put(m.text);
      break;
    case Kind::failure:
      e.put(m.task);
      e.put(static_cast<std::uint8_t>(m.error));
      e.put(m.pid);
      e.put(m.code);
      e.put(m.text);
      break;
    case Kind::stats:
      put_stats(e, m.stats);
      break;
    case Kind::terminate:
    case Kind::close:
    case Kind::closed:
    case Kind::finish:
      break;
  }
  return e.take();
}

Message decode(std::string_view bytes) {
  Decoder d(bytes);
  Message m;
  const auto k = d.get<std::uint8_t>();
  if (k < static_cast<std::uint8_t>(Kind::open) || k > static_cast<std::uint8_t>(Kind::finish)) {
    throw ProtocolError("keel cluster: unknown message kind " + std::to_string(k));
  }
  m.kind = static_cast<Kind>(k);
  switch (m.kind) {
    case Kind::open:
      m.options = get_options(d);
      break;
    case Kind::ready:
      m.capacity = d.get<std::uint32_t>();
      m.pid = d.get<std::int32_t>();
      m.text = d.get<std::string>();
      break;
    case Kind::open_failed:
    case Kind::broken:
      m.text = d.get<std::string>();
      break;
    case Kind::offer:
      m.task = d.get<std::uint64_t>();
      m.gen = d.get<std::uint64_t>();
      m.chunk = d.get<bool>();
      m.timeout_ns = d.get<std::optional<std::int64_t>>();
      m.text = d.get<std::string>();
      break;
    case Kind::claim:
    case Kind::go:
    case Kind::drop:
    case Kind::withdraw:
      m.task = d.get<std::uint64_t>();
      m.gen = d.get<std::uint64_t>();
      break;
    case Kind::answer:
      m.task = d.get<std::uint64_t>();
      m.ok = d.get<bool>();
      m.text = d.get<std::string>();
      break;
    case Kind::failure: {
      m.task = d.get<std::uint64_t>();
      const auto e = d.get<std::uint8_t>();
      if (e < static_cast<std::uint8_t>(Error::lost) || e > static_cast<std::uint8_t>(Error::other)) {
        throw ProtocolError("keel cluster: unknown failure kind " + std::to_string(e));
      }
      m.error = static_cast<Error>(e);
      m.pid = d.get<std::int32_t>();
      m.code = d.get<std::int32_t>();
      m.text = d.get<std::string>();
      break;
    }
    case Kind::stats:
      m.stats = get_stats(d);
      break;
    case Kind::terminate:
    case Kind::close:
    case Kind::closed:
    case Kind::finish:
      break;
  }
  d.expect_end();
  return m;
}

}  // namespace keel::cluster::proto
