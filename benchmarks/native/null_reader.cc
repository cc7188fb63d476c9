// null_reader.cc — the floor under conntrack-monitor's event reading: the same socket (groups,
// BPF filter, NETLINK_NO_ENOBUFS, 32 MiB buffer) read the same way (10 ms coalescing,
// recvmmsg batches of 64), with nothing done to the messages. What it costs is the kernel's
// share of receiving them.
//
//   null_reader NETNS_PATH     prints {"messages","userSeconds","systemSeconds"} on SIGTERM
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "ctnetlink/event_filter.h"
#include "ctnetlink/socket.h"

namespace {
volatile std::sig_atomic_t stop = 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: null_reader NETNS_PATH\n"), 2;
  const int ns = open(argv[1], O_RDONLY);
  if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) return std::perror("setns"), 1;
  std::signal(SIGTERM, [](int) { stop = 1; });
  std::signal(SIGINT, [](int) { stop = 1; });
  const unsigned groups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE,
                             NFNLGRP_CONNTRACK_DESTROY};
  const ctmon::FilterProgram filter = ctmon::event_filter();
  ctmon::Fd fd;
  ctmon::EventSocketInfo info;
  const ctmon::Status st =
      ctmon::open_event_socket({groups, 3, 32 << 20, filter.instructions, filter.length}, fd, info);
  if (!st.ok()) return std::fprintf(stderr, "%s: errno %d\n", st.syscall, st.code), 1;
  std::printf("ready\n");
  std::fflush(stdout);
  ctmon::BatchReceiver receiver(64, 8192);
  long messages = 0;
  pollfd p{fd.get(), POLLIN, 0};
  while (!stop) {
    if (poll(&p, 1, 100) <= 0) continue;
    usleep(10000);
    for (int n; (n = receiver.receive(fd.get())) > 0;) messages += n;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"messages\":%ld,\"userSeconds\":%.3f,\"systemSeconds\":%.3f}\n", messages,
              ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
              ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
  return 0;
}
