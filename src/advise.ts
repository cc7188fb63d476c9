/**
 * The tuning advice the seed support article gives by hand (raise nf_conntrack_max, size the
 * buckets, shorten the TIME_WAIT timeout), computed from what the host really did while it was
 * watched, and from what fills the table (the one verdict of src/verdict.ts): a table of
 * assured connections needs a larger max, one of closing TCP a shorter timeout, one of
 * unassured entries a look at who opens them. Every share is of nf_conntrack_max. Pure:
 * samples and an environment in, advice out. It never applies anything.
 */
import type { KernelDropHistory } from './host/kernel-drops.js';
import type { TopReport } from './top.js';
import { compositionOfSample, evictableVerdict, type EvictableVerdict } from './verdict.js';
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
  /** nf_conntrack_max the advice is for (the environment's): every share is of it. */
  max: number;
  peakEntries: number | null;
  peakFill: number | null;
  /** Linear growth of entries over the observation, per minute (negative when shrinking). */
  growthPerMinute: number | null;
  /** Packets dropped for a full table while observed. */
  drops: number | null;
  /**
   * Packets the kernel dropped for a full table in this namespace before the observation (its
   * drop counter since the namespace started, less `drops`): history, which does not size the
   * table. Null when the environment did not say, or the kernel could not tell.
   */
  dropsBefore: number | null;
  /** The kernel's memory of drops, as the environment gave it (null when it gave none). */
  kernelDrops: KernelDropHistory | null;
  peakTimeWait: number | null;
  /**
   * What fills the table (src/verdict.ts), on the snapshot when there is one, else on the
   * busiest sample's TCP states; null when the table is not under pressure (no drops, no
   * history of them, under 25% full) or what is known cannot tell. Its class decides the
   * knob: TIME_WAIT's timeout, who opens unassured entries, or nf_conntrack_max.
   */
  verdict: EvictableVerdict | null;
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
   * when none was taken): how much of it the kernel may reclaim, and the top groups.
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
  const peakSample = withEntries.reduce<ConntrackSample | null>(
    (m, s) => (m && m.entries! >= s.entries! ? m : s),
    null,
  );
  const peakEntries = peakSample?.entries ?? null;
  const peakFill = peakEntries === null ? null : peakEntries / env.max;
  const drops = sumKnown(samples.map((s) => s.counts.drop));
  const twKnown = samples.filter((s) => s.timeWait.entries !== null);
  const peakTimeWait = twKnown.length ? twKnown.reduce((m, s) => Math.max(m, s.timeWait.entries!), -Infinity) : null;
  const growthPerSecond = slope(withEntries);
  const recommendations: Recommendation[] = [];
  const notes: string[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const ofMax = (n: number) => `${pct(n / env.max)} of nf_conntrack_max`;
  const observedDrops = drops ?? 0;

  // What happened before the observation is history: the kernel's drop counter since the
  // namespace started, less the drops seen while watched. It says the table was full then; it
  // does not say how large it must be now.
  const sinceStart = env.kernelDrops?.sinceStart ?? null;
  const dropsBefore = sinceStart === null ? null : Math.max(0, sinceStart - observedDrops);
  const ago = env.kernelDrops?.lastLoggedSecondsAgo ?? null;
  const when =
    ago === null
      ? `when is unknown: ${env.kernelDrops?.unavailable.lastLoggedSecondsAgo ?? 'no kernel log'}`
      : `the kernel last logged "table full" for it ${formatAgo(ago)} ago`;
  if (env.kernelDrops) {
    if (dropsBefore === null)
      notes.push(`Drops before the observation are unknown: ${env.kernelDrops.unavailable.sinceStart ?? 'unknown'}.`);
    else if (dropsBefore === 0)
      notes.push(
        observedDrops > 0
          ? 'The kernel counted no table-full drop in this namespace before the observation.'
          : 'The kernel counted no table-full drop in this namespace since it started.',
      );
    else if (observedDrops > 0)
      notes.push(
        `The kernel counted ${dropsBefore} more table-full drops in this namespace before the observation (${when}).`,
      );
    else
      notes.push(
        `${dropsBefore} drops since the namespace started, none while observed (${when}): the table was full before, ` +
          `not while it was watched (peak ${peakEntries ?? '?'} entries${peakEntries === null ? '' : `, ${ofMax(peakEntries)}`}). ` +
          'That history does not size the table: watch it while it is busy (advise --observe longer, or record a load test).',
      );
  }
  const history = (dropsBefore ?? 0) > 0;
  const pressured = observedDrops > 0 || history || (peakFill ?? 0) >= 0.25;

  // What fills the table, and so what acts on it: one verdict (src/verdict.ts), on the snapshot
  // taken at the end when there is one, else on the busiest sample's TCP states.
  const composition = snapshot ?? (peakSample ? compositionOfSample(peakSample) : null);
  const verdict = composition ? evictableVerdict(composition) : null;
  const mostly = pressured ? (verdict?.mostly ?? null) : null;

  // The TIME_WAIT timeout, when closing TCP in TIME_WAIT fills a table under pressure: what it
  // frees counts off the demand below.
  let freed = 0;
  const timeWaitFills = verdict?.mostly === 'tcp-closing' && verdict.knob === 'nf_conntrack_tcp_timeout_time_wait';
  if (
    timeWaitFills &&
    peakTimeWait !== null &&
    env.timeWaitTimeout !== null &&
    env.timeWaitTimeout > SHORT_TIME_WAIT_S
  ) {
    if (mostly === 'tcp-closing') {
      freed = Math.round(peakTimeWait * (1 - SHORT_TIME_WAIT_S / env.timeWaitTimeout));
      recommendations.push({
        sysctl: 'net.netfilter.nf_conntrack_tcp_timeout_time_wait',
        current: env.timeWaitTimeout,
        recommended: SHORT_TIME_WAIT_S,
        reason: `TIME_WAIT entries peaked at ${peakTimeWait} (${ofMax(peakTimeWait)}); at ${SHORT_TIME_WAIT_S} s instead of ${env.timeWaitTimeout} s about ${freed} of them would be gone.`,
      });
    } else {
      notes.push(
        `TIME_WAIT entries are most of the table (${peakTimeWait} of ${peakEntries ?? '?'} entries, ${ofMax(peakTimeWait)}), ` +
          `but it is not under pressure: the ${env.timeWaitTimeout} s timeout can stay.`,
      );
    }
  }
  if (peakTimeWait === null)
    notes.push('TIME_WAIT entries are unknown with this backend (it needs ctnetlink): no timeout advice.');

  // nf_conntrack_max: the projected demand (the peak, its observed growth and every packet
  // dropped while watched), less what a shorter TIME_WAIT frees, at TARGET_FILL. Never for a
  // table of unassured entries: a larger max only makes room for more of them.
  let recommendedMax = env.max;
  if (peakEntries !== null) {
    // A trend seen for a minute says little about the next hour: project as far as observed.
    const horizon = Math.min(GROWTH_HORIZON_S, observedSeconds);
    const projected = peakEntries + Math.max(0, growthPerSecond ?? 0) * horizon;
    const demand = Math.max(projected, observedDrops > 0 ? env.max + observedDrops : 0);
    const need = demand - freed;
    if (need > env.max * 0.75 && mostly !== 'unassured') {
      recommendedMax = Math.max(nextPowerOfTwo(Math.ceil(need / TARGET_FILL)), env.max * 2);
      const why =
        observedDrops > 0
          ? `${observedDrops} packets were dropped because the table was full (peak ${peakEntries} of ${env.max} entries)`
          : `peak ${peakEntries} entries (${ofMax(peakEntries)}), projected ${Math.round(projected)} in ${Math.round(horizon)} s at the observed growth`;
      recommendations.push({
        sysctl: 'net.netfilter.nf_conntrack_max',
        current: env.max,
        recommended: recommendedMax,
        reason:
          `${why}${freed > 0 ? `, less the ${freed} TIME_WAIT entries a shorter timeout frees` : ''}; ` +
          `${recommendedMax} keeps that demand at about ${pct(need / recommendedMax)} of the new nf_conntrack_max.`,
      });
    } else if (need <= env.max * 0.75 && observedDrops === 0) {
      notes.push(
        `nf_conntrack_max ${env.max} is enough: peak ${peakEntries} entries (${ofMax(peakEntries)}), no drops while observed.`,
      );
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
  if (mostly && verdict) notes.push(`What fills the table: ${verdict.text}.`);
  // Under pressure the verdict says what to do, even when no sysctl is the answer.
  if (recommendations.length === 0 && observedDrops === 0 && !history && !mostly) notes.push('Nothing to change.');

  const sysctlConf = recommendations.length
    ? [
        `# conntrack-monitor advise: ${samples.length} samples over ${Math.round(observedSeconds)} s,`,
        `# peak ${peakEntries ?? '?'} entries, ${drops ?? '?'} drops while observed`,
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
    max: env.max,
    peakEntries,
    peakFill,
    growthPerMinute: growthPerSecond === null ? null : growthPerSecond * 60,
    drops,
    dropsBefore,
    kernelDrops: env.kernelDrops ?? null,
    peakTimeWait,
    verdict: mostly ? verdict : null,
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
