// binding.h — what each binding file contributes to the addon's exports (addon.cc).
// The binding/ files are the only ones that include napi.h; everything they wrap is plain C++
// under native/base, native/ctnetlink and native/ebpf that knows nothing of Node.
#pragma once

#include <napi.h>

namespace ctmon_binding {

// monitor_binding.cc
Napi::Function define_native_monitor(Napi::Env env);
int live_native_monitors();  // NativeMonitor objects not yet destroyed (lifecycle tests)

// node_monitor_binding.cc: one reader thread for every namespace of the node.
Napi::Function define_native_node_monitor(Napi::Env env);

// snapshot_binding.cc: NativeSnapshot, one table snapshot (src/top.ts).
Napi::Function define_native_snapshot(Napi::Env env);
int live_native_snapshots();  // NativeSnapshot objects not yet destroyed (lifecycle tests)

// drop_probe_binding.cc: NativeDropProbe, dropProbeAvailable, _bpfRunTimeStats.
void export_drop_probe(Napi::Env env, Napi::Object exports);

// test_hooks.cc: _decode, _classifyHeader, _aggregate, _table, _eventProgram, _groupSnapshot,
// _injectFaults, _liveMonitors, _liveSnapshots.
void export_test_hooks(Napi::Env env, Napi::Object exports);

}  // namespace ctmon_binding
