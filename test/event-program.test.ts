/**
 * The ctnetlink event socket filter (native/ebpf/ct_events.bpf.c), run by the real kernel on
 * messages captured from it (BPF_PROG_TEST_RUN through the _eventProgram hook). The expected
 * kind and protocol of each message come from how it was captured (the fixture's name and the
 * flow's socket addresses in index.json); the decoder gives them for altered messages.
 */
import { describe, expect, it } from 'vitest';
import { binding } from './helpers/binding';
import { fixtureIndex, fixtureNames, loadHexFixture } from './helpers/fixtures';
import { canRunIntegration } from './helpers/gate';
import { CLASSES, DIAG, KINDS, WHEEL_MAX_TIMEOUT_S, WHEEL_SLOTS } from './helpers/ct-events-header';

const index = fixtureIndex();
const flowFixtures = fixtureNames().filter((n) => !n.startsWith('stats-'));

function classOf(protocol: number): string {
  return protocol === 6 ? 'tcp' : protocol === 17 ? 'udp' : protocol === 1 || protocol === 58 ? 'icmp' : 'other';
}

/** messages[kind][class] as { 'new/udp': n } with the zeros left out. */
function nonzero(messages: number[][]): Record<string, number> {
  const out: Record<string, number> = {};
  messages.forEach((row, k) =>
    row.forEach((n, c) => {
      if (n) out[`${KINDS[k]}/${CLASSES[c]}`] = n;
    }),
  );
  return out;
}

describe.skipIf(!canRunIntegration)('event socket filter, count-only, in the kernel (BPF_PROG_TEST_RUN)', () => {
  it.each(flowFixtures)('%s: counted once per message by kind and protocol, and dropped', (name) => {
    const messages = loadHexFixture(name);
    const [, kind] = name.split('-');
    const { verdicts, counters } = binding._eventProgram(messages);
    expect(verdicts).toEqual(messages.map(() => 0));
    expect(nonzero(counters.messages)).toEqual({ [`${kind}/${classOf(index[name]!.protocol)}`]: messages.length });
    expect(counters.diagnostics.every((n) => n === 0)).toBe(true);
  });

  it('counts a whole flow of every protocol and family: inserts and deletes add up', () => {
    const messages = flowFixtures.flatMap((n) => loadHexFixture(n));
    const { counters } = binding._eventProgram(messages);
    const perKind = counters.messages.map((row) => row.reduce((a, b) => a + b, 0));
    const expected = KINDS.map((k) =>
      flowFixtures.filter((n) => n.endsWith(`-${k}`)).reduce((a, n) => a + loadHexFixture(n).length, 0),
    );
    console.info(`count-only: new/update/destroy ${perKind.join('/')} of ${messages.length} messages`);
    expect(perKind).toEqual(expected);
    expect(counters.messages.map((row) => row[4])).toEqual([0, 0, 0]); // no unknown layout
  });

  it('does not count replies of other message types (stats) nor messages shorter than the headers', () => {
    const stats = [...loadHexFixture('stats-cpu'), ...loadHexFixture('stats-global')];
    const tiny = loadHexFixture('udp4-new')[0]!.subarray(0, 19);
    const { verdicts, counters } = binding._eventProgram([...stats, tiny]);
    expect(verdicts.every((v) => v === 0)).toBe(true);
    expect(nonzero(counters.messages)).toEqual({});
    expect(counters.diagnostics[DIAG.notConntrack!]).toBe(stats.length);
    expect(counters.diagnostics[DIAG.short!]).toBe(1);
  });

  it('counts a message whose tuple is not laid out as ctnetlink lays it out by kind only', () => {
    const header = loadHexFixture('tcp6-new')[0]!.subarray(0, 20); // nlmsghdr + nfgenmsg only
    const renamed = Buffer.from(loadHexFixture('udp4-destroy')[0]!);
    renamed.writeUInt16LE(0x8003, 44 + 2); // CTA_TUPLE_PROTO's type is now CTA_TUPLE_ZONE
    const { counters } = binding._eventProgram([header, renamed]);
    expect(nonzero(counters.messages)).toEqual({ 'new/unknown': 1, 'destroy/unknown': 1 });
  });

  it('agrees with the decoder on 3,000 bit-flipped messages: same kind, same protocol or unknown', () => {
    const samples = flowFixtures.flatMap((n) => loadHexFixture(n));
    let seed = 4242;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const mutated = Array.from({ length: 3000 }, (_, i) => {
      const buf = Buffer.from(samples[i % samples.length]!);
      // The bytes the program reads: headers, the tuple's nest headers, the protocol byte.
      // (Flips further on can make a second CTA_PROTO_NUM, which the decoder reads last-wins.)
      const readBytes = buf[16] === 2 ? 53 : 77;
      for (let k = 0; k < 2; k++) {
        const pos = Math.floor(rand() * readBytes);
        buf[pos] = buf[pos]! ^ (1 << Math.floor(rand() * 8));
      }
      return buf;
    });
    const { counted } = binding._eventProgram(mutated, { perMessage: true });
    let exact = 0;
    let unknown = 0;
    mutated.forEach((m, i) => {
      const decoded = binding._decode(m)[0] as { type?: string; kind?: string; orig?: { protocol: number } };
      if (decoded?.type !== 'conntrack' || !decoded.orig) return; // malformed: may or may not count
      const [kind, cls] = counted![i]!;
      expect(KINDS[kind]).toBe(decoded.kind);
      if (CLASSES[cls] === 'unknown') unknown++;
      else {
        expect(CLASSES[cls]).toBe(classOf(decoded.orig.protocol));
        exact++;
      }
    });
    console.info(`bit flips: ${exact} decoded and counted with their protocol, ${unknown} with an unknown layout`);
    expect(exact).toBeGreaterThan(unknown);
  });
});

