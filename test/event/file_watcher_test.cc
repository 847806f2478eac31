#include "event/file_watcher.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"

namespace sluice::event {
namespace {

class FileWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-watch-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  // Runs the loop until a callback calls exit(), or a generous deadline passes (a failure).
  void run() {
    auto deadline = dispatcher_.createTimer([this] {
      timed_out_ = true;
      dispatcher_.exit();
    });
    deadline->enableTimer(std::chrono::seconds(10));
    dispatcher_.run(Dispatcher::RunType::RunUntilExit);
  }

  RealTimeSystem time_;
  DispatcherImpl dispatcher_{"test", time_};
  std::string dir_;
  bool timed_out_{false};
};

TEST_F(FileWatcherTest, RenameIntoPlaceFiresForTheWatchedNameOnly) {
  FileWatcher watcher(dispatcher_);
  int fired = 0, other = 0;
  std::string error;
  ASSERT_TRUE(watcher.addWatch(dir_ + "/cds.yaml", [&] {
    ++fired;
    dispatcher_.exit();
  }, error)) << error;
  ASSERT_TRUE(watcher.addWatch(dir_ + "/lds.yaml", [&] { ++other; }, error)) << error;
  write(".tmp", "v1");
  ASSERT_EQ(std::rename((dir_ + "/.tmp").c_str(), (dir_ + "/cds.yaml").c_str()), 0);
  run();
  EXPECT_FALSE(timed_out_);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(other, 0);  // the .tmp file's own writes and the other name do not fire it
}

TEST_F(FileWatcherTest, WriteInPlaceFiresOnlyWatchesThatAskForIt) {
  FileWatcher watcher(dispatcher_);
  int written = 0, renamed_only = 0;
  std::string error;
  ASSERT_TRUE(watcher.addWatch(dir_ + "/cert.pem", [&] {
    ++written;
    dispatcher_.exit();
  }, error, FileWatcher::MovedTo | FileWatcher::Written)) << error;
  ASSERT_TRUE(watcher.addWatch(dir_ + "/cert.pem", [&] { ++renamed_only; }, error)) << error;
  write("cert.pem", "v2");  // open, truncate, write, close
  run();
  EXPECT_FALSE(timed_out_);
  EXPECT_EQ(written, 1);
  EXPECT_EQ(renamed_only, 0);
}

TEST_F(FileWatcherTest, DirectoryWatchFiresForAnyNameRenamedIntoIt) {
  FileWatcher watcher(dispatcher_);
  int fired = 0;
  std::string error;
  ASSERT_TRUE(watcher.addWatch(dir_ + "/", [&] {
    ++fired;
    dispatcher_.exit();
  }, error)) << error;
  write("..data_tmp", "x");  // a write alone does not fire a rename watch
  ASSERT_EQ(std::rename((dir_ + "/..data_tmp").c_str(), (dir_ + "/..data").c_str()), 0);
  run();
  EXPECT_FALSE(timed_out_);
  EXPECT_EQ(fired, 1);
}

TEST_F(FileWatcherTest, MissingDirectoryIsAnError) {
  FileWatcher watcher(dispatcher_);
  std::string error;
  EXPECT_FALSE(watcher.addWatch(dir_ + "/nope/cds.yaml", [] {}, error));
  EXPECT_NE(error.find("cannot watch directory"), std::string::npos) << error;
}

}  // namespace
}  // namespace sluice::event
