/**
 * AllNamespacesMonitor's own logic, without privileges, against a fake node monitor in place
 * of the addon (the root tests in test/integration/ show the real one): discovery adds and
 * removes namespaces, rows carry the pod and the exact rates, failures and errors are reported,
 * gone namespaces leave the metrics at once, and test seams are not public options.
 * Namespace files of other types (/proc/self/ns/uts, ipc, cgroup) stand in for network
 * namespaces: they are distinct inodes on the nsfs device, which is all discovery looks at.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  registerAllNamespacesMetrics,
  type AllNamespacesOptions,
  type AllNamespacesReport,
} from '../dist/index.js';
import type { NamespaceRoots } from '../dist/host/namespaces.js';
import type { NativeBinding, NodeRecord, RawNamespaceInterval } from '../dist/native.js';
import { runtimeTree, type RuntimeTree } from './helpers/runtime';

/** The monitor over a fixture tree and a fake addon: the test seams are protected methods. */
class TestMonitor extends AllNamespacesMonitor {
  constructor(
    options: AllNamespacesOptions,
    private readonly roots: NamespaceRoots,
    private readonly fake: typeof FakeNodeMonitor = FakeNodeMonitor,
  ) {
    super(options);
  }
  protected override loadNativeBinding(): Pick<NativeBinding, 'NativeNodeMonitor'> {
    return { NativeNodeMonitor: this.fake };
  }
  protected override namespaceRoots(): NamespaceRoots {
    return this.roots;
  }
}

/** What the fake was asked, and a way to answer like the reader thread would. */
class FakeNodeMonitor {
  static last: FakeNodeMonitor;
  added = new Map<number, { path: string; inode: number }>();
  removed: number[] = [];
  referenced = true;
  stopped = false;
  fail: Record<string, { errno: number; syscall: string; context: string }> = {};
  constructor(
    readonly options: object,
    private readonly onRecords: (records: NodeRecord[]) => void,
  ) {
    FakeNodeMonitor.last = this;
  }
  start() {}
  stop(): NodeRecord[] {
    this.stopped = true;
    return [{ type: 'report', final: true, droppedRecords: 0, namespaces: [] }];
  }
  add(id: number, path: string, inode: number) {
    const failure = this.fail[path];
    if (!failure) this.added.set(id, { path, inode });
    setImmediate(() =>
      this.onRecords([
        {
          type: 'opened',
          id,
          ok: !failure,
          counting: 'filter',
          fallbackReason: 'this build has no in-kernel event counter',
          receiveBufferBytes: 2097152,
          error: failure ? Object.assign(new Error(`${failure.context}: Operation not permitted`), failure) : null,
        },
      ]),
    );
  }
  remove(id: number) {
    this.removed.push(id);
    this.added.delete(id);
  }
  ref() {
    this.referenced = true;
  }
  unref() {
    this.referenced = false;
  }
  /** A report in which every open namespace had `over` (and 1.5 s intervals). */
  report(over: (inode: number) => Partial<RawNamespaceInterval>) {
    const namespaces = [...this.added].map(([id, { inode }]): RawNamespaceInterval => ({
      id,
      counting: 'filter',
      counterFailed: false,
      eventsMode: 1,
      endWallMs: Date.UTC(2026, 10, 29, 12, 0, 0),
      durationNs: 1.5e9,
      final: false,
      kernelStatsOk: true,
      statsError: 0,
      counts: [30, 15, 6, 0, 3, 0, 0, 1, 0, 0],
      totals: [300, 150, 60, 0, 30, 0, 0, 10, 0, 0],
      entries: 500,
      max: 1000,
      eventsReceived: 45,
      eventsUpdates: 0,
      eventsUpdatesTotal: 0,
      eventsLost: 0,
      eventsLostTotal: 0,
      firstLossWallMs: null,
      firstLossEverWallMs: null,
      malformedTotal: 0,
      ...over(inode),
    }));
    this.onRecords([{ type: 'report', final: false, droppedRecords: 0, namespaces }]);
  }
  error(id: number, context: string) {
    this.onRecords([
      {
        type: 'error',
        id,
        error: Object.assign(new Error(`${context}: Bad message`), { errno: 74, syscall: 'recv', context }),
      },
    ]);
  }
}

