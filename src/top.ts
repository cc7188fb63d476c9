/**
 * What fills the table: one ctnetlink dump of a namespace, grouped natively while it is read
 * (native/ctnetlink/snapshot.h), the heaviest keys of each group, and how much of the table
 * the kernel may reclaim under pressure (src/verdict.ts says what that means).
 *
 * ```ts
 * const top = await topEntries({ netns: 'blue', limit: 5 });
 * console.log(top.entries, top.evictable, top.bySource[0]);
 * ```
 */
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { ConntrackError, type NativeErrorLike } from './errors.js';
import { loadBinding, type NativeBinding } from './native.js';
import { resolveTopOptions, type ResolvedTopOptions } from './options.js';

/** One key of a group and the entries it holds. */
export interface TopItem {
  key: string;
  entries: number;
}

/**
 * One snapshot of a namespace's table. Keys are from the ORIGINAL direction (the side that
 * opened the flow). Each group lists its `limit` heaviest keys by entries, descending (ties by
 * key: addresses numerically with IPv4 first, ports by protocol number then port, states by
 * protocol number then state), then `{ key: 'other', entries }` for the rest, when there is a
 * rest: every group sums to `entries`.
 */
export interface TopReport {
  /** When the dump ended, ISO 8601. */
  time: string;
  /** The namespace's path, or null for the process's own. */
  netns: string | null;
  /** nf_conntrack_max when the dump ended (the shares are of it); null with the reason in `unavailable`. */
  max: number | null;
  /** Entries the dump listed. */
  entries: number;
  /**
   * Entries the kernel can reclaim, in either class, each counted once: `unassured` ones and
   * `tcpClosing` ones. See src/verdict.ts and docs/verdicts.md.
   */
  evictable: number;
  /**
   * Entries without IPS_ASSURED (conntrack -L shows no [ASSURED]): the ones the kernel's
   * early_drop() evicts when an insert finds the table full.
   */
  unassured: number;
  /**
   * TCP entries in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE, assured or not: the
   * garbage collector evicts them once an insert has failed at 95% of nf_conntrack_max.
   */
  tcpClosing: number;
  /** By original source address: "10.0.0.7", "fd00::7". */
  bySource: TopItem[];
  /** By original destination address. */
  byDestination: TopItem[];
  /**
   * By protocol and original destination port: "udp/53", "tcp/443" (also sctp, dccp,
   * udplite; gre/<key>), ICMP by request type: "icmp/echo-request", "icmpv6/echo-request"
   * (other types by number: "icmp/13"); protocols without ports by name alone ("esp",
   * "proto-253").
   */
  byDestinationPort: TopItem[];
  /**
   * By protocol and state: TCP by its conntrack state ("tcp/ESTABLISHED", "tcp/TIME_WAIT");
   * other protocols by status: "udp/UNREPLIED" (no reply seen), "udp/REPLIED" (a reply, not
   * yet assured) or "udp/ASSURED".
   */
  byState: TopItem[];
  /** Why a null field is null. */
  unavailable: { max?: string };
}

export interface TopOptions {
  /** Namespace: a name under /var/run/netns or a path such as /proc/PID/ns/net. */
  netns?: string;
  /** Keys per group, 1 to 1000. Default 10. */
  limit?: number;
  /** Give up after this many milliseconds (1,000 to 600,000). Default 30,000. */
  timeoutMs?: number;
  /** Aborts the dump: the promise rejects with a ConntrackError, code ECANCELED. */
  signal?: AbortSignal;
}

interface RawTopReport extends Omit<TopReport, 'time' | 'netns' | 'max' | 'unavailable'> {
  endWallMs: number;
  cost: Record<string, number>;
}

/** A running snapshot: its report, and a way to stop it early. */
export interface RunningSnapshot {
  report: Promise<TopReport>;
  cancel(): void;
  /** The pending dump no longer keeps the process alive. */
  unref(): void;
}

/**
 * Starts one snapshot on a thread of its own (internal: topEntries and the monitor use it).
 * Throws when the addon cannot be loaded.
 */
export function startSnapshot(options: ResolvedTopOptions, binding: NativeBinding = loadBinding()): RunningSnapshot {
  const { NativeSnapshot } = binding;
  const native = new NativeSnapshot({
    netnsPath: options.netnsPath,
    limit: options.limit,
    receiveTimeoutMs: Math.min(2000, options.timeoutMs),
    deadlineMs: options.timeoutMs,
  });
  let started: Promise<RawTopReport>;
  try {
    started = native.start() as Promise<RawTopReport>;
  } catch (err) {
    started = Promise.reject(err);
  }
  const report = started.then(
    (raw): TopReport => {
      const max = conntrackMax();
      return {
        time: new Date(raw.endWallMs).toISOString(),
        netns: options.netnsPath,
        max: typeof max === 'number' ? max : null,
        entries: raw.entries,
        evictable: raw.evictable,
        unassured: raw.unassured,
        tcpClosing: raw.tcpClosing,
        bySource: raw.bySource,
        byDestination: raw.byDestination,
        byDestinationPort: raw.byDestinationPort,
        byState: raw.byState,
        unavailable: typeof max === 'number' ? {} : { max },
      };
    },
    (err: Error & NativeErrorLike) => {
      throw ConntrackError.fromNative(err, options.netnsPath);
    },
  );
  return { report, cancel: () => native.cancel(), unref: () => native.unref() };
}

/**
 * Reads one snapshot of a namespace's table (one ctnetlink dump, CAP_NET_ADMIN) and returns its
 * heaviest sources, destinations, destination ports and states. Exact for that snapshot.
 * Throws a TypeError for bad options; rejects with a ConntrackError (EPERM, ENOENT, ...) when
 * the table cannot be read.
 *
 * A dump walks the whole global hash table whatever the namespace holds (~0.7 s of kernel
 * time for 262,144 entries): take snapshots when they are needed, not every second.
 */
export async function topEntries(options: TopOptions = {}): Promise<TopReport> {
  const resolved = resolveTopOptions(options);
  const signal = options.signal;
  if (signal?.aborted) throw cancelled(resolved.netnsPath);
  let running: RunningSnapshot;
  try {
    running = startSnapshot(resolved);
  } catch (err) {
    throw err instanceof ConntrackError ? err : ConntrackError.addonUnavailable(err);
  }
  const abort = () => running.cancel();
  signal?.addEventListener('abort', abort, { once: true });
  try {
    return await running.report;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}

function cancelled(netns: string | null): ConntrackError {
  return ConntrackError.fromNative(
    {
      message: 'dump the conntrack table: Operation canceled',
      errno: constants.errno.ECANCELED,
      syscall: 'recv',
      context: 'dump the conntrack table',
    },
    netns,
  );
}

const MAX_PATH = '/proc/sys/net/netfilter/nf_conntrack_max';

/** nf_conntrack_max (one value for every namespace), or why it cannot be read. */
function conntrackMax(): number | string {
  try {
    const max = Number(readFileSync(MAX_PATH, 'utf8').trim());
    return Number.isSafeInteger(max) ? max : `${MAX_PATH} holds no integer`;
  } catch (err) {
    return `${MAX_PATH} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
}
