#include "config/validation.h"

#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "config/api_descriptors.h"
#include "config/bootstrap_loader.h"
#include "config/proto_duration.h"
#include "config/supported_fields.h"
#include "config/yaml_json.h"
#include "envoy/config/cluster/v3/cluster.pb.h"

namespace sluice::config {
namespace {

namespace pb = google::protobuf;
using testing::ElementsAre;
using testing::IsEmpty;

// --- YAML to JSON. ---------------------------------------------------------------------------

std::string toJson(const std::string& yaml) {
  std::string json;
  std::string error;
  EXPECT_TRUE(yamlToJson(yaml, json, error)) << error;
  return json;
}

std::string yamlError(const std::string& yaml) {
  std::string json;
  std::string error;
  EXPECT_FALSE(yamlToJson(yaml, json, error)) << json;
  return error;
}

TEST(YamlToJsonTest, PlainScalarsAreTypedAndQuotedOnesAreStrings) {
  EXPECT_EQ(toJson("{a: true, b: False, c: yes, d: off, e: null, f: ~, g: }"),
            R"({"a":true,"b":false,"c":true,"d":false,"e":null,"f":null,"g":null})");
  EXPECT_EQ(toJson("[12, -7, +5, 0x1F, 0o17, 1.5, 1e3, -.5, .inf, -.Inf, .nan]"),
            R"([12,-7,5,31,15,1.5,1000.0,-0.5,"Infinity","-Infinity","NaN"])");
  EXPECT_EQ(toJson(R"(["true", '12', "null", hello, 12abc, 1.2.3, 0x, "0x1F"])"),
            R"(["true","12","null","hello","12abc","1.2.3","0x","0x1F"])");
  EXPECT_EQ(toJson("[18446744073709551615, -9223372036854775808]"),
            R"([18446744073709551615,-9223372036854775808])");
  EXPECT_EQ(toJson("[18446744073709551616]"), R"(["18446744073709551616"])");
  EXPECT_EQ(toJson("[!!str 12, !!int '12']"), R"(["12",12])");
  EXPECT_EQ(toJson("a: |\n  line1\n  line2\n"), R"({"a":"line1\nline2\n"})");
  EXPECT_EQ(toJson(""), "null");
}

TEST(YamlToJsonTest, AnchorsAliasesAndMergeKeys) {
  EXPECT_EQ(toJson("a: &x {k: 1}\nb: *x\n"), R"({"a":{"k":1},"b":{"k":1}})");
  EXPECT_EQ(toJson("base: &b {x: 1, y: 2}\nc: {<<: *b, y: 3}\n"),
            R"({"base":{"x":1,"y":2},"c":{"y":3,"x":1}})");
  EXPECT_EQ(toJson("p: &p {x: 1}\nq: &q {x: 2, z: 2}\nc: {<<: [*p, *q]}\n"),
            R"({"p":{"x":1},"q":{"x":2,"z":2},"c":{"x":1,"z":2}})");
  // Merges nest: a merged map's own merge keys are resolved too.
  EXPECT_EQ(toJson("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b}\n"),
            R"({"a":{"x":1},"b":{"y":2,"x":1},"c":{"y":2,"x":1}})");
  // A quoted "<<" is an ordinary key.
  EXPECT_EQ(toJson(R"({"<<": 1})"), R"({"<<":1})");
}

TEST(YamlToJsonTest, Errors) {
  EXPECT_EQ(yamlError("a: 1\na: 2\n"), "yaml: line 2, column 1: duplicate key 'a'");
  EXPECT_EQ(yamlError("a: [1\n"),
            "yaml: line 2, column 1: did not find expected ',' or ']' (while parsing a flow "
            "sequence at line 1, column 4)");
  EXPECT_EQ(yamlError("? [a]\n: 1\n"), "yaml: line 1, column 3: map keys must be scalars");
  EXPECT_EQ(yamlError("a: {<<: 1}\n"),
            "yaml: line 1, column 9: a merge key ('<<') takes a map or a sequence of maps");
  EXPECT_EQ(yamlError("a: 1\n---\nb: 2\n"),
            "yaml: line 3, column 1: expected one document, found 2");
  EXPECT_EQ(yamlError("a: !!int x\n"), "yaml: line 1, column 4: 'x' is not a valid int");
  EXPECT_EQ(yamlError("a: *nope\n"),
            "yaml: line 1, column 4: the referenced anchor is not defined");
}

TEST(YamlToJsonTest, PlainBooleanSpellingsAreKept) {
  // As in yaml-cpp: y/yes/on/n/no/off too, in lower, upper or capitalized case only.
  EXPECT_EQ(toJson("[y, Y, Yes, YES, On, n, N, NO, Off, TRUE, yES, oN, tRUE, Null, nULL]"),
            R"([true,true,true,true,true,false,false,false,false,true,"yES","oN","tRUE",null,)"
            R"("nULL"])");
  EXPECT_EQ(toJson("[!!bool yes, !!null ~, !!str null, !foo 12, ! 12, !!binary AAA, 1e400]"),
            R"([true,null,"null","12","12","AAA","Infinity"])");
}

TEST(YamlToJsonTest, NestedFlowCollections) {
  EXPECT_EQ(toJson("a: {b: [1, {c: [2, []]}, {}], d: {e: {f: [x, z]}}}\n"),
            R"({"a":{"b":[1,{"c":[2,[]]},{}],"d":{"e":{"f":["x","z"]}}}})");
  EXPECT_EQ(toJson("- [a: 1, b: 2]\n- {}\n- []\n"), R"([[{"a":1},{"b":2}],{},[]])");
}

TEST(YamlToJsonTest, MultiLineAndBlockScalars) {
  EXPECT_EQ(toJson("plain: one\n  two\n\n  three\nsingle: 'it''s\n  here'\n"),
            R"({"plain":"one two\nthree","single":"it's here"})");
  EXPECT_EQ(toJson("d: \"tab\\there \\\"q\\\" back\\\\slash \\x01 \\u00e9\n  next\"\n"),
            R"({"d":"tab\there \"q\" back\\slash \u0001 é next"})");
  EXPECT_EQ(toJson("lit: |\n  a\n   b\n\nkeep: |+\n  k\n\nstrip: |-\n  s\nfold: >\n  f1\n  f2\n\n"
                   "  f3\nnum: |\n  12\n"),
            R"({"lit":"a\n b\n","keep":"k\n\n","strip":"s","fold":"f1 f2\nf3\n","num":"12\n"})");
  // Keys are escaped like values; UTF-8 is kept as it is.
  EXPECT_EQ(toJson("\"a\\\"b\\n\": \"\\x7f\\x1f\"\nclé: ü\n"),
            "{\"a\\\"b\\n\":\"\x7f\\u001f\",\"clé\":\"ü\"}");
}

TEST(YamlToJsonTest, AliasesOfSequencesAndScalars) {
  EXPECT_EQ(toJson("s: &s [1, [2, {a: b}]]\nt: *s\nu: [*s, *s]\n"),
            R"({"s":[1,[2,{"a":"b"}]],"t":[1,[2,{"a":"b"}]],"u":[[1,[2,{"a":"b"}]],)"
            R"([1,[2,{"a":"b"}]]]})");
  // A scalar alias keeps its typing, and can be a key; a redefined anchor names the new node.
  EXPECT_EQ(toJson("a: &n 12\nb: &q '12'\nc: [*n, *q]\n*q : x\nd: &n 3\ne: *n\n"),
            R"({"a":12,"b":"12","c":[12,"12"],"12":"x","d":3,"e":3})");
}

TEST(YamlToJsonTest, MergePrecedence) {
  // Own keys first and winning wherever they are; then merged maps in order, earlier ones
  // winning; several "<<" keys are applied in order.
  EXPECT_EQ(toJson("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  w: 0\n"
                   "  <<: {z: 3, v: 3}\n  x: 0\n"),
            R"({"a":{"x":1,"y":1},"b":{"y":2,"z":2},"c":{"w":0,"x":0,"y":1,"z":2,"v":3}})");
  // An inline map can be merged too, in a flow or block sequence.
  EXPECT_EQ(toJson("c:\n  <<:\n    - {k: 1}\n    - {k: 2, l: 2}\n"), R"({"c":{"k":1,"l":2}})");
}

TEST(YamlToJsonTest, ErrorPositions) {
  EXPECT_EQ(yamlError("a:\n  b: 1\n  c: {x: 1, x: 2}\n"),
            "yaml: line 3, column 13: duplicate key 'x'");
  // In an anchored (merged) map, duplicates are found where it is defined.
  EXPECT_EQ(yamlError("a: &a {x: 1, x: 2}\nb: {<<: *a}\n"),
            "yaml: line 1, column 14: duplicate key 'x'");
  EXPECT_EQ(yamlError("a: {<<: [{x: 1}, 2]}\n"),
            "yaml: line 1, column 18: a merge key ('<<') takes a map or a sequence of maps");
  // Errors in the map's own keys come before those of its merge keys.
  EXPECT_EQ(yamlError("a: {<<: 1, b: 1, b: 2}\n"), "yaml: line 1, column 18: duplicate key 'b'");
  EXPECT_EQ(yamlError("a: &k [1]\n*k : 2\n"), "yaml: line 1, column 4: map keys must be scalars");
  EXPECT_EQ(yamlError("~: 1\n"), "yaml: line 1, column 1: map keys must be scalars");
  // Syntax errors from libyaml, with its position and context.
  EXPECT_EQ(yamlError("a:\n\tb: 1\n"),
            "yaml: line 2, column 1: found character that cannot start any token (while "
            "scanning for the next token at line 2, column 1)");
  EXPECT_EQ(yamlError("a: \"unclosed\n"),
            "yaml: line 2, column 1: found unexpected end of stream (while scanning a quoted "
            "scalar at line 1, column 4)");
  EXPECT_EQ(yamlError("a: b: c\n"),
            "yaml: line 1, column 5: mapping values are not allowed in this context");
  // A syntax error anywhere wins over a conversion error, and a second document over a
  // conversion error in the first.
  EXPECT_EQ(yamlError("a: {x: 1, x: 2}\nb: ]\n"),
            "yaml: line 2, column 4: did not find expected node content (while parsing a "
            "block node at line 2, column 4)");
  EXPECT_EQ(yamlError("a: {x: 1, x: 2}\n---\nb: 1\n"),
            "yaml: line 3, column 1: expected one document, found 2");
  EXPECT_EQ(yamlError("a: 1\n---\n"), "yaml: line 3, column 1: expected one document, found 2");
}

TEST(YamlToJsonTest, NestingLimit) {
  auto nested = [](int levels) {
    return std::string(levels, '[') + "1" + std::string(levels, ']');
  };
  EXPECT_EQ(toJson(nested(256)), nested(256));
  EXPECT_EQ(yamlError(nested(257)), "yaml: line 1, column 258: nested deeper than 256 levels");
  // Also when an alias puts its node deeper than where it was defined, or refers to itself.
  EXPECT_EQ(yamlError("a: &a " + nested(250) + "\nb: " + std::string(10, '[') + "*a" +
                      std::string(10, ']') + "\n"),
            "yaml: line 1, column 253: nested deeper than 256 levels");
  EXPECT_EQ(yamlError("a: &x [*x]\n"), "yaml: line 1, column 4: nested deeper than 256 levels");
}

TEST(YamlToJsonTest, AliasExpansionIsBounded) {
  // "Billion laughs": each level repeats the one before ten times, so level 9 alone is 10^9
  // nodes. It is refused, quickly and with little memory, at the first node past the budget.
  std::string bomb = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    std::string items;
    for (int j = 0; j < 10; ++j) items += (j ? ", " : "") + prev;
    bomb += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + items + "]\n";
  }
  const std::string error = yamlError(bomb);
  EXPECT_NE(error.find("aliases expand the document to more than 1000000 nodes"),
            std::string::npos)
      << error;
  // A document that reuses an anchor a modest number of times converts as before.
  std::string reuse = "base: &b {k: v}\nitems:\n";
  for (int i = 0; i < 1000; ++i) reuse += "- *b\n";
  EXPECT_NE(toJson(reuse).find(R"([{"k":"v"},{"k":"v"})"), std::string::npos);
}

TEST(YamlToJsonTest, JsonSyntax) {
  std::string error;
  EXPECT_TRUE(checkJsonSyntax(R"({"a": [1, 2]})", error));
  EXPECT_FALSE(checkJsonSyntax("{\"a\": [1, 2}", error));
  EXPECT_EQ(error,
            "json: line 1, column 12: syntax error while parsing array - unexpected '}'; "
            "expected ']'");
}

// --- Validation. -----------------------------------------------------------------------------

// Parses `yaml` as `type` (a dynamic message of the embedded pool) and validates it.
std::vector<std::string> validate(const std::string& type, const std::string& yaml,
                                  const std::string& root = "") {
  static auto* factory = new pb::DynamicMessageFactory(&envoyApiPool());
  const pb::Descriptor* descriptor = findApiMessageType(type);
  EXPECT_NE(descriptor, nullptr) << type;
  std::unique_ptr<pb::Message> msg(factory->GetPrototype(descriptor)->New());
  std::vector<std::string> errors;
  EXPECT_TRUE(messageFromYaml(yaml, type, *msg, errors)) << testing::PrintToString(errors);
  errors.clear();
  const bool valid = validateMessage(*msg, errors, root);
  EXPECT_EQ(valid, errors.empty());
  return errors;
}

TEST(ValidationTest, GeneratedMessageWithRootPath) {
  envoy::config::cluster::v3::Cluster cluster;
  std::vector<std::string> errors;
  ASSERT_TRUE(messageFromYaml("{connect_timeout: 0.000000001s, lb_policy: 99}",
                              "envoy.config.cluster.v3.Cluster", cluster, errors));
  EXPECT_FALSE(validateMessage(cluster, errors, "clusters[3]"));
  EXPECT_THAT(errors, ElementsAre("clusters[3].name: value length must be at least 1 characters",
                                  "clusters[3].lb_policy: value must be one of the defined enum "
                                  "values"));
}

TEST(ValidationTest, StringRules) {
  // A strict HTTP_HEADER_NAME (no strict: false) takes RFC 7230 tokens only; ignore_empty
  // skips an empty value.
  const std::string generic = "envoy.extensions.http.injected_credentials.generic.v3.Generic";
  EXPECT_THAT(validate(generic, "{credential: {name: s}, header: 'x bad'}"),
              ElementsAre("header: value must be a valid HTTP header name"));
  EXPECT_THAT(validate(generic, "{credential: {name: s}, header: ':authority'}"), IsEmpty());
  EXPECT_THAT(validate(generic, "{credential: {name: s}, header: ''}"), IsEmpty());
  // Lengths count characters, not bytes.
  EXPECT_THAT(validate("envoy.config.core.v3.TypedExtensionConfig",
                       "{name: é, typed_config: {'@type': "
                       "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"),
              IsEmpty());
}

TEST(ValidationTest, RequiredMessagesAnysAndOneofs) {
  EXPECT_THAT(validate("envoy.extensions.http.injected_credentials.generic.v3.Generic", "{}"),
              ElementsAre("credential: value is required"));
  EXPECT_THAT(validate("envoy.config.core.v3.TypedExtensionConfig", "{name: x}"),
              ElementsAre("typed_config: value is required"));
  EXPECT_THAT(validate("envoy.config.route.v3.Route", "{match: {prefix: /}}"),
              ElementsAre("action: one of route, redirect, direct_response, filter_action, "
                          "non_forwarding_action must be set"));
}

TEST(ValidationTest, NumberRangesRepeatedAndMaps) {
  EXPECT_THAT(validate("envoy.type.v3.Percent", "{value: 150}"),
              ElementsAre("value: value must be inside range [0, 100]"));
  EXPECT_THAT(validate("envoy.type.v3.Percent", "{value: 99.5}"), IsEmpty());
  EXPECT_THAT(validate("envoy.config.route.v3.VirtualHost", "{name: v}"),
              ElementsAre("domains: value must contain at least 1 item(s)"));
  EXPECT_THAT(validate("envoy.config.route.v3.InternalRedirectPolicy",
                       "{response_headers_to_copy: [a, b, a]}"),
              ElementsAre("response_headers_to_copy[2]: repeated value must contain unique items"));
  EXPECT_THAT(validate("envoy.config.core.v3.Metadata", "{filter_metadata: {'': {}, ok: {}}}"),
              ElementsAre("filter_metadata[]: value length must be at least 1 characters"));
}

TEST(ValidationTest, AnyContentsAreValidatedWithTheAnysPath) {
  // The HCM inside the Any is a dynamic message of the embedded pool: its rules come from
  // descriptors that were not generated into C++ for this walk.
  EXPECT_THAT(validate("envoy.config.listener.v3.Listener", R"(
name: l
filter_chains:
- filters:
  - name: hcm
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: ""
      rds: {route_config_name: r, config_source: {ads: {}}}
)",
                       "listeners[0]"),
              ElementsAre("listeners[0].filter_chains[0].filters[0].typed_config.stat_prefix: "
                          "value length must be at least 1 characters"));
}

