// binding.cc — the only Node-API file. Exposes:
//   NativeMonitor   wraps ctmon::Monitor; samples reach JS once per interval through a
//                   ThreadSafeFunction, coalesced so the reader thread never waits on JS.
//   counterNames    the order of the counts/totals arrays in raw samples.
//   _decode         test hook: decode a buffer of netlink messages.
//   _aggregate      test hook: drive an Aggregator with an injected clock.
// Everything below this file is plain C++ that knows nothing of Node.
#include <arpa/inet.h>
#include <napi.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aggregator.h"
#include "conntrack_table.h"
#include "ctnetlink.h"
#include "drop_probe.h"
#include "fault_injection.h"
#include "monitor.h"

namespace {

using ctmon::IntervalSample;

const char* const kCounterNames[ctmon::kCounterCount] = {
    "insert",  "delete",       "drop",         "earlyDrop",    "insertFailed",
    "invalid", "icmpError",    "clashResolve", "chainTooLong", "searchRestart",
};

// Builds JS values with the plain C API, checking every status. Records reach JS from a
// thread-safe function call, and a worker being terminated stops JS from running at any moment
// (from another thread): node-addon-api turns the failed call into a C++ exception whose own
// construction then aborts the process (Error::Error calls napi_define_properties, which
// fails the same way). Here a failure just turns the writer off, and the caller skips the
// delivery: nothing is left to deliver to.
class JsWriter {
 public:
  explicit JsWriter(napi_env env) : env_(env) {}
  bool ok() const { return ok_; }

  napi_value object() { return make([&](napi_value* v) { return napi_create_object(env_, v); }); }
  napi_value array(uint32_t n) { return make([&](napi_value* v) { return napi_create_array_with_length(env_, n, v); }); }
  napi_value number(double x) { return make([&](napi_value* v) { return napi_create_double(env_, x, v); }); }
  napi_value boolean(bool b) { return make([&](napi_value* v) { return napi_get_boolean(env_, b, v); }); }
  napi_value null() { return make([&](napi_value* v) { return napi_get_null(env_, v); }); }
  napi_value nullable(bool present, double x) { return present ? number(x) : null(); }
  napi_value string(const std::string& text) {
    return make([&](napi_value* v) { return napi_create_string_utf8(env_, text.data(), text.size(), v); });
  }
  napi_value error(const std::string& message) {
    napi_value text = string(message);
    return make([&](napi_value* v) { return napi_create_error(env_, nullptr, text, v); });
  }
  void set(napi_value object, const char* key, napi_value value) {
    if (ok_ && napi_set_named_property(env_, object, key, value) != napi_ok) ok_ = false;
  }
  void set(napi_value array, uint32_t index, napi_value value) {
    if (ok_ && napi_set_element(env_, array, index, value) != napi_ok) ok_ = false;
  }
  napi_value uint_array(const uint32_t* values, uint32_t n) {
    napi_value out = array(n);
    for (uint32_t i = 0; i < n; ++i) set(out, i, number(values[i]));
    return out;
  }

 private:
  template <typename Create>
  napi_value make(Create&& create) {
    napi_value v = nullptr;
    if (ok_ && create(&v) != napi_ok) ok_ = false;
    return ok_ ? v : nullptr;
  }

