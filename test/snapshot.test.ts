/**
 * The native snapshot grouping (native/ctnetlink/snapshot.h) on a dump captured from this
 * kernel (test/fixtures/netlink/table-dump/dump.hex), against conntrack -L listed at the same
 * moment (table-dump/listing.txt): every count per source, destination, port and state, and
 * what the kernel can reclaim: unassured entries, closing TCP, and the two once each (the dump
 * has an unassured CLOSE_WAIT, in both).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { binding } from './helpers/binding';
import { loadHexFixture, NETLINK_FIXTURES } from './helpers/fixtures';
import { addressOrder, asCounts, groupListing } from './helpers/listing';

type Item = { key: string; entries: number };
type Report = {
  entries: number;
  evictable: number;
  unassured: number;
  tcpClosing: number;
  ignored: number;
  bySource: Item[];
  byDestination: Item[];
  byDestinationPort: Item[];
  byState: Item[];
};
const GROUPS = ['bySource', 'byDestination', 'byDestinationPort', 'byState'] as const;

const dump = loadHexFixture('table-dump/dump');
const listing = groupListing(readFileSync(join(NETLINK_FIXTURES, 'table-dump', 'listing.txt'), 'utf8'));
const group = (limit: number, options?: { expectedEntries?: number; maxKeys?: number }, datagrams = dump) =>
  binding._groupSnapshot(datagrams, limit, options) as unknown as Report;

describe('snapshot grouping on a captured dump', () => {
  it('counts every source, destination, port and state as conntrack -L lists them', () => {
    const r = group(1000);
    console.info(
      `captured dump: ${r.entries} entries (conntrack -L ${listing.entries}), evictable ${r.evictable} (conntrack -L ${listing.evictable}): ` +
        `unassured ${r.unassured} (without [ASSURED] ${listing.unassured}), closing TCP ${r.tcpClosing} (${listing.tcpClosing}); ` +
        `ports ${JSON.stringify(asCounts(r.byDestinationPort))}; states ${JSON.stringify(asCounts(r.byState))}`,
    );
    expect(r.ignored).toBe(0);
    expect(r.entries).toBe(listing.entries);
    expect(r.unassured).toBe(listing.unassured);
    expect(r.tcpClosing).toBe(listing.tcpClosing);
    expect(r.evictable).toBe(listing.evictable);
    // The unassured CLOSE_WAIT is in both classes and once in the union.
    expect(listing.unassured + listing.tcpClosing - listing.evictable).toBe(1);
    for (const name of GROUPS) {
      expect(asCounts(r[name]), name).toEqual(listing[name]);
      expect(r[name].some((i) => i.key === 'other')).toBe(false);
    }
    // The fixture has what the keys need: IPv6, ICMP, UDP in all three states, TCP states.
    expect(Object.keys(listing.bySource).some((k) => k.includes(':'))).toBe(true);
    expect(listing.byDestinationPort['icmp/echo-request']).toBe(1);
    expect(Object.keys(listing.byState)).toEqual(
      expect.arrayContaining(['udp/UNREPLIED', 'udp/REPLIED', 'udp/ASSURED', 'tcp/TIME_WAIT', 'tcp/ESTABLISHED']),
    );
  });

  it('sorts by entries, ties by key (addresses numerically, IPv4 first), the rest in other', () => {
    const all = group(1000);
    for (const name of GROUPS) {
      const counts = all[name].map((i) => i.entries);
      expect(counts).toEqual([...counts].sort((a, b) => b - a));
    }
    const sources = all.bySource.map((i) => i.key);
    expect(sources).toEqual(
      [...sources].sort((a, b) => listing.bySource[b]! - listing.bySource[a]! || addressOrder(a, b)),
    );
    // Ports: by protocol number (icmp 1 < tcp 6 < udp 17), then port.
    const ones = all.byDestinationPort.filter((i) => i.entries === 1).map((i) => i.key);
    expect(ones).toEqual([...ones].sort((a, b) => protoNumber(a) - protoNumber(b) || portOf(a) - portOf(b)));

    for (const limit of [1, 2, 3]) {
      const r = group(limit);
      for (const name of GROUPS) {
        const top = r[name].filter((i) => i.key !== 'other');
        expect(top).toEqual(all[name].slice(0, limit));
        const rest = all[name].slice(limit).reduce((a, i) => a + i.entries, 0);
        const other = r[name].find((i) => i.key === 'other');
        expect(other?.entries ?? 0).toBe(rest);
        if (other) expect(r[name].at(-1)).toBe(other); // always last
        expect(r[name].reduce((a, i) => a + i.entries, 0)).toBe(r.entries);
      }
    }
  });

  it('gives the same counts whether its maps start at one slot and grow, or are sized up front', () => {
    expect(group(1000, { expectedEntries: 0 })).toEqual(group(1000, { expectedEntries: 100_000 }));
  });

  it('bounds the keys per group: keys past the bound are counted in other, totals stay exact', () => {
    const r = group(1000, { maxKeys: 2 });
    expect(r.entries).toBe(listing.entries);
    for (const name of GROUPS) {
      expect(r[name].filter((i) => i.key !== 'other').length).toBeLessThanOrEqual(2);
      expect(r[name].reduce((a, i) => a + i.entries, 0)).toBe(listing.entries);
    }
  });

  it('reads event datagrams too, and skips what is not a conntrack entry', () => {
    const events = ['tcp4-new', 'udp6-new', 'icmp6-new', 'stats-global'].flatMap((f) => loadHexFixture(f));
    const r = group(10, {}, events);
    expect(r.entries).toBe(3);
    expect(r.ignored).toBe(1); // the stats reply
    expect(asCounts(r.bySource)).toEqual({ '127.0.0.1': 1, '::1': 2 });
    expect(asCounts(r.byDestinationPort)).toMatchObject({ 'icmpv6/echo-request': 1 });
    expect(asCounts(r.byState)).toEqual({ 'tcp/SYN_SENT': 1, 'udp/UNREPLIED': 1, 'icmpv6/UNREPLIED': 1 });
    expect(r.evictable).toBe(3);
    expect(r.unassured).toBe(3);
    expect(r.tcpClosing).toBe(0); // SYN_SENT is not a closing state
  });

  it('never reads past a truncated datagram', () => {
    for (const d of dump) {
      for (const cut of [1, 17, 40, d.length - 3]) {
        const r = group(5, {}, [d.subarray(0, cut)]);
        expect(r.entries).toBeLessThanOrEqual(listing.entries);
      }
    }
  });
});

function protoNumber(key: string): number {
  return { icmp: 1, tcp: 6, udp: 17, icmpv6: 58 }[key.split('/')[0]!] ?? 255;
}
function portOf(key: string): number {
  const p = key.split('/')[1]!;
  return /^\d+$/.test(p) ? Number(p) : 0;
}
