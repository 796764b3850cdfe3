// keel::SharedMemory and keel::SharedList<T>: named POSIX shared memory
// (Python's multiprocessing.shared_memory.SharedMemory and ShareableList).
//
// SharedMemory contract: create(name, size) makes a new segment, exclusive by
// default (an existing name is OsError EEXIST, never silently reused), with
// permission bits exactly `mode` (default 0600: only this user; the umask does
// not widen or narrow them), zero-filled and mapped read-write. attach(name)
// maps an existing segment whole (OsError ENOENT when there is none). A name
// is 1 to 200 characters of [A-Za-z0-9._-], optionally after one leading '/'
// (added when missing), and not "." or ".."; anything else is ValueError.
// Every failed OS call is OsError with its errno, and a failed create leaves
// nothing behind (no segment, no mapping, no descriptor). close() unmaps (the
// destructor does too); unlink() removes the name, after which attach fails
// while existing mappings stay valid until closed. The descriptor is closed
// right after mapping, so an open SharedMemory holds no file descriptor.
//
// Non-exclusive create: an existing segment is reused (grown to `size` when
// smaller) only when its permission bits are exactly `mode`; otherwise it is
// OsError EEXIST naming both modes, and the segment is left as it was. Only a
// segment the call itself created counts as created by this process.
//
// Lifetime (LIFE-1): a segment this process created with track = true (the
// default) is unlinked when this process ends, however it ends (SIGKILL
// included), by a helper process, the cleanup tracker, started on the first
// such create; so a rerun after a crash finds the name free. To let a segment
// outlive its creator, hand it on: keep() (or create with track = false).
// unlink() and keep() end the tracking; is_tracked() tells. The tracker
// removes a name only while it still names the segment this process created
// (LIFE-2), costs this process no descriptor and no child (LIFE-3), ignores
// Ctrl-C and SIGTERM sent to the job, and is replaced by the next create if
// it was killed. A fork()ed child does not share its parent's tracking: the
// parent's segments go when the parent ends, the child's when the child ends.
// When no tracker can be started (before Linux 5.3, or fork refused), a
// tracked create is OsError and creates nothing; track = false still works.
// create_unique(prefix, ...) picks a fresh name: the prefix (up to 184
// characters, may be empty) and 16 random hex digits from getrandom, retried
// while the name exists. The details live in kernel/src/process/resource_tracker.hpp.
//
// SharedList<T> contract: a fixed-length array of trivially copyable T in a
// SharedMemory, after a 64-byte header (magic, element size, length) that
// attach validates: a segment that is not a SharedList, or one of another
// element size, or one too short for its length, is ValueError. get/set copy
// one element; an index out of range is ValueError and changes nothing.
// Element access is not synchronized: concurrent writers of one element must
// use their own lock (e.g. a keel::RobustMutex in another segment). A list is
// always created exclusively (exclusive = false is ValueError): reusing a
// segment would re-shape a list that others may be using.
//
// Invariants: IPC-1 (a malformed segment is an error, never a crash), LIFE-1
// (a created segment is unlinked when its creator dies unless handed on),
// LIFE-2 (only the segment the creator made is removed), LIFE-3 (tracking
// holds no descriptor and no child), LIFE-4 (a non-exclusive create never
// silently reuses a segment with other permission bits), IPC-3 (an attacher
// sees a list's whole header or none), LIFE-11 (the tracker's lock is held
// across fork(), so a forked child can create tracked segments).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/var.hpp"

namespace keel {

/// How a new segment is created.
struct SharedMemoryOptions {
  bool exclusive = true;  ///< false: reuse an existing segment of that name (grown to `size` if smaller)
  unsigned mode = 0600;   ///< permission bits of a new segment (an existing one must have them); only 0777 bits
  bool track = true;      ///< unlink a segment this process created when it ends, unless kept or unlinked first
};

/// A handle to a named POSIX shared-memory segment, mapped (Python's SharedMemory).
class SharedMemory {
 public:
  /// A new zero-filled segment of `size` bytes under `name` (OsError EEXIST if it exists, unless options say
  /// otherwise).
  static SharedMemory create(std::string_view name, std::size_t size, SharedMemoryOptions options = {});
  /// A new segment named prefix + 16 random hex digits (always exclusive:
  /// exclusive = false is ValueError). ValueError for a prefix of other
  /// characters than a name's or longer than 184.
  static SharedMemory create_unique(std::string_view prefix, std::size_t size, SharedMemoryOptions options = {});
  /// Maps the existing segment `name` whole (OsError ENOENT when there is none).
  static SharedMemory attach(std::string_view name);
  /// Removes a segment by name without mapping it (cleanup of a known name).
  static void unlink(std::string_view name);
  /// The canonical form of a name ("/name"); ValueError when it is invalid.
  static std::string normalize_name(std::string_view name);

  SharedMemory() noexcept = default;  ///< closed
  /// Takes other's mapping; other is left closed.
  SharedMemory(SharedMemory&& other) noexcept;
  /// Closes this mapping, then takes other's.
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  /// Unmaps (close()); the segment and its name stay.
  ~SharedMemory() { close(); }

  /// The start of the mapping (null when closed).
  void* data() const noexcept { return data_; }
  /// The mapping's size in bytes.
  std::size_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }  ///< "/name"; kept after close()
  /// Whether it is mapped.
  bool is_open() const noexcept { return data_ != nullptr; }

  /// Unmaps the segment; idempotent. The name stays until unlink().
  void close() noexcept;
  /// Removes the name (OsError ENOENT if it is already gone); the mapping stays.
  /// Either way this process no longer tracks the name.
  void unlink();
  /// Hands the segment on: this process will not unlink it when it ends.
  /// True when it was tracked (false for one this process did not create, or
  /// one already kept or unlinked). MisuseError for a handle with no segment.
  bool keep();
  /// Whether this process will unlink the segment when it ends.
  bool is_tracked() const noexcept;

