#include <netinet/in.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>

#include <gtest/gtest.h>

#include "buffer/buffer.h"
#include "event/dispatcher_impl.h"
#include "event/file_event.h"
#include "event/real_time_system.h"
#include "event/simulated_time_system.h"
#include "network/connection_impl.h"
#include "network/listener_impl.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"

namespace sluice::network {
namespace {

using namespace std::chrono_literals;

// Collects what a connection reads and the events it raises.
class Recorder : public ReadFilter, public ConnectionCallbacks {
 public:
  void initializeReadFilterCallbacks(ReadFilterCallbacks& cb) override {
    connection = &cb.connection();
  }
  FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    received += data.toString();
    data.drain(data.length());
    if (end_stream) got_end_stream = true;
    return FilterStatus::Continue;
  }
  void onEvent(ConnectionEvent e) override { events.push_back(e); }
  void onAboveWriteBufferHighWatermark() override { ++above_high; }
  void onBelowWriteBufferLowWatermark() override { ++below_low; }

  bool closed() const {
    for (auto e : events) {
      if (e != ConnectionEvent::Connected) return true;
    }
    return false;
  }
  bool connected() const {
    for (auto e : events) {
      if (e == ConnectionEvent::Connected) return true;
    }
    return false;
  }

  Connection* connection{nullptr};
  std::string received;
  bool got_end_stream{false};
  std::vector<ConnectionEvent> events;
  int above_high{0};
  int below_low{0};
};

// Echoes, pausing reads while its write buffer is above the high watermark, and records
// how large that buffer ever got.
class Echo : public ReadFilter, public ConnectionCallbacks {
 public:
  void initializeReadFilterCallbacks(ReadFilterCallbacks& cb) override {
    connection = &cb.connection();
    connection->addConnectionCallbacks(*this);
  }
  FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    connection->write(data, end_stream);
    max_buffered = std::max(max_buffered, connection->bufferedWriteBytes());
    return FilterStatus::StopIteration;
  }
  void onEvent(ConnectionEvent e) override { events.push_back(e); }
  void onAboveWriteBufferHighWatermark() override {
    ++paused;
    connection->readDisable(true);
  }
  void onBelowWriteBufferLowWatermark() override { connection->readDisable(false); }

  Connection* connection{nullptr};
  size_t max_buffered{0};
  int paused{0};
  std::vector<ConnectionEvent> events;
};

// A plain blocking TCP client socket (no Sluice code on this side), closed when it goes out
// of scope unless closed first.
class RawClient {
 public:
  explicit RawClient(const Address& to) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    if (fd_ >= 0 && ::connect(fd_, to.sockAddr(), to.sockAddrLen()) != 0) close();
  }
  RawClient(RawClient&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  RawClient& operator=(RawClient&&) = delete;
  ~RawClient() { close(); }
  bool open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Plain TCP that counts the reads its connection asks of it.
class CountingRawTransport : public RawTransportSocket {
 public:
  explicit CountingRawTransport(int& reads) : reads_(reads) {}
  TransportIoResult doRead(buffer::Buffer& buffer) override {
    ++reads_;
    return RawTransportSocket::doRead(buffer);
  }

 private:
  int& reads_;
};

template <class TimeSystemT>
class ConnectionTestBase : public ::testing::Test, public ListenerCallbacks {
 protected:
  ConnectionTestBase() {
    std::string error;
    auto any = fromIp("127.0.0.1", 0, &error);
    listen_socket_ = createListenSocket(*any, false, 128, &error);
    EXPECT_TRUE(listen_socket_.isOpen()) << error;
    address_ = localAddress(listen_socket_.fd());
    listener_ = std::make_unique<TcpListenerImpl>(dispatcher_, listen_socket_, *this);
  }
  ~ConnectionTestBase() override {
    for (auto& c : server_connections_) c->close(ConnectionCloseType::NoFlush);
    if (client_) client_->close(ConnectionCloseType::NoFlush);
    server_connections_.clear();
    client_.reset();
    listener_.reset();
    dispatcher_.clearDeferredDeleteList();
  }

  void onAccept(SocketFd&& socket, AddressConstSharedPtr peer) override {
    auto conn = createServerConnection(dispatcher_, std::move(socket),
                                       std::make_unique<CountingRawTransport>(server_reads_),
                                       nullptr, std::move(peer));
    if (on_server_connection_) on_server_connection_(*conn);
    conn->initializeReadFilters();
    server_connections_.push_back(std::move(conn));
  }

  ClientConnection& connectClient(Recorder& recorder) {
    std::string error;
    client_ = createClientConnection(dispatcher_, address_, std::make_unique<RawTransportSocket>(),
                                     &error);
    EXPECT_NE(client_, nullptr) << error;
    client_->addConnectionCallbacks(recorder);
    client_->addReadFilter(std::shared_ptr<ReadFilter>(&recorder, [](ReadFilter*) {}));
    client_->connect();
    return *client_;
  }

  // A raw client connected to the listener, once its server connection exists (closed, so
  // not open(), if either fails).
  RawClient acceptedRawClient() {
    RawClient client(*address_);
    const size_t before = server_connections_.size();
    if (client.open() && !runUntil([&] { return server_connections_.size() > before; })) {
      client.close();
    }
    return client;
  }

  // Runs the loop until `done` holds; false after 20 s of real time (a hang, not a wait).
  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    }
    return true;
  }

  // Callbacks that connections may still call while the fixture closes them.
  Recorder& newRecorder() {
    recorders_.push_back(std::make_unique<Recorder>());
    return *recorders_.back();
  }

  TimeSystemT time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  std::vector<std::unique_ptr<Recorder>> recorders_;
  SocketFd listen_socket_;
  AddressConstSharedPtr address_;
  std::unique_ptr<TcpListenerImpl> listener_;
  std::vector<ConnectionPtr> server_connections_;
  int server_reads_{0};  // doRead calls of every server connection's transport
  std::function<void(Connection&)> on_server_connection_;
  ClientConnectionPtr client_;
};

