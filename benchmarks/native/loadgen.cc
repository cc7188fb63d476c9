// loadgen.cc — creates new conntrack entries at a set rate, for the event-rate benchmark.
//
//   loadgen udp RATE SECONDS [CPU]   RATE datagrams/s (0: as fast as possible), each one a new
//                                    flow: distinct destination addresses in 127.0.0.0/8, sent
//                                    with sendmmsg in batches, paced per batch
//   loadgen tcp RATE SECONDS [CPU]   TCP connections to a loopback listener, each opened and
//                                    closed (NEW, state UPDATEs, and DESTROY once reaped)
//
// Run inside the benchmark's namespace. Optionally pinned to CPU. Prints one JSON line:
// {"mode","sent","failed","seconds","rate","cpuSeconds"}: cpuSeconds is its own user+system
// time, which includes the kernel's work on its packets (conntrack, and building each NEW
// event for listeners). Benchmark tooling only; not part of the library.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void pace(double start, long done, double rate) {
  if (rate <= 0) return;
  const double due = start + done / rate;
  const double wait = due - now_s();
  if (wait > 0) {
    timespec ts{static_cast<time_t>(wait),
                static_cast<long>((wait - static_cast<long>(wait)) * 1e9)};
    nanosleep(&ts, nullptr);
  }
}

int run_udp(double rate, double seconds, long* failed) {
  // A sink on the wildcard address takes every datagram, so no ICMP errors are generated.
  const int sink = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_port = htons(9);
  if (bind(sink, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) return perror("bind"), -1;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  constexpr int kBatch = 64;
  sockaddr_in dst[kBatch];
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  char byte = 'x';
  uint32_t next = 1;  // index into 127.0.0.0/8, skipping .0.0.0
  long sent = 0;
  const double start = now_s();
  while (now_s() - start < seconds) {
    for (int i = 0; i < kBatch; ++i) {
      if (++next >= (1u << 24)) next = 1;
      dst[i] = sockaddr_in{};
      dst[i].sin_family = AF_INET;
      dst[i].sin_port = htons(9);
      dst[i].sin_addr.s_addr = htonl((127u << 24) | next);
      iov[i] = {&byte, 1};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_name = &dst[i];
      msgs[i].msg_hdr.msg_namelen = sizeof dst[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int off = 0;
    while (off < kBatch) {
      const int n = sendmmsg(fd, msgs + off, kBatch - off, 0);
      if (n > 0) {
        off += n;
        sent += n;
      } else {
        ++*failed;  // EPERM: the table was full and the packet was dropped
        ++off;
      }
    }
    pace(start, sent + *failed, rate);
  }
  close(fd);
  close(sink);
  return static_cast<int>(sent > INT32_MAX ? INT32_MAX : sent);
}

long run_tcp(double rate, double seconds, long* failed) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return perror("bind"), -1;
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  listen(listener, 4096);
  long done = 0;
  const double start = now_s();
  while (now_s() - start < seconds) {
    const int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const int s = accept(listener, nullptr, nullptr);
      close(c);  // client closes first: its side goes to TIME_WAIT, conntrack through FIN states
      if (s >= 0) close(s);
      ++done;
    } else {
      ++*failed;
      close(c);
    }
    pace(start, done + *failed, rate);
  }
  close(listener);
  return done;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: loadgen udp|tcp RATE SECONDS [CPU]\n");
    return 2;
  }
  const std::string mode = argv[1];
  const double rate = std::atof(argv[2]);
  const double seconds = std::atof(argv[3]);
  if (argc > 4) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(std::atoi(argv[4]), &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  long failed = 0;
  const double start = now_s();
  const long sent =
      mode == "tcp" ? run_tcp(rate, seconds, &failed) : run_udp(rate, seconds, &failed);
  const double took = now_s() - start;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                     ru.ru_stime.tv_usec / 1e6;
  std::printf(
      "{\"mode\":\"%s\",\"sent\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"rate\":%.0f,"
      "\"cpuSeconds\":%.3f}\n",
      mode.c_str(), sent, failed, took, sent / took, cpu);
  return sent < 0 ? 1 : 0;
}
