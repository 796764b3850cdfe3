// keel::cluster::LoopbackFabric: nodes that are threads of this process.
#include "transport.hpp"

#include "keel/platform/thread.hpp"
#include "node_agent.hpp"
#include "protocol.hpp"

namespace keel::cluster {

struct LoopbackFabric::Line final : Endpoint {
  Line(Waker& driver, std::string w) : to_driver(driver), where(std::move(w)) {}
  void send(std::string bytes) override { to_driver.push(std::move(bytes)); }
  bool receive(std::string& bytes) override { return to_node.pop(bytes); }
  void idle(Nanos max) override { waker_.sleep(max); }

  Mailbox to_node{waker_};
  Mailbox to_driver;
  std::string where;
  platform::Thread thread;
};

LoopbackFabric::LoopbackFabric(unsigned nodes, Waker& driver) {
  lines_.reserve(nodes);
  for (unsigned n = 0; n < nodes; ++n)
    lines_.push_back(std::make_unique<Line>(driver, "local node " + std::to_string(n)));
  for (auto& l : lines_) {
    Line* line = l.get();
    line->thread.start([line] { serve_node(*line, line->where, true); });
  }
}

LoopbackFabric::~LoopbackFabric() {
  // Normally finish() joined them; after a failed start they are told to go.
  for (auto& l : lines_) {
    if (l->thread.joinable()) l->to_node.push(proto::bare_message(proto::Kind::finish));
  }
  finish();
}

std::string LoopbackFabric::where(unsigned node) const {
  return node < lines_.size() ? lines_[node]->where : "local node ?";
}

void LoopbackFabric::send(unsigned node, std::string bytes) {
  if (node < lines_.size()) lines_[node]->to_node.push(std::move(bytes));
}

bool LoopbackFabric::receive(unsigned& node, std::string& bytes) {
  const unsigned n = nodes();
  for (unsigned i = 0; i < n; ++i) {
    const unsigned at = (next_ + i) % n;
    if (lines_[at]->to_driver.pop(bytes)) {
      node = at;
      next_ = (at + 1) % n;
      return true;
    }
  }
  return false;
}

void LoopbackFabric::finish() {
  for (auto& l : lines_) {
    if (l->thread.joinable()) l->thread.join();
  }
}

}  // namespace keel::cluster