  napi_env env_;
  bool ok_ = true;
};

napi_value table_counts_to_js(JsWriter& w, const ctmon::TableCounts& c) {
  napi_value o = w.object();
  w.set(o, "entries", w.number(c.entries));
  w.set(o, "protocols", w.uint_array(c.protocols, ctmon::kProtoClassCount));
  w.set(o, "tcpStates", w.uint_array(c.tcp_states, ctmon::kTcpStateCount));
  return o;
}

// Raw sample for src/native.ts; the TypeScript layer shapes the public ConntrackSample.
napi_value sample_to_js(JsWriter& w, const IntervalSample& s, const ctmon::TableSnapshot& table,
                        const ctmon::NamespaceSettings& settings) {
  napi_value o = w.object();
  w.set(o, "endWallMs", w.number(static_cast<double>(s.end_wall_ms)));
  w.set(o, "durationNs", w.number(static_cast<double>(s.duration_ns)));
  w.set(o, "final", w.boolean(s.final));
  w.set(o, "kernelStatsOk", w.boolean(s.kernel_stats_ok));
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
  w.set(o, "buckets", w.nullable(settings.buckets >= 0, static_cast<double>(settings.buckets)));
  w.set(o, "eventsMode", w.nullable(settings.events_mode >= 0, static_cast<double>(settings.events_mode)));
  w.set(o, "timeWaitTimeout",
        w.nullable(settings.time_wait_timeout_s >= 0, static_cast<double>(settings.time_wait_timeout_s)));
  w.set(o, "socketTimeWait",
        w.nullable(settings.socket_time_wait >= 0, static_cast<double>(settings.socket_time_wait)));
  w.set(o, "synced", w.boolean(table.synced));
  w.set(o, "tracked", table_counts_to_js(w, table.counts));
  w.set(o, "resyncs", w.number(static_cast<double>(table.resyncs)));
  w.set(o, "lastResyncMs", w.nullable(table.last_resync_ms >= 0, table.last_resync_ms));
  w.set(o, "tableBytes", w.number(static_cast<double>(table.memory_bytes)));
  w.set(o, "eventsUpdates", w.number(static_cast<double>(s.events_updates)));
  w.set(o, "eventsReceived", w.number(static_cast<double>(s.events_received)));
  w.set(o, "eventsLost", w.number(static_cast<double>(s.events_lost)));
  w.set(o, "eventsLostTotal", w.number(static_cast<double>(s.events_lost_total)));
  w.set(o, "malformedTotal", w.number(static_cast<double>(s.malformed_total)));
  return o;
}

napi_value error_to_js(JsWriter& w, const ctmon::MonitorError& e) {
  napi_value err = w.error(e.context + ": " + std::strerror(e.code));
  w.set(err, "errno", w.number(e.code));
  w.set(err, "syscall", w.string(e.syscall));
  w.set(err, "context", w.string(e.context));
  return err;
}

// The test hooks below run on the JS thread in ordinary calls.
Napi::Value nullable(Napi::Env env, bool present, double value) {
  return present ? Napi::Number::New(env, value) : env.Null();
}

// For the JS thread's own calls (start() failing), where JS can always run.
Napi::Error error_to_napi(Napi::Env env, const ctmon::MonitorError& e) {
  JsWriter w(env);
  napi_value err = error_to_js(w, e);
  if (!w.ok()) return Napi::Error::New(env, e.context);
  return Napi::Error(env, err);
}

struct Record {
  bool is_sample = false;
  IntervalSample sample;
  ctmon::TableSnapshot table;
  ctmon::NamespaceSettings settings;
  ctmon::MonitorError error;
};

class NativeMonitor : public Napi::ObjectWrap<NativeMonitor>, public ctmon::MonitorListener {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeMonitor",
                       {InstanceMethod<&NativeMonitor::Start>("start"),
                        InstanceMethod<&NativeMonitor::Stop>("stop"),
                        InstanceMethod<&NativeMonitor::JsRef>("ref"),
                        InstanceMethod<&NativeMonitor::JsUnref>("unref"),
                        InstanceMethod<&NativeMonitor::Info>("info")});
  }

  // new NativeMonitor({ netnsPath, intervalMs, receiveBufferBytes }, onRecords)
  // Options arrive validated by src/options.ts; this only guards against misuse.
  explicit NativeMonitor(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "NativeMonitor(options, onRecords)");
    Napi::Object opts = info[0].As<Napi::Object>();
    if (opts.Get("netnsPath").IsString())
      config_.netns_path = opts.Get("netnsPath").As<Napi::String>().Utf8Value();
    config_.interval_ms = opts.Get("intervalMs").As<Napi::Number>().Int32Value();
    config_.receive_buffer_bytes = opts.Get("receiveBufferBytes").As<Napi::Number>().Int32Value();
    config_.resync_interval_ms = opts.Get("resyncIntervalMs").As<Napi::Number>().Int32Value();
    on_records_ = Napi::Persistent(info[1].As<Napi::Function>());
    ++live_;
  }

  ~NativeMonitor() override {
    shutdown();
    --live_;
  }

  // Test hook: NativeMonitor objects not yet destroyed (the lifecycle tests expect none
  // to linger once their JS objects are collected).
  static int live() { return live_.load(); }

 private:
  // JS thread. Throws an Error with errno/syscall/context when the reader cannot start.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (on_records_.IsEmpty()) throw Napi::Error::New(env, "a NativeMonitor starts once");
    tsfn_ = Napi::ThreadSafeFunction::New(env, on_records_.Value(), "conntrack-monitor", 0, 1,
                                          this, [](Napi::Env, NativeMonitor* self) {
                                            self->ObjectWrap::Unref();  // matches the Ref below
                                          });
    ObjectWrap::Ref();  // keep this object alive while the TSFN may still call into it
    // The TSFN holds the callback from here on. Keeping our own strong reference would keep
    // the callback's closure, and through it this object, alive forever.
    on_records_.Reset();
    if (!referenced_) tsfn_.Unref(env);
    monitor_ = std::make_unique<ctmon::Monitor>(config_, this);
    ctmon::MonitorError error;
    if (!monitor_->start(error)) {
      monitor_.reset();
      tsfn_.Release();
      throw error_to_napi(env, error);
    }
    cleanup_ = env.AddCleanupHook(std::function<void()>([this] { shutdown(); }));
    return env.Undefined();
  }

  // JS thread. Stops the reader (which closes the final partial interval) and returns the
  // records not yet delivered, so the caller sees the final sample before stop() resolves.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!monitor_) return Napi::Array::New(env);
    shutdown();
    if (!cleanup_.IsEmpty()) cleanup_.Remove(env);
    JsWriter w(env);
    napi_value records = take_records(w);
    return w.ok() ? Napi::Value(env, records) : Napi::Array::New(env);
  }

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    referenced_ = true;
    if (monitor_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    referenced_ = false;
    if (monitor_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    const ctmon::MonitorInfo mi = monitor_ ? monitor_->info() : ctmon::MonitorInfo{};
    o.Set("receiveBufferBytes", mi.receive_buffer_bytes);
    o.Set("receiveBufferForced", mi.receive_buffer_forced);
    return o;
  }

  // Stops the reader thread and lets go of the TSFN. Also the environment cleanup hook,
  // so a terminated worker or an exiting process never leaves the thread running.
  void shutdown() {
    if (!monitor_) return;
    monitor_->stop();
    monitor_.reset();
    tsfn_.Release();
  }

  // Reader thread.
  void on_sample(const IntervalSample& sample, const ctmon::TableSnapshot& table,
                 const ctmon::NamespaceSettings& settings) override {
    Record r;
    r.is_sample = true;
    r.sample = sample;
    r.table = table;
    r.settings = settings;
    enqueue(std::move(r));
  }
  void on_error(const ctmon::MonitorError& error) override {
    Record r;
    r.error = error;
    enqueue(std::move(r));
  }

  // Reader thread. At most one TSFN call is pending; JS takes everything queued by then.
  void enqueue(Record&& r) {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= kMaxQueued) return;  // JS has stalled for ~kMaxQueued intervals
    queue_.push_back(std::move(r));
    if (notify_pending_) return;
    notify_pending_ = true;
    tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function on_records) {
      // While the environment tears down, pending calls run with no env, or with one that
      // can no longer run JS (at any moment, for a terminated worker): plain C calls whose
      // failure just means there is nothing to deliver to. src/netlink-backend.ts never lets
      // a listener's exception reach here (it rethrows them on the next tick).
      if (static_cast<napi_env>(env) == nullptr || on_records.IsEmpty() || !has_records()) return;
      JsWriter w(env);
      napi_value records = take_records(w);
      napi_value receiver = w.null();
      if (w.ok()) napi_call_function(env, receiver, on_records, 1, &records, nullptr);
    });
  }

  // JS thread. False (and no call pending any more) when the queue is empty.
  bool has_records() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!queue_.empty()) return true;
    notify_pending_ = false;
    return false;
  }

  // JS thread. Takes the queue; the array is null when JS could not run (w.ok() is false).
  napi_value take_records(JsWriter& w) {
    std::vector<Record> records;
    {
      std::lock_guard<std::mutex> lock(mu_);
      records.swap(queue_);
      notify_pending_ = false;
    }
    napi_value out = w.array(static_cast<uint32_t>(records.size()));
    for (uint32_t i = 0; i < records.size(); ++i) {
      napi_value o = w.object();
      if (records[i].is_sample) {
        w.set(o, "type", w.string("sample"));
        w.set(o, "sample", sample_to_js(w, records[i].sample, records[i].table, records[i].settings));
      } else {
        w.set(o, "type", w.string("error"));
        w.set(o, "error", error_to_js(w, records[i].error));
      }
      w.set(out, i, o);
    }
    return out;
  }

  static constexpr size_t kMaxQueued = 1024;
  static inline std::atomic<int> live_{0};
  ctmon::MonitorConfig config_;
  std::unique_ptr<ctmon::Monitor> monitor_;
  Napi::FunctionReference on_records_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  bool referenced_ = true;
  std::mutex mu_;
  std::vector<Record> queue_;
  bool notify_pending_ = false;
};

