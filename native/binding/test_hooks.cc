// test_hooks.cc — the addon's test seams, exported with a leading underscore and typed in
// src/native.ts (never re-exported by the package): the decoder on captured bytes, the
// aggregator and the tracked table driven with an injected clock, fault injection, and the
// count of live NativeMonitor objects, and the node monitor's header classifier. JS thread only.
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <malloc.h>
#include <napi.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/fault_injection.h"
#include "base/proc_text.h"
#include "binding/binding.h"
#include "binding/convert.h"
#include "ctnetlink/aggregator.h"
#include "ctnetlink/count_filter.h"
#include "ctnetlink/decoder.h"
#include "ctnetlink/snapshot.h"
#include "ctnetlink/table.h"
#include "ebpf/event_counter.h"

namespace ctmon_binding {
namespace {

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

// _classifyHeader(buffer) -> 'new' | 'destroy' | 'other': what the node monitor's filter path
// counts a datagram as (count_filter.h), from its first bytes.
Napi::Value ClassifyHeader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "_classifyHeader(buffer)");
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  switch (ctmon::classify_event_header(buf.Data(), buf.Length())) {
    case ctmon::HeaderKind::kNew:
      return Napi::String::New(env, "new");
    case ctmon::HeaderKind::kDestroy:
      return Napi::String::New(env, "destroy");
    default:
      return Napi::String::New(env, "other");
  }
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
// {op:'observe-drops', wall, drops} (a reading while draining),
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
    } else if (op == "observe-drops") {
      agg.observe_socket_drops(
          static_cast<int64_t>(step.Get("wall").As<Napi::Number>().DoubleValue()),
          step.Get("drops").As<Napi::Number>().Uint32Value());
    } else if (op == "close") {
      const ctmon::IntervalSample s =
          agg.close(static_cast<int64_t>(step.Get("t").As<Napi::Number>().DoubleValue()),
                    static_cast<int64_t>(step.Get("wall").As<Napi::Number>().DoubleValue()),
                    reading_from_js(step, cpus, global), step.Get("final").ToBoolean());
      JsWriter w(env);
      out.Set(n++, Napi::Value(env, sample_to_js(w, s, ctmon::TableSnapshot{},
                                                 ctmon::NamespaceSettings{}, 0)));
    } else {
      throw Napi::TypeError::New(env, "_aggregate: unknown op " + op);
    }
  }
  return out;
}

// _table(steps) -> results. Drives a ConntrackTable with messages and an injected clock:
// {op:'events', bytes, now}, {op:'dump', bytes, now} (bytes: netlink messages),
// {op:'begin-dump'}, {op:'end-dump'}, {op:'counts', now, verified}.
// end-dump yields {removed}; counts yields the table's tally at `now` (ms) with the latest
// verification at `verified`: the listed counts, plus { unverified, survivors }.
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
    const auto number = [&](const char* name) {
      return step.Get(name).IsNumber()
                 ? static_cast<uint64_t>(step.Get(name).As<Napi::Number>().DoubleValue())
                 : 0;
    };
    const uint64_t now = number("now");
    if (op == "events" || op == "dump") {
      Napi::Buffer<uint8_t> bytes = step.Get("bytes").As<Napi::Buffer<uint8_t>>();
      ctmon::MessageWalker walker(bytes.Data(), bytes.Length());
      ctmon::Message msg;
      ctmon::Conntrack ct;
      while (walker.next(msg)) {
        if (ctmon::decode_conntrack(msg, ct) != ctmon::DecodeStatus::kOk) continue;
        if (op == "events")
          table.apply_event(ct, now);
        else
          table.apply_dump_entry(ct, now);
      }
    } else if (op == "begin-dump") {
      table.begin_dump();
    } else if (op == "end-dump") {
      Napi::Object o = Napi::Object::New(env);
      o.Set("removed", static_cast<double>(table.end_dump()));
      out.Set(n++, o);
    } else if (op == "counts") {
      ctmon::TableTally t;
      table.tally(now, number("verified"), t);
      JsWriter w(env);
      Napi::Object o = Napi::Value(env, table_counts_to_js(w, t.listed)).As<Napi::Object>();
      o.Set("unverified", t.unverified.entries);
      o.Set("survivors", t.survivors);
      out.Set(n++, o);
    } else {
      throw Napi::TypeError::New(env, "_table: unknown op " + op);
    }
  }
  return out;
}

