// wheel_reader.cc — see wheel_reader.h. No syscalls.
#include "ebpf/wheel_reader.h"

namespace ctmon {

void WheelReader::start(uint64_t now_ds) {
  seen_.assign(CT_WHEEL_SLOTS, ct_wheel_slot{});
  last_ds_ = now_ds;
  for (int64_t& e : expired_) e = 0;
}

void WheelReader::rebase(uint64_t now_ds, const std::vector<ct_wheel_slot>& slots,
                         const std::vector<ct_wheel_slot>& live,
                         const int64_t (&expired)[CT_TRACKED_CLASSES]) {
  // What is in a slot now, less what is yet to expire there, has been counted.
  for (uint32_t s = 0; s < CT_WHEEL_SLOTS; ++s)
    for (uint32_t c = 0; c < CT_TRACKED_CLASSES; ++c)
      seen_[s].flows[c] = static_cast<int32_t>(static_cast<uint32_t>(slots[s].flows[c]) -
                                               static_cast<uint32_t>(live[s].flows[c]));
  last_ds_ = now_ds;
  for (uint32_t c = 0; c < CT_TRACKED_CLASSES; ++c) expired_[c] = expired[c];
}

bool WheelReader::advance(uint64_t now_ds, const ReadSlot& read_slot, Status& status) {
  status = Status{};
  if (now_ds < last_ds_) return true;  // the clock is monotonic; nothing to do
  if (now_ds - last_ds_ > kMaxLagDs) return false;
  const uint64_t first = last_ds_ >= kRecheckDs ? last_ds_ - kRecheckDs + 1 : 0;
  for (uint64_t ds = first; ds <= now_ds; ++ds) {
    const uint32_t slot = static_cast<uint32_t>(ds % CT_WHEEL_SLOTS);
    ct_wheel_slot value;
    status = read_slot(slot, value);
    if (!status.ok()) return true;  // read again from here next time
    for (uint32_t c = 0; c < CT_TRACKED_CLASSES; ++c) {
      // 32-bit differences: a slot's value may wrap after 2^31 flows.
      expired_[c] += static_cast<int32_t>(static_cast<uint32_t>(value.flows[c]) -
                                          static_cast<uint32_t>(seen_[slot].flows[c]));
    }
    seen_[slot] = value;
    last_ds_ = ds;
  }
  return true;
}

}  // namespace ctmon
