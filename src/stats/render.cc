#include "stats/render.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace sluice::stats {

namespace {

// The optional ?filter=: an unset filter keeps everything, an invalid one nothing.
class NameFilter {
 public:
  explicit NameFilter(const std::string* regex) {
    if (regex != nullptr) re_ = std::make_unique<RE2>(*regex, RE2::Quiet);
  }
  bool keep(const std::string& name) const {
    if (re_ == nullptr) return true;
    return re_->ok() && RE2::PartialMatch(name, *re_);
  }

 private:
  std::unique_ptr<RE2> re_;
};

// Counters and gauges together, sorted by name.
std::vector<std::pair<std::string, uint64_t>> numericStats(const Store& store,
                                                           const NameFilter& filter) {
  std::vector<std::pair<std::string, uint64_t>> out;
  store.forEachCounter([&](const Counter& c) {
    if (filter.keep(c.name())) out.emplace_back(c.name(), c.value());
  });
  store.forEachGauge([&](const Gauge& g) {
    if (filter.keep(g.name())) out.emplace_back(g.name(), g.value());
  });
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

std::vector<const Histogram*> histograms(const Store& store, const NameFilter& filter) {
  std::vector<const Histogram*> out;
  store.forEachHistogram([&](const Histogram& h) {
    if (filter.keep(h.name())) out.push_back(&h);
  });
  return out;
}

// Quantiles are estimates: three decimals are plenty and keep the text short.
double roundQuantile(double v) {
  return std::isnan(v) ? v : std::round(v * 1000) / 1000;
}

// Supported quantiles as percentages, written as Envoy writes them.
constexpr std::string_view kQuantileLabels[] = {"0",  "25", "50",   "75",   "90",
                                                "95", "99", "99.5", "99.9", "100"};
static_assert(std::size(kQuantileLabels) == kSupportedQuantiles.size());

nlohmann::ordered_json jsonNumber(double v) {
  if (std::isnan(v) || std::isinf(v)) return nullptr;
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) return static_cast<int64_t>(v);
  return v;
}

std::string formatLabels(const std::vector<Tag>& tags) {
  std::string out;
  for (const Tag& tag : tags) {
    if (!out.empty()) out.push_back(',');
    out += prometheusSanitizeName(tag.name);
    out += "=\"";
    out += prometheusEscapeLabelValue(tag.value);
    out.push_back('"');
  }
  return out;
}

// One Prometheus family: samples keyed by the full stat name, for a stable order.
using Family = std::vector<std::pair<std::string, std::string>>;
using Families = std::map<std::string, Family>;

void addSample(Families& families, const TagProducer& producer, const std::string& stat_name,
               const std::function<std::string(const std::string&, const std::string&)>& text) {
  std::vector<Tag> tags;
  const std::string extracted = producer.produceTags(stat_name, tags);
  std::string family = "envoy_" + prometheusSanitizeName(extracted);
  std::string sample = text(family, formatLabels(tags));
  families[std::move(family)].emplace_back(stat_name, std::move(sample));
}

void emitFamilies(Families& families, std::string_view type, std::string& out) {
  for (auto& [family, samples] : families) {
    fmt::format_to(std::back_inserter(out), "# TYPE {} {}\n", family, type);
    std::sort(samples.begin(), samples.end());
    for (const auto& [_, text] : samples) out += text;
    out.push_back('\n');
  }
}

}  // namespace

bool validateFilter(const std::string& regex, std::string* error) {
  RE2 re(regex, RE2::Quiet);
  if (!re.ok() && error != nullptr) *error = re.error();
  return re.ok();
}

std::string quantileSummary(const HistogramStatistics& stats) {
  const std::vector<double> values = stats.computedQuantiles();
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i != 0) out.push_back(' ');
    fmt::format_to(std::back_inserter(out), "P{}(nan,{})", kQuantileLabels[i],
                   roundQuantile(values[i]));
  }
  return out;
}

std::string prometheusSanitizeName(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) c = '_';
  }
  return out;
}