TEST(ValidationTest, DurationRules) {
  EXPECT_THAT(validate("envoy.config.cluster.v3.Cluster",
                       "{name: c, connect_timeout: 1s, dns_refresh_rate: 0.0005s}"),
              ElementsAre("dns_refresh_rate: value must be greater than 0.001s"));
}

// --- The supported subset. ---------------------------------------------------------------------

TEST(SupportedFieldsTest, EveryTableEntryNamesSomethingInTheApi) {
  const auto& pool = envoyApiPool();
  for (const auto& m : supportedMessages()) {
    const pb::Descriptor* d = findApiMessageType(m.message);
    ASSERT_NE(d, nullptr) << m.message;
    for (auto f : m.fields) {
      if (f != kAllFields) {
        EXPECT_NE(d->FindFieldByName(std::string(f)), nullptr) << m.message << "." << f;
      }
    }
  }
  for (const auto& v : supportedValues()) {
    const pb::Descriptor* d = findApiMessageType(v.message);
    ASSERT_NE(d, nullptr) << v.message;
    const pb::FieldDescriptor* f = d->FindFieldByName(std::string(v.field));
    ASSERT_NE(f, nullptr) << v.message << "." << v.field;
    if (f->enum_type() != nullptr) {
      for (auto value : v.values) {
        EXPECT_NE(f->enum_type()->FindValueByName(std::string(value)), nullptr) << value;
      }
    }
  }
  for (const auto& e : supportedExtensions()) {
    EXPECT_NE(findApiMessageType(e.type), nullptr) << e.type;
    loadApiSymbol(e.slot);
    const pb::FieldDescriptor* slot = pool.FindFieldByName(std::string(e.slot));
    ASSERT_NE(slot, nullptr) << e.slot;
    const pb::Descriptor* held = slot->is_map()
                                     ? slot->message_type()->FindFieldByNumber(2)->message_type()
                                     : slot->message_type();
    EXPECT_EQ(held->full_name(), "google.protobuf.Any") << e.slot;
  }
  for (const auto& h : fieldHints()) {
    const pb::Descriptor* d = findApiMessageType(h.message);
    ASSERT_NE(d, nullptr) << h.message;
    EXPECT_NE(d->FindFieldByName(std::string(h.field)), nullptr) << h.message << "." << h.field;
  }
}

