#pragma once

// The process's resident memory after start-up.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace sluice {

// Drops this process's mappings of the read-only file pages its loaded objects (the
// executable and the shared libraries the loader knows) have touched so far: their code and
// constants. Start-up runs code that never runs again (static initialisers, config parsing,
// validation), and the kernel maps code in 64 KiB windows around each page touched, so after
// start-up most of the executable is resident. Those pages are clean and stay in the page
// cache: what runs later maps back, from memory, what it uses.
//
// Only the segments the objects' program headers declare not writable are candidates (never
// relocated data, which lives in the writable segments, RELRO included), and of those only
// the parts whose mapping (/proc/self/smaps) is private and file-backed and holds no page
// of its own, in memory or in swap (a debugger's breakpoint, say): dropping them loses
// nothing. The candidates come from the loader's list (dl_iterate_phdr): an object that a
// thread is loading meanwhile, whose mappings are not final yet, is not on it (and Sluice
// unloads no object). Returns the bytes of address space released.
size_t releaseReadOnlyFilePages();

namespace detail {

// One mapping of /proc/self/smaps, as far as the release needs it.
struct SmapsMapping {
  uintptr_t start = 0;
  uintptr_t end = 0;
  // Private, not writable, backed by a file, and its Rss, Anonymous and Swap lines were all
  // seen, with Anonymous and Swap 0.
  bool releasable = false;
};

std::vector<SmapsMapping> parseSmaps(std::string_view text);

}  // namespace detail
}  // namespace sluice
