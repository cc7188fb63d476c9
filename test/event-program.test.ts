/**
 * The ctnetlink event socket filter (native/ebpf/ct_events.bpf.c), run by the real kernel on
 * messages captured from it, each sent to a netlink socket the program filters (the
 * _eventProgram hook), as the kernel delivers its events. The expected
 * kind and protocol of each message come from how it was captured (the fixture's name and the
 * flow's socket addresses in index.json); the decoder gives them for altered messages.
 */
import { describe, expect, it } from 'vitest';
import { binding } from './helpers/binding';
import { fixtureIndex, fixtureNames, loadHexFixture } from './helpers/fixtures';
import { canRunIntegration } from './helpers/gate';
import { CLASSES, DIAG, KINDS } from './helpers/ct-events-header';

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

describe.skipIf(!canRunIntegration)(
  'event socket filter, count-only, in the kernel (each message sent to a socket it filters)',
  () => {
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
  },
);

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
const stateOf = (m: Buffer) => binding._decode(m)[0]!.tcpState as number | undefined;
const CLASS_INDEX: Record<string, number> = Object.fromEntries(CLASSES.map((c, i) => [c, i]));
const PASSED = 4294967295;

describe.skipIf(!canRunIntegration)(
  'event socket filter, monitor variant, in the kernel (each message sent to a socket it filters)',
  () => {
    const mon = (
      messages: Buffer[],
      options: { listing?: boolean; maxFlows?: number; seed?: bigint; goneKeys?: bigint[] } = {},
    ) => binding._eventProgram(messages, { variant: 'monitor', ...options });

    it.each(['tcp4', 'tcp6', 'udp4', 'udp6', 'icmp4', 'icmp6'])(
      '%s: NEW, UPDATE and DESTROY counted and never queued; the flow table holds the flow, its state and deadline between',
      (proto) => {
        const created = first(`${proto}-new`);
        const updates = loadHexFixture(`${proto}-update`);
        const destroyed = first(`${proto}-destroy`);
        const cls = CLASS_INDEX[classOf(index[`${proto}-new`]!.protocol)]!;

        // NEW: held under the key user space computes from the decoder's view of the message,
        // with its class, its TCP state, its deadline CTA_TIMEOUT from now.
        const afterNew = mon([created]);
        expect(afterNew.verdicts).toEqual([0]);
        expect(afterNew.flows).toHaveLength(1);
        const flow = afterNew.flows![0]!;
        expect(flow.key).toBe(binding._flowKey(created, afterNew.seed!));
        expect(flow).toMatchObject({ class: cls, ns: 0, touched: false, tcpState: stateOf(created) ?? 0 });
        expect(Math.abs(flow.deadlineDs - afterNew.nowDs! - 10 * timeoutOf(created))).toBeLessThanOrEqual(2);
        expect(afterNew.counters.diagnostics[DIAG.tracked!]).toBe(1);

        // UPDATEs: the state of the last one that says one, the deadline of the last one.
        const afterUpdates = mon([created, ...updates]);
        expect(afterUpdates.verdicts).toEqual(Array(1 + updates.length).fill(0));
        const moved = afterUpdates.flows![0]!;
        const lastState =
          updates
            .map(stateOf)
            .filter((s) => s !== undefined)
            .at(-1) ??
          stateOf(created) ??
          0;
        expect(moved.tcpState).toBe(lastState);
        expect(Math.abs(moved.deadlineDs - afterUpdates.nowDs! - 10 * timeoutOf(updates.at(-1)!))).toBeLessThanOrEqual(
          2,
        );

        // DESTROY: nothing left, and nothing was queued at all.
        const afterDestroy = mon([created, ...updates, destroyed]);
        expect(afterDestroy.verdicts).toEqual(Array(2 + updates.length).fill(0));
        expect(afterDestroy.flows).toEqual([]);
        expect(afterDestroy.counters.diagnostics[DIAG.passed!]).toBe(0);
        expect(nonzero(afterDestroy.counters.messages)).toEqual({
          [`new/${CLASSES[cls]}`]: 1,
          ...(updates.length ? { [`update/${CLASSES[cls]}`]: updates.length } : {}),
          [`destroy/${CLASSES[cls]}`]: 1,
        });
      },
    );

    it('reads CTA_TIMEOUT and the TCP state wherever they lie: in the first 192 bytes it reads at once, across their end, or past it', () => {
      // tcp4's UPDATE with a CTA_LABELS of 4..96 bytes before CTA_STATUS moves CTA_TIMEOUT and
      // CTA_PROTOINFO from well inside the program's first read to past it, 4 bytes at a time.
      const created = first('tcp4-new');
      const update = first('tcp4-update');
      const attrs = attributes(update);
      const at = attrs.findIndex((a) => a.type === CTA.STATUS);
      const protoinfoOffsets: number[] = [];
      for (let pad = 4; pad <= 96; pad += 4) {
        const moved = rebuild(update, [
          ...attrs.slice(0, at),
          attribute(22, Buffer.alloc(pad, 0xab)),
          ...attrs.slice(at),
        ]);
        const movedAttrs = attributes(moved);
        const before = movedAttrs.slice(
          0,
          movedAttrs.findIndex((a) => a.type === CTA.PROTOINFO),
        );
        protoinfoOffsets.push(20 + before.reduce((n, a) => n + a.bytes.length, 0));
        const result = mon([created, withBe32(moved, CTA.TIMEOUT, 300 + pad)]);
        expect(result.verdicts).toEqual([0, 0]);
        expect(result.flows![0]!.tcpState).toBe(stateOf(update));
        expect(Math.abs(result.flows![0]!.deadlineDs - result.nowDs! - 10 * (300 + pad))).toBeLessThanOrEqual(2);
        expect(result.counters.diagnostics[DIAG.unknownLayout!]).toBe(0);
      }
      expect(Math.min(...protoinfoOffsets)).toBeLessThan(192 - 16);
      expect(Math.max(...protoinfoOffsets)).toBeGreaterThan(192);
    });

    it('an UPDATE without CTA_PROTOINFO keeps the TCP state; one without CTA_TIMEOUT keeps the deadline', () => {
      const created = first('tcp4-new');
      const statusOnly = rebuild(
        first('tcp4-update'),
        attributes(first('tcp4-update')).filter((a) => a.type !== CTA.PROTOINFO),
      );
      const noTimeout = rebuild(
        first('tcp4-update'),
        attributes(first('tcp4-update')).filter((a) => a.type !== CTA.TIMEOUT),
      );
      const kept = mon([created, withBe32(statusOnly, CTA.TIMEOUT, 300)]).flows![0]!;
      expect(kept.tcpState).toBe(stateOf(created));
      const before = mon([created]).flows![0]!;
      const same = mon([created, noTimeout]);
      expect(same.flows![0]!.tcpState).toBe(stateOf(first('tcp4-update')));
      expect(Math.abs(same.flows![0]!.deadlineDs - before.deadlineDs)).toBeLessThanOrEqual(2);
      expect(same.counters.diagnostics[DIAG.noTimeout!]).toBe(1);
    });

    it('passes what the table does not hold: an UPDATE and a DESTROY of an unknown flow (user space holds it)', () => {
      const run = mon([first('udp4-update'), first('tcp6-update'), first('icmp4-destroy')]);
      expect(run.verdicts).toEqual([PASSED, PASSED, PASSED]);
      expect(run.counters.diagnostics[DIAG.updateUntracked!]).toBe(2);
      expect(run.counters.diagnostics[DIAG.destroyUntracked!]).toBe(1);
      expect(run.flows).toEqual([]);
    });

    it('keys a flow by CTA_ZONE too: the same tuple in zone 5 is another flow', () => {
      const zone5 = rebuild(first('udp4-new'), [
        ...attributes(first('udp4-new')).filter((a) => a.type !== CTA.ZONE),
        attribute(CTA.ZONE, Buffer.from([0, 5])),
      ]);
      const run = mon([first('udp4-new'), zone5]);
      expect(run.verdicts).toEqual([0, 0]);
      expect(run.flows!.map((f) => f.key).sort()).toEqual(
        [binding._flowKey(first('udp4-new'), run.seed!), binding._flowKey(zone5, run.seed!)].sort(),
      );
    });

    it('holds one flow per tuple: a NEW for a tuple held is its next incarnation, whatever its CTA_ID', () => {
      const reopened = Buffer.from(first('tcp4-new'));
      const id = findAttrPayload(reopened, CTA.ID);
      reopened.writeUInt32BE(reopened.readUInt32BE(id) + 1, id);
      const run = mon([first('tcp4-new'), ...loadHexFixture('tcp4-update'), reopened]);
      expect(run.verdicts).toEqual(Array(run.verdicts.length).fill(0));
      expect(run.flows).toHaveLength(1);
      expect(run.flows![0]!.tcpState).toBe(stateOf(reopened));
      expect(run.counters.diagnostics[DIAG.flowExists!]).toBe(1);
    });

    it('during a listing, marks what events change and records the keys DESTROY removes; not otherwise', () => {
      const listed = mon([first('udp4-new'), first('tcp4-new'), first('icmp6-new'), first('icmp6-destroy')], {
        listing: true,
        goneKeys: [binding._flowKey(first('icmp6-new'), 0x5eedn)!],
        seed: 0x5eedn,
      });
      expect(listed.flows!.map((f) => f.touched)).toEqual([true, true]);
      expect(listed.goneOf).toEqual([true]);
      const quiet = mon([first('udp4-new'), first('icmp6-new'), first('icmp6-destroy')], {
        goneKeys: [binding._flowKey(first('icmp6-new'), 0x5eedn)!],
        seed: 0x5eedn,
      });
      expect(quiet.flows!.map((f) => f.touched)).toEqual([false]);
      expect(quiet.goneOf).toEqual([false]);
    });

    it('passes what it cannot hold: a NEW whose bucket is full, a NEW without a timeout, a tuple it cannot read', () => {
      const crowded = crowdedBucket().map((port) => withPort(first('udp4-new'), port));
      const full = mon(crowded, { maxFlows: 1, seed: CROWDED_SEED });
      expect(full.flowBuckets).toBe(1024);
      expect(full.verdicts).toEqual([...Array(8).fill(0), PASSED]);
      expect(full.counters.diagnostics[DIAG.flowsFull!]).toBe(1);
      expect(full.flows).toHaveLength(8);

      const noTimeout = rebuild(
        first('udp4-new'),
        attributes(first('udp4-new')).filter((a) => a.type !== CTA.TIMEOUT),
      );
      const untimed = mon([noTimeout]);
      expect(untimed.verdicts).toEqual([PASSED]);
      expect(untimed.flows).toEqual([]);

      const odd = Buffer.from(first('udp4-new'));
      odd.writeUInt16LE(0x8003, 44 + 2); // CTA_TUPLE_PROTO's type is now CTA_TUPLE_ZONE
      const broken = mon([odd]);
      expect(broken.verdicts).toEqual([PASSED]);
      expect(broken.counters.diagnostics[DIAG.unknownLayout!]).toBe(1);
      expect(broken.flows).toEqual([]);
    });

    it("a flow whose bucket was full is user space's: its UPDATE and DESTROY pass, nothing is counted twice", () => {
      const ports = crowdedBucket();
      const news = ports.map((port) => withPort(first('udp4-new'), port));
      const overflowed = ports[8]!;
      const assured = withBe32(withPort(first('udp4-update'), overflowed), CTA.STATUS, 0x8 | 0x2 | IPS_ASSURED);
      const run = mon([...news, assured, withPort(first('udp4-destroy'), overflowed)], {
        maxFlows: 1,
        seed: CROWDED_SEED,
      });
      expect(run.verdicts.map((v) => v !== 0)).toEqual([...Array(8).fill(false), true, true, true]);
      expect(run.flows).toHaveLength(8);
      expect(run.counters.diagnostics[DIAG.passed!]).toBe(3);
      expect(nonzero(run.counters.messages)).toEqual({ 'new/udp': 9, 'update/udp': 1, 'destroy/udp': 1 });
    });
  },
);

/** Offset of the payload of top-level attribute `type` in a ctnetlink message. */
function findAttrPayload(msg: Buffer, type: number): number {
  for (let off = 20; off + 4 <= msg.length;) {
    const len = msg.readUInt16LE(off);
    if ((msg.readUInt16LE(off + 2) & 0x3fff) === type) return off + 4;
    off += (len + 3) & ~3;
  }
  throw new Error(`attribute ${type} not found`);
}

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
