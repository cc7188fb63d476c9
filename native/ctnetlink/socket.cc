// socket.cc — see socket.h. No Node-API.
#include "ctnetlink/socket.h"

#include <linux/netfilter/nfnetlink.h>
#include <linux/sock_diag.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>

#include "base/fault_injection.h"

#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace ctmon {

namespace {

Status open_netfilter(int extra_flags, Fd& out) {
  const int protocol = fault_injection().netlink_protocol.load(std::memory_order_relaxed);
  Fd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | extra_flags, protocol));
  if (fd.get() < 0) return Status::from_errno("socket");
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return Status::from_errno("bind");
  out = std::move(fd);
  return Status{};
}

Status set_int_option(int fd, int level, int name, int value) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0)
    return Status::from_errno("setsockopt");
  return Status{};
}

}  // namespace

Status open_event_socket(const EventSocketConfig& config, Fd& out, EventSocketInfo& info) {
  Fd fd;
  Status st = open_netfilter(SOCK_NONBLOCK, fd);
  if (!st.ok()) return st;
  // The filter is attached before joining the groups, so that no event is queued unfiltered.
  if (config.bpf_program_fd >= 0) {
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_BPF, &config.bpf_program_fd,
                     sizeof config.bpf_program_fd) != 0)
      return Status::from_errno("setsockopt");
  } else if (config.filter != nullptr) {
    sock_fprog program{static_cast<unsigned short>(config.filter_length),
                       const_cast<sock_filter*>(config.filter)};
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) != 0)
      return Status::from_errno("setsockopt");
  }
  st = join_event_groups(fd.get(), config.groups, config.group_count);
  if (!st.ok()) return st;
  st = set_int_option(fd.get(), SOL_NETLINK, NETLINK_NO_ENOBUFS, 1);
  if (!st.ok()) return st;
  // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; SO_RCVBUF is capped.
  info.forced =
      set_int_option(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, config.receive_buffer_bytes).ok();
  if (!info.forced) {
    st = set_int_option(fd.get(), SOL_SOCKET, SO_RCVBUF, config.receive_buffer_bytes);
    if (!st.ok()) return st;
  }
  int effective = 0;
  socklen_t len = sizeof effective;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &effective, &len) != 0)
    return Status::from_errno("getsockopt");
  info.receive_buffer_bytes = effective;
  out = std::move(fd);
  return Status{};
}

Status join_event_groups(int fd, const unsigned* groups, size_t group_count) {
  for (size_t i = 0; i < group_count; ++i) {
    const Status st = set_int_option(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, groups[i]);
    if (!st.ok()) return st;
  }
  return Status{};
}

uint16_t ctnl_type(uint8_t msg) {
  const int subsystem = fault_injection().ctnetlink_subsystem.load(std::memory_order_relaxed);
  return static_cast<uint16_t>(subsystem << 8 | msg);
}

Status read_socket_drops(int fd, uint32_t& drops) {
  uint32_t meminfo[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof meminfo;
  if (::getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) != 0)
    return Status::from_errno("getsockopt");
  if (len < (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t)) return Status{EPROTO, "getsockopt"};
  drops = meminfo[SK_MEMINFO_DROPS];
  return Status{};
}

BatchReceiver::BatchReceiver(size_t slots, size_t slot_bytes)
    : slot_bytes_(slot_bytes), buffers_(slots * slot_bytes), iov_(slots), headers_(slots) {
  for (size_t i = 0; i < slots; ++i) {
    iov_[i].iov_base = buffers_.data() + i * slot_bytes;
    iov_[i].iov_len = slot_bytes;
    std::memset(&headers_[i], 0, sizeof headers_[i]);
    headers_[i].msg_hdr.msg_iov = &iov_[i];
    headers_[i].msg_hdr.msg_iovlen = 1;
  }
}

int BatchReceiver::receive(int fd) {
  for (;;) {
    const int n = ::recvmmsg(fd, headers_.data(), static_cast<unsigned>(headers_.size()),
                             MSG_DONTWAIT, nullptr);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -errno;
  }
}

Status RequestSocket::open(int timeout_ms) {
  timeout_ms_ = timeout_ms;
  Status st = open_netfilter(0, fd_);
  if (!st.ok()) return st;
  timeval tv{};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
    return Status::from_errno("setsockopt");
  return Status{};
}

Status RequestSocket::send_request(uint16_t type, uint16_t flags, uint8_t family, uint32_t seq) {
  struct {
    nlmsghdr header;
    nfgenmsg body;
  } req{};
  req.header.nlmsg_len = sizeof req;
  req.header.nlmsg_type = type;
  req.header.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  req.header.nlmsg_seq = seq;
  req.body.nfgen_family = family;
  req.body.version = NFNETLINK_V0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    const ssize_t n = ::sendto(fd_.get(), &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel),
                               sizeof kernel);
    if (n >= 0) return Status{};
    if (errno != EINTR) return Status::from_errno("sendto");
  }
}

void RequestSocket::drain_pending() {
  // Replies carry the sequence number, so leftovers would be skipped anyway; a fresh socket
  // also frees the kernel from finishing a dump nobody reads.
  Fd old = std::move(fd_);
  if (!open(timeout_ms_).ok()) fd_ = std::move(old);
}

int RequestSocket::receive() {
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), buffer_.data(), buffer_.size(), 0);
    if (n >= 0) return static_cast<int>(n);
    if (errno != EINTR) return -errno;
  }
}

}  // namespace ctmon