// ---- test hooks -------------------------------------------------------------------

std::string address_to_string(uint8_t family, const uint8_t* bytes) {
  char text[INET6_ADDRSTRLEN] = "";
  inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, bytes, text, sizeof text);
  return text;
}

Napi::Object conntrack_to_js(Napi::Env env, const ctmon::Conntrack& ct) {
  using C = ctmon::Conntrack;
  static const char* const kinds[] = {"new", "update", "destroy"};
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", "conntrack");
  o.Set("kind", kinds[static_cast<int>(ct.kind)]);
  o.Set("family", ct.family);
  if (ct.has(C::kHasOrig)) {
    Napi::Object t = Napi::Object::New(env);
    t.Set("protocol", ct.orig.l4proto);
    t.Set("src", address_to_string(ct.family, ct.orig.src));
    t.Set("dst", address_to_string(ct.family, ct.orig.dst));
    t.Set("srcPort", ct.orig.src_port);
    t.Set("dstPort", ct.orig.dst_port);
    t.Set("icmpType", ct.orig.icmp_type);
    t.Set("icmpCode", ct.orig.icmp_code);
    o.Set("orig", t);
  }
  o.Set("id", nullable(env, ct.has(C::kHasId), ct.id));
  o.Set("status", nullable(env, ct.has(C::kHasStatus), ct.status));
  o.Set("timeout", nullable(env, ct.has(C::kHasTimeout), ct.timeout_s));
  o.Set("mark", nullable(env, ct.has(C::kHasMark), ct.mark));
  o.Set("zone", nullable(env, ct.has(C::kHasZone), ct.zone));
  o.Set("tcpState", nullable(env, ct.has(C::kHasTcpState), ct.tcp_state));
  return o;
}

