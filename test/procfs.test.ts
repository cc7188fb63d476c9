/**
 * The /proc parsers and the proc backend on fixture trees: the current kernel's format
 * (captured), the pre-5.10 header with dead columns, 16-column kernels, and no stat file.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ProcBackend } from '../dist/backends/proc.js';
import type { ConntrackError } from '../dist/errors.js';
import {
  parseConntrackStat,
  parseSockstatTimeWait,
  procPaths,
  readProc,
  StatDeltas,
  ProcFormatError,
} from '../dist/backends/procfs.js';
import { binding } from './helpers/binding';
import { procFixtureSamples } from './helpers/fixtures';

const FIXTURES = join(__dirname, 'fixtures', 'proc');
const root = (name: string) => join(FIXTURES, name);
const CURRENT = 'linux-6.18.44';

describe('parseConntrackStat', () => {
  it('reads the current format by header name, taking entries once', async () => {
    const r = readProc(procPaths(root(CURRENT)));
    expect(r.stat!.columns).toContain('clashres');
    expect(r.stat!.rows).toHaveLength(2);
    expect(r.stat!.entries).toBe(12); // the same on both CPU rows; not 24
    expect(r.count).toBe(12);
    expect(r.stat!.rows[1]).toMatchObject({ invalid: 10, icmp_error: 6 });
  });

  it('parses 17 columns of the old header (searched, delete_list) and 16-column kernels', async () => {
    const old = readProc(procPaths(root('linux-5.4'))).stat!;
    expect(old.columns).toHaveLength(17);
    expect(old.rows).toHaveLength(4);
    expect(old.rows.map((r) => r.drop)).toEqual([300, 200, 100, 0]);
    const ancient = readProc(procPaths(root('linux-2.6.32'))).stat!;
    expect(ancient.columns).toHaveLength(16);
    expect(ancient.columns).not.toContain('search_restart');
  });

  it('rejects text that is not the stat file, naming the problem', () => {
    expect(() => parseConntrackStat('hello world\n1 2\n')).toThrow(ProcFormatError);
    expect(() => parseConntrackStat('entries drop\n00000001\n')).toThrow(/row 1 has 1 fields, the header 2/);
    expect(() => parseConntrackStat('entries drop\n00000001 zz\n')).toThrow(/column drop: not hex: zz/);
  });

  it('reads socket TIME_WAIT from sockstat', () => {
    expect(parseSockstatTimeWait('sockets: used 3\nTCP: inuse 1 orphan 0 tw 42 alloc 1 mem 0\n')).toBe(42);
    expect(parseSockstatTimeWait('sockets: used 3\n')).toBeNull();
  });

  it('agrees with the native sockstat parser (the netlink backend reads it in C++) on every fixture', () => {
    const texts = readdirSync(FIXTURES)
      .map((name) => join(FIXTURES, name, 'net', 'sockstat'))
      .filter((path) => existsSync(path))
      .map((path) => readFileSync(path, 'utf8'));
    texts.push('TCP: inuse 1 orphan 0 alloc 1 mem 0\n', 'TCP: tw\n', '', 'TCP: inuse 1 tw 99999999999 alloc 1\n');
    expect(texts.length).toBeGreaterThan(6);
    for (const text of texts) expect(binding._parseSockstat(text), text).toBe(parseSockstatTimeWait(text) ?? -1);
  });
});

describe('StatDeltas', () => {
  const text = (drop0: number, drop1: number) =>
    `entries clashres drop early_drop\n00000005 00000000 ${drop0.toString(16).padStart(8, '0')} 00000000\n00000005 00000000 ${drop1.toString(16).padStart(8, '0')} 00000000\n`;

  it('sums per-CPU deltas with 32-bit wrap', () => {
    const d = new StatDeltas();
    d.update(parseConntrackStat(text(0xfffffff0, 7)));
    const out = d.update(parseConntrackStat(text(0x10, 9)));
    expect(out.drop).toBe(0x20 + 2);
    expect(out.earlyDrop).toBe(0);
  });

  it('maps renamed columns and leaves dead or missing ones null', async () => {
    const deltas = (stat: ReturnType<typeof parseConntrackStat>) => {
      const d = new StatDeltas();
      d.update(stat);
      return d.update(stat);
    };
    const current = deltas(readProc(procPaths(root(CURRENT))).stat!);
    expect(current).toMatchObject({ clashResolve: 0, chainTooLong: 0, searchRestart: 0, drop: 0 });
    const old = deltas(readProc(procPaths(root('linux-5.4'))).stat!);
    expect(old).toMatchObject({ clashResolve: null, chainTooLong: null, searchRestart: 0 });
    const ancient = deltas(readProc(procPaths(root('linux-2.6.32'))).stat!);
    expect(ancient).toMatchObject({ searchRestart: null, drop: 0 });
  });
});

/** Runs the proc backend on a fixture root for a few intervals. */
const procSamples = (fixture: string) => procFixtureSamples(fixture, 130);

