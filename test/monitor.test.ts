/**
 * ConntrackMonitor's own logic — start/stop in any order, the final sample, the 'auto' fallback,
 * warnings, pressure, errors, ref/unref — over a fake addon, so it runs without privileges. The
 * kernel's side of the same contract is tested against the real kernel in test/integration/.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConntrackError, ConntrackMonitor, type ConntrackMonitorOptions, type ConntrackSample } from '../dist/index.js';
import type { NativeBinding, NativeMonitor, NativeRecord, RawSample } from '../dist/native.js';

const COUNTERS = [
  'insert',
  'delete',
  'drop',
  'earlyDrop',
  'insertFailed',
  'invalid',
  'icmpError',
  'clashResolve',
  'chainTooLong',
  'searchRestart',
];

function raw(over: Partial<RawSample> = {}): RawSample {
  return {
    endWallMs: Date.UTC(2026, 10, 29, 12, 0, 0),
    durationNs: 1e9,
    final: false,
    kernelStatsOk: true,
    statsError: 0,
    counts: [10, 8, 0, 0, 0, 0, 0, 0, 0, 0],
    totals: [10, 8, 0, 0, 0, 0, 0, 0, 0, 0],
    entries: 100,
    max: 1000,
    buckets: 1024,
    eventsMode: 1,
    socketTimeWait: 0,
    timeWaitTimeout: 120,
    synced: true,
    dumpError: 0,
    tracked: { entries: 100, protocols: [60, 40, 0, 0], tcpStates: [0, 0, 0, 50, 0, 0, 0, 10, 0, 0] },
    unverified: { entries: 0, protocols: [0, 0, 0, 0], tcpStates: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
    verifiedAt: null,
    walks: 0,
    lastWalkMs: null,
    resyncs: 0,
    lastResyncMs: 2,
    tableBytes: 0,
    eventsReceived: 18,
    eventsUpdates: 0,
    eventsUpdatesTotal: 0,
    eventsLost: 0,
    eventsLostTotal: 0,
    firstLossWallMs: null,
    firstLossEverWallMs: null,
    malformedTotal: 0,
    eventProgram: null,
    droppedRecords: 0,
    ...over,
  };
}

/** A fake addon: each NativeMonitor records calls and lets the test deliver records. */
class FakeAddon {
  monitors: FakeNative[] = [];
  startError: (Error & { errno: number; syscall: string; context: string }) | null = null;
  startDelay = 0;
  eventsPath: 'ebpf' | 'netlink' = 'netlink';
  binding(): NativeBinding {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the class below needs the addon
    const addon = this;
    return {
      counterNames: COUNTERS,
      NativeMonitor: class {
        constructor(_options: unknown, onRecords: (records: NativeRecord[]) => void) {
          const native = new FakeNative(onRecords, addon);
          addon.monitors.push(native);
          return native;
        }
      },
    } as unknown as NativeBinding;
  }
}

class FakeNative implements NativeMonitor {
  started = false;
  referenced = true;
  finalRecords: NativeRecord[] = [{ type: 'sample', sample: raw({ final: true, durationNs: 0.5e9 }) }];
  constructor(
    readonly deliver: (records: NativeRecord[]) => void,
    private readonly addon: FakeAddon,
  ) {}
  start() {
    if (this.addon.startError) throw this.addon.startError;
    this.started = true;
  }
  stop() {
    this.started = false;
    return this.finalRecords;
  }
  ref() {
    this.referenced = true;
  }
  unref() {
    this.referenced = false;
  }
  info() {
    const ebpf = this.addon.eventsPath === 'ebpf';
    return {
      receiveBufferBytes: 67108864,
      receiveBufferForced: true,
      eventsPath: this.addon.eventsPath,
      eventsPathReason: ebpf ? null : 'the eBPF event filter is turned off',
    };
  }
}

class TestMonitor extends ConntrackMonitor {
  constructor(
    private readonly addon: FakeAddon,
    options: ConntrackMonitorOptions = {},
  ) {
    super({ backend: 'netlink', ...options });
  }
  protected override loadNativeBinding(): NativeBinding {
    return this.addon.binding();
  }
}

function nativeError(errno: number, syscall: string, context: string) {
  return Object.assign(new Error(`${context}: failed`), { errno, syscall, context });
}

afterEach(() => vi.restoreAllMocks());

