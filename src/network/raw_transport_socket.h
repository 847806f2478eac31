#pragma once

#include "common/object_pool.h"
#include "network/transport_socket.h"

namespace sluice::network {

// Plain TCP (or Unix stream) bytes.
class RawTransportSocket : public TransportSocket, public Pooled<RawTransportSocket> {
 public:
  void setTransportSocketCallbacks(TransportSocketCallbacks& callbacks) override {
    callbacks_ = &callbacks;
  }
  std::string_view protocol() const override { return ""; }
  TransportIoResult doRead(buffer::Buffer& buffer) override;
  TransportIoResult doWrite(buffer::Buffer& buffer, bool end_stream) override;
  void onConnected() override;
  void closeSocket(ConnectionEvent) override {}

 private:
  TransportSocketCallbacks* callbacks_{nullptr};
  bool shutdown_{false};
  // The last read took a whole buffer slice or more: the next one offers the full read
  // reservation (several slices) instead of one slice. Most reads on a request path are a
  // few hundred bytes, and each slice offered and not filled is taken and given back.
  bool last_read_big_{false};
};

class RawTransportSocketFactory : public TransportSocketFactory {
 public:
  TransportSocketPtr createTransportSocket(const TransportSocketOptions* = nullptr) const override {
    return std::make_unique<RawTransportSocket>();
  }
  bool implementsSecureTransport() const override { return false; }
};

}  // namespace sluice::network
