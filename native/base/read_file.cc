// read_file.cc — see read_file.h.
#include "base/read_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"

namespace ctmon {

std::string read_whole_file(const char* path, std::vector<uint8_t>& out) {
  out.clear();
  Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return std::string("cannot open ") + path + ": " + std::strerror(errno);
  uint8_t chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::string("cannot read ") + path + ": " + std::strerror(errno);
    }
    if (n == 0) break;
    out.insert(out.end(), chunk, chunk + n);
  }
  return "";
}

bool read_small_file(const char* path, char* text, size_t size) {
  if (size == 0) return false;
  Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return false;
  ssize_t n;
  do {
    n = ::read(fd.get(), text, size - 1);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  text[n] = '\0';
  return true;
}

}  // namespace ctmon