 private:
  SharedMemory(std::string name, void* data, std::size_t size) noexcept
      : name_(std::move(name)), data_(data), size_(size) {}

  std::string name_;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

namespace detail {

// A SharedList's header, at offset 0 of its segment. The magic is stored last
// (release), so an attacher never trusts a half-written header. The shape
// fields are Vars: written once by the creator before the magic, read by
// attachers after it, so a weakened publication is a data race in the model
// (models/process/queue_model.cpp).
struct SharedListHeader {
  platform::Atomic<std::uint64_t> magic{0};
  platform::Var<std::uint64_t> element_size;
  platform::Var<std::uint64_t> length;
};
inline constexpr std::size_t shared_list_data_offset = 64;
// (A model's atomics and Vars are the checker's larger objects; the model
// puts the header in plain memory of its own size.)
static_assert(KEEL_MODEL || sizeof(SharedListHeader) <= shared_list_data_offset);
inline constexpr std::uint64_t shared_list_magic = 0x5453494C4C45454BULL;  // "KEELLIST" as LE bytes

// Writes the shape into a freshly constructed header, then publishes it (the
// magic last, with release).
void shared_list_publish(SharedListHeader& h, std::size_t element_size, std::size_t length);
// The length of the list whose header h heads a segment of segment_size
// bytes (at least shared_list_data_offset), holding elements of
// element_size bytes; ValueError naming `name` when h is unpublished (bad
// magic), of another element size, or longer than the segment holds.
std::size_t shared_list_check(const SharedListHeader& h, std::size_t segment_size, std::size_t element_size,
                              const std::string& name);

// unique: `name` is a prefix for SharedMemory::create_unique.
SharedMemory shared_list_create(std::string_view name, std::size_t element_size, std::size_t length,
                                SharedMemoryOptions options, bool unique = false);
// Maps and validates; returns the memory and its length.
std::pair<SharedMemory, std::size_t> shared_list_attach(std::string_view name, std::size_t element_size);
[[noreturn]] void shared_list_index_error(std::size_t index, std::size_t length);
// The pid of this process's cleanup tracker, 0 before its first tracked
// create (diagnostics and tests).
int shared_memory_tracker_pid() noexcept;

// Test seams, never set outside tests. A tracker registry first mapped while
// the capacity is between 1 and 65535 holds that many names (so that a full
// registry takes a handful of segments, not 65536); a set suffix source
// replaces the 16 random hex digits of create_unique (so that a test can make
// every attempt collide).
inline std::uint32_t shared_memory_test_tracker_capacity = 0;
inline std::string (*shared_memory_test_unique_suffix)() = nullptr;

}  // namespace detail

/// A fixed-length array of trivially copyable T in shared memory (Python's ShareableList).
template <class T>
class SharedList {
  static_assert(std::is_trivially_copyable_v<T>, "SharedList<T> needs a trivially copyable T");
  static_assert(alignof(T) <= detail::shared_list_data_offset, "SharedList<T>: T is over-aligned");

 public:
  /// A new list of `length` value-initialized elements (zero bytes).
  static SharedList create(std::string_view name, std::size_t length, SharedMemoryOptions options = {}) {
    return SharedList(detail::shared_list_create(name, sizeof(T), length, options), length);
  }
  /// A new list named prefix + 16 random hex digits (see SharedMemory::create_unique).
  static SharedList create_unique(std::string_view prefix, std::size_t length, SharedMemoryOptions options = {}) {
    return SharedList(detail::shared_list_create(prefix, sizeof(T), length, options, true), length);
  }
  /// Maps the list `name` (ValueError if it is not a SharedList of T-sized elements).
  static SharedList attach(std::string_view name) {
    auto [memory, length] = detail::shared_list_attach(name, sizeof(T));
    return SharedList(std::move(memory), length);
  }

  /// A closed list.
  SharedList() noexcept = default;

  /// Its number of elements (0 when closed).
  std::size_t size() const noexcept { return length_; }

  /// A copy of element `index` (ValueError out of range).
  T get(std::size_t index) const {
    check(index);
    std::array<unsigned char, sizeof(T)> bytes;
    std::memcpy(bytes.data(), element(index), sizeof(T));
    return std::bit_cast<T>(bytes);  // no default constructor needed
  }
  /// Writes element `index` (ValueError out of range); not atomic: guard concurrent writers.
  void set(std::size_t index, const T& value) {
    check(index);
    std::memcpy(element(index), static_cast<const void*>(&value), sizeof(T));
  }

  /// The segment it lives in.
  SharedMemory& memory() noexcept { return memory_; }
  /// Its segment's name ("/name").
  const std::string& name() const noexcept { return memory_.name(); }
  /// Unmaps it (SharedMemory::close); size() is 0 from then on.
  void close() noexcept {
    memory_.close();
    length_ = 0;
  }
  /// Removes its name (SharedMemory::unlink).
  void unlink() { memory_.unlink(); }
  bool keep() { return memory_.keep(); }  ///< see SharedMemory::keep
  /// See SharedMemory::is_tracked.
  bool is_tracked() const noexcept { return memory_.is_tracked(); }

 private:
  SharedList(SharedMemory memory, std::size_t length) noexcept : memory_(std::move(memory)), length_(length) {}

  void check(std::size_t index) const {
    if (index >= length_) detail::shared_list_index_error(index, length_);
  }
  void* element(std::size_t index) const noexcept {
    return static_cast<char*>(memory_.data()) + detail::shared_list_data_offset + index * sizeof(T);
  }

  SharedMemory memory_;
  std::size_t length_ = 0;
};

}  // namespace keel
