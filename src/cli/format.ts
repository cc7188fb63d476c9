import type { AllNamespacesReport, NamespaceReport } from '../host/all-namespaces.js';
import type { TopItem } from '../top.js';
import type { ConntrackSample } from '../types.js';

/** One compact human line per interval, for terminals and logs. */
export function formatSampleLine(s: ConntrackSample): string {
  const clock = s.time.slice(11, 19);
  const fill = s.fill === null ? '?' : `${(s.fill * 100).toFixed(1)}%`;
  const parts = [
    clock,
    `entries ${s.entries ?? '?'}/${s.max ?? '?'} (${fill})`,
    `insert ${formatRate(s.rates.insert)}`,
    `delete ${formatRate(s.rates.delete)}`,
    `drop ${formatRate(s.rates.drop)}`,
    `early_drop ${formatRate(s.rates.earlyDrop)}`,
    `insert_failed ${formatRate(s.rates.insertFailed)}`,
    `time_wait ${s.timeWait.entries ?? 'n/a'}${s.timeWait.share === null ? '' : ` (${(s.timeWait.share * 100).toFixed(1)}%)`}`,
  ];
  if (s.socketTimeWait !== null && s.source === 'proc') parts.push(`tw_sockets ${s.socketTimeWait}`);
  if (s.events && s.events.lost > 0) parts.push(`LOST ${s.events.lost} events: insert/delete unknown`);
  if ((s.counts.drop ?? 0) > 0) parts.push('TABLE FULL: packets dropped');
  if (s.final) parts.push(`(final, ${Math.round(s.intervalMs)} ms)`);
  return parts.join('  ');
}

/** A per-second rate for people: one decimal below 100, whole (and grouped) above; n/a for null. */
export function formatRate(r: number | null): string {
  if (r === null) return 'n/a';
  return `${r >= 100 ? Math.round(r).toLocaleString('en') : Number(r.toFixed(1))}/s`;
}

/** A fraction as a percentage with one decimal; n/a for null. */
export function formatPercent(x: number | null): string {
  return x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`;
}

/** How the live view names a namespace: its pod, else its name under /var/run/netns. */
export function namespaceTitle(n: NamespaceReport): string {
  if (n.pod) return `${n.pod.namespace}/${n.pod.name}`;
  if (n.host) return '(host)';
  return n.name ?? '-';
}

/** The node-wide view: one row per namespace, fullest table first, pods by name. */
export function formatNamespacesReport(r: AllNamespacesReport): string {
  const rows = [...r.namespaces].sort((a, b) => (b.fill ?? -1) - (a.fill ?? -1));
  const pods = r.namespaces.filter((n) => n.pod).length;
  const head =
    `${r.time.slice(11, 19)}  ${r.namespaces.length} network namespaces` +
    (pods > 0 ? `, ${pods} of them pods` : '') +
    (r.final ? ` (final, ${r.intervalMs} ms)` : '');
  const table = [['POD / NETNS', 'INODE', 'PID', 'ENTRIES', 'MAX', 'FILL', 'DROP', 'INS_FAIL', 'INSERT', 'LOST']];
  for (const n of rows) {
    table.push([
      namespaceTitle(n),
      String(n.inode),
      n.pid === null ? '-' : String(n.pid),
      n.error ? 'error' : String(n.entries ?? '?'),
      String(n.max ?? '?'),
      n.fill === null ? '?' : formatPercent(n.fill),
      formatRate(n.rates.drop),
      formatRate(n.rates.insertFailed),
      formatRate(n.rates.insert),
      n.events === null ? '-' : String(n.events.lostTotal),
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const lines = table.map(
    (row) => `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`,
  );
  const errors = rows.filter((n) => n.error).map((n) => `  ${namespaceTitle(n)} (${n.inode}): ${n.error}`);
  return [head, ...lines, ...errors].join('\n');
}

/** A duration for humans: "45 s", "8 min 20 s", "3 h 5 min", "2 d 4 h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** One group as rows: key, entries, share of the table. */
export function formatGroup(title: string, items: TopItem[], total: number): string[] {
  const rows = [[title, 'ENTRIES', 'SHARE']];
  for (const it of items)
    rows.push([it.key, String(it.entries), total ? `${((it.entries / total) * 100).toFixed(1)}%` : '-']);
  if (items.length === 0) rows.push(['(none)', '0', '-']);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map(
    (row) => `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`,
  );
}