interface Node {
  netnsDir: string;
  runtime: RuntimeTree;
  /** name -> a namespace file standing in for it */
  link(name: string, nsType: string): void;
  unlink(name: string): void;
  inode(nsType: string): number;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function node(): Node {
  const root = mkdtempSync(join(tmpdir(), 'ctmon-node-'));
  const netnsDir = join(root, 'netns');
  mkdirSync(netnsDir);
  // A proc root with no processes, whose self/ns/net tells discovery the nsfs device.
  mkdirSync(join(root, 'proc', 'self', 'ns'), { recursive: true });
  symlinkSync('/proc/self/ns/net', join(root, 'proc', 'self', 'ns', 'net'));
  const runtime = runtimeTree();
  cleanups.push(
    () => rmSync(root, { recursive: true, force: true }),
    () => runtime.remove(),
  );
  return {
    netnsDir,
    runtime,
    link: (name, nsType) => symlinkSync(`/proc/self/ns/${nsType}`, join(netnsDir, name)),
    unlink: (name) => unlinkSync(join(netnsDir, name)),
    inode: (nsType) => statSync(`/proc/self/ns/${nsType}`).ino,
  };
}

function monitor(n: Node, options: object = {}) {
  const m = new TestMonitor(
    { intervalMs: 1000, rediscoverMs: 100, containerdRoot: n.runtime.containerd, crioRoot: n.runtime.crio, ...options },
    // Only the names under netnsDir are namespaces: the proc root has no processes.
    { netnsDir: n.netnsDir, proc: join(n.netnsDir, '..', 'proc') },
  );
  const reports: AllNamespacesReport[] = [];
  m.on('report', (r) => reports.push(r));
  cleanups.push(() => m.stop());
  return { m, reports };
}
const until = async (what: string, test: () => boolean) => {
  const deadline = Date.now() + 5000;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('AllNamespacesMonitor (fake node monitor)', () => {
  it('rows: identity with the pod, counts, exact rates, the counting path, and reasons for what is null', async () => {
    const n = node();
    n.link('cni-web', 'uts');
    n.link('plain', 'ipc');
    n.runtime.setNetns('web', join(n.netnsDir, 'cni-web'));
    const { m, reports } = monitor(n);
    await m.start();
    FakeNodeMonitor.last.report(() => ({}));
    const rows = Object.fromEntries(reports[0]!.namespaces.map((r) => [r.name, r]));
    expect(Object.keys(rows).sort()).toEqual(['cni-web', 'plain']);
    expect(rows['cni-web']).toMatchObject({
      inode: n.inode('uts'),
      pid: null,
      host: false,
      pod: { namespace: 'shop', name: 'web-7d9f8b6c5-x2x9q', uid: '0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6' },
      intervalMs: 1500,
      entries: 500,
      max: 1000,
      fill: 0.5,
      counts: { insert: 30, delete: 15, drop: 6, insertFailed: 3, clashResolve: 1, earlyDrop: 0 },
      rates: { insert: 20, delete: 10, drop: 4, insertFailed: 2, clashResolve: 0.667 },
      totals: { insert: 300, drop: 60, insertFailed: 30 },
      events: {
        counting: 'filter',
        countingFallback: 'this build has no in-kernel event counter',
        received: 45,
        lost: 0,
        receiveBufferBytes: 2097152,
      },
      drops: 6,
      dropRate: 4,
      inserts: 30,
      insertRate: 20,
      totalDrops: 60,
      source: 'netlink',
      error: null,
      tcpStates: null,
    });
    expect(rows['cni-web']!.unavailable.tcpStates).toMatch(/trackStates/);
    expect(rows.plain!.pod).toBeNull();
    expect(rows.plain!.unavailable.pod).toBeUndefined(); // the runtime was read: it is no pod's

    // nf_conntrack_events=0 in a namespace: inserts are unknown, not 0.
    FakeNodeMonitor.last.report((inode) => (inode === n.inode('ipc') ? { eventsMode: 0 } : {}));
    const off = reports[1]!.namespaces.find((r) => r.name === 'plain')!;
    expect(off.counts.insert).toBeNull();
    expect(off.inserts).toBeNull();
    expect(off.unavailable['counts.insert']).toMatch(/nf_conntrack_events is 0/);
    // The in-kernel counter unreadable for an interval: null with its reason.
    FakeNodeMonitor.last.report(() => ({ counts: [null, null, 0, 0, 0, 0, 0, 0, 0, 0], counterFailed: true }));
    expect(reports[2]!.namespaces[0]!.unavailable['counts.delete']).toMatch(/counter could not be read/);
    // Events lost on the filter path: insert and delete null with the number lost and from when,
    // their totals null from then on; what was received stays in events.newTotal/destroyTotal.
    const lossAt = Date.UTC(2026, 10, 29, 12, 0, 0, 250);
    FakeNodeMonitor.last.report(() => ({
      eventsLost: 7,
      eventsLostTotal: 7,
      firstLossWallMs: lossAt,
      firstLossEverWallMs: lossAt,
    }));
    const lossy = reports[3]!.namespaces[0]!;
    expect(lossy.counts.insert).toBeNull();
    expect(lossy.rates.delete).toBeNull();
    expect(lossy.totals.insert).toBeNull();
    expect(lossy.counts.drop).toBe(6); // the kernel's own counters are not events: still known
    expect(lossy.unavailable['counts.insert']).toMatch(/^7 events lost in this interval \(from 12:00:00\.250 UTC\)/);
    expect(lossy.unavailable['totals.delete']).toMatch(/^7 events lost since 2026-11-29T12:00:00\.250Z/);
    expect(lossy.events).toMatchObject({
      lost: 7,
      lostTotal: 7,
      lostSince: '2026-11-29T12:00:00.250Z',
      newTotal: 300,
      destroyTotal: 150,
    });
    // The next interval without loss: its counts are known again, the totals stay null.
    FakeNodeMonitor.last.report(() => ({ eventsLostTotal: 7, firstLossEverWallMs: lossAt }));
    const after = reports[4]!.namespaces[0]!;
    expect(after.counts.insert).toBe(30);
    expect(after.totals.insert).toBeNull();
  });

  it('adds a namespace as soon as its name appears, removes a gone one at once, and its series leave the metrics', async () => {
    const n = node();
    n.link('a', 'uts');
    const { m } = monitor(n, { rediscoverMs: 60_000 });
    const registry = new Registry();
    registerAllNamespacesMetrics(m, { registry, labels: { node: 'n1' } });
    await m.start();
    const fake = FakeNodeMonitor.last;
    expect([...fake.added.values()].map((a) => a.inode)).toEqual([n.inode('uts')]);
    n.link('b', 'ipc'); // seen by the directory watch, not by the (1 min) period
    await until('b to be added', () => fake.added.size === 2);
    fake.report(() => ({}));
    let text = await registry.metrics();
    expect(text).toMatch(/^nf_conntrack_entries\{node="n1",netns="b",pod_namespace="",pod=""\} 500$/m);
    expect(text).toMatch(/^nf_conntrack_stat_insert_failed_total\{node="n1",netns="a",pod_namespace="",pod=""\} 30$/m);
    expect(text).toMatch(/^nf_conntrack_events_total\{node="n1",netns="a",pod_namespace="",pod="",type="new"\} 300$/m);
    expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');

    const idOfB = [...fake.added].find(([, a]) => a.inode === n.inode('ipc'))![0];
    n.unlink('b');
    await until('b to be removed', () => fake.removed.includes(idOfB));
    // No report since: the latest report and the scrape already leave b out.
    expect(m.latest!.namespaces.map((r) => r.name)).toEqual(['a']);
    text = await registry.metrics();
    expect(text).not.toMatch(/netns="b"/);
    expect(text).toMatch(/netns="a"/);
  });

  it('start() rejects with the first error when no namespace can be opened, and stops the reader', async () => {
    const n = node();
    n.link('a', 'uts');
    const failing = new TestMonitor(
      { containerdRoot: null, crioRoot: null },
      { netnsDir: n.netnsDir, proc: join(n.netnsDir, '..', 'proc') },
      class extends FakeNodeMonitor {
        constructor(o: object, cb: (r: NodeRecord[]) => void) {
          super(o, cb);
          this.fail[join(n.netnsDir, 'a')] = { errno: 1, syscall: 'setns', context: 'enter network namespace' };
        }
      },
    );
    const reports: AllNamespacesReport[] = [];
    failing.on('report', (r) => reports.push(r));
    await expect(failing.start()).rejects.toMatchObject({
      code: 'EPERM',
      message: expect.stringMatching(
        /^no network namespace could be monitored: enter network namespace: Operation not permitted \(entering a network namespace needs CAP_SYS_ADMIN\)/,
      ),
    });
    expect(FakeNodeMonitor.last.stopped).toBe(true);
    expect(reports).toEqual([]); // a start that failed reports nothing, not a final report of errors
  });

  it('a namespace that fails is a row with its error, tried again at the next discovery', async () => {
    const n = node();
    n.link('a', 'uts');
    n.link('b', 'ipc');
    const { m, reports } = monitor(n);
    const original = FakeNodeMonitor.prototype.add;
    let failures = 0;
    FakeNodeMonitor.prototype.add = function (id, path, inode) {
      if (path.endsWith('/b') && failures++ === 0)
        this.fail[path] = { errno: 24, syscall: 'socket', context: 'open the conntrack request socket' };
      else delete this.fail[path];
      original.call(this, id, path, inode);
    };
    cleanups.push(() => (FakeNodeMonitor.prototype.add = original));
    await m.start();
    const fake = FakeNodeMonitor.last;
    fake.report(() => ({}));
    const b = reports[0]!.namespaces.find((r) => r.name === 'b')!;
    expect(b).toMatchObject({
      entries: null,
      events: null,
      source: null,
      error: expect.stringMatching(/EMFILE|open the conntrack request socket/),
    });
    await until('b to be opened on a later try', () => fake.added.size === 2);
  });

  it("errors reach 'error', or become process warnings without a listener, never exceptions", async () => {
    const n = node();
    n.link('a', 'uts');
    const { m } = monitor(n);
    await m.start();
    const fake = FakeNodeMonitor.last;
    const [id] = [...fake.added.keys()];
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    cleanups.push(() => process.off('warning', onWarning));
    fake.error(id!, 'read conntrack statistics');
    await until('the warning', () => warnings.length === 1);
    expect(warnings[0]!.message).toBe('namespace a: read conntrack statistics: Bad message');
    const errors: Error[] = [];
    m.on('error', (e) => errors.push(e));
    fake.error(0, 'wait for conntrack events');
    expect(errors.map((e) => e.message)).toEqual(['wait for conntrack events: Bad message']);
  });

  it('unref() and ref() reach the reader; stop() emits the final report; test seams are not options', async () => {
    const n = node();
    n.link('a', 'uts');
    const { m, reports } = monitor(n);
    m.unref();
    await m.start();
    expect(FakeNodeMonitor.last.referenced).toBe(false);
    m.ref();
    expect(FakeNodeMonitor.last.referenced).toBe(true);
    await m.stop();
    expect(reports.at(-1)!.final).toBe(true);
    expect(() => new AllNamespacesMonitor({ roots: { netnsDir: '/tmp', proc: '/proc' } } as object)).toThrow(
      /^options has an unknown option "roots"/,
    );
    expect(() => new AllNamespacesMonitor({ backend: 'proc' } as object)).toThrow(
      /^backend must be one of auto, netlink, got "proc"/,
    );
    expect(() => new AllNamespacesMonitor({ trackStates: ['a/b/c'] })).toThrow(/^trackStates entries/);
    expect(() => new AllNamespacesMonitor({ crioRoot: 'relative' })).toThrow(/^crioRoot must be an absolute path/);
  });
});
