#pragma once

// The HTTP filter registry: each filter Sluice has (besides the router) is found by the type
// of its typed_config, and turns that config into an http::FilterFactoryCb once per config
// (immutable, shared by every worker) and a typed_per_filter_config entry into its per-route
// config. The connection manager runs the filters in config order, the router last.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "http/filter.h"
#include "http/route.h"

namespace google::protobuf {
class Any;
}
namespace sluice::stats {
class Store;
}

namespace envoy::type::v3 {
class FractionalPercent;
}

namespace sluice::filters {

// What a filter's config may use besides its proto: where its stats go and its randomness.
struct FilterFactoryContext {
  stats::Store& store;
  // The connection manager's stat_prefix (Envoy's filters count under "http.<stat_prefix>.").
  std::string stat_prefix;
  // Random numbers for percentages, called on workers (so thread-safe); http::randomU64 when
  // empty. Tests give a seeded one.
  std::function<uint64_t()> random;
};

class HttpFilterFactory {
 public:
  virtual ~HttpFilterFactory() = default;
  // The canonical name ("envoy.filters.http.fault") and the config's full message name.
  virtual std::string_view name() const = 0;
  virtual std::string_view configType() const = 0;
  // The factory for an http_filters entry named `filter_name` (the name typed_per_filter_config
  // keys use for it; the canonical name works too). Null with `error` as "<path>.field: why",
  // `path` being the typed_config's.
  virtual http::FilterFactoryCb createFilterFactory(const google::protobuf::Any& config,
                                                    const std::string& filter_name,
                                                    const FilterFactoryContext& context,
                                                    const std::string& path,
                                                    std::string* error) const = 0;
  // A typed_per_filter_config entry, compiled; null with `error` as above.
  virtual http::RouteSpecificFilterConfigConstSharedPtr createRouteConfig(
      const google::protobuf::Any& config, const FilterFactoryContext& context,
      const std::string& path, std::string* error) const = 0;
};

// The factory for a config type (a type URL, with or without "type.googleapis.com/"), or null.
const HttpFilterFactory* findHttpFilterFactory(std::string_view config_type);

// The per-route config for a filter: the entry keyed by its http_filters name, else by its
// canonical name; most specific (route over virtual host) first. Null without a route, and for
// an entry of another filter's type (the loader refuses those for names in http_filters; a
// canonical-name key may still hold one): as Envoy's filters, the filter ignores it.
template <class T>
const T* perFilterConfig(const http::Route* route, std::string_view filter_name,
                         std::string_view canonical_name) {
  if (route == nullptr) return nullptr;
  if (const auto* c = route->perFilterConfig(filter_name)) return dynamic_cast<const T*>(c);
  if (filter_name == canonical_name) return nullptr;
  return dynamic_cast<const T*>(route->perFilterConfig(canonical_name));
}

// A FractionalPercent, ready to evaluate: `random % denominator < numerator`.
struct Fraction {
  uint32_t numerator{0};
  uint32_t denominator{100};  // 100, 10000 or 1000000
  bool evaluate(uint64_t random) const { return random % denominator < numerator; }
};
Fraction toFraction(const envoy::type::v3::FractionalPercent& proto);

}  // namespace sluice::filters
