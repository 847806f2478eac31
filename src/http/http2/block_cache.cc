#include "http/http2/block_cache.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/object_pool.h"

namespace sluice::http::http2 {

namespace {

// Every block starts with this header (16 bytes: the payload keeps malloc's alignment).
struct alignas(16) Header {
  uint64_t size;   // payload bytes usable
  uint32_t klass;  // 1..kClasses, or 0: from malloc directly, not cached
};
static_assert(sizeof(Header) == 16);

struct FreeBlock {
  FreeBlock* next;
};

struct Lists {
  FreeBlock* head[BlockCache::kClasses] = {};
  uint32_t count[BlockCache::kClasses] = {};
  ~Lists() {
    for (FreeBlock*& h : head) {
      while (h != nullptr) {
        FreeBlock* next = h->next;
        std::free(h);
        h = next;
      }
    }
  }
};

// The thread's lists, made on first use. The owner frees them when the thread exits; a
// block released after that (a session destroyed later in the thread's exit) goes to free().
thread_local Lists* t_lists = nullptr;
thread_local bool t_exited = false;
struct ListsOwner {
  ~ListsOwner() {
    delete t_lists;
    t_lists = nullptr;
    t_exited = true;
  }
};
thread_local ListsOwner t_owner;

Lists* lists() {
  if (t_lists == nullptr && !t_exited) {
    (void)&t_owner;  // registers the owner's destructor for this thread
    t_lists = new Lists();
  }
  return t_lists;
}

void* payloadOf(Header* h) { return h + 1; }
Header* headerOf(void* p) { return static_cast<Header*>(p) - 1; }

}  // namespace

void* BlockCache::allocate(size_t size) {
  const size_t total = size + sizeof(Header);
  if (total < size) return nullptr;
  Header* h;
  if (total > kMaxBlock) {
    h = static_cast<Header*>(std::malloc(total));
    if (h == nullptr) return nullptr;
    h->klass = 0;
    h->size = size;
    return payloadOf(h);
  }
  const uint32_t klass = static_cast<uint32_t>((total + kClassBytes - 1) / kClassBytes);
  Lists* l = lists();
  if (l != nullptr && l->head[klass - 1] != nullptr) {
    FreeBlock* b = l->head[klass - 1];
    l->head[klass - 1] = b->next;
    --l->count[klass - 1];
    h = reinterpret_cast<Header*>(b);
  } else {
    h = static_cast<Header*>(std::malloc(klass * kClassBytes));
    if (h == nullptr) return nullptr;
  }
  h->klass = klass;
  h->size = klass * kClassBytes - sizeof(Header);
  return payloadOf(h);
}

void* BlockCache::allocateZeroed(size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* p = allocate(count * size);
  if (p != nullptr) std::memset(p, 0, count * size);
  return p;
}

void* BlockCache::reallocate(void* p, size_t size) {
  if (p == nullptr) return allocate(size);
  Header* h = headerOf(p);
  if (h->klass != 0 && size <= h->size) return p;
  void* q = allocate(size);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, h->size < size ? h->size : size);
  release(p);
  return q;
}

void BlockCache::release(void* p) {
  if (p == nullptr) return;
  Header* h = headerOf(p);
  const uint32_t klass = h->klass;
#ifdef SLUICE_POOL_DISABLED
  Lists* l = nullptr;  // under ASan: every block goes back to free(), so reuse is seen
#else
  Lists* l = klass == 0 ? nullptr : lists();
#endif
  if (l == nullptr || l->count[klass - 1] >= kMaxFree) {
    std::free(h);
    return;
  }
  auto* b = reinterpret_cast<FreeBlock*>(h);
  b->next = l->head[klass - 1];
  l->head[klass - 1] = b;
  ++l->count[klass - 1];
}

size_t BlockCache::cachedBlocks() {
  Lists* l = lists();
  size_t n = 0;
  if (l != nullptr) {
    for (uint32_t c : l->count) n += c;
  }
  return n;
}

size_t BlockCache::cachedBlocks(size_t payload_size) {
  const size_t total = payload_size + sizeof(Header);
  Lists* l = lists();
  if (l == nullptr || total > kMaxBlock) return 0;
  return l->count[(total + kClassBytes - 1) / kClassBytes - 1];
}

nghttp2_mem* BlockCache::mem() {
  static nghttp2_mem m = {
      nullptr,
      [](size_t size, void*) { return BlockCache::allocate(size); },
      [](void* p, void*) { BlockCache::release(p); },
      [](size_t n, size_t size, void*) { return BlockCache::allocateZeroed(n, size); },
      [](void* p, size_t size, void*) { return BlockCache::reallocate(p, size); },
  };
  return &m;
}

}  // namespace sluice::http::http2
