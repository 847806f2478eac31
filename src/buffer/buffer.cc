#include "buffer/buffer.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/assert.h"
#include "common/object_pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLUICE_BUFFER_NO_CACHE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLUICE_BUFFER_NO_CACHE 1
#endif
#endif

namespace sluice::buffer {
namespace {

constexpr size_t kPageSize = 4096;

// Recycles blocks of the default size on this thread, so that a read/drain loop does not
// call malloc for every slice. Disabled under ASan, which must see every free. Once the
// thread's cache is destroyed (thread exit), blocks freed later on it go to delete[].
class BlockCache {
 public:
  ~BlockCache() {
    for (size_t i = 0; i < count_; ++i) {
      delete[] blocks_[i];
    }
    count_ = 0;
    alive_ = false;
  }

  uint8_t* take() { return count_ > 0 ? blocks_[--count_] : nullptr; }

  bool give(uint8_t* block) {
    if (!alive_ || count_ == kMaxBlocks) {
      return false;
    }
    blocks_[count_++] = block;
    return true;
  }

 private:
  // 16 (256 KiB at most). With 50 streams in flight, each holding a block in a write buffer
  // until the loop writes it, about 1.3 blocks a request miss it (bench/profile); 64 blocks
  // cut that to none and about 700 instructions a request, but keep up to 1 MiB in use after
  // a burst (bench/idlemem's heap figure counts it, about +490 B per connection at 2,000).
  static constexpr size_t kMaxBlocks = 16;
  uint8_t* blocks_[kMaxBlocks];
  size_t count_ = 0;
  bool alive_ = true;
};

#ifndef SLUICE_BUFFER_NO_CACHE
thread_local BlockCache block_cache;
#endif

uint8_t* allocateBlock(size_t capacity) {
#ifndef SLUICE_BUFFER_NO_CACHE
  if (capacity == Buffer::kDefaultSliceSize) {
    if (uint8_t* block = block_cache.take()) {
      return block;
    }
  }
#endif
  return new uint8_t[capacity];
}

void freeBlock(uint8_t* block, size_t capacity) {
#ifndef SLUICE_BUFFER_NO_CACHE
  if (capacity == Buffer::kDefaultSliceSize && block_cache.give(block)) {
    return;
  }
#endif
  delete[] block;
}

}  // namespace

namespace detail {

// ---- Slice ----------------------------------------------------------------------------------

Slice::Slice(size_t min_capacity)
    : capacity_(min_capacity <= Buffer::kDefaultSliceSize
                    ? Buffer::kDefaultSliceSize
                    : (min_capacity + kPageSize - 1) / kPageSize * kPageSize) {
  SLUICE_RELEASE_ASSERT(min_capacity <= UINT32_MAX - kPageSize, "a buffer slice over 4 GiB");
  base_ = allocateBlock(capacity_);
}

// Most slices destroyed or overwritten own nothing (moved from, or a reservation's unused
// slots): the check is made here, where it inlines, and the call only for a block.
Slice::~Slice() {
  if (base_ != nullptr) release();
}

Slice::Slice(Slice&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      start_(std::exchange(other.start_, 0)),
      end_(std::exchange(other.end_, 0)) {}

Slice& Slice::operator=(Slice&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) release();
    base_ = std::exchange(other.base_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    start_ = std::exchange(other.start_, 0);
    end_ = std::exchange(other.end_, 0);
  }
  return *this;
}

void Slice::release() {
  if (base_ != nullptr) {
    freeBlock(base_, capacity_);
    base_ = nullptr;
  }
  capacity_ = start_ = end_ = 0;
}

size_t Slice::append(const void* data, size_t size) {
  const size_t n = std::min(size, reservableSize());
  if (n > 0) {
    std::memcpy(tail(), data, n);
    end_ += n;
  }
  return n;
}

size_t Slice::prependTail(const void* data, size_t size) {
  const size_t n = std::min(size, headroom());
  if (n > 0) {
    start_ -= n;
    std::memcpy(base_ + start_, static_cast<const uint8_t*>(data) + (size - n), n);
  }
  return n;
}

// ---- SliceRing ------------------------------------------------------------------------------

namespace {

// Rings' first slots come from the thread's free list (common/object_pool.h): a connection's
// buffers empty and fill again with every request.
constexpr uint32_t kFirstSlots = 2;  // SliceRing::kFirstCapacity
using FirstSlots = sluice::detail::FreeList<kFirstSlots * sizeof(Slice), alignof(Slice)>;

Slice* takeFirstSlots() {
  auto* slots = static_cast<Slice*>(FirstSlots::allocate());
  for (uint32_t i = 0; i < kFirstSlots; ++i) new (&slots[i]) Slice();
  return slots;
}

// Slices still in `slots` release their blocks.
void destroySlots(Slice* slots, uint32_t capacity) {
  if (capacity == kFirstSlots) {
    for (uint32_t i = 0; i < kFirstSlots; ++i) slots[i].~Slice();
    FirstSlots::deallocate(slots);
  } else {
    delete[] slots;
  }
}

}  // namespace

SliceRing::~SliceRing() {
  if (slots_ != nullptr) destroySlots(slots_, capacity_);
}

SliceRing::SliceRing(SliceRing&& other) noexcept
    : slots_(std::exchange(other.slots_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      head_(std::exchange(other.head_, 0)),  // a ring may have wrapped
      size_(std::exchange(other.size_, 0)) {}

void SliceRing::grow() {
  if (capacity_ == 0) {
    static_assert(kFirstCapacity == kFirstSlots);
    slots_ = takeFirstSlots();
    capacity_ = kFirstCapacity;
    head_ = 0;
    return;
  }
  growSlow();
}

[[gnu::noinline]] void SliceRing::growSlow() {
  const uint32_t new_capacity = capacity_ * 2;
  Slice* slots = new Slice[new_capacity];
  for (size_t i = 0; i < size_; ++i) {
    slots[i] = std::move((*this)[i]);
  }
  destroySlots(slots_, capacity_);
  slots_ = slots;
  capacity_ = new_capacity;
  head_ = 0;
}

void SliceRing::releaseSlots() {
  destroySlots(slots_, capacity_);
  slots_ = nullptr;
  capacity_ = 0;
  head_ = 0;
}

void SliceRing::swap(SliceRing& other) noexcept {
  std::swap(slots_, other.slots_);
  std::swap(capacity_, other.capacity_);
  std::swap(head_, other.head_);
  std::swap(size_, other.size_);
}

void SliceRing::pushBack(Slice&& slice) {
  if (size_ == capacity_) {
    grow();
  }
  slots_[(head_ + size_) & (capacity_ - 1)] = std::move(slice);
  ++size_;
}

void SliceRing::pushFront(Slice&& slice) {
  if (size_ == capacity_) {
    grow();
  }
  head_ = (head_ + capacity_ - 1) & (capacity_ - 1);
  slots_[head_] = std::move(slice);
  ++size_;
}

void SliceRing::popFront() {
  SLUICE_ASSERT(size_ > 0, "popFront on an empty ring");
  slots_[head_] = Slice();
  head_ = (head_ + 1) & (capacity_ - 1);
  if (--size_ == 0) releaseSlots();
}

void SliceRing::popBack() {
  SLUICE_ASSERT(size_ > 0, "popBack on an empty ring");
  back() = Slice();
  if (--size_ == 0) releaseSlots();
}

}  // namespace detail

// ---- Reservation ----------------------------------------------------------------------------

Reservation::Reservation(Reservation&& other) noexcept {
  *this = std::move(other);
}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    for (size_t i = 0; i < kMaxSlices; ++i) {
      slices_[i] = other.slices_[i];
      owned_[i] = std::move(other.owned_[i]);
    }
    num_slices_ = other.num_slices_;
    length_ = other.length_;
    uses_tail_ = other.uses_tail_;
    owner_ = other.owner_;
    other.reset();
  }
  return *this;
}

void Reservation::reset() {
  // Slots past num_slices_ were never filled.
  for (size_t i = 0; i < num_slices_; ++i) {
    owned_[i] = detail::Slice();
    slices_[i] = RawSlice{};
  }
  num_slices_ = 0;
  length_ = 0;
  uses_tail_ = false;
  owner_ = nullptr;
}

// ---- Buffer ---------------------------------------------------------------------------------

Buffer::Buffer(Buffer&& other) noexcept
    : slices_(std::move(other.slices_)), length_(std::exchange(other.length_, 0)) {
  other.onLengthChanged();
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    drainBytes(length_);
    moveBytes(other, other.length_);
    other.onLengthChanged();
    onLengthChanged();
  }
  return *this;
}