Napi::Value event_counters_to_js(Napi::Env env, const ct_counters& c) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array messages = Napi::Array::New(env, CT_KIND_COUNT);
  for (uint32_t k = 0; k < CT_KIND_COUNT; ++k) {
    Napi::Array row = Napi::Array::New(env, CT_CLASS_COUNT);
    for (uint32_t c2 = 0; c2 < CT_CLASS_COUNT; ++c2)
      row.Set(c2, static_cast<double>(c.messages[k][c2]));
    messages.Set(k, row);
  }
  o.Set("messages", messages);
  Napi::Array diagnostics = Napi::Array::New(env, CT_DIAG_COUNT);
  for (uint32_t d = 0; d < CT_DIAG_COUNT; ++d)
    diagnostics.Set(d, static_cast<double>(c.diagnostics[d]));
  o.Set("diagnostics", diagnostics);
  return o;
}

uint64_t monotonic_ds() { return static_cast<uint64_t>(ctmon::mono_ns()) / CT_DECISECOND_NS; }

// A netlink socket the event program filters, and one that sends it messages: each message
// reaches the program as a kernel event does (the filter runs on the receiving socket, so the
// program knows it by its cookie, as the monitor registers it), and what arrives was passed.
// Root may send from one user socket to another's port.
class FilteredSocket {
 public:
  ctmon::Status open(ctmon::EventCounter& counter, bool register_namespace, bool listing) {
    receiver_ =
        ctmon::Fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER));
    sender_ = ctmon::Fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
    if (receiver_.get() < 0 || sender_.get() < 0) return ctmon::Status::from_errno("socket");
    sockaddr_nl self{};
    self.nl_family = AF_NETLINK;
    socklen_t len = sizeof self;
    if (::bind(receiver_.get(), reinterpret_cast<sockaddr*>(&self), sizeof self) != 0 ||
        ::getsockname(receiver_.get(), reinterpret_cast<sockaddr*>(&to_), &len) != 0)
      return ctmon::Status::from_errno("bind");
    if (register_namespace) {
      uint64_t cookie = 0;
      ctmon::Status st = counter.register_namespace(receiver_.get(), 0, cookie);
      if (st.ok() && listing) st = counter.set_listing(cookie, 0, true);
      if (!st.ok()) return st;
    }
    return counter.attach(receiver_.get());
  }

  // Sends one message; `passed`: whether the filter let it through to the receiver.
  ctmon::Status deliver(const uint8_t* message, size_t length, bool& passed) {
    if (::sendto(sender_.get(), message, length, 0, reinterpret_cast<const sockaddr*>(&to_),
                 sizeof to_) < 0)
      return ctmon::Status::from_errno("sendto");
    // The filter ran inside sendto: the message is queued now or never.
    const ssize_t got =
        ::recv(receiver_.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (got < 0 && errno != EAGAIN) return ctmon::Status::from_errno("recv");
    passed = got > 0;
    return ctmon::Status{};
  }

 private:
  ctmon::Fd receiver_, sender_;
  sockaddr_nl to_{};
  std::vector<uint8_t> buffer_ = std::vector<uint8_t>(65536);
};

