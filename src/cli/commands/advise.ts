/**
 * `conntrack-monitor advise`: watch for a while, then print tuning advice with the numbers
 * behind it and a ready sysctl snippet. It never applies anything.
 */
import { adviseTuning, formatBytes, SNAPSHOT_FILL, type TuningAdvice } from '../../advise.js';
import { MAX_TIMER_S, MONITOR_FLAGS_HELP, parseCommand, seconds } from '../args.js';
import { createMonitor, namespaceGone, startOrExplain } from '../monitor.js';
import { formatGroup } from '../format.js';
import { topEntries, type TopReport } from '../../top.js';
import { reclaimableText } from '../../verdict.js';
import { tuningEnvironment } from '../../environment.js';
import { kernelDropHistory } from '../../host/kernel-drops.js';
import type { ConntrackSample } from '../../types.js';
import { printable } from '../../errors.js';

export const usage = `Usage: conntrack-monitor advise [--observe S] [--json] [options]

Watch the table for S seconds, then advise on nf_conntrack_max, nf_conntrack_buckets and
nf_conntrack_tcp_timeout_time_wait from what the host really did, with the memory the
recommended table takes and a sysctl.conf snippet. Nothing is applied. Drops the kernel
counted before the observation (its drop counter since the namespace started, and the last
"table full" line of the kernel log that names the namespace, which needs root) are said as
history: they show the table was full before, but do not size it. When the table was at
least 75% full or dropping, one snapshot (a ctnetlink dump) at the end says what fills it:
the top sources, states and ports, and its class, which decides the advice: mostly closing
TCP (TIME_WAIT: a shorter nf_conntrack_tcp_timeout_time_wait), mostly unassured entries
(the kernel evicts them for new ones, so a larger max only makes room for more: who opens
them, and nf_conntrack_udp_timeout for UDP) or mostly assured connections (a larger
nf_conntrack_max and buckets). Every share is of nf_conntrack_max.

Options:
  --observe S            how long to watch (default 30)
  --json                 print the advice as JSON
${MONITOR_FLAGS_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { help, verbose, options, values } = parseCommand(argv, {
    observe: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const observeS = seconds('--observe', values.observe, 30, 1, MAX_TIMER_S);
  const samples: ConntrackSample[] = [];
  const monitor = createMonitor(options, { eventsAuto: verbose });
  monitor.on('sample', (s) => samples.push(s));
  const gone = namespaceGone(monitor);
  if (!(await startOrExplain(monitor))) return 1;
  if (values.json !== true) process.stderr.write(`conntrack-monitor: watching for ${observeS} s...\n`);
  let timer: NodeJS.Timeout | undefined;
  const vanished = await Promise.race([new Promise<null>((r) => (timer = setTimeout(r, observeS * 1000, null))), gone]);
  clearTimeout(timer);
  if (vanished !== null) return 1; // said on stderr by the monitor's error line
  // While the monitor runs: its reader thread is a task inside the namespace.
  const kernelDrops = await kernelDropHistory(monitor.options.netnsPath);
  await monitor.stop();
  const latest = samples.length ? tuningEnvironment(samples.at(-1)!) : null;
  const environment = latest && { ...latest, kernelDrops };
  if (!environment) {
    process.stderr.write('conntrack-monitor: no sample gave nf_conntrack_max; cannot advise\n');
    return 1;
  }
  const peakFill = Math.max(0, ...samples.map((s) => s.fill ?? 0));
  const dropped = samples.some((s) => (s.counts.drop ?? 0) > 0);
  let snapshot: TopReport | null = null;
  if (peakFill >= SNAPSHOT_FILL || dropped) {
    try {
      snapshot = await topEntries({ ...(options.netns ? { netns: options.netns } : {}), limit: 5 });
    } catch (err) {
      process.stderr.write(`conntrack-monitor: no snapshot of the table: ${printable((err as Error).message)}\n`);
    }
  }
  const advice = adviseTuning(samples, environment, snapshot);
  // Each line escaped: the advice quotes paths and the kernel's reasons.
  const text = () => formatAdvice(advice).split('\n').map(printable).join('\n');
  process.stdout.write(values.json === true ? `${JSON.stringify(advice, null, 2)}\n` : text());
  return 0;
}

export function formatAdvice(a: TuningAdvice): string {
  const out = [
    `Observed ${Math.round(a.observedSeconds)} s: peak ${a.peakEntries ?? 'n/a'} entries` +
      (a.peakFill === null ? '' : ` (${(a.peakFill * 100).toFixed(1)}% of nf_conntrack_max)`) +
      `, ${a.drops ?? 'unknown'} drops while observed, peak TIME_WAIT ${a.peakTimeWait ?? 'n/a'}` +
      (a.peakTimeWait === null ? '' : ` (${((a.peakTimeWait / a.max) * 100).toFixed(1)}% of nf_conntrack_max)`) +
      (a.growthPerMinute === null ? '.' : `, growth ${a.growthPerMinute.toFixed(1)} entries/min.`),
    '',
  ];
  for (const r of a.recommendations) {
    out.push(`* ${r.sysctl}: ${r.current ?? '?'} -> ${r.recommended}`, `  ${r.reason}`);
  }
  if (a.recommendations.length) out.push('');
  out.push(...a.notes, '');
  if (a.snapshot) {
    out.push(`What fills the table (${a.snapshot.entries} entries, ${reclaimableText(a.snapshot)}):`);
    out.push(...formatGroup('SOURCE', a.snapshot.bySource, a.snapshot.max));
    out.push(...formatGroup('STATE', a.snapshot.byState, a.snapshot.max));
    out.push(...formatGroup('DEST PORT', a.snapshot.byDestinationPort, a.snapshot.max), '');
  }
  if (a.memory && !a.recommendations.length)
    out.push(`One entry takes ${a.memory.entryBytes} bytes (${formatBytes(a.memory.bytes)} for a full table).`, '');
  if (a.sysctlConf) {
    out.push('sysctl.conf snippet:', '', a.sysctlConf, '', ...a.steps.map((s, i) => `${i + 1}. ${s}`), '');
  }
  return `${out.join('\n')}`;
}
