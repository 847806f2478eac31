#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "buffer/buffer.h"
#include "buffer/watermark_buffer.h"

namespace sluice::buffer {
namespace {

constexpr size_t kSliceSize = Buffer::kDefaultSliceSize;

// A buffer whose slices are exactly the given pieces, in order. Each piece is prepended into
// a fresh slice, which leaves that slice without free tail space, so nothing coalesces.
Buffer makeSliced(std::initializer_list<std::string_view> pieces) {
  Buffer out;
  for (std::string_view piece : pieces) {
    Buffer one;
    one.prepend(piece);
    out.move(one);
  }
  return out;
}

ssize_t find(const Buffer& buffer, std::string_view needle, size_t start = 0) {
  return buffer.search(needle.data(), needle.size(), start);
}

std::string pattern(size_t size, size_t seed = 0) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    s[i] = static_cast<char>((i + seed) * 131 + ((i + seed) >> 9));
  }
  return s;
}

// A non-blocking, close-on-exec AF_UNIX stream pair; closes whatever is still open.
class SocketPair {
 public:
  SocketPair() {
    int fds[2];
    EXPECT_EQ(0, ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds));
    a_ = fds[0];
    b_ = fds[1];
  }
  ~SocketPair() {
    closeA();
    closeB();
  }
  int a() const { return a_; }
  int b() const { return b_; }
  void closeA() {
    if (a_ >= 0) ::close(std::exchange(a_, -1));
  }
  void closeB() {
    if (b_ >= 0) ::close(std::exchange(b_, -1));
  }

 private:
  int a_ = -1;
  int b_ = -1;
};

// ---- add / drain / length ---------------------------------------------------------------

TEST(BufferTest, EmptyBuffer) {
  Buffer buffer;
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(0u, buffer.length());
  EXPECT_EQ("", buffer.toString());
  EXPECT_TRUE(buffer.getRawSlices().empty());
  EXPECT_EQ(RawSlice{}, buffer.frontSlice());
  EXPECT_EQ(nullptr, buffer.linearize(0));
}

TEST(BufferTest, AnEmptyBufferHoldsNoSliceSlots) {
  // A connection's two buffers are empty while it is idle: their slots go back to the
  // thread when the last slice leaves, and come again with the next.
  Buffer b;
  EXPECT_EQ(b.sliceSlots(), 0u);
  b.add("hello");
  EXPECT_EQ(b.sliceCount(), 1u);
  EXPECT_EQ(b.sliceSlots(), 2u);
  b.drain(5);
  EXPECT_EQ(b.sliceSlots(), 0u);

  // Grown past the first slots, emptied from either end, moved from.
  for (int i = 0; i < 5; ++i) {
    Buffer part;
    part.add(std::string(Buffer::kDefaultSliceSize, static_cast<char>('a' + i)));
    b.move(part);
    EXPECT_EQ(part.sliceSlots(), 0u);
  }
  EXPECT_EQ(b.sliceCount(), 5u);
  EXPECT_EQ(b.sliceSlots(), 8u);
  Buffer c(std::move(b));
  EXPECT_EQ(b.sliceSlots(), 0u);
  EXPECT_EQ(c.length(), 5 * Buffer::kDefaultSliceSize);
  EXPECT_EQ(c.toString().substr(4 * Buffer::kDefaultSliceSize, 3), "eee");
  c.drain(c.length());
  EXPECT_EQ(c.sliceSlots(), 0u);
  c.prepend("x");
  EXPECT_EQ(c.sliceSlots(), 2u);
  EXPECT_EQ(c.toString(), "x");
  Buffer d;
  d.move(c);
  EXPECT_EQ(c.sliceSlots(), 0u);
  EXPECT_EQ(d.toString(), "x");
}

