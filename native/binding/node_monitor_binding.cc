// node_monitor_binding.cc — NativeNodeMonitor: a ctmon::NodeMonitor
// (native/ctnetlink/node_monitor.h) for JS: one reader thread for every namespace of the node.
// add() and remove() only queue a request for the reader thread; their outcomes, the
// per-interval reports and errors reach JS through a RecordChannel (record_channel.h), so
// neither side ever waits on the other.
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "binding/binding.h"
#include "binding/convert.h"
#include "binding/record_channel.h"
#include "ctnetlink/node_monitor.h"

namespace ctmon_binding {
namespace {

struct NodeRecord {
  enum Kind { kOpened, kReport, kError } kind = kError;
  ctmon::NamespaceOpened opened;
  std::vector<ctmon::NamespaceInterval> report;
  bool final = false;
  uint64_t id = 0;
  ctmon::Status error;
};

const char* path_name(ctmon::CountingPath path) {
  return path == ctmon::CountingPath::kKernel ? "ebpf" : "filter";
}

napi_value records_to_js(JsWriter& w, const std::vector<NodeRecord>& records, uint64_t dropped) {
  napi_value out = w.array(static_cast<uint32_t>(records.size()));
  for (uint32_t i = 0; i < records.size(); ++i) {
    const NodeRecord& r = records[i];
    napi_value o = w.object();
    switch (r.kind) {
      case NodeRecord::kOpened:
        w.set(o, "type", w.string("opened"));
        w.set(o, "id", w.number(static_cast<double>(r.opened.id)));
        w.set(o, "ok", w.boolean(r.opened.ok));
        w.set(o, "counting", w.string(path_name(r.opened.path)));
        w.set(o, "fallbackReason",
              r.opened.fallback_reason.empty() ? w.null() : w.string(r.opened.fallback_reason));
        w.set(o, "receiveBufferBytes", w.number(r.opened.receive_buffer_bytes));
        w.set(o, "error", r.opened.ok ? w.null() : error_to_js(w, r.opened.error));
        break;
      case NodeRecord::kReport: {
        w.set(o, "type", w.string("report"));
        w.set(o, "final", w.boolean(r.final));
        w.set(o, "droppedRecords", w.number(static_cast<double>(dropped)));
        napi_value namespaces = w.array(static_cast<uint32_t>(r.report.size()));
        for (uint32_t n = 0; n < r.report.size(); ++n) {
          const ctmon::NamespaceInterval& ni = r.report[n];
          napi_value row = interval_to_js(w, ni.sample);
          w.set(row, "id", w.number(static_cast<double>(ni.id)));
          w.set(row, "counting", w.string(path_name(ni.path)));
          w.set(row, "counterFailed", w.boolean(ni.counter_failed));
          w.set(row, "eventsMode",
                w.nullable(ni.events_mode >= 0, static_cast<double>(ni.events_mode)));
          w.set(namespaces, n, row);
        }
        w.set(o, "namespaces", namespaces);
        break;
      }
      case NodeRecord::kError:
        w.set(o, "type", w.string("error"));
        w.set(o, "id", w.number(static_cast<double>(r.id)));
        w.set(o, "error", error_to_js(w, r.error));
        break;
    }
    w.set(out, i, o);
  }
  return out;
}

class NativeNodeMonitor : public Napi::ObjectWrap<NativeNodeMonitor>,
                          public ctmon::NodeMonitorListener {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeNodeMonitor",
                       {InstanceMethod<&NativeNodeMonitor::Start>("start"),
                        InstanceMethod<&NativeNodeMonitor::Stop>("stop"),
                        InstanceMethod<&NativeNodeMonitor::Add>("add"),
                        InstanceMethod<&NativeNodeMonitor::Remove>("remove"),
                        InstanceMethod<&NativeNodeMonitor::JsRef>("ref"),
                        InstanceMethod<&NativeNodeMonitor::JsUnref>("unref")});
  }

