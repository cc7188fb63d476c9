// monitor_binding.cc — NativeMonitor: a ctmon::Monitor (native/ctnetlink/monitor.h) for JS.
// Samples reach JS once per interval through a RecordChannel (record_channel.h), so the reader
// thread never waits on JS; records dropped because JS stalled are counted (droppedRecords in
// the next sample).
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "binding/binding.h"
#include "binding/convert.h"
#include "binding/record_channel.h"
#include "ctnetlink/monitor.h"

namespace ctmon_binding {
namespace {

struct Record {
  bool is_sample = false;
  ctmon::IntervalSample sample;
  ctmon::TableSnapshot table;
  ctmon::NamespaceSettings settings;
  ctmon::Status error;
};

napi_value records_to_js(JsWriter& w, const std::vector<Record>& records, uint64_t dropped) {
  napi_value out = w.array(static_cast<uint32_t>(records.size()));
  for (uint32_t i = 0; i < records.size(); ++i) {
    napi_value o = w.object();
    if (records[i].is_sample) {
      w.set(o, "type", w.string("sample"));
      w.set(o, "sample",
            sample_to_js(w, records[i].sample, records[i].table, records[i].settings, dropped));
    } else {
      w.set(o, "type", w.string("error"));
      w.set(o, "error", error_to_js(w, records[i].error));
    }
    w.set(out, i, o);
  }
  return out;
}

class NativeMonitor : public Napi::ObjectWrap<NativeMonitor>, public ctmon::MonitorListener {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeMonitor",
        {InstanceMethod<&NativeMonitor::Start>("start"),
         InstanceMethod<&NativeMonitor::Stop>("stop"), InstanceMethod<&NativeMonitor::JsRef>("ref"),
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
    channel_.open(env, on_records_.Value(), "conntrack-monitor", this);
    // The channel holds the callback from here on. Keeping our own strong reference would keep
    // the callback's closure, and through it this object, alive forever.
    on_records_.Reset();
    monitor_ = std::make_unique<ctmon::Monitor>(config_, this);
    ctmon::Status error;
    if (!monitor_->start(error)) {
      monitor_.reset();
      channel_.close();
      throw native_error(env, error);
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
    napi_value records = channel_.take(w);
    return w.ok() && records != nullptr ? Napi::Value(env, records) : Napi::Array::New(env);
  }

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    channel_.set_referenced(info.Env(), true);
    return info.Env().Undefined();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    channel_.set_referenced(info.Env(), false);
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    const ctmon::MonitorInfo mi = monitor_ ? monitor_->info() : ctmon::MonitorInfo{};
    o.Set("receiveBufferBytes", mi.receive_buffer_bytes);
    o.Set("receiveBufferForced", mi.receive_buffer_forced);
    o.Set("eventsPath", mi.ebpf ? "ebpf" : "netlink");
    o.Set("eventsPathReason",
          mi.ebpf ? info.Env().Null() : Napi::String::New(info.Env(), mi.ebpf_unavailable));
    return o;
  }

  // Stops the reader thread and closes the channel. Also the environment cleanup hook, so a
  // terminated worker or an exiting process never leaves the thread running.
  void shutdown() {
    if (!monitor_) return;
    monitor_->stop();
    monitor_.reset();
    channel_.close();
  }

  // Reader thread.
  void on_sample(const ctmon::IntervalSample& sample, const ctmon::TableSnapshot& table,
                 const ctmon::NamespaceSettings& settings) override {
    Record r;
    r.is_sample = true;
    r.sample = sample;
    r.table = table;
    r.settings = settings;
    channel_.push(std::move(r));
  }
  void on_error(const ctmon::Status& error) override {
    Record r;
    r.error = error;
    channel_.push(std::move(r));
  }

  static inline std::atomic<int> live_{0};
  ctmon::MonitorConfig config_;
  std::unique_ptr<ctmon::Monitor> monitor_;
  Napi::FunctionReference on_records_;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  RecordChannel<Record> channel_{records_to_js};
};

}  // namespace

Napi::Function define_native_monitor(Napi::Env env) { return NativeMonitor::Define(env); }
int live_native_monitors() { return NativeMonitor::live(); }

}  // namespace ctmon_binding
