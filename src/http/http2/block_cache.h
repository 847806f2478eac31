#pragma once

// Memory for nghttp2 (its nghttp2_mem hooks): small blocks come from per-thread free lists
// by size class instead of malloc. nghttp2 makes about five small allocations per stream
// (the stream, its outbound frames, a copy of the response's header list, HPACK entries),
// and a connection's streams open and close in batches, more at once than glibc's
// per-thread cache keeps per size: those went to malloc's slower paths.
//
// Each thread keeps at most kMaxFree blocks per class (at most about 150 KiB in all), and
// gives them back when it exits; a block may be freed on another thread than the one that
// allocated it. Blocks over kMaxBlock bytes go to malloc directly.

#include <cstddef>

#include <nghttp2/nghttp2.h>

namespace sluice::http::http2 {

class BlockCache {
 public:
  static constexpr size_t kClassBytes = 64;
  static constexpr size_t kClasses = 8;  // blocks up to 512 bytes, header included
  static constexpr size_t kMaxBlock = kClassBytes * kClasses;
  static constexpr size_t kMaxFree = 64;  // per class, per thread

  static void* allocate(size_t size);
  static void* allocateZeroed(size_t count, size_t size);
  static void* reallocate(void* p, size_t size);
  static void release(void* p);

  // The hooks to hand nghttp2 (nghttp2_session_*_new3).
  static nghttp2_mem* mem();

  // Blocks on this thread's free lists, of all classes or of the class that serves
  // `payload_size` (for tests).
  static size_t cachedBlocks();
  static size_t cachedBlocks(size_t payload_size);
};

}  // namespace sluice::http::http2
