// monitor.h — one conntrack monitor: a dedicated reader thread that enters the target
// network namespace, subscribes to ctnetlink events, keeps every entry's protocol, TCP state
// and deadline (in the kernel's flow table on the eBPF path, kernel_flows.h; in user space's
// table otherwise, table.h) from a listing at start, the events and periodic listings, checks
// the entries past their deadline against the kernel before it counts them (a walk of the
// table, then a listing of those it kept), reads the kernel's stats once per interval and
// hands a finished sample to its listener.
//
// No Node-API. The listener is called on the reader thread and must not block
// (the Node binding queues the sample and wakes the JS thread).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ctnetlink/aggregator.h"
#include "ctnetlink/kernel_flows.h"
#include "ctnetlink/socket.h"
#include "ctnetlink/stats_reader.h"
#include "ctnetlink/table.h"
#include "ctnetlink/walk_schedule.h"

namespace ctmon {

struct MonitorConfig {
  std::string netns_path;  // empty: the netns of the calling process
  int interval_ms = 1000;
  int receive_buffer_bytes = 32 << 20;
  int resync_interval_ms = 60000;  // periodic re-dump; 0 disables it (loss still resyncs)
  bool ebpf_events = true;         // try the eBPF event filter first (kernel_flows.h)
};

// What the eBPF event filter did, cumulative, when it is the event path.
struct EventProgramSnapshot {
  bool active = false;
  uint64_t passed = 0;                       // messages it queued to user space
  uint64_t tracked = 0;                      // flows its table holds and counts now (in counts too)
  uint64_t unknown_layout = 0;               // messages it could not parse (passed)
  uint64_t flows_full = 0;                   // flows whose bucket was full (passed)
  uint32_t table_slots = 0;                  // the flow table's size
  uint64_t diagnostics[CT_DIAG_COUNT] = {};  // all its counters (ct_diagnostic)
};

// The tracked entries at the end of an interval.
struct TableSnapshot {
  TableCounts counts;  // what the kernel lists: deadline ahead, or verified alive
  // Entries past the deadline their last event or listing announced, not checked against the
  // kernel since (left out of counts); when the latest check (walk or listing) began.
  TableCounts unverified;
  double verified_wall_ms = -1;
  uint64_t walks = 0;          // walks of the table since start
  double last_walk_ms = -1;    // duration of the latest walk
  bool synced = false;         // the initial dump has completed
  int dump_error = 0;          // errno of the latest dump if it failed (0: it succeeded or runs)
  uint64_t resyncs = 0;        // re-dumps after the initial one
  double last_resync_ms = -1;  // duration of the latest dump (initial included), -1 before
  size_t memory_bytes = 0;
  EventProgramSnapshot event_program;
};

// Per-namespace settings read from /proc/sys/net/netfilter; -1 where unreadable.
struct NamespaceSettings {
  int64_t buckets = -1;
  int64_t events_mode = -1;          // nf_conntrack_events: 0 off, 1 on, 2 auto
  int64_t time_wait_timeout_s = -1;  // nf_conntrack_tcp_timeout_time_wait
  int64_t socket_time_wait = -1;     // TCP sockets in TIME_WAIT (tw in net/sockstat)
};

// Static facts about a running monitor, known once start() has returned.
struct MonitorInfo {
  int receive_buffer_bytes = 0;
  bool receive_buffer_forced = false;
  // How events are read: the eBPF filter that counts them in the kernel ("ebpf"), or the
  // classic filter with every count made from received events ("netlink"), and why not eBPF.
  bool ebpf = false;
  std::string ebpf_unavailable;  // one line; empty on the eBPF path
};

class MonitorListener {
 public:
  virtual ~MonitorListener() = default;
  // Both run on the reader thread.
  virtual void on_sample(const IntervalSample& sample, const TableSnapshot& table,
                         const NamespaceSettings& settings) = 0;
  virtual void on_error(const Status& error) = 0;
};

class Monitor {
 public:
  Monitor(MonitorConfig config, MonitorListener* listener);
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Starts the reader thread and waits until it has entered the netns and opened its
  // sockets. Returns false and fills `error` when that failed (the thread has exited, or,
  // if the namespace file could not even be opened within kOpenNamespaceTimeoutMs, has
  // been abandoned: it exits without touching this object when the open returns).
  bool start(Status& error);
  // Closes the partial interval (delivered with final = true) and joins the thread.
  // Returns promptly: the thread waits in poll() on a stop eventfd. Idempotent.
  void stop();
  MonitorInfo info() const { return info_; }

 private:
  struct Startup;
  static void thread_main(Monitor* self, std::shared_ptr<Startup> startup, std::string netns_path);
  void run(Fd netns, Startup& startup);
  bool open_in_namespace(Fd netns, Status& error);
  bool drain_events(int budget_batches);
  void observe_drops();
  KernelReading read_kernel();
  bool resync();
  bool may_resync(int64_t now) const;
  void tally(TableTally& out);     // both tables, at the latest verification
  void verify(TableTally& tally);  // walk the table when entries await it
  void close_interval(bool final);
  uint64_t now_ms() const;
  void report(const Status& error);

  MonitorConfig config_;
  MonitorListener* listener_;
  MonitorInfo info_;
  std::thread thread_;
  Fd stop_fd_;
  Fd event_fd_;
  RequestSocket request_socket_;  // stats every interval, dumps at start and on resync
  BatchReceiver receiver_;
  Aggregator aggregator_;
  ConntrackTable table_;
  KernelFlows kernel_flows_;  // open on the eBPF path
  TableSnapshot table_state_;
  int64_t epoch_ns_ = 0;  // monotonic time the table's deadlines count from
  int64_t next_resync_ns_ = 0;
  int overcount_intervals_ = 0;  // consecutive intervals tracking more than the kernel counts
  bool repair_pending_ = false;  // lost events or overcount seen; resync when spacing allows
  int64_t last_resync_end_ns_ = 0;
  int64_t last_dump_ns_ = 0;  // duration of the latest dump
  WalkSchedule walks_{WalkSchedule::kMonitorShare};
  ct_counters kernel_counters_{};      // the eBPF filter's, as of the latest read
  uint32_t kernel_listed_ = 0;         // flows its table counted at the latest tally
  std::vector<uint64_t> verified_ds_;  // tally()'s, kept so that it allocates once
  std::vector<KernelTally> kernel_tallies_;
  int64_t verified_ns_ = 0;       // when the latest walk or listing began
  int64_t verified_wall_ms_ = 0;  // the same, CLOCK_REALTIME
  std::atomic<bool> stopping_{false};
  StatsReader stats_;           // GET_STATS_CPU + GET_STATS every interval
  Status stats_status_;         // outcome of the last read_kernel()
  bool stats_failing_ = false;  // report a failing stats request once, not every interval
  Status flows_status_;         // outcome of the last read of the program's counters
  bool flows_failing_ = false;

  // Start-up handshake between start() and the reader thread, shared so that a thread that
  // start() gave up on can still read it after this Monitor is gone.
  struct Startup {
    std::mutex mu;
    std::condition_variable cv;
    bool opened = false;     // the namespace file is open (or there is none to open)
    bool done = false;       // the sockets are open, or starting failed
    bool abandoned = false;  // start() stopped waiting before `opened`
    Status error;
  };
};

}  // namespace ctmon
