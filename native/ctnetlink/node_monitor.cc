// node_monitor.cc — see node_monitor.h. No Node-API.
#include "ctnetlink/node_monitor.h"

#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
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

constexpr size_t kBatchSlots = 64;  // datagrams per recvmmsg
// The filter path passes 20-byte headers; the kernel path passes whole messages (< 400 bytes)
// of the flows its table cannot hold.
constexpr size_t kSlotBytes = 2048;
constexpr int kRequestTimeoutMs = 2000;            // a request never blocks longer
constexpr size_t kRequestBufferBytes = 16 * 1024;  // one reply datagram (see socket.h)
constexpr int kBatchesDuringListing = 8;           // events read between two dump datagrams
constexpr int kBatchesPerWakeup = 64;  // ~4k events per namespace, then the others' turn
constexpr int kBatchesAtClose = 1024;  // what is queued when an interval closes
// After events were read, wait this long before the next wait for readiness: under load
// the sockets fill meanwhile and each recvmmsg moves 64 headers instead of one or two, and
// the thread wakes at most ~100 times a second whatever the rate (as Monitor's kCoalesceMs).
constexpr int kCoalesceMs = 10;
constexpr int kMaxEpollEvents = 64;
// The filter path counts NEW and DESTROY only: UPDATEs are never built for a group nobody
// joined. The kernel path keeps states: every group.
constexpr unsigned kCountedGroups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY};
constexpr unsigned kTrackedGroups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE,
                                       NFNLGRP_CONNTRACK_DESTROY};
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
  explicit Watched(uint64_t seed) : overflow(seed) {}
  uint64_t id = 0;
  uint32_t index = UINT32_MAX;  // its slot in flows_ on the kernel path
  Fd event_fd;
  Fd events_sysctl;                             // nf_conntrack_events, opened inside the namespace
  RequestSocket requests{kRequestBufferBytes};  // stats every interval, listings
  bool kernel = false;                          // the ct_monitor program is on its socket
  uint64_t counted[CT_KIND_COUNT] = {};         // the program's totals by kind at the last interval
  Aggregator aggregator;
  bool stats_failing = false;  // report a failing stats request once, not every interval
  // The kernel path: flows the kernel's table could not hold, and the listings.
  ConntrackTable overflow;
  bool listed = false;      // its first listing completed
  uint64_t listings = 0;    // after the first
  int64_t verified_ns = 0;  // when the latest walk or listing that checked its flows began
  int64_t listing_end_ns = 0;
  int64_t listing_ns = 0;       // duration of the latest listing
  bool repair_pending = false;  // flows that a walk found alive past their deadline
  int overcount_intervals = 0;  // intervals in a row with more flows held than the kernel counts
  CountingPath path() const { return kernel ? CountingPath::kKernel : CountingPath::kFilter; }
};

NodeMonitor::NodeMonitor(NodeMonitorConfig config, NodeMonitorListener* listener)
    : config_(config), listener_(listener), receiver_(kBatchSlots, kSlotBytes) {}

namespace {
uint64_t random_seed() {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = static_cast<uint64_t>(mono_ns());
  return seed;
}
}  // namespace

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
  bool ok = open_home(error);
  if (ok) {
    const Status st = walker_.open(kRequestTimeoutMs);
    if (!st.ok()) {
      error = st.in("open the conntrack request socket");
      ok = false;
    }
  }
  if (ok && config_.counting != CountingMode::kFilter) {
    const Status st = flows_.open(config_.max_namespaces);
    if (st.ok()) {
      for (uint32_t i = config_.max_namespaces; i-- > 0;) free_indexes_.push_back(i);
    } else {
      flows_unavailable_ = st.text();
    }
  } else if (ok) {
    flows_unavailable_ = "counting in the kernel is turned off (counting: 'filter')";
  }
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
  Watched& w = *it->second;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w.event_fd.get(), nullptr);
  if (w.kernel) {
    flows_.remove(w.index);  // its flows leave the table
    free_indexes_.push_back(w.index);
  }
  watched_.erase(it);  // closes both sockets now
}

