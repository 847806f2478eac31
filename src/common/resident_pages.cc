#include "common/resident_pages.h"

#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <string>

namespace sluice {
namespace detail {
namespace {

std::string_view nextField(std::string_view& line) {
  const size_t begin = line.find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    line = {};
    return {};
  }
  line.remove_prefix(begin);
  const size_t end = std::min(line.find(' '), line.size());
  std::string_view field = line.substr(0, end);
  line.remove_prefix(end);
  return field;
}

bool parseHex(std::string_view text, uintptr_t& out) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out, 16);
  return r.ec == std::errc() && r.ptr == text.data() + text.size();
}

// "Name:   12 kB" -> 12; false when the line is not `name` with a number.
bool kibField(std::string_view line, std::string_view name, uint64_t& out) {
  if (line.substr(0, name.size()) != name) return false;
  line.remove_prefix(name.size());
  std::string_view number = nextField(line);
  const auto r = std::from_chars(number.data(), number.data() + number.size(), out);
  return r.ec == std::errc();
}

}  // namespace

std::vector<SmapsMapping> parseSmaps(std::string_view text) {
  std::vector<SmapsMapping> out;
  // What the current mapping's header and field lines said.
  bool candidate = false;
  bool seen_rss = false, seen_anon = false, seen_swap = false;
  uint64_t anon = 0, swap = 0;
  auto finish = [&] {
    if (out.empty()) return;
    out.back().releasable =
        candidate && seen_rss && seen_anon && seen_swap && anon == 0 && swap == 0;
  };
  while (!text.empty()) {
    const size_t eol = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(std::min(eol + 1, text.size()));
    // A mapping's header: "start-end perms offset dev inode [path]"; its fields start with a
    // capitalised name and a colon.
    std::string_view rest = line;
    std::string_view range = nextField(rest);
    const size_t dash = range.find('-');
    uintptr_t start = 0, end = 0;
    if (dash != std::string_view::npos && parseHex(range.substr(0, dash), start) &&
        parseHex(range.substr(dash + 1), end)) {
      finish();
      const std::string_view perms = nextField(rest);
      nextField(rest);  // offset
      nextField(rest);  // device
      const std::string_view inode = nextField(rest);
      candidate = perms.size() == 4 && perms[0] == 'r' && perms[1] != 'w' && perms[3] == 'p' &&
                  !inode.empty() && inode != "0";
      seen_rss = seen_anon = seen_swap = false;
      anon = swap = 0;
      out.push_back(SmapsMapping{start, end, false});
      continue;
    }
    uint64_t value = 0;
    if (kibField(line, "Rss:", value)) {
      seen_rss = true;
    } else if (kibField(line, "Anonymous:", value)) {
      seen_anon = true;
      anon = value;
    } else if (kibField(line, "Swap:", value)) {
      seen_swap = true;
      swap = value;
    }
  }
  finish();
  return out;
}

}  // namespace detail

namespace {

std::string readFile(const char* path) {
  std::string text;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

struct Release {
  std::vector<detail::SmapsMapping> mappings;
  uintptr_t page = 4096;
  size_t released = 0;
};

int releaseObject(dl_phdr_info* info, size_t, void* arg) {
  Release& r = *static_cast<Release*>(arg);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) != 0) continue;
    // Whole pages inside the segment.
    const uintptr_t begin = (info->dlpi_addr + ph.p_vaddr + r.page - 1) & ~(r.page - 1);
    const uintptr_t end = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz) & ~(r.page - 1);
    for (const detail::SmapsMapping& m : r.mappings) {
      const uintptr_t from = std::max(begin, m.start);
      const uintptr_t to = std::min(end, m.end);
      if (!m.releasable || from >= to) continue;
      if (::madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED) == 0) {
        r.released += to - from;
      }
    }
  }
  return 0;
}

}  // namespace

size_t releaseReadOnlyFilePages() {
  Release r;
  r.mappings = detail::parseSmaps(readFile("/proc/self/smaps"));
  r.page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  dl_iterate_phdr(releaseObject, &r);
  return r.released;
}

}  // namespace sluice