  // new NativeNodeMonitor({ intervalMs, receiveBufferBytes, counting }, onRecords)
  // Options arrive validated by src/options.ts; this only guards against misuse.
  explicit NativeNodeMonitor(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "NativeNodeMonitor(options, onRecords)");
    Napi::Object opts = info[0].As<Napi::Object>();
    config_.interval_ms = opts.Get("intervalMs").As<Napi::Number>().Int32Value();
    config_.receive_buffer_bytes = opts.Get("receiveBufferBytes").As<Napi::Number>().Int32Value();
    const std::string counting = opts.Get("counting").ToString().Utf8Value();
    config_.counting = counting == "ebpf"     ? ctmon::CountingMode::kKernel
                       : counting == "filter" ? ctmon::CountingMode::kFilter
                                              : ctmon::CountingMode::kAuto;
    on_records_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  ~NativeNodeMonitor() override { shutdown(); }

 private:
  // JS thread. Throws an Error with errno/syscall/context when the reader cannot start.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (on_records_.IsEmpty()) throw Napi::Error::New(env, "a NativeNodeMonitor starts once");
    channel_.open(env, on_records_.Value(), "conntrack-node-monitor", this);
    on_records_.Reset();  // the channel holds the callback from here on (see monitor_binding.cc)
    monitor_ = std::make_unique<ctmon::NodeMonitor>(config_, this);
    ctmon::Status error;
    if (!monitor_->start(error)) {
      monitor_.reset();
      channel_.close();
      throw native_error(env, error);
    }
    cleanup_ = env.AddCleanupHook(std::function<void()>([this] { shutdown(); }));
    return env.Undefined();
  }

  // JS thread. Stops the reader (which sends the final report) and returns the records not
  // yet delivered, so the caller sees the final report before stop() resolves.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!monitor_) return Napi::Array::New(env);
    shutdown();
    if (!cleanup_.IsEmpty()) cleanup_.Remove(env);
    JsWriter w(env);
    napi_value records = channel_.take(w);
    return w.ok() && records != nullptr ? Napi::Value(env, records) : Napi::Array::New(env);
  }

  // add(id, path, inode): queued; the outcome comes back as an 'opened' record.
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber())
      throw Napi::TypeError::New(env, "add(id, path, inode)");
    if (monitor_)
      monitor_->add(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()),
                    info[1].As<Napi::String>().Utf8Value(),
                    static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()));
    return env.Undefined();
  }

  // remove(id): queued; the namespace's sockets close when the reader takes it.
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "remove(id)");
    if (monitor_) monitor_->remove(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
    return env.Undefined();
  }

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    channel_.set_referenced(info.Env(), true);
    return info.Env().Undefined();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    channel_.set_referenced(info.Env(), false);
    return info.Env().Undefined();
  }

  // Also the environment cleanup hook: a terminated worker or an exiting process never
  // leaves the thread running.
  void shutdown() {
    if (!monitor_) return;
    monitor_->stop();
    monitor_.reset();
    channel_.close();
  }

  // Reader thread.
  void on_opened(const ctmon::NamespaceOpened& opened) override {
    NodeRecord r;
    r.kind = NodeRecord::kOpened;
    r.opened = opened;
    channel_.push(std::move(r));
  }
  void on_report(const std::vector<ctmon::NamespaceInterval>& namespaces, bool final) override {
    NodeRecord r;
    r.kind = NodeRecord::kReport;
    r.report = namespaces;
    r.final = final;
    channel_.push(std::move(r));
  }
  void on_error(uint64_t id, const ctmon::Status& error) override {
    NodeRecord r;
    r.kind = NodeRecord::kError;
    r.id = id;
    r.error = error;
    channel_.push(std::move(r));
  }

  ctmon::NodeMonitorConfig config_;
  std::unique_ptr<ctmon::NodeMonitor> monitor_;
  Napi::FunctionReference on_records_;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  RecordChannel<NodeRecord> channel_{records_to_js};
};

}  // namespace

Napi::Function define_native_node_monitor(Napi::Env env) { return NativeNodeMonitor::Define(env); }

}  // namespace ctmon_binding
