// kallsyms.cc — see kallsyms.h.
#include "ebpf/kallsyms.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/read_file.h"

namespace ctmon {

namespace {

// One "ffffffff81f81c50 T nf_hook_slow\t[module]" line, split without copying.
struct Line {
  uint64_t address = 0;
  char type = 0;
  const char* name = nullptr;
  size_t name_length = 0;
};

bool parse_line(const char* p, const char* end, Line& line) {
  uint64_t address = 0;
  int digits = 0;
  for (; p < end && *p != ' '; ++p, ++digits) {
    const char c = *p;
    int v;
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v = c - 'A' + 10;
    else
      return false;
    if (digits >= 16) return false;
    address = (address << 4) | static_cast<uint64_t>(v);
  }
  if (digits == 0 || end - p < 4 || p[0] != ' ' || p[2] != ' ') return false;
  line.address = address;
  line.type = p[1];
  line.name = p + 3;
  const char* name_end = line.name;
  while (name_end < end && *name_end != '\t' && *name_end != ' ') ++name_end;
  line.name_length = static_cast<size_t>(name_end - line.name);
  return line.name_length > 0;
}

}  // namespace

Status function_range_in(const char* text, size_t length, const char* name, SymbolRange& out) {
  const size_t name_length = std::strlen(name);
  std::vector<uint64_t> addresses;  // every symbol's, to find the next one after ours
  addresses.reserve(length / 40);
  uint64_t start = 0;
  bool found = false;
  bool ambiguous = false;
  bool any_nonzero = false;
  const char* p = text;
  const char* const end = text + length;
  while (p < end) {
    const char* eol = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (eol == nullptr) eol = end;
    Line line;
    if (parse_line(p, eol, line)) {
      addresses.push_back(line.address);
      any_nonzero = any_nonzero || line.address != 0;
      if ((line.type == 't' || line.type == 'T') && line.name_length == name_length &&
          std::memcmp(line.name, name, name_length) == 0) {
        if (found && line.address != start) ambiguous = true;
        start = line.address;
        found = true;
      }
    }
    if (eol == end) break;  // no pointer past the end, even unused
    p = eol + 1;
  }
  if (!found) return Status::failure(std::string("kallsyms has no function ") + name);
  if (!any_nonzero)
    return Status::failure(
        "kallsyms addresses are hidden (zero): needs CAP_SYSLOG (root) and kernel.kptr_restrict "
        "< 2");
  if (ambiguous)
    return Status::failure(std::string("kallsyms has several functions named ") + name);
  uint64_t next = UINT64_MAX;
  for (const uint64_t a : addresses)
    if (a > start && a < next) next = a;
  if (next == UINT64_MAX)
    return Status::failure(std::string("kallsyms has no symbol after ") + name);
  out.start = start;
  out.end = next;
  return Status{};
}

Status find_function_range(const char* name, SymbolRange& out, const char* path) {
  std::vector<uint8_t> text;
  if (Status st = read_whole_file(path, text); !st.ok()) return st;
  return function_range_in(reinterpret_cast<const char*>(text.data()), text.size(), name, out);
}

}  // namespace ctmon
