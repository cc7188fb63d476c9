// monitor.cc — see monitor.h. No Node-API.
#include "ctnetlink/monitor.h"

#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "base/clock.h"
#include "base/fault_injection.h"
#include "base/netns.h"
#include "base/proc_text.h"
#include "base/read_file.h"
#include "ctnetlink/event_filter.h"

namespace ctmon {
namespace {

constexpr size_t kBatchSlots = 64;             // datagrams per recvmmsg
constexpr size_t kSlotBytes = 8192;            // an event is < 400 bytes
constexpr int kRequestTimeoutMs = 2000;        // a stats request never blocks longer
constexpr int kOpenNamespaceTimeoutMs = 2000;  // start() waits no longer for the namespace file
constexpr int kBatchesPerWakeup = 64;          // ~4k events, then look at the clock again
// After the first event of a quiet spell, wait this long before reading: under load the
// socket fills meanwhile and each recvmmsg moves 64 events instead of one or two, which is
// what makes the per-event cost small. 150k events/s x 10 ms x 1280 B of buffer charge is
// 1.9 MB, far below the default 32 MiB buffer; samples are per interval, so nothing waits.
constexpr int kCoalesceMs = 10;
constexpr int kBatchesDuringDump = 8;  // events read between two dump datagrams
constexpr int kBatchesAtClose = 1024;  // ~65k events queued before an interval closes
// UPDATE carries TCP state changes; event_filter() drops the UPDATEs nothing here needs.
constexpr unsigned kEventGroups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE,
                                     NFNLGRP_CONNTRACK_DESTROY};

// An integer from /proc/sys as seen from this thread's netns (sysctls under net/ are per
// netns and resolved for the reading task), or -1 when unreadable.
int64_t read_sysctl(const char* path) {
  char text[32];
  return read_small_file(path, text) ? parse_sysctl_integer(text) : -1;
}

// `tw` of this thread's net/sockstat (thread-self: /proc/self/net would show the main
// thread's namespace), or -1.
int64_t read_socket_time_wait() {
  char text[1024];
  return read_small_file("/proc/thread-self/net/sockstat", text) ? parse_sockstat_time_wait(text)
                                                                 : -1;
}

NamespaceSettings read_settings() {
  NamespaceSettings s;
  s.buckets = read_sysctl("/proc/sys/net/netfilter/nf_conntrack_buckets");
  s.events_mode = read_sysctl("/proc/sys/net/netfilter/nf_conntrack_events");
  s.time_wait_timeout_s = read_sysctl("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait");
  s.socket_time_wait = read_socket_time_wait();
  return s;
}

// A verifier's reason runs over several lines; a sample field takes one: the first line and
// the one that says why (the last, bar the verifier's closing statistics).
std::string one_line(const std::string& text) {
  std::vector<std::string> lines;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  while (lines.size() > 1 && lines.back().rfind("processed ", 0) == 0) lines.pop_back();
  if (lines.empty()) return text;
  std::string first = lines.front();
  while (!first.empty() && (first.back() == ':' || first.back() == ' ')) first.pop_back();
  return lines.size() == 1 ? first : first + ": " + lines.back();
}

// The coalescing wait must not overflow the buffer it relies on: at ~200k events/s the kernel
// charges ~1280 bytes per queued event (~256 MB/s); the wait may fill a quarter of the buffer.
// The default 32 MiB (64 MiB effective) gets the full kCoalesceMs; a 64 KiB request (128 KiB
// effective) gets none: waiting 10 ms with such a buffer lost most events at 100k flows/s.
int coalesce_window_ms(int effective_buffer_bytes) {
  const int64_t ms = static_cast<int64_t>(effective_buffer_bytes) / 4 / (200000LL * 1280 / 1000);
  return static_cast<int>(std::min<int64_t>(kCoalesceMs, ms));
}

uint64_t random_seed() {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = static_cast<uint64_t>(mono_ns());
  return seed;
}

}  // namespace

