// record_channel.h — how a reader thread's records reach JS without ever waiting on it: the
// thread pushes into a bounded queue and schedules one thread-safe-function call only when none
// is pending; the JS thread takes everything queued by then, converts it (the binding's
// `convert`) and calls the JS callback once. If JS stalls for kMaxQueued records, further ones
// are dropped and counted (the bindings report the count). Both NativeMonitor and
// NativeNodeMonitor deliver through one.
// Binding files only: push() on the reader thread, the rest on the JS thread.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "binding/js_writer.h"

namespace ctmon_binding {

template <typename Record>
class RecordChannel {
 public:
  static constexpr size_t kMaxQueued = 1024;
  // Turns the records taken (and the count dropped since the start) into a JS array.
  using Convert = napi_value (*)(JsWriter& w, const std::vector<Record>& records, uint64_t dropped);

  explicit RecordChannel(Convert convert) : convert_(convert) {}

  // JS thread. Opens the delivery to `on_records`, keeping `owner` (the ObjectWrap whose reader
  // pushes here) alive until the thread-safe function is finalized. Unreferenced channels do
  // not keep the event loop alive.
  template <typename Owner>
  void open(Napi::Env env, Napi::Function on_records, const char* name, Owner* owner) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, on_records, name, 0, 1, owner,
                                          [](Napi::Env, Owner* self) { self->Unref(); });
    owner->Ref();  // matched in the finalizer above
    open_ = true;
    if (!referenced_) tsfn_.Unref(env);
  }
  // JS thread. After the reader thread has stopped: no more calls are scheduled.
  void close() {
    if (open_) tsfn_.Release();
    open_ = false;
  }
  // JS thread: whether a pending delivery keeps the event loop alive (ref()/unref() in JS).
  void set_referenced(Napi::Env env, bool referenced) {
    referenced_ = referenced;
    if (!open_) return;
    if (referenced)
      tsfn_.Ref(env);
    else
      tsfn_.Unref(env);
  }

  // Reader thread. At most one call is pending; JS takes everything queued by then.
  void push(Record&& r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() >= kMaxQueued) {
        ++dropped_;
        return;
      }
      queue_.push_back(std::move(r));
      if (notify_pending_) return;
      notify_pending_ = true;
    }
    tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function on_records) {
      // While the environment tears down, pending calls run with no env, or with one that can
      // no longer run JS (at any moment, for a terminated worker): plain C calls whose failure
      // just means there is nothing to deliver to. The TypeScript layer never lets a
      // listener's exception reach here (it rethrows them on the next tick).
      if (static_cast<napi_env>(env) == nullptr || on_records.IsEmpty()) return;
      JsWriter w(env);
      napi_value records = take(w);
      napi_value receiver = w.null();
      if (w.ok() && records != nullptr)
        napi_call_function(env, receiver, on_records, 1, &records, nullptr);
    });
  }

  // JS thread. Everything queued, converted; nullptr when there was nothing (or JS could not
  // run: w.ok() is false). stop() returns it so that the final records come before it resolves.
  napi_value take(JsWriter& w) {
    std::vector<Record> records;
    uint64_t dropped;
    {
      std::lock_guard<std::mutex> lock(mu_);
      records.swap(queue_);
      notify_pending_ = false;
      dropped = dropped_;
    }
    if (records.empty()) return nullptr;
    return convert_(w, records, dropped);
  }

 private:
  Convert convert_;
  Napi::ThreadSafeFunction tsfn_;
  bool open_ = false;
  bool referenced_ = true;
  std::mutex mu_;
  std::vector<Record> queue_;
  uint64_t dropped_ = 0;
  bool notify_pending_ = false;
};

}  // namespace ctmon_binding