void Buffer::appendBytes(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  length_ += size;
  if (!slices_.empty()) {
    const size_t n = slices_.back().append(p, size);
    p += n;
    size -= n;
  }
  if (size > 0) {
    detail::Slice slice(size);
    slice.append(p, size);
    slices_.pushBack(std::move(slice));
  }
}

void Buffer::drainBytes(size_t size) {
  SLUICE_ASSERT(size <= length_, "drain past the end of the buffer");
  length_ -= size;
  while (size > 0) {
    detail::Slice& front = slices_.front();
    const size_t n = front.dataSize();
    if (n > size) {
      front.drainFront(size);
      return;
    }
    size -= n;
    slices_.popFront();
  }
}

void Buffer::appendSlice(detail::Slice&& slice) {
  const size_t n = slice.dataSize();
  length_ += n;
  if (!slices_.empty() && n <= kCopyThreshold && slices_.back().reservableSize() >= n) {
    slices_.back().append(slice.data(), n);
    slice = detail::Slice();
    return;
  }
  slices_.pushBack(std::move(slice));
}

void Buffer::moveBytes(Buffer& other, size_t length) {
  SLUICE_ASSERT(&other != this, "move from a buffer into itself");
  SLUICE_ASSERT(length <= other.length_, "move of more bytes than the source holds");
  if (length == other.length_ && slices_.empty()) {
    // All of it into a buffer without slices (a connection's write buffer, most writes): the
    // rings change hands.
    slices_.swap(other.slices_);
    length_ = std::exchange(other.length_, 0);
    return;
  }
  while (length > 0) {
    detail::Slice& front = other.slices_.front();
    const size_t n = front.dataSize();
    if (n <= length) {
      other.length_ -= n;
      length -= n;
      appendSlice(std::move(front));
      other.slices_.popFront();
      continue;
    }
    // The last slice is split: copy its smaller side.
    const size_t rest = n - length;
    if (rest < length) {
      detail::Slice remainder(rest);
      remainder.append(front.data() + length, rest);
      front.truncate(length);
      detail::Slice moved = std::move(front);
      other.slices_.popFront();
      other.slices_.pushFront(std::move(remainder));
      other.length_ -= length;
      appendSlice(std::move(moved));
    } else {
      appendBytes(front.data(), length);
      front.drainFront(length);
      other.length_ -= length;
    }
    return;
  }
}