Monitor::Monitor(MonitorConfig config, MonitorListener* listener)
    : config_(std::move(config)),
      listener_(listener),
      receiver_(kBatchSlots, kSlotBytes),
      table_(random_seed()) {}

Monitor::~Monitor() { stop(); }

bool Monitor::start(Status& error) {
  stop_fd_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (stop_fd_.get() < 0) {
    error = Status{errno, "eventfd", "create the stop signal"};
    return false;
  }
  auto startup = std::make_shared<Startup>();
  try {
    thread_ = std::thread(&Monitor::thread_main, this, startup, config_.netns_path);
  } catch (const std::system_error& e) {
    error = Status{e.code().value(), "pthread_create", "start the reader thread"};
    return false;
  }
  std::unique_lock<std::mutex> lock(startup->mu);
  // open_network_namespace() never waits on the file, but a path on a hung filesystem (NFS,
  // FUSE) can still hold open() or stat(): that wait is bounded. The steps after it are each
  // bounded already (setns, sockets, a stats request with a receive timeout).
  const auto deadline = std::chrono::milliseconds(kOpenNamespaceTimeoutMs);
  if (!startup->cv.wait_for(lock, deadline, [&] { return startup->opened; })) {
    startup->abandoned = true;
    thread_.detach();
    const std::string context = "open network namespace " + config_.netns_path;
    error = Status{
        ETIMEDOUT, "open", context,
        context + ": no answer within " + std::to_string(kOpenNamespaceTimeoutMs / 1000) + " s"};
    return false;
  }
  startup->cv.wait(lock, [&] { return startup->done; });
  if (startup->error.code == 0) return true;
  error = startup->error;
  lock.unlock();
  thread_.join();
  return false;
}

void Monitor::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true);  // a dump in progress gives up at its next receive
  const uint64_t one = 1;
  while (::write(stop_fd_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
  thread_.join();
}

// The reader thread's entry. Until the namespace file is open it touches only what it was
// given (start() may give up on it meanwhile and this Monitor be destroyed); from then on it
// runs the monitor.
void Monitor::thread_main(Monitor* self, std::shared_ptr<Startup> startup, std::string netns_path) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals belong to the JS thread
  pthread_setname_np(pthread_self(), "ctmon-reader");

  Fd netns;
  Status error;
  if (!netns_path.empty()) {
    const int delay_ms = fault_injection().open_namespace_delay_ms.load(std::memory_order_relaxed);
    if (delay_ms > 0) ::usleep(static_cast<useconds_t>(delay_ms) * 1000);  // a hung filesystem
    const char* what = nullptr;
    const Status st = open_network_namespace(netns_path.c_str(), netns, &what);
    if (!st.ok()) {
      error = Status{st.code, st.syscall, "open network namespace " + netns_path,
                     what ? netns_path + " is " + what + ", not a network namespace" : ""};
    }
  }
  {
    std::lock_guard<std::mutex> lock(startup->mu);
    if (startup->abandoned) return;  // start() returned long ago: `self` may be gone
    startup->opened = true;
    if (error.code != 0) {
      startup->error = error;
      startup->done = true;
    }
  }
  startup->cv.notify_one();
  if (error.code == 0) self->run(std::move(netns), *startup);
}

