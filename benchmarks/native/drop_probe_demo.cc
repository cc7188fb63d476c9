// drop_probe_demo.cc — runs ctmon::DropProbe on its own (no Node) to verify it on a real kernel:
// attaches, waits, and prints what it saw as one JSON object.
//
//   drop_probe_demo --check                   prints why the probe cannot run, or "available"
//   drop_probe_demo SECONDS [--stats] [--route-chain-only]
//
// "attached" goes to stderr once the program is live, so a script can start its traffic then.
// SIGINT/SIGTERM end the wait early. --stats turns on BPF run-time statistics for the run
// (BPF_ENABLE_STATS, released on exit) and reports the program's ns per invocation.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "ebpf/drop_probe.h"

namespace {

volatile std::sig_atomic_t stop = 0;

void print_address(int family, const uint8_t* bytes) {
  char text[INET6_ADDRSTRLEN] = "";
  if (family == AF_INET || family == AF_INET6) inet_ntop(family, bytes, text, sizeof text);
  std::printf("\"%s\"", text);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    return std::fprintf(
               stderr, "usage: drop_probe_demo --check | SECONDS [--stats] [--route-chain-only]\n"),
           2;
  ctmon::DropProbeOptions options;
  bool stats = false;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--stats") == 0)
      stats = true;
    else if (std::strcmp(argv[i], "--route-chain-only") == 0)
      options.route_chain_only = true;
    else
      return std::fprintf(stderr, "unknown option %s\n", argv[i]), 2;
  }
  if (std::strcmp(argv[1], "--check") == 0) {
    const ctmon::Status st = ctmon::DropProbe::check_available(options);
    std::printf("%s\n", st.ok() ? "available" : st.text().c_str());
    return st.ok() ? 0 : 1;
  }
  const double seconds = std::atof(argv[1]);

  ctmon::Fd stats_fd;
  if (stats) {
    const ctmon::Status st = ctmon::DropProbe::enable_run_time_stats(stats_fd);
    if (!st.ok()) return std::fprintf(stderr, "BPF_ENABLE_STATS: %s\n", std::strerror(st.code)), 1;
  }
  ctmon::DropProbe probe;
  const ctmon::Status opened = probe.open(options);
  if (!opened.ok()) return std::fprintf(stderr, "open: %s\n", opened.text().c_str()), 1;
  std::signal(SIGINT, [](int) { stop = 1; });
  std::signal(SIGTERM, [](int) { stop = 1; });
  std::fprintf(stderr, "attached\n");

  timespec start{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const double elapsed =
        double(now.tv_sec - start.tv_sec) + double(now.tv_nsec - start.tv_nsec) / 1e9;
    if (stop || elapsed >= seconds) break;
    usleep(20000);
  }

  std::printf("{\"namespaces\":[");
  bool first = true;
  ctmon::Status st = probe.read_namespaces([&](uint32_t netns, uint64_t drops) {
    std::printf("%s{\"netns\":%u,\"drops\":%llu}", first ? "" : ",", netns,
                (unsigned long long)drops);
    first = false;
  });
  if (!st.ok()) return std::fprintf(stderr, "read_namespaces: %s\n", std::strerror(st.code)), 1;
  std::printf("],\"flows\":[");
  first = true;
  st = probe.read_and_clear_flows([&](const ctmon::DroppedFlow& f) {
    std::printf("%s{\"netns\":%u,\"family\":%d,\"protocol\":%d,\"src\":", first ? "" : ",", f.netns,
                f.family, f.protocol);
    print_address(f.family, f.src);
    std::printf(",\"dst\":");
    print_address(f.family, f.dst);
    std::printf(",\"sport\":%u,\"dport\":%u,\"count\":%llu}", f.sport, f.dport,
                (unsigned long long)f.count);
    first = false;
  });
  if (!st.ok())
    return std::fprintf(stderr, "read_and_clear_flows: %s\n", std::strerror(st.code)), 1;
  uint64_t counters[ctmon::kDropCounterCount] = {};
  st = probe.read_counters(counters);
  if (!st.ok()) return std::fprintf(stderr, "read_counters: %s\n", std::strerror(st.code)), 1;
  static const char* const names[] = {
      "netfilterDrops", "freedByHookSlow", "matched",          "netnsFromDevice", "netnsFromSocket",
      "netnsFromRoute", "netnsUnknown",    "namespaceMapFull", "flowMapFailed",   "notIp"};
  static_assert(sizeof names / sizeof names[0] == ctmon::kDropCounterCount, "one name per counter");
  std::printf("],\"counters\":{");
  for (uint32_t i = 0; i < ctmon::kDropCounterCount; ++i)
    std::printf("%s\"%s\":%llu", i ? "," : "", names[i], (unsigned long long)counters[i]);
  ctmon::ProgramStats ps;
  st = probe.read_program_stats(ps);
  if (!st.ok()) return std::fprintf(stderr, "read_program_stats: %s\n", std::strerror(st.code)), 1;
  std::printf(
      "},\"program\":{\"id\":%u,\"instructions\":%u,\"runCount\":%llu,\"runTimeNs\":%llu,"
      "\"nsPerRun\":%.1f,\"recursionMisses\":%llu}}\n",
      ps.id, ps.instructions, (unsigned long long)ps.run_count, (unsigned long long)ps.run_time_ns,
      ps.run_count ? double(ps.run_time_ns) / double(ps.run_count) : 0.0,
      (unsigned long long)ps.recursion_misses);
  return 0;
}