// _eventProgram(messages, { variant?, perMessage?, listing?, maxFlows?, seed?, verifierStats? })
// -> { verdicts, counters, counted?, seed, flowBuckets, flows, nowDs, verifier? }: loads an event
// socket filter (native/ebpf/event_counter.h; variant 'count-only' or 'monitor'), attaches it to
// a netlink socket and sends it each message in turn (FilteredSocket), then reads its maps.
// verdicts: 0 for a message dropped, 0xffffffff for one passed. For the monitor variant the
// socket is registered as namespace 0, and `listing` marks a listing under way. flows: every
// slot the table holds, { key, deadlineDs, class, tcpState, touched, ns }; gone: keys ct_gone
// recorded. Needs CAP_BPF and CAP_NET_ADMIN; throws with the reason otherwise.
Napi::Value EventProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "_eventProgram(messages, options)");
  Napi::Array messages = info[0].As<Napi::Array>();
  Napi::Object opts = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  ctmon::EventCounterOptions options;
  if (opts.Get("variant").IsString() && opts.Get("variant").ToString().Utf8Value() == "monitor")
    options.variant = ctmon::EventProgramVariant::kMonitor;
  if (opts.Get("maxFlows").IsNumber())
    options.max_flows = opts.Get("maxFlows").ToNumber().Uint32Value();
  if (opts.Get("seed").IsBigInt()) {
    bool lossless = false;
    options.key_seed = opts.Get("seed").As<Napi::BigInt>().Uint64Value(&lossless);
  }
  const bool monitor = options.variant == ctmon::EventProgramVariant::kMonitor;
  ctmon::EventCounter counter;
  ctmon::VerifierStats stats;
  const bool want_stats = opts.Get("verifierStats").ToBoolean();
  const ctmon::Status st = counter.open(options, want_stats ? &stats : nullptr);
  if (!st.ok()) throw native_error(env, st.in("load the event program"));
  const auto check = [&](const ctmon::Status& s, const char* what) {
    if (!s.ok()) throw native_error(env, s.in(what));
  };
  FilteredSocket socket;
  check(socket.open(counter, monitor, opts.Get("listing").ToBoolean()), "attach the event program");
  const bool per_message = opts.Get("perMessage").ToBoolean();
  Napi::Array verdicts = Napi::Array::New(env, messages.Length());
  Napi::Array counted = Napi::Array::New(env, messages.Length());
  ct_counters counters, before{};
  for (uint32_t i = 0; i < messages.Length(); ++i) {
    if (!messages.Get(i).IsBuffer()) throw Napi::TypeError::New(env, "messages are Buffers");
    Napi::Buffer<uint8_t> bytes = messages.Get(i).As<Napi::Buffer<uint8_t>>();
    bool passed = false;
    check(socket.deliver(bytes.Data(), bytes.Length(), passed), "deliver a message");
    verdicts.Set(i, passed ? 4294967295.0 : 0.0);
    if (!per_message) continue;
    // Which messages[kind][class] this message added to: [kind, class], or null.
    check(counter.read(0, counters), "read the event counters");
    Napi::Value which = env.Null();
    for (uint32_t k = 0; k < CT_KIND_COUNT; ++k)
      for (uint32_t c2 = 0; c2 < CT_CLASS_COUNT; ++c2)
        if (counters.messages[k][c2] != before.messages[k][c2]) {
          Napi::Array pair = Napi::Array::New(env, 2);
          pair.Set(0u, k);
          pair.Set(1u, c2);
          which = pair;
        }
    counted.Set(i, which);
    before = counters;
  }
  check(counter.read(0, counters), "read the event counters");
  Napi::Object out = Napi::Object::New(env);
  out.Set("verdicts", verdicts);
  if (per_message) out.Set("counted", counted);
  out.Set("counters", event_counters_to_js(env, counters));
  if (want_stats) {
    Napi::Object v = Napi::Object::New(env);
    v.Set("processedInsns", static_cast<double>(stats.processed_insns));
    v.Set("summary", stats.summary);
    out.Set("verifier", v);
  }
  if (!monitor) return out;

  out.Set("seed", Napi::BigInt::New(env, static_cast<uint64_t>(counter.key_seed())));
  out.Set("flowBuckets", counter.flow_buckets());
  out.Set("nowDs", static_cast<double>(monotonic_ds()));
  Napi::Array flows = Napi::Array::New(env);
  Napi::Array gone = Napi::Array::New(env);
  for (uint32_t b = 0; b < counter.flow_buckets(); ++b)
    for (const ct_flow_slot& slot : counter.table()[b].slots) {
      if (slot.key == 0) continue;
      Napi::Object f = Napi::Object::New(env);
      f.Set("key", Napi::BigInt::New(env, static_cast<uint64_t>(slot.key)));
      f.Set("deadlineDs", slot.deadline_ds);
      f.Set("class", CT_META_CLASS(slot.meta));
      f.Set("tcpState", CT_META_TCP_STATE(slot.meta));
      f.Set("touched", (slot.meta & CT_META_TOUCHED) != 0);
      f.Set("ns", CT_META_NS(slot.meta));
      flows.Set(flows.Length(), f);
      if (counter.gone(slot.key)) gone.Set(gone.Length(), f.Get("key"));
    }
  out.Set("flows", flows);
  // Keys ct_gone holds that no slot has: what _flowKey computes for the messages tells them.
  Napi::Array keys = opts.Get("goneKeys").IsArray() ? opts.Get("goneKeys").As<Napi::Array>()
                                                    : Napi::Array::New(env);
  Napi::Array gone_of = Napi::Array::New(env);
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    bool lossless = false;
    gone_of.Set(i, counter.gone(keys.Get(i).As<Napi::BigInt>().Uint64Value(&lossless)));
  }
  out.Set("goneOf", gone_of);
  return out;
}

