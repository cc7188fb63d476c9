// proc_text.cc — see proc_text.h.
#include "base/proc_text.h"

#include <cstdlib>
#include <cstring>

namespace ctmon {

int64_t parse_sysctl_integer(const char* text) {
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  return end == text ? -1 : value;
}

int64_t parse_sockstat_time_wait(const char* text) {
  // The TCP line is the second line; match it at a line start so "UDP:" or "TCP6:" never do.
  const char* tcp = std::strncmp(text, "TCP:", 4) == 0 ? text : std::strstr(text, "\nTCP:");
  if (tcp == nullptr) return -1;
  const char* eol = std::strchr(tcp + 1, '\n');
  const char* tw = std::strstr(tcp, " tw ");
  if (tw == nullptr || (eol != nullptr && tw > eol)) return -1;
  return parse_sysctl_integer(tw + 4);
}

}  // namespace ctmon