using ConnectionTest = ConnectionTestBase<event::RealTimeSystem>;
using SimulatedConnectionTest = ConnectionTestBase<event::SimulatedTimeSystem>;

std::string pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST_F(ConnectionTest, EchoRoundTripThroughLoopback) {
  auto echo = std::make_shared<Echo>();
  stats::Store store;
  // Held by pointer: it outlives the connection (closed here, before the test's end).
  const ConnectionStats cx_stats{&store.counter("rx"), &store.counter("tx"), nullptr, nullptr};
  on_server_connection_ = [&](Connection& c) {
    c.addReadFilter(echo);
    c.setConnectionStats(&cx_stats);
  };
  Recorder& client = newRecorder();
  ClientConnection& conn = connectClient(client);
  ASSERT_TRUE(runUntil([&] { return client.connected(); }));
  EXPECT_NE(conn.localAddress(), nullptr);
  buffer::Buffer data;
  data.add("hello, sluice");
  conn.write(data, false);
  EXPECT_EQ(data.length(), 0u);  // moved into the connection
  ASSERT_TRUE(runUntil([&] { return client.received.size() == 13; }));
  EXPECT_EQ(client.received, "hello, sluice");
  EXPECT_EQ(conn.bytesSent(), 13u);
  EXPECT_EQ(conn.bytesReceived(), 13u);
  EXPECT_EQ(store.counter("rx").value(), 13u);
  EXPECT_EQ(store.counter("tx").value(), 13u);
  ASSERT_EQ(server_connections_.size(), 1u);
  EXPECT_EQ(server_connections_[0]->remoteAddress()->port(), conn.localAddress()->port());
  server_connections_[0]->close(ConnectionCloseType::NoFlush);
}

// The first read filter lives in the connection, later ones on the heap: all of them are
// called in order, and a filter that stopped iteration resumes the ones after it.
class Tap : public ReadFilter {
 public:
  Tap(std::string name, std::vector<std::string>& log, bool stop)
      : name_(std::move(name)), log_(log), stop_(stop) {}
  void initializeReadFilterCallbacks(ReadFilterCallbacks& cb) override { callbacks = &cb; }
  FilterStatus onNewConnection() override {
    log_.push_back(name_ + " new");
    return FilterStatus::Continue;
  }
  FilterStatus onData(buffer::Buffer& data, bool) override {
    log_.push_back(name_ + " " + data.toString());
    if (stop_) return FilterStatus::StopIteration;
    return FilterStatus::Continue;
  }
  ReadFilterCallbacks* callbacks{nullptr};

 private:
  std::string name_;
  std::vector<std::string>& log_;
  bool stop_;
};

// Removes another callback when it sees an event: the removed one is not called after.
class Remover : public ConnectionCallbacks {
 public:
  void onEvent(ConnectionEvent) override {
    ++events;
    if (victim) connection->removeConnectionCallbacks(*victim);
  }
  Connection* connection{nullptr};
  ConnectionCallbacks* victim{nullptr};
  int events{0};
};