// _flowKey(message, seed, ns = 0) -> the flow key the monitor's event program gives the
// message's entry (ct_flow_key of native/ebpf/ct_events.h over tuple_of()), computed from the
// decoder's view; null when the message does not decode.
Napi::Value FlowKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer() || !info[1].IsBigInt())
    throw Napi::TypeError::New(env, "_flowKey(message, seed, ns?)");
  Napi::Buffer<uint8_t> bytes = info[0].As<Napi::Buffer<uint8_t>>();
  bool lossless = false;
  const uint64_t seed = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  const uint16_t ns =
      info[2].IsNumber() ? static_cast<uint16_t>(info[2].ToNumber().Uint32Value()) : 0;
  ctmon::MessageWalker walker(bytes.Data(), bytes.Length());
  ctmon::Message msg;
  ctmon::Conntrack ct;
  if (!walker.next(msg) || ctmon::decode_conntrack(msg, ct) != ctmon::DecodeStatus::kOk)
    return env.Null();
  const ct_tuple t = ctmon::tuple_of(ct, ns);
  return Napi::BigInt::New(env, static_cast<uint64_t>(ct_flow_key(seed, &t)));
}

// _groupSnapshot(datagrams, limit, { expectedEntries?, maxKeys? }) -> the report of
// SnapshotGrouper over dump datagrams (Buffers of netlink messages), as NativeSnapshot
// resolves it, plus { ignored }: messages that were not conntrack entries (netlink control
// messages such as the NLMSG_DONE that ends a dump aside).
Napi::Value GroupSnapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "_groupSnapshot(datagrams, limit, options?)");
  Napi::Array datagrams = info[0].As<Napi::Array>();
  size_t expected = 0;
  size_t max_keys = ctmon::kMaxSnapshotKeys;
  if (info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    if (o.Get("expectedEntries").IsNumber())
      expected = o.Get("expectedEntries").As<Napi::Number>().Uint32Value();
    if (o.Get("maxKeys").IsNumber()) max_keys = o.Get("maxKeys").As<Napi::Number>().Uint32Value();
  }
  ctmon::SnapshotGrouper grouper(0x5eed, expected, max_keys);
  uint32_t ignored = 0;
  for (uint32_t i = 0; i < datagrams.Length(); ++i) {
    Napi::Buffer<uint8_t> bytes = datagrams.Get(i).As<Napi::Buffer<uint8_t>>();
    ctmon::MessageWalker walker(bytes.Data(), bytes.Length());
    ctmon::Message msg;
    ctmon::Conntrack ct;
    while (walker.next(msg)) {
      if (msg.type < NLMSG_MIN_TYPE) continue;  // NLMSG_DONE ending the dump, errors
      if (ctmon::decode_conntrack(msg, ct) != ctmon::DecodeStatus::kOk || !grouper.add(ct))
        ++ignored;
    }
  }
  JsWriter w(env);
  napi_value report = top_report_to_js(w, grouper.top(info[1].As<Napi::Number>().Uint32Value()));
  w.set(report, "ignored", w.number(ignored));
  return Napi::Value(env, report);
}