void Buffer::add(const void* data, size_t size) {
  if (size == 0) {
    return;
  }
  appendBytes(data, size);
  onLengthChanged();
}

void Buffer::add(const Buffer& other) {
  if (other.empty()) {
    return;
  }
  if (&other == this) {
    const std::string copy = toString();
    appendBytes(copy.data(), copy.size());
  } else {
    for (size_t i = 0; i < other.slices_.size(); ++i) {
      appendBytes(other.slices_[i].data(), other.slices_[i].dataSize());
    }
  }
  onLengthChanged();
}

void Buffer::prepend(std::string_view data) {
  if (data.empty()) {
    return;
  }
  size_t size = data.size();
  length_ += size;
  if (!slices_.empty()) {
    size -= slices_.front().prependTail(data.data(), size);
  }
  if (size > 0) {
    detail::Slice slice(size);
    slice.resetAt(slice.capacity());
    slice.prependTail(data.data(), size);
    slices_.pushFront(std::move(slice));
  }
  onLengthChanged();
}

void Buffer::prepend(Buffer& other) {
  SLUICE_ASSERT(&other != this, "prepend of a buffer to itself");
  if (other.empty()) {
    return;
  }
  while (!other.slices_.empty()) {
    slices_.pushFront(std::move(other.slices_.back()));
    other.slices_.popBack();
  }
  length_ += std::exchange(other.length_, 0);
  other.onLengthChanged();
  onLengthChanged();
}

void Buffer::move(Buffer& other) {
  move(other, other.length_);
}