// Runs on the reader thread: setns() changes only this thread's namespace, so the sockets
// it opens belong to the target netns while the rest of the process stays where it was.
bool Monitor::open_in_namespace(Fd netns, Status& error) {
  if (netns.get() >= 0 && ::setns(netns.get(), CLONE_NEWNET) != 0) {
    error = Status{errno, "setns", "enter network namespace " + config_.netns_path};
    return false;
  }
  // The eBPF event filter if the kernel loads it, else the classic one (socket.h).
  if (config_.ebpf_events) {
    const Status loaded = kernel_flows_.open(1);
    if (!loaded.ok()) info_.ebpf_unavailable = one_line(loaded.text());
  } else {
    info_.ebpf_unavailable = "the eBPF event filter is turned off";
  }
  EventSocketInfo socket_info;
  Status st;
  if (kernel_flows_.is_open()) {
    // No group is joined until the program is on the socket and knows its namespace.
    st = open_event_socket(EventSocketConfig{nullptr, 0, config_.receive_buffer_bytes, nullptr, 0},
                           event_fd_, socket_info);
    if (st.ok()) st = kernel_flows_.add(0, event_fd_.get());
    if (st.ok()) st = kernel_flows_.attach(event_fd_.get());
    if (st.ok()) st = join_event_groups(event_fd_.get(), kEventGroups, std::size(kEventGroups));
    if (!st.ok()) {
      // The classic filter works where the eBPF one could not be put on the socket.
      info_.ebpf_unavailable = one_line(st.text());
      kernel_flows_.close();
      event_fd_.reset();
    }
  }
  if (!kernel_flows_.is_open()) {
    const FilterProgram filter = event_filter();
    st = open_event_socket(
        EventSocketConfig{kEventGroups, std::size(kEventGroups), config_.receive_buffer_bytes,
                          filter.instructions, filter.length},
        event_fd_, socket_info);
  }
  if (!st.ok()) {
    error = Status{st.code, st.syscall, "subscribe to conntrack events"};
    return false;
  }
  info_.ebpf = kernel_flows_.is_open();
  st = request_socket_.open(kRequestTimeoutMs);
  if (!st.ok()) {
    error = Status{st.code, st.syscall, "open the conntrack request socket"};
    return false;
  }
  info_.receive_buffer_bytes = socket_info.receive_buffer_bytes;
  info_.receive_buffer_forced = socket_info.forced;

  const KernelReading baseline = read_kernel();
  if (!stats_status_.ok()) {
    error = Status{stats_status_.code, stats_status_.syscall, "read conntrack statistics"};
    return false;
  }
  epoch_ns_ = mono_ns();
  aggregator_.start(epoch_ns_, baseline, info_.ebpf);
  return true;
}

void Monitor::run(Fd netns, Startup& startup) {
  Status error;
  const bool ok = open_in_namespace(std::move(netns), error);
  {
    std::lock_guard<std::mutex> lock(startup.mu);
    startup.error = ok ? Status{} : error;
    startup.done = true;
  }
  startup.cv.notify_one();  // start() returns: `startup` is not touched again
  if (!ok) return;

  // The initial dump runs after start() has returned: it costs at least ~25 ms of kernel
  // time on a default host (every bucket of the global hash is visited), more with entries.
  // Events keep being read between its datagrams (see resync()).
  resync();

  const int coalesce_ms = coalesce_window_ms(info_.receive_buffer_bytes);
  IntervalClock intervals(static_cast<int64_t>(config_.interval_ms) * 1000000, mono_ns());
  pollfd fds[2] = {{stop_fd_.get(), POLLIN, 0}, {event_fd_.get(), POLLIN, 0}};
  bool caught_up = true;
  for (;;) {
    int64_t now = mono_ns();
    if (intervals.due(now)) {
      close_interval(false);
      intervals.advance(mono_ns());
      continue;
    }
    const int64_t next_close = intervals.next_ns();
    const int timeout_ms = intervals.timeout_ms(now);
    if (::poll(fds, 2, timeout_ms) < 0) {
      if (errno == EINTR) continue;
      report(Status{errno, "poll", "wait for conntrack events"});
      return;
    }
    if (fds[0].revents != 0) {
      close_interval(true);
      return;
    }
    if (fds[1].revents & POLLERR) {
      int pending = 0;
      socklen_t len = sizeof pending;
      ::getsockopt(event_fd_.get(), SOL_SOCKET, SO_ERROR, &pending, &len);
      if (pending != 0) report(Status{pending, "recvmmsg", "read conntrack events"});
    }
    if (fds[1].revents & POLLIN) {
      // Coalesce only after catching up: when the last drain left events behind, read on.
      const int64_t left_ms = (next_close - mono_ns()) / 1000000;
      if (caught_up && coalesce_ms > 0 && left_ms > 0 &&
          ::poll(fds, 1, static_cast<int>(std::min<int64_t>(coalesce_ms, left_ms))) > 0) {
        close_interval(true);  // stop was requested while waiting
        return;
      }
      caught_up = drain_events(kBatchesPerWakeup);
    }
  }
}

