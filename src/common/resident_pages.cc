#include "common/resident_pages.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace sluice {
namespace {

struct Mapping {
  unsigned long start = 0, end = 0;  // NOLINT(google-runtime-int): sscanf's %lx
  bool candidate = false;            // private, read-only, file-backed
  size_t rss_kib = 0;
  size_t anonymous_kib = 0;
};

}  // namespace

size_t releaseReadOnlyFilePages() {
  // Read all of smaps first: madvise() while reading would change what it reports.
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return 0;
  std::vector<Mapping> mappings;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    Mapping m;
    char perms[5] = {};
    unsigned long inode = 0;  // NOLINT(google-runtime-int)
    if (std::sscanf(line, "%lx-%lx %4s %*s %*s %lu", &m.start, &m.end, perms, &inode) == 4) {
      m.candidate = inode != 0 && perms[0] == 'r' && perms[1] != 'w' && perms[3] == 'p';
      mappings.push_back(m);
      continue;
    }
    if (mappings.empty()) continue;
    size_t kib = 0;
    if (std::sscanf(line, "Rss: %zu kB", &kib) == 1) mappings.back().rss_kib = kib;
    if (std::sscanf(line, "Anonymous: %zu kB", &kib) == 1) mappings.back().anonymous_kib = kib;
  }
  std::fclose(f);
  size_t released = 0;
  for (const Mapping& m : mappings) {
    if (!m.candidate || m.rss_kib == 0 || m.anonymous_kib != 0) continue;
    if (madvise(reinterpret_cast<void*>(m.start), m.end - m.start, MADV_DONTNEED) == 0) {
      released += m.rss_kib * 1024;
    }
  }
  return released;
}

}  // namespace sluice
