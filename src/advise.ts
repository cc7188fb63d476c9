/**
 * The tuning advice the seed support article gives by hand (raise nf_conntrack_max, size the
 * buckets, shorten the TIME_WAIT timeout), computed from what the host really did while it was
 * watched. Pure: samples and an environment in, advice out. It never applies anything.
 */
import type { KernelDropHistory } from './host/kernel-drops.js';
import { evictableVerdict, type TopReport } from './top.js';
import type { ConntrackSample } from './types.js';

export type { KernelDropHistory };

export interface TuningEnvironment {
  /** Current nf_conntrack_max. */
  max: number;
  /** Current nf_conntrack_buckets, if known. */
  buckets: number | null;
  /** Current nf_conntrack_tcp_timeout_time_wait in seconds, if known. */
  timeWaitTimeout: number | null;
  /** Bytes one conntrack entry takes in the kernel (slab object size), if readable. */
  entryBytes: number | null;
  /** Total memory of the host in bytes, if known. */
  memoryBytes: number | null;
  /**
   * What the kernel remembers of table-full drops before and beyond the observation (its drop
   * counter since the namespace started, the last "table full" log line). Without it the advice
   * rests on the observed samples alone.
   */
  kernelDrops?: KernelDropHistory;
}

export interface Recommendation {
  sysctl:
    | 'net.netfilter.nf_conntrack_max'
    | 'net.netfilter.nf_conntrack_buckets'
    | 'net.netfilter.nf_conntrack_tcp_timeout_time_wait';
  current: number | null;
  recommended: number;
  /** The numbers behind it, in one or two sentences. */
  reason: string;
}

export interface TuningAdvice {
  observedSeconds: number;
  peakEntries: number | null;
  peakFill: number | null;
  /** Linear growth of entries over the observation, per minute (negative when shrinking). */
  growthPerMinute: number | null;
  drops: number | null;
  /** The kernel's memory of drops, as the environment gave it (null when it gave none). */
  kernelDrops: KernelDropHistory | null;
  peakTimeWait: number | null;
  recommendations: Recommendation[];
  /** Kernel memory the recommended table would take when full, if the entry size is known. */
  memory: { entryBytes: number; bytes: number; shareOfRam: number | null } | null;
  /** Lines for /etc/sysctl.d/ (empty when nothing should change). */
  sysctlConf: string;
  /** How to apply the snippet; the advisor itself never does. */
  steps: string[];
  /** Plain-words findings, including "nothing to change". */
  notes: string[];
  /**
   * What filled the table, from a snapshot taken at the end of a high-fill observation (null
   * when none was taken): how much of it the kernel may evict, and the top groups.
   */
  snapshot: TopReport | null;
}

/** Fill to aim for at the projected peak: room for a burst as large again. */
export const TARGET_FILL = 0.5;
/** The farthest ahead observed growth is projected, in seconds (never farther than observed). */
export const GROWTH_HORIZON_S = 600;
/** The TIME_WAIT timeout the support article recommends. */
export const SHORT_TIME_WAIT_S = 30;

/** The peak fill at or above which `advise` takes a snapshot of what fills the table. */
export const SNAPSHOT_FILL = 0.75;

