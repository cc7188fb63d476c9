// node_monitor.h — every network namespace of a node from ONE reader thread: per namespace
// the kernel's counters (GET_STATS_CPU and GET_STATS on a request socket, once per interval),
// every event counted, and every entry's protocol and TCP state (TIME_WAIT included), at a
// cost that does not grow with the namespaces' traffic.
//
// Per namespace the thread holds two sockets (and the namespace's nf_conntrack_events sysctl,
// which a file opened inside a namespace keeps reading from anywhere), opened inside it (it
// setns()es into it, opens them and setns()es back: a socket belongs to the netns of the thread
// that made it):
//   - a request socket for the stats and the namespace's listings (dumps);
//   - an event socket. On the kernel path it carries the ct_monitor program (kernel_flows.h):
//     ONE program and ONE flow table for every namespace, which tell namespaces apart by the
//     event socket's cookie; it counts every event and keeps every flow in the kernel, so
//     nothing is queued but what the table cannot hold. Where the program cannot be loaded,
//     the classic filter of count_filter.h passes each NEW and DESTROY's 20-byte header, and
//     only counts are known. Those sockets are read through one epoll, and what the kernel
//     could not queue is counted exactly (SK_MEMINFO_DROPS) per namespace.
// A namespace is listed when added if it holds entries then, and again only when needed: when
// its flows past their deadline prove alive (see monitor.h), after loss, or when it holds more
// flows than the kernel counts; one walk of the table, from the reader's own namespace,
// verifies every namespace's at once.
// Each namespace's interval goes through its own Aggregator (the same wrap-safe per-CPU
// deltas as the single-namespace Monitor); all namespaces close on one clock and are handed
// to the listener as one report.
//
// Namespaces are added and removed by the owner (discovery runs in JS) through a request
// queue and an eventfd: add() and remove() never wait for the reader thread. A removed
// namespace's sockets are closed as soon as the thread takes the request.
//
// No Node-API. The listener is called on the reader thread and must not block.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "ctnetlink/aggregator.h"
#include "ctnetlink/kernel_flows.h"
#include "ctnetlink/monitor.h"
#include "ctnetlink/socket.h"
#include "ctnetlink/stats_reader.h"
#include "ctnetlink/table.h"
#include "ctnetlink/walk_schedule.h"
#include "ebpf/event_counter.h"

namespace ctmon {

enum class CountingMode : uint8_t {
  kAuto,    // in the kernel where possible, else the classic filter
  kKernel,  // in the kernel only: a namespace where it cannot be loaded fails to open
  kFilter,  // the classic filter only
};
enum class CountingPath : uint8_t { kKernel, kFilter };

struct NodeMonitorConfig {
  int interval_ms = 1000;
  int receive_buffer_bytes = 32 << 20;  // event sockets of the filter path
  CountingMode counting = CountingMode::kAuto;
  // Namespaces watched at once on the kernel path (the shared maps are sized for them).
  uint32_t max_namespaces = 1024;
};

// The outcome of add(): the namespace's sockets are open (ok), or why not.
struct NamespaceOpened {
  uint64_t id = 0;
  bool ok = false;
  Status error;
  CountingPath path = CountingPath::kFilter;
  std::string fallback_reason;  // why the kernel counter is not used, on the filter path
  int receive_buffer_bytes = 0;
};

// One namespace's interval in a report.
struct NamespaceInterval {
  uint64_t id = 0;
  CountingPath path = CountingPath::kFilter;
  // The kernel counter could not be read: insert/delete are unknown in this interval (not
  // lost: the next interval's reading includes them).
  bool counter_failed = false;
  // net.netfilter.nf_conntrack_events of the namespace (0: the kernel sends no events, so
  // insert/delete are unknown); -1 when unreadable.
  int64_t events_mode = -1;
  IntervalSample sample;
  // On the kernel path: the namespace's entries by protocol and TCP state, as the kernel
  // lists them (the flow table and its overflow), known once its first listing completed.
  bool states_known = false;
  TableCounts counts;
  TableCounts unverified;  // past their deadline, not checked against the kernel since
  uint64_t listings = 0;   // listings after the first
};

class NodeMonitorListener {
 public:
  virtual ~NodeMonitorListener() = default;
  // All run on the reader thread.
  virtual void on_opened(const NamespaceOpened& opened) = 0;
  virtual void on_report(const std::vector<NamespaceInterval>& namespaces, bool final) = 0;
  // id 0: the node monitor itself (its thread stops after a fatal one).
  virtual void on_error(uint64_t id, const Status& error) = 0;
};

class NodeMonitor {
 public:
  NodeMonitor(NodeMonitorConfig config, NodeMonitorListener* listener);
  ~NodeMonitor();
  NodeMonitor(const NodeMonitor&) = delete;
  NodeMonitor& operator=(const NodeMonitor&) = delete;

