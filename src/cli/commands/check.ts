/**
 * `conntrack-monitor check`: a monitoring-plugins style check (Nagios, Icinga, Sensu, ...):
 * one status line with perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Any packet
 * dropped for a full table during the observation is CRITICAL; a table forecast to be full
 * within --full-within seconds is WARNING. When the fill reached --warn, one snapshot says
 * what the kernel can reclaim and what fills the table (src/verdict.ts).
 */
import { MAX_TIMER_S, MONITOR_FLAGS_HELP, number, parseCommand, seconds, UsageError } from '../args.js';
import { formatDuration } from '../format.js';
import { createMonitor, namespaceGone } from '../monitor.js';
import { topEntries, type TopReport } from '../../top.js';
import { evictableVerdict, reclaimableText } from '../../verdict.js';
import type { ConntrackSample } from '../../types.js';
import { printable } from '../../errors.js';

export const usage = `Usage: conntrack-monitor check [-w PCT] [-c PCT] [-t S] [--observe S] [options]

Check conntrack table pressure the monitoring-plugins way: one status line with perfdata
on stdout, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad usage included).

Options:
  -w, --warn PCT         WARNING at this fill, percent of nf_conntrack_max (default 75)
  -c, --crit PCT         CRITICAL at this fill (default 90); any drop is CRITICAL
  --observe S            watch for S seconds (default 2, or 10 with --full-within); the
                         peak fill counts
  --full-within S        WARNING when the table is forecast to be full within S seconds
                         (its growth over the observation, least squares; the forecast
                         needs 5 samples over at least 5 s)
  -t, --timeout S        UNKNOWN if there is no result within S seconds (default: the
                         observation plus 10 s); must be longer than --observe

When the peak fill is at or above --warn, one snapshot of the table (a ctnetlink dump) says
what the kernel can reclaim: unassured entries (no [ASSURED]: early_drop evicts them for new
ones) and closing TCP (FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE: reclaimed only after
drops at 95% full), and what fills the table: mostly unassured (look at who opens them),
mostly closing TCP (shorten its timeout) or mostly assured connections (raise
nf_conntrack_max). Perfdata: entries and fill (with the thresholds), drops (packets dropped
during the observation: a count over the window, not a counter), time_wait, time_to_full
(seconds, when the table is growing); after a snapshot evictable (either class, each entry
once), unassured and tcp_closing.
${MONITOR_FLAGS_HELP}`;

const STATUS = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;

/** Usage errors as the monitoring-plugins guidelines want them: the UNKNOWN status line on stdout. */
export function usageError(message: string): number {
  process.stdout.write(`CONNTRACK UNKNOWN - ${printable(message)} (see --help)\n`);
  return 3;
}

export interface CheckResult {
  code: 0 | 1 | 2 | 3;
  line: string;
}

/** What else the check knows besides the samples. */
export interface CheckExtras {
  /** WARNING when the latest forecast is at most this many seconds. */
  fullWithinS?: number | null;
  /** The snapshot taken at a high fill, or why it failed. */
  snapshot?: { report: TopReport } | { error: string } | null;
}

/** Evaluates observed samples against thresholds (percent). Pure. */
export function evaluateCheck(
  samples: readonly ConntrackSample[],
  warnPct: number,
  critPct: number,
  extras: CheckExtras = {},
): CheckResult {
  const known = samples.filter((s) => s.fill !== null && s.entries !== null && s.max !== null);
  if (known.length === 0) return { code: 3, line: 'CONNTRACK UNKNOWN - no sample gave the table fill' };
  const peak = known.reduce((a, b) => (b.fill! > a.fill! ? b : a));
  const last = known.at(-1)!;
  const dropsKnown = samples.some((s) => s.counts.drop !== null);
  const drops = samples.reduce((sum, s) => sum + (s.counts.drop ?? 0), 0);
  const seconds = samples.reduce((sum, s) => sum + s.intervalMs, 0) / 1000;
  const fillPct = peak.fill! * 100;
  const ttf = samples.at(-1)!.timeToFullSeconds;
  const { fullWithinS = null, snapshot = null } = extras;
  const fillingSoon = fullWithinS !== null && ttf !== null && ttf <= fullWithinS;
  const code = drops > 0 || fillPct >= critPct ? 2 : fillPct >= warnPct || fillingSoon ? 1 : 0;
  const max = last.max!;
  const verdict = snapshot && 'report' in snapshot ? evictableVerdict(snapshot.report) : null;
  const summary = [
    drops > 0 ? `${drops} packets dropped in ${seconds.toFixed(0)} s (table full)` : null,
    `${peak.entries}/${peak.max} entries (${fillPct.toFixed(1)}%) at peak`,
    fillingSoon
      ? `full in ${formatDuration(ttf)} at the current growth (forecast within ${fullWithinS} s)`
      : fullWithinS !== null && ttf === null
        ? `no time-to-full forecast: ${samples.at(-1)!.unavailable.timeToFullSeconds ?? 'unknown'}`
        : null,
    verdict && snapshot && 'report' in snapshot ? `${reclaimableText(snapshot.report)}: ${verdict.summary}` : null,
    snapshot && 'error' in snapshot ? `evictable unknown: ${snapshot.error}` : null,
    dropsKnown ? null : 'drops unknown (no stat counters on this kernel)',
  ]
    .filter(Boolean)
    .join('; ');
  const perf = [
    `entries=${last.entries};${Math.floor((max * warnPct) / 100)};${Math.floor((max * critPct) / 100)};0;${max}`,
    `fill=${fillPct.toFixed(2)}%;${warnPct};${critPct};0;100`,
    // A count within the observation window: a plain value, not a counter ('c').
    dropsKnown ? `drops=${drops};;;0` : null,
    last.timeWait.entries !== null ? `time_wait=${last.timeWait.entries};;;0;${max}` : null,
    ttf !== null ? `time_to_full=${ttf}s;${fullWithinS ?? ''};;0` : null,
    ...(snapshot && 'report' in snapshot
      ? (['evictable', 'unassured', 'tcpClosing'] as const).map(
          (k) => `${k === 'tcpClosing' ? 'tcp_closing' : k}=${snapshot.report[k]};;;0;${snapshot.report.entries}`,
        )
      : []),
  ]
    .filter(Boolean)
    .join(' ');
  return { code, line: `CONNTRACK ${STATUS[code]} - ${summary} | ${perf}` };
}

