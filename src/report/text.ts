/** The summary as text, for `report` and for the lines `record` prints when it ends. */
import { printable } from '../errors.js';
import { commandText } from './html.js';
import { count, duration, offset, percent, rate, utc } from './numbers.js';
import type { ReportRun } from './runs.js';
import type { RateStats, RunSummary } from './summary.js';

/** A few lines for one run: what happened, then the numbers. */
export function formatRun(run: ReportRun): string {
  const s = run.summary;
  const h = run.header;
  const head = [run.label];
  if (h?.command) head.push(commandText(h.command));
  const where = [
    h ? `${h.hostname}, Linux ${h.kernel}` : null,
    run.namespace
      ? run.namespace.host
        ? 'host namespace'
        : `namespace ${run.namespace.name ?? run.namespace.inode}`
      : s.netns
        ? `namespace ${s.netns}`
        : null,
    s.start ? utc(s.start) : null,
  ].filter(Boolean);
  const lines = [`${head.join(': ')}${where.length ? ` (${where.join(', ')})` : ''}`];
  lines.push(...formatSummary(s).map((l) => `  ${l}`));
  if (h && (run.truncated || !run.end)) lines.push('  the recording was cut short: it has no end line');
  // The label, command, host and namespace names and the reasons are the file's: each line is
  // escaped, so that none can add a line or reach the terminal as a control sequence.
  return lines.map(printable).join('\n');
}

/** The summary's numbers, one measure a line; unknowns as n/a, with the reasons at the end. */
export function formatSummary(s: RunSummary): string[] {
  const na = 'n/a';
  const n = (v: number | null) => (v === null ? na : count(v));
  const rates = (key: keyof RateStats) =>
    s.peak[key] === null ? na : `peak ${rate(s.peak[key]!)}  p50 ${rate(s.p50[key]!)}  p99 ${rate(s.p99[key]!)}`;
  const rows: [string, string][] = [
    [
      'duration',
      `${duration(s.durationSeconds)}, ${count(s.samples)} sample${s.samples === 1 ? '' : 's'}${s.source ? ` (${s.source})` : ''}`,
    ],
    [
      'peak entries',
      s.peak.entries === null
        ? na
        : `${count(s.peak.entries)}${s.max === null ? '' : ` of ${count(s.max)}`}${s.peak.fill === null ? '' : ` (${percent(s.peak.fill)})`}`,
    ],
    ['insert /s', rates('insertRate')],
    ['delete /s', rates('deleteRate')],
    ['drop /s', rates('dropRate')],
    [
      'totals',
      `insert ${n(s.totals.insert)}  delete ${n(s.totals.delete)}  drop ${n(s.totals.drop)}  early_drop ${n(s.totals.earlyDrop)}  insert_failed ${n(s.totals.insertFailed)}`,
    ],
    [
      'TIME_WAIT',
      s.peak.timeWait === null
        ? na
        : `peak ${count(s.peak.timeWait)}${s.peak.timeWaitShare === null ? '' : ` (${percent(s.peak.timeWaitShare)} of nf_conntrack_max)`}`,
    ],
    ['events lost', n(s.eventsLost)],
    [
      'first drop',
      s.firstDropAt === null
        ? s.unavailable.firstDropAt
          ? na
          : 'none'
        : `${utc(s.firstDropAt)} (${offset(s.firstDropSeconds ?? 0)})`,
    ],
  ];
  const out = rows.map(([k, v]) => `${k.padEnd(13)} ${v}`);
  const reasons = new Map<string, string[]>();
  for (const [path, why] of Object.entries(s.unavailable)) {
    if (why !== undefined) reasons.set(why, [...(reasons.get(why) ?? []), path]);
  }
  for (const [why, paths] of reasons) out.push(`n/a: ${paths.join(', ')}: ${why}`);
  return out.map(printable);
}