TEST_F(ConnectionTest, ReadFiltersRunInOrderAndResumeAfterAStop) {
  std::vector<std::string> log;
  auto first = std::make_shared<Tap>("first", log, true);
  auto second = std::make_shared<Tap>("second", log, false);
  auto third = std::make_shared<Tap>("third", log, false);
  Remover remover;
  Recorder& removed = newRecorder();
  Recorder& kept = newRecorder();
  on_server_connection_ = [&](Connection& c) {
    c.addReadFilter(first);
    c.addReadFilter(second);
    c.addReadFilter(third);
    remover.connection = &c;
    remover.victim = &removed;
    c.addConnectionCallbacks(remover);
    c.addConnectionCallbacks(removed);
    c.addConnectionCallbacks(kept);
  };
  Recorder& client = newRecorder();
  ClientConnection& conn = connectClient(client);
  ASSERT_TRUE(runUntil([&] { return client.connected() && first->callbacks != nullptr; }));
  buffer::Buffer data;
  data.add("x");
  conn.write(data, false);
  ASSERT_TRUE(runUntil([&] { return log.size() >= 4; }));
  EXPECT_EQ(log, (std::vector<std::string>{"first new", "second new", "third new", "first x"}));
  EXPECT_EQ(&first->callbacks->connection(), server_connections_[0].get());
  first->callbacks->continueReading();
  EXPECT_EQ(log, (std::vector<std::string>{"first new", "second new", "third new", "first x",
                                           "second x", "third x"}));
  server_connections_[0]->close(ConnectionCloseType::NoFlush);
  EXPECT_EQ(remover.events, 1);
  EXPECT_TRUE(removed.events.empty());
  EXPECT_EQ(kept.events, (std::vector<ConnectionEvent>{ConnectionEvent::LocalClose}));
}

TEST_F(ConnectionTest, SlowReaderBoundsTheWritersMemory) {
  constexpr uint32_t kLimit = 64 * 1024;
  constexpr size_t kTotal = 32 * 1024 * 1024;
  auto echo = std::make_shared<Echo>();
  on_server_connection_ = [&](Connection& c) {
    c.setBufferLimits(kLimit);
    c.addReadFilter(echo);
  };
  Recorder& client = newRecorder();
  ClientConnection& conn = connectClient(client);
  ASSERT_TRUE(runUntil([&] { return client.connected(); }));
  // The client does not read: the echo backs up into the server.
  conn.readDisable(true);
  const std::string sent = pattern(kTotal);
  buffer::Buffer data;
  data.add(sent);
  conn.write(data, false);
  ASSERT_TRUE(runUntil([&] { return echo->paused > 0 && !echo->connection->readEnabled(); }));
  // Let the loop run a while longer with the reader stalled: the server must stay paused.
  for (int i = 0; i < 200; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  EXPECT_FALSE(echo->connection->readEnabled());
  const size_t stalled_at = echo->max_buffered;
  EXPECT_LT(stalled_at, 4u * kLimit) << "the server buffered without bound";

  conn.readDisable(false);
  ASSERT_TRUE(runUntil([&] { return client.received.size() == kTotal; }));
  EXPECT_TRUE(client.received == sent) << "the echo came back altered";
  // Bounded all along; how often the server pauses once the reader drains depends on how
  // the reads split, so only the stall's pause (above) is certain.
  EXPECT_LT(echo->max_buffered, 4u * kLimit);
}

TEST_F(ConnectionTest, HalfCloseDeliversEndOfStreamAndFinishesTheEcho) {
  auto echo = std::make_shared<Echo>();
  on_server_connection_ = [&](Connection& c) {
    c.enableHalfClose(true);
    c.addReadFilter(echo);
  };
  Recorder& client = newRecorder();
  ClientConnection& conn = connectClient(client);
  conn.enableHalfClose(true);
  ASSERT_TRUE(runUntil([&] { return client.connected(); }));
  buffer::Buffer data;
  data.add("last words");
  conn.write(data, true);  // data, then FIN
  ASSERT_TRUE(runUntil([&] { return client.got_end_stream; }));
  EXPECT_EQ(client.received, "last words");
  // Both directions ended: both sides close.
  ASSERT_TRUE(runUntil([&] { return client.closed() && !echo->events.empty(); }));
  EXPECT_EQ(echo->events.back(), ConnectionEvent::RemoteClose);
}

TEST_F(ConnectionTest, WithoutHalfCloseTheDataArrivesThenTheConnectionCloses) {
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.addReadFilter(server);
    c.addConnectionCallbacks(*server);
  };
  Recorder& client = newRecorder();
  ClientConnection& conn = connectClient(client);
  conn.enableHalfClose(true);
  ASSERT_TRUE(runUntil([&] { return client.connected(); }));
  buffer::Buffer data;
  data.add("bye");
  conn.write(data, true);
  ASSERT_TRUE(runUntil([&] { return server->closed(); }));
  EXPECT_EQ(server->received, "bye");
  EXPECT_EQ(server->events.back(), ConnectionEvent::RemoteClose);
}