// _decode(buffer) -> array of decoded messages; never throws on bad bytes.
Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "_decode(buffer)");
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  Napi::Array out = Napi::Array::New(env);
  ctmon::MessageWalker walker(buf.Data(), buf.Length());
  ctmon::Message msg;
  uint32_t n = 0;
  while (walker.next(msg)) {
    ctmon::Conntrack ct;
    ctmon::CpuStats cpu;
    ctmon::GlobalStats global;
    Napi::Object o = Napi::Object::New(env);
    if (ctmon::decode_conntrack(msg, ct) == ctmon::DecodeStatus::kOk) {
      o = conntrack_to_js(env, ct);
    } else if (ctmon::decode_cpu_stats(msg, cpu) == ctmon::DecodeStatus::kOk) {
      o.Set("type", "cpu-stats");
      o.Set("cpu", cpu.cpu);
      Napi::Object values = Napi::Object::New(env);
      for (uint32_t id = 0; id < ctmon::kStatsSlots; ++id)
        if (cpu.present & (1u << id)) values.Set(id, cpu.values[id]);
      o.Set("values", values);
    } else if (ctmon::decode_global_stats(msg, global) == ctmon::DecodeStatus::kOk) {
      o.Set("type", "global-stats");
      o.Set("entries", nullable(env, global.has_entries, global.entries));
      o.Set("max", nullable(env, global.has_max, global.max));
    } else {
      o.Set("type", "other");
      o.Set("messageType", msg.type);
    }
    out.Set(n++, o);
  }
  if (walker.malformed()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("type", "malformed");
    out.Set(n++, o);
  }
  return out;
}

