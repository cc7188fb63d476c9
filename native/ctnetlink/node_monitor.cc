// node_monitor.cc — see node_monitor.h. No Node-API.
#include "ctnetlink/node_monitor.h"

#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "base/clock.h"
#include "base/netns.h"
#include "base/proc_text.h"
#include "ctnetlink/count_filter.h"

namespace ctmon {
namespace {

constexpr size_t kBatchSlots = 64;               // datagrams per recvmmsg
constexpr size_t kSlotBytes = 64;                // the filter passes 20-byte headers
constexpr int kRequestTimeoutMs = 2000;          // a stats request never blocks longer
constexpr size_t kStatsBufferBytes = 16 * 1024;  // one stats reply datagram (see socket.h)
constexpr int kBatchesPerWakeup = 64;            // ~4k events per namespace, then the others' turn
constexpr int kBatchesAtClose = 1024;            // what is queued when an interval closes
// After events were read, wait this long before the next wait for readiness: under load
// the sockets fill meanwhile and each recvmmsg moves 64 headers instead of one or two, and
// the thread wakes at most ~100 times a second whatever the rate (as Monitor's kCoalesceMs).
constexpr int kCoalesceMs = 10;
constexpr int kMaxEpollEvents = 64;
// NEW and DESTROY only: UPDATEs are never built for a group nobody joined.
constexpr unsigned kCountedGroups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY};
constexpr uint64_t kControlKey = 0;  // epoll data of the control eventfd; namespaces use ids

// An integer sysctl through a descriptor kept open, or -1.
int64_t read_sysctl_fd(int fd) {
  char text[32];
  const ssize_t n = fd < 0 ? -1 : ::pread(fd, text, sizeof text - 1, 0);
  if (n <= 0) return -1;
  text[n] = '\0';
  return parse_sysctl_integer(text);
}

}  // namespace

struct NodeMonitor::Watched {
  uint64_t id = 0;
  Fd event_fd;
  Fd events_sysctl;  // nf_conntrack_events, opened inside the namespace
  RequestSocket requests{kStatsBufferBytes};
  std::unique_ptr<EventCounter> counter;  // the eBPF count-only program; null on the filter path
  uint64_t counted[CT_KIND_COUNT] = {};   // its totals by kind at the last interval
  Aggregator aggregator;
  bool stats_failing = false;  // report a failing stats request once, not every interval
  CountingPath path() const { return counter ? CountingPath::kKernel : CountingPath::kFilter; }
};

NodeMonitor::NodeMonitor(NodeMonitorConfig config, NodeMonitorListener* listener)
    : config_(config), listener_(listener), receiver_(kBatchSlots, kSlotBytes) {}

NodeMonitor::~NodeMonitor() { stop(); }

bool NodeMonitor::start(Status& error) {
  control_fd_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (control_fd_.get() < 0) {
    error = Status{errno, "eventfd", "create the request signal"};
    return false;
  }
  epoll_fd_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (epoll_fd_.get() < 0) {
    error = Status{errno, "epoll_create1", "create the event poll"};
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kControlKey;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, control_fd_.get(), &ev) != 0) {
    error = Status{errno, "epoll_ctl", "poll the request signal"};
    return false;
  }
  start_done_ = false;
  try {
    thread_ = std::thread(&NodeMonitor::run, this);
  } catch (const std::system_error& e) {
    error = Status{e.code().value(), "pthread_create", "start the reader thread"};
    return false;
  }
  std::unique_lock<std::mutex> lock(start_mu_);
  start_cv_.wait(lock, [this] { return start_done_; });
  if (start_error_.code == 0) return true;
  error = start_error_;
  lock.unlock();
  thread_.join();
  return false;
}

void NodeMonitor::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  wake();
  thread_.join();
}

void NodeMonitor::add(uint64_t id, std::string path, uint64_t inode) {
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    requests_.push_back(Request{true, id, std::move(path), inode});
  }
  wake();
}

void NodeMonitor::remove(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    requests_.push_back(Request{false, id, {}, 0});
  }
  wake();
}