TEST_F(ConnectionTest, DataAndFinThatCameWhileReadsWereDisabledArriveWhenTheyResume) {
  // Read-disabling keeps the epoll registration: the events that come meanwhile are dropped,
  // and the FIN they reported must not be lost with them (the read after resuming goes on to
  // the end of stream instead of stopping at the first short read).
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.enableHalfClose(true);
    c.readDisable(true);
    c.addReadFilter(server);
    c.addConnectionCallbacks(*server);
  };
  RawClient client = acceptedRawClient();
  ASSERT_TRUE(client.open());
  ASSERT_EQ(5, ::write(client.fd(), "hello", 5));
  ASSERT_EQ(0, ::shutdown(client.fd(), SHUT_WR));
  // Loopback delivers within write(): the events are pending; let the loop drop them.
  for (int i = 0; i < 20; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  EXPECT_EQ(server->received, "");
  EXPECT_FALSE(server->closed());
  server_connections_[0]->readDisable(false);
  ASSERT_TRUE(runUntil([&] { return server->got_end_stream; }));
  EXPECT_EQ(server->received, "hello");
}

TEST_F(ConnectionTest, AcceptedSocketsHaveNoDelayFromTheListeningSocket) {
  // The worker sets no TCP_NODELAY per connection: the listening socket's is inherited.
  RawClient client(*address_);
  ASSERT_TRUE(client.open());
  ASSERT_TRUE(runUntil([&] { return !server_connections_.empty(); }));
  const int fd = dynamic_cast<TransportSocketCallbacks&>(*server_connections_[0]).fd();
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
  EXPECT_EQ(nodelay, 1);
}

TEST_F(ConnectionTest, ResumingReadsWithNothingNewDoesNotRead) {
  // An HTTP/1 server disables reads while each response goes out and resumes after it: with
  // the socket drained and no event meanwhile, resuming must not cost a read (it would only
  // return EAGAIN). What comes afterwards raises its own event.
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) { c.addReadFilter(server); };
  RawClient client(*address_);
  ASSERT_TRUE(client.open());
  ASSERT_EQ(3, ::write(client.fd(), "one", 3));
  ASSERT_TRUE(runUntil([&] { return server->received == "one"; }));
  const int reads = server_reads_;
  server_connections_[0]->readDisable(true);
  server_connections_[0]->readDisable(false);
  for (int i = 0; i < 20; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  EXPECT_EQ(server_reads_, reads) << "resuming read a socket that had nothing new";
  ASSERT_EQ(3, ::write(client.fd(), "two", 3));
  ASSERT_TRUE(runUntil([&] { return server->received == "onetwo"; }));
}

TEST_F(ConnectionTest, AFlushAfterAHalfClosedPeersFinWritesEverything) {
  // A half-closed peer still reads: close(FlushWrite) after its FIN writes all that is
  // buffered. Its FIN stays readable, so each write-ready edge reports Read as well; reading
  // that end of stream again ended the flush (a TCP proxy lost the tail of a large echo).
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.enableHalfClose(true);
    c.addReadFilter(server);
    c.addConnectionCallbacks(*server);
  };
  RawClient client = acceptedRawClient();
  ASSERT_TRUE(client.open());
  ASSERT_EQ(0, ::shutdown(client.fd(), SHUT_WR));
  ASSERT_TRUE(runUntil([&] { return server->got_end_stream; }));
  constexpr size_t kTotal = 8 * 1024 * 1024;  // far more than the sockets buffer
  const std::string sent = pattern(kTotal);
  buffer::Buffer data;
  data.add(sent);
  server_connections_[0]->write(data, false);
  server_connections_[0]->close(ConnectionCloseType::FlushWrite);
  ASSERT_EQ(0, ::fcntl(client.fd(), F_SETFL, O_NONBLOCK));
  std::string got;
  bool eof = false;
  ASSERT_TRUE(runUntil([&] {
    char buf[65536];  // a little at a time: many write-ready edges for the server
    const ssize_t n = ::read(client.fd(), buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    eof = eof || n == 0 || (n < 0 && errno != EAGAIN);
    return eof;
  }));
  EXPECT_EQ(got.size(), kTotal);
  EXPECT_TRUE(got == sent);
}

