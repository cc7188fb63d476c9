/**
 * `conntrack-monitor advise`: watch for a while, then print tuning advice with the numbers
 * behind it and a ready sysctl snippet. It never applies anything.
 */
import { adviseTuning, formatBytes, type TuningAdvice } from '../../advise.js';
import { MAX_TIMER_S, MONITOR_FLAGS_HELP, parseCommand, seconds } from '../args.js';
import { createMonitor, namespaceGone, startOrExplain } from '../monitor.js';
import { tuningEnvironment } from '../../environment.js';
import { kernelDropHistory } from '../../host/kernel-drops.js';
import type { ConntrackSample } from '../../types.js';

export const usage = `Usage: conntrack-monitor advise [--observe S] [--json] [options]

Watch the table for S seconds, then advise on nf_conntrack_max, nf_conntrack_buckets and
nf_conntrack_tcp_timeout_time_wait from what the host really did, with the memory the
recommended table takes and a sysctl.conf snippet. Nothing is applied. Drops the kernel
counted before the observation (its drop counter since the namespace started, and the last
"table full" line of the kernel log, which needs root) count too.

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
  const advice = adviseTuning(samples, environment);
  process.stdout.write(values.json === true ? `${JSON.stringify(advice, null, 2)}\n` : formatAdvice(advice));
  return 0;
}

export function formatAdvice(a: TuningAdvice): string {
  const out = [
    `Observed ${Math.round(a.observedSeconds)} s: peak ${a.peakEntries ?? 'n/a'} entries` +
      (a.peakFill === null ? '' : ` (${(a.peakFill * 100).toFixed(1)}% of the table)`) +
      `, ${a.drops ?? 'unknown'} drops, peak TIME_WAIT ${a.peakTimeWait ?? 'n/a'}` +
      (a.growthPerMinute === null ? '.' : `, growth ${a.growthPerMinute.toFixed(1)} entries/min.`),
    '',
  ];
  for (const r of a.recommendations) {
    out.push(`* ${r.sysctl}: ${r.current ?? '?'} -> ${r.recommended}`, `  ${r.reason}`);
  }
  if (a.recommendations.length) out.push('');
  out.push(...a.notes, '');
  if (a.memory && !a.recommendations.length)
    out.push(`One entry takes ${a.memory.entryBytes} bytes (${formatBytes(a.memory.bytes)} for a full table).`, '');
  if (a.sysctlConf) {
    out.push('sysctl.conf snippet:', '', a.sysctlConf, '', ...a.steps.map((s, i) => `${i + 1}. ${s}`), '');
  }
  return `${out.join('\n')}`;
}