export function adviseTuning(
  samples: readonly ConntrackSample[],
  env: TuningEnvironment,
  snapshot: TopReport | null = null,
): TuningAdvice {
  const withEntries = samples.filter((s) => s.entries !== null);
  const observedSeconds = samples.reduce((sum, s) => sum + s.intervalMs, 0) / 1000;
  const peakEntries = withEntries.length ? withEntries.reduce((m, s) => Math.max(m, s.entries!), -Infinity) : null;
  const peakFill = peakEntries === null ? null : peakEntries / env.max;
  const drops = sumKnown(samples.map((s) => s.counts.drop));
  const twKnown = samples.filter((s) => s.timeWait.entries !== null);
  const peakTimeWait = twKnown.length ? twKnown.reduce((m, s) => Math.max(m, s.timeWait.entries!), -Infinity) : null;
  const growthPerSecond = slope(withEntries);
  const recommendations: Recommendation[] = [];
  const notes: string[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

  // Drops the kernel counted in this namespace before the observation: the table was full
  // then, whatever it looked like while watched.
  const earlier = env.kernelDrops?.sinceStart ?? null;
  const ago = env.kernelDrops?.lastLoggedSecondsAgo ?? null;
  const incident = (drops ?? 0) === 0 && earlier !== null && earlier > 0;
  const when =
    ago === null
      ? `when is unknown: ${env.kernelDrops?.unavailable.lastLoggedSecondsAgo ?? 'no kernel log'}`
      : `the kernel last logged "table full" ${formatAgo(ago)} ago`;
  if (env.kernelDrops) {
    if (earlier === null)
      notes.push(`Drops before the observation are unknown: ${env.kernelDrops.unavailable.sinceStart ?? 'unknown'}.`);
    else if (earlier === 0) notes.push('The kernel counted no table-full drop in this namespace since it started.');
    else notes.push(`The kernel counted ${earlier} table-full drops in this namespace since it started (${when}).`);
  }

  // nf_conntrack_max: the projected demand, at TARGET_FILL.
  let recommendedMax = env.max;
  if (peakEntries !== null) {
    // A trend seen for a minute says little about the next hour: project as far as observed.
    const horizon = Math.min(GROWTH_HORIZON_S, observedSeconds);
    const projected = peakEntries + Math.max(0, growthPerSecond ?? 0) * horizon;
    // Every dropped packet wanted an entry that did not fit; drops counted before the
    // observation, perhaps over a long time, are taken as at most a table's worth.
    const wanted = (drops ?? 0) > 0 ? drops! : incident ? Math.min(earlier!, env.max) : 0;
    const demand = Math.max(projected, wanted > 0 ? env.max + wanted : 0);
    const needed = nextPowerOfTwo(Math.ceil(demand / TARGET_FILL));
    if (wanted > 0 || demand > env.max * 0.75) {
      recommendedMax = Math.max(needed, env.max * 2);
      const why =
        (drops ?? 0) > 0
          ? `${drops} packets were dropped because the table was full (peak ${peakEntries} of ${env.max} entries)`
          : incident
            ? `the kernel counted ${earlier} packets dropped for a full table in this namespace (${when}), none while observed (peak ${peakEntries} of ${env.max} entries)`
            : `peak ${peakEntries} entries (${pct(peakFill!)}), projected ${Math.round(projected)} in ${Math.round(horizon)} s at the observed growth`;
      recommendations.push({
        sysctl: 'net.netfilter.nf_conntrack_max',
        current: env.max,
        recommended: recommendedMax,
        reason: `${why}; ${recommendedMax} keeps that demand at about ${pct(demand / recommendedMax)} of the table.`,
      });
    } else {
      notes.push(`nf_conntrack_max ${env.max} is enough: peak ${peakEntries} entries (${pct(peakFill!)}), no drops.`);
    }
  }

  // nf_conntrack_buckets: one bucket per entry of the (new) max, the kernel's own default
  // ratio since 5.15; a bucket costs 8 bytes.
  if (env.buckets !== null && env.buckets < recommendedMax) {
    recommendations.push({
      sysctl: 'net.netfilter.nf_conntrack_buckets',
      current: env.buckets,
      recommended: recommendedMax,
      reason: `a full table of ${recommendedMax} entries in ${env.buckets} buckets averages ${(recommendedMax / env.buckets).toFixed(1)} entries per hash chain; ${recommendedMax} buckets (${formatBytes(recommendedMax * 8)}) keep lookups at one.`,
    });
  }

  // TIME_WAIT timeout: when TIME_WAIT entries are most of a table under pressure.
  if (peakTimeWait !== null && peakEntries && env.timeWaitTimeout !== null && env.timeWaitTimeout > SHORT_TIME_WAIT_S) {
    const share = peakTimeWait / peakEntries;
    const pressured = (drops ?? 0) > 0 || incident || (peakFill ?? 0) >= 0.25;
    if (share >= 0.5 && pressured) {
      const freed = Math.round(peakTimeWait * (1 - SHORT_TIME_WAIT_S / env.timeWaitTimeout));
      recommendations.push({
        sysctl: 'net.netfilter.nf_conntrack_tcp_timeout_time_wait',
        current: env.timeWaitTimeout,
        recommended: SHORT_TIME_WAIT_S,
        reason: `TIME_WAIT entries were ${pct(share)} of the table at peak (${peakTimeWait}); at ${SHORT_TIME_WAIT_S} s instead of ${env.timeWaitTimeout} s about ${freed} of them would be gone.`,
      });
    } else if (share >= 0.5) {
      notes.push(
        `TIME_WAIT entries are ${pct(share)} of the table, but the table is not under pressure: the ${env.timeWaitTimeout} s timeout can stay.`,
      );
    }
  }
  if (peakTimeWait === null)
    notes.push('TIME_WAIT entries are unknown with this backend (it needs ctnetlink): no timeout advice.');

  const memory =
    env.entryBytes === null
      ? null
      : {
          entryBytes: env.entryBytes,
          bytes: recommendedMax * env.entryBytes + recommendedMax * 8,
          shareOfRam: env.memoryBytes ? (recommendedMax * (env.entryBytes + 8)) / env.memoryBytes : null,
        };
  if (memory && recommendations.some((r) => r.sysctl === 'net.netfilter.nf_conntrack_max')) {
    notes.push(
      `A full table of ${recommendedMax} entries takes ${formatBytes(memory.bytes)} of kernel memory (${env.entryBytes} bytes per entry plus 8 per bucket)` +
        (memory.shareOfRam === null ? '.' : `, ${pct(memory.shareOfRam)} of RAM.`),
    );
  }
  if (snapshot) {
    // A full table of unassured entries is an early_drop matter (a scan, a flood, a peer that
    // does not answer), one of assured connections a capacity matter.
    const v = evictableVerdict(snapshot);
    if (v.mostly === 'evictable') {
      const top = snapshot.bySource[0];
      notes.push(
        `The table is ${v.text}` +
          (top && top.key !== 'other' ? ` (top source ${top.key}: ${top.entries} entries).` : '.') +
          ' A larger nf_conntrack_max only makes room for more of them.',
      );
    } else if (v.mostly === 'assured') {
      notes.push(`The table is ${v.text}.`);
    }
  }
  if (recommendations.length === 0) notes.push('Nothing to change.');

  const sysctlConf = recommendations.length
    ? [
        `# conntrack-monitor advise: ${samples.length} samples over ${Math.round(observedSeconds)} s, peak ${peakEntries ?? '?'} entries, ${drops ?? '?'} drops`,
        ...recommendations.map((r) => `${r.sysctl} = ${r.recommended}`),
      ].join('\n')
    : '';
  const steps = recommendations.length
    ? [
        'Save the lines above as /etc/sysctl.d/90-conntrack.conf (or append them to /etc/sysctl.conf).',
        'Apply them now: sysctl -p /etc/sysctl.d/90-conntrack.conf (they also apply at every boot).',
        'nf_conntrack_max and nf_conntrack_buckets are global: set them in the host (initial) namespace, not in a container.',
      ]
    : [];
  return {
    observedSeconds,
    peakEntries,
    peakFill,
    growthPerMinute: growthPerSecond === null ? null : growthPerSecond * 60,
    drops,
    kernelDrops: env.kernelDrops ?? null,
    peakTimeWait,
    recommendations,
    memory,
    sysctlConf,
    steps,
    notes,
    snapshot,
  };
}

/** "45 s", "12 min", "3.5 h", "2.0 days". */
export function formatAgo(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} days`;
}

function sumKnown(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length ? known.reduce((a, b) => a + b, 0) : null;
}

/** Least-squares slope of entries over time, per second. */
function slope(samples: readonly ConntrackSample[]): number | null {
  if (samples.length < 2) return null;
  const xs = samples.map((s) => Date.parse(s.time) / 1000);
  const ys = samples.map((s) => s.entries!);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  xs.forEach((x, i) => {
    num += (x - mx) * (ys[i]! - my);
    den += (x - mx) ** 2;
  });
  return den === 0 ? null : num / den;
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
