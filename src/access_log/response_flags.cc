// http::responseFlagsString: Envoy's short names for the response flags, in the order Envoy
// prints them (the order of Envoy's own flag enum, which is not the order of our bits), joined
// by ','. Lives in the access log library because the access log is what prints them.

#include <array>
#include <string>
#include <string_view>

#include "http/stream_info.h"

namespace sluice::http {
namespace {

struct FlagName {
  ResponseFlag flag;
  std::string_view name;
};

// Envoy's print order. Envoy flags we do not have (UAEX, RLSE, IH, RFCF, NFCF, OM, DF, DO) would
// slot in where Envoy has them.
constexpr std::array<FlagName, 21> kFlagNames{{
    {FailedLocalHealthCheck, "LH"},
    {NoHealthyUpstream, "UH"},
    {UpstreamRequestTimeout, "UT"},
    {LocalReset, "LR"},
    {UpstreamRemoteReset, "UR"},
    {UpstreamConnectionFailure, "UF"},
    {UpstreamConnectionTermination, "UC"},
    {UpstreamOverflow, "UO"},
    {NoRouteFound, "NR"},
    {DelayInjected, "DI"},
    {FaultInjected, "FI"},
    {RateLimited, "RL"},
    {DownstreamConnectionTermination, "DC"},
    {UpstreamRetryLimitExceeded, "URX"},
    {StreamIdleTimeout, "SI"},
    {DownstreamProtocolError, "DPE"},
    {UpstreamMaxStreamDurationReached, "UMSDR"},
    {DurationTimeout, "DT"},
    {UpstreamProtocolError, "UPE"},
    {NoClusterFound, "NC"},
    {DownstreamRemoteReset, "DR"},
}};

}  // namespace

std::string responseFlagsString(uint32_t flags) {
  if (flags == 0) return "-";
  std::string out;
  for (const FlagName& f : kFlagNames) {
    if ((flags & f.flag) == 0) continue;
    if (!out.empty()) out.push_back(',');
    out.append(f.name);
  }
  return out.empty() ? std::string("-") : out;
}

}  // namespace sluice::http
