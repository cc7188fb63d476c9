// read_file.h — a whole file into memory, for the files read once at start-up (kernel BTF,
// /proc/kallsyms) whose size is not known in advance (procfs reports 0). No Node-API.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ctmon {

// Reads all of `path` into `out`. Returns "" on success, else "cannot open|read PATH: why".
std::string read_whole_file(const char* path, std::vector<uint8_t>& out);

}  // namespace ctmon