// Hot path: decode every queued event and count it. No allocation, no locks.
// Returns true when the socket was emptied, false when the budget ran out first.
bool Monitor::drain_events(int budget_batches) {
  for (int batch = 0; batch < budget_batches; ++batch) {
    const int n = receiver_.receive(event_fd_.get());
    if (n < 0) {
      report(Status{-n, "recvmmsg", "read conntrack events"});
      return true;
    }
    const uint64_t now = now_ms();  // one clock read per batch, not per event
    for (int i = 0; i < n; ++i) {
      if (receiver_.truncated(i)) {
        aggregator_.count_malformed();
        continue;
      }
      MessageWalker walker(receiver_.data(i), receiver_.length(i));
      Message msg;
      Conntrack ct;
      while (walker.next(msg)) {
        const DecodeStatus st = decode_conntrack(msg, ct);
        if (st == DecodeStatus::kOk) {
          aggregator_.count_event(ct.kind);
          table_.apply_event(ct, now);
        } else if (st == DecodeStatus::kMalformed)
          aggregator_.count_malformed();
      }
      if (walker.malformed()) aggregator_.count_malformed();
    }
    if (static_cast<size_t>(n) < kBatchSlots) {  // the queue is empty
      observe_drops();
      return true;
    }
  }
  observe_drops();
  return false;
}

// Loss is booked at each interval's close; a reading after each drain also says when it
// began (the samples' reasons give that time), at the cost of one getsockopt per drain.
void Monitor::observe_drops() {
  uint32_t drops = 0;
  if (read_socket_drops(event_fd_.get(), drops).ok())
    aggregator_.observe_socket_drops(wall_ms(), drops);
}

// The kernel's counters for this interval (stats_reader.h), and on the eBPF path the
// program's counts of the events; a failed request leaves its part null and its status in
// stats_status_ (flows_status_).
KernelReading Monitor::read_kernel() {
  KernelReading reading = stats_.read(request_socket_, event_fd_.get());
  stats_status_ = stats_.status();
  if (info_.ebpf) {
    flows_status_ = kernel_flows_.read_counters(0, kernel_counters_);
    if (!flows_status_.ok() && !flows_failing_)
      report(flows_status_.in("read the eBPF event filter's counters"));
    flows_failing_ = !flows_status_.ok();
    reading.event_counts_ok = flows_status_.ok();
    reading.kernel_inserts = kind_total(kernel_counters_, CT_KIND_NEW);
    reading.kernel_deletes = kind_total(kernel_counters_, CT_KIND_DESTROY);
    reading.kernel_updates = kind_total(kernel_counters_, CT_KIND_UPDATE);
  }
  return reading;
}

