#include "common/version.h"

#include "sluice_commit.h"  // SLUICE_COMMIT, made at build time (cmake/CommitStamp.cmake)

namespace sluice {
std::string_view version() { return SLUICE_VERSION; }
std::string_view buildCommit() { return SLUICE_COMMIT; }
}  // namespace sluice