TEST(BufferTest, AllOfABufferMovedIntoAnEmptyOneKeepsItsOrder) {
  // Into a buffer without slices the ring changes hands whole (a wrapped one too).
  Buffer src;
  src.add("world");
  src.prepend("hello ");
  ASSERT_EQ(src.sliceCount(), 2u);
  Buffer dst;
  dst.move(src);
  EXPECT_EQ(dst.toString(), "hello world");
  EXPECT_EQ(src.length(), 0u);
  EXPECT_EQ(src.sliceSlots(), 0u);
  dst.add("!");
  dst.prepend(">");
  EXPECT_EQ(dst.toString(), ">hello world!");
  EXPECT_EQ(dst.length(), 13u);
  // Part of one, or into a buffer that holds slices, goes slice by slice as before.
  Buffer other;
  other.add("abc");
  other.move(dst, 3);
  EXPECT_EQ(other.toString(), "abc>he");
  EXPECT_EQ(dst.toString(), "llo world!");
  src.add("x");
  src.move(other);
  EXPECT_EQ(src.toString(), "xabc>he");
  EXPECT_EQ(other.sliceSlots(), 0u);
}

TEST(BufferTest, AddAndDrainAcrossSliceBoundaries) {
  Buffer buffer;
  const std::string data = pattern(3 * kSliceSize + 100);
  // Adds of 1000 bytes straddle slice boundaries.
  for (size_t off = 0; off < data.size(); off += 1000) {
    buffer.add(std::string_view(data).substr(off, 1000));
  }
  EXPECT_EQ(data.size(), buffer.length());
  EXPECT_EQ(4u, buffer.sliceCount());
  EXPECT_EQ(data, buffer.toString());

  buffer.drain(kSliceSize + 10);  // one whole slice and 10 bytes of the next
  EXPECT_EQ(data.size() - kSliceSize - 10, buffer.length());
  EXPECT_EQ(3u, buffer.sliceCount());
  EXPECT_EQ(data.substr(kSliceSize + 10), buffer.toString());

  buffer.drain(buffer.length());
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(0u, buffer.sliceCount());
}

TEST(BufferTest, AddRawPointerAndZeroLength) {
  Buffer buffer;
  const char bytes[] = {'a', '\0', 'b'};
  buffer.add(bytes, sizeof(bytes));
  buffer.add(bytes, 0);
  EXPECT_EQ(3u, buffer.length());
  EXPECT_EQ(std::string("a\0b", 3), buffer.toString());
}

TEST(BufferTest, LargeAddUsesOneLargeSlice) {
  Buffer buffer;
  buffer.add("x");
  const std::string big = pattern(5 * kSliceSize + 7);
  buffer.add(big);
  EXPECT_EQ(big.size() + 1, buffer.length());
  // The first slice's free tail is filled, the rest goes to one new slice.
  EXPECT_EQ(2u, buffer.sliceCount());
  EXPECT_EQ("x" + big, buffer.toString());
}

TEST(BufferTest, ManySmallAddsShareSlices) {
  Buffer buffer;
  for (int i = 0; i < 1000; ++i) {
    buffer.add("0123456789");
  }
  EXPECT_EQ(10000u, buffer.length());
  EXPECT_LE(buffer.getRawSlices().size(), 2u);
}

TEST(BufferTest, AddBufferCopies) {
  Buffer source = makeSliced({"hello ", "world"});
  Buffer buffer;
  buffer.add("say ");
  buffer.add(source);
  EXPECT_EQ("say hello world", buffer.toString());
  EXPECT_EQ("hello world", source.toString());
  buffer.add(buffer);
  EXPECT_EQ("say hello worldsay hello world", buffer.toString());
}

// ---- move --------------------------------------------------------------------------------

TEST(BufferTest, MoveSplicesSlicesWithoutCopying) {
  const std::string a = pattern(kSliceSize);
  const std::string b = pattern(3000, 5);
  Buffer source;
  source.add(a);  // fills one slice exactly
  source.add(b);  // a second slice
  const std::vector<RawSlice> before = source.getRawSlices();
  ASSERT_EQ(2u, before.size());

  Buffer dest;
  dest.prepend(pattern(100, 9));  // a slice with no free tail: nothing can coalesce into it
  dest.move(source);

  EXPECT_TRUE(source.empty());
  EXPECT_EQ(0u, source.sliceCount());
  const std::vector<RawSlice> after = dest.getRawSlices();
  ASSERT_EQ(3u, after.size());
  EXPECT_EQ(before[0], after[1]);  // the same memory, not a copy
  EXPECT_EQ(before[1], after[2]);
  EXPECT_EQ(pattern(100, 9) + a + b, dest.toString());
}

