#include "tls/client_hello.h"

namespace sluice::tls {

namespace {

// A bounds-checked reader over a byte range; any read past the end makes ok() false.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool ok() const { return ok_; }
  size_t left() const { return ok_ ? n_ - pos_ : 0; }
  uint32_t u8() { return need(1) ? p_[pos_++] : 0; }
  uint32_t u16() {
    if (!need(2)) return 0;
    const uint32_t v = (uint32_t{p_[pos_]} << 8) | p_[pos_ + 1];
    pos_ += 2;
    return v;
  }
  uint32_t u24() {
    if (!need(3)) return 0;
    const uint32_t v = (uint32_t{p_[pos_]} << 16) | (uint32_t{p_[pos_ + 1]} << 8) | p_[pos_ + 2];
    pos_ += 3;
    return v;
  }
  void skip(size_t k) {
    if (need(k)) pos_ += k;
  }
  // A sub-reader over the next k bytes (consumed).
  Reader sub(size_t k) {
    if (!need(k)) return Reader(nullptr, 0, false);
    Reader r(p_ + pos_, k);
    pos_ += k;
    return r;
  }
  std::string str(size_t k) {
    if (!need(k)) return {};
    std::string s(reinterpret_cast<const char*>(p_ + pos_), k);
    pos_ += k;
    return s;
  }

 private:
  Reader(const uint8_t* p, size_t n, bool ok) : p_(p), n_(n), ok_(ok) {}
  bool need(size_t k) {
    if (!ok_ || n_ - pos_ < k) ok_ = false;
    return ok_;
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_{0};
  bool ok_{true};
};

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;

}  // namespace

ClientHelloResult parseClientHello(const uint8_t* data, size_t len, ClientHelloInfo& out) {
  out = ClientHelloInfo{};
  if (len == 0) return ClientHelloResult::NeedMoreData;
  // A TLS record: type 22 (handshake), version 3.x.
  if (data[0] != kHandshakeRecord) return ClientHelloResult::Done;
  if (len < 5) return ClientHelloResult::NeedMoreData;
  if (data[1] != 3) return ClientHelloResult::Done;
  const size_t record_len = (size_t{data[3]} << 8) | data[4];
  if (record_len == 0 || 5 + record_len > kMaxClientHelloPeek) return ClientHelloResult::Done;
  if (len < 5 + record_len) return ClientHelloResult::NeedMoreData;

  Reader rec(data + 5, record_len);
  if (rec.u8() != kClientHello) return ClientHelloResult::Done;
  const uint32_t hello_len = rec.u24();
  // A hello split over several records is rare; it counts as TLS without SNI.
  Reader hello = rec.sub(hello_len);
  out.is_tls = true;
  if (!hello.ok()) return ClientHelloResult::Done;
  hello.skip(2 + 32);                // client_version, random
  hello.skip(hello.u8());            // session_id
  hello.skip(hello.u16());           // cipher_suites
  hello.skip(hello.u8());            // compression_methods
  if (!hello.ok() || hello.left() == 0) return ClientHelloResult::Done;  // no extensions
  Reader exts = hello.sub(hello.u16());
  while (exts.ok() && exts.left() >= 4) {
    const uint32_t type = exts.u16();
    Reader ext = exts.sub(exts.u16());
    if (type == kExtServerName) {
      Reader list = ext.sub(ext.u16());
      while (list.ok() && list.left() >= 3) {
        const uint32_t name_type = list.u8();
        std::string name = list.str(list.u16());
        if (name_type == 0 && list.ok()) {
          out.server_name = std::move(name);
          break;
        }
      }
    } else if (type == kExtAlpn) {
      Reader list = ext.sub(ext.u16());
      while (list.ok() && list.left() >= 1) {
        std::string proto = list.str(list.u8());
        if (list.ok()) out.alpn.push_back(std::move(proto));
      }
    }
  }
  return ClientHelloResult::Done;
}

}  // namespace sluice::tls
