// snapshot_binding.cc — NativeSnapshot: one table snapshot (native/ctnetlink/snapshot_dump.h)
// for JS, as a Promise.
//
// The dump runs on the runner's own thread, never a libuv pool thread: it enters the
// namespace with setns and ends with the snapshot. A thread-safe function (no JS callback,
// one call) brings the outcome back to the JS thread, which resolves the promise with the
// grouped report: a few dozen JS objects, built once, whatever the table holds.
//
//   const s = new NativeSnapshot({ netnsPath, limit, receiveTimeoutMs, deadlineMs });
//   s.start()   -> Promise<{ entries, evictable, unassured, tcpClosing, bySource, ..., endWallMs,
//                          cost }>
//   s.cancel()  the dump stops at its next datagram; the promise rejects with ECANCELED
//   s.unref()   a pending snapshot does not keep the process alive
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "binding/binding.h"
#include "binding/convert.h"
#include "ctnetlink/snapshot_dump.h"

namespace ctmon_binding {
namespace {

class NativeSnapshot;
void deliver(Napi::Env env, Napi::Function, NativeSnapshot* self, void*);
using Delivery = Napi::TypedThreadSafeFunction<NativeSnapshot, void, deliver>;

class NativeSnapshot : public Napi::ObjectWrap<NativeSnapshot> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeSnapshot",
                       {InstanceMethod<&NativeSnapshot::Start>("start"),
                        InstanceMethod<&NativeSnapshot::Cancel>("cancel"),
                        InstanceMethod<&NativeSnapshot::JsUnref>("unref")});
  }

  // Options arrive validated by src/options.ts; this only guards against misuse.
  explicit NativeSnapshot(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "NativeSnapshot(options)");
    Napi::Object opts = info[0].As<Napi::Object>();
    ctmon::SnapshotConfig config;
    if (opts.Get("netnsPath").IsString())
      config.netns_path = opts.Get("netnsPath").As<Napi::String>().Utf8Value();
    config.limit = opts.Get("limit").As<Napi::Number>().Uint32Value();
    config.receive_timeout_ms = opts.Get("receiveTimeoutMs").As<Napi::Number>().Int32Value();
    config.deadline_ms = opts.Get("deadlineMs").As<Napi::Number>().Int32Value();
    runner_ = std::make_unique<ctmon::SnapshotRunner>(std::move(config));
    ++live_;
  }

  ~NativeSnapshot() override {
    runner_.reset();  // cancels and joins, should the environment go away mid-dump
    --live_;
  }

  static int live() { return live_.load(); }

  // JS thread, on the thread-safe function's call: settles the promise.
  void settle(Napi::Env env) {
    const ctmon::SnapshotOutcome& o = runner_->outcome();
    JsWriter w(env);
    if (o.ok) {
      napi_value report = top_report_to_js(w, o.report);
      w.set(report, "endWallMs", w.number(static_cast<double>(o.end_wall_ms)));
      napi_value cost = w.object();
      w.set(cost, "wallMs", w.number(o.cost.wall_ms));
      w.set(cost, "userMs", w.number(o.cost.user_ms));
      w.set(cost, "systemMs", w.number(o.cost.system_ms));
      w.set(cost, "decodeMs", w.number(o.cost.decode_ms));
      w.set(cost, "groupMs", w.number(o.cost.group_ms));
      w.set(cost, "datagrams", w.number(static_cast<double>(o.cost.datagrams)));
      w.set(cost, "messages", w.number(static_cast<double>(o.cost.messages)));
      w.set(cost, "malformed", w.number(static_cast<double>(o.cost.malformed)));
      w.set(cost, "groupBytes", w.number(static_cast<double>(o.cost.group_bytes)));
      w.set(report, "cost", cost);
      if (w.ok()) napi_resolve_deferred(env, deferred_, report);
    } else {
      napi_value error = error_to_js(w, o.error);
      if (w.ok()) napi_reject_deferred(env, deferred_, error);
    }
  }

  // JS thread, once the runner's thread has released the thread-safe function (or the
  // environment tears down): the thread has ended or is about to.
  void finished() {
    runner_->cancel();
    runner_->join();
    running_ = false;
    if (hooked_) {
      hooked_ = false;
      cleanup_.Remove(Env());
    }
    ObjectWrap::Unref();  // matches the Ref() in Start
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (started_) throw Napi::Error::New(env, "a NativeSnapshot starts once");
    started_ = true;
    napi_value promise;
    if (napi_create_promise(env, &deferred_, &promise) != napi_ok)
      throw Napi::Error::New(env, "cannot create a promise");
    delivery_ = Delivery::New(env, "conntrack-snapshot", 0, 1, this,
                              [](Napi::Env, void*, NativeSnapshot* self) { self->finished(); });
    ObjectWrap::Ref();  // alive until the thread-safe function is finalized
    running_ = true;
    ctmon::Status error;
    const bool started = runner_->start(
        [this] {
          delivery_.BlockingCall();  // napi_closing while the environment tears down: fine
          delivery_.Release();
        },
        error);
    if (!started) {
      delivery_.Release();
      throw native_error(env, error);
    }
    // A worker or the process going away cancels the dump and waits for its thread.
    hooked_ = true;
    cleanup_ = env.AddCleanupHook(std::function<void()>([this] {
      hooked_ = false;
      runner_->cancel();
      runner_->join();
    }));
    return Napi::Value(env, promise);
  }

  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    runner_->cancel();
    return info.Env().Undefined();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    if (running_) delivery_.Unref(info.Env());
    return info.Env().Undefined();
  }

  static inline std::atomic<int> live_{0};
  std::unique_ptr<ctmon::SnapshotRunner> runner_;
  Delivery delivery_;
  napi_deferred deferred_ = nullptr;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  bool started_ = false;
  bool running_ = false;
  bool hooked_ = false;
};

void deliver(Napi::Env env, Napi::Function, NativeSnapshot* self, void*) {
  // No environment: it is tearing down and nobody waits for the promise any more.
  if (static_cast<napi_env>(env) != nullptr) self->settle(env);
}

}  // namespace

Napi::Function define_native_snapshot(Napi::Env env) { return NativeSnapshot::Define(env); }
int live_native_snapshots() { return NativeSnapshot::live(); }

}  // namespace ctmon_binding