// _injectFaults({netlinkProtocol?, ctnetlinkSubsystem?, eventProgramType?, openNamespaceDelayMs?,
// dropProgramOffsetDelta?})
// -> the previous values. Test-only: see fault_injection.h. Process-wide, so tests restore what
// it returns.
Napi::Value InjectFaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "_injectFaults(faults)");
  Napi::Object in = info[0].As<Napi::Object>();
  ctmon::FaultInjection& faults = ctmon::fault_injection();
  Napi::Object previous = Napi::Object::New(env);
  previous.Set("netlinkProtocol", faults.netlink_protocol.load());
  previous.Set("ctnetlinkSubsystem", faults.ctnetlink_subsystem.load());
  previous.Set("eventProgramType", faults.event_program_type.load());
  previous.Set("openNamespaceDelayMs", faults.open_namespace_delay_ms.load());
  previous.Set("dropProgramOffsetDelta", faults.drop_program_offset_delta.load());
  if (in.Has("netlinkProtocol"))
    faults.netlink_protocol = in.Get("netlinkProtocol").ToNumber().Int32Value();
  if (in.Has("ctnetlinkSubsystem"))
    faults.ctnetlink_subsystem = in.Get("ctnetlinkSubsystem").ToNumber().Int32Value();
  if (in.Has("eventProgramType"))
    faults.event_program_type = in.Get("eventProgramType").ToNumber().Int32Value();
  if (in.Has("openNamespaceDelayMs"))
    faults.open_namespace_delay_ms = in.Get("openNamespaceDelayMs").ToNumber().Int32Value();
  if (in.Has("dropProgramOffsetDelta"))
    faults.drop_program_offset_delta = in.Get("dropProgramOffsetDelta").ToNumber().Int32Value();
  return previous;
}

// _parseSockstat(text) -> the native net/sockstat TIME_WAIT parser's answer (-1: none).
Napi::Value ParseSockstat(const Napi::CallbackInfo& info) {
  const std::string text = info[0].ToString().Utf8Value();
  return Napi::Number::New(info.Env(),
                           static_cast<double>(ctmon::parse_sockstat_time_wait(text.c_str())));
}

// _nativeHeapBytes() -> bytes the C/C++ allocator has handed out and not had back (glibc's
// mallinfo2: in-use arena chunks plus mmapped blocks), across all threads. Unlike RSS it does
// not count pages the allocator keeps after a free, so a flat value means nothing leaks.
Napi::Value NativeHeapBytes(const Napi::CallbackInfo& info) {
  const struct mallinfo2 m = mallinfo2();
  return Napi::Number::New(info.Env(), static_cast<double>(m.uordblks + m.hblkhd));
}

}  // namespace

void export_test_hooks(Napi::Env env, Napi::Object exports) {
  exports.Set("_decode", Napi::Function::New(env, Decode, "_decode"));
  exports.Set("_classifyHeader", Napi::Function::New(env, ClassifyHeader, "_classifyHeader"));
  exports.Set("_aggregate", Napi::Function::New(env, Aggregate, "_aggregate"));
  exports.Set("_table", Napi::Function::New(env, Table, "_table"));
  exports.Set("_groupSnapshot", Napi::Function::New(env, GroupSnapshot, "_groupSnapshot"));
  exports.Set("_liveSnapshots", Napi::Function::New(
                                    env,
                                    [](const Napi::CallbackInfo& info) {
                                      return Napi::Number::New(info.Env(), live_native_snapshots());
                                    },
                                    "_liveSnapshots"));
  exports.Set("_eventProgram", Napi::Function::New(env, EventProgram, "_eventProgram"));
  exports.Set("_flowKey", Napi::Function::New(env, FlowKey, "_flowKey"));
  exports.Set("_injectFaults", Napi::Function::New(env, InjectFaults, "_injectFaults"));
  exports.Set("_parseSockstat", Napi::Function::New(env, ParseSockstat, "_parseSockstat"));
  exports.Set("_nativeHeapBytes", Napi::Function::New(env, NativeHeapBytes, "_nativeHeapBytes"));
  exports.Set("_liveMonitors", Napi::Function::New(
                                   env,
                                   [](const Napi::CallbackInfo& info) {
                                     return Napi::Number::New(info.Env(), live_native_monitors());
                                   },
                                   "_liveMonitors"));
}

}  // namespace ctmon_binding
