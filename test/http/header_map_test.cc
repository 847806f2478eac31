#include <gtest/gtest.h>

#include "http/header_map.h"

#include <string>
#include <utility>
#include <vector>

namespace sluice::http {
namespace {

TEST(HeaderMapTest, PseudoHeadersStayFirstAndDuplicatesAreKept) {
  HeaderMap h;
  h.add("user-agent", "curl");
  h.add(":path", "/a");
  h.add("accept", "1");
  h.add(":method", "GET");
  h.add("accept", "2");
  std::vector<std::string> keys;
  for (const auto& e : h) keys.emplace_back(e.key);
  EXPECT_EQ(keys, (std::vector<std::string>{":path", ":method", "user-agent", "accept", "accept"}));
  EXPECT_EQ(h.count("accept"), 2u);
  EXPECT_EQ(h.getValue("accept"), "1");
  EXPECT_EQ(h.path(), "/a");
  EXPECT_EQ(h.method(), "GET");
  EXPECT_EQ(h.getValue("missing"), "");
}

TEST(HeaderMapTest, SetReplacesAllAndRemoveCounts) {
  HeaderMap h{{"a", "1"}, {"b", "2"}, {"a", "3"}};
  EXPECT_EQ(h.byteSize(), 6u);
  h.set("a", "xyz");
  EXPECT_EQ(h.count("a"), 1u);
  EXPECT_EQ(h.getValue("a"), "xyz");
  EXPECT_EQ(h.byteSize(), 6u);  // a+xyz, b+2
  h.append("b", "4");
  EXPECT_EQ(h.getValue("b"), "2,4");
  EXPECT_EQ(h.remove("a"), 1u);
  EXPECT_EQ(h.remove("a"), 0u);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.byteSize(), 4u);
}

TEST(HeaderMapTest, StatusParses) {
  HeaderMap h{{":status", "404"}};
  EXPECT_EQ(h.status(), 404u);
  h.set(":status", "4x4");
  EXPECT_EQ(h.status(), 0u);
  // Not three digits, not first, absent.
  h.set(":status", "1000");
  EXPECT_EQ(h.status(), 1000u);
  h.set(":status", "20");
  EXPECT_EQ(h.status(), 20u);
  h.set(":status", "2 0");
  EXPECT_EQ(h.status(), 0u);
  h.set(":status", "");
  EXPECT_EQ(h.status(), 0u);
  HeaderMap later{{"x", "1"}};
  later.append(":status", "503");  // a pseudo-header goes first even when added last
  EXPECT_EQ(later.status(), 503u);
  HeaderMap only_method{{":method", "GET"}, {"x", "200"}};
  EXPECT_EQ(only_method.status(), 0u);
  HeaderMap request{{":method", "GET"}, {":status", "302"}};
  EXPECT_EQ(request.status(), 302u);
}

TEST(HeaderMapTest, GrowsPastItsInlineEntriesAndBytes) {
  HeaderMap h;
  std::vector<std::string> values;
  for (size_t i = 0; i < 3 * HeaderMap::kInlineEntries; ++i) {
    values.push_back(std::string(100 + i, static_cast<char>('a' + i % 26)));
    h.add("x-header-" + std::to_string(i), values.back());
  }
  h.add(":path", "/p");
  ASSERT_EQ(h.size(), 3 * HeaderMap::kInlineEntries + 1);
  EXPECT_EQ(h.begin()->key, ":path");
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(h.getValue("x-header-" + std::to_string(i)), values[i]) << i;
  }
  const HeaderMap copy = h;
  EXPECT_TRUE(copy == h);
  h.clear();
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.byteSize(), 0u);
  h.add("a", "1");
  EXPECT_EQ(h.getValue("a"), "1");
  EXPECT_EQ(copy.getValue("x-header-0"), values[0]);
}

TEST(HeaderMapTest, ViewsOutliveChangesToTheirEntry) {
  HeaderMap h{{"a", "first-value-longer-than-sso"}, {"b", "x"}};
  const std::string_view old = h.getValue("a");
  h.set("a", h.getValue("a"));  // a value from the map itself
  h.append("a", "more");
  h.append("b", "");
  h.remove("a");
  EXPECT_EQ(old, "first-value-longer-than-sso");
  EXPECT_EQ(h.getValue("b"), "x,");
  EXPECT_EQ(h.byteSize(), 3u);
  h.set("c", "");
  ASSERT_NE(h.get("c"), nullptr);
  EXPECT_EQ(*h.get("c"), "");
  HeaderMap moved = std::move(h);
  EXPECT_EQ(moved.getValue("b"), "x,");
  EXPECT_EQ(moved.size(), 2u);
}


// The name filter (mayHave) answers most absent names without a scan; whatever it answers,
// get, has, count, set, append and remove behave as a scan would.
TEST(HeaderMapTest, NameFilterPresentAbsentRemovedReAdded) {
  HeaderMap h{{":method", "GET"}, {":path", "/"}, {"host", "a"}, {"user-agent", "x"}};
  EXPECT_TRUE(h.mayHave("user-agent"));
  EXPECT_TRUE(h.mayHave(":path"));
  EXPECT_EQ(h.getValue("user-agent"), "x");
  EXPECT_EQ(h.get("connection"), nullptr);
  EXPECT_EQ(h.count("connection"), 0u);
  EXPECT_EQ(h.remove("connection"), 0u);
  EXPECT_EQ(h.size(), 4u);
  // Removed: absent again, and the filter forgets it.
  EXPECT_EQ(h.remove("user-agent"), 1u);
  EXPECT_FALSE(h.has("user-agent"));
  EXPECT_FALSE(h.mayHave("user-agent"));
  // Re-added.
  h.add("user-agent", "y");
  EXPECT_TRUE(h.mayHave("user-agent"));
  EXPECT_EQ(h.getValue("user-agent"), "y");
  // Names are stored as given: a lookup is exact (codecs lower-case names before adding).
  EXPECT_FALSE(h.has("User-Agent"));
  h.clear();
  EXPECT_FALSE(h.mayHave("user-agent"));
  EXPECT_FALSE(h.has(":path"));
}

