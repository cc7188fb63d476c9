// event_counter.cc — see event_counter.h. No Node-API.
//
// The in-kernel counter (an eBPF socket filter that counts NEW/UPDATE/DESTROY in per-CPU maps
// and returns 0) comes with the eBPF event path of issue 15; until it is merged this build
// has none, and the node monitor counts through the classic filter (count_filter.h).
#include "ctnetlink/event_counter.h"

namespace ctmon {

std::unique_ptr<EventCounter> make_kernel_event_counter(std::string& why_not) {
  why_not = "this build has no in-kernel event counter";
  return nullptr;
}

}  // namespace ctmon