TEST_F(ConnectionTest, WithoutEarlyCloseDetectionAClosedPeersLastBytesAreStillRead) {
  // An upstream whose response ends with its close, while a slow client has paused reads:
  // the tail must be read when reads resume, not dropped with the close.
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.detectEarlyCloseWhenReadDisabled(false);
    c.readDisable(true);
    c.addReadFilter(server);
    c.addConnectionCallbacks(*server);
  };
  RawClient client = acceptedRawClient();
  ASSERT_TRUE(client.open());
  ASSERT_EQ(4, ::write(client.fd(), "tail", 4));
  client.close();
  for (int i = 0; i < 20; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  EXPECT_FALSE(server->closed());
  server_connections_[0]->readDisable(false);
  ASSERT_TRUE(runUntil([&] { return server->closed(); }));
  EXPECT_EQ(server->received, "tail");
  EXPECT_EQ(server->events.back(), ConnectionEvent::RemoteClose);
}

TEST_F(ConnectionTest, PeerResetClosesTheConnection) {
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.addReadFilter(server);
    c.addConnectionCallbacks(*server);
  };
  // A raw client that resets (RST) instead of closing.
  RawClient client = acceptedRawClient();
  ASSERT_TRUE(client.open());
  ASSERT_EQ(3, ::write(client.fd(), "abc", 3));
  ASSERT_TRUE(runUntil([&] { return server->received == "abc"; }));
  linger lg{1, 0};
  ASSERT_EQ(0, ::setsockopt(client.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
  client.close();
  ASSERT_TRUE(runUntil([&] { return server->closed(); }));
  EXPECT_EQ(server->events.back(), ConnectionEvent::RemoteClose);
  EXPECT_EQ(server_connections_[0]->transportFailureReason(), "Connection reset by peer");
}

TEST_F(ConnectionTest, CloseFlushWriteDeliversEverythingFirst) {
  const std::string big = pattern(4 * 1024 * 1024);
  on_server_connection_ = [&](Connection& c) {
    buffer::Buffer data;
    data.add(big);
    c.write(data, false);
    c.close(ConnectionCloseType::FlushWrite);
    EXPECT_EQ(c.state(), Connection::State::Closing);
  };
  Recorder& client = newRecorder();
  connectClient(client);
  ASSERT_TRUE(runUntil([&] { return client.closed(); }));
  EXPECT_EQ(client.received.size(), big.size());
  EXPECT_TRUE(client.received == big);
  EXPECT_EQ(server_connections_[0]->state(), Connection::State::Closed);
}

TEST_F(ConnectionTest, ReadDisableIsCounted) {
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.addReadFilter(server);
    c.readDisable(true);
    c.readDisable(true);
  };
  Recorder& client = newRecorder();
  ClientConnection& conn = connectClient(client);
  ASSERT_TRUE(runUntil([&] { return server_connections_.size() == 1 && client.connected(); }));
  buffer::Buffer data;
  data.add("queued");
  conn.write(data, false);
  for (int i = 0; i < 50; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  EXPECT_EQ(server->received, "");
  server_connections_[0]->readDisable(false);
  for (int i = 0; i < 50; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  EXPECT_EQ(server->received, "") << "one readDisable(true) is still in force";
  server_connections_[0]->readDisable(false);
  ASSERT_TRUE(runUntil([&] { return server->received == "queued"; }));
}

TEST_F(ConnectionTest, ConnectionRefusedIsAFailureWithAReason) {
  // A port nobody listens on: bind one, read it back, close it.
  std::string error;
  SocketFd s = createListenSocket(*fromIp("127.0.0.1", 0, &error), false, 1, &error);
  auto dead = localAddress(s.fd());
  s.close();
  Recorder& client = newRecorder();
  client_ = createClientConnection(dispatcher_, dead, std::make_unique<RawTransportSocket>(),
                                   &error);
  client_->addConnectionCallbacks(client);
  client_->connect();
  EXPECT_TRUE(client.events.empty()) << "connect() must not raise events from inside itself";
  ASSERT_TRUE(runUntil([&] { return client.closed(); }));
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(client.events.back(), ConnectionEvent::RemoteClose);
  EXPECT_EQ(client_->transportFailureReason(), "Connection refused");
}

TEST_F(SimulatedConnectionTest, ConnectTimeoutClosesTheAttempt) {
  // A listener that never accepts, with its accept queue full: the next SYN goes unanswered.
  std::string error;
  SocketFd full = createListenSocket(*fromIp("127.0.0.1", 0, &error), false, 0, &error);
  auto addr = localAddress(full.fd());
  std::vector<int> fillers;
  for (int i = 0; i < 8; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(fd, addr->sockAddr(), addr->sockAddrLen());
    fillers.push_back(fd);
  }
  Recorder& client = newRecorder();
  client_ = createClientConnection(dispatcher_, addr, std::make_unique<RawTransportSocket>(),
                                   &error);
  client_->addConnectionCallbacks(client);
  client_->connect(250ms);
  time_.advanceTimeAndRun(249ms, dispatcher_);
  EXPECT_TRUE(client.events.empty());
  time_.advanceTimeAndRun(1ms, dispatcher_);
  ASSERT_EQ(client.events.size(), 1u);
  EXPECT_EQ(client.events[0], ConnectionEvent::LocalClose);
  EXPECT_EQ(client_->transportFailureReason(), "connect timeout");
  for (int fd : fillers) ::close(fd);
}

// A server's answer, then its close with a delay of 1 s for the peer's close.
void respondThenCloseWithDelay(Connection& c) {
  c.setDelayedCloseTimeout(1000ms);
  buffer::Buffer data;
  data.add("response");
  c.write(data, false);
  c.close(ConnectionCloseType::FlushWriteAndDelay);
}

TEST_F(SimulatedConnectionTest, FlushWriteAndDelayWaitsForThePeerThenTheTimer) {
  on_server_connection_ = [&](Connection& c) {
    respondThenCloseWithDelay(c);
  };
  Recorder& client = newRecorder();
  connectClient(client);
  client_->enableHalfClose(true);  // it keeps its side open after the server's FIN
  // The server half-closes right after the response (RFC 9112's staged close): the client
  // sees the end of the stream at once, not after the wait.
  ASSERT_TRUE(runUntil([&] { return client.got_end_stream; }));
  EXPECT_EQ(client.received, "response");
  // The client keeps its side open: the server waits for the delayed-close timeout.
  time_.advanceTimeAndRun(999ms, dispatcher_);
  EXPECT_EQ(server_connections_[0]->state(), Connection::State::Closing);
  EXPECT_FALSE(client.closed());
  time_.advanceTimeAndRun(1ms, dispatcher_);
  EXPECT_EQ(server_connections_[0]->state(), Connection::State::Closed);
  // Everything was written: the timeout is no transport failure.
  EXPECT_EQ(server_connections_[0]->transportFailureReason(), "");
}

TEST_F(SimulatedConnectionTest, FlushWriteAndDelayEndsEarlyWhenThePeerCloses) {
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.addConnectionCallbacks(*server);
    respondThenCloseWithDelay(c);
  };
  Recorder& client = newRecorder();
  connectClient(client);
  ASSERT_TRUE(runUntil([&] { return client.received == "response"; }));
  client_->close(ConnectionCloseType::NoFlush);
  ASSERT_TRUE(runUntil([&] { return server->closed(); }));
  EXPECT_EQ(server->events.back(), ConnectionEvent::RemoteClose);
}

TEST_F(SimulatedConnectionTest, AHalfClosingPeersFinDuringTheWaitEndsIt) {
  // With half-close, a peer's FIN ends only its direction; once the server's own FIN is out
  // (the wait has begun), the peer's FIN leaves nothing to wait for.
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.enableHalfClose(true);
    c.addConnectionCallbacks(*server);
    respondThenCloseWithDelay(c);
  };
  Recorder& client = newRecorder();
  connectClient(client);
  client_->enableHalfClose(true);
  ASSERT_TRUE(runUntil([&] { return client.got_end_stream; }));
  EXPECT_FALSE(server->closed());
  buffer::Buffer none;
  client_->write(none, true);  // the client's FIN
  ASSERT_TRUE(runUntil([&] { return server->closed(); }));  // no simulated time passed
  EXPECT_EQ(server->events.back(), ConnectionEvent::RemoteClose);
}

