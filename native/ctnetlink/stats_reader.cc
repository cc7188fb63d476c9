// stats_reader.cc — see stats_reader.h. No Node-API.
#include "ctnetlink/stats_reader.h"

#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>

namespace ctmon {

KernelReading StatsReader::read(RequestSocket& socket, int event_fd) {
  KernelReading reading;
  size_t count = 0;
  Status st = socket.request(ctnl_type(IPCTNL_MSG_CT_GET_STATS_CPU), NLM_F_DUMP, AF_UNSPEC,
                             [&](const Message& msg) {
                               if (count == cpu_stats_.size()) cpu_stats_.emplace_back();
                               if (decode_cpu_stats(msg, cpu_stats_[count]) == DecodeStatus::kOk)
                                 ++count;
                             });
  if (st.ok()) {
    reading.cpus = cpu_stats_.data();
    reading.cpu_count = count;
    global_stats_ = GlobalStats{};
    st = socket.request(ctnl_type(IPCTNL_MSG_CT_GET_STATS), 0, AF_UNSPEC,
                        [&](const Message& msg) { decode_global_stats(msg, global_stats_); });
    if (st.ok()) reading.global = &global_stats_;
  }
  status_ = st;
  reading.drops_ok = read_socket_drops(event_fd, reading.socket_drops).ok();
  return reading;
}

}  // namespace ctmon
