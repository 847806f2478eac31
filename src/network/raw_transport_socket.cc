#include "network/raw_transport_socket.h"

#include <sys/socket.h>

#include "buffer/buffer.h"

namespace sluice::network {

TransportIoResult RawTransportSocket::doRead(buffer::Buffer& buffer) {
  TransportIoResult result;
  while (true) {
    const size_t room =
        last_read_big_ ? buffer::Buffer::kDefaultReadReservation : buffer::Buffer::kDefaultSliceSize;
    buffer::IoResult io = buffer.readFrom(callbacks_->fd(), room);
    if (io.ok()) {
      if (io.bytes == 0) {
        result.end_stream_read = true;
        break;
      }
      last_read_big_ = io.bytes >= buffer::Buffer::kDefaultSliceSize;
      result.bytes += io.bytes;
      if (callbacks_->shouldDrainReadBuffer()) {
        // More may be waiting in the socket: come back after the filters drained some.
        callbacks_->setTransportSocketIsReadable();
        break;
      }
      // A short read emptied the socket: with edge-triggered events, new bytes raise a new
      // event, so a second read would only return EAGAIN. A FIN that came with these bytes
      // was reported as "closed" with the event: then read on to the end of stream.
      if (io.bytes < io.offered && !callbacks_->peerClosedSeen()) break;
    } else if (io.again()) {
      break;
    } else {
      result.action = PostIoAction::Close;
      result.err = io.err;
      break;
    }
  }
  return result;
}

TransportIoResult RawTransportSocket::doWrite(buffer::Buffer& buffer, bool end_stream) {
  TransportIoResult result;
  while (!buffer.empty()) {
    buffer::IoResult io = buffer.writeTo(callbacks_->fd());
    if (io.ok()) {
      result.bytes += io.bytes;
    } else if (io.again()) {
      return result;
    } else {
      result.action = PostIoAction::Close;
      result.err = io.err;
      return result;
    }
  }
  if (end_stream && !shutdown_) {
    ::shutdown(callbacks_->fd(), SHUT_WR);
    shutdown_ = true;
  }
  return result;
}

void RawTransportSocket::onConnected() { callbacks_->raiseEvent(ConnectionEvent::Connected); }

}  // namespace sluice::network
