/**
 * The /proc backend: no privileges needed, one small set of file reads per interval, on a JS
 * timer. It sees the table's fill and the kernel's stat counters (when the kernel has
 * /proc/net/stat/nf_conntrack) but no events: insert/delete rates and per-entry states are null,
 * with the reason in `unavailable`.
 */
import { readdir, stat } from 'node:fs/promises';
import type { Backend, BackendSink } from './backend.js';
import { ConntrackError } from '../errors.js';
import { fileKind, withTimeout } from '../host/host-file.js';
import type { ResolvedOptions } from '../options.js';
import { ProcReader, procPaths, StatDeltas, STAT_COLUMNS, type ProcReading } from './procfs.js';
import { buildSample, type SampleParts } from '../sample.js';
import { COUNTER_NAMES, type CounterName, type CounterSet } from '../types.js';

const NEEDS_EVENTS = 'counted from ctnetlink events, which need CAP_NET_ADMIN (the proc backend reads none)';
const REASONS: Record<string, string> = {
  'counts.insert': `${NEEDS_EVENTS}; the kernel's own insert stat is dead on the packet path`,
  'counts.delete': NEEDS_EVENTS,
  'timeWait.entries':
    'TIME_WAIT per conntrack entry needs a ctnetlink dump (CAP_NET_ADMIN); see socketTimeWait for TIME_WAIT sockets',
  tcpStates: 'states of conntrack entries need a ctnetlink dump (CAP_NET_ADMIN)',
  protocols: 'entries by protocol need a ctnetlink dump (CAP_NET_ADMIN)',
  events: 'the proc backend reads no events',
};

