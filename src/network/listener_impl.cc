#include "network/listener_impl.h"

#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::network {

TcpListenerImpl::TcpListenerImpl(event::Dispatcher& dispatcher, const SocketFd& socket,
                                 ListenerCallbacks& callbacks, ListenerConfig config)
    : dispatcher_(dispatcher), socket_(socket), callbacks_(callbacks), config_(config) {
  file_event_ = dispatcher_.createFileEvent(
      socket_.fd(), [this](uint32_t) { onSocketReady(); }, event::FileTriggerType::Level,
      event::FileReadyType::Read);
  backoff_timer_ = dispatcher_.createTimer([this] {
    if (enabled_) file_event_->setEnabled(event::FileReadyType::Read);
  });
}

void TcpListenerImpl::disable() {
  enabled_ = false;
  file_event_->setEnabled(0);
}

void TcpListenerImpl::enable() {
  enabled_ = true;
  if (!backoff_timer_->enabled()) file_event_->setEnabled(event::FileReadyType::Read);
}

void TcpListenerImpl::onSocketReady() {
  for (uint32_t i = 0; i < config_.max_accepts_per_event && enabled_; ++i) {
    SocketFd accepted;
    sockaddr_storage peer;
    socklen_t peer_len = 0;
    SysResult r = acceptSocket(socket_, accepted, &peer, &peer_len);
    if (r.ok()) {
      // The peer's address comes with accept(): no getpeername() per connection.
      callbacks_.onAccept(std::move(accepted), fromSockAddr(peer, peer_len));
      continue;
    }
    if (r.wouldBlock()) return;
    if (config_.accept_errors) config_.accept_errors->inc();
    if (r.err == EMFILE || r.err == ENFILE || r.err == ENOBUFS || r.err == ENOMEM) {
      // The pending connection stays queued and the socket stays readable: accepting again
      // now would spin. Pause, and try again after the back-off.
      SLUICE_LOG(warn, conn_handler, "accept failed: {}; pausing accepts for {} ms",
                 errorString(r.err), config_.fd_exhaustion_backoff.count());
      file_event_->setEnabled(0);
      backoff_timer_->enableTimer(config_.fd_exhaustion_backoff);
      return;
    }
    // ECONNABORTED and friends concern one connection only.
    SLUICE_LOG(debug, conn_handler, "accept failed: {}", errorString(r.err));
  }
}

}  // namespace sluice::network