/** Top-level attributes of a conntrack message (after nlmsghdr and nfgenmsg), each with its padding. */
function attributes(message: Buffer): { type: number; bytes: Buffer }[] {
  const out: { type: number; bytes: Buffer }[] = [];
  for (let off = 20; off + 4 <= message.length;) {
    const len = message.readUInt16LE(off);
    const padded = (len + 3) & ~3;
    out.push({ type: message.readUInt16LE(off + 2) & 0x3fff, bytes: message.subarray(off, off + padded) });
    off += padded;
  }
  return out;
}

/** The message with its attributes replaced, nlmsg_len set. */
function rebuild(message: Buffer, attrs: { bytes: Buffer }[]): Buffer {
  const out = Buffer.concat([message.subarray(0, 20), ...attrs.map((a) => a.bytes)]);
  out.writeUInt32LE(out.length, 0);
  return out;
}

function attribute(type: number, payload: Buffer): { type: number; bytes: Buffer } {
  const bytes = Buffer.alloc((4 + payload.length + 3) & ~3);
  bytes.writeUInt16LE(4 + payload.length, 0);
  bytes.writeUInt16LE(type, 2);
  payload.copy(bytes, 4);
  return { type, bytes };
}

const be32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const CTA = { STATUS: 3, PROTOINFO: 4, TIMEOUT: 7, ID: 12, ZONE: 18 };
const IPS_ASSURED = 0x4;

/** `message` with CTA_TIMEOUT (or CTA_STATUS) set to `value`. */
function withBe32(message: Buffer, type: number, value: number): Buffer {
  return rebuild(
    message,
    attributes(message).map((a) => (a.type === type ? attribute(type, be32(value)) : a)),
  );
}

const first = (name: string) => loadHexFixture(name)[0]!;
const timeoutOf = (m: Buffer) => binding._decode(m)[0]!.timeout as number;
const CLASS_INDEX: Record<string, number> = Object.fromEntries(CLASSES.map((c, i) => [c, i]));

