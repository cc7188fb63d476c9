{
  # Benchmark tools, built on demand by the benchmark scripts (not by npm install):
  #   node-gyp rebuild --directory benchmarks/native
  "targets": [
    {
      "target_name": "loadgen",
      "type": "executable",
      "sources": ["loadgen.cc"],
      "cflags_cc": ["-O2", "-std=c++17"]
    },
    {
      "target_name": "null_reader",
      "type": "executable",
      "sources": ["null_reader.cc", "../../native/netlink_socket.cc", "../../native/event_filter.cc", "../../native/ctnetlink.cc"],
      "cflags_cc": ["-O2", "-std=c++17"]
    },
    {
      "target_name": "decode_bench",
      "type": "executable",
      "sources": ["decode_bench.cc", "../../native/ctnetlink.cc"],
      "cflags_cc": ["-O2", "-std=c++17"]
    },
    {
      "target_name": "drop_probe_demo",
      "type": "executable",
      "sources": ["drop_probe_demo.cc", "../../native/drop_probe.cc", "../../native/drop_program.cc", "../../native/read_file.cc", "../../native/btf.cc", "../../native/kallsyms.cc", "../../native/netlink_socket.cc", "../../native/ctnetlink.cc"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
