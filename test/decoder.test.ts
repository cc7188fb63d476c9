/**
 * The ctnetlink decoder on messages captured from this kernel (test/fixtures/netlink,
 * made by capture.sh). Expected values come from the kernel through other interfaces:
 * socket addresses of the flows that made the events, and /proc/net/stat/nf_conntrack.
 */
import { describe, expect, it } from 'vitest';
import { binding } from './helpers/binding';
import { fixtureIndex, fixtureNames, loadHexFixture } from './helpers/fixtures';

const index = fixtureIndex();
const flowFixtures = fixtureNames().filter((n) => !n.startsWith('stats-'));
const TCP_SYN_SENT = 1;
const TCP_TIME_WAIT = 7;
const IPS_DYING = 0x200;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- decoded messages are checked field by field
type Decoded = Record<string, any>;
const decodeAll = (name: string): Decoded[] => loadHexFixture(name).flatMap((d) => binding._decode(d));

describe('ctnetlink events captured from the kernel', () => {
  it('has fixtures for NEW, UPDATE and DESTROY of TCP, UDP and ICMP over IPv4 and IPv6', () => {
    for (const proto of ['tcp4', 'udp4', 'icmp4', 'tcp6', 'udp6', 'icmp6']) {
      for (const kind of ['new', 'update', 'destroy']) expect(flowFixtures).toContain(`${proto}-${kind}`);
    }
  });

  it.each(flowFixtures)('%s decodes to the flow the kernel reported', (name) => {
    const expected = index[name]!;
    const kind = name.split('-')[1];
    const messages = decodeAll(name);
    expect(messages).toHaveLength(expected.count);
    for (const m of messages) {
      expect(m.type).toBe('conntrack');
      expect(m.kind).toBe(kind);
      expect(m.family).toBe(expected.family);
      expect(m.orig.protocol).toBe(expected.protocol);
      expect(m.orig.src).toBe(expected.src);
      expect(m.orig.dst).toBe(expected.dst);
      expect(m.orig.srcPort).toBe(expected.srcPort);
      if (expected.dstPort !== undefined) expect(m.orig.dstPort).toBe(expected.dstPort);
      if (expected.icmpType !== undefined) expect(m.orig.icmpType).toBe(expected.icmpType);
      expect(m.id).toEqual(expect.any(Number));
      expect(m.status).toEqual(expect.any(Number));
    }
  });

  it('gives one CTA_ID to every event of one flow', () => {
    for (const proto of ['tcp4', 'udp6', 'icmp4']) {
      const ids = new Set(['new', 'update', 'destroy'].flatMap((k) => decodeAll(`${proto}-${k}`).map((m) => m.id)));
      expect(ids.size).toBe(1);
    }
  });

  it('reads the TCP state: SYN_SENT on NEW, TIME_WAIT reached by UPDATEs', () => {
    for (const proto of ['tcp4', 'tcp6']) {
      expect(decodeAll(`${proto}-new`)[0]!.tcpState).toBe(TCP_SYN_SENT);
      expect(decodeAll(`${proto}-update`).map((m) => m.tcpState)).toContain(TCP_TIME_WAIT);
    }
    expect(decodeAll('udp4-new')[0]!.tcpState).toBeNull();
  });

  it('sees DESTROY with the DYING status bit and, for a delete request, the remaining timeout', () => {
    for (const name of flowFixtures.filter((n) => n.endsWith('-destroy'))) {
      for (const m of decodeAll(name)) {
        expect(m.status & IPS_DYING).toBe(IPS_DYING);
        expect(m.timeout).toBeGreaterThan(0);
      }
    }
  });

  it('skips attributes it does not know (newer kernels add some)', () => {
    const original = loadHexFixture('tcp4-new')[0]!;
    const unknown = Buffer.from([8, 0, 200, 0, 0xde, 0xad, 0xbe, 0xef]); // type 200, 4-byte payload
    const extended = Buffer.concat([original, unknown]);
    extended.writeUInt32LE(extended.length, 0);
    expect(binding._decode(extended)).toEqual(binding._decode(original));
  });
});

/** Parses /proc/net/stat/nf_conntrack by header name: hex values per CPU row. */
function parseProcStat(text: string): Record<string, number>[] {
  const [header, ...rows] = text.trim().split('\n');
  const names = header!.trim().split(/\s+/);
  return rows.map((row) =>
    Object.fromEntries(
      row
        .trim()
        .split(/\s+/)
        .map((v, i) => [names[i]!, parseInt(v, 16)]),
    ),
  );
}

describe('stats replies captured from the kernel', () => {
  // CTA_STATS_* ids against the /proc/net/stat/nf_conntrack columns of the same counters.
  const columns: Record<string, number> = {
    clashres: 14,
    found: 2,
    invalid: 4,
    chainlength: 15,
    insert: 8,
    insert_failed: 9,
    drop: 10,
    early_drop: 11,
    icmp_error: 12,
    search_restart: 13,
  };

  it('decodes one GET_STATS_CPU message per CPU matching /proc/net/stat/nf_conntrack', () => {
    const cpus = decodeAll('stats-cpu').filter((m) => m.type === 'cpu-stats');
    const proc = parseProcStat(index['stats-cpu']!.procStat!);
    expect(cpus.map((c) => c.cpu)).toEqual(proc.map((_, i) => i));
    cpus.forEach((cpu, i) => {
      for (const [column, id] of Object.entries(columns)) expect(cpu.values[id]).toBe(proc[i]![column]);
    });
  });

  it('decodes GET_STATS as the namespace entries and the global max', () => {
    const [global] = decodeAll('stats-global');
    expect(global).toEqual({
      type: 'global-stats',
      entries: index['stats-global']!.entries,
      max: index['stats-global']!.max,
    });
  });
});

describe('malformed input never crashes the decoder', () => {
  const samples = fixtureNames().flatMap((n) => loadHexFixture(n));

  /** Offsets where a netlink message ends (nlmsg_len, 4-byte aligned). */
  const boundaries = (d: Buffer): Set<number> => {
    const ends = new Set<number>();
    for (let off = 0; off + 16 <= d.length;) {
      off += (d.readUInt32LE(off) + 3) & ~3;
      ends.add(Math.min(off, d.length));
    }
    return ends;
  };

  it('reports every truncation inside a message as malformed, without throwing', () => {
    for (const d of samples) {
      const ends = boundaries(d);
      for (let len = 1; len < d.length; len++) {
        const out = binding._decode(d.subarray(0, len));
        if (ends.has(len)) expect(out.some((m) => m.type === 'malformed')).toBe(false);
        else expect(out.at(-1)).toEqual({ type: 'malformed' });
      }
    }
  });

  it('rejects attribute lengths that run past the message', () => {
    const d = Buffer.from(loadHexFixture('tcp6-new')[0]!);
    d.writeUInt16LE(0xfff0, 20); // first attribute claims 65520 bytes
    const out = binding._decode(d);
    expect(out).toHaveLength(1);
    expect(out[0]!.type).toBe('other');
  });

  it('survives 20,000 random and bit-flipped buffers', () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let i = 0; i < 20_000; i++) {
      let buf: Buffer;
      if (i % 2 === 0) {
        buf = Buffer.alloc(Math.floor(rand() * 512));
        for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rand() * 256);
      } else {
        buf = Buffer.from(samples[i % samples.length]!);
        for (let k = 0; k < 4; k++) {
          const pos = Math.floor(rand() * buf.length);
          buf[pos] = buf[pos]! ^ (1 << Math.floor(rand() * 8));
        }
      }
      expect(Array.isArray(binding._decode(buf))).toBe(true);
    }
  });
});