std::string prometheusEscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string renderText(const Store& store, const std::string* filter_regex) {
  const NameFilter filter(filter_regex);
  std::string out;
  for (const auto& [name, value] : numericStats(store, filter)) {
    fmt::format_to(std::back_inserter(out), "{}: {}\n", name, value);
  }
  for (const Histogram* h : histograms(store, filter)) {
    const HistogramStatistics stats = h->cumulativeStatistics();
    if (stats.sampleCount() == 0) {
      fmt::format_to(std::back_inserter(out), "{}: No recorded values\n", h->name());
    } else {
      fmt::format_to(std::back_inserter(out), "{}: {}\n", h->name(), quantileSummary(stats));
    }
  }
  return out;
}

std::string renderJson(const Store& store, const std::string* filter_regex) {
  using Json = nlohmann::ordered_json;
  const NameFilter filter(filter_regex);
  Json stats = Json::array();
  for (const auto& [name, value] : numericStats(store, filter)) {
    stats.push_back(Json{{"name", name}, {"value", value}});
  }
  const std::vector<const Histogram*> hists = histograms(store, filter);
  if (!hists.empty()) {
    Json supported = Json::array();
    for (double q : kSupportedQuantiles) supported.push_back(jsonNumber(roundQuantile(q * 100)));
    Json computed = Json::array();
    for (const Histogram* h : hists) {
      Json values = Json::array();
      for (double v : h->cumulativeStatistics().computedQuantiles()) {
        values.push_back(Json{{"cumulative", jsonNumber(roundQuantile(v))}, {"interval", nullptr}});
      }
      computed.push_back(Json{{"name", h->name()}, {"values", std::move(values)}});
    }
    Json histograms_entry = Json::object();
    histograms_entry["histograms"] =
        Json{{"supported_quantiles", std::move(supported)}, {"computed_quantiles", computed}};
    stats.push_back(std::move(histograms_entry));
  }
  Json root = Json::object();
  root["stats"] = std::move(stats);
  // Stat names are not promised to be UTF-8: replace what is not, rather than throw.
  return root.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string renderPrometheus(const Store& store, const std::string* filter_regex,
                             const TagProducer& producer) {
  const NameFilter filter(filter_regex);
  Families counters, gauges, hists;
  store.forEachCounter([&](const Counter& c) {
    if (!filter.keep(c.name())) return;
    const uint64_t value = c.value();
    addSample(counters, producer, c.name(), [&](const std::string& family, const std::string& l) {
      return fmt::format("{}{{{}}} {}\n", family, l, value);
    });
  });
  store.forEachGauge([&](const Gauge& g) {
    if (!filter.keep(g.name())) return;
    const uint64_t value = g.value();
    addSample(gauges, producer, g.name(), [&](const std::string& family, const std::string& l) {
      return fmt::format("{}{{{}}} {}\n", family, l, value);
    });
  });
  store.forEachHistogram([&](const Histogram& h) {
    if (!filter.keep(h.name())) return;
    const HistogramStatistics stats = h.cumulativeStatistics();
    addSample(hists, producer, h.name(), [&](const std::string& family, const std::string& l) {
      const std::string bucket_labels = l.empty() ? "" : l + ",";
      std::string text;
      auto out = std::back_inserter(text);
      const auto cumulative = stats.cumulativeBuckets();
      for (size_t i = 0; i < kBucketCount; ++i) {
        fmt::format_to(out, "{}_bucket{{{}le=\"{:.32g}\"}} {}\n", family, bucket_labels,
                       kDefaultBuckets[i], cumulative[i]);
      }
      fmt::format_to(out, "{}_bucket{{{}le=\"+Inf\"}} {}\n", family, bucket_labels,
                     stats.sampleCount());
      fmt::format_to(out, "{}_sum{{{}}} {}\n", family, l, stats.sampleSum());
      fmt::format_to(out, "{}_count{{{}}} {}\n", family, l, stats.sampleCount());
      return text;
    });
  });
  std::string out;
  emitFamilies(counters, "counter", out);
  emitFamilies(gauges, "gauge", out);
  emitFamilies(hists, "histogram", out);
  return out;
}

}  // namespace sluice::stats
