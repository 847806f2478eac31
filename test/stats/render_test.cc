#include "stats/render.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "stats/stats.h"
#include "stats/tag_extractor.h"

namespace sluice::stats {
namespace {

// ---- Tag extraction --------------------------------------------------------------------------

struct TagCase {
  std::string name;
  std::string extracted;
  std::vector<Tag> tags;
};

TEST(TagExtractorTest, EnvoyDefaults) {
  const std::vector<TagCase> cases = {
      {"cluster.backend.upstream_rq_total",
       "cluster.upstream_rq_total",
       {{"envoy.cluster_name", "backend"}}},
      {"cluster.backend.upstream_rq_503",
       "cluster.upstream_rq",
       {{"envoy.response_code", "503"}, {"envoy.cluster_name", "backend"}}},
      {"http.ingress_http.downstream_rq_2xx",
       "http.downstream_rq_xx",
       {{"envoy.response_code_class", "2"}, {"envoy.http_conn_manager_prefix", "ingress_http"}}},
      {"listener.127.0.0.1_10000.downstream_cx_total",
       "listener.downstream_cx_total",
       {{"envoy.listener_address", "127.0.0.1_10000"}}},
      {"listener.[__1]_8080.downstream_cx_active",
       "listener.downstream_cx_active",
       {{"envoy.listener_address", "[__1]_8080"}}},
      {"cluster.x.circuit_breakers.default.cx_open",
       "cluster.circuit_breakers.default.cx_open",
       {{"envoy.cluster_name", "x"}}},
      {"http.ingress_http.rds.route_name.config_reload",
       "http.rds.config_reload",
       {{"envoy.rds_route_config", "route_name"},
        {"envoy.http_conn_manager_prefix", "ingress_http"}}},
      {"http.ingress_http.rds.local.route.v1.update_success",
       "http.rds.update_success",
       {{"envoy.rds_route_config", "local.route.v1"},
        {"envoy.http_conn_manager_prefix", "ingress_http"}}},
      // "admin" is not a listener address.
      {"listener.admin.downstream_cx_total", "listener.admin.downstream_cx_total", {}},
      {"listener.admin.http.admin.downstream_rq_2xx",
       "listener.admin.http.downstream_rq_xx",
       {{"envoy.response_code_class", "2"}, {"envoy.http_conn_manager_prefix", "admin"}}},
      {"listener.0.0.0.0_443.http.ingress.downstream_rq_5xx",
       "listener.http.downstream_rq_xx",
       {{"envoy.response_code_class", "5"},
        {"envoy.http_conn_manager_prefix", "ingress"},
        {"envoy.listener_address", "0.0.0.0_443"}}},
      {"server.uptime", "server.uptime", {}},
      {"server.watchdog_miss", "server.watchdog_miss", {}},
      {"main_thread.watchdog_miss", "main_thread.watchdog_miss", {}},
      {"server.worker_0.watchdog_miss", "server.worker_watchdog_miss", {{"envoy.worker_id", "0"}}},
      {"listener_manager.worker_1.dispatcher.loop_duration_us",
       "listener_manager.worker_dispatcher.loop_duration_us",
       {{"envoy.worker_id", "1"}}},
      {"cluster_manager.cluster_added", "cluster_manager.cluster_added", {}},
      {"listener_manager.total_listeners_active", "listener_manager.total_listeners_active", {}},
      {"http.ingress_http.downstream_rq_time",
       "http.downstream_rq_time",
       {{"envoy.http_conn_manager_prefix", "ingress_http"}}},
      {"cluster.backend.upstream_rq_time",
       "cluster.upstream_rq_time",
       {{"envoy.cluster_name", "backend"}}},
      {"vhost.vh1.vcluster.vc1.upstream_rq_200",
       "vhost.vcluster.upstream_rq",
       {{"envoy.response_code", "200"},
        {"envoy.virtual_cluster", "vc1"},
        {"envoy.virtual_host", "vh1"}}},
      {"tcp.ingress_tcp.downstream_cx_total",
       "tcp.downstream_cx_total",
       {{"envoy.tcp_prefix", "ingress_tcp"}}},
      {"cluster.backend.ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256",
       "cluster.ssl.ciphers",
       {{"cipher_suite", "ECDHE-RSA-AES128-GCM-SHA256"}, {"envoy.cluster_name", "backend"}}},
      {"http.ingress_http.user_agent.ios.downstream_cx_total",
       "http.user_agent.downstream_cx_total",
       {{"envoy.http_user_agent", "ios"}, {"envoy.http_conn_manager_prefix", "ingress_http"}}},
      {"cluster.only", "cluster.only", {}},  // "cluster.$.**" needs a token after the name
      {"nodots", "nodots", {}},
  };
  const TagProducer& producer = TagProducer::defaults();
  for (const TagCase& c : cases) {
    std::vector<Tag> tags;
    EXPECT_EQ(producer.produceTags(c.name, tags), c.extracted) << c.name;
    EXPECT_EQ(tags, c.tags) << c.name;
  }
}

// ---- Text ------------------------------------------------------------------------------------

void fillSmallStore(Store& store) {
  store.counter("cluster.backend.upstream_rq_total").inc(3);
  store.counter("cluster.backend.upstream_rq_503").inc(1);
  store.counter("cluster.backend.upstream_rq_200").inc(5);
  store.counter("http.ingress_http.downstream_rq_2xx").inc(7);
  store.counter("http.ingress_http.rds.route_name.config_reload").inc(1);
  store.counter("listener.127.0.0.1_10000.downstream_cx_total").inc(2);
  store.counter("listener.admin.downstream_cx_total").inc(1);
  store.counter("server.watchdog_miss");
  store.counter("main_thread.watchdog_miss");
  store.gauge("server.live").set(1);
  store.gauge("cluster_manager.active_clusters").set(2);
  store.gauge("cluster.x.circuit_breakers.default.cx_open").set(0);
  Histogram& rq_time = store.histogram("http.ingress_http.downstream_rq_time");
  rq_time.recordValue(3);
  rq_time.recordValue(70);
  store.histogram("cluster.backend.upstream_rq_time");
}

TEST(RenderTextTest, SmallStore) {
  Store store;
  fillSmallStore(store);
  EXPECT_EQ(renderText(store),
            "cluster.backend.upstream_rq_200: 5\n"
            "cluster.backend.upstream_rq_503: 1\n"
            "cluster.backend.upstream_rq_total: 3\n"
            "cluster.x.circuit_breakers.default.cx_open: 0\n"
            "cluster_manager.active_clusters: 2\n"
            "http.ingress_http.downstream_rq_2xx: 7\n"
            "http.ingress_http.rds.route_name.config_reload: 1\n"
            "listener.127.0.0.1_10000.downstream_cx_total: 2\n"
            "listener.admin.downstream_cx_total: 1\n"
            "main_thread.watchdog_miss: 0\n"
            "server.live: 1\n"
            "server.watchdog_miss: 0\n"
            "cluster.backend.upstream_rq_time: No recorded values\n"
            "http.ingress_http.downstream_rq_time: P0(nan,3) P25(nan,4) P50(nan,5) "
            "P75(nan,60) P90(nan,66) P95(nan,68) P99(nan,69.6) P99.5(nan,69.8) "
            "P99.9(nan,69.96) P100(nan,70)\n");
}

TEST(RenderTextTest, QuantileSummary) {
  Store store;
  Histogram& h = store.histogram("h");
  for (uint64_t v = 1; v <= 100; ++v) h.recordValue(v);
  EXPECT_EQ(quantileSummary(h.cumulativeStatistics()),
            "P0(nan,1) P25(nan,25) P50(nan,50) P75(nan,75) P90(nan,90) P95(nan,95) P99(nan,99) "
            "P99.5(nan,99.5) P99.9(nan,99.9) P100(nan,100)");
  Histogram& thirds = store.histogram("thirds");
  for (uint64_t v : {2, 3, 4}) thirds.recordValue(v);
  // P25: rank 0.75 of 3 in (1,5] narrowed to [2,4]: 2 + 2 * 0.25 = 2.5; P50: 2 + 2 * 0.5.
  EXPECT_EQ(quantileSummary(thirds.cumulativeStatistics()).substr(0, 31),
            "P0(nan,2) P25(nan,2.5) P50(nan,");
}

TEST(RenderTextTest, Filter) {
  Store store;
  fillSmallStore(store);
  const std::string filter = "upstream_rq_(5|t)";
  EXPECT_EQ(renderText(store, &filter),
            "cluster.backend.upstream_rq_503: 1\n"
            "cluster.backend.upstream_rq_total: 3\n"
            "cluster.backend.upstream_rq_time: No recorded values\n");
  const std::string anchored = "^server\\.";
  EXPECT_EQ(renderText(store, &anchored), "server.live: 1\nserver.watchdog_miss: 0\n");
}

TEST(RenderTextTest, InvalidFilter) {
  Store store;
  fillSmallStore(store);
  const std::string bad = "upstream_rq_(";
  std::string error;
  EXPECT_FALSE(validateFilter(bad, &error));
  EXPECT_FALSE(error.empty());
  EXPECT_TRUE(validateFilter("a|b"));
  EXPECT_EQ(renderText(store, &bad), "");
}

TEST(RenderTextTest, EmptyStore) {
  Store store;
  EXPECT_EQ(renderText(store), "");
  EXPECT_EQ(renderJson(store), R"({"stats":[]})");
  EXPECT_EQ(renderPrometheus(store), "");
}

// ---- JSON ------------------------------------------------------------------------------------

TEST(RenderJsonTest, EnvoyShape) {
  Store store;
  store.counter("cluster.a.upstream_rq_total").inc(4);
  store.gauge("server.live").set(1);
  Histogram& h = store.histogram("cluster.a.upstream_rq_time");
  for (uint64_t v = 1; v <= 100; ++v) h.recordValue(v);
  store.histogram("cluster.b.upstream_rq_time");
  const std::string out = renderJson(store);
  EXPECT_EQ(
      out,
      R"({"stats":[{"name":"cluster.a.upstream_rq_total","value":4},{"name":"server.live","value":1},)"
      R"({"histograms":{"supported_quantiles":[0,25,50,75,90,95,99,99.5,99.9,100],"computed_quantiles":[)"
      R"({"name":"cluster.a.upstream_rq_time","values":[{"cumulative":1,"interval":null},)"
      R"({"cumulative":25,"interval":null},{"cumulative":50,"interval":null},)"
      R"({"cumulative":75,"interval":null},{"cumulative":90,"interval":null},)"
      R"({"cumulative":95,"interval":null},{"cumulative":99,"interval":null},)"
      R"({"cumulative":99.5,"interval":null},{"cumulative":99.9,"interval":null},)"
      R"({"cumulative":100,"interval":null}]},)"
      R"({"name":"cluster.b.upstream_rq_time","values":[{"cumulative":null,"interval":null},)"
      R"({"cumulative":null,"interval":null},{"cumulative":null,"interval":null},)"
      R"({"cumulative":null,"interval":null},{"cumulative":null,"interval":null},)"
      R"({"cumulative":null,"interval":null},{"cumulative":null,"interval":null},)"
      R"({"cumulative":null,"interval":null},{"cumulative":null,"interval":null},)"
      R"({"cumulative":null,"interval":null}]}]}}]})");
  // And it parses, with the parts where Envoy's readers look for them.
  const nlohmann::json parsed = nlohmann::json::parse(out);
  ASSERT_EQ(parsed["stats"].size(), 3u);
  EXPECT_EQ(parsed["stats"][0]["name"], "cluster.a.upstream_rq_total");
  EXPECT_EQ(parsed["stats"][0]["value"], 4);
  const auto& hist = parsed["stats"][2]["histograms"];
  EXPECT_EQ(hist["supported_quantiles"].size(), 10u);
  EXPECT_EQ(hist["computed_quantiles"][0]["values"][2]["cumulative"], 50);
}

TEST(RenderJsonTest, FilterAndNoHistograms) {
  Store store;
  store.counter("a.x").inc();
  store.counter("b.x").inc(2);
  store.histogram("a.h");
  const std::string filter = "^b";
  EXPECT_EQ(renderJson(store, &filter), R"({"stats":[{"name":"b.x","value":2}]})");
}

TEST(RenderJsonTest, NamesAreEscaped) {
  Store store;
  store.counter("weird\"name\\x").inc();
  store.counter("zz.bad\xff").inc();  // not UTF-8
  const nlohmann::json parsed = nlohmann::json::parse(renderJson(store));
  EXPECT_EQ(parsed["stats"][0]["name"], "weird\"name\\x");
  EXPECT_EQ(parsed["stats"][1]["name"], "zz.bad\xEF\xBF\xBD");  // U+FFFD
}

// ---- Prometheus ------------------------------------------------------------------------------

TEST(RenderPrometheusTest, SanitizeAndEscape) {
  EXPECT_EQ(prometheusSanitizeName("cluster.a-b:c/d e"), "cluster_a_b_c_d_e");
  EXPECT_EQ(prometheusSanitizeName("Az09_"), "Az09_");
  EXPECT_EQ(prometheusSanitizeName("envoy.cluster_name"), "envoy_cluster_name");
  EXPECT_EQ(prometheusSanitizeName("é"), "__");  // two bytes of UTF-8
  EXPECT_EQ(prometheusEscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(RenderPrometheusTest, SmallStore) {
  Store store;
  fillSmallStore(store);
  EXPECT_EQ(
      renderPrometheus(store),
      "# TYPE envoy_cluster_upstream_rq counter\n"
      "envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend\"} 5\n"
      "envoy_cluster_upstream_rq{envoy_response_code=\"503\",envoy_cluster_name=\"backend\"} 1\n"
      "\n"
      "# TYPE envoy_cluster_upstream_rq_total counter\n"
      "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 3\n"
      "\n"
      "# TYPE envoy_http_downstream_rq_xx counter\n"
      "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\","
      "envoy_http_conn_manager_prefix=\"ingress_http\"} 7\n"
      "\n"
      "# TYPE envoy_http_rds_config_reload counter\n"
      "envoy_http_rds_config_reload{envoy_rds_route_config=\"route_name\","
      "envoy_http_conn_manager_prefix=\"ingress_http\"} 1\n"
      "\n"
      "# TYPE envoy_listener_admin_downstream_cx_total counter\n"
      "envoy_listener_admin_downstream_cx_total{} 1\n"
      "\n"
      "# TYPE envoy_listener_downstream_cx_total counter\n"
      "envoy_listener_downstream_cx_total{envoy_listener_address=\"127.0.0.1_10000\"} 2\n"
      "\n"
      "# TYPE envoy_main_thread_watchdog_miss counter\n"
      "envoy_main_thread_watchdog_miss{} 0\n"
      "\n"
      "# TYPE envoy_server_watchdog_miss counter\n"
      "envoy_server_watchdog_miss{} 0\n"
      "\n"
      "# TYPE envoy_cluster_circuit_breakers_default_cx_open gauge\n"
      "envoy_cluster_circuit_breakers_default_cx_open{envoy_cluster_name=\"x\"} 0\n"
      "\n"
      "# TYPE envoy_cluster_manager_active_clusters gauge\n"
      "envoy_cluster_manager_active_clusters{} 2\n"
      "\n"
      "# TYPE envoy_server_live gauge\n"
      "envoy_server_live{} 1\n"
      "\n"
      "# TYPE envoy_cluster_upstream_rq_time histogram\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"0.5\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"1\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"5\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"10\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"25\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"50\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"100\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"250\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"500\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"1000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"2500\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"5000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"10000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"30000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"60000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"300000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"600000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"1800000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"3600000\"} 0\n"
      "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"+Inf\"} 0\n"
      "envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"backend\"} 0\n"
      "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"backend\"} 0\n"
      "\n"
      "# TYPE envoy_http_downstream_rq_time histogram\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"0.5\"} 0\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"1\"} 0\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"5\"} 1\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"10\"} 1\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"25\"} 1\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"50\"} 1\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"100\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"250\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"500\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"1000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"2500\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"5000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"10000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"30000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"60000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"300000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"600000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"1800000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"3600000\"} 2\n"
      "envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix=\"ingress_http\","
      "le=\"+Inf\"} 2\n"
      "envoy_http_downstream_rq_time_sum{envoy_http_conn_manager_prefix=\"ingress_http\"} 73\n"
      "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"ingress_http\"} 2\n"
      "\n");
}

TEST(RenderPrometheusTest, UntaggedHistogramAndFilter) {
  Store store;
  store.histogram("server.initialization_time_ms").recordValue(12);
  store.counter("server.other").inc();
  const std::string filter = "initialization";
  const std::string out = renderPrometheus(store, &filter);
  EXPECT_NE(out.find("# TYPE envoy_server_initialization_time_ms histogram\n"
                     "envoy_server_initialization_time_ms_bucket{le=\"0.5\"} 0\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("envoy_server_initialization_time_ms_bucket{le=\"+Inf\"} 1\n"
                     "envoy_server_initialization_time_ms_sum{} 12\n"
                     "envoy_server_initialization_time_ms_count{} 1\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("server_other"), std::string::npos);
}

TEST(RenderPrometheusTest, LabelValuesEscapedAndNamesSanitized) {
  Store store;
  store.counter("cluster.we\"ird\\name.upstream_cx_total").inc();
  store.counter("cluster.my-svc.default.svc:8080.bind_errors").inc();  // '-' and ':' in names
  const std::string out = renderPrometheus(store);
  EXPECT_NE(out.find("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"we\\\"ird\\\\name\"} 1"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("envoy_cluster_default_svc_8080_bind_errors{envoy_cluster_name=\"my-svc\"} 1"),
            std::string::npos)
      << out;
}

// promtool is Prometheus's own checker. It parses the exposition (exit 1 on any syntax error,
// duplicate family or bad sample) and then lints it (exit 3). Envoy's names break lint rules
// on purpose (counters without "_total", no HELP text, "_ms"): those findings are expected;
// anything else fails the test.
TEST(RenderPrometheusTest, PromtoolAcceptsLargeStore) {
  const char* promtool = "/usr/bin/promtool";
  if (access(promtool, X_OK) != 0) GTEST_SKIP() << promtool << " is not installed";

  Store store;
  for (int c = 0; c < 30; ++c) {
    const std::string cluster = "cluster.service-" + std::to_string(c) + ".ns.svc";
    for (const char* stat :
         {"upstream_rq_total", "upstream_cx_total", "upstream_rq_200", "upstream_rq_503",
          "upstream_rq_2xx", "upstream_rq_5xx", "upstream_cx_connect_fail", "lb_healthy_panic",
          "circuit_breakers.default.rq_open", "ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256"}) {
      store.counter(cluster + "." + stat).inc(static_cast<uint64_t>(c));
    }
    store.gauge(cluster + ".upstream_cx_active").set(static_cast<uint64_t>(c));
    store.gauge(cluster + ".membership_healthy").set(3);
    Histogram& h = store.histogram(cluster + ".upstream_rq_time");
    for (uint64_t v = 0; v < static_cast<uint64_t>(c) * 10; ++v) h.recordValue(v * 37 % 5000);
    store.histogram(cluster + ".upstream_cx_length_ms");
  }
  for (int l = 0; l < 5; ++l) {
    const std::string listener =
        "listener.10.0.0." + std::to_string(l) + "_" + std::to_string(8000 + l);
    store.counter(listener + ".downstream_cx_total").inc(7);
    store.gauge(listener + ".downstream_cx_active").set(1);
    store.counter(listener + ".http.ingress_" + std::to_string(l) + ".downstream_rq_2xx").inc();
    store.histogram(listener + ".downstream_cx_length_ms").recordValue(100000);
  }
  for (const char* prefix : {"ingress_http", "egress_http", "admin"}) {
    const std::string http = std::string("http.") + prefix;
    for (const char* stat : {"downstream_rq_total", "downstream_rq_1xx", "downstream_rq_2xx",
                             "downstream_rq_4xx", "downstream_rq_5xx", "downstream_cx_total",
                             "rds.local_route.config_reload", "rds.a.b.c.update_success"}) {
      store.counter(http + "." + stat).inc();
    }
    store.gauge(http + ".downstream_rq_active");
    store.histogram(http + ".downstream_rq_time").recordValue(42);
    store.histogram(http + ".downstream_cx_length_ms").recordValue(4000000);
  }
  store.counter("listener.admin.downstream_cx_total").inc();
  store.counter("listener.[__1]_9901.downstream_cx_total").inc();
  store.counter("cluster_manager.cluster_added").inc(30);
  store.gauge("cluster_manager.active_clusters").set(30);
  store.counter("listener_manager.listener_added").inc(5);
  store.gauge("listener_manager.total_listeners_active").set(5);
  store.gauge("server.live").set(1);
  store.gauge("server.uptime").set(1234);
  store.counter("server.watchdog_miss");
  store.counter("server.watchdog_mega_miss");
  store.counter("main_thread.watchdog_miss");
  store.counter("worker_0.watchdog_miss");
  store.counter("server.worker_0.watchdog_miss");
  store.counter("vhost.backend.vcluster.api.upstream_rq_200").inc();
  store.counter("cluster.we\"ird\\name.upstream_cx_total").inc();
  store.counter("cluster.unicode-é.upstream_cx_total").inc();

  const std::string exposition = renderPrometheus(store);
  const std::string dir = ::testing::TempDir();
  const std::string in = dir + "/stats_prometheus_" + std::to_string(getpid()) + ".txt";
  const std::string err = in + ".err";
  {
    std::ofstream f(in);
    f << exposition;
  }
  const std::string cmd = std::string(promtool) + " check metrics < " + in + " 2> " + err;
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << cmd;
  const int code = WEXITSTATUS(status);
  std::ifstream errors(err);
  std::stringstream all;
  all << errors.rdbuf();
  std::remove(in.c_str());
  std::remove(err.c_str());
  ASSERT_TRUE(code == 0 || code == 3) << "promtool exit " << code << ":\n" << all.str();

  const std::set<std::string> allowed = {
      "no help text",
      "counter metrics should have \"_total\" suffix",
      "metric names should not contain abbreviated units",
  };
  std::string line;
  int findings = 0;
  while (std::getline(all, line)) {
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    ASSERT_NE(space, std::string::npos) << line;
    EXPECT_TRUE(allowed.count(line.substr(space + 1)) == 1) << line;
    ++findings;
  }
  EXPECT_GT(findings, 0);  // Envoy's names do trip the lint rules above
}

}  // namespace
}  // namespace sluice::stats
