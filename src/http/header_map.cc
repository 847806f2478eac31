#include "http/header_map.h"

#include <charconv>

namespace sluice::http {

void toLowerInPlace(std::string& s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

const std::string* HeaderMap::get(std::string_view key) const {
  for (const auto& e : entries_) {
    if (e.key == key) return &e.value;
  }
  return nullptr;
}

size_t HeaderMap::count(std::string_view key) const {
  size_t n = 0;
  for (const auto& e : entries_) n += e.key == key;
  return n;
}

void HeaderMap::add(std::string_view key, std::string_view value) {
  byte_size_ += key.size() + value.size();
  if (!key.empty() && key[0] == ':') {
    // Keep pseudo-headers ahead of regular headers.
    auto it = entries_.begin();
    while (it != entries_.end() && !it->key.empty() && it->key[0] == ':') ++it;
    entries_.insert(it, HeaderEntry{std::string(key), std::string(value)});
    return;
  }
  entries_.push_back(HeaderEntry{std::string(key), std::string(value)});
}

void HeaderMap::set(std::string_view key, std::string_view value) {
  bool found = false;
  for (size_t i = 0; i < entries_.size();) {
    HeaderEntry& e = entries_[i];
    if (e.key != key) {
      ++i;
      continue;
    }
    if (!found) {
      byte_size_ = byte_size_ - e.value.size() + value.size();
      e.value.assign(value);
      found = true;
      ++i;
    } else {
      byte_size_ -= e.key.size() + e.value.size();
      entries_.erase(entries_.begin() + i);
    }
  }
  if (!found) add(key, value);
}

void HeaderMap::append(std::string_view key, std::string_view value) {
  for (auto& e : entries_) {
    if (e.key == key) {
      if (!e.value.empty()) {
        e.value.push_back(',');
        ++byte_size_;
      }
      e.value.append(value);
      byte_size_ += value.size();
      return;
    }
  }
  add(key, value);
}

size_t HeaderMap::remove(std::string_view key) {
  return removeIf([key](const HeaderEntry& e) { return e.key == key; });
}

uint32_t HeaderMap::status() const {
  std::string_view v = getValue(headers::kStatus);
  uint32_t code = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), code);
  if (ec != std::errc() || ptr != v.data() + v.size()) return 0;
  return code;
}

bool HeaderMap::operator==(const HeaderMap& other) const {
  if (entries_.size() != other.entries_.size()) return false;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].key != other.entries_[i].key || entries_[i].value != other.entries_[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace sluice::http
