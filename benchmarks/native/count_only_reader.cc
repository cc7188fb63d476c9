// count_only_reader.cc — the least any event reader can cost: an event socket joined to the
// NEW and DESTROY groups with the count-only eBPF program (native/ebpf/event_counter.h)
// attached, which counts every message in the kernel and queues none. With --all it joins the
// UPDATE group too: the least a reader that follows TCP states through events can cost, since
// the kernel builds every UPDATE message for it (a message per state change) before any filter
// runs. Benchmark tooling and a demonstration of the EventCounter API; not part of the library.
//
//   count_only_reader NETNS_PATH [--all]   prints "ready", then on SIGTERM/SIGINT one JSON line:
//                                          {"new","update","destroy","unknownLayout","queued"}
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <sched.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include "ctnetlink/socket.h"
#include "ebpf/event_counter.h"

namespace {
volatile std::sig_atomic_t stop = 0;
}

int main(int argc, char** argv) {
  const bool all = argc == 3 && std::strcmp(argv[2], "--all") == 0;
  if (argc < 2 || (argc == 3 && !all) || argc > 3)
    return std::fprintf(stderr, "usage: count_only_reader NETNS_PATH [--all]\n"), 2;
  const int ns = open(argv[1], O_RDONLY);
  if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) return std::perror("setns"), 1;
  std::signal(SIGTERM, [](int) { stop = 1; });
  std::signal(SIGINT, [](int) { stop = 1; });

  ctmon::EventCounter counter;
  const ctmon::Status loaded = counter.open();
  if (!loaded.ok()) return std::fprintf(stderr, "%s\n", loaded.text().c_str()), 1;
  const unsigned groups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY,
                             NFNLGRP_CONNTRACK_UPDATE};
  ctmon::EventSocketConfig config{groups, all ? 3u : 2u, 1 << 20, nullptr, 0};
  config.bpf_program_fd = counter.program_fd();
  ctmon::Fd fd;
  ctmon::EventSocketInfo info;
  const ctmon::Status st = ctmon::open_event_socket(config, fd, info);
  if (!st.ok()) return std::fprintf(stderr, "%s: errno %d\n", st.syscall, st.code), 1;
  std::printf("ready\n");
  std::fflush(stdout);
  while (!stop) pause();

  ct_counters c;
  if (!counter.read(0, c).ok()) return std::perror("read"), 1;
  uint64_t unknown = 0;
  for (uint32_t k = 0; k < CT_KIND_COUNT; ++k) unknown += c.messages[k][CT_CLASS_UNKNOWN];
  ctmon::BatchReceiver receiver(64, 8192);
  long queued = 0;
  for (int n; (n = receiver.receive(fd.get())) > 0;) queued += n;
  std::printf(
      "{\"new\":%llu,\"update\":%llu,\"destroy\":%llu,\"unknownLayout\":%llu,\"queued\":%ld}\n",
      static_cast<unsigned long long>(ctmon::kind_total(c, CT_KIND_NEW)),
      static_cast<unsigned long long>(ctmon::kind_total(c, CT_KIND_UPDATE)),
      static_cast<unsigned long long>(ctmon::kind_total(c, CT_KIND_DESTROY)),
      static_cast<unsigned long long>(unknown), queued);
  return 0;
}