void NodeMonitor::open_namespace(const Request& request) {
  NamespaceOpened opened;
  opened.id = request.id;
  if (watched_.count(request.id) != 0) {
    opened.error = Status{EEXIST, "add", "namespace id " + std::to_string(request.id)};
    listener_->on_opened(opened);
    return;
  }
  auto w = std::make_unique<Watched>(random_seed());
  w->id = request.id;
  const auto fail = [&] {
    if (w->kernel) {
      flows_.remove(w->index);
      free_indexes_.push_back(w->index);
    }
    listener_->on_opened(opened);
  };
  if (!open_sockets(*w, request, opened)) return fail();
  // The first interval's deltas count from here (a namespace added mid-interval reports a
  // partial interval at the next close).
  const KernelReading baseline = stats_.read(w->requests, w->event_fd.get());
  if (!stats_.status().ok()) {
    opened.error = stats_.status().in("read conntrack statistics");
    return fail();
  }
  w->aggregator.start(mono_ns(), baseline);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = w->id;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, w->event_fd.get(), &ev) != 0) {
    opened.error = Status{errno, "epoll_ctl", "poll the namespace's event socket"};
    return fail();
  }
  opened.ok = true;
  opened.path = w->path();
  Watched& added = *w;
  watched_.emplace(w->id, std::move(w));
  listener_->on_opened(opened);
  // The entries it held before: one listing, unless it held none once the program was on its
  // socket (then every entry it will hold sends its NEW to the program).
  if (added.kernel) {
    if (baseline.global != nullptr && baseline.global->has_entries &&
        baseline.global->entries == 0) {
      added.listed = true;
      added.verified_ns = mono_ns();
    } else {
      list(added);
    }
  }
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
    opened.error = s.in("open the conntrack request socket");
    ok = false;
  }
  std::string why_not = flows_unavailable_;
  EventSocketInfo info;
  if (ok && flows_.is_open()) {
    // The kernel path: the one program, told this socket's namespace before it is attached,
    // and no group joined until it is on the socket.
    if (free_indexes_.empty()) {
      why_not = "the kernel's tables serve " + std::to_string(config_.max_namespaces) +
                " namespaces at once, all taken";
    } else {
      w.index = free_indexes_.back();
      s = open_event_socket(EventSocketConfig{nullptr, 0, config_.receive_buffer_bytes, nullptr, 0},
                            w.event_fd, info);
      if (s.ok()) {
        free_indexes_.pop_back();
        w.kernel = true;
        s = flows_.add(w.index, w.event_fd.get());
      }
      if (s.ok()) s = flows_.attach(w.event_fd.get());
      if (s.ok())
        s = join_event_groups(w.event_fd.get(), kTrackedGroups, std::size(kTrackedGroups));
      if (!s.ok()) {
        why_not = "the kernel path failed here: " + s.text();
        if (w.kernel) {
          flows_.remove(w.index);
          free_indexes_.push_back(w.index);
          w.kernel = false;
        }
        w.event_fd.reset();
      }
    }
  }
  if (ok && !w.kernel) {
    if (config_.counting == CountingMode::kKernel) {
      opened.error = Status::failure("count events in the kernel: " + why_not);
      ok = false;
    } else {
      const FilterProgram filter = count_filter();
      s = open_event_socket(
          EventSocketConfig{kCountedGroups, std::size(kCountedGroups), config_.receive_buffer_bytes,
                            filter.instructions, filter.length},
          w.event_fd, info);
      if (!s.ok()) {
        opened.error = s.in("subscribe to conntrack events");
        ok = false;
      }
      opened.fallback_reason = why_not;
    }
  }
  opened.receive_buffer_bytes = info.receive_buffer_bytes;

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
// the interval's count of lost events is booked at its close). No allocation, no locks. On the
// kernel path what is queued is rare: the messages of flows the table could not hold.
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
    const uint64_t now = now_ms();
    for (int i = 0; i < n; ++i) {
      if (!w.kernel) {
        const HeaderKind kind = receiver_.truncated(i)
                                    ? HeaderKind::kOther
                                    : classify_event_header(receiver_.data(i), receiver_.length(i));
        if (kind == HeaderKind::kNew)
          w.aggregator.count_event(EventKind::kNew);
        else if (kind == HeaderKind::kDestroy)
          w.aggregator.count_event(EventKind::kDestroy);
        else
          w.aggregator.count_malformed();
        continue;
      }
      // Counted in the kernel already: only the flow table's overflow is kept here.
      MessageWalker walker(receiver_.data(i), receiver_.length(i));
      Message msg;
      Conntrack ct;
      while (walker.next(msg))
        if (decode_conntrack(msg, ct) == DecodeStatus::kOk) w.overflow.apply_event(ct, now);
    }
    if (static_cast<size_t>(n) < kBatchSlots) return;  // the queue is empty
  }
}

