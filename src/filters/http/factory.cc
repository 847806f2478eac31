#include "filters/http/factory.h"

#include <array>

#include "envoy/type/v3/percent.pb.h"
#include "filters/http/fault/fault_filter.h"
#include "filters/http/local_ratelimit/local_ratelimit.h"

namespace sluice::filters {

const HttpFilterFactory* findHttpFilterFactory(std::string_view config_type) {
  if (const size_t slash = config_type.rfind('/'); slash != std::string_view::npos) {
    config_type.remove_prefix(slash + 1);
  }
  static const std::array<const HttpFilterFactory*, 2> kFactories{&faultFilterFactory(),
                                                                  &localRateLimitFilterFactory()};
  for (const HttpFilterFactory* f : kFactories) {
    if (f->configType() == config_type) return f;
  }
  return nullptr;
}

Fraction toFraction(const envoy::type::v3::FractionalPercent& proto) {
  Fraction f;
  f.numerator = proto.numerator();
  switch (proto.denominator()) {
    case envoy::type::v3::FractionalPercent::TEN_THOUSAND: f.denominator = 10000; break;
    case envoy::type::v3::FractionalPercent::MILLION: f.denominator = 1000000; break;
    default: f.denominator = 100; break;
  }
  return f;
}

}  // namespace sluice::filters