export class ProcBackend implements Backend {
  private reader: ProcReader | undefined;
  private readonly deltas = new StatDeltas();
  private readonly totals = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Record<CounterName, number>;
  private timer: NodeJS.Timeout | undefined;
  private intervalStart = 0n;
  private referenced = true;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly sink: BackendSink,
    private readonly procRoot = '/proc',
  ) {}

  async start(): Promise<void> {
    const paths = procPaths(this.procRoot, await this.namespacePid());
    this.reader = new ProcReader(paths);
    let baseline: ProcReading;
    try {
      baseline = this.reader.read();
    } catch (err) {
      this.reader.close();
      throw ConntrackError.fromFs(err as NodeJS.ErrnoException, 'read conntrack state from /proc');
    }
    if (baseline.max === null) {
      this.reader.close();
      throw new ConntrackError(`${paths.sysctl}/nf_conntrack_max does not exist`, {
        code: 'ENOENT',
        hint: 'this kernel has no conntrack: nf_conntrack is not loaded (a firewall rule that uses conntrack loads it)',
        missing: 'conntrack',
      });
    }
    if (baseline.stat) this.deltas.update(baseline.stat);
    this.intervalStart = process.hrtime.bigint();
    this.timer = setInterval(() => this.tick(false), this.options.intervalMs);
    if (!this.referenced) this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    try {
      this.tick(true);
    } finally {
      this.reader?.close();
    }
  }

  ref(): void {
    this.referenced = true;
    this.timer?.ref();
  }

  unref(): void {
    this.referenced = false;
    this.timer?.unref();
  }

  /**
   * The pid of a process in the monitored namespace, whose /proc/PID/net shows that namespace
   * without setns, or null for the process's own namespace.
   */
  private async namespacePid(): Promise<number | null> {
    const path = this.options.netnsPath;
    if (path === null) return null;
    // /proc/PID/ns/net names its process: no need (nor, unprivileged, permission) to stat it.
    const direct = /^\/proc\/(\d+|self|thread-self)\/ns\/net$/.exec(path);
    if (direct) return /^\d+$/.test(direct[1]!) ? Number(direct[1]) : null;
    // stat(), never open(): a FIFO would wait for a writer. A path on a hung filesystem can
    // still hold stat() in libuv's thread pool, so start() waits for it only so long.
    const target = await bounded(stat(path), STAT_TIMEOUT_MS, `open network namespace ${path}`).catch(
      (err: NodeJS.ErrnoException) => {
        throw err instanceof ConntrackError ? err : ConntrackError.fromFs(err, `open network namespace ${path}`);
      },
    );
    const own = await stat(`${this.procRoot}/self/ns/net`);
    if (own.ino === target.ino && own.dev === target.dev) return null;
    // Namespace files all live on the one nsfs device: anything else is no namespace.
    if (target.dev !== own.dev || !target.isFile()) {
      throw new ConntrackError(`${path} is ${fileKind(target)}, not a network namespace`, {
        code: 'EINVAL',
        hint: 'pass /var/run/netns/NAME or /proc/PID/ns/net',
      });
    }
    for (const entry of await readdir(this.procRoot)) {
      if (!/^\d+$/.test(entry)) continue;
      const ns = await stat(`${this.procRoot}/${entry}/ns/net`).catch(() => null);
      if (ns && ns.ino === target.ino && ns.dev === target.dev) return Number(entry);
    }
    throw new ConntrackError(`no process found in network namespace ${path}`, {
      code: 'ESRCH',
      hint: 'the proc backend reads another namespace through a process in it: pass /proc/PID/ns/net',
    });
  }

  private tick(final: boolean): void {
    let reading: ProcReading;
    try {
      reading = this.reader!.read();
    } catch (err) {
      this.sink.error(ConntrackError.fromFs(err as NodeJS.ErrnoException, 'read conntrack state from /proc'));
      return;
    }
    const now = process.hrtime.bigint();
    const durationNs = Number(now - this.intervalStart);
    this.intervalStart = now;
    this.sink.sample(buildSample(this.parts(reading, durationNs, final)));
  }

  private parts(r: ProcReading, durationNs: number, final: boolean): SampleParts {
    const unavailable: Partial<Record<string, string>> = { ...REASONS };
    const deltas = r.stat ? this.deltas.update(r.stat) : {};
    const counts = {} as CounterSet;
    const totals = {} as CounterSet;
    for (const name of COUNTER_NAMES) {
      const delta = deltas[name] ?? null;
      counts[name] = delta;
      if (delta !== null) this.totals[name] += delta;
      totals[name] = delta === null ? null : this.totals[name];
      if (delta === null && !unavailable[`counts.${name}`]) {
        unavailable[`counts.${name}`] = r.stat
          ? `this kernel's /proc/net/stat/nf_conntrack has no ${STAT_COLUMNS[name]} column`
          : '/proc/net/stat/nf_conntrack does not exist (kernel built without CONFIG_NF_CONNTRACK_PROCFS)';
      }
      if (totals[name] === null) unavailable[`totals.${name}`] = unavailable[`counts.${name}`];
    }
    const otherNs = 'a sysctl of another namespace, not readable without entering it';
    if (r.count === null) unavailable.entries = `${otherNs}, and /proc/net/stat/nf_conntrack does not exist`;
    if (r.timeWaitTimeout === null) unavailable['timeWait.timeoutSeconds'] = otherNs;
    if (r.eventsMode === null) unavailable.eventsMode = otherNs;
    if (r.socketTimeWait === null) unavailable.socketTimeWait = 'no TCP line in /proc/net/sockstat';
    if (r.max === null) unavailable.max = '/proc/sys/net/netfilter/nf_conntrack_max is not readable';
    if (r.buckets === null) unavailable.buckets = '/proc/sys/net/netfilter/nf_conntrack_buckets is not readable';
    return {
      endWallMs: Date.now(),
      durationNs,
      final,
      source: 'proc',
      netns: this.options.netnsPath,
      entries: r.count,
      max: r.max,
      buckets: r.buckets,
      counts,
      totals,
      events: null,
      tracked: null,
      timeWaitTimeout: r.timeWaitTimeout,
      eventsMode: r.eventsMode,
      socketTimeWait: r.socketTimeWait,
      samplesMissed: 0,
      unavailable,
    };
  }
}

const STAT_TIMEOUT_MS = 2000;

/** `promise`, or ETIMEDOUT after `ms` (what it waits on is left to finish on its own). */
function bounded<T>(promise: Promise<T>, ms: number, context: string): Promise<T> {
  return withTimeout(
    promise,
    ms,
    () =>
      new ConntrackError(`${context}: no answer within ${ms / 1000} s`, {
        code: 'ETIMEDOUT',
        syscall: 'stat',
        hint: 'is it on a filesystem that does not answer?',
      }),
  );
}
