// snapshot_dump.cc — see snapshot_dump.h. No Node-API.
#include "ctnetlink/snapshot_dump.h"

#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#include <new>
#include <system_error>
#include <vector>

#include "base/clock.h"
#include "base/fault_injection.h"

namespace ctmon {
namespace {

double ms_of(const timeval& tv) { return tv.tv_sec * 1e3 + tv.tv_usec / 1e3; }

uint64_t random_seed() {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, 0) != sizeof seed)
    seed = static_cast<uint64_t>(clock_ns(CLOCK_MONOTONIC));
  return seed;
}

}  // namespace

SnapshotRunner::~SnapshotRunner() {
  cancel();
  join();
}

bool SnapshotRunner::start(std::function<void()> done, Status& error) {
  done_ = std::move(done);
  try {
    thread_ = std::thread(&SnapshotRunner::run, this);
  } catch (const std::system_error& e) {
    error = Status{e.code().value(), "pthread_create", "start the snapshot thread"};
    return false;
  }
  return true;
}

void SnapshotRunner::join() {
  if (thread_.joinable()) thread_.join();
}

// The snapshot thread: it enters the namespace and ends with the snapshot.
void SnapshotRunner::run() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals belong to the JS thread
  pthread_setname_np(pthread_self(), "ctmon-snapshot");

  const int64_t started = clock_ns(CLOCK_MONOTONIC);
  rusage before{};
  getrusage(RUSAGE_THREAD, &before);
  try {
    outcome_.ok = dump();
  } catch (const std::bad_alloc&) {  // the grouping's maps could not grow
    outcome_.ok = false;
    outcome_.error = Status{ENOMEM, "malloc", "group the conntrack table"};
  }
  rusage after{};
  getrusage(RUSAGE_THREAD, &after);
  outcome_.cost.user_ms = ms_of(after.ru_utime) - ms_of(before.ru_utime);
  outcome_.cost.system_ms = ms_of(after.ru_stime) - ms_of(before.ru_stime);
  outcome_.cost.wall_ms = (clock_ns(CLOCK_MONOTONIC) - started) / 1e6;
  outcome_.end_wall_ms = clock_ns(CLOCK_REALTIME) / 1000000;
  if (done_) done_();
}

bool SnapshotRunner::dump() {
  Status& error = outcome_.error;
  if (!config_.netns_path.empty()) {
    Fd ns(::open(config_.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns.get() < 0) {
      error = Status{errno, "open", "open network namespace " + config_.netns_path};
      return false;
    }
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      error = Status{errno, "setns", "enter network namespace " + config_.netns_path};
      return false;
    }
  }
  RequestSocket socket;
  Status st = socket.open(config_.receive_timeout_ms);
  if (!st.ok()) {
    error = Status{st.code, st.syscall, "open the conntrack request socket"};
    return false;
  }
  const int subsystem = fault_injection().ctnetlink_subsystem.load(std::memory_order_relaxed);
  // The namespace's entry count sizes the grouping's maps (they touch only the pages they use);
  // without it they start small and grow.
  GlobalStats stats;
  socket.request(static_cast<uint16_t>(subsystem << 8 | IPCTNL_MSG_CT_GET_STATS), 0, AF_UNSPEC,
                 [&](const Message& msg) { decode_global_stats(msg, stats); });
  SnapshotGrouper grouper(random_seed(), stats.has_entries ? stats.entries : 0);

  // Replies are decoded and grouped a datagram at a time, in between(), while the datagram is
  // still in the socket's buffer: three thread-clock reads per ~200 entries, not per entry.
  std::vector<Message> pending;
  std::vector<Conntrack> decoded;
  pending.reserve(512);
  decoded.reserve(512);
  SnapshotCost& cost = outcome_.cost;
  const int64_t deadline =
      clock_ns(CLOCK_MONOTONIC) + static_cast<int64_t>(config_.deadline_ms) * 1000000;
  auto consume = [&] {
    ++cost.datagrams;
    const int64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    decoded.clear();
    for (const Message& msg : pending) {
      decoded.emplace_back();
      if (decode_conntrack(msg, decoded.back()) != DecodeStatus::kOk) {
        decoded.pop_back();
        ++cost.malformed;
      }
    }
    const int64_t t1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    cost.malformed += grouper.add_batch(decoded.data(), decoded.size());
    const int64_t t2 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    cost.messages += pending.size();
    cost.decode_ms += (t1 - t0) / 1e6;
    cost.group_ms += (t2 - t1) / 1e6;
    pending.clear();
    if (cancelled_.load(std::memory_order_relaxed)) stop_.store(true);
    if (clock_ns(CLOCK_MONOTONIC) > deadline) {
      timed_out_ = true;
      stop_.store(true);
    }
  };
  if (cancelled_.load()) stop_.store(true);
  st = socket.request(
      static_cast<uint16_t>(subsystem << 8 | IPCTNL_MSG_CT_GET), NLM_F_DUMP, AF_UNSPEC,
      [&](const Message& msg) { pending.push_back(msg); }, &stop_, consume);
  if (st.ok() && !pending.empty()) consume();  // the datagram that ended with NLMSG_DONE
  if (st.ok()) {
    const int64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    outcome_.report = grouper.top(config_.limit);
    cost.group_ms += (clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0) / 1e6;
    cost.group_bytes = grouper.memory_bytes();
    return true;
  }
  if (st.code == ECANCELED && timed_out_) {
    error = Status{
        ETIMEDOUT, "recv",
        "dump the conntrack table: gave up after " + std::to_string(config_.deadline_ms) + " ms"};
  } else if (st.code == EAGAIN || st.code == EWOULDBLOCK) {  // SO_RCVTIMEO expired
    error = Status{ETIMEDOUT, "recv",
                   "dump the conntrack table: no reply within " +
                       std::to_string(config_.receive_timeout_ms) + " ms"};
  } else {
    error = Status{st.code, st.syscall, "dump the conntrack table"};
  }
  return false;
}

}  // namespace ctmon