void NodeMonitor::drain_all(int budget_batches) {
  for (auto& [id, w] : watched_) drain(*w, budget_batches);
}

uint64_t NodeMonitor::now_ms() const { return static_cast<uint64_t>(mono_ns()) / 1000000; }

// A listing of one namespace (see Monitor::resync): every entry it shows goes into the
// kernel's flow table, or the overflow table when that holds it or the kernel's cannot;
// entries it no longer shows leave both. Events keep being read between its datagrams.
bool NodeMonitor::list(Watched& w) {
  drain(w, kBatchesAtClose);
  const int64_t started = mono_ns();
  w.overflow.begin_dump();
  Status st = flows_.begin_listing(w.index);
  const uint64_t now = now_ms();
  if (st.ok())
    st = w.requests.request(
        ctnl_type(IPCTNL_MSG_CT_GET), NLM_F_DUMP, AF_UNSPEC,
        [&](const Message& msg) {
          Conntrack ct;
          if (decode_conntrack(msg, ct) != DecodeStatus::kOk) return;
          if (!w.overflow.contains(w.overflow.key(ct)) &&
              flows_.entry(w.index, ct, static_cast<uint64_t>(started)))
            return;
          w.overflow.apply_dump_entry(ct, now);
        },
        &stopping_, [this] { drain_all(kBatchesDuringListing); });
  w.listing_end_ns = mono_ns();
  w.listing_ns = w.listing_end_ns - started;
  if (!st.ok()) {
    w.overflow.abort_dump();
    flows_.abort_listing(w.index);
    if (st.code != ECANCELED) listener_->on_error(w.id, st.in("list the conntrack table"));
    return false;
  }
  drain(w, kBatchesAtClose);
  w.overflow.end_dump();
  flows_.end_listing(w.index);
  w.verified_ns = std::max(w.verified_ns, started);
  if (w.listed) ++w.listings;
  w.listed = true;
  w.repair_pending = false;
  w.overcount_intervals = 0;
  return true;
}

// Every kernel-path namespace's flows, in one pass over the shared table, plus each one's
// overflow table; indexed by the namespaces' slots.
void NodeMonitor::tally(std::vector<KernelTally>& tallies) {
  const int64_t now = mono_ns();
  const int64_t interval_ns = static_cast<int64_t>(config_.interval_ms) * 1000000;
  std::vector<uint64_t>& verified_ds = verified_ds_;  // kept: no allocation per interval
  verified_ds.assign(config_.max_namespaces, 0);
  for (const auto& [id, w] : watched_)
    if (w->kernel)
      verified_ds[w->index] =
          static_cast<uint64_t>(WalkSchedule::vouched(w->verified_ns, now, interval_ns)) /
          CT_DECISECOND_NS;
  flows_.tally(static_cast<uint64_t>(now) / CT_DECISECOND_NS, verified_ds, tallies);
  for (const auto& [id, w] : watched_) {
    if (!w->kernel) continue;
    TableTally overflow;
    w->overflow.tally(static_cast<uint64_t>(now) / 1000000,
                      verified_ds[w->index] * CT_DECISECOND_NS / 1000000, overflow);
    KernelTally& t = tallies[w->index];
    t.listed.add(overflow.listed);
    t.unverified.add(overflow.unverified);
    t.survivors += overflow.survivors;
  }
}

