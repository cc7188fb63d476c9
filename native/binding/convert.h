// convert.h — native results as JS values for src/native.ts: the raw interval sample, the
// tracked table's counts, and the one error shape every binding throws or reports
// ({ message, errno, syscall, context }, turned into a ConntrackError by src/errors.ts).
// Binding files only (JS thread).
#pragma once

#include <napi.h>

#include <string>

#include "binding/js_writer.h"
#include "ctnetlink/monitor.h"
#include "ctnetlink/snapshot.h"

namespace ctmon_binding {

napi_value table_counts_to_js(JsWriter& w, const ctmon::TableCounts& c);

// One interval's counters (the part every raw sample shares): src/native.ts RawInterval.
napi_value interval_to_js(JsWriter& w, const ctmon::IntervalSample& s);

// Raw sample for src/native.ts; the TypeScript layer shapes the public ConntrackSample.
// `dropped_records`: records the binding had to drop because JS stalled (cumulative).
napi_value sample_to_js(JsWriter& w, const ctmon::IntervalSample& s,
                        const ctmon::TableSnapshot& table, const ctmon::NamespaceSettings& settings,
                        uint64_t dropped_records);

// A snapshot's groups for src/top.ts: { entries, evictable, unassured, tcpClosing, bySource,
// byDestination, byDestinationPort, byState }, each group [{ key, entries }] with the rest as a
// last { key: 'other', entries } when there is a rest.
napi_value top_report_to_js(JsWriter& w, const ctmon::TopReport& r);

// The error shape: { message: e.text(), errno, syscall, context }.
napi_value error_to_js(JsWriter& w, const ctmon::Status& e);

// The same error as a C++ exception, for the JS thread's own calls (where JS can always run).
Napi::Error native_error(Napi::Env env, const ctmon::Status& e);

// A number, or null when absent.
inline Napi::Value nullable(Napi::Env env, bool present, double value) {
  return present ? Napi::Number::New(env, value) : env.Null();
}

}  // namespace ctmon_binding