TEST(BufferTest, MoveCopiesSmallSlicesIntoFreeTail) {
  Buffer dest;
  dest.add("head ");
  std::string expected = "head ";
  for (int i = 0; i < 100; ++i) {
    Buffer small = makeSliced({"xy"});
    dest.move(small);
    EXPECT_TRUE(small.empty());
    expected += "xy";
  }
  EXPECT_EQ(1u, dest.sliceCount());
  EXPECT_EQ(expected, dest.toString());
}

TEST(BufferTest, PartialMoveOfWholeSlicesAndCopiedHead) {
  Buffer source = makeSliced({"aaaa", "bbbb", "cccccccc"});
  const std::vector<RawSlice> before = source.getRawSlices();
  Buffer dest;
  dest.move(source, 10);  // two whole slices and the smaller head "cc" of the third
  EXPECT_EQ("aaaabbbbcc", dest.toString());
  EXPECT_EQ("cccccc", source.toString());
  EXPECT_EQ(10u, dest.length());
  EXPECT_EQ(6u, source.length());
  const std::vector<RawSlice> after = dest.getRawSlices();
  ASSERT_GE(after.size(), 2u);
  EXPECT_EQ(before[0].mem, after[0].mem);
  // The remainder of the split slice stays where it was.
  EXPECT_EQ(static_cast<char*>(before[2].mem) + 2, source.frontSlice().mem);
}

TEST(BufferTest, PartialMoveSplitsBigSliceByCopyingTheSmallerTail) {
  const std::string data = pattern(10000);
  Buffer source;
  source.add(data);
  void* block = source.frontSlice().mem;
  Buffer dest;
  dest.move(source, 9990);
  EXPECT_EQ(data.substr(0, 9990), dest.toString());
  EXPECT_EQ(data.substr(9990), source.toString());
  EXPECT_EQ(block, dest.frontSlice().mem);  // the big side moved, the 10-byte tail was copied
  EXPECT_NE(block, source.frontSlice().mem);
  dest.move(source, 0);
  EXPECT_EQ(9990u, dest.length());
}

TEST(BufferTest, MoveConstructionAndAssignment) {
  Buffer source = makeSliced({"abc", "def"});
  Buffer moved(std::move(source));
  EXPECT_EQ("abcdef", moved.toString());
  EXPECT_TRUE(source.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  Buffer assigned;
  assigned.add("old");
  assigned = std::move(moved);
  EXPECT_EQ("abcdef", assigned.toString());
  EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move)
}

// ---- prepend -----------------------------------------------------------------------------

// Past the ring's inline slots (2), from both ends, with the ring wrapped: the order holds.
TEST(BufferTest, ManySlicesFromBothEndsKeepOrder) {
  Buffer buffer;
  std::string expected;
  for (char c : std::string("cdefg")) {
    Buffer piece;
    piece.add(std::string(Buffer::kDefaultSliceSize, c));  // a whole slice each: no copying
    buffer.move(piece);
    expected += std::string(Buffer::kDefaultSliceSize, c);
  }
  buffer.drain(Buffer::kDefaultSliceSize);  // the head moves: the ring wraps on prepend
  expected.erase(0, Buffer::kDefaultSliceSize);
  for (char c : std::string("ba")) {
    Buffer piece;
    piece.add(std::string(Buffer::kDefaultSliceSize, c));
    buffer.prepend(piece);
    expected.insert(0, std::string(Buffer::kDefaultSliceSize, c));
  }
  EXPECT_EQ(buffer.sliceCount(), 6u);
  EXPECT_EQ(buffer.length(), expected.size());
  EXPECT_TRUE(buffer.toString() == expected);  // (not EXPECT_EQ: 96 KiB of output on failure)
  Buffer moved(std::move(buffer));  // a grown, wrapped ring changes hands
  EXPECT_TRUE(moved.toString() == expected);
  EXPECT_TRUE(buffer.empty());
}

