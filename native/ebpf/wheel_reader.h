// wheel_reader.h — user space's side of the ct_monitor event program's expiry wheel
// (ct_events.h): how many of the flows the kernel tracks have reached their deadline, per
// protocol class, from the slots of the deciseconds that have passed.
//
// The program adds +1 to slot (deadline % CT_WHEEL_SLOTS) when it sets a deadline and -1 when it
// withdraws one still in the future; it never touches a slot whose decisecond has passed
// (bar a run that read the clock just before: such slots are read again, kRecheckDs later).
// A slot's value keeps growing lap after lap, so the reader remembers what it last read of
// each and counts the difference. The kernel schedules at most CT_WHEEL_MAX_TIMEOUT_S ahead, so a
// slot must be read within kMaxLagDs of its decisecond, before the next lap can reach it.
//
// Pure: no syscalls, no clock (callers pass CLOCK_MONOTONIC deciseconds and a slot reader).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/fd.h"
#include "ebpf/ct_events.h"

namespace ctmon {

class WheelReader {
 public:
  static constexpr uint64_t kRecheckDs = 2;
  static constexpr uint64_t kMaxLagDs = CT_WHEEL_SLOTS - CT_WHEEL_MAX_TIMEOUT_S * 10 - 10;

  using ReadSlot = std::function<Status(uint32_t slot, ct_wheel_slot& out)>;

  // Nothing has expired before `now_ds`; `slots` is the wheel as it is now (or empty, for a
  // fresh wheel of zeros), `live` the flows per slot that are yet to expire.
  void start(uint64_t now_ds);
  void rebase(uint64_t now_ds, const std::vector<ct_wheel_slot>& slots,
              const std::vector<ct_wheel_slot>& live, const int64_t (&expired)[CT_TRACKED_CLASSES]);

  // Reads the slots of the deciseconds in (last - kRecheckDs, now_ds] and adds what changed in
  // them to expired(). Returns false, reading nothing, when the last call was more than
  // kMaxLagDs ago: the wheel may have lapped, and the caller must rebase().
  bool advance(uint64_t now_ds, const ReadSlot& read_slot, Status& status);

  // Per class: tracked flows whose deadline has passed.
  const int64_t (&expired() const)[CT_TRACKED_CLASSES] { return expired_; }
  uint64_t last_ds() const { return last_ds_; }

 private:
  std::vector<ct_wheel_slot> seen_;  // what was last read of each slot
  uint64_t last_ds_ = 0;             // the decisecond consumed last
  int64_t expired_[CT_TRACKED_CLASSES] = {};
};

}  // namespace ctmon