describe('proc backend on fixture trees', () => {
  it('fills the sample shape with source "proc", and null with a reason where it cannot know', async () => {
    const samples = await procSamples(CURRENT);
    expect(samples.length).toBeGreaterThanOrEqual(2);
    expect(samples.at(-1)!.final).toBe(true);
    const s = samples[0]!;
    expect(s).toMatchObject({
      source: 'proc',
      entries: 12,
      max: 262144,
      buckets: 262144,
      fill: 12 / 262144,
      eventsMode: 2,
      events: null,
      tcpStates: null,
      protocols: null,
      socketTimeWait: 12,
      timeWait: { entries: null, timeoutSeconds: 120, share: null },
    });
    expect(s.counts).toMatchObject({ insert: null, delete: null, drop: 0, earlyDrop: 0, clashResolve: 0 });
    expect(s.rates.insert).toBeNull();
    expect(s.unavailable['counts.insert']).toMatch(/ctnetlink events.*CAP_NET_ADMIN.*insert stat is dead/);
    expect(s.unavailable['timeWait.entries']).toMatch(/socketTimeWait/);
    for (const key of Object.keys(s.unavailable)) expect(s.unavailable[key]).toMatch(/\w/);
  });

  it('says which counters an old kernel lacks', async () => {
    const [s] = await procSamples('linux-5.4');
    expect(s!.counts.clashResolve).toBeNull();
    expect(s!.unavailable['counts.clashResolve']).toBe(
      "this kernel's /proc/net/stat/nf_conntrack has no clashres column",
    );
    expect(s!.counts.drop).toBe(0);
    expect(s!.socketTimeWait).toBe(455);
  });

  it('without the stat file, reports the fill and leaves the counters null', async () => {
    const [s] = await procSamples('no-stat');
    expect(s).toMatchObject({ entries: 5000, max: 262144, socketTimeWait: 2048 });
    expect(Object.values(s!.counts).every((c) => c === null)).toBe(true);
    expect(s!.unavailable['counts.drop']).toMatch(/does not exist .*CONFIG_NF_CONNTRACK_PROCFS/);
  });

  it('without conntrack in the kernel, fails to start with an error naming it', async () => {
    const options = {
      netnsPath: null,
      intervalMs: 50,
      receiveBufferBytes: 0,
      resyncIntervalMs: 0,
      backend: 'proc' as const,
      pressure: { warning: 0.75, critical: 0.9, hysteresis: 0.05 },
    };
    const backend = new ProcBackend(options, { sample: () => {}, error: () => {} }, root('no-conntrack'));
    const error = (await backend.start().then(
      () => null,
      (e: unknown) => e,
    )) as ConntrackError;
    expect(error.name).toBe('ConntrackError');
    expect(error.code).toBe('ENOENT');
    expect(error.missing).toBe('conntrack');
    expect(error.message).toMatch(/nf_conntrack_max does not exist .*nf_conntrack is not loaded/);
  });
});