TEST(BufferTest, PrependString) {
  Buffer buffer;
  buffer.add("world");
  buffer.prepend("hello ");
  EXPECT_EQ("hello world", buffer.toString());
  // A second prepend fills the headroom left in front of the first one.
  buffer.prepend(">> ");
  EXPECT_EQ(">> hello world", buffer.toString());
  EXPECT_EQ(2u, buffer.sliceCount());
  const std::string big = pattern(kSliceSize + 1);
  buffer.prepend(big);
  EXPECT_EQ(big + ">> hello world", buffer.toString());
  EXPECT_EQ(big.size() + 14, buffer.length());
}

TEST(BufferTest, PrependBufferMovesSlices) {
  Buffer front = makeSliced({"GET ", "/ "});
  const std::vector<RawSlice> slices = front.getRawSlices();
  Buffer buffer;
  buffer.add("HTTP/1.1");
  buffer.prepend(front);
  EXPECT_TRUE(front.empty());
  EXPECT_EQ("GET / HTTP/1.1", buffer.toString());
  EXPECT_EQ(14u, buffer.length());
  const std::vector<RawSlice> after = buffer.getRawSlices();
  ASSERT_EQ(3u, after.size());
  EXPECT_EQ(slices[0], after[0]);
  EXPECT_EQ(slices[1], after[1]);
}

// ---- search / startsWith / copyOut / linearize -------------------------------------------

TEST(BufferTest, SearchAcrossSliceBoundary) {
  Buffer buffer = makeSliced({"GET / HTTP/1.1\r", "\n", "\r\nbody"});
  EXPECT_EQ(3u, buffer.sliceCount());
  EXPECT_EQ(14, find(buffer, "\r\n\r\n"));
  EXPECT_EQ(0, find(buffer, "GET"));
  EXPECT_EQ(16, find(buffer, "\r\nbody"));
  EXPECT_EQ(21, find(buffer, "y"));
}

TEST(BufferTest, SearchNotFound) {
  Buffer buffer = makeSliced({"abcab", "cabd"});
  EXPECT_EQ(-1, find(buffer, "abx"));
  EXPECT_EQ(-1, find(buffer, "cabdx"));  // would run past the end
  EXPECT_EQ(-1, find(buffer, "zzzzzzzzzzzzz"));
  Buffer empty;
  EXPECT_EQ(-1, find(empty, "a"));
}

TEST(BufferTest, SearchWithStartOffset) {
  Buffer buffer = makeSliced({"abcab", "cabd"});
  EXPECT_EQ(0, find(buffer, "abc"));
  EXPECT_EQ(3, find(buffer, "abc", 1));
  EXPECT_EQ(3, find(buffer, "abc", 3));
  EXPECT_EQ(-1, find(buffer, "abc", 4));
  EXPECT_EQ(6, find(buffer, "ab", 4));
  EXPECT_EQ(8, find(buffer, "d", 6));
  EXPECT_EQ(-1, find(buffer, "a", 10));
  EXPECT_EQ(9, find(buffer, "", 9));
  EXPECT_EQ(-1, find(buffer, "", 10));
}

TEST(BufferTest, StartsWith) {
  Buffer buffer = makeSliced({"PR", "I * HT", "TP/2.0"});
  EXPECT_TRUE(buffer.startsWith("PRI * HTTP/2.0"));
  EXPECT_TRUE(buffer.startsWith("PRI * H"));
  EXPECT_TRUE(buffer.startsWith(""));
  EXPECT_FALSE(buffer.startsWith("PRI * HTTP/2.0!"));
  EXPECT_FALSE(buffer.startsWith("PRX"));
}

TEST(BufferTest, CopyOutAcrossSlices) {
  Buffer buffer = makeSliced({"0123", "4567", "89"});
  char out[8] = {};
  buffer.copyOut(2, 7, out);
  EXPECT_EQ("2345678", std::string(out, 7));
  buffer.copyOut(8, 2, out);
  EXPECT_EQ("89", std::string(out, 2));
  buffer.copyOut(10, 0, out);
  EXPECT_EQ(10u, buffer.length());  // copyOut does not drain
}

TEST(BufferTest, LinearizeWithinFrontSliceDoesNotCopy) {
  Buffer buffer = makeSliced({"abcdef", "gh"});
  void* front = buffer.frontSlice().mem;
  EXPECT_EQ(front, buffer.linearize(4));
  EXPECT_EQ(2u, buffer.sliceCount());
}

