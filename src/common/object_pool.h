#pragma once

// Per-thread free lists for objects made and destroyed once per request.
//
// A proxied request makes and frees a handful of objects (the stream, its filter entries,
// the router, the upstream try, two header maps). With many streams in flight they are
// freed in batches (deferred deletion at the end of an event loop pass) and made again in
// batches, which overflows glibc's small per-thread cache (7 blocks a size): most of them
// then take malloc's slow paths. A class that derives from Pooled<T> (or a shared_ptr made
// with PoolAllocator) keeps up to kMaxCached freed blocks of its size on the freeing thread
// and reuses them, last freed first.
//
// What it promises: the same as new/delete, for blocks of exactly sizeof(T) (a derived class
// of another size goes to the global allocator). A block freed on another thread joins that
// thread's list (the blocks are plain heap memory). A thread's blocks are freed when it
// exits; a block freed after that goes straight to the global allocator. Under ASan the
// lists are off, so that every use after free is seen.

#include <cstddef>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define SLUICE_POOL_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLUICE_POOL_DISABLED 1
#endif
#endif

namespace sluice {

namespace detail {

// The free list of one block size on one thread.
template <size_t Size, size_t Align>
class FreeList {
 public:
  // At most this many blocks wait for reuse on a thread (a block is a few hundred bytes
  // to 1 KiB: at most a few hundred KiB in all, after a burst of concurrent streams).
  static constexpr size_t kMaxCached = 128;

  static void* allocate() {
#ifndef SLUICE_POOL_DISABLED
    FreeList& l = local();
    if (l.head_ != nullptr) {
      Node* n = l.head_;
      l.head_ = n->next;
      --l.count_;
      return n;
    }
#endif
    return rawAllocate();
  }

  static void deallocate(void* p) {
#ifndef SLUICE_POOL_DISABLED
    FreeList& l = local();
    if (l.alive_ && l.count_ < kMaxCached) {
      l.head_ = new (p) Node{l.head_};
      ++l.count_;
      return;
    }
#endif
    rawFree(p);
  }

  // Blocks waiting on this thread (for tests).
  static size_t cached() { return local().count_; }

 private:
  struct Node {
    Node* next;
  };
  static_assert(Size >= sizeof(Node));

  ~FreeList() {
    while (head_ != nullptr) {
      Node* next = head_->next;
      rawFree(head_);
      head_ = next;
    }
    count_ = 0;
    alive_ = false;
  }

  static void* rawAllocate() {
    if constexpr (Align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      return ::operator new(Size, std::align_val_t(Align));
    } else {
      return ::operator new(Size);
    }
  }
  static void rawFree(void* p) {
    if constexpr (Align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      ::operator delete(p, std::align_val_t(Align));
    } else {
      ::operator delete(p);
    }
  }

  static FreeList& local() {
    thread_local FreeList list;
    return list;
  }

  Node* head_{nullptr};
  size_t count_{0};
  bool alive_{true};
};

template <class T>
using FreeListFor = FreeList<sizeof(T), alignof(T) < alignof(void*) ? alignof(void*) : alignof(T)>;

}  // namespace detail

// Derive T from Pooled<T> to allocate it from its thread's free list.
template <class T>
struct Pooled {
  static void* operator new(size_t size) {
    if (size != sizeof(T)) return ::operator new(size);
    return detail::FreeListFor<T>::allocate();
  }
  static void operator delete(void* p, size_t size) {
    if (size != sizeof(T)) {
      ::operator delete(p);
      return;
    }
    detail::FreeListFor<T>::deallocate(p);
  }
};

// An allocator over the free lists, for std::allocate_shared (one block holding the object
// and its count).
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) {}

  T* allocate(size_t n) {
    if (n != 1) return static_cast<T*>(::operator new(n * sizeof(T)));
    return static_cast<T*>(detail::FreeListFor<T>::allocate());
  }
  void deallocate(T* p, size_t n) {
    if (n != 1) {
      ::operator delete(p);
      return;
    }
    detail::FreeListFor<T>::deallocate(p);
  }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const {
    return true;
  }
};

}  // namespace sluice
