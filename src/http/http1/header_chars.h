#pragma once

// The bytes of an HTTP/1 header as the codec checks them: names are RFC 9110 tokens, stored in
// lower case; values hold no NUL, CR or LF. (llhttp checks both already; these are the
// codec's own guarantee of what reaches a header map.)

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace sluice::http::http1 {

// RFC 9110 tchar: the characters of a header name.
constexpr std::array<bool, 256> makeTokenTable() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}
constexpr std::array<bool, 256> kTokenChars = makeTokenTable();

// A token character in lower case, or 0 for a byte that is not one.
constexpr std::array<char, 256> makeLowerTokenTable() {
  std::array<char, 256> table{};
  for (int c = 0; c < 256; ++c) {
    if (!kTokenChars[c]) continue;
    table[c] = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return table;
}
constexpr std::array<char, 256> kLowerTokenChars = makeLowerTokenTable();

// Writes the header name `in` to `out` (in.size() bytes; may be in.data()) in lower case, in
// one pass; false when `in` is not a token.
inline bool lowerToken(std::string_view in, char* out) {
  if (in.empty()) return false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = kLowerTokenChars[static_cast<unsigned char>(in[i])];
    if (c == 0) return false;
    out[i] = c;
  }
  return true;
}

// Whether `s` holds a NUL, CR or LF byte: eight bytes at a time (a word has a zero byte when
// (w - 0x01...) & ~w & 0x80... is not 0, and a byte equal to c is a zero byte of w ^ c...).
inline bool hasNulCrLf(std::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  const auto hasZeroByte = [](uint64_t w) { return (w - kOnes) & ~w & kHighs; };
  const auto word = [&](size_t at) {
    uint64_t w;
    std::memcpy(&w, s.data() + at, sizeof(w));
    return hasZeroByte(w) | hasZeroByte(w ^ (kOnes * '\r')) | hasZeroByte(w ^ (kOnes * '\n'));
  };
  const size_t n = s.size();
  if (n < 8) {
    for (char c : s) {
      if (c == '\0' || c == '\r' || c == '\n') return true;
    }
    return false;
  }
  for (size_t at = 0; at + 8 <= n; at += 8) {
    if (word(at) != 0) return true;
  }
  // The last (overlapping) word covers the tail.
  return word(n - 8) != 0;
}

}  // namespace sluice::http::http1