TEST(BufferTest, LinearizeAcrossSlices) {
  Buffer buffer = makeSliced({"abc", "def", "ghij"});
  auto* p = static_cast<const char*>(buffer.linearize(8));
  ASSERT_NE(nullptr, p);
  EXPECT_EQ("abcdefgh", std::string(p, 8));
  EXPECT_EQ("abcdefghij", buffer.toString());
  EXPECT_EQ(10u, buffer.length());
  EXPECT_GE(buffer.frontSlice().len, 8u);
}

TEST(BufferTest, LinearizeGathersIntoFreeTailOfFrontSlice) {
  Buffer front;
  front.add("abc");  // a front slice with a free tail
  const std::string big = pattern(kSliceSize);
  Buffer second;
  second.add(big);
  front.move(second);  // a full slice that does not coalesce
  ASSERT_EQ(2u, front.sliceCount());
  void* block = front.frontSlice().mem;
  auto* p = static_cast<const char*>(front.linearize(103));
  EXPECT_EQ(block, p);
  EXPECT_EQ("abc" + big.substr(0, 100), std::string(p, 103));
  EXPECT_EQ("abc" + big, front.toString());
}

TEST(BufferTest, LinearizeLargerThanSliceSize) {
  const std::string a = pattern(kSliceSize);
  const std::string b = pattern(kSliceSize, 3);
  Buffer buffer;
  buffer.add(a);
  buffer.add(b);
  ASSERT_EQ(2u, buffer.sliceCount());
  auto* p = static_cast<const char*>(buffer.linearize(kSliceSize + 100));
  EXPECT_EQ(a + b.substr(0, 100), std::string(p, kSliceSize + 100));
  EXPECT_EQ(a + b, buffer.toString());
}

TEST(BufferTest, RawSlicesFixedArrayAndForEach) {
  Buffer buffer = makeSliced({"ab", "cd", "ef"});
  RawSlice out[2];
  EXPECT_EQ(2u, buffer.getRawSlices(out, 2));
  EXPECT_EQ("ab", std::string(static_cast<char*>(out[0].mem), out[0].len));
  EXPECT_EQ("cd", std::string(static_cast<char*>(out[1].mem), out[1].len));
  EXPECT_EQ(1u, buffer.getRawSlices(1).size());
  std::string seen;
  buffer.forEachSlice([&](const RawSlice& s) {
    seen.append(static_cast<char*>(s.mem), s.len);
    return seen.size() < 4;
  });
  EXPECT_EQ("abcd", seen);
}

// ---- reservations ------------------------------------------------------------------------

TEST(BufferTest, ReserveCommitPartial) {
  Buffer buffer;
  buffer.add("head");
  Reservation reservation = buffer.reserveForRead(3 * kSliceSize);
  ASSERT_GE(reservation.numSlices(), 2u);
  EXPECT_EQ(3 * kSliceSize, reservation.length());
  // The first region is the free tail of the existing slice.
  EXPECT_EQ(kSliceSize - 4, reservation.slices()[0].len);
  const std::string data = pattern(kSliceSize);  // fills the tail and 4 bytes of the next
  size_t off = 0;
  for (size_t i = 0; i < reservation.numSlices() && off < data.size(); ++i) {
    const size_t n = std::min(reservation.slices()[i].len, data.size() - off);
    std::memcpy(reservation.slices()[i].mem, data.data() + off, n);
    off += n;
  }
  buffer.commit(reservation, data.size());
  EXPECT_EQ(0u, reservation.numSlices());
  EXPECT_EQ(4 + kSliceSize, buffer.length());
  EXPECT_EQ("head" + data, buffer.toString());
  EXPECT_EQ(2u, buffer.sliceCount());  // the unused third region was abandoned
}

TEST(BufferTest, CommitZeroAndAbandonedReservation) {
  Buffer buffer;
  {
    Reservation reservation = buffer.reserveForRead();
    EXPECT_EQ(Buffer::kDefaultReadReservation, reservation.length());
    buffer.commit(reservation, 0);
  }
  EXPECT_TRUE(buffer.empty());
  {
    Reservation reservation = buffer.reserveForRead(100);
    ASSERT_EQ(1u, reservation.numSlices());
    EXPECT_EQ(100u, reservation.length());
    std::memset(reservation.slices()[0].mem, 'z', 100);
    // Destroyed without commit: nothing becomes readable.
  }
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(0u, buffer.sliceCount());
}

