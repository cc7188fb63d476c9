{
  "targets": [
    {
      "target_name": "conntrack_monitor",
      "sources": [
        "<!@(node -p \"require('./native/sources.js').gyp('binding')\")",
        "<!@(node -p \"require('./native/sources.js').gyp('core')\")"
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