void NodeMonitor::wake() {
  const uint64_t one = 1;
  while (::write(control_fd_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

// The reader thread's own namespace, to come back to after entering another one.
bool NodeMonitor::open_home(Status& error) {
  home_ns_ = Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (home_ns_.get() < 0) {
    error = Status{errno, "open", "open the reader thread's own network namespace"};
    return false;
  }
  return true;
}

void NodeMonitor::run() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals belong to the JS thread
  pthread_setname_np(pthread_self(), "ctmon-node");

  Status error;
  const bool ok = open_home(error);
  {
    std::lock_guard<std::mutex> lock(start_mu_);
    start_error_ = ok ? Status{} : error;
    start_done_ = true;
  }
  start_cv_.notify_one();
  if (!ok) return;

  IntervalClock intervals(static_cast<int64_t>(config_.interval_ms) * 1000000, mono_ns());
  epoll_event events[kMaxEpollEvents];
  for (;;) {
    int64_t now = mono_ns();
    if (intervals.due(now)) {
      close_interval(false);
      intervals.advance(mono_ns());
      continue;
    }
    const int timeout_ms = intervals.timeout_ms(now);
    const int n = ::epoll_wait(epoll_fd_.get(), events, kMaxEpollEvents, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      listener_->on_error(0, Status{errno, "epoll_wait", "wait for conntrack events"});
      close_interval(true);
      return;
    }
    bool control = false;
    bool drained = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kControlKey) {
        control = true;
        continue;
      }
      // Removals happen below, after this loop: every pointer taken here is live.
      auto it = watched_.find(events[i].data.u64);
      if (it == watched_.end()) continue;
      Watched& w = *it->second;
      if (events[i].events & EPOLLERR) {
        int pending = 0;
        socklen_t len = sizeof pending;
        ::getsockopt(w.event_fd.get(), SOL_SOCKET, SO_ERROR, &pending, &len);
        if (pending != 0)
          listener_->on_error(w.id, Status{pending, "recvmmsg", "read conntrack events"});
      }
      if (events[i].events & EPOLLIN) {
        drain(w, kBatchesPerWakeup);
        drained = true;
      }
    }
    if (control) {
      uint64_t value;
      while (::read(control_fd_.get(), &value, sizeof value) < 0 && errno == EINTR) {
      }
      if (stopping_.load()) {
        close_interval(true);
        watched_.clear();
        return;
      }
      take_requests();
      if (fatal_) {
        close_interval(true);
        watched_.clear();
        return;
      }
    }
    if (drained) {
      // Let events gather (see kCoalesceMs); a request or stop cuts the wait short.
      const int64_t left_ms = (intervals.next_ns() - mono_ns()) / 1000000;
      if (left_ms > 0) {
        pollfd control_poll{control_fd_.get(), POLLIN, 0};
        ::poll(&control_poll, 1, static_cast<int>(std::min<int64_t>(kCoalesceMs, left_ms)));
      }
    }
  }
}

void NodeMonitor::take_requests() {
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    taking_.swap(requests_);
  }
  for (const Request& r : taking_) {
    if (fatal_) break;
    if (r.add)
      open_namespace(r);
    else
      close_namespace(r.id);
  }
  taking_.clear();
}

void NodeMonitor::close_namespace(uint64_t id) {
  auto it = watched_.find(id);
  if (it == watched_.end()) return;
  if (!it->second->counter)
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, it->second->event_fd.get(), nullptr);
  watched_.erase(it);  // closes both sockets (and the counter's program) now
}