void cpus_from_js(Napi::Value v, std::vector<ctmon::CpuStats>& out) {
  out.clear();
  if (!v.IsArray()) return;
  Napi::Array arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Object cpu = arr.Get(i).As<Napi::Object>();
    ctmon::CpuStats s;
    s.cpu = static_cast<uint16_t>(cpu.Get("cpu").As<Napi::Number>().Uint32Value());
    Napi::Object values = cpu.Get("values").As<Napi::Object>();
    Napi::Array keys = values.GetPropertyNames();
    for (uint32_t k = 0; k < keys.Length(); ++k) {
      const std::string key = keys.Get(k).ToString().Utf8Value();
      char* end = nullptr;
      const unsigned long id = std::strtoul(key.c_str(), &end, 10);
      if (end == key.c_str() || *end != '\0' || id >= ctmon::kStatsSlots) continue;
      s.values[id] = values.Get(keys.Get(k)).As<Napi::Number>().Uint32Value();
      s.present |= 1u << id;
    }
    out.push_back(s);
  }
}

ctmon::KernelReading reading_from_js(Napi::Object step, std::vector<ctmon::CpuStats>& cpus,
                                     ctmon::GlobalStats& global) {
  ctmon::KernelReading r;
  cpus_from_js(step.Get("cpus"), cpus);
  if (step.Get("cpus").IsArray()) {
    r.cpus = cpus.data();
    r.cpu_count = cpus.size();
  }
  if (step.Get("global").IsObject()) {
    Napi::Object g = step.Get("global").As<Napi::Object>();
    global.has_entries = global.has_max = true;
    global.entries = g.Get("entries").As<Napi::Number>().Uint32Value();
    global.max = g.Get("max").As<Napi::Number>().Uint32Value();
    r.global = &global;
  }
  if (step.Get("drops").IsNumber()) {
    r.drops_ok = true;
    r.socket_drops = step.Get("drops").As<Napi::Number>().Uint32Value();
  }
  return r;
}

// _aggregate(steps) -> raw samples. Steps: {op:'start', t, cpus, drops},
// {op:'event', kind:'new'|'update'|'destroy', count}, {op:'malformed'},
// {op:'close', t, wall, cpus|null, global, drops, final}. t is monotonic ns.
Napi::Value Aggregate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "_aggregate(steps)");
  Napi::Array steps = info[0].As<Napi::Array>();
  ctmon::Aggregator agg;
  std::vector<ctmon::CpuStats> cpus;
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (uint32_t i = 0; i < steps.Length(); ++i) {
    Napi::Object step = steps.Get(i).As<Napi::Object>();
    const std::string op = step.Get("op").ToString().Utf8Value();
    ctmon::GlobalStats global;
    if (op == "start") {
      agg.start(static_cast<int64_t>(step.Get("t").As<Napi::Number>().DoubleValue()),
                reading_from_js(step, cpus, global));
    } else if (op == "event") {
      const std::string kind = step.Get("kind").ToString().Utf8Value();
      const ctmon::EventKind k = kind == "new"       ? ctmon::EventKind::kNew
                                 : kind == "destroy" ? ctmon::EventKind::kDestroy
                                                     : ctmon::EventKind::kUpdate;
      const uint32_t count = step.Get("count").As<Napi::Number>().Uint32Value();
      for (uint32_t c = 0; c < count; ++c) agg.count_event(k);
    } else if (op == "malformed") {
      agg.count_malformed();
    } else if (op == "close") {
      const IntervalSample s =
          agg.close(static_cast<int64_t>(step.Get("t").As<Napi::Number>().DoubleValue()),
                    static_cast<int64_t>(step.Get("wall").As<Napi::Number>().DoubleValue()),
                    reading_from_js(step, cpus, global), step.Get("final").ToBoolean());
      JsWriter w(env);
      out.Set(n++, Napi::Value(env, sample_to_js(w, s, ctmon::TableSnapshot{}, ctmon::NamespaceSettings{})));
    } else {
      throw Napi::TypeError::New(env, "_aggregate: unknown op " + op);
    }
  }
  return out;
}