TEST(HeaderMapTest, NameFilterForgetsRemovedNames) {
  HeaderMap h;
  h.add("x-only", "1");
  ASSERT_TRUE(h.mayHave("x-only"));
  h.removeIf([](const HeaderEntry& e) { return e.key == "x-only"; });
  EXPECT_FALSE(h.mayHave("x-only"));
  h.set("x-only", "2");
  EXPECT_TRUE(h.mayHave("x-only"));
  h.remove("x-only");
  EXPECT_FALSE(h.mayHave("x-only"));
  h.append("x-only", "3");
  EXPECT_EQ(h.getValue("x-only"), "3");
  EXPECT_TRUE(h.mayHave("x-only"));
}

TEST(HeaderMapTest, NameFilterMultipleValuesAndCopies) {
  HeaderMap h{{"accept", "a"}, {"b", "1"}, {"accept", "b"}};
  EXPECT_EQ(h.count("accept"), 2u);
  h.remove("b");
  EXPECT_EQ(h.count("accept"), 2u);  // recomputing the filter keeps the names left
  EXPECT_EQ(h.getValue("accept"), "a");
  const HeaderMap copy = h;
  EXPECT_TRUE(copy.mayHave("accept"));
  EXPECT_FALSE(copy.has("b"));
  h.set("accept", "c");
  EXPECT_EQ(h.count("accept"), 1u);
  h.append("accept", "d");
  EXPECT_EQ(h.getValue("accept"), "c,d");
}

// Names whose filter bits collide: an absent name that shares a present name's bit is still
// absent (the scan decides).
TEST(HeaderMapTest, NameFilterCollisionsFallBackToTheScan) {
  // Find two different names that the filter cannot tell apart.
  std::string present;
  std::string absent;
  for (int i = 0; i < 4096 && absent.empty(); ++i) {
    HeaderMap probe;
    probe.add("x-name-" + std::to_string(i), "v");
    for (int j = i + 1; j < 4096; ++j) {
      const std::string other = "x-name-" + std::to_string(j);
      if (probe.mayHave(other)) {
        present = "x-name-" + std::to_string(i);
        absent = other;
        break;
      }
    }
  }
  ASSERT_FALSE(absent.empty());
  HeaderMap h{{present, "p"}};
  EXPECT_TRUE(h.mayHave(absent));
  EXPECT_EQ(h.get(absent), nullptr);
  EXPECT_EQ(h.count(absent), 0u);
  EXPECT_EQ(h.remove(absent), 0u);
  h.set(absent, "a");
  EXPECT_EQ(h.getValue(present), "p");
  EXPECT_EQ(h.getValue(absent), "a");
  EXPECT_EQ(h.size(), 2u);
}

// Random operations against a plain list of pairs (the behaviour before the filter).
TEST(HeaderMapTest, NameFilterMatchesAScanUnderRandomOperations) {
  const std::vector<std::string> names = {":path", "host", "a", "b", "te", "connection",
                                          "x-envoy-internal", "x-request-id", "via", "cookie",
                                          "x-forwarded-for", "upgrade", "content-length"};
  std::vector<std::pair<std::string, std::string>> model;
  HeaderMap h;
  uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) & 0x7fff;
  };
  auto first = [&](const std::string& k) -> const std::string* {
    for (const auto& [mk, mv] : model) {
      if (mk == k) return &mv;
    }
    return nullptr;
  };
  for (int step = 0; step < 5000; ++step) {
    const std::string& k = names[next() % names.size()];
    const std::string v = std::to_string(next() % 100);
    switch (next() % 5) {
      case 0:
        if (!k.empty() && k[0] == ':') break;  // pseudo-headers reorder; covered above
        h.add(k, v);
        model.emplace_back(k, v);
        break;
      case 1: {
        h.set(k, v);
        bool seen = false;
        std::vector<std::pair<std::string, std::string>> kept;
        for (auto& e : model) {
          if (e.first != k) {
            kept.push_back(e);
          } else if (!seen) {
            kept.emplace_back(k, v);
            seen = true;
          }
        }
        if (!seen) kept.emplace_back(k, v);
        model = kept;
        break;
      }
      case 2: {
        size_t n = 0;
        std::erase_if(model, [&](const auto& e) { return e.first == k && ++n; });
        EXPECT_EQ(h.remove(k), n);
        break;
      }
      case 3: {
        h.append(k, v);
        bool done = false;
        for (auto& e : model) {
          if (e.first == k) {
            e.second = e.second.empty() ? v : e.second + "," + v;
            done = true;
            break;
          }
        }
        if (!done) model.emplace_back(k, v);
        break;
      }
      case 4:
        if (next() % 20 == 0) {
          h.clear();
          model.clear();
        }
        break;
    }
    for (const std::string& name : names) {
      const std::string* want = first(name);
      const std::string_view* got = h.get(name);
      ASSERT_EQ(got == nullptr, want == nullptr) << "step " << step << " " << name;
      if (want) ASSERT_EQ(*got, *want);
      size_t n = 0;
      for (const auto& e : model) n += e.first == name;
      ASSERT_EQ(h.count(name), n);
    }
    ASSERT_EQ(h.size(), model.size());
  }
}

}  // namespace
}  // namespace sluice::http
