// releaseReadOnlyFilePages(): the loaded objects' clean read-only pages leave the process's
// mappings and read back the same; a mapping holding pages of its own (copied on write, or
// in swap) is left alone; parseSmaps() decides that from smaps' text.

#include "common/resident_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "common/page_present.h"

namespace sluice {
namespace {

using test::pagePresent;

constexpr size_t kPage = 4096;
constexpr size_t kSize = 16 * kPage;

constexpr std::array<unsigned char, kSize> makeTable() {
  std::array<unsigned char, kSize> t{};
  for (size_t i = 0; i < kSize; ++i) t[i] = static_cast<unsigned char>('a' + (i * 7 + i / 13) % 26);
  return t;
}

// In the test binary's read-only data: a segment of a loaded object.
alignas(kPage) const std::array<unsigned char, kSize> kTable = makeTable();

// Read through volatile: the compiler knows the constant's bytes and would not load them.
std::string tableText() {
  const volatile unsigned char* p = kTable.data();
  std::string text(kSize, '\0');
  for (size_t i = 0; i < kSize; ++i) text[i] = static_cast<char>(p[i]);
  return text;
}

TEST(ResidentPagesTest, ReadOnlyDataIsDroppedAndReadsBackTheSame) {
  const std::string before = tableText();  // touches every page
  const unsigned char* middle = kTable.data() + kSize / 2;
  ASSERT_TRUE(pagePresent(middle));
  EXPECT_GE(releaseReadOnlyFilePages(), kSize);
  EXPECT_FALSE(pagePresent(middle));
  EXPECT_EQ(tableText(), before);
  constexpr auto expected = makeTable();
  EXPECT_EQ(before, std::string(expected.begin(), expected.end()));
}

TEST(ResidentPagesTest, AMappingWithAPageOfItsOwnIsKept) {
  // A page written while made writable for a moment (as a debugger sets a breakpoint) is
  // the process's own copy: dropping it would bring back the file's bytes.
  // Through volatile: the compiler knows the constant's bytes and would not load them.
  volatile unsigned char* page = const_cast<unsigned char*>(kTable.data() + 4 * kPage);
  void* address = const_cast<unsigned char*>(kTable.data() + 4 * kPage);
  ASSERT_EQ(mprotect(address, kPage, PROT_READ | PROT_WRITE), 0);
  const unsigned char original = page[0];
  page[0] = '#';
  ASSERT_EQ(mprotect(address, kPage, PROT_READ), 0);
  releaseReadOnlyFilePages();
  EXPECT_EQ(page[0], static_cast<unsigned char>('#'));
  // Put back, for the other tests.
  ASSERT_EQ(mprotect(address, kPage, PROT_READ | PROT_WRITE), 0);
  page[0] = original;
  ASSERT_EQ(mprotect(address, kPage, PROT_READ), 0);
}

TEST(ResidentPagesTest, SmapsTextDecidesWhatIsReleasable) {
  const std::string text =
      "55d0c0000000-55d0c0600000 r-xp 00000000 08:01 1234   /usr/bin/some thing\n"
      "Size:               6144 kB\n"
      "Rss:                5724 kB\n"
      "Anonymous:             0 kB\n"
      "Swap:                  0 kB\n"
      "VmFlags: rd ex mr mw me sd\n"
      "55d0c0600000-55d0c0700000 r--p 00600000 08:01 1234   /usr/bin/some thing\n"
      "Rss:                 216 kB\n"
      "Anonymous:           216 kB\n"
      "Swap:                  0 kB\n"
      "55d0c0700000-55d0c0800000 r--p 00700000 08:01 1234   /usr/bin/some thing\n"
      "Rss:                  16 kB\n"
      "Anonymous:             0 kB\n"
      "Swap:                  8 kB\n"
      "55d0c0800000-55d0c0900000 r--p 00800000 08:01 1234   /usr/bin/some thing\n"
      "Rss:                  16 kB\n"
      "Anonymous:             0 kB\n"
      "55d0c0900000-55d0c0a00000 rw-p 00900000 08:01 1234   /usr/bin/some thing\n"
      "Rss:                  16 kB\n"
      "Anonymous:             0 kB\n"
      "Swap:                  0 kB\n"
      "7f0000000000-7f0000001000 r--p 00000000 00:00 0 \n"
      "Rss:                   4 kB\n"
      "Anonymous:             0 kB\n"
      "Swap:                  0 kB\n"
      "7f0000001000-7f0000002000 r--s 00000000 08:01 99     /dev/shm/x\n"
      "Rss:                   4 kB\n"
      "Anonymous:             0 kB\n"
      "Swap:                  0 kB\n"
      "7f0000002000-7f0000003000 r--p 00000000 08:01 98     /lib/libz.so\n"
      "Rss:                   4 kB\n"
      "Anonymous:             0 kB\n"
      "Swap:                  0 kB";  // no newline at the end
  const auto m = detail::parseSmaps(text);
  ASSERT_EQ(m.size(), 8u);
  EXPECT_EQ(m[0].start, 0x55d0c0000000u);
  EXPECT_EQ(m[0].end, 0x55d0c0600000u);
  EXPECT_TRUE(m[0].releasable) << "clean code, a path with a space";
  EXPECT_FALSE(m[1].releasable) << "copied-on-write pages";
  EXPECT_FALSE(m[2].releasable) << "pages in swap";
  EXPECT_FALSE(m[3].releasable) << "no Swap line";
  EXPECT_FALSE(m[4].releasable) << "writable";
  EXPECT_FALSE(m[5].releasable) << "anonymous (inode 0)";
  EXPECT_FALSE(m[6].releasable) << "shared";
  EXPECT_TRUE(m[7].releasable) << "the last mapping";
}

}  // namespace
}  // namespace sluice