TEST(BufferTest, ReservationIsCappedAtMaxSlices) {
  Buffer buffer;
  Reservation reservation = buffer.reserveForRead(100 * kSliceSize);
  EXPECT_EQ(Reservation::kMaxSlices, reservation.numSlices());
  EXPECT_EQ(Reservation::kMaxSlices * kSliceSize, reservation.length());
  Reservation moved(std::move(reservation));
  EXPECT_EQ(0u, reservation.numSlices());  // NOLINT(bugprone-use-after-move)
  std::memset(moved.slices()[0].mem, 'q', 5);
  buffer.commit(moved, 5);
  EXPECT_EQ("qqqqq", buffer.toString());
}

// ---- I/O ---------------------------------------------------------------------------------

TEST(BufferIoTest, ReadFromEmptySocketIsAgain) {
  SocketPair pair;
  Buffer buffer;
  const IoResult result = buffer.readFrom(pair.b());
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(result.again());
  EXPECT_EQ(0u, result.bytes);
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(0u, buffer.sliceCount());
}

TEST(BufferIoTest, WriteToThenReadFrom) {
  SocketPair pair;
  Buffer out = makeSliced({"hello", ", ", "world"});
  const IoResult written = out.writeTo(pair.a());
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(12u, written.bytes);
  EXPECT_TRUE(out.empty());

  Buffer in;
  in.add(">");
  const IoResult read = in.readFrom(pair.b());
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(12u, read.bytes);
  EXPECT_EQ(">hello, world", in.toString());
  EXPECT_EQ(1u, in.sliceCount());  // read into the free tail of the existing slice
}

TEST(BufferIoTest, ReadFromRespectsMaxLength) {
  SocketPair pair;
  Buffer out;
  out.add("0123456789");
  ASSERT_EQ(10u, out.writeTo(pair.a()).bytes);
  Buffer in;
  EXPECT_EQ(4u, in.readFrom(pair.b(), 4).bytes);
  EXPECT_EQ(6u, in.readFrom(pair.b(), 100).bytes);
  EXPECT_EQ("0123456789", in.toString());
}

TEST(BufferIoTest, ReadFromAfterPeerClosedIsEof) {
  SocketPair pair;
  Buffer out;
  out.add("last words");
  ASSERT_TRUE(out.writeTo(pair.a()).ok());
  pair.closeA();
  Buffer in;
  IoResult result = in.readFrom(pair.b());
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(10u, result.bytes);
  result = in.readFrom(pair.b());
  EXPECT_TRUE(result.ok());
  EXPECT_FALSE(result.again());
  EXPECT_EQ(0u, result.bytes);  // EOF
  EXPECT_EQ("last words", in.toString());
}

TEST(BufferIoTest, WriteToClosedPeerIsError) {
  SocketPair pair;
  pair.closeB();
  Buffer out;
  out.add("nobody listens");
  const IoResult result = out.writeTo(pair.a());
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(EPIPE, result.err);
  EXPECT_EQ(14u, out.length());  // nothing drained
}

TEST(BufferIoTest, WriteToEmptyBufferWritesNothing) {
  SocketPair pair;
  Buffer out;
  const IoResult result = out.writeTo(pair.a());
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(0u, result.bytes);
}

