#pragma once

#include <string_view>

namespace sluice {
// "0.1.0", and the git commit the binary was built from ("unknown" outside a checkout).
std::string_view version();
std::string_view buildCommit();
}  // namespace sluice
