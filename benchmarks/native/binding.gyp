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
      "sources": ["null_reader.cc", "../../native/base/fd.cc", "../../native/ctnetlink/socket.cc", "../../native/ctnetlink/event_filter.cc", "../../native/ctnetlink/decoder.cc"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17"]
    },
    {
      "target_name": "count_only_reader",
      "type": "executable",
      "sources": ["count_only_reader.cc", "../../native/base/fd.cc", "../../native/base/read_file.cc", "../../native/ctnetlink/socket.cc", "../../native/ctnetlink/decoder.cc", "../../native/ebpf/bpf.cc", "../../native/ebpf/event_counter.cc", "../../native/ebpf/event_program.cc"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"]
    },
    {
      "target_name": "decode_bench",
      "type": "executable",
      "sources": ["decode_bench.cc", "../../native/ctnetlink/decoder.cc"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17"]
    },
    {
      "target_name": "drop_probe_demo",
      "type": "executable",
      "sources": ["drop_probe_demo.cc", "../../native/base/fd.cc", "../../native/base/read_file.cc", "../../native/ebpf/bpf.cc", "../../native/ebpf/drop_probe.cc", "../../native/ebpf/drop_program.cc", "../../native/ebpf/btf.cc", "../../native/ebpf/kallsyms.cc"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
