#pragma once

// Buffer: an owned chain of slices, the byte container that connections, codecs and filters
// pass around. Each slice owns one heap block; the readable bytes of the buffer are the data
// regions of its slices, in order. What it promises:
//
// - move(other) and prepend(other) hand whole slices over without copying their bytes (only
//   slices of at most kCopyThreshold bytes that fit in the tail of this buffer's last slice
//   are copied, so that many small moves do not build a chain of tiny slices).
// - add() fills the free space after the last slice before it allocates a new one; slices of
//   the default size are recycled through a small per-thread cache, so a steady read/write
//   loop does not call malloc.
// - Nothing on the data path throws; readFrom()/writeTo() return errno values in IoResult.
// - Every mutating method ends with one call to the virtual onLengthChanged() of each buffer
//   it changed (this and, for moves, the source), which is how WatermarkBuffer tracks its
//   length whatever API drained or filled it.
//
// A Buffer is not thread-safe; it may be handed to another thread as a whole.

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::buffer {

// A readable or writable region of a buffer, layout-compatible in spirit with iovec.
struct RawSlice {
  void* mem = nullptr;
  size_t len = 0;

  bool operator==(const RawSlice&) const = default;
};

// The result of readFrom()/writeTo(): bytes moved by the one syscall, or the errno it failed
// with. A read of 0 bytes with err == 0 is end of stream.
struct IoResult {
  size_t bytes = 0;
  int err = 0;
  size_t offered = 0;  // readFrom: the space the read offered (bytes < offered: a short read)

  bool ok() const { return err == 0; }
  bool again() const { return err == EAGAIN || err == EWOULDBLOCK; }
};

namespace detail {

// One heap block of capacity() bytes: [start, end) is readable data, [end, capacity) is
// free space that add() and reservations fill, [0, start) is headroom that prepend() fills.
// Move-only; an empty (default or moved-from) slice owns nothing.
class Slice {
 public:
  Slice() = default;
  // A slice of at least min_capacity bytes (kDefaultSliceSize when that is enough).
  explicit Slice(size_t min_capacity);
  ~Slice();
  Slice(Slice&& other) noexcept;
  Slice& operator=(Slice&& other) noexcept;
  Slice(const Slice&) = delete;
  Slice& operator=(const Slice&) = delete;

  uint8_t* data() const { return base_ + start_; }
  size_t dataSize() const { return end_ - start_; }
  uint8_t* tail() const { return base_ + end_; }
  size_t reservableSize() const { return capacity_ - end_; }
  size_t headroom() const { return start_; }
  size_t capacity() const { return capacity_; }
  uint8_t* base() const { return base_; }

  // Copies up to size bytes after the data; returns how many fit.
  size_t append(const void* data, size_t size);
  // Copies the last up-to-headroom() bytes of [data, data + size) before the data; returns how
  // many fit (they are the tail of the input).
  size_t prependTail(const void* data, size_t size);
  // Makes size bytes written after the data readable.
  void commit(size_t size) { end_ += size; }
  void drainFront(size_t size) { start_ += size; }
  void truncate(size_t size) { end_ = start_ + size; }
  // Empties the slice and places its (empty) data region at offset.
  void resetAt(size_t offset) { start_ = end_ = offset; }

 private:
  void release();

  // 32-bit offsets (a slice is at most 4 GiB, far above any buffer limit): 24 bytes a slice
  // instead of 32.
  uint8_t* base_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t start_ = 0;
  uint32_t end_ = 0;
};

// A double-ended queue of slices in a power-of-two ring. An empty ring holds no slots: its
// first ones (kFirstCapacity) come from the thread's free list when a slice comes in and go
// back when the last leaves. Every connection holds two buffers for its life, empty while
// it is idle, and two slots inside each would cost it 96 bytes; a ring that grows past them
// allocates, as before.
class SliceRing {
 public:
  SliceRing() = default;
  ~SliceRing();
  SliceRing(SliceRing&& other) noexcept;
  SliceRing& operator=(SliceRing&&) = delete;
  SliceRing(const SliceRing&) = delete;
  SliceRing& operator=(const SliceRing&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Slots held now (for tests): 0 when empty.
  size_t capacity() const { return capacity_; }
  Slice& operator[](size_t i) { return slots_[(head_ + i) & (capacity_ - 1)]; }
  const Slice& operator[](size_t i) const { return slots_[(head_ + i) & (capacity_ - 1)]; }
  Slice& front() { return (*this)[0]; }
  const Slice& front() const { return (*this)[0]; }
  Slice& back() { return (*this)[size_ - 1]; }
  const Slice& back() const { return (*this)[size_ - 1]; }

  void pushBack(Slice&& slice);
  void pushFront(Slice&& slice);
  void popFront();
  void popBack();
  // Exchanges the two rings' slots and slices (no slice moves, no slots taken or given).
  void swap(SliceRing& other) noexcept;

 private:
  // Two: a connection's buffers hold one or two slices on the request path (a read, or the
  // headers with a small body copied in behind them).
  static constexpr uint32_t kFirstCapacity = 2;

  // The first slots (the common case: a short function), or twice as many.
  void grow();
  void growSlow();
  // The last slice left (all slots are empty): the slots go.
  void releaseSlots();

  Slice* slots_ = nullptr;
  // 32-bit counts (a ring never holds 4 billion slices): 16 bytes a buffer instead of 24.
  uint32_t capacity_ = 0;
  uint32_t head_ = 0;
  uint32_t size_ = 0;
};

}  // namespace detail

class Buffer;

// Writable regions handed out by Buffer::reserveForRead(), to be filled in order and then
// handed back to Buffer::commit(). Blocks not committed are released when the reservation is
// destroyed. The buffer must not be changed between reserveForRead() and commit().
class Reservation {
 public:
  static constexpr size_t kMaxSlices = 8;

  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;

  const RawSlice* slices() const { return slices_; }
  size_t numSlices() const { return num_slices_; }
  // Total writable bytes over all the slices.
  size_t length() const { return length_; }

 private:
  friend class Buffer;
  void reset();

  RawSlice slices_[kMaxSlices];
  // owned_[i] backs slices_[i + (uses_tail_ ? 1 : 0)].
  detail::Slice owned_[kMaxSlices];
  size_t num_slices_ = 0;
  size_t length_ = 0;
  bool uses_tail_ = false;
  const Buffer* owner_ = nullptr;
};

class Buffer {
 public:
  static constexpr size_t kDefaultSliceSize = 16 * 1024;
  // Slices moved in that are at most this big are copied into the last slice when they fit.
  static constexpr size_t kCopyThreshold = 512;
  static constexpr size_t kDefaultReadReservation = 4 * kDefaultSliceSize;
  // writeTo() hands at most this many slices to one writev().
  static constexpr size_t kMaxWriteSlices = 16;

  Buffer() = default;
  virtual ~Buffer() = default;
  // Takes other's slices; other becomes empty.
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t length() const { return length_; }
  bool empty() const { return length_ == 0; }

  // Appends a copy of the bytes.
  void add(const void* data, size_t size);
  void add(std::string_view data) { add(data.data(), data.size()); }
  void add(const Buffer& other);

  // Puts a copy of data (or all of other's slices, leaving it empty) before the first byte.
  void prepend(std::string_view data);
  void prepend(Buffer& other);

  // Appends all of other's slices (or its first `length` bytes, which must exist), leaving
  // other without them. Whole slices change hands without a copy; a slice split by `length`
  // is split by copying its smaller side.
  void move(Buffer& other);
  void move(Buffer& other, size_t length);

  // Removes the first `size` bytes, which must exist.
  void drain(size_t size);

  // Copies bytes [start, start + size), which must exist, to out.
  void copyOut(size_t start, size_t size, void* out) const;
  std::string toString() const;

  // Index of the first occurrence of the needle at or after start, or -1. An empty needle is
  // found at start when start <= length().
  ssize_t search(const void* data, size_t size, size_t start = 0) const;
  bool startsWith(std::string_view prefix) const;

  // Makes the first `size` bytes (which must exist) contiguous and returns them; copies only
  // when they span slices. nullptr when size == 0 and the buffer is empty.
  void* linearize(size_t size);

  // The readable slices, in order, without copying. Pointers stay valid until the next
  // mutation of the buffer.
  RawSlice frontSlice() const;
  std::vector<RawSlice> getRawSlices(size_t max = SIZE_MAX) const;
  // Fills out[0..max) and returns how many slices it wrote (allocation-free variant).
  size_t getRawSlices(RawSlice* out, size_t max) const;
  // Calls f(const RawSlice&) for each readable slice; f returns false to stop early.
  template <class F>
  void forEachSlice(F&& f) const {
    for (size_t i = 0; i < slices_.size(); ++i) {
      const detail::Slice& s = slices_[i];
      if (!f(RawSlice{s.data(), s.dataSize()})) {
        return;
      }
    }
  }
  size_t sliceCount() const { return slices_.size(); }
  // Slots of the slice ring held now (for tests: an empty buffer holds none).
  size_t sliceSlots() const { return slices_.capacity(); }

  // Hands out writable regions totalling up to max_length bytes (at most
  // Reservation::kMaxSlices regions: the free tail of the last slice, then new slices).
  Reservation reserveForRead(size_t max_length = kDefaultReadReservation);
  // Makes the first `bytes` written into the reservation's regions (in order) readable and
  // releases the rest. bytes <= reservation.length(). The reservation is empty afterwards.
  void commit(Reservation& reservation, size_t bytes);

  // One readv() of up to max_length (> 0) bytes from fd into the end of the buffer. EINTR is
  // retried; EOF is {0, 0}.
  IoResult readFrom(int fd, size_t max_length = kDefaultReadReservation);
  // One writev() of up to kMaxWriteSlices slices to fd; drains what was written. EINTR is
  // retried. An empty buffer writes nothing and returns {0, 0}.
  IoResult writeTo(int fd);

 protected:
  // Called once at the end of every method that changed length(). Keep overrides cheap.
  virtual void onLengthChanged() {}

 private:
  // The building blocks: they change slices_ and length_ but call no hook.
  void appendBytes(const void* data, size_t size);
  void drainBytes(size_t size);
  void appendSlice(detail::Slice&& slice);
  void moveBytes(Buffer& other, size_t length);
  bool matchesAt(size_t slice_index, size_t offset, const uint8_t* needle, size_t size) const;

  detail::SliceRing slices_;
  size_t length_ = 0;
};

}  // namespace sluice::buffer