TEST_F(SimulatedConnectionTest, APeerThatClosedItsSideFirstIsNotWaitedFor) {
  // The peer's FIN came before the server's close: after the server's own FIN there is
  // nothing left to wait for, and no unread byte that a close could turn into a reset.
  auto server = std::make_shared<Recorder>();
  on_server_connection_ = [&](Connection& c) {
    c.enableHalfClose(true);
    c.addConnectionCallbacks(*server);
    c.addReadFilter(server);
    c.setDelayedCloseTimeout(1000ms);
  };
  Recorder& client = newRecorder();
  connectClient(client);
  client_->enableHalfClose(true);
  ASSERT_TRUE(runUntil([&] { return client.connected() && !server_connections_.empty(); }));
  buffer::Buffer none;
  client_->write(none, true);
  ASSERT_TRUE(runUntil([&] { return server->got_end_stream; }));
  buffer::Buffer data;
  data.add("late answer");
  server_connections_[0]->write(data, false);
  server_connections_[0]->close(ConnectionCloseType::FlushWriteAndDelay);
  ASSERT_TRUE(runUntil([&] { return server->closed(); }));  // no simulated time passed
  EXPECT_EQ(server->events.back(), ConnectionEvent::LocalClose);
  ASSERT_TRUE(runUntil([&] { return client.received == "late answer" && client.got_end_stream; }));
}