void NodeMonitor::open_namespace(const Request& request) {
  NamespaceOpened opened;
  opened.id = request.id;
  if (watched_.count(request.id) != 0) {
    opened.error = Status{EEXIST, "add", "namespace id " + std::to_string(request.id)};
    listener_->on_opened(opened);
    return;
  }
  auto w = std::make_unique<Watched>();
  w->id = request.id;
  if (!open_sockets(*w, request, opened)) {
    listener_->on_opened(opened);
    return;
  }
  // The first interval's deltas count from here (a namespace added mid-interval reports a
  // partial interval at the next close).
  const KernelReading baseline = stats_.read(w->requests, w->event_fd.get());
  if (!stats_.status().ok()) {
    opened.error =
        Status{stats_.status().code, stats_.status().syscall, "read conntrack statistics"};
    listener_->on_opened(opened);
    return;
  }
  w->aggregator.start(mono_ns(), baseline);
  if (!w->counter) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = w->id;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, w->event_fd.get(), &ev) != 0) {
      opened.error = Status{errno, "epoll_ctl", "poll the namespace's event socket"};
      listener_->on_opened(opened);
      return;
    }
  }
  opened.ok = true;
  opened.path = w->path();
  watched_.emplace(w->id, std::move(w));
  listener_->on_opened(opened);
}

// Runs on the reader thread: enters the namespace, opens both sockets there, and returns to
// its own namespace whatever happened (fatal_ when even that fails).
bool NodeMonitor::open_sockets(Watched& w, const Request& request, NamespaceOpened& opened) {
  // Never waits on the file and refuses what is no network namespace (a FIFO swapped in under
  // /var/run/netns would otherwise hold this thread, and with it every namespace's reading).
  Fd ns;
  const char* what = nullptr;
  const Status opened_ns = open_network_namespace(request.path.c_str(), ns, &what);
  if (!opened_ns.ok()) {
    opened.error =
        Status{opened_ns.code, opened_ns.syscall, "open network namespace " + request.path,
               what ? request.path + " is " + what + ", not a network namespace" : ""};
    return false;
  }
  struct stat st;
  if (::fstat(ns.get(), &st) != 0) {
    opened.error = Status{errno, "fstat", "check network namespace " + request.path};
    return false;
  }
  if (static_cast<uint64_t>(st.st_ino) != request.inode) {
    opened.error =
        Status{ESTALE, "fstat",
               request.path + " is no longer network namespace " + std::to_string(request.inode)};
    return false;
  }
  if (::setns(ns.get(), CLONE_NEWNET) != 0) {
    opened.error = Status{errno, "setns", "enter network namespace " + request.path};
    return false;
  }

  bool ok = true;
  // /proc/sys/net files resolve to the namespace of the task that opens them, and keep it.
  w.events_sysctl = Fd(::open("/proc/sys/net/netfilter/nf_conntrack_events", O_RDONLY | O_CLOEXEC));
  Status s = w.requests.open(kRequestTimeoutMs);
  if (!s.ok()) {
    opened.error = Status{s.code, s.syscall, "open the conntrack request socket"};
    ok = false;
  }
  std::string why_not;
  if (ok && config_.counting != CountingMode::kFilter) {
    // One program and counter map per namespace: a socket filter cannot tell which socket it
    // runs for, so each namespace's counts need maps of their own.
    w.counter = std::make_unique<EventCounter>();
    const Status loaded = w.counter->open();
    if (!loaded.ok()) {
      w.counter.reset();
      why_not = loaded.text();
      if (config_.counting == CountingMode::kKernel) {
        opened.error =
            Status{loaded.code, loaded.syscall, "count events in the kernel: " + loaded.text()};
        ok = false;
      }
    }
  } else if (ok) {
    why_not = "counting in the kernel is turned off (counting: 'filter')";
  }
  if (ok) {
    // No group is joined until the program that counts (or filters) is on the socket.
    const FilterProgram filter = count_filter();
    const EventSocketConfig event_config{nullptr, 0, config_.receive_buffer_bytes,
                                         w.counter ? nullptr : filter.instructions,
                                         w.counter ? 0 : filter.length};
    EventSocketInfo info;
    s = open_event_socket(event_config, w.event_fd, info);
    if (s.ok() && w.counter) {
      s = w.counter->attach(w.event_fd.get());
      if (!s.ok() && config_.counting == CountingMode::kAuto) {
        // Loaded but not attachable here: fall back on a fresh socket.
        why_not = std::string("attaching the kernel counter failed: ") + s.syscall;
        w.counter.reset();
        s = open_event_socket(EventSocketConfig{nullptr, 0, config_.receive_buffer_bytes,
                                                filter.instructions, filter.length},
                              w.event_fd, info);
      }
    }
    if (s.ok()) s = join_event_groups(w.event_fd.get(), kCountedGroups, 2);
    if (!s.ok()) {
      opened.error = Status{s.code, s.syscall, "subscribe to conntrack events"};
      ok = false;
    }
    opened.receive_buffer_bytes = info.receive_buffer_bytes;
  }
  if (!w.counter) opened.fallback_reason = why_not;

  if (::setns(home_ns_.get(), CLONE_NEWNET) != 0) {
    // Never expected (the thread just entered a namespace with the same privileges). A
    // thread that cannot leave a foreign namespace must open nothing more.
    listener_->on_error(0, Status{errno, "setns", "return to the monitor's own namespace"});
    fatal_ = true;
    opened.error = Status{errno, "setns", "return to the monitor's own namespace"};
    return false;
  }
  return ok;
}

