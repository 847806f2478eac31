#pragma once

#include "network/transport_socket.h"

namespace sluice::network {

// Plain TCP (or Unix stream) bytes.
class RawTransportSocket : public TransportSocket {
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
};

class RawTransportSocketFactory : public TransportSocketFactory {
 public:
  TransportSocketPtr createTransportSocket(const TransportSocketOptions* = nullptr) const override {
    return std::make_unique<RawTransportSocket>();
  }
  bool implementsSecureTransport() const override { return false; }
};

}  // namespace sluice::network