void Buffer::move(Buffer& other, size_t length) {
  if (length == 0) {
    return;
  }
  moveBytes(other, length);
  other.onLengthChanged();
  onLengthChanged();
}

void Buffer::drain(size_t size) {
  if (size == 0) {
    return;
  }
  drainBytes(size);
  onLengthChanged();
}

void Buffer::copyOut(size_t start, size_t size, void* out) const {
  SLUICE_ASSERT(start <= length_ && size <= length_ - start, "copyOut past the end");
  auto* dest = static_cast<uint8_t*>(out);
  for (size_t i = 0; i < slices_.size() && size > 0; ++i) {
    const detail::Slice& s = slices_[i];
    const size_t n = s.dataSize();
    if (start >= n) {
      start -= n;
      continue;
    }
    const size_t take = std::min(size, n - start);
    std::memcpy(dest, s.data() + start, take);
    dest += take;
    size -= take;
    start = 0;
  }
}

std::string Buffer::toString() const {
  std::string out;
  out.reserve(length_);
  for (size_t i = 0; i < slices_.size(); ++i) {
    out.append(reinterpret_cast<const char*>(slices_[i].data()), slices_[i].dataSize());
  }
  return out;
}

bool Buffer::matchesAt(size_t slice_index, size_t offset, const uint8_t* needle,
                       size_t size) const {
  for (size_t i = slice_index; i < slices_.size() && size > 0; ++i) {
    const detail::Slice& s = slices_[i];
    const size_t n = std::min(size, s.dataSize() - offset);
    if (std::memcmp(s.data() + offset, needle, n) != 0) {
      return false;
    }
    needle += n;
    size -= n;
    offset = 0;
  }
  return size == 0;
}

ssize_t Buffer::search(const void* data, size_t size, size_t start) const {
  if (start > length_) {
    return -1;
  }
  if (size == 0) {
    return static_cast<ssize_t>(start);
  }
  if (size > length_ - start) {
    return -1;
  }
  const auto* needle = static_cast<const uint8_t*>(data);
  const size_t last_start = length_ - size;  // the last index a match can begin at
  size_t slice_begin = 0;
  for (size_t i = 0; i < slices_.size() && slice_begin <= last_start; ++i) {
    const detail::Slice& s = slices_[i];
    const size_t n = s.dataSize();
    if (start >= slice_begin + n) {
      slice_begin += n;
      continue;
    }
    size_t pos = start > slice_begin ? start - slice_begin : 0;
    const size_t end = std::min(n, last_start - slice_begin + 1);
    while (pos < end) {
      const void* hit = std::memchr(s.data() + pos, needle[0], end - pos);
      if (hit == nullptr) {
        break;
      }
      pos = static_cast<size_t>(static_cast<const uint8_t*>(hit) - s.data());
      if (matchesAt(i, pos, needle, size)) {
        return static_cast<ssize_t>(slice_begin + pos);
      }
      ++pos;
    }
    slice_begin += n;
  }
  return -1;
}

bool Buffer::startsWith(std::string_view prefix) const {
  return prefix.size() <= length_ &&
         matchesAt(0, 0, reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size());
}

void* Buffer::linearize(size_t size) {
  SLUICE_ASSERT(size <= length_, "linearize past the end");
  if (slices_.empty()) {
    return nullptr;
  }
  detail::Slice& front = slices_.front();
  if (front.dataSize() >= size) {
    return front.data();
  }
  // Gather into the front slice when its free tail can take the rest, else into a new slice.
  detail::Slice target;
  if (front.capacity() - front.headroom() >= size) {
    target = std::move(front);
    slices_.popFront();
  } else {
    target = detail::Slice(size);
    target.append(front.data(), front.dataSize());
    slices_.popFront();
  }
  size_t need = size - target.dataSize();
  while (need > 0) {
    detail::Slice& next = slices_.front();
    const size_t n = std::min(need, next.dataSize());
    target.append(next.data(), n);
    need -= n;
    if (n == next.dataSize()) {
      slices_.popFront();
    } else {
      next.drainFront(n);
    }
  }
  slices_.pushFront(std::move(target));
  return slices_.front().data();
}

RawSlice Buffer::frontSlice() const {
  if (slices_.empty()) {
    return RawSlice{};
  }
  return RawSlice{slices_.front().data(), slices_.front().dataSize()};
}