export async function run(argv: string[]): Promise<number> {
  const { help, options, values } = parseCommand(argv, {
    warn: { type: 'string', short: 'w' },
    crit: { type: 'string', short: 'c' },
    observe: { type: 'string' },
    timeout: { type: 'string', short: 't' },
    'full-within': { type: 'string' },
  });
  if (help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const warn = values.warn === undefined ? 75 : number('--warn', String(values.warn));
  const crit = values.crit === undefined ? 90 : number('--crit', String(values.crit));
  if (!(warn > 0 && warn < crit && crit <= 100))
    throw new UsageError(`--warn and --crit must satisfy 0 < warn < crit <= 100, got ${warn} and ${crit}`);
  const fullWithinS =
    values['full-within'] === undefined ? null : seconds('--full-within', values['full-within'], 0, 1, 1e9);
  const observeS = seconds('--observe', values.observe, fullWithinS === null ? 2 : 10, 0.1, MAX_TIMER_S);
  const timeoutS = seconds('--timeout', values.timeout, Math.min(observeS + 10, MAX_TIMER_S), 1, MAX_TIMER_S);
  if (timeoutS <= observeS) {
    throw new UsageError(`--timeout (${timeoutS} s) must be longer than --observe (${observeS} s)`);
  }
  const monitor = createMonitor(
    { intervalMs: Math.min(1000, Math.max(50, Math.round(observeS * 1000))), ...options },
    { log: () => {} },
  );
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(
      () => resolve({ code: 3, line: `CONNTRACK UNKNOWN - no result within the ${timeoutS} s timeout` }),
      timeoutS * 1000,
    );
  });
  const result = await Promise.race([
    observe(monitor, observeS, warn, crit, { fullWithinS, netns: options.netns }),
    timedOut,
  ]);
  clearTimeout(timer);
  process.stdout.write(`${printable(result.line)}\n`); // one line, as monitoring plugins print
  return result.code;
}

async function observe(
  monitor: ReturnType<typeof createMonitor>,
  observeS: number,
  warn: number,
  crit: number,
  { fullWithinS, netns }: { fullWithinS: number | null; netns: string | undefined },
): Promise<CheckResult> {
  const samples: ConntrackSample[] = [];
  monitor.on('sample', (s) => samples.push(s));
  const gone = namespaceGone(monitor);
  try {
    await monitor.start();
  } catch (err) {
    return { code: 3, line: `CONNTRACK UNKNOWN - cannot monitor: ${(err as Error).message}` };
  }
  let timer: NodeJS.Timeout | undefined;
  const vanished = await Promise.race([new Promise<null>((r) => (timer = setTimeout(r, observeS * 1000, null))), gone]);
  clearTimeout(timer);
  await monitor.stop();
  if (vanished !== null) return { code: 3, line: `CONNTRACK UNKNOWN - ${vanished}` };
  const peakFill = Math.max(0, ...samples.map((s) => s.fill ?? 0));
  let snapshot: CheckExtras['snapshot'] = null;
  if (peakFill * 100 >= warn) {
    try {
      // Every state (a handful of keys), to name the one that dominates its class.
      snapshot = { report: await topEntries({ ...(netns ? { netns } : {}), limit: 20 }) };
    } catch (err) {
      snapshot = { error: (err as Error).message };
    }
  }
  return evaluateCheck(samples, warn, crit, { fullWithinS, snapshot });
}
