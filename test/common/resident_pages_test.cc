// releaseReadOnlyFilePages(): clean read-only file pages leave the process's mappings and read
// back the same; a mapping holding pages of its own (copied on write) is left alone.

#include "common/resident_pages.h"

#include <sys/mman.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "common/page_present.h"

namespace sluice {
namespace {

using test::pagePresent;

constexpr size_t kSize = 16 * 4096;

// A temporary file of kSize bytes of a pattern, mapped privately; unlinked at once.
class MappedFile {
 public:
  explicit MappedFile(int prot) {
    std::string path = ::testing::TempDir() + "resident_pages_XXXXXX";
    const int fd = mkstemp(path.data());
    EXPECT_GE(fd, 0);
    unlink(path.c_str());
    for (size_t i = 0; i < kSize; ++i) expected_.push_back(static_cast<char>('a' + i % 23));
    EXPECT_EQ(write(fd, expected_.data(), kSize), static_cast<ssize_t>(kSize));
    void* p = mmap(nullptr, kSize, prot, MAP_PRIVATE, fd, 0);
    close(fd);
    EXPECT_NE(p, MAP_FAILED);
    data_ = static_cast<char*>(p);
  }
  ~MappedFile() { munmap(data_, kSize); }
  char* data() { return data_; }
  const std::string& expected() const { return expected_; }

 private:
  std::string expected_;
  char* data_ = nullptr;
};

TEST(ResidentPagesTest, CleanReadOnlyFilePagesAreDroppedAndReadBackTheSame) {
  MappedFile f(PROT_READ);
  const std::string before(f.data(), kSize);  // touches every page
  ASSERT_EQ(before, f.expected());
  ASSERT_TRUE(pagePresent(f.data() + kSize / 2));
  EXPECT_GE(releaseReadOnlyFilePages(), kSize);
  EXPECT_FALSE(pagePresent(f.data() + kSize / 2));
  EXPECT_EQ(std::string(f.data(), kSize), f.expected());
}

TEST(ResidentPagesTest, AMappingWithPagesOfItsOwnIsKept) {
  // Written while writable (the page is copied on write), then read-only, as the loader
  // leaves relocated data: dropping it would bring back the file's bytes.
  MappedFile f(PROT_READ | PROT_WRITE);
  f.data()[0] = '#';
  const std::string tail(f.data() + kSize / 2, kSize / 2);  // clean pages of the same mapping
  ASSERT_EQ(mprotect(f.data(), kSize, PROT_READ), 0);
  releaseReadOnlyFilePages();
  EXPECT_EQ(f.data()[0], '#');
  EXPECT_TRUE(pagePresent(f.data() + kSize / 2)) << "the whole mapping stays";
  EXPECT_EQ(std::string(f.data() + 1, kSize - 1), f.expected().substr(1));
}

}  // namespace
}  // namespace sluice