  // Starts the reader thread, with no namespace yet. False, with `error`, when it could not.
  bool start(Status& error);
  // Closes every namespace's partial interval (one report with final = true), closes every
  // socket and joins the thread. Returns promptly. Idempotent.
  void stop();

  // Any thread; never blocks on the reader. add() opens the namespace at `path`, checked to be
  // the one with inode `inode` (a /proc/PID path may name another namespace once PID has
  // exited), and answers through on_opened(). `id` (nonzero) names it in reports.
  void add(uint64_t id, std::string path, uint64_t inode);
  void remove(uint64_t id);

 private:
  struct Watched;
  struct Request {
    bool add = false;
    uint64_t id = 0;
    std::string path;
    uint64_t inode = 0;
  };

  void run();
  bool open_home(Status& error);
  void take_requests();
  void open_namespace(const Request& request);
  bool open_sockets(Watched& w, const Request& request, NamespaceOpened& opened);
  void close_namespace(uint64_t id);
  void drain(Watched& w, int budget_batches);
  void drain_queue(Watched& w, int budget_batches);
  void drain_all(int budget_batches);
  bool list(Watched& w);
  void verify(std::vector<KernelTally>& tallies);
  void tally(std::vector<KernelTally>& tallies);
  void close_interval(bool final);
  uint64_t now_ms() const;  // the overflow tables' clock: CLOCK_MONOTONIC milliseconds
  void wake();

  NodeMonitorConfig config_;
  NodeMonitorListener* listener_;
  std::thread thread_;
  Fd control_fd_;  // eventfd: requests queued or stop
  Fd epoll_fd_;    // the control eventfd and every filter-path event socket
  Fd home_ns_;     // the reader thread's own netns, to return to after opening sockets
  std::atomic<bool> stopping_{false};
  bool fatal_ = false;  // could not return to its own namespace: stop reading

  std::mutex requests_mu_;
  std::vector<Request> requests_;  // under requests_mu_
  std::vector<Request> taking_;    // reader thread: the batch being processed

  std::unordered_map<uint64_t, std::unique_ptr<Watched>> watched_;  // reader thread only
  BatchReceiver receiver_;                 // headers or whole messages, shared by every namespace
  StatsReader stats_;                      // one reading at a time, shared by every namespace
  std::vector<NamespaceInterval> report_;  // reused every interval
  std::vector<KernelTally> tallies_;       // reused every interval, as is:
  std::vector<uint64_t> verified_ds_;
  // The kernel path: one program and one flow table for every namespace (kernel_flows.h),
  // opened at start; closed (every namespace on the filter path) when it cannot be.
  KernelFlows flows_;
  std::string flows_unavailable_;
  std::vector<uint32_t> free_indexes_;  // of flows_'s namespace slots
  RequestSocket walker_;                // in the reader's own namespace: walks the table
  WalkSchedule walks_{WalkSchedule::kNodeShare};

  // Start-up handshake between start() and the reader thread.
  std::mutex start_mu_;
  std::condition_variable start_cv_;
  bool start_done_ = false;
  Status start_error_;
};

}  // namespace ctmon
