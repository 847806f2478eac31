#pragma once

// SLUICE_ASSERT: checked in debug and sanitizer builds, compiled out in release builds
// (NDEBUG). SLUICE_RELEASE_ASSERT: always checked. Both abort with the condition, the place
// and a message: a broken invariant is a bug, never an error to recover from.

namespace sluice {
[[noreturn]] void assertFailed(const char* cond, const char* file, int line, const char* msg);
}  // namespace sluice

#define SLUICE_RELEASE_ASSERT(cond, msg)                               \
  do {                                                                 \
    if (!(cond)) [[unlikely]] {                                        \
      ::sluice::assertFailed(#cond, __FILE__, __LINE__, (msg));        \
    }                                                                  \
  } while (false)

#ifdef NDEBUG
#define SLUICE_ASSERT(cond, msg) \
  do {                           \
  } while (false && (cond))
#else
#define SLUICE_ASSERT(cond, msg) SLUICE_RELEASE_ASSERT(cond, msg)
#endif
