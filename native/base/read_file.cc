// read_file.cc — see read_file.h.
#include "base/read_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ctmon {

Status read_whole_file(const char* path, std::vector<uint8_t>& out) {
  out.clear();
  Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    return Status::failure(std::string("cannot open ") + path + ": " + std::strerror(err), err,
                           "open");
  }
  uint8_t chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return Status::failure(std::string("cannot read ") + path + ": " + std::strerror(err), err,
                             "read");
    }
    if (n == 0) break;
    out.insert(out.end(), chunk, chunk + n);
  }
  return Status{};
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