TEST(BufferIoTest, LargeTransferThroughSocketPair) {
  constexpr size_t kTotal = 4 * 1024 * 1024;
  const std::string data = pattern(kTotal, 17);
  SocketPair pair;
  Buffer out;
  // Chunks of odd sizes so that slices and writev batches do not line up.
  for (size_t off = 0; off < kTotal; off += 7777) {
    out.add(std::string_view(data).substr(off, 7777));
  }
  ASSERT_EQ(kTotal, out.length());

  Buffer in;
  size_t saw_again = 0;
  for (int round = 0; round < 100000 && in.length() < kTotal; ++round) {
    while (!out.empty()) {
      const IoResult w = out.writeTo(pair.a());
      if (w.again()) {
        ++saw_again;
        break;
      }
      ASSERT_TRUE(w.ok()) << std::strerror(w.err);
      ASSERT_GT(w.bytes, 0u);
    }
    for (;;) {
      const IoResult r = in.readFrom(pair.b());
      if (r.again()) {
        break;
      }
      ASSERT_TRUE(r.ok()) << std::strerror(r.err);
      ASSERT_GT(r.bytes, 0u);  // the writer is still open: no EOF
    }
  }
  EXPECT_GT(saw_again, 0u);  // the socket filled up at least once
  EXPECT_TRUE(out.empty());
  ASSERT_EQ(kTotal, in.length());
  EXPECT_TRUE(in.toString() == data);
}

// ---- watermarks --------------------------------------------------------------------------

class WatermarkBufferTest : public testing::Test {
 protected:
  WatermarkBufferTest() { buffer_.setWatermarks(100); }

  int low_ = 0;
  int high_ = 0;
  WatermarkBuffer buffer_{[this] { ++low_; }, [this] { ++high_; }};
};

// The form connections use: one function pointer with a context, told which edge was crossed.
TEST(WatermarkBufferCallbackTest, FunctionPointerGetsContextAndEdge) {
  struct Seen {
    int low = 0;
    int high = 0;
  } seen;
  WatermarkBuffer buffer(
      [](void* context, bool above_high) {
        auto* s = static_cast<Seen*>(context);
        ++(above_high ? s->high : s->low);
      },
      &seen);
  buffer.setWatermarks(10);
  buffer.add(std::string(11, 'x'));
  EXPECT_EQ(seen.high, 1);
  EXPECT_EQ(seen.low, 0);
  buffer.drain(6);  // 5 left: at low (high / 2)
  EXPECT_EQ(seen.high, 1);
  EXPECT_EQ(seen.low, 1);
  WatermarkBuffer silent(nullptr, nullptr);  // no callback: crossing is only recorded
  silent.setWatermarks(10);
  silent.add(std::string(11, 'x'));
  EXPECT_TRUE(silent.highWatermarkTriggered());
}

// The std::function form owns its functions (through its context): they live as long as the
// buffer and go with it.
TEST(WatermarkBufferCallbackTest, FunctionFormOwnsItsFunctions) {
  auto token = std::make_shared<int>(0);
  {
    WatermarkBuffer buffer([token] { --*token; }, [token] { ++*token; });
    EXPECT_EQ(token.use_count(), 3);
    buffer.setWatermarks(4);
    buffer.add("12345");
    EXPECT_EQ(*token, 1);
    buffer.drain(5);
    EXPECT_EQ(*token, 0);
  }
  EXPECT_EQ(token.use_count(), 1);
}

TEST_F(WatermarkBufferTest, Thresholds) {
  EXPECT_EQ(100u, buffer_.highWatermark());
  EXPECT_EQ(50u, buffer_.lowWatermark());
  EXPECT_FALSE(buffer_.highWatermarkTriggered());
}

TEST_F(WatermarkBufferTest, HighFiresOnceOnCrossing) {
  buffer_.add(std::string(100, 'a'));
  EXPECT_EQ(0, high_);  // at high is not above it
  buffer_.add("b");
  EXPECT_EQ(1, high_);
  EXPECT_TRUE(buffer_.highWatermarkTriggered());
  buffer_.add(std::string(1000, 'c'));
  buffer_.prepend("d");
  EXPECT_EQ(1, high_);
  EXPECT_EQ(0, low_);
}

TEST_F(WatermarkBufferTest, LowFiresOnceAfterHigh) {
  buffer_.add(std::string(40, 'a'));
  buffer_.drain(40);
  EXPECT_EQ(0, low_);  // never went above high
  buffer_.add(std::string(200, 'a'));
  ASSERT_EQ(1, high_);
  buffer_.drain(100);  // 100 left: still above low
  EXPECT_EQ(0, low_);
  buffer_.drain(50);  // 50 left: at low
  EXPECT_EQ(1, low_);
  EXPECT_FALSE(buffer_.highWatermarkTriggered());
  buffer_.drain(50);
  EXPECT_EQ(1, low_);
  buffer_.add(std::string(101, 'a'));  // a second cycle fires again
  EXPECT_EQ(2, high_);
}