// A listing replaces what is known of every entry: on the eBPF path each listed entry goes
// into the kernel's flow table (kernel_flows.h) unless user space's table holds it or the
// kernel's cannot; entries no longer listed leave both (their DESTROY was lost, or never sent
// under nf_conntrack_events=2). Events read meanwhile win over the listing's view (table.h,
// ct_events.h: CT_META_TOUCHED). Events keep being read between the dump's datagrams: a dump of
// a large table takes the kernel most of a second, and under load the event socket would
// overflow meanwhile. Returns false when the dump failed or was cancelled by stop(); the old
// state stays.
bool Monitor::resync() {
  drain_events(kBatchesAtClose);  // apply what was queued before the dump began
  const int64_t started = mono_ns();
  if (info_.ebpf) {
    // Without the program marking what events change, the listing would undo them: no listing.
    const Status begun = kernel_flows_.begin_listing(0);
    if (!begun.ok()) {
      report(begun.in("mark the listing for the eBPF filter"));
      return false;
    }
  }
  table_.begin_dump();
  const uint64_t now = now_ms();
  const Status st = request_socket_.request(
      ctnl_type(IPCTNL_MSG_CT_GET), NLM_F_DUMP, AF_UNSPEC,
      [&](const Message& msg) {
        Conntrack ct;
        if (decode_conntrack(msg, ct) != DecodeStatus::kOk) return;
        if (info_.ebpf && !table_.contains(table_.key(ct)) &&
            kernel_flows_.entry(0, ct, static_cast<uint64_t>(started)))
          return;
        table_.apply_dump_entry(ct, now);
      },
      &stopping_, [this] { drain_events(kBatchesDuringDump); });
  last_resync_end_ns_ = mono_ns();
  last_dump_ns_ = last_resync_end_ns_ - started;
  next_resync_ns_ =
      last_resync_end_ns_ + static_cast<int64_t>(config_.resync_interval_ms) * 1000000;
  if (!st.ok()) {
    table_.abort_dump();
    if (info_.ebpf) kernel_flows_.abort_listing(0);
    if (st.code != ECANCELED) {
      table_state_.dump_error = st.code;
      report(Status{st.code, st.syscall, "dump the conntrack table"});
    }
    return false;
  }
  drain_events(kBatchesAtClose);  // events queued during the dump belong to it (see table.h)
  table_.end_dump();
  if (info_.ebpf) kernel_flows_.end_listing(0);
  // Every entry the kernel listed now has a deadline it gave, from the listing's start.
  verified_ns_ = std::max(verified_ns_, started);
  verified_wall_ms_ = wall_ms() - (last_resync_end_ns_ - started) / 1000000;
  repair_pending_ = false;
  if (table_state_.synced) ++table_state_.resyncs;
  table_state_.synced = true;
  table_state_.dump_error = 0;
  table_state_.last_resync_ms = static_cast<double>(last_dump_ns_) / 1e6;
  overcount_intervals_ = 0;
  return true;
}

// A dump costs the kernel a walk of the whole global hash, so unscheduled dumps are spaced
// by at least ten times the last dump's duration: they can take at most a tenth of a CPU.
bool Monitor::may_resync(int64_t now) const {
  return now - last_resync_end_ns_ >= last_dump_ns_ * 10;
}

void Monitor::tally(TableTally& out) {
  out = TableTally{};
  const int64_t now = mono_ns();
  const int64_t verified =
      WalkSchedule::vouched(verified_ns_, now, static_cast<int64_t>(config_.interval_ms) * 1000000);
  table_.tally(static_cast<uint64_t>(now - epoch_ns_) / 1000000,
               static_cast<uint64_t>(std::max<int64_t>(0, verified - epoch_ns_)) / 1000000, out);
  if (info_.ebpf) {
    verified_ds_.assign(1, static_cast<uint64_t>(verified) / CT_DECISECOND_NS);
    kernel_flows_.tally(static_cast<uint64_t>(now) / CT_DECISECOND_NS, verified_ds_,
                        kernel_tallies_);
    const KernelTally& k = kernel_tallies_[0];
    out.listed.add(k.listed);
    out.unverified.add(k.unverified);
    out.survivors += k.survivors;
    kernel_listed_ = k.listed.entries;
  }
}

// Entries past the deadline their last event or listing announced are either expired and not
// yet reaped (the kernel's garbage collector comes 1 to 60 s late), or alive, refreshed by
// packets that send no event. A walk of the table tells which: it makes the kernel kill every
// expired entry and send its DESTROY (on the eBPF path the program frees the flow then and
// there; otherwise the DESTROY is read below) before it returns; what is still held after it is
// alive. The survivors are counted; a listing gives them the deadline the kernel holds, soon.
void Monitor::verify(TableTally& t) {
  const int64_t now = mono_ns();
  if (t.unverified.entries == 0 || !walks_.may_walk(now, t.unverified.entries)) return;
  const int64_t cpu = thread_cpu_ns();
  const Status st = request_socket_.evict_expired();
  const int64_t end = mono_ns();
  const int64_t walk_cpu = thread_cpu_ns() - cpu;
  if (!st.ok()) {
    walks_.walked(now, end, walk_cpu);
    report(st);
    return;
  }
  // The walk's DESTROYs must all be read (on the classic filter) before what is still held
  // counts as alive; if more are queued than one close reads, the walk proves nothing yet.
  const uint32_t waiting = t.unverified.entries;
  if (!drain_events(kBatchesAtClose)) {
    walks_.walked(now, end, walk_cpu);
    return;
  }
  verified_ns_ = std::max(verified_ns_, now);
  verified_wall_ms_ = wall_ms() - (mono_ns() - now) / 1000000;
  tally(t);
  // What was unverified is now either a survivor or gone: killed by the walk.
  walks_.walked(now, end, walk_cpu, waiting > t.survivors ? waiting - t.survivors : 0);
  if (t.survivors > 0) repair_pending_ = true;
}