TEST(SupportedFieldsTest, EveryMessageReachableThroughASupportedFieldHasAnEntry) {
  std::set<std::string> listed;
  for (const auto& m : supportedMessages()) {
    listed.insert(std::string(m.message));
  }
  for (const auto& e : supportedExtensions()) {
    EXPECT_EQ(listed.count(std::string(e.type)), 1u) << e.type;
  }
  for (const auto& m : supportedMessages()) {
    const pb::Descriptor* d = findApiMessageType(m.message);
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      const bool supported =
          std::find(m.fields.begin(), m.fields.end(), f->name()) != m.fields.end() ||
          std::find(m.fields.begin(), m.fields.end(), kAllFields) != m.fields.end();
      if (!supported || f->message_type() == nullptr) {
        continue;
      }
      const pb::Descriptor* type =
          f->is_map() ? f->message_type()->FindFieldByNumber(2)->message_type() : f->message_type();
      if (type == nullptr || type->file()->package() == "google.protobuf") {
        continue;
      }
      EXPECT_EQ(listed.count(type->full_name()), 1u)
          << f->full_name() << " leads to " << type->full_name() << ", which has no entry";
    }
  }
}

TEST(SupportedFieldsTest, CheckSupportedTakesARootPath) {
  envoy::config::cluster::v3::Cluster cluster;
  std::vector<std::string> errors;
  ASSERT_TRUE(messageFromYaml("{name: c, type: ORIGINAL_DST, respect_dns_ttl: true}",
                              "envoy.config.cluster.v3.Cluster", cluster, errors));
  EXPECT_FALSE(checkSupported(cluster, errors, "clusters[0]"));
  EXPECT_THAT(errors, ElementsAre("clusters[0].type: ORIGINAL_DST is not supported (supported: "
                                  "STATIC, STRICT_DNS, LOGICAL_DNS, EDS)",
                                  "clusters[0].respect_dns_ttl: respect_dns_ttl is not supported"));
}

