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
      "sources": ["null_reader.cc", "<!@(node -p \"require('../../native/sources.js').gyp('core', '../../')\")"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17"]
    },
    {
      "target_name": "count_only_reader",
      "type": "executable",
      "sources": ["count_only_reader.cc", "<!@(node -p \"require('../../native/sources.js').gyp('core', '../../')\")"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"]
    },
    {
      "target_name": "decode_bench",
      "type": "executable",
      "sources": ["decode_bench.cc", "<!@(node -p \"require('../../native/sources.js').gyp('core', '../../')\")"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17"]
    },
    {
      "target_name": "drop_probe_demo",
      "type": "executable",
      "sources": ["drop_probe_demo.cc", "<!@(node -p \"require('../../native/sources.js').gyp('core', '../../')\")"],
      "include_dirs": ["../../native"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
