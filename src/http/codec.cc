#include "http/codec.h"

namespace sluice::http {

std::string_view protocolString(Protocol p) {
  switch (p) {
    case Protocol::Http10: return "HTTP/1.0";
    case Protocol::Http11: return "HTTP/1.1";
    case Protocol::Http2: return "HTTP/2";
  }
  return "";
}

std::string_view resetReasonString(StreamResetReason reason) {
  switch (reason) {
    case StreamResetReason::ConnectionFailure: return "connection_failure";
    case StreamResetReason::ConnectionTermination: return "connection_termination";
    case StreamResetReason::LocalReset: return "local_reset";
    case StreamResetReason::LocalRefusedStreamReset: return "local_refused_stream_reset";
    case StreamResetReason::Overflow: return "overflow";
    case StreamResetReason::RemoteReset: return "remote_reset";
    case StreamResetReason::RemoteRefusedStreamReset: return "remote_refused_stream_reset";
    case StreamResetReason::ConnectError: return "connect_error";
    case StreamResetReason::ProtocolError: return "protocol_error";
    case StreamResetReason::ConnectionTimeout: return "connection_timeout";
  }
  return "";
}

}  // namespace sluice::http