void Monitor::close_interval(bool final) {
  drain_events(kBatchesAtClose);
  const KernelReading reading = read_kernel();
  // Report the first failure of a streak; the samples themselves say which fields are null.
  if (!stats_status_.ok() && !stats_failing_)
    report(Status{stats_status_.code, stats_status_.syscall, "read conntrack statistics"});
  stats_failing_ = !stats_status_.ok();
  IntervalSample sample = aggregator_.close(mono_ns(), wall_ms(), reading, final);
  sample.stats_error = stats_status_.code;
  TableTally counted;
  tally(counted);
  if (!final && !stopping_.load()) verify(counted);

  // When to re-dump, besides the period:
  // - survivors of a walk: entries alive past their deadline, whose new deadline a listing
  //   gives (until then they count as the walk found them);
  // - lost events: the tracked state may be wrong (spaced by 10 dump durations, so an event
  //   storm on a large table cannot turn into back-to-back dumps);
  // - tracking more entries than the kernel counts for two intervals (its count includes
  //   expired entries not yet reaped, so it can only be higher): entries were deleted without
  //   a DESTROY, as under nf_conntrack_events=2; the tolerance absorbs events racing the read.
  const int64_t now = mono_ns();
  const uint64_t held = counted.listed.entries + counted.unverified.entries;
  const bool overcount = sample.has_entries && held > sample.entries + 8 + sample.entries / 100;
  overcount_intervals_ = overcount ? overcount_intervals_ + 1 : 0;
  // A repair that must wait for its spacing is remembered, not forgotten.
  if (sample.events_lost > 0 || overcount_intervals_ >= 2) repair_pending_ = true;
  const bool periodic = config_.resync_interval_ms > 0 && now >= next_resync_ns_;
  const bool repair = repair_pending_ && may_resync(now);
  if (!final && !stopping_.load() && (periodic || repair) && resync()) tally(counted);
  table_state_.counts = counted.listed;
  table_state_.unverified = counted.unverified;
  table_state_.verified_wall_ms = verified_ns_ > 0 ? static_cast<double>(verified_wall_ms_) : -1;
  table_state_.walks = walks_.walks();
  table_state_.last_walk_ms =
      walks_.walks() > 0 ? static_cast<double>(walks_.last_duration_ns()) / 1e6 : -1;
  table_state_.memory_bytes = table_.memory_bytes();
  if (info_.ebpf) {
    const ct_counters& k = kernel_counters_;
    EventProgramSnapshot& e = table_state_.event_program;
    e.active = true;
    e.passed = k.diagnostics[CT_DIAG_PASSED];
    e.tracked = kernel_listed_;
    e.unknown_layout = k.diagnostics[CT_DIAG_UNKNOWN_LAYOUT];
    e.flows_full = k.diagnostics[CT_DIAG_FLOWS_FULL];
    e.table_slots = kernel_flows_.flow_slots();
    std::copy(std::begin(k.diagnostics), std::end(k.diagnostics), std::begin(e.diagnostics));
  }
  listener_->on_sample(sample, table_state_, read_settings());
}

uint64_t Monitor::now_ms() const { return static_cast<uint64_t>(mono_ns() - epoch_ns_) / 1000000; }

void Monitor::report(const Status& error) { listener_->on_error(error); }

}  // namespace ctmon
