// event_filter.h — the classic BPF socket filter for the event socket.
//
// The kernel runs it before queueing each event (do_one_broadcast -> sk_filter), so events
// it rejects cost no receive-buffer space and no wake-up. It keeps what the monitor needs:
//   - every NEW and DESTROY;
//   - UPDATEs carrying CTA_PROTOINFO (TCP state changes);
//   - other non-TCP UPDATEs only once the entry is ASSURED (a UDP stream's timeout grows
//     from 30 s to 120 s then).
// It drops TCP UPDATEs without a state change and the SEEN_REPLY UPDATE of every UDP and
// ICMP request/response flow, a third of a DNS server's events. No Node-API.
#pragma once

#include <linux/filter.h>

#include <cstddef>

namespace ctmon {

struct FilterProgram {
  const sock_filter* instructions;
  size_t length;
};

FilterProgram event_filter();

}  // namespace ctmon