describe.skipIf(!canRunIntegration)('event socket filter, monitor variant, in the kernel (BPF_PROG_TEST_RUN)', () => {
  const mon = (messages: Buffer[], options: { dumping?: boolean; maxFlows?: number; seed?: bigint } = {}) =>
    binding._eventProgram(messages, { variant: 'monitor', ...options });

  it.each(['udp4', 'udp6', 'icmp4', 'icmp6'])(
    '%s: NEW, UPDATE and DESTROY counted and never queued; the flow map and the wheel hold the flow between',
    (proto) => {
      const [created, updated, destroyed] = ['new', 'update', 'destroy'].map((k) => first(`${proto}-${k}`));
      const cls = CLASS_INDEX[classOf(index[`${proto}-new`]!.protocol)]!;

      // NEW: tracked under the key user space computes from the decoder's view of the message,
      // with its deadline CTA_TIMEOUT from now, in the wheel slot of that decisecond.
      const afterNew = mon([created!]);
      expect(afterNew.verdicts).toEqual([0]);
      expect(afterNew.flows).toHaveLength(1);
      const flow = afterNew.flows![0]!;
      expect(flow.key).toBe(binding._flowKey(created!, afterNew.seed!));
      expect(flow.class).toBe(cls);
      expect(Math.abs(flow.deadlineDs - afterNew.nowDs! - 10 * timeoutOf(created!))).toBeLessThanOrEqual(2);
      expect(afterNew.wheel).toEqual([
        { slot: flow.deadlineDs % WHEEL_SLOTS, flows: [0, 1, 2, 3].map((c) => +(c === cls)) },
      ]);
      expect(afterNew.counters.tracked[cls]).toBe(1);
      expect(afterNew.counters.diagnostics[DIAG.tracked!]).toBe(1);

      // UPDATE: the deadline moves to its CTA_TIMEOUT; the old slot is given back.
      const afterUpdate = mon([created!, updated!]);
      expect(afterUpdate.verdicts).toEqual([0, 0]);
      const moved = afterUpdate.flows![0]!;
      expect(Math.abs(moved.deadlineDs - afterUpdate.nowDs! - 10 * timeoutOf(updated!))).toBeLessThanOrEqual(2);
      expect(afterUpdate.wheel).toEqual([
        { slot: moved.deadlineDs % WHEEL_SLOTS, flows: [0, 1, 2, 3].map((c) => +(c === cls)) },
      ]);
      expect(afterUpdate.counters.tracked[cls]).toBe(1);

      // DESTROY: nothing left anywhere, and nothing was queued.
      const afterDestroy = mon([created!, updated!, destroyed!]);
      expect(afterDestroy.verdicts).toEqual([0, 0, 0]);
      expect(afterDestroy.flows).toEqual([]);
      expect(afterDestroy.wheel).toEqual([]);
      expect(afterDestroy.counters.tracked).toEqual([0, 0, 0, 0]);
      expect(afterDestroy.counters.diagnostics[DIAG.passed!]).toBe(0);
      expect(nonzero(afterDestroy.counters.messages)).toEqual({
        [`new/${CLASSES[cls]}`]: 1,
        [`update/${CLASSES[cls]}`]: 1,
        [`destroy/${CLASSES[cls]}`]: 1,
      });
    },
  );

  it('passes TCP NEW, DESTROY and state changes, and drops a TCP UPDATE without CTA_PROTOINFO', () => {
    for (const proto of ['tcp4', 'tcp6']) {
      const updates = loadHexFixture(`${proto}-update`);
      const stateless = rebuild(
        updates[1]!,
        attributes(updates[1]!).filter((a) => a.type !== CTA.PROTOINFO),
      );
      const run = mon([first(`${proto}-new`), ...updates, stateless, first(`${proto}-destroy`)]);
      expect(run.verdicts.map((v) => v !== 0)).toEqual([true, ...updates.map(() => true), false, true]);
      expect(run.flows).toEqual([]);
      expect(run.counters.diagnostics[DIAG.passed!]).toBe(updates.length + 2);
    }
  });

  it('entries it does not track: an UPDATE passes once ASSURED (the classic rule), a DESTROY always', () => {
    const update = first('udp4-update');
    const assured = withBe32(update, CTA.STATUS, 0x8 | 0x2 | IPS_ASSURED); // CONFIRMED, SEEN_REPLY
    const run = mon([update, assured, first('udp4-destroy')]);
    expect(run.verdicts.map((v) => v !== 0)).toEqual([false, true, true]);
    expect(run.counters.diagnostics[DIAG.updateUntracked!]).toBe(2);
    expect(run.counters.diagnostics[DIAG.destroyUntracked!]).toBe(1);
    expect(run.flows).toEqual([]);
  });

  it('keys a flow by CTA_ZONE too: the same tuple and id in zone 5 is another flow', () => {
    const created = first('udp4-new');
    const attrs = attributes(created);
    const zoned = rebuild(created, [...attrs.slice(0, 2), attribute(CTA.ZONE, Buffer.from([0, 5])), ...attrs.slice(2)]);
    expect(binding._decode(zoned)[0]!.zone).toBe(5);
    const run = mon([created, zoned]);
    expect(run.verdicts).toEqual([0, 0]);
    const keys = run.flows!.map((f) => f.key).sort();
    expect(keys).toEqual([binding._flowKey(created, run.seed!), binding._flowKey(zoned, run.seed!)].sort());
    expect(new Set(keys).size).toBe(2);
  });

  it('hashes any tuple length the kernel could send as user space does (a last half word too)', () => {
    const created = first('udp6-new');
    const [orig, ...rest] = attributes(created);
    // CTA_TUPLE_ORIG with a 4-byte attribute of an unknown type appended: 4 more bytes of tuple.
    const longer = attribute(0x8001, Buffer.concat([orig!.bytes.subarray(4), Buffer.from([4, 0, 10, 0])]));
    const odd = rebuild(created, [longer, ...rest]);
    expect((odd.readUInt16LE(20) - 4) % 8).toBe(4);
    const run = mon([created, odd]);
    expect(run.verdicts).toEqual([0, 0]);
    expect(run.flows!.map((f) => f.key).sort()).toEqual(
      [binding._flowKey(created, run.seed!), binding._flowKey(odd, run.seed!)].sort(),
    );
  });

  it(`leaves timeouts beyond its wheel (${WHEEL_MAX_TIMEOUT_S} s) to user space, taking back a flow that gets one`, () => {
    const created = first('udp4-new');
    const long = withBe32(created, CTA.TIMEOUT, 432000);
    const longNew = mon([long]);
    expect(longNew.verdicts).toEqual([4294967295]);
    expect(longNew.flows).toEqual([]);
    expect(longNew.counters.diagnostics[DIAG.longTimeout!]).toBe(1);

    const stream = withBe32(first('udp4-update'), CTA.TIMEOUT, 3600);
    const handed = mon([created, stream]);
    expect(handed.verdicts).toEqual([0, 4294967295]);
    expect(handed.flows).toEqual([]);
    expect(handed.wheel).toEqual([]);
    expect(handed.counters.tracked).toEqual([0, 0, 0, 0]);
  });

  it('ends a tracked flow at once on an UPDATE with timeout 0, and keeps it for its DESTROY', () => {
    const run = mon([first('udp4-new'), withBe32(first('udp4-update'), CTA.TIMEOUT, 0)]);
    expect(run.verdicts).toEqual([0, 0]);
    expect(run.flows).toHaveLength(1);
    expect(run.flows![0]!.deadlineDs).toBeLessThanOrEqual(run.nowDs!);
    expect(run.wheel).toEqual([]);
    expect(run.counters.tracked).toEqual([0, 0, 0, 0]);
  });

  it('keeps a NEW with timeout 0 (under a second left, rounded down) as ended, with its DESTROY', () => {
    const created = withBe32(first('udp4-new'), CTA.TIMEOUT, 0);
    const kept = mon([created]);
    expect(kept.verdicts).toEqual([0]);
    expect(kept.flows).toHaveLength(1);
    expect(kept.flows![0]!.deadlineDs).toBeLessThanOrEqual(kept.nowDs!);
    expect(kept.wheel).toEqual([]);
    expect(kept.counters.tracked).toEqual([0, 0, 0, 0]);
    const gone = mon([created, first('udp4-destroy')]);
    expect(gone.verdicts).toEqual([0, 0]);
    expect(gone.flows).toEqual([]);
  });

  it('records the keys DESTROY removes while user space dumps, and only then', () => {
    const flow = [first('icmp6-new'), first('icmp6-destroy')];
    const dumping = mon(flow, { dumping: true });
    expect(dumping.destroyed).toEqual([binding._flowKey(flow[0]!, dumping.seed!)]);
    expect(mon(flow).destroyed).toEqual([]);
  });

  it('passes what it cannot hold: a NEW whose bucket is full, a NEW already tracked, a tuple it cannot hash', () => {
    const crowded = crowdedBucket().map((port) => withPort(first('udp4-new'), port));
    const full = mon(crowded, { maxFlows: 1, seed: CROWDED_SEED });
    expect(full.flowBuckets).toBe(1024);
    expect(full.verdicts).toEqual([...Array(8).fill(0), 4294967295]);
    expect(full.counters.diagnostics[DIAG.flowsFull!]).toBe(1);
    expect(full.flows).toHaveLength(8);

    const twice = mon([first('icmp4-new'), first('icmp4-new')]);
    expect(twice.verdicts).toEqual([0, 4294967295]);
    expect(twice.counters.diagnostics[DIAG.flowExists!]).toBe(1);
    expect(twice.counters.tracked[CLASS_INDEX.icmp!]).toBe(1);

    const odd = Buffer.from(first('udp4-new'));
    odd.writeUInt16LE(odd.readUInt16LE(20) + 2, 20); // CTA_TUPLE_ORIG's length no multiple of 4
    const broken = mon([odd]);
    expect(broken.verdicts).toEqual([4294967295]);
    expect(broken.counters.diagnostics[DIAG.unknownLayout!]).toBe(1);
    expect(broken.flows).toEqual([]);
  });

  it('a NEW whose bucket is full takes the slot of a flow that has ended; counts stay exact', () => {
    // Eight flows of one bucket end at once (CTA_TIMEOUT 0: under a second left), a ninth
    // comes: it takes one of their slots. The wheel and `tracked` are the kernel's count of
    // live flows; the ended ones were never in them, so the ninth alone counts.
    const ports = crowdedBucket();
    const news = ports.map((port) => withPort(first('udp4-new'), port));
    const ended = news.slice(0, 8).map((m) => withBe32(m, CTA.TIMEOUT, 0));
    const destroyOf = (port: number) => withPort(first('udp4-destroy'), port);
    const udp = CLASS_INDEX.udp!;
    const run = mon([...ended, news[8]!], { maxFlows: 1, seed: CROWDED_SEED });
    expect(run.verdicts).toEqual(Array(9).fill(0));
    expect(run.counters.diagnostics[DIAG.slotReused!]).toBe(1);
    expect(run.counters.diagnostics[DIAG.flowsFull!]).toBe(0);
    expect(run.flows).toHaveLength(8);
    const ninth = binding._flowKey(news[8]!, CROWDED_SEED)!;
    const keys = run.flows!.map((f) => f.key);
    expect(keys).toContain(ninth);
    expect(run.counters.tracked).toEqual([0, 1, 0, 0]);
    const live = run.flows!.find((f) => f.key === ninth)!;
    expect(run.wheel).toEqual([{ slot: live.deadlineDs % WHEEL_SLOTS, flows: [0, 1, 0, 0] }]);

    // The flow that lost its slot is user space's from then on: its DESTROY and an ASSURED
    // UPDATE pass (the table inserts an entry an UPDATE tells it of), the ninth's DESTROY is
    // counted here, and nothing is counted twice: tracked back to 0, the wheel empty.
    const evicted = ports.find((_, i) => i < 8 && !keys.includes(binding._flowKey(news[i]!, CROWDED_SEED)!))!;
    const assured = withBe32(
      withPort(first('udp4-update'), evicted),
      CTA.STATUS,
      0x8 | 0x2 | IPS_ASSURED, // CONFIRMED, SEEN_REPLY
    );
    const after = mon([...ended, news[8]!, assured, destroyOf(evicted), destroyOf(ports[8]!)], {
      maxFlows: 1,
      seed: CROWDED_SEED,
    });
    expect(after.verdicts.map((v) => v !== 0)).toEqual([...Array(9).fill(false), true, true, false]);
    expect(after.counters.diagnostics[DIAG.updateUntracked!]).toBe(1);
    expect(after.counters.diagnostics[DIAG.destroyUntracked!]).toBe(1);
    expect(after.counters.tracked).toEqual([0, 0, 0, 0]);
    expect(after.wheel).toEqual([]);
    expect(after.flows).toHaveLength(7);
    expect(nonzero(after.counters.messages)).toEqual({ 'new/udp': 9, 'update/udp': 1, 'destroy/udp': 2 });
    console.log(
      `slot reuse: 8 ended flows + 1 NEW in one bucket: reused ${run.counters.diagnostics[DIAG.slotReused!]}, ` +
        `tracked udp ${run.counters.tracked[udp]} (1 live), passed after eviction ${after.counters.diagnostics[DIAG.passed!]}`,
    );
  });

  it('does not take the slot of a flow still alive, nor one a DESTROY is ending', () => {
    const news = crowdedBucket().map((port) => withPort(first('udp4-new'), port));
    const full = mon(news, { maxFlows: 1, seed: CROWDED_SEED });
    expect(full.verdicts).toEqual([...Array(8).fill(0), 4294967295]);
    expect(full.counters.diagnostics[DIAG.slotReused!]).toBe(0);
    // Marked during a dump (deadline 0, kept for user space): not taken either.
    const marked = mon([...news.slice(0, 8), withPort(first('udp4-destroy'), crowdedBucket()[0]!), news[8]!], {
      maxFlows: 1,
      seed: CROWDED_SEED,
      dumping: true,
    });
    expect(marked.destroyed).toHaveLength(1);
    expect(marked.verdicts.at(-1)).toBe(4294967295);
    expect(marked.counters.diagnostics[DIAG.slotReused!]).toBe(0);
  });
});

/**
 * Source ports of nine UDP flows (udp4-new's tuple with CTA_PROTO_SRC_PORT changed) whose keys
 * fall in one bucket of the smallest flow table (1,024 buckets of 8 slots) under CROWDED_SEED.
 */
const CROWDED_SEED = 0x5eedn;
let crowdedPorts: number[] | undefined;
function crowdedBucket(): number[] {
  if (crowdedPorts) return crowdedPorts;
  const base = first('udp4-new');
  const byBucket = new Map<bigint, number[]>();
  let crowded: number[] = [];
  for (let port = 1; crowded.length < 9; port++) {
    const bucket = binding._flowKey(withPort(base, port), CROWDED_SEED)! & 1023n;
    const same = [...(byBucket.get(bucket) ?? []), port];
    byBucket.set(bucket, same);
    if (same.length > crowded.length) crowded = same;
  }
  return (crowdedPorts = crowded);
}

/** `message` (a udp4 one) with CTA_PROTO_SRC_PORT's payload, at byte 60, set to `port`. */
function withPort(message: Buffer, port: number): Buffer {
  const m = Buffer.from(message);
  m.writeUInt16BE(port, 60);
  return m;
}
