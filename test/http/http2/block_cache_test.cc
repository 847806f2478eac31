#include "http/http2/block_cache.h"

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/object_pool.h"

namespace sluice::http::http2 {
namespace {

// Under ASan the lists are off (every block goes back to free()): the tests of caching skip.
#ifndef SLUICE_POOL_DISABLED
TEST(BlockCacheTest, ReleasedBlocksAreReusedUpToTheLimit) {
  std::vector<void*> blocks;
  for (size_t i = 0; i < BlockCache::kMaxFree + 10; ++i) blocks.push_back(BlockCache::allocate(100));
  for (void* p : blocks) {
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);  // malloc's alignment
    std::memset(p, 0xab, 100);
  }
  for (void* p : blocks) BlockCache::release(p);
  // The class of 100-byte payloads keeps at most kMaxFree; the rest went back to malloc.
  EXPECT_EQ(BlockCache::cachedBlocks(100), BlockCache::kMaxFree);
  void* again = BlockCache::allocate(90);  // same class: served from the list
  EXPECT_EQ(BlockCache::cachedBlocks(100), BlockCache::kMaxFree - 1);
  BlockCache::release(again);
  BlockCache::release(nullptr);
}
#endif

TEST(BlockCacheTest, LargeBlocksBypassTheLists) {
  const size_t before = BlockCache::cachedBlocks();
  void* p = BlockCache::allocate(BlockCache::kMaxBlock);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, BlockCache::kMaxBlock);
  BlockCache::release(p);
  EXPECT_EQ(BlockCache::cachedBlocks(), before);
}

TEST(BlockCacheTest, ZeroedAndReallocatedBlocksKeepTheirContents) {
  auto* z = static_cast<unsigned char*>(BlockCache::allocateZeroed(10, 30));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 300; ++i) EXPECT_EQ(z[i], 0) << i;
  BlockCache::release(z);
  EXPECT_EQ(BlockCache::allocateZeroed(SIZE_MAX / 2, 4), nullptr);  // overflow

  auto* p = static_cast<char*>(BlockCache::reallocate(nullptr, 20));
  ASSERT_NE(p, nullptr);
  std::memcpy(p, "0123456789abcdefghi", 20);
  // Within its class: the same block.
  EXPECT_EQ(BlockCache::reallocate(p, 40), p);
  // Beyond it, and beyond the cached sizes: moved, contents kept.
  auto* q = static_cast<char*>(BlockCache::reallocate(p, 300));
  ASSERT_NE(q, nullptr);
  EXPECT_STREQ(q, "0123456789abcdefghi");
  auto* r = static_cast<char*>(BlockCache::reallocate(q, 5000));
  ASSERT_NE(r, nullptr);
  EXPECT_STREQ(r, "0123456789abcdefghi");
  auto* s = static_cast<char*>(BlockCache::reallocate(r, 9000));
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(s, "0123456789abcdefghi");
  BlockCache::release(s);
}

#ifndef SLUICE_POOL_DISABLED
TEST(BlockCacheTest, BlocksMayBeReleasedOnAnotherThread) {
  std::vector<void*> blocks;
  for (int i = 0; i < 20; ++i) blocks.push_back(BlockCache::allocate(static_cast<size_t>(i) * 20));
  std::thread other([&] {
    for (void* p : blocks) BlockCache::release(p);
    EXPECT_EQ(BlockCache::cachedBlocks(), blocks.size());
    // This thread's lists are freed when it exits (the leak checker of a sanitizer build
    // would report them otherwise).
  });
  other.join();
}
#endif

}  // namespace
}  // namespace sluice::http::http2
