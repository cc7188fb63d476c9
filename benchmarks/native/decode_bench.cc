// decode_bench.cc — nanoseconds per message of the ctnetlink decoder (native/ctnetlink.cc),
// over the hex fixtures captured from the kernel (test/fixtures/netlink/*.hex).
//
//   decode_bench FIXTURE_DIR [ROUNDS]
//
// Prints one JSON line: {"messages","rounds","nsPerMessage","nsPerMessageByFixture":{...}}.
#include <dirent.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "ctnetlink/decoder.h"

namespace {

std::vector<std::vector<uint8_t>> load(const std::string& path) {
  std::vector<std::vector<uint8_t>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i + 1 < line.size(); i += 2)
      bytes.push_back(std::strtoul(line.substr(i, 2).c_str(), nullptr, 16));
    out.push_back(bytes);
  }
  return out;
}

double now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

volatile uint32_t sink;

// Decodes every message of every datagram `rounds` times; returns ns per message.
double bench(const std::vector<std::vector<uint8_t>>& datagrams, long rounds, long* messages) {
  ctmon::Conntrack ct;
  const double start = now_ns();
  long n = 0;
  for (long r = 0; r < rounds; ++r) {
    for (const auto& d : datagrams) {
      ctmon::MessageWalker walker(d.data(), d.size());
      ctmon::Message msg;
      while (walker.next(msg)) {
        if (ctmon::decode_conntrack(msg, ct) == ctmon::DecodeStatus::kOk)
          sink = sink + ct.id + ct.tcp_state;
        ++n;
      }
    }
  }
  *messages = n;
  return (now_ns() - start) / n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: decode_bench FIXTURE_DIR [ROUNDS]\n"), 2;
  const std::string dir = argv[1];
  const long rounds = argc > 2 ? std::atol(argv[2]) : 200000;
  std::vector<std::vector<uint8_t>> all;
  std::string by;
  DIR* d = opendir(dir.c_str());
  if (!d) return std::perror("opendir"), 1;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 5 || name.substr(name.size() - 4) != ".hex" || name.rfind("stats-", 0) == 0)
      continue;
    const auto datagrams = load(dir + "/" + name);
    long n = 0;
    const double ns = bench(datagrams, rounds / 10, &n);
    char part[128];
    std::snprintf(part, sizeof part, "%s\"%s\":%.1f", by.empty() ? "" : ",",
                  name.substr(0, name.size() - 4).c_str(), ns);
    by += part;
    all.insert(all.end(), datagrams.begin(), datagrams.end());
  }
  closedir(d);
  long messages = 0;
  const double ns = bench(all, rounds, &messages);
  std::printf(
      "{\"messages\":%ld,\"rounds\":%ld,\"nsPerMessage\":%.1f,\"nsPerMessageByFixture\":{%s}}\n",
      messages, rounds, ns, by.c_str());
  return 0;
}
