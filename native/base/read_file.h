// read_file.h — the one way native code reads a file: whole files of unknown size read once at
// start-up (kernel BTF, /proc/kallsyms; procfs reports size 0), and small text files read every
// interval (sysctls, net/sockstat, securityfs) into a caller's buffer. No Node-API; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"

namespace ctmon {

// Reads all of `path` into `out`; on failure the message says "cannot open|read PATH: why".
Status read_whole_file(const char* path, std::vector<uint8_t>& out);

// Reads at most size - 1 bytes of `path` into `text`, NUL-terminated; false when the file
// cannot be opened or is empty. One read(): the files it is for fit one page.
bool read_small_file(const char* path, char* text, size_t size);

template <size_t N>
bool read_small_file(const char* path, char (&text)[N]) {
  return read_small_file(path, text, N);
}

}  // namespace ctmon