// One walk of the table, from the reader's own namespace, makes the kernel reap what expired
// in every namespace (see Monitor::verify); a namespace whose flows are alive past their
// deadline is listed next, to learn the deadline the kernel holds.
void NodeMonitor::verify(std::vector<KernelTally>& tallies) {
  uint64_t waiting = 0;
  for (const auto& [id, w] : watched_)
    if (w->kernel) waiting += tallies[w->index].unverified.entries;
  const int64_t now = mono_ns();
  if (waiting == 0 || !walks_.may_walk(now, waiting)) return;
  const int64_t cpu = thread_cpu_ns();
  const Status st = walker_.evict_expired();
  const int64_t end = mono_ns();
  const int64_t walk_cpu = thread_cpu_ns() - cpu;
  if (!st.ok()) {
    walks_.walked(now, end, walk_cpu);
    listener_->on_error(0, st);
    return;
  }
  drain_all(kBatchesAtClose);
  for (auto& [id, w] : watched_)
    if (w->kernel) w->verified_ns = std::max(w->verified_ns, now);
  tally(tallies);
  uint64_t survivors = 0;
  for (auto& [id, w] : watched_) {
    if (!w->kernel) continue;
    survivors += tallies[w->index].survivors;
    if (tallies[w->index].survivors > 0) w->repair_pending = true;
  }
  // What was unverified is now either a survivor or gone: killed by the walk.
  walks_.walked(now, end, walk_cpu, waiting > survivors ? waiting - survivors : 0);
}

void NodeMonitor::close_interval(bool final) {
  report_.clear();
  for (auto& [id, wp] : watched_) {
    Watched& w = *wp;
    bool counter_failed = false;
    if (w.kernel) {
      ct_counters totals;
      const Status s = flows_.read_counters(w.index, totals);
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
        listener_->on_error(id, s.in("read the kernel event counter"));
      }
    }
    drain(w, kBatchesAtClose);
    const KernelReading reading = stats_.read(w.requests, w.event_fd.get());
    const Status st = stats_.status();
    if (!st.ok() && !w.stats_failing) listener_->on_error(id, st.in("read conntrack statistics"));
    w.stats_failing = !st.ok();
    NamespaceInterval& out = report_.emplace_back();
    out.id = id;
    out.path = w.path();
    out.sample = w.aggregator.close(mono_ns(), wall_ms(), reading, final);
    // What the program passed and the socket could not queue: a listing repairs the states.
    if (w.kernel && out.sample.events_lost > 0) w.repair_pending = true;
    out.counter_failed = counter_failed;
    out.events_mode = read_sysctl_fd(w.events_sysctl.get());
    if (counter_failed) out.sample.known &= ~(1u << kInsert | 1u << kDelete);
  }
  if (flows_.is_open()) {
    std::vector<KernelTally>& tallies = tallies_;
    tally(tallies);
    if (!final && !stopping_.load()) {
      verify(tallies);
      // Listings only where needed: a namespace whose first one failed, or whose walk found
      // flows alive past their deadline (spaced by ten times its last duration, as the single
      // monitor's repairs are). No periodic ones: on this path every event is handled in the
      // kernel and none can be lost, and every listing walks the whole global hash, which
      // across a node's namespaces would cost more than everything else together.
      const int64_t now = mono_ns();
      bool listed = false;
      for (auto& [id, w] : watched_) {
        if (!w->kernel || stopping_.load()) continue;
        if ((w->repair_pending || !w->listed) && now - w->listing_end_ns >= 10 * w->listing_ns)
          listed = list(*w) || listed;
      }
      if (listed) tally(tallies);
    }
    for (NamespaceInterval& out : report_) {
      Watched& w = *watched_.at(out.id);
      if (!w.kernel) continue;
      // More flows held than the kernel counts (its count includes what expired and is not
      // reaped, so it can only be higher) for two intervals: flows went without a DESTROY, as
      // entries made before any listener do under nf_conntrack_events=2. A listing repairs it.
      const uint64_t held = tallies[w.index].listed.entries + tallies[w.index].unverified.entries;
      const uint64_t kernel = out.sample.entries;
      const bool over = out.sample.has_entries && held > kernel + 8 + kernel / 100;
      w.overcount_intervals = over ? w.overcount_intervals + 1 : 0;
      if (w.overcount_intervals >= 2) w.repair_pending = true;
      out.states_known = w.listed;
      out.counts = tallies[w.index].listed;
      out.unverified = tallies[w.index].unverified;
      out.listings = w.listings;
    }
  }
  listener_->on_report(report_, final);
}

}  // namespace ctmon