std::vector<RawSlice> Buffer::getRawSlices(size_t max) const {
  std::vector<RawSlice> out;
  const size_t n = std::min(max, slices_.size());
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(RawSlice{slices_[i].data(), slices_[i].dataSize()});
  }
  return out;
}

size_t Buffer::getRawSlices(RawSlice* out, size_t max) const {
  const size_t n = std::min(max, slices_.size());
  for (size_t i = 0; i < n; ++i) {
    out[i] = RawSlice{slices_[i].data(), slices_[i].dataSize()};
  }
  return n;
}

Reservation Buffer::reserveForRead(size_t max_length) {
  Reservation r;
  r.owner_ = this;
  size_t remaining = max_length;
  if (remaining > 0 && !slices_.empty() && slices_.back().reservableSize() > 0) {
    const size_t n = std::min(remaining, slices_.back().reservableSize());
    r.slices_[r.num_slices_++] = RawSlice{slices_.back().tail(), n};
    r.uses_tail_ = true;
    r.length_ += n;
    remaining -= n;
  }
  size_t owned = 0;
  while (remaining > 0 && r.num_slices_ < Reservation::kMaxSlices) {
    detail::Slice slice(kDefaultSliceSize);
    const size_t n = std::min(remaining, slice.reservableSize());
    r.slices_[r.num_slices_++] = RawSlice{slice.tail(), n};
    r.owned_[owned++] = std::move(slice);
    r.length_ += n;
    remaining -= n;
  }
  return r;
}

void Buffer::commit(Reservation& reservation, size_t bytes) {
  SLUICE_ASSERT(reservation.owner_ == this || reservation.num_slices_ == 0,
                "commit of another buffer's reservation");
  SLUICE_ASSERT(bytes <= reservation.length_, "commit of more than was reserved");
  size_t remaining = bytes;
  size_t index = 0;
  if (reservation.uses_tail_ && remaining > 0) {
    detail::Slice& last = slices_.back();
    SLUICE_ASSERT(last.tail() == reservation.slices_[0].mem,
                  "buffer changed between reserveForRead() and commit()");
    const size_t n = std::min(remaining, reservation.slices_[0].len);
    last.commit(n);
    length_ += n;
    remaining -= n;
  }
  if (reservation.uses_tail_) {
    index = 1;
  }
  for (size_t owned = 0; remaining > 0 && index < reservation.num_slices_; ++owned, ++index) {
    const size_t n = std::min(remaining, reservation.slices_[index].len);
    detail::Slice& slice = reservation.owned_[owned];
    slice.commit(n);
    length_ += n;
    slices_.pushBack(std::move(slice));
    remaining -= n;
  }
  reservation.reset();
  if (bytes > 0) {
    onLengthChanged();
  }
}

IoResult Buffer::readFrom(int fd, size_t max_length) {
  SLUICE_ASSERT(max_length > 0, "readFrom with max_length 0");
  Reservation reservation = reserveForRead(max_length);
  iovec iov[Reservation::kMaxSlices];
  for (size_t i = 0; i < reservation.numSlices(); ++i) {
    iov[i].iov_base = reservation.slices()[i].mem;
    iov[i].iov_len = reservation.slices()[i].len;
  }
  ssize_t rc;
  do {
    rc = ::readv(fd, iov, static_cast<int>(reservation.numSlices()));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    return IoResult{0, errno};
  }
  const size_t offered = reservation.length();
  commit(reservation, static_cast<size_t>(rc));
  return IoResult{static_cast<size_t>(rc), 0, offered};
}

IoResult Buffer::writeTo(int fd) {
  if (slices_.empty()) {
    return IoResult{};
  }
  iovec iov[kMaxWriteSlices];
  const size_t count = std::min(kMaxWriteSlices, slices_.size());
  for (size_t i = 0; i < count; ++i) {
    iov[i].iov_base = slices_[i].data();
    iov[i].iov_len = slices_[i].dataSize();
  }
  ssize_t rc;
  do {
    rc = ::writev(fd, iov, static_cast<int>(count));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    return IoResult{0, errno};
  }
  drain(static_cast<size_t>(rc));
  return IoResult{static_cast<size_t>(rc), 0};
}

}  // namespace sluice::buffer
