{
  "targets": [
    {
      "target_name": "conntrack_monitor",
      "sources": [
        "native/binding/addon.cc",
        "native/binding/convert.cc",
        "native/binding/monitor_binding.cc",
        "native/binding/node_monitor_binding.cc",
        "native/binding/drop_probe_binding.cc",
        "native/binding/snapshot_binding.cc",
        "native/binding/test_hooks.cc",
        "native/base/fd.cc",
        "native/base/netns.cc",
        "native/base/proc_text.cc",
        "native/base/read_file.cc",
        "native/ctnetlink/aggregator.cc",
        "native/ctnetlink/count_filter.cc",
        "native/ctnetlink/decoder.cc",
        "native/ctnetlink/event_filter.cc",
        "native/ctnetlink/kernel_flows.cc",
        "native/ctnetlink/monitor.cc",
        "native/ctnetlink/node_monitor.cc",
        "native/ctnetlink/snapshot.cc",
        "native/ctnetlink/snapshot_dump.cc",
        "native/ctnetlink/socket.cc",
        "native/ctnetlink/stats_reader.cc",
        "native/ctnetlink/table.cc",
        "native/ebpf/bpf.cc",
        "native/ebpf/btf.cc",
        "native/ebpf/drop_probe.cc",
        "native/ebpf/drop_program.cc",
        "native/ebpf/event_counter.cc",
        "native/ebpf/event_program.cc",
        "native/ebpf/kallsyms.cc",
        "native/ebpf/wheel_reader.cc"
      ],
      "include_dirs": ["native", "<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": [
        "-std=c++17",
        "-fexceptions",
        "-fvisibility=hidden",
        "-fstack-protector-strong",
        "-Wall",
        "-Wextra"
      ],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    }
  ]
}
