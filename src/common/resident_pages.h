#pragma once

// The process's resident memory after start-up.

#include <cstddef>

namespace sluice {

// Drops this process's mappings of the read-only file pages it has touched so far: the
// executable's and the shared libraries' code and constants. Start-up runs code that never
// runs again (static initialisers, config parsing, validation), and the kernel maps code in
// 64 KiB windows around each page touched, so after start-up most of the executable is
// resident. Those pages are clean and stay in the page cache: what runs later maps back, from
// memory, what it uses. Only private, non-writable, file-backed mappings with no page of
// their own (no copy-on-write page, such as relocated RELRO data) are touched, so nothing is
// lost. Returns the bytes that were resident in the mappings dropped.
size_t releaseReadOnlyFilePages();

}  // namespace sluice