describe('ConntrackMonitor over a fake addon', () => {
  it('shapes raw samples once per record: fill, rates, TIME_WAIT and states', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const samples: ConntrackSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    await monitor.start();
    addon.monitors[0]!.deliver([{ type: 'sample', sample: raw() }]);
    expect(samples).toHaveLength(1);
    const s = samples[0]!;
    expect(s).toMatchObject({
      source: 'netlink',
      entries: 100,
      max: 1000,
      fill: 0.1,
      counts: { insert: 10, delete: 8 },
      rates: { insert: 10, delete: 8 },
      timeWait: { entries: 10, timeoutSeconds: 120, share: 0.01 },
      protocols: { tcp: 60, udp: 40, icmp: 0, other: 0 },
      events: { received: 18, receiveBufferBytes: 67108864 },
      samplesMissed: 0,
    });
    // Everything is known but the forecast, which needs 5 samples over 5 s.
    expect(s.unavailable).toEqual({
      timeToFullSeconds: expect.stringMatching(/^a trend needs 5 s of samples; [\d.]+ s so far$/),
    });
    await monitor.stop();
  });

  it('entries past their deadline and not yet checked make only what they touch unknown, and say why', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const samples: ConntrackSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    await monitor.start();
    const waiting = (protocols: number[], tcpStates: number[]) =>
      raw({ unverified: { entries: protocols.reduce((a, b) => a + b, 0), protocols, tcpStates } });
    addon.monitors[0]!.deliver([
      { type: 'sample', sample: waiting([0, 3, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) }, // UDP only
      { type: 'sample', sample: waiting([2, 0, 0, 0], [0, 0, 0, 2, 0, 0, 0, 0, 0, 0]) }, // TCP ESTABLISHED
      { type: 'sample', sample: waiting([1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]) }, // TIME_WAIT
    ]);
    const [udp, tcp, timeWait] = samples;
    expect(udp!.protocols).toBeNull();
    expect(udp!.unavailable.protocols).toBe(
      '3 tracked entries past the deadline the kernel last announced were not checked in this interval (walks of the table are spaced so that they take at most 1% of a core, 0.5% for a whole node, the expired entries they reap included, which the kernel reaps meanwhile); a later interval checks them',
    );
    expect(udp!.tcpStates).toEqual(expect.objectContaining({ ESTABLISHED: 50, TIME_WAIT: 10 }));
    expect(udp!.timeWait.entries).toBe(10);
    expect(udp!.events!.unverified).toBe(3);
    expect(tcp!.tcpStates).toBeNull();
    expect(tcp!.unavailable.tcpStates).toMatch(/^2 tracked TCP entries past the deadline/);
    expect(tcp!.timeWait).toMatchObject({ entries: 10, share: 0.01 });
    expect(timeWait!.timeWait).toMatchObject({ entries: null, share: null });
    expect(timeWait!.unavailable['timeWait.entries']).toMatch(
      /^1 tracked TIME_WAIT entry past the deadline .* was not checked/,
    );
    expect(timeWait!.unavailable['timeWait.share']).toBe(timeWait!.unavailable['timeWait.entries']);
    await monitor.stop();
  });

  it('stop() emits the final partial sample before it resolves; start and stop are idempotent', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const samples: ConntrackSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    await Promise.all([monitor.start(), monitor.start()]);
    expect(addon.monitors).toHaveLength(1); // concurrent starts share one attempt
    expect(monitor.running).toBe(true);
    await Promise.all([monitor.stop(), monitor.stop()]);
    expect(samples.map((s) => s.final)).toEqual([true]);
    expect(monitor.running).toBe(false);
    await monitor.stop();
    expect(samples).toHaveLength(1);
  });

  it('stop() during start() waits for it, and a start after a stop opens anew', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const starting = monitor.start();
    const stopping = monitor.stop();
    await Promise.all([starting, stopping]);
    expect(monitor.running).toBe(false);
    expect(addon.monitors[0]!.started).toBe(false);
    await monitor.start();
    expect(addon.monitors).toHaveLength(2);
    expect(addon.monitors[1]!.started).toBe(true);
    await monitor.stop();
  });

  it("a forced 'netlink' backend rejects with the errno's name and a hint", async () => {
    const addon = new FakeAddon();
    addon.startError = nativeError(1, 'setsockopt', 'subscribe to conntrack events');
    const monitor = new TestMonitor(addon);
    const error = await monitor.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConntrackError);
    expect(error).toMatchObject({ code: 'EPERM', syscall: 'setsockopt', hint: expect.stringMatching(/CAP_NET_ADMIN/) });
    expect(monitor.running).toBe(false);
  });

  it("'auto' falls back to /proc when netlink is not permitted, and says why", async () => {
    const addon = new FakeAddon();
    addon.startError = nativeError(1, 'setsockopt', 'subscribe to conntrack events');
    const monitor = new TestMonitor(addon, { backend: 'auto', intervalMs: 50 });
    const fallbacks: string[] = [];
    const warnings: string[] = [];
    monitor.on('fallback', (f) => fallbacks.push(f.reason));
    monitor.on('warning', (w) => warnings.push(w.code));
    const sample = new Promise<ConntrackSample>((r) => monitor.once('sample', r));
    await monitor.start();
    expect(fallbacks).toEqual([
      expect.stringMatching(/^subscribe to conntrack events: failed \(ctnetlink needs CAP_NET_ADMIN/),
    ]);
    const first = await sample;
    expect(first.source).toBe('proc');
    // The proc backend reads no events and makes no dumps: nf_conntrack_events changes nothing
    // it shows, whatever this host's setting (read from /proc all the same).
    expect(first.eventsMode).toBe(Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_events', 'utf8')));
    expect(warnings).toEqual([]);
    await monitor.stop();
  });

  it("'auto' does not fall back for errors /proc cannot fix (a namespace that does not exist)", async () => {
    const addon = new FakeAddon();
    addon.startError = nativeError(2, 'open', 'open network namespace /var/run/netns/nope');
    const monitor = new TestMonitor(addon, { backend: 'auto', netns: 'nope' });
    await expect(monitor.start()).rejects.toMatchObject({
      code: 'ENOENT',
      hint: 'no network namespace at /var/run/netns/nope',
    });
  });

  it('warns once per change of nf_conntrack_events, and says why fields are null', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const warnings: string[] = [];
    const samples: ConntrackSample[] = [];
    monitor.on('warning', (w) => warnings.push(w.code));
    monitor.on('sample', (s) => samples.push(s));
    await monitor.start();
    const native = addon.monitors[0]!;
    native.deliver([
      { type: 'sample', sample: raw({ eventsMode: 2 }) },
      { type: 'sample', sample: raw({ eventsMode: 2 }) },
    ]);
    native.deliver([{ type: 'sample', sample: raw({ eventsMode: 0 }) }]);
    expect(warnings).toEqual(['EVENTS_AUTO', 'EVENTS_OFF']);
    const off = samples[2]!;
    expect(off.counts.insert).toBeNull();
    expect(off.tcpStates).toBeNull();
    expect(off.unavailable['counts.insert']).toMatch(/nf_conntrack_events is 0/);
    expect(off.unavailable['rates.insert']).toMatch(/nf_conntrack_events is 0/);
    expect(off.unavailable['timeWait.share']).toMatch(/not tracked/);
    await monitor.stop();
  });

  it('names the errno of a failed stats request and of a failed initial dump', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const samples: ConntrackSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    await monitor.start();
    addon.monitors[0]!.deliver([
      {
        type: 'sample',
        sample: raw({
          kernelStatsOk: false,
          statsError: 16,
          counts: [1, 1, null, null, null, null, null, null, null, null],
          entries: null,
          max: null,
          synced: false,
          dumpError: 105,
        }),
      },
    ]);
    const s = samples[0]!;
    expect(s.unavailable.entries).toBe('the conntrack statistics request failed in this interval (EBUSY)');
    expect(s.unavailable.fill).toBe(s.unavailable.entries);
    expect(s.unavailable['counts.drop']).toMatch(/\(EBUSY\); the next sample includes its changes/);
    expect(s.unavailable.tcpStates).toBe('the initial table dump failed (ENOBUFS); it is retried at the next resync');
    await monitor.stop();
  });

  it('where events were lost, insert/delete are null with the number lost, and their totals from then on', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const samples: ConntrackSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    await monitor.start();
    const t0 = Date.UTC(2026, 10, 29, 12, 0, 0);
    addon.monitors[0]!.deliver([
      { type: 'sample', sample: raw() },
      {
        type: 'sample',
        sample: raw({
          counts: [4, 3, 0, 0, 0, 0, 0, 0, 0, 0],
          totals: [14, 11, 0, 0, 0, 0, 0, 0, 0, 0],
          eventsLost: 120,
          eventsLostTotal: 120,
          firstLossWallMs: t0 + 400,
          firstLossEverWallMs: t0 + 400,
          eventsUpdatesTotal: 2,
        }),
      },
      {
        type: 'sample',
        sample: raw({
          counts: [5, 0, 0, 0, 0, 0, 0, 0, 0, 0],
          totals: [19, 11, 0, 0, 0, 0, 0, 0, 0, 0],
          eventsLostTotal: 120,
          firstLossEverWallMs: t0 + 400,
          eventsUpdatesTotal: 2,
        }),
      },
    ]);
    const [clean, lossy, after] = samples;
    expect(clean!.totals.insert).toBe(10);
    expect(clean!.events!.lostSince).toBeNull();
    expect(lossy).toMatchObject({
      counts: { insert: null, delete: null, drop: 0 },
      rates: { insert: null, delete: null, drop: 0 },
      totals: { insert: null, delete: null, drop: 0 },
      events: { lost: 120, lostTotal: 120, lostSince: '2026-11-29T12:00:00.400Z', newTotal: 14, destroyTotal: 11 },
    });
    expect(lossy!.unavailable['counts.insert']).toBe(
      "120 events lost in this interval (from 12:00:00.400 UTC): the event socket's receive buffer (67108864 bytes) was full; NEW and DESTROY among them were not counted",
    );
    expect(lossy!.unavailable['rates.insert']).toBe(lossy!.unavailable['counts.insert']);
    const since =
      '120 events lost since 2026-11-29T12:00:00.400Z: NEW and DESTROY among them were not counted (events.newTotal and events.destroyTotal count those received)';
    expect(lossy!.unavailable['totals.delete']).toBe(since);
    // The next interval lost nothing: its counts are exact again, the totals stay unknown.
    expect(after).toMatchObject({
      counts: { insert: 5, delete: 0 },
      totals: { insert: null, delete: null },
      events: { lost: 0, newTotal: 19, updateTotal: 2 },
    });
    expect(after!.unavailable).toMatchObject({ 'totals.insert': since, 'totals.delete': since });
    expect(Object.keys(after!.unavailable).filter((k) => /insert|delete/.test(k))).toEqual([
      'totals.insert',
      'totals.delete',
    ]);
    await monitor.stop();
  });

  it('on the eBPF path, lost events take nothing from insert/delete: the kernel counted them before the queue', async () => {
    const addon = new FakeAddon();
    addon.eventsPath = 'ebpf';
    const monitor = new TestMonitor(addon);
    const samples: ConntrackSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    await monitor.start();
    addon.monitors[0]!.deliver([
      {
        type: 'sample',
        sample: raw({ eventsLost: 7, eventsLostTotal: 7, firstLossWallMs: 1, firstLossEverWallMs: 1 }),
      },
    ]);
    expect(samples[0]).toMatchObject({
      counts: { insert: 10, delete: 8 },
      totals: { insert: 10, delete: 8 },
      events: { path: 'ebpf', pathReason: null, lost: 7, lostTotal: 7 },
    });
    expect(Object.keys(samples[0]!.unavailable).filter((k) => /insert|delete/.test(k))).toEqual([]);
    await monitor.stop();
  });

  it('reports samples the JS thread missed, and native errors as ConntrackErrors', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const samples: ConntrackSample[] = [];
    const errors: ConntrackError[] = [];
    monitor.on('sample', (s) => samples.push(s));
    monitor.on('error', (e) => errors.push(e));
    await monitor.start();
    addon.monitors[0]!.deliver([
      { type: 'error', error: nativeError(105, 'recvmmsg', 'read conntrack events') },
      { type: 'sample', sample: raw({ droppedRecords: 3 }) },
    ]);
    expect(errors).toEqual([expect.objectContaining({ code: 'ENOBUFS', syscall: 'recvmmsg' })]);
    expect(samples[0]!.samplesMissed).toBe(3);
    await monitor.stop();
  });

  it('without an error listener, errors become process warnings, never exceptions', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    await monitor.start();
    addon.monitors[0]!.deliver([{ type: 'error', error: nativeError(5, 'recv', 'read conntrack statistics') }]);
    expect(warn).toHaveBeenCalledWith('read conntrack statistics: failed', { type: 'ConntrackWarning', code: 'EIO' });
    await monitor.stop();
  });

  it('a throwing listener surfaces on the next tick and does not stop the monitor', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const deferred: (() => void)[] = [];
    vi.spyOn(process, 'nextTick').mockImplementation(((fn: () => void) =>
      deferred.push(fn)) as typeof process.nextTick);
    let calls = 0;
    monitor.on('sample', () => {
      calls++;
      throw new Error('listener bug');
    });
    await monitor.start();
    const native = addon.monitors[0]!;
    native.deliver([{ type: 'sample', sample: raw() }]);
    native.deliver([{ type: 'sample', sample: raw() }]);
    vi.restoreAllMocks();
    expect(calls).toBe(2);
    expect(deferred).toHaveLength(2);
    expect(() => deferred[0]!()).toThrow('listener bug');
    monitor.removeAllListeners('sample');
    await monitor.stop();
  });

  it('emits pressure levels with hysteresis', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon);
    const levels: string[] = [];
    monitor.on('pressure', (p) => levels.push(p.level));
    await monitor.start();
    for (const entries of [100, 800, 950, 880, 700, 600]) {
      addon.monitors[0]!.deliver([{ type: 'sample', sample: raw({ entries }) }]);
    }
    expect(levels).toEqual(['warning', 'critical', 'warning', 'ok']);
    await monitor.stop();
  });

  it('unref() and ref() reach the reader before and after start', async () => {
    const addon = new FakeAddon();
    const monitor = new TestMonitor(addon).unref();
    await monitor.start();
    expect(addon.monitors[0]!.referenced).toBe(false);
    monitor.ref();
    expect(addon.monitors[0]!.referenced).toBe(true);
    await monitor.stop();
  });
});
