#pragma once

// The admin's views of a Store, in Envoy's formats so that existing scripts and dashboards
// work:
//
// - renderText (GET /stats): "name: value" per line, counters and gauges together sorted by
//   name, then histograms as "name: P0(nan,1) P25(nan,2.5) ... P100(nan,9)" (interval,
//   cumulative; there are no flush intervals yet, so interval is always nan), or
//   "name: No recorded values".
// - renderJson (GET /stats?format=json): {"stats":[{"name":..,"value":..},...,
//   {"histograms":{"supported_quantiles":[0,25,...,100],"computed_quantiles":[{"name":..,
//   "values":[{"cumulative":..,"interval":null},...]}]}}]}
// - renderPrometheus (GET /stats/prometheus): the text exposition format with Envoy's names
//   ("envoy_" + tag-extracted name, [^a-zA-Z0-9_] -> '_') and tags as labels; "# TYPE" once
//   per family; counters, then gauges, then histograms (_bucket{le=...}, _sum, _count), each
//   family's samples sorted by stat name.
//
// `filter_regex`, when given, keeps the stats whose full name it matches (RE2, anywhere in
// the name, as Envoy's ?filter=). An invalid regex matches nothing: check it first with
// validateFilter() and answer 400.

#include <string>
#include <string_view>

#include "stats/histogram.h"
#include "stats/stats.h"
#include "stats/tag_extractor.h"

namespace sluice::stats {

// Whether `regex` compiles as RE2; if not, says why in *error.
bool validateFilter(const std::string& regex, std::string* error = nullptr);

std::string renderText(const Store& store, const std::string* filter_regex = nullptr);
std::string renderJson(const Store& store, const std::string* filter_regex = nullptr);
std::string renderPrometheus(const Store& store, const std::string* filter_regex = nullptr,
                             const TagProducer& tags = TagProducer::defaults());

// The pieces, for tests and other sinks.

// "P0(nan,1) P25(nan,2.5) ...": Envoy's quantile summary (interval always nan).
std::string quantileSummary(const HistogramStatistics& stats);
// Prometheus metric and label names: every character outside [a-zA-Z0-9_] becomes '_'.
std::string prometheusSanitizeName(std::string_view name);
// A label value with '\\', '"' and newline escaped.
std::string prometheusEscapeLabelValue(std::string_view value);

}  // namespace sluice::stats
