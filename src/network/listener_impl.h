#pragma once

#include "event/dispatcher.h"
#include "network/listener.h"

namespace sluice::network {

class TcpListenerImpl : public Listener {
 public:
  // `socket` must outlive the listener.
  TcpListenerImpl(event::Dispatcher& dispatcher, const SocketFd& socket,
                  ListenerCallbacks& callbacks, ListenerConfig config = {});
  void disable() override;
  void enable() override;

 private:
  void onSocketReady();

  event::Dispatcher& dispatcher_;
  const SocketFd& socket_;
  ListenerCallbacks& callbacks_;
  const ListenerConfig config_;
  event::FileEventPtr file_event_;
  event::TimerPtr backoff_timer_;
  bool enabled_{true};
};

}  // namespace sluice::network