// Hot path of the filter path: count every queued header, then read the socket's drop count
// so that loss is dated from the drain that found it (the sample's reason gives that time;
// the interval's count of lost events is booked at its close). No allocation, no locks.
void NodeMonitor::drain(Watched& w, int budget_batches) {
  drain_queue(w, budget_batches);
  uint32_t drops = 0;
  if (read_socket_drops(w.event_fd.get(), drops).ok())
    w.aggregator.observe_socket_drops(wall_ms(), drops);
}

void NodeMonitor::drain_queue(Watched& w, int budget_batches) {
  for (int batch = 0; batch < budget_batches; ++batch) {
    const int n = receiver_.receive(w.event_fd.get());
    if (n < 0) {
      listener_->on_error(w.id, Status{-n, "recvmmsg", "read conntrack events"});
      return;
    }
    for (int i = 0; i < n; ++i) {
      const HeaderKind kind = receiver_.truncated(i)
                                  ? HeaderKind::kOther
                                  : classify_event_header(receiver_.data(i), receiver_.length(i));
      if (kind == HeaderKind::kNew)
        w.aggregator.count_event(EventKind::kNew);
      else if (kind == HeaderKind::kDestroy)
        w.aggregator.count_event(EventKind::kDestroy);
      else
        w.aggregator.count_malformed();
    }
    if (static_cast<size_t>(n) < kBatchSlots) return;  // the queue is empty
  }
}

void NodeMonitor::close_interval(bool final) {
  report_.clear();
  for (auto& [id, wp] : watched_) {
    Watched& w = *wp;
    bool counter_failed = false;
    if (w.counter) {
      ct_counters totals;
      const Status s = w.counter->read(totals);
      if (s.ok()) {
        static constexpr EventKind kKinds[CT_KIND_COUNT] = {EventKind::kNew, EventKind::kUpdate,
                                                            EventKind::kDestroy};
        for (uint32_t k = 0; k < CT_KIND_COUNT; ++k) {
          const uint64_t now = kind_total(totals, static_cast<ct_kind>(k));
          w.aggregator.count_events(kKinds[k], now - w.counted[k]);
          w.counted[k] = now;
        }
      } else {
        // Not lost: the program keeps counting, and the next reading includes them.
        counter_failed = true;
        listener_->on_error(id, Status{s.code, s.syscall, "read the kernel event counter"});
      }
    } else {
      drain(w, kBatchesAtClose);
    }
    const KernelReading reading = stats_.read(w.requests, w.event_fd.get());
    const Status st = stats_.status();
    if (!st.ok() && !w.stats_failing)
      listener_->on_error(id, Status{st.code, st.syscall, "read conntrack statistics"});
    w.stats_failing = !st.ok();
    NamespaceInterval& out = report_.emplace_back();
    out.id = id;
    out.path = w.path();
    out.sample = w.aggregator.close(mono_ns(), wall_ms(), reading, final);
    out.counter_failed = counter_failed;
    out.events_mode = read_sysctl_fd(w.events_sysctl.get());
    if (counter_failed) out.sample.known &= ~(1u << kInsert | 1u << kDelete);
  }
  listener_->on_report(report_, final);
}

}  // namespace ctmon
