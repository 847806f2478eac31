#pragma once

// A vector whose first N elements live inside the object: the short per-request lists (a
// stream's filters, a router's tries, its watermark listeners) cost no allocation. Past N it
// moves its elements to the heap as std::vector would. Only what the request path uses:
// push/emplace at the back, pop_back, erase, indexing and iteration. Not copyable, not
// movable (its owner's address is what its elements refer to anyway).

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <new>
#include <utility>

namespace sluice {

template <class T, size_t N>
class SmallVector {
 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  SmallVector() = default;
  SmallVector(const SmallVector&) = delete;
  SmallVector& operator=(const SmallVector&) = delete;
  ~SmallVector() {
    clear();
    if (data_ != inlineData()) ::operator delete(data_);
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  std::reverse_iterator<T*> rbegin() { return std::reverse_iterator<T*>(end()); }
  std::reverse_iterator<T*> rend() { return std::reverse_iterator<T*>(begin()); }

  template <class... Args>
  T& emplace_back(Args&&... args) {
    if (size_ == capacity_) grow();
    T* p = new (data_ + size_) T(std::forward<Args>(args)...);
    ++size_;
    return *p;
  }
  void push_back(T&& v) { emplace_back(std::move(v)); }
  void push_back(const T& v) { emplace_back(v); }
  void pop_back() { data_[--size_].~T(); }
  // Removes the element at `pos`; later elements move down one. Returns the element after it.
  T* erase(T* pos) { return erase(pos, pos + 1); }
  T* erase(T* first, T* last) {
    T* out = std::move(last, end(), first);
    while (end() != out) pop_back();
    return first;
  }
  void clear() {
    while (size_ > 0) pop_back();
  }

 private:
  T* inlineData() { return reinterpret_cast<T*>(inline_); }
  void grow() {
    const size_t capacity = capacity_ * 2;
    T* data = static_cast<T*>(::operator new(capacity * sizeof(T)));
    for (size_t i = 0; i < size_; ++i) {
      new (data + i) T(std::move(data_[i]));
      data_[i].~T();
    }
    if (data_ != inlineData()) ::operator delete(data_);
    data_ = data;
    capacity_ = static_cast<uint32_t>(capacity);
  }

  static_assert(N > 0);
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  T* data_{inlineData()};
  uint32_t size_{0};  // 32-bit: 8 bytes less in every owner (a connection holds one)
  uint32_t capacity_{N};
  alignas(T) unsigned char inline_[N * sizeof(T)];
};

}  // namespace sluice
