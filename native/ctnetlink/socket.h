// socket.h — NETLINK_NETFILTER sockets: the event subscription and the request/reply socket
// used for stats and table dumps.
//
// No Node-API. Every call returns a Status (errno + syscall name) and never throws.
// The socket belongs to the network namespace of the thread that creates it.
// Deliberately absent: NETLINK_BROADCAST_ERROR. It makes the kernel keep conntracks on a
// dying list until this reader drains them, so a slow monitor could fill the table.
#pragma once

#include <linux/filter.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/fd.h"
#include "ctnetlink/decoder.h"

namespace ctmon {

// Event socket: joined to ctnetlink multicast groups, non-blocking, NETLINK_NO_ENOBUFS so
// that an overflow drops only the events that did not fit (counted in SK_MEMINFO_DROPS)
// instead of latching the socket into dropping everything until it is drained.
struct EventSocketConfig {
  const unsigned* groups;  // NFNLGRP_CONNTRACK_* values; none: join later (join_event_groups)
  size_t group_count;
  int receive_buffer_bytes;   // requested; SO_RCVBUFFORCE, else SO_RCVBUF
  const sock_filter* filter;  // classic BPF program run before queueing, or nullptr
  size_t filter_length;
  int bpf_program_fd = -1;  // an eBPF socket filter to attach instead (SO_ATTACH_BPF), or -1
};
struct EventSocketInfo {
  int receive_buffer_bytes = 0;  // as the kernel reports it (it doubles the request)
  bool forced = false;           // SO_RCVBUFFORCE was allowed
};
Status open_event_socket(const EventSocketConfig& config, Fd& out, EventSocketInfo& info);

// Joins ctnetlink event groups. Separate from open_event_socket for sockets that get their
// program some other way (an eBPF counter) before any event may be queued. Joining needs
// CAP_NET_ADMIN: EPERM here is the permission check.
Status join_event_groups(int fd, const unsigned* groups, size_t group_count);

// nlmsg_type of a ctnetlink request: the conntrack subsystem (or the one a fault test
// injects) and IPCTNL_MSG_CT_*.
uint16_t ctnl_type(uint8_t msg);

// Events the kernel dropped because the receive buffer was full (SK_MEMINFO_DROPS, u32).
Status read_socket_drops(int fd, uint32_t& drops);

// Non-blocking recvmmsg into buffers allocated once. Each datagram holds one event.
class BatchReceiver {
 public:
  BatchReceiver(size_t slots, size_t slot_bytes);
  // Returns the number of datagrams read (0 when none is waiting), or -errno.
  int receive(int fd);
  const uint8_t* data(size_t i) const { return buffers_.data() + i * slot_bytes_; }
  size_t length(size_t i) const { return headers_[i].msg_len; }
  bool truncated(size_t i) const { return (headers_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }

 private:
  size_t slot_bytes_;
  std::vector<uint8_t> buffers_;
  std::vector<struct iovec> iov_;
  std::vector<struct mmsghdr> headers_;
};

// Request/reply socket for ctnetlink GET requests. Blocking with a receive timeout so a
// kernel that never answers cannot hang the reader thread.
class RequestSocket {
 public:
  // `buffer_bytes` holds one reply datagram: 64 KiB for dumps (the kernel sizes dump skbs
  // from the reader's buffer, up to ~32 KiB); stats replies fit in far less.
  explicit RequestSocket(size_t buffer_bytes = 64 * 1024) : buffer_(buffer_bytes) {}
  Status open(int timeout_ms);
  int fd() const { return fd_.get(); }

  // Sends one request and calls on_message(const Message&) for every reply message
  // until NLMSG_DONE (dumps) or the single reply (non-dumps). A netlink error reply is
  // returned as its errno with syscall "recv".
  // `cancel`, when given, is checked between receives: a long dump stops with ECANCELED.
  // `between()` runs after each received datagram (the monitor reads its events there).
  template <typename OnMessage, typename Between = void (*)()>
  Status request(
      uint16_t type, uint16_t flags, uint8_t family, OnMessage&& on_message,
      const std::atomic<bool>* cancel = nullptr, Between between = [] {});

  // A walk of the whole table that lists nothing: a dump whose filter no entry matches (a
  // CTA_MARK with mask 0). The kernel kills every expired entry it meets, of every namespace
  // (the expiry test comes before the namespace test), and broadcasts each one's DESTROY,
  // through every socket filter, before this returns. Holds the kernel's ctnetlink mutex and
  // keeps softirqs off on its CPU while it walks: ~8 ms at 262,144 buckets, plus ~0.2 us per
  // entry of the host and ~2.5 us per entry it kills.
  Status evict_expired();

 private:
  Status send_request(uint16_t type, uint16_t flags, uint8_t family, uint32_t seq,
                      const uint8_t* attrs = nullptr, size_t attrs_length = 0);
  uint32_t pending_attrs_length_ = 0;  // attributes the next request() sends (evict_expired)
  const uint8_t* pending_attrs_ = nullptr;
  int receive();         // bytes into buffer_, or -errno
  void drain_pending();  // a cancelled dump: reopen the socket so nothing of it is left

  Fd fd_;
  int timeout_ms_ = 0;
  uint32_t seq_ = 0;
  std::vector<uint8_t> buffer_;
};

template <typename OnMessage, typename Between>
Status RequestSocket::request(uint16_t type, uint16_t flags, uint8_t family, OnMessage&& on_message,
                              const std::atomic<bool>* cancel, Between between) {
  const uint32_t seq = ++seq_;
  Status st = send_request(type, flags, family, seq, pending_attrs_, pending_attrs_length_);
  pending_attrs_ = nullptr;
  pending_attrs_length_ = 0;
  if (!st.ok()) return st;
  const bool dump = (flags & NLM_F_DUMP) == NLM_F_DUMP;
  for (;;) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
      drain_pending();  // the rest of the dump must not be read as replies to the next request
      return Status{ECANCELED, "recv"};
    }
    const int n = receive();
    if (n < 0) return Status{-n, "recv"};
    MessageWalker walker(buffer_.data(), static_cast<size_t>(n));
    Message msg;
    while (walker.next(msg)) {
      if (msg.seq != seq) continue;  // a late reply to an earlier, timed-out request
      if (msg.type == NLMSG_DONE) return Status{};
      if (msg.type == NLMSG_ERROR) {
        const int code = decode_error_code(msg);
        if (code != 0) return Status{-code, "recv"};
        if (!dump) return Status{};
        continue;
      }
      on_message(msg);
      if (!dump) return Status{};
    }
    if (walker.malformed()) return Status{EBADMSG, "recv"};
    between();
  }
}

}  // namespace ctmon
