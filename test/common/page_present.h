#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>

namespace sluice::test {

// Whether the page holding `p` is mapped in this process (bit 63 of its /proc/self/pagemap
// entry; readable without privileges). True when pagemap cannot be read, so that a check of
// "not present" cannot pass by accident.
inline bool pagePresent(const void* p) {
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  uint64_t entry = 0;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / page * sizeof(entry));
  const bool ok = pread(fd, &entry, sizeof(entry), at) == sizeof(entry);
  close(fd);
  return !ok || (entry >> 63) != 0;
}

}  // namespace sluice::test
