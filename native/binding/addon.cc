// addon.cc — the addon's entry point: gathers what each binding file exports.
//   NativeMonitor     monitor_binding.cc   one namespace's reader thread
//   NativeNodeMonitor node_monitor_binding.cc  one reader thread for every namespace
//   NativeSnapshot    snapshot_binding.cc  one table snapshot, grouped (topEntries)
//   NativeDropProbe   drop_probe_binding.cc  the eBPF table-full drop probe
//   counterNames      the order of the counts/totals arrays in raw samples
//   _*                test_hooks.cc (and _bpfRunTimeStats for benchmarks)
#include <napi.h>

#include "binding/binding.h"
#include "ctnetlink/aggregator.h"

namespace {

const char* const kCounterNames[ctmon::kCounterCount] = {
    "insert",  "delete",    "drop",         "earlyDrop",    "insertFailed",
    "invalid", "icmpError", "clashResolve", "chainTooLong", "searchRestart",
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeMonitor", ctmon_binding::define_native_monitor(env));
  exports.Set("NativeNodeMonitor", ctmon_binding::define_native_node_monitor(env));
  exports.Set("NativeSnapshot", ctmon_binding::define_native_snapshot(env));
  ctmon_binding::export_drop_probe(env, exports);
  Napi::Array names = Napi::Array::New(env, ctmon::kCounterCount);
  for (uint32_t c = 0; c < ctmon::kCounterCount; ++c) names.Set(c, kCounterNames[c]);
  exports.Set("counterNames", names);
  ctmon_binding::export_test_hooks(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(conntrack_monitor, Init)