// _table(steps) -> results. Drives a ConntrackTable with messages and an injected clock:
// {op:'events', bytes, now}, {op:'dump', bytes, now} (bytes: netlink messages),
// {op:'begin-dump'}, {op:'end-dump'}, {op:'expire', now}, {op:'counts'}.
// end-dump and expire yield {removed}, counts yields the table's counts.
Napi::Value Table(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "_table(steps)");
  Napi::Array steps = info[0].As<Napi::Array>();
  ctmon::ConntrackTable table(0x5eed);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (uint32_t i = 0; i < steps.Length(); ++i) {
    Napi::Object step = steps.Get(i).As<Napi::Object>();
    const std::string op = step.Get("op").ToString().Utf8Value();
    const uint64_t now = step.Get("now").IsNumber()
                             ? static_cast<uint64_t>(step.Get("now").As<Napi::Number>().DoubleValue())
                             : 0;
    if (op == "events" || op == "dump") {
      Napi::Buffer<uint8_t> bytes = step.Get("bytes").As<Napi::Buffer<uint8_t>>();
      ctmon::MessageWalker walker(bytes.Data(), bytes.Length());
      ctmon::Message msg;
      ctmon::Conntrack ct;
      while (walker.next(msg)) {
        if (ctmon::decode_conntrack(msg, ct) != ctmon::DecodeStatus::kOk) continue;
        if (op == "events") table.apply_event(ct, now);
        else table.apply_dump_entry(ct, now);
      }
    } else if (op == "begin-dump") {
      table.begin_dump();
    } else if (op == "end-dump" || op == "expire") {
      const size_t removed = op == "expire" ? table.expire(now) : table.end_dump();
      Napi::Object o = Napi::Object::New(env);
      o.Set("removed", static_cast<double>(removed));
      out.Set(n++, o);
    } else if (op == "counts") {
      JsWriter w(env);
      out.Set(n++, Napi::Value(env, table_counts_to_js(w, table.counts())));
    } else {
      throw Napi::TypeError::New(env, "_table: unknown op " + op);
    }
  }
  return out;
}

// The eBPF table-full drop probe. The constructor loads and attaches the program (a few ms of
// verifier time, once); the read methods are a handful of map syscalls, once per interval.
class NativeDropProbe : public Napi::ObjectWrap<NativeDropProbe> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeDropProbe",
                       {InstanceMethod<&NativeDropProbe::Namespaces>("namespaces"),
                        InstanceMethod<&NativeDropProbe::Flows>("flows"),
                        InstanceMethod<&NativeDropProbe::Forget>("forget"),
                        InstanceMethod<&NativeDropProbe::Stats>("stats"),
                        InstanceMethod<&NativeDropProbe::Close>("close")});
  }

  // new NativeDropProbe({ maxFlows }): throws Error(reason) with errno/syscall when it cannot.
  explicit NativeDropProbe(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    Napi::Env env = info.Env();
    ctmon::DropProbeOptions options;
    if (info[0].IsObject() && info[0].As<Napi::Object>().Get("maxFlows").IsNumber())
      options.max_flows = info[0].As<Napi::Object>().Get("maxFlows").As<Napi::Number>().Uint32Value();
    const ctmon::ProbeStatus st = probe_.open(options);
    if (!st.ok()) {
      Napi::Error err = Napi::Error::New(env, st.reason);
      err.Set("errno", Napi::Number::New(env, st.sys.code));
      err.Set("syscall", Napi::String::New(env, st.sys.syscall));
      throw err;
    }
  }

 private:
  void check(Napi::Env env, const ctmon::SysStatus& st, const char* what) {
    if (st.ok()) return;
    Napi::Error err = Napi::Error::New(env, std::string(what) + ": " + std::strerror(st.code));
    err.Set("errno", Napi::Number::New(env, st.code));
    err.Set("syscall", Napi::String::New(env, st.syscall));
    throw err;
  }

  Napi::Value Namespaces(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (!probe_.is_open()) return out;
    uint32_t n = 0;
    check(env, probe_.read_namespaces([&](uint32_t netns, uint64_t drops) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("inode", static_cast<double>(netns));
      o.Set("drops", static_cast<double>(drops));
      out.Set(n++, o);
    }), "read the namespace map");
    return out;
  }

  Napi::Value Flows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (!probe_.is_open()) return out;
    uint32_t n = 0;
    check(env, probe_.read_and_clear_flows([&](const ctmon::DroppedFlow& f) {
      char src[INET6_ADDRSTRLEN] = "";
      char dst[INET6_ADDRSTRLEN] = "";
      if (f.family == AF_INET || f.family == AF_INET6) {
        inet_ntop(f.family, f.src, src, sizeof src);
        inet_ntop(f.family, f.dst, dst, sizeof dst);
      }
      Napi::Object o = Napi::Object::New(env);
      o.Set("netns", static_cast<double>(f.netns));
      o.Set("family", f.family);
      o.Set("protocol", f.protocol);
      o.Set("src", src);
      o.Set("dst", dst);
      o.Set("sport", f.sport);
      o.Set("dport", f.dport);
      o.Set("count", static_cast<double>(f.count));
      out.Set(n++, o);
    }), "read the flow map");
    return out;
  }

  Napi::Value Forget(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (probe_.is_open()) check(env, probe_.forget_namespace(info[0].ToNumber().Uint32Value()), "forget a namespace");
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ctmon::ProgramStats ps;
    if (probe_.is_open()) check(env, probe_.read_program_stats(ps), "read the program's statistics");
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", ps.id);
    o.Set("instructions", ps.instructions);
    o.Set("runCount", static_cast<double>(ps.run_count));
    o.Set("runTimeNs", static_cast<double>(ps.run_time_ns));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    probe_.close();
    return info.Env().Undefined();
  }

  ctmon::DropProbe probe_;
};

