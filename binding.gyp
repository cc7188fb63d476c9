{
  "targets": [
    {
      "target_name": "conntrack_monitor",
      "sources": [
        "native/binding.cc",
        "native/monitor.cc",
        "native/netlink_socket.cc",
        "native/ctnetlink.cc",
        "native/aggregator.cc",
        "native/conntrack_table.cc",
        "native/event_filter.cc",
        "native/proc_text.cc",
        "native/read_file.cc",
        "native/btf.cc",
        "native/kallsyms.cc",
        "native/drop_program.cc",
        "native/drop_probe.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
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
