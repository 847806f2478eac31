// A scriptable ADS server for the end-to-end tests: a real gRPC server (grpc++) that serves
// envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources (state of
// the world) and DeltaAggregatedResources (incremental), and does only what the test tells it
// on stdin, one command per line:
//   respond <file>        send the DiscoveryResponse (on a delta stream: the
//                         DeltaDiscoveryResponse) in <file> (YAML or JSON, as a path config
//                         source holds one) on the open stream; an empty nonce is filled in
//                         ("n1", "n2", ...)
//   close <code> <text>   end the open stream with that gRPC status
//   quit
// and reports on stderr, one line each (flushed):
//   listening <port> | stream open | request <(Delta)DiscoveryRequest as JSON> | sent <nonce> |
//   stream closed | error <text>
// It is a fake at the seam only: the proxy under test is the real binary, over a real socket.

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_callback.h>
#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <iostream>
#include <list>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "config/bootstrap_loader.h"
#include "config/validation.h"
#include "envoy/service/discovery/v3/discovery.pb.h"

namespace {

constexpr const char* kAdsMethod =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
constexpr const char* kDeltaAdsMethod =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

std::mutex out_mu;
void say(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mu);
  std::cerr << line << std::endl;
}

class Stream;

// The one stream the test talks to (the latest opened).
std::recursive_mutex current_mu;
Stream* current = nullptr;

class Stream : public grpc::ServerGenericBidiReactor {
 public:
  Stream(bool serve, bool delta) : delta_(delta) {
    if (!serve) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "only ADS is served"));
      return;
    }
    {
      std::lock_guard<std::recursive_mutex> lock(current_mu);
      current = this;
    }
    say("stream open");
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client ended or cancelled the call
      finish(grpc::Status::OK);
      return;
    }
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (in_.Dump(&slices).ok()) {
      for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    envoy::service::discovery::v3::DiscoveryRequest req;
    envoy::service::discovery::v3::DeltaDiscoveryRequest delta_req;
    google::protobuf::Message& msg = delta_ ? static_cast<google::protobuf::Message&>(delta_req)
                                            : req;
    if (!msg.ParseFromString(bytes)) {
      say("error a request that does not parse");
    } else {
      std::string json;
      google::protobuf::util::JsonPrintOptions opts;
      (void)google::protobuf::util::MessageToJsonString(msg, &json, opts);
      say("request " + json);
    }
    StartRead(&in_);
  }

  void write(std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    grpc::Slice slice(bytes);
    queue_.emplace_back(&slice, 1);
    if (queue_.size() == 1) StartWrite(&queue_.front());
  }

  void OnWriteDone(bool ok) override {
    std::unique_ptr<grpc::Status> finish_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.pop_front();
      if (!ok) return;
      if (!queue_.empty()) {
        StartWrite(&queue_.front());
      } else if (finish_after_writes_) {
        finished_ = true;
        finish_now = std::move(finish_after_writes_);
      }
    }
    // Outside the lock: OnDone (which deletes this) may follow at once.
    if (finish_now) Finish(*finish_now);
  }

  void finish(grpc::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      if (!queue_.empty()) {
        finish_after_writes_ = std::make_unique<grpc::Status>(status);
        return;
      }
      finished_ = true;
    }
    Finish(status);
  }

  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> lock(current_mu);
      if (current == this) {
        current = nullptr;
        say("stream closed");
      }
    }
    delete this;
  }

  bool delta() const { return delta_; }

 private:
  const bool delta_;
  grpc::ByteBuffer in_;
  std::mutex mu_;
  std::list<grpc::ByteBuffer> queue_;
  bool finished_{false};
  std::unique_ptr<grpc::Status> finish_after_writes_;
};

class Service : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Stream(ctx->method() == kAdsMethod || ctx->method() == kDeltaAdsMethod,
                      ctx->method() == kDeltaAdsMethod);
  }
};

template <class Response>
bool loadResponse(const std::string& path, int nonce_seq, std::string& bytes, std::string& nonce) {
  std::ifstream in(path);
  std::stringstream text;
  if (!in || !(text << in.rdbuf())) {
    say("error cannot read " + path);
    return false;
  }
  // The embedded API knows every resource type a response may carry.
  const std::string type = Response::descriptor()->full_name();
  std::unique_ptr<google::protobuf::Message> dyn = sluice::config::newApiMessage(type);
  std::vector<std::string> errors;
  if (!dyn || !sluice::config::messageFromYaml(text.str(), type, *dyn, errors)) {
    say("error " + path + ": " + (errors.empty() ? std::string("?") : errors[0]));
    return false;
  }
  Response resp;
  resp.ParseFromString(dyn->SerializeAsString());
  if (resp.nonce().empty()) resp.set_nonce("n" + std::to_string(nonce_seq));
  nonce = resp.nonce();
  bytes = resp.SerializeAsString();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1:0";
  if (argc > 1) address = argv[1];
  Service service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    say("error cannot listen on " + address);
    return 1;
  }
  say("listening " + std::to_string(port));
  std::string line;
  int nonce_seq = 0;
  while (std::getline(std::cin, line)) {
    std::istringstream cmd(line);
    std::string verb;
    cmd >> verb;
    if (verb == "quit") break;
    std::lock_guard<std::recursive_mutex> lock(current_mu);
    if (!current) {
      say("error no open stream");
      continue;
    }
    if (verb == "respond") {
      std::string path, bytes, nonce;
      cmd >> path;
      const bool loaded =
          current->delta()
              ? loadResponse<envoy::service::discovery::v3::DeltaDiscoveryResponse>(
                    path, ++nonce_seq, bytes, nonce)
              : loadResponse<envoy::service::discovery::v3::DiscoveryResponse>(
                    path, ++nonce_seq, bytes, nonce);
      if (loaded) {
        say("sent " + nonce);  // first: the proxy's answer may come before write() returns
        current->write(std::move(bytes));
      }
    } else if (verb == "close") {
      int code = 14;
      std::string text;
      cmd >> code;
      std::getline(cmd, text);
      current->finish(grpc::Status(static_cast<grpc::StatusCode>(code), text));
    } else {
      say("error unknown command " + verb);
    }
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