TEST(SupportedFieldsTest, ExtensionsInAMapAreCheckedByKey) {
  envoy::config::cluster::v3::Cluster cluster;
  std::vector<std::string> errors;
  ASSERT_TRUE(messageFromYaml(R"(
name: c
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {http3_protocol_options: {}}
  envoy.filters.network.redis_proxy:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
)",
                              "envoy.config.cluster.v3.Cluster", cluster, errors))
      << testing::PrintToString(errors);
  EXPECT_FALSE(checkSupported(cluster, errors));
  EXPECT_THAT(errors, testing::UnorderedElementsAre(
                          "typed_extension_protocol_options[envoy.extensions.upstreams.http.v3."
                          "HttpProtocolOptions].explicit_http_config.http3_protocol_options: "
                          "http3_protocol_options is not supported",
                          "typed_extension_protocol_options[envoy.filters.network.redis_proxy]: "
                          "envoy.filters.network.redis_proxy is not supported"));
}

// docs/envoy-compat.md carries the tables verbatim, so the page cannot drift from the code.
TEST(SupportedFieldsTest, TheCompatPageListsEveryTableEntry) {
  const std::string root = SLUICE_SOURCE_DIR;
  std::ifstream in(root + "/docs/envoy-compat.md");
  ASSERT_TRUE(in.good()) << "cannot read " << root << "/docs/envoy-compat.md";
  std::stringstream page;
  page << in.rdbuf();
  const std::string markdown = supportedFieldsMarkdown();
  // The generated block is exactly the code's tables: nothing more, nothing less.
  const std::string begin =
      "<!-- BEGIN generated by supportedFieldsMarkdown(): do not edit by hand -->\n";
  const std::string end = "<!-- END generated -->";
  const size_t b = page.str().find(begin);
  const size_t e = page.str().find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  auto trimmed = [](std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  };
  if (std::getenv("SLUICE_REGEN_DOCS") != nullptr) {
    // SLUICE_REGEN_DOCS=1 build/bin/config_test --gtest_filter='SupportedFieldsTest.*'
    // rewrites the block from the code's tables.
    std::string text = page.str();
    text.replace(b + begin.size(), e - b - begin.size(), markdown + "\n");
    std::ofstream(root + "/docs/envoy-compat.md") << text;
    return;
  }
  EXPECT_EQ(trimmed(page.str().substr(b + begin.size(), e - b - begin.size())), trimmed(markdown))
      << "docs/envoy-compat.md's generated block must be supportedFieldsMarkdown() verbatim";
  // And, entry by entry, for a readable failure.
  for (const auto& m : supportedMessages()) {
    EXPECT_NE(page.str().find("| `" + std::string(m.message) + "` |"), std::string::npos)
        << m.message;
  }
  for (const auto& e : supportedExtensions()) {
    EXPECT_NE(page.str().find("`" + std::string(e.name) + "`"), std::string::npos) << e.name;
  }
}

// The one conversion of a Duration the translations use: nanoseconds below a millisecond
// dropped, and seconds past the 10,000 years a Duration may hold clamped (no overflow).
TEST(ProtoDurationTest, ToMilliseconds) {
  google::protobuf::Duration d;
  d.set_seconds(2);
  d.set_nanos(345999999);
  EXPECT_EQ(toMilliseconds(d), std::chrono::milliseconds(2345));
  d.set_seconds(-1);
  d.set_nanos(-500000000);
  EXPECT_EQ(toMilliseconds(d), std::chrono::milliseconds(-1500));
  d.set_seconds(315576000000);
  d.set_nanos(0);
  EXPECT_EQ(toMilliseconds(d), std::chrono::milliseconds(315576000000000));
  d.set_seconds(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(toMilliseconds(d), std::chrono::milliseconds(315576000000000));
  d.set_seconds(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(toMilliseconds(d), std::chrono::milliseconds(-315576000000000));
}

}  // namespace
}  // namespace sluice::config
