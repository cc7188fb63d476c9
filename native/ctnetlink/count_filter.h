// count_filter.h — counting NEW and DESTROY events without eBPF: the classic BPF socket filter
// of the node monitor's event sockets, and the reader of what it lets through.
//
// The kernel runs the filter before queueing each event (do_one_broadcast -> sk_filter), and a
// classic BPF return value is the number of bytes to keep: NEW and DESTROY are cut to their
// 20-byte nlmsghdr + nfgenmsg header, which is all a count needs; anything else is dropped.
// The kernel still charges the receive buffer the skb's full truesize (~1280 bytes per event,
// measured), but each event crosses to user space as 20 bytes, read in recvmmsg
// batches. This is the fallback where the eBPF counter cannot be loaded (ebpf/event_counter.h).
//
// No Node-API, no syscalls: the program is data; classify_event_header() is pure.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ctnetlink/event_filter.h"

namespace ctmon {

// Bytes the filter keeps of each NEW or DESTROY message.
constexpr unsigned kCountedHeaderBytes = 16 + 4;  // nlmsghdr + nfgenmsg

FilterProgram count_filter();

enum class HeaderKind : uint8_t { kNew, kDestroy, kOther };

// What one datagram the filter passed is: a ctnetlink NEW (IPCTNL_MSG_CT_NEW with
// NLM_F_CREATE) or DESTROY (IPCTNL_MSG_CT_DELETE), from its header alone (the message
// itself is cut short, so nlmsg_len is not checked against `length`). kOther for anything
// else, including datagrams shorter than a header.
HeaderKind classify_event_header(const uint8_t* data, size_t length);

}  // namespace ctmon