// _bpfRunTimeStats(on): holds (or releases) BPF_ENABLE_STATS, so programs' run_time_ns and
// run_cnt accumulate. Benchmarks only: the kernel-wide switch goes with the descriptor.
Napi::Value BpfRunTimeStats(const Napi::CallbackInfo& info) {
  static ctmon::Fd stats;
  if (info[0].ToBoolean().Value()) {
    if (stats.get() < 0) {
      const ctmon::SysStatus st = ctmon::DropProbe::enable_run_time_stats(stats);
      if (!st.ok()) throw Napi::Error::New(info.Env(), std::string("BPF_ENABLE_STATS: ") + std::strerror(st.code));
    }
  } else {
    stats.reset();
  }
  return info.Env().Undefined();
}

// _injectFaults({netlinkProtocol?, ctnetlinkSubsystem?}) -> the previous values. Test-only:
// see fault_injection.h. Process-wide, so tests restore what it returns.
Napi::Value InjectFaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "_injectFaults(faults)");
  Napi::Object in = info[0].As<Napi::Object>();
  ctmon::FaultInjection& faults = ctmon::fault_injection();
  Napi::Object previous = Napi::Object::New(env);
  previous.Set("netlinkProtocol", faults.netlink_protocol.load());
  previous.Set("ctnetlinkSubsystem", faults.ctnetlink_subsystem.load());
  if (in.Has("netlinkProtocol")) faults.netlink_protocol = in.Get("netlinkProtocol").ToNumber().Int32Value();
  if (in.Has("ctnetlinkSubsystem")) faults.ctnetlink_subsystem = in.Get("ctnetlinkSubsystem").ToNumber().Int32Value();
  return previous;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeMonitor", NativeMonitor::Define(env));
  exports.Set("NativeDropProbe", NativeDropProbe::Define(env));
  exports.Set("dropProbeAvailable", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), ctmon::DropProbe::check_available());
  }, "dropProbeAvailable"));
  exports.Set("_bpfRunTimeStats", Napi::Function::New(env, BpfRunTimeStats, "_bpfRunTimeStats"));
  Napi::Array names = Napi::Array::New(env, ctmon::kCounterCount);
  for (uint32_t c = 0; c < ctmon::kCounterCount; ++c) names.Set(c, kCounterNames[c]);
  exports.Set("counterNames", names);
  exports.Set("_decode", Napi::Function::New(env, Decode, "_decode"));
  exports.Set("_aggregate", Napi::Function::New(env, Aggregate, "_aggregate"));
  exports.Set("_table", Napi::Function::New(env, Table, "_table"));
  exports.Set("_injectFaults", Napi::Function::New(env, InjectFaults, "_injectFaults"));
  exports.Set("_liveMonitors", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), NativeMonitor::live());
  }, "_liveMonitors"));
  return exports;
}

}  // namespace

NODE_API_MODULE(conntrack_monitor, Init)
