// snapshot_dump.h — one snapshot of a network namespace's table, on a thread of its own.
//
// The thread enters the namespace (setns changes only the calling thread, and this thread
// ends with the snapshot: no pool thread is ever left in a foreign namespace), opens a
// RequestSocket, sends one IPCTNL_MSG_CT_GET dump (NLM_F_DUMP, AF_UNSPEC: both families) and
// feeds every reply to a SnapshotGrouper (snapshot.h) while the dump is read: each datagram's
// entries are decoded and grouped before the next receive, so nothing of the table is kept.
//
// No Node-API. Bounded in time: each receive waits at most receive_timeout_ms (SO_RCVTIMEO),
// the whole dump at most deadline_ms, and cancel() stops it at the next datagram.
// Kernel: any with ctnetlink. The dump walks every bucket of the global hash under its lock,
// so it costs the kernel the same whatever the namespace holds (~0.7 s of system time for a
// 262,144-entry table on the reference VM): take snapshots rarely.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "ctnetlink/monitor.h"  // Status
#include "ctnetlink/snapshot.h"

namespace ctmon {

struct SnapshotConfig {
  std::string netns_path;  // empty: the namespace of the process
  size_t limit = 10;       // keys per group
  int receive_timeout_ms = 2000;
  int deadline_ms = 30000;
};

// What the snapshot cost its thread (for benchmarks and tests).
struct SnapshotCost {
  double wall_ms = 0;
  double user_ms = 0;    // the thread's user CPU: decoding and grouping
  double system_ms = 0;  // the thread's system CPU: the kernel walking its hash, filling replies
  double decode_ms = 0;  // thread CPU spent decoding replies
  double group_ms = 0;   // thread CPU spent grouping them, top-N included
  uint64_t datagrams = 0;
  uint64_t messages = 0;
  uint64_t malformed = 0;  // replies that could not be decoded (skipped)
  size_t group_bytes = 0;  // the grouper's maps at the end (address space; see snapshot.h)
};

struct SnapshotOutcome {
  bool ok = false;
  TopReport report;
  SnapshotCost cost;
  Status error;
  int64_t end_wall_ms = 0;  // CLOCK_REALTIME when the dump ended
};

class SnapshotRunner {
 public:
  explicit SnapshotRunner(SnapshotConfig config) : config_(std::move(config)) {}
  ~SnapshotRunner();  // cancels and joins
  SnapshotRunner(const SnapshotRunner&) = delete;
  SnapshotRunner& operator=(const SnapshotRunner&) = delete;

  // Starts the thread; `done` runs on it once outcome() is final. Returns false (and fills
  // `error`) when no thread could be started.
  bool start(std::function<void()> done, Status& error);
  void cancel() { cancelled_.store(true); }  // any thread
  void join();                               // prompt once cancelled
  const SnapshotOutcome& outcome() const { return outcome_; }

 private:
  void run();
  bool dump();  // enters the namespace, dumps and groups into outcome_

  SnapshotConfig config_;
  std::thread thread_;
  std::function<void()> done_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> stop_{false};  // cancelled, or past the deadline
  bool timed_out_ = false;
  SnapshotOutcome outcome_;
};

}  // namespace ctmon
