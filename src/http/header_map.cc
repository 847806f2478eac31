#include "http/header_map.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>

namespace sluice::http {

void toLowerInPlace(std::string& s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

namespace {
// Heap blocks of the arena: big enough for a large header set in a few steps.
constexpr size_t kBlockSize = 1024;
}  // namespace

void HeaderMap::newBlock(size_t at_least) {
  const size_t size = std::max(kBlockSize, at_least);
  void* mem = ::operator new(sizeof(Block) + size);
  Block* block = new (mem) Block{blocks_};
  blocks_ = block;
  bytes_next_ = reinterpret_cast<char*>(block + 1);
  bytes_left_ = size;
}

void HeaderMap::growEntries() {
  const uint32_t capacity = capacity_ * 2;
  HeaderEntry* entries = new HeaderEntry[capacity];
  std::copy(entries_, entries_ + size_, entries);
  if (entries_ != inline_entries_) delete[] entries_;
  entries_ = entries;
  capacity_ = capacity;
}

void HeaderMap::release() {
  while (blocks_ != nullptr) {
    Block* next = blocks_->next;
    ::operator delete(blocks_);
    blocks_ = next;
  }
  bytes_next_ = inline_bytes_;
  bytes_left_ = kInlineBytes;
  if (entries_ != inline_entries_) {
    delete[] entries_;
    entries_ = inline_entries_;
    capacity_ = kInlineEntries;
  }
}

void HeaderMap::copyFrom(const HeaderMap& other) {
  for (const HeaderEntry& e : other) {
    reserveEntry();
    entries_[size_++] = HeaderEntry{store(e.key), store(e.value)};
  }
  byte_size_ = other.byte_size_;
  names_[0] = other.names_[0];
  names_[1] = other.names_[1];
}

const std::string_view* HeaderMap::find(std::string_view key) const {
  for (const HeaderEntry* e = begin(); e != end(); ++e) {
    if (e->key == key) return &e->value;
  }
  return nullptr;
}

size_t HeaderMap::count(std::string_view key) const {
  if (!mayHave(key)) return 0;
  size_t n = 0;
  for (const HeaderEntry& e : *this) n += e.key == key;
  return n;
}

void HeaderMap::add(std::string_view key, std::string_view value) {
  reserveEntry();
  noteName(key);
  byte_size_ += key.size() + value.size();
  const HeaderEntry entry{store(key), store(value)};
  size_t at = size_;
  if (!key.empty() && key[0] == ':') {
    // Keep pseudo-headers ahead of regular headers.
    at = 0;
    while (at < size_ && !entries_[at].key.empty() && entries_[at].key[0] == ':') ++at;
    std::memmove(static_cast<void*>(entries_ + at + 1), entries_ + at,
                 (size_ - at) * sizeof(HeaderEntry));
  }
  entries_[at] = entry;
  ++size_;
}

void HeaderMap::set(std::string_view key, std::string_view value) {
  HeaderEntry* first = nullptr;
  const size_t scan = mayHave(key) ? size_ : 0;
  for (HeaderEntry* e = entries_; e != entries_ + scan; ++e) {
    if (e->key == key) {
      first = e;
      break;
    }
  }
  if (first == nullptr) {
    add(key, value);
    return;
  }
  byte_size_ = byte_size_ - first->value.size() + value.size();
  first->value = store(value);
  // Later duplicates go.
  const size_t from = static_cast<size_t>(first - entries_) + 1;
  size_t kept = from;
  for (size_t i = from; i < size_; ++i) {
    if (entries_[i].key == key) {
      byte_size_ -= entries_[i].key.size() + entries_[i].value.size();
    } else {
      if (kept != i) entries_[kept] = entries_[i];
      ++kept;
    }
  }
  size_ = static_cast<uint32_t>(kept);
}

void HeaderMap::append(std::string_view key, std::string_view value) {
  const size_t scan = mayHave(key) ? size_ : 0;
  for (HeaderEntry* e = entries_; e != entries_ + scan; ++e) {
    if (e->key != key) continue;
    if (e->value.empty()) {
      e->value = store(value);
      byte_size_ += value.size();
      return;
    }
    // old + ',' + value, written as one new run of bytes.
    const size_t size = e->value.size() + 1 + value.size();
    if (size > bytes_left_) newBlock(size);
    char* p = bytes_next_;
    std::memcpy(p, e->value.data(), e->value.size());
    p[e->value.size()] = ',';
    std::memcpy(p + e->value.size() + 1, value.data(), value.size());
    bytes_next_ += size;
    bytes_left_ -= size;
    e->value = std::string_view(p, size);
    byte_size_ += 1 + value.size();
    return;
  }
  add(key, value);
}

size_t HeaderMap::remove(std::string_view key) {
  if (!mayHave(key)) return 0;
  return removeIf([key](const HeaderEntry& e) { return e.key == key; });
}

uint32_t HeaderMap::status() const {
  // Pseudo-headers come first and :status is a response's only one: usually entry 0. A
  // response passes through here several times (codec, router, connection manager), so the
  // usual three digits are read without a search or from_chars().
  std::string_view v;
  if (size_ > 0 && entries_[0].key == headers::kStatus) {
    v = entries_[0].value;
    if (v.size() == 3 && v[0] >= '0' && v[0] <= '9' && v[1] >= '0' && v[1] <= '9' &&
        v[2] >= '0' && v[2] <= '9') {
      return static_cast<uint32_t>((v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0'));
    }
  } else {
    v = getValue(headers::kStatus);
  }
  uint32_t code = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), code);
  if (ec != std::errc() || ptr != v.data() + v.size()) return 0;
  return code;
}

bool HeaderMap::operator==(const HeaderMap& other) const {
  if (size_ != other.size_) return false;
  for (size_t i = 0; i < size_; ++i) {
    if (entries_[i].key != other.entries_[i].key || entries_[i].value != other.entries_[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace sluice::http