TEST_F(SimulatedConnectionTest, ListenerPausesOnFdExhaustionInsteadOfSpinning) {
  stats::Store store;
  // A second listener with a counter, on its own socket.
  std::string error;
  SocketFd sock = createListenSocket(*fromIp("127.0.0.1", 0, &error), false, 128, &error);
  auto addr = localAddress(sock.fd());
  int accepted = 0;
  struct Cb : ListenerCallbacks {
    explicit Cb(int& n) : n(n) {}
    void onAccept(SocketFd&&, AddressConstSharedPtr) override { ++n; }
    int& n;
  } cb(accepted);
  ListenerConfig config;
  config.accept_errors = &store.counter("accept_errors");
  config.fd_exhaustion_backoff = 100ms;
  TcpListenerImpl listener(dispatcher_, sock, cb, config);

  // Two clients wait in the accept queue.
  std::vector<int> clients;
  for (int i = 0; i < 2; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(0, ::connect(fd, addr->sockAddr(), addr->sockAddrLen()));
    clients.push_back(fd);
  }
  // No fd left for accept().
  rlimit old;
  ASSERT_EQ(0, ::getrlimit(RLIMIT_NOFILE, &old));
  int probe = ::dup(0);
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit low = old;
  low.rlim_cur = probe;  // every fd below `probe` is in use
  ASSERT_EQ(0, ::setrlimit(RLIMIT_NOFILE, &low));
  for (int i = 0; i < 100; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  const uint64_t errors = store.counter("accept_errors").value();
  EXPECT_EQ(errors, 1u) << "one failure, then a pause: not a spin";
  time_.advanceTimeAndRun(100ms, dispatcher_);
  EXPECT_EQ(store.counter("accept_errors").value(), 2u) << "tried again after the back-off";
  EXPECT_EQ(accepted, 0);
  ASSERT_EQ(0, ::setrlimit(RLIMIT_NOFILE, &old));
  time_.advanceTimeAndRun(100ms, dispatcher_);
  ASSERT_TRUE(runUntil([&] { return accepted == 2; }));
  EXPECT_EQ(store.counter("accept_errors").value(), 2u);
  for (int fd : clients) ::close(fd);
}


// The raw transport on its own over a socket pair: a read offers one buffer slice until a
// read fills one, then the full reservation; whatever the sizes, every byte arrives in order
// within one doRead, and a short read ends it.
class SocketPairCallbacks : public TransportSocketCallbacks {
 public:
  explicit SocketPairCallbacks(int fd) : fd_(fd) {}
  int fd() const override { return fd_; }
  Connection& connection() override { std::abort(); }  // the raw transport never asks
  bool shouldDrainReadBuffer() override { return false; }
  void setTransportSocketIsReadable() override {}
  bool peerClosedSeen() const override { return false; }
  void raiseEvent(ConnectionEvent) override {}
  void flushWriteBuffer() override {}

 private:
  int fd_;
};

// A write made inside a file event's callback reaches the peer as that callback returns,
// before the loop runs the next ready event; with writeAtPassEnd() (what the HTTP/2 codec
// sets, to gather its streams' writes) it waits for the end of the loop's pass.
TEST(ConnectionWriteTimingTest, InsideACallbackAWriteGoesOutAsItReturnsOrAtThePassEnd) {
  struct Owner {
    void onEvent(uint32_t) { on(); }
    std::function<void()> on;
  };
  for (const bool at_pass_end : {false, true}) {
    event::RealTimeSystem time;
    event::DispatcherImpl dispatcher("test", time);
    int conn_fds[2], a_fds[2], e_fds[2];
    for (int* fds : {conn_fds, a_fds, e_fds}) {
      ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    }
    ConnectionPtr conn = createServerConnection(dispatcher, SocketFd(conn_fds[0]),
                                                std::make_unique<RawTransportSocket>());
    conn->writeAtPassEnd(at_pass_end);
    std::vector<std::string> log;
    Owner a, e;
    event::EmbeddedFileEvent ea, ee;
    a.on = [&] {
      char byte;
      ASSERT_EQ(1, ::read(a_fds[0], &byte, 1));
      log.push_back("a");
      buffer::Buffer data;
      data.add("hi");
      conn->write(data, false);
    };
    e.on = [&] {
      char byte[4];
      ASSERT_EQ(1, ::read(e_fds[0], byte, 1));
      // What the connection's peer has by now.
      const ssize_t n = ::recv(conn_fds[1], byte, sizeof(byte), MSG_PEEK | MSG_DONTWAIT);
      log.push_back(n > 0 ? "e saw the write" : "e saw nothing");
    };
    ea.initialize<Owner, &Owner::onEvent>(dispatcher, a_fds[0], a, event::FileTriggerType::Level,
                                          event::FileReadyType::Read);
    ee.initialize<Owner, &Owner::onEvent>(dispatcher, e_fds[0], e, event::FileTriggerType::Level,
                                          event::FileReadyType::Read);
    ASSERT_EQ(1, ::write(a_fds[1], "x", 1));  // ready first: epoll reports it first
    ASSERT_EQ(1, ::write(e_fds[1], "y", 1));
    dispatcher.run(event::Dispatcher::RunType::NonBlock);
    ASSERT_EQ(log.size(), 2u);
    ASSERT_EQ(log[0], "a") << "epoll reported the later-ready socket first";
    EXPECT_EQ(log[1], at_pass_end ? "e saw nothing" : "e saw the write") << at_pass_end;
    // Either way the bytes go out within the pass.
    char got[4];
    EXPECT_EQ(::recv(conn_fds[1], got, sizeof(got), MSG_DONTWAIT), 2);
    ea.reset();
    ee.reset();
    conn->close(ConnectionCloseType::NoFlush);
    dispatcher.clearDeferredDeleteList();
    for (int fd : {conn_fds[1], a_fds[0], a_fds[1], e_fds[0], e_fds[1]}) ::close(fd);
  }
}

TEST(RawTransportSocketTest, SmallAndLargeReadsDeliverEveryByte) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  const int big_buffer = 1 << 20;
  ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big_buffer, sizeof(big_buffer));
  ::setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &big_buffer, sizeof(big_buffer));
  SocketPairCallbacks callbacks(fds[1]);
  RawTransportSocket socket;
  socket.setTransportSocketCallbacks(callbacks);
  auto pattern = [](size_t n, size_t seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
    return s;
  };
  auto send = [&](const std::string& s) {
    size_t sent = 0;
    while (sent < s.size()) {
      const ssize_t n = ::send(fds[0], s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      sent += static_cast<size_t>(n);
    }
  };
  // Small, then larger than the full reservation (the first read fills its one slice, the
  // next ones offer more), then small again (after a big read), then exactly one slice.
  const size_t slice = buffer::Buffer::kDefaultSliceSize;
  const std::vector<size_t> sizes = {100, 2 * buffer::Buffer::kDefaultReadReservation + 5, 7, 3,
                                     slice, 200, 1};
  size_t seed = 0;
  for (const size_t size : sizes) {
    const std::string data = pattern(size, ++seed);
    send(data);
    buffer::Buffer in;
    const TransportIoResult r = socket.doRead(in);
    EXPECT_EQ(r.action, PostIoAction::KeepOpen);
    EXPECT_FALSE(r.end_stream_read);
    EXPECT_EQ(r.bytes, size);
    ASSERT_EQ(in.toString(), data) << size;
  }
  ::close(fds[0]);
  buffer::Buffer in;
  EXPECT_TRUE(socket.doRead(in).end_stream_read);
  ::close(fds[1]);
}

}  // namespace
}  // namespace sluice::network