TEST_F(WatermarkBufferTest, PrependAndMoveInTriggerHigh) {
  buffer_.prepend(std::string(101, 'a'));
  EXPECT_EQ(1, high_);
  buffer_.drain(101);
  EXPECT_EQ(1, low_);
  Buffer source;
  source.add(std::string(150, 'b'));
  buffer_.move(source);
  EXPECT_EQ(2, high_);
  buffer_.drain(150);
  Buffer front;
  front.add(std::string(120, 'c'));
  buffer_.prepend(front);
  EXPECT_EQ(3, high_);
}

TEST_F(WatermarkBufferTest, CommitAndReadFromTriggerHigh) {
  Reservation reservation = buffer_.reserveForRead(1000);
  std::memset(reservation.slices()[0].mem, 'r', 200);
  buffer_.commit(reservation, 200);
  EXPECT_EQ(1, high_);
  buffer_.drain(200);
  EXPECT_EQ(1, low_);

  SocketPair pair;
  Buffer out;
  out.add(std::string(300, 'w'));
  ASSERT_TRUE(out.writeTo(pair.a()).ok());
  ASSERT_EQ(300u, buffer_.readFrom(pair.b()).bytes);
  EXPECT_EQ(2, high_);
}

TEST_F(WatermarkBufferTest, MovingOutTriggersLow) {
  buffer_.add(std::string(300, 'a'));
  ASSERT_EQ(1, high_);
  Buffer dest;
  dest.move(buffer_, 200);  // 100 left
  EXPECT_EQ(0, low_);
  dest.move(buffer_);  // 0 left
  EXPECT_EQ(1, low_);
  EXPECT_EQ(300u, dest.length());
}

TEST_F(WatermarkBufferTest, PrependingOutTriggersLow) {
  buffer_.add(std::string(300, 'a'));
  Buffer dest;
  dest.prepend(buffer_);
  EXPECT_EQ(1, low_);
}

TEST_F(WatermarkBufferTest, WriteToTriggersLow) {
  SocketPair pair;
  buffer_.add(std::string(300, 'a'));
  ASSERT_EQ(1, high_);
  ASSERT_EQ(300u, buffer_.writeTo(pair.a()).bytes);
  EXPECT_EQ(1, low_);
}

TEST_F(WatermarkBufferTest, SetWatermarksZeroDisables) {
  buffer_.setWatermarks(0);
  buffer_.add(std::string(10000, 'a'));
  buffer_.drain(10000);
  EXPECT_EQ(0, high_);
  EXPECT_EQ(0, low_);
  EXPECT_FALSE(buffer_.highWatermarkTriggered());
}

TEST_F(WatermarkBufferTest, SetWatermarksZeroReleasesTriggeredHigh) {
  buffer_.add(std::string(101, 'a'));
  ASSERT_EQ(1, high_);
  buffer_.setWatermarks(0);
  EXPECT_EQ(1, low_);
  EXPECT_FALSE(buffer_.highWatermarkTriggered());
  buffer_.drain(101);
  EXPECT_EQ(1, low_);
}

TEST_F(WatermarkBufferTest, SetWatermarksChecksCurrentLength) {
  buffer_.setWatermarks(0);
  buffer_.add(std::string(500, 'a'));
  buffer_.setWatermarks(400);
  EXPECT_EQ(1, high_);
  buffer_.setWatermarks(2000);  // now 500 <= low (1000)
  EXPECT_EQ(1, low_);
}

TEST_F(WatermarkBufferTest, CallbackMayDrainTheBuffer) {
  WatermarkBuffer* self = &buffer_;
  int low = 0;
  WatermarkBuffer buffer([&] { ++low; }, [&] { self->drain(self->length()); });
  self = &buffer;
  buffer.setWatermarks(10);
  buffer.add(std::string(20, 'a'));
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(1, low);
  EXPECT_FALSE(buffer.highWatermarkTriggered());
}

}  // namespace
}  // namespace sluice::buffer
