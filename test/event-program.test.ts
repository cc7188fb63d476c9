/**
 * The ctnetlink event socket filter (native/ebpf/event_program.cc), run by the real kernel on
 * messages captured from it (BPF_PROG_TEST_RUN through the _eventProgram hook). The expected
 * kind and protocol of each message come from how it was captured (the fixture's name and the
 * flow's socket addresses in index.json); the decoder gives them for altered messages.
 */
import { describe, expect, it } from 'vitest';
import { binding } from './helpers/binding';
import { fixtureIndex, fixtureNames, loadHexFixture } from './helpers/fixtures';
import { canRunIntegration } from './helpers/gate';

const KINDS = ['new', 'update', 'destroy'] as const;
const CLASSES = ['tcp', 'udp', 'icmp', 'other', 'unknown'] as const;
const DIAG_SHORT = 0;
const DIAG_NOT_CONNTRACK = 1;
const index = fixtureIndex();
const flowFixtures = fixtureNames().filter((n) => !n.startsWith('stats-'));

function classOf(protocol: number): (typeof CLASSES)[number] {
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
    expect(counters.diagnostics[DIAG_NOT_CONNTRACK]).toBe(stats.length);
    expect(counters.diagnostics[DIAG_SHORT]).toBe(1);
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
