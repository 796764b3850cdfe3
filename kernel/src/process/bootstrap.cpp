// keel::bootstrap: parent bookkeeping, or the whole life of a keel child.
#include "keel/process/bootstrap.hpp"

#include <cstdlib>

#include "keel/process/child.hpp"

namespace keel {

void bootstrap(int argc, char** argv) {
  detail::record_bootstrap(argc, argv);
  if (const auto code = detail::run_child_from_environment()) {
    // A normal exit: stdio is flushed and static destructors run, as after main().
    std::exit(*code & 0xff);
  }
}

}  // namespace keel
