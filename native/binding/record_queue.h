// record_queue.h — how a reader thread's records reach JS without ever waiting on it: the
// thread pushes into a bounded queue and schedules one thread-safe-function call only when
// none is pending; the JS thread takes everything queued by then. If JS stalls for kMaxQueued
// records, further ones are dropped and counted (the bindings report the count).
// Binding files only: push() on the reader thread, the rest on the JS thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace ctmon_binding {

template <typename Record>
class RecordQueue {
 public:
  static constexpr size_t kMaxQueued = 1024;

  // Reader thread. True when the caller must schedule the JS call (none is pending).
  bool push(Record&& r) {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      ++dropped_;
      return false;
    }
    queue_.push_back(std::move(r));
    if (notify_pending_) return false;
    notify_pending_ = true;
    return true;
  }

  // JS thread, in the scheduled call. False (and no call pending any more) when empty.
  bool has_records() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!queue_.empty()) return true;
    notify_pending_ = false;
    return false;
  }

  // JS thread. Everything queued, and the records dropped since the start.
  std::vector<Record> take(uint64_t& dropped) {
    std::vector<Record> records;
    std::lock_guard<std::mutex> lock(mu_);
    records.swap(queue_);
    notify_pending_ = false;
    dropped = dropped_;
    return records;
  }

 private:
  std::mutex mu_;
  std::vector<Record> queue_;
  uint64_t dropped_ = 0;
  bool notify_pending_ = false;
};

}  // namespace ctmon_binding
