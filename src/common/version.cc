#include "common/version.h"

namespace sluice {
std::string_view version() { return SLUICE_VERSION; }
std::string_view buildCommit() { return SLUICE_COMMIT; }
}  // namespace sluice
