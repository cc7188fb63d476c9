// convert.cc — see convert.h.
#include "binding/convert.h"

#include <cstring>

namespace ctmon_binding {

napi_value table_counts_to_js(JsWriter& w, const ctmon::TableCounts& c) {
  napi_value o = w.object();
  w.set(o, "entries", w.number(c.entries));
  w.set(o, "protocols", w.uint_array(c.protocols, ctmon::kProtoClassCount));
  w.set(o, "tcpStates", w.uint_array(c.tcp_states, ctmon::kTcpStateCount));
  return o;
}

napi_value interval_to_js(JsWriter& w, const ctmon::IntervalSample& s) {
  napi_value o = w.object();
  w.set(o, "endWallMs", w.number(static_cast<double>(s.end_wall_ms)));
  w.set(o, "durationNs", w.number(static_cast<double>(s.duration_ns)));
  w.set(o, "final", w.boolean(s.final));
  w.set(o, "kernelStatsOk", w.boolean(s.kernel_stats_ok));
  w.set(o, "statsError", w.number(s.stats_error));
  napi_value counts = w.array(ctmon::kCounterCount);
  napi_value totals = w.array(ctmon::kCounterCount);
  for (uint32_t c = 0; c < ctmon::kCounterCount; ++c) {
    const bool known = (s.known & (1u << c)) != 0;
    w.set(counts, c, w.nullable(known, static_cast<double>(s.counts[c])));
    w.set(totals, c, w.number(static_cast<double>(s.totals[c])));
  }
  w.set(o, "counts", counts);
  w.set(o, "totals", totals);
  w.set(o, "entries", w.nullable(s.has_entries, s.entries));
  w.set(o, "max", w.nullable(s.has_max, s.max));
  w.set(o, "eventsUpdates", w.number(static_cast<double>(s.events_updates)));
  w.set(o, "eventsUpdatesTotal", w.number(static_cast<double>(s.events_updates_total)));
  w.set(o, "firstLossWallMs",
        w.nullable(s.first_loss_wall_ms >= 0, static_cast<double>(s.first_loss_wall_ms)));
  w.set(o, "firstLossEverWallMs",
        w.nullable(s.first_loss_ever_wall_ms >= 0, static_cast<double>(s.first_loss_ever_wall_ms)));
  w.set(o, "eventsReceived", w.number(static_cast<double>(s.events_received)));
  w.set(o, "eventsLost", w.number(static_cast<double>(s.events_lost)));
  w.set(o, "eventsLostTotal", w.number(static_cast<double>(s.events_lost_total)));
  w.set(o, "malformedTotal", w.number(static_cast<double>(s.malformed_total)));
  return o;
}

napi_value sample_to_js(JsWriter& w, const ctmon::IntervalSample& s,
                        const ctmon::TableSnapshot& table, const ctmon::NamespaceSettings& settings,
                        uint64_t dropped_records) {
  napi_value o = interval_to_js(w, s);
  w.set(o, "buckets", w.nullable(settings.buckets >= 0, static_cast<double>(settings.buckets)));
  w.set(o, "eventsMode",
        w.nullable(settings.events_mode >= 0, static_cast<double>(settings.events_mode)));
  w.set(o, "timeWaitTimeout",
        w.nullable(settings.time_wait_timeout_s >= 0,
                   static_cast<double>(settings.time_wait_timeout_s)));
  w.set(o, "socketTimeWait",
        w.nullable(settings.socket_time_wait >= 0, static_cast<double>(settings.socket_time_wait)));
  w.set(o, "synced", w.boolean(table.synced));
  w.set(o, "dumpError", w.number(table.dump_error));
  w.set(o, "tracked", table_counts_to_js(w, table.counts));
  w.set(o, "unverified", table_counts_to_js(w, table.unverified));
  w.set(o, "verifiedAt", w.nullable(table.verified_wall_ms >= 0, table.verified_wall_ms));
  w.set(o, "walks", w.number(static_cast<double>(table.walks)));
  w.set(o, "lastWalkMs", w.nullable(table.last_walk_ms >= 0, table.last_walk_ms));
  w.set(o, "resyncs", w.number(static_cast<double>(table.resyncs)));
  w.set(o, "lastResyncMs", w.nullable(table.last_resync_ms >= 0, table.last_resync_ms));
  w.set(o, "tableBytes", w.number(static_cast<double>(table.memory_bytes)));
  w.set(o, "droppedRecords", w.number(static_cast<double>(dropped_records)));
  const ctmon::EventProgramSnapshot& e = table.event_program;
  if (e.active) {
    napi_value p = w.object();
    w.set(p, "passed", w.number(static_cast<double>(e.passed)));
    w.set(p, "tracked", w.number(static_cast<double>(e.tracked)));
    w.set(p, "unknownLayout", w.number(static_cast<double>(e.unknown_layout)));
    w.set(p, "flowsFull", w.number(static_cast<double>(e.flows_full)));
    w.set(p, "tableSlots", w.number(e.table_slots));
    napi_value d = w.array(CT_DIAG_COUNT);
    for (uint32_t i = 0; i < CT_DIAG_COUNT; ++i)
      w.set(d, i, w.number(static_cast<double>(e.diagnostics[i])));
    w.set(p, "diagnostics", d);
    w.set(o, "eventProgram", p);
  } else {
    w.set(o, "eventProgram", w.null());
  }
  return o;
}

napi_value top_report_to_js(JsWriter& w, const ctmon::TopReport& r) {
  static const char* const kGroupNames[ctmon::kSnapshotGroupCount] = {
      "bySource", "byDestination", "byDestinationPort", "byState"};
  napi_value o = w.object();
  w.set(o, "entries", w.number(static_cast<double>(r.entries)));
  w.set(o, "evictable", w.number(static_cast<double>(r.evictable)));
  w.set(o, "unassured", w.number(static_cast<double>(r.unassured)));
  w.set(o, "tcpClosing", w.number(static_cast<double>(r.tcp_closing)));
  for (int g = 0; g < ctmon::kSnapshotGroupCount; ++g) {
    const ctmon::TopGroup& group = r.groups[g];
    const uint32_t n = static_cast<uint32_t>(group.top.size());
    napi_value items = w.array(n + (group.other > 0 ? 1 : 0));
    auto item = [&w](const std::string& key, uint64_t entries) {
      napi_value it = w.object();
      w.set(it, "key", w.string(key));
      w.set(it, "entries", w.number(static_cast<double>(entries)));
      return it;
    };
    for (uint32_t i = 0; i < n; ++i) w.set(items, i, item(group.top[i].key, group.top[i].entries));
    if (group.other > 0) w.set(items, n, item("other", group.other));
    w.set(o, kGroupNames[g], items);
  }
  return o;
}

napi_value error_to_js(JsWriter& w, const ctmon::Status& e) {
  napi_value err = w.error(e.text());
  w.set(err, "errno", w.number(e.code));
  w.set(err, "syscall", w.string(e.syscall));
  w.set(err, "context", w.string(e.context));
  return err;
}

Napi::Error native_error(Napi::Env env, const ctmon::Status& e) {
  JsWriter w(env);
  napi_value err = error_to_js(w, e);
  if (!w.ok()) return Napi::Error::New(env, e.text());
  return Napi::Error(env, err);
}

}  // namespace ctmon_binding
