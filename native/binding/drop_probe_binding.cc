// drop_probe_binding.cc — NativeDropProbe: the eBPF table-full drop probe
// (native/ebpf/drop_probe.h) for JS, plus dropProbeAvailable() and the benchmarks'
// _bpfRunTimeStats(). All calls run on the JS thread and are a few map syscalls each.
#include <arpa/inet.h>
#include <napi.h>

#include <string>

#include "base/fd.h"
#include "binding/binding.h"
#include "binding/convert.h"
#include "ebpf/drop_probe.h"

namespace ctmon_binding {
namespace {

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
      options.max_flows =
          info[0].As<Napi::Object>().Get("maxFlows").As<Napi::Number>().Uint32Value();
    const ctmon::Status st = probe_.open(options);
    if (!st.ok())
      throw native_error(env, ctmon::Status{st.code, st.syscall, "attach the drop probe",
                                            "cannot attach the drop probe: " + st.text()});
  }

 private:
  void check(Napi::Env env, const ctmon::Status& st, const char* what) {
    if (!st.ok()) throw native_error(env, st.in(what));
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
    }),
          "read the namespace map");
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
    }),
          "read the flow map");
    return out;
  }

  Napi::Value Forget(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (probe_.is_open())
      check(env, probe_.forget_namespace(info[0].ToNumber().Uint32Value()), "forget a namespace");
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ctmon::ProgramStats ps;
    if (probe_.is_open())
      check(env, probe_.read_program_stats(ps), "read the program's statistics");
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

// _dropProgram() -> { instructions, verifier: { processedInsns, summary } }: attaches the drop
// probe asking the verifier for its statistics, and detaches it. Throws with the reason (which
// names the drop_program.cc line of a refused instruction) when it cannot.
Napi::Value DropProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ctmon::DropProbe probe;
  ctmon::VerifierStats stats;
  const ctmon::Status st = probe.open({}, &stats);
  if (!st.ok()) throw native_error(env, st.in("attach the drop probe"));
  ctmon::ProgramStats ps;
  const ctmon::Status read = probe.read_program_stats(ps);
  probe.close();
  if (!read.ok()) throw native_error(env, read.in("read the program's statistics"));
  Napi::Object out = Napi::Object::New(env);
  out.Set("instructions", ps.instructions);
  Napi::Object v = Napi::Object::New(env);
  v.Set("processedInsns", static_cast<double>(stats.processed_insns));
  v.Set("summary", stats.summary);
  out.Set("verifier", v);
  return out;
}

// _bpfRunTimeStats(on): holds (or releases) BPF_ENABLE_STATS, so programs' run_time_ns and
// run_cnt accumulate. Benchmarks only: the kernel-wide switch goes with the descriptor.
Napi::Value BpfRunTimeStats(const Napi::CallbackInfo& info) {
  static ctmon::Fd stats;
  if (info[0].ToBoolean().Value()) {
    if (stats.get() < 0) {
      const ctmon::Status st = ctmon::DropProbe::enable_run_time_stats(stats);
      if (!st.ok()) throw native_error(info.Env(), st.in("BPF_ENABLE_STATS"));
    }
  } else {
    stats.reset();
  }
  return info.Env().Undefined();
}

}  // namespace

void export_drop_probe(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeDropProbe", NativeDropProbe::Define(env));
  exports.Set("dropProbeAvailable",
              Napi::Function::New(
                  env,
                  [](const Napi::CallbackInfo& info) {
                    const ctmon::Status st = ctmon::DropProbe::check_available();
                    return Napi::String::New(info.Env(), st.ok() ? "" : st.text());
                  },
                  "dropProbeAvailable"));
  exports.Set("_dropProgram", Napi::Function::New(env, DropProgram, "_dropProgram"));
  exports.Set("_bpfRunTimeStats", Napi::Function::New(env, BpfRunTimeStats, "_bpfRunTimeStats"));
}

}  // namespace ctmon_binding
