#include "access_log/file_sink.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace sluice::access_log {
namespace {

using namespace std::chrono_literals;

// The flush thread's timer is far away: every test flushes explicitly, so nothing depends on
// real time passing.
constexpr auto kLongInterval = std::chrono::milliseconds(std::chrono::hours(1));

class FileSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "file_sink_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static std::string readFile(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) {
        out.push_back(text.substr(start));  // an unterminated tail: a test failure below
        break;
      }
      out.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
    return out;
  }

  std::filesystem::path dir_;
};

TEST_F(FileSinkTest, ConcurrentWritersNeverInterleaveWithinALine) {
  std::string error;
  const std::string p = path("access.log");
  auto sink = FileSink::open(p, kLongInterval, &error);
  ASSERT_NE(sink, nullptr) << error;

  constexpr int kThreads = 4;
  constexpr int kLines = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&sink, t] {
      for (int i = 0; i < kLines; ++i) {
        // Lines of varied length, some long enough to cross the 64 KiB flush threshold often.
        std::string line = "thread=" + std::to_string(t) + " line=" + std::to_string(i) + " ";
        line.append(static_cast<size_t>((i * 37 + t * 11) % 300), static_cast<char>('a' + t));
        line.push_back('\n');
        sink->write(line);
      }
    });
  }
  for (auto& th : threads) th.join();
  sink->flush();

  const std::vector<std::string> got = lines(readFile(p));
  ASSERT_EQ(got.size(), static_cast<size_t>(kThreads * kLines));
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : got) {
    int t = -1, i = -1;
    ASSERT_EQ(std::sscanf(line.c_str(), "thread=%d line=%d ", &t, &i), 2) << line;
    ASSERT_GE(t, 0);
    ASSERT_LT(t, kThreads);
    // Each thread's lines arrive whole and in the order that thread wrote them.
    EXPECT_EQ(i, next[t]) << line;
    next[t] = i + 1;
    std::string expected = "thread=" + std::to_string(t) + " line=" + std::to_string(i) + " ";
    expected.append(static_cast<size_t>((i * 37 + t * 11) % 300), static_cast<char>('a' + t));
    EXPECT_EQ(line, expected);
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kLines);
  EXPECT_EQ(sink->writeFailures(), 0u);
}

TEST_F(FileSinkTest, ReopenAfterRenameWritesToTheNewFile) {
  std::string error;
  const std::string p = path("access.log");
  const std::string rotated = path("access.log.1");
  auto sink = FileSink::open(p, kLongInterval, &error);
  ASSERT_NE(sink, nullptr) << error;

  sink->write("before rotation\n");
  sink->flush();
  std::filesystem::rename(p, rotated);

  // Until reopen(), the sink still writes to the renamed file (it holds the fd).
  sink->write("still old\n");
  sink->flush();
  EXPECT_FALSE(std::filesystem::exists(p));

  sink->reopen();
  sink->write("after rotation\n");
  sink->flush();

  EXPECT_EQ(readFile(rotated), "before rotation\nstill old\n");
  EXPECT_EQ(readFile(p), "after rotation\n");
  EXPECT_EQ(sink->reopenFailures(), 0u);
}

TEST_F(FileSinkTest, ReopenFailureKeepsTheOldFile) {
  std::string error;
  const std::filesystem::path sub = dir_ / "sub";
  std::filesystem::create_directory(sub);
  const std::string p = (sub / "access.log").string();
  auto sink = FileSink::open(p, kLongInterval, &error);
  ASSERT_NE(sink, nullptr) << error;
  std::filesystem::rename(sub, dir_ / "moved");  // the path's directory is gone
  sink->reopen();
  sink->write("kept\n");
  sink->flush();
  EXPECT_EQ(sink->reopenFailures(), 1u);
  EXPECT_EQ(readFile((dir_ / "moved" / "access.log").string()), "kept\n");
}

TEST_F(FileSinkTest, MissingDirectoryIsAClearError) {
  std::string error;
  const std::string p = path("no-such-dir/access.log");
  EXPECT_EQ(FileSink::open(p, kLongInterval, &error), nullptr);
  EXPECT_EQ(error, "cannot open access log '" + p + "': No such file or directory");
  EXPECT_EQ(FileSink::open("", kLongInterval, &error), nullptr);
  EXPECT_EQ(error, "access log path is empty");
}

TEST_F(FileSinkTest, AppendsToAnExistingFile) {
  const std::string p = path("access.log");
  {
    std::ofstream out(p);
    out << "existing\n";
  }
  std::string error;
  auto sink = FileSink::open(p, kLongInterval, &error);
  ASSERT_NE(sink, nullptr) << error;
  sink->write("new\n");
  sink->flush();
  EXPECT_EQ(readFile(p), "existing\nnew\n");
}

TEST_F(FileSinkTest, DestructorFlushes) {
  const std::string p = path("access.log");
  std::string error;
  {
    auto sink = FileSink::open(p, kLongInterval, &error);
    ASSERT_NE(sink, nullptr) << error;
    sink->write("one\n");
    sink->write("two\n");
    EXPECT_EQ(readFile(p), "");  // nothing written on the caller's thread
  }
  EXPECT_EQ(readFile(p), "one\ntwo\n");
}

TEST_F(FileSinkTest, StandardStreamsOpen) {
  std::string error;
  auto out = FileSink::open("/dev/stdout", 0ms, &error);
  ASSERT_NE(out, nullptr) << error;
  auto err = FileSink::open("/dev/stderr", kLongInterval, &error);
  ASSERT_NE(err, nullptr) << error;
  err->reopen();  // a no-op for the standard streams
  err->flush();
  EXPECT_EQ(err->reopenFailures(), 0u);
}

TEST_F(FileSinkTest, ManagerSharesOneSinkPerPath) {
  FileSinkManager manager;
  std::string error;
  const std::string p = path("access.log");
  auto a = manager.get(p, kLongInterval, &error);
  auto b = manager.get(p, kLongInterval, &error);
  ASSERT_NE(a, nullptr) << error;
  EXPECT_EQ(a, b);
  auto other = manager.get(path("other.log"), kLongInterval, &error);
  ASSERT_NE(other, nullptr) << error;
  EXPECT_NE(a, other);
  EXPECT_EQ(manager.get(path("missing/x.log"), kLongInterval, &error), nullptr);

  a->write("first\n");
  a->flush();
  std::filesystem::rename(p, path("access.log.1"));
  manager.reopenAll();
  b->write("second\n");
  b->flush();
  EXPECT_EQ(readFile(path("access.log.1")), "first\n");
  EXPECT_EQ(readFile(p), "second\n");

  // Once every user let go, the path opens afresh.
  a.reset();
  b.reset();
  auto c = manager.get(p, kLongInterval, &error);
  ASSERT_NE(c, nullptr) << error;
  c->write("third\n");
  c->flush();
  EXPECT_EQ(readFile(p), "second\nthird\n");
}

}  // namespace
}  // namespace sluice::access_log
