// keel::SharedList's header: its publication by the creator and its check by
// an attacher, apart from the segment that holds it, so that
// models/process/queue_model.cpp runs them over plain memory under Relacy.
// See keel/process/shared_memory.hpp for the contract.
#include <string>

#include "keel/error.hpp"
#include "keel/platform/inject.hpp"
#include "keel/process/shared_memory.hpp"

namespace keel::detail {

void shared_list_publish(SharedListHeader& h, std::size_t element_size, std::size_t length) {
  h.element_size.store(element_size);
  h.length.store(length);
  h.magic.store(shared_list_magic,
                KEEL_INJECTED(shared_list_magic_relaxed) ? std::memory_order_relaxed : std::memory_order_release);
}

std::size_t shared_list_check(const SharedListHeader& h, std::size_t segment_size, std::size_t element_size,
                              const std::string& name) {
  if (h.magic.load(std::memory_order_acquire) != shared_list_magic) {
    throw ValueError("keel::SharedList::attach: " + name + " is not a SharedList (bad magic)");
  }
  const std::uint64_t held = h.element_size.load();
  if (held != element_size) {
    throw ValueError("keel::SharedList::attach: " + name + " holds elements of " + std::to_string(held) +
                     " bytes, not " + std::to_string(element_size));
  }
  const std::uint64_t length = h.length.load();
  if (element_size != 0 && length > (segment_size - shared_list_data_offset) / element_size) {
    throw ValueError("keel::SharedList::attach: " + name + " is too short for its length " + std::to_string(length));
  }
  return static_cast<std::size_t>(length);
}

}  // namespace keel::detail
