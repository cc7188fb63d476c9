import type { AllNamespacesReport, NamespaceReport } from '../host/all-namespaces.js';
import type { TopItem } from '../top.js';
import type { ConntrackSample } from '../types.js';
import { printable } from '../errors.js';

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
  return n.name === null ? '-' : printable(n.name); // a name under /var/run/netns may hold anything but '/'
}

/**
 * The node-wide view: one row per namespace, fullest table first, pods by name. Laid out for
 * `width` columns: a pod or namespace title too long for it is cut (with …) down to 16
 * columns, then INODE and PID give way; errors wrap between words.
 */
export function formatNamespacesReport(r: AllNamespacesReport, width = Infinity): string {
  const rows = [...r.namespaces].sort((a, b) => (b.fill ?? -1) - (a.fill ?? -1));
  const pods = r.namespaces.filter((n) => n.pod).length;
  const max = r.namespaces.find((n) => n.max !== null)?.max ?? undefined;
  const heading =
    `${r.time.slice(11, 19)}  ${r.namespaces.length} network namespaces` +
    (pods > 0 ? `, ${pods} of them pods` : '') +
    (r.final ? ` (final, ${r.intervalMs} ms)` : '');
  const limit = max === undefined ? null : `nf_conntrack_max ${max}`;
  const head = [
    limit === null
      ? heading
      : columns(`${heading}  ${limit}`) <= width
        ? `${heading}  ${limit}`
        : `${heading}\n  ${limit}`,
  ];
  let table = [['POD / NETNS', 'INODE', 'PID', 'ENTRIES', 'MAX', 'FILL', 'DROP', 'INS_FAIL', 'INSERT', 'LOST']];
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
  const widthsOf = (t: string[][]) => t[0]!.map((_, i) => Math.max(...t.map((row) => columns(row[i]!))));
  const lineWidth = (w: number[]) => 2 + w.reduce((a, b) => a + b, 0) + 2 * (w.length - 1);
  // The title column gives way first (down to 28 columns), then INODE and PID go, then MAX
  // (the one global nf_conntrack_max, also in the heading), then LOST, the title down to 16
  // columns each time: 60 columns hold the rest.
  const fit = (w: number[], least: number) => {
    const excess = lineWidth(w) - width;
    if (excess > 0) w[0] = Math.max(Math.min(least, w[0]!), w[0]! - excess);
    return w;
  };
  let widths = fit(widthsOf(table), 28);
  for (const drop of [['INODE', 'PID'], ['MAX'], ['LOST']]) {
    if (lineWidth(widths) <= width) break;
    const keep = table[0]!.map((h) => !drop.includes(h));
    table = table.map((row) => row.filter((_, i) => keep[i]));
    widths = fit(widthsOf(table), 16);
  }
  const cut = (text: string, w: number) => (columns(text) <= w ? text : `${[...text].slice(0, w - 1).join('')}…`);
  const lines = table.map(
    (row) =>
      `  ${row.map((cell, i) => (i === 0 ? cut(cell, widths[i]!).padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`,
  );
  const errors = rows
    .filter((n) => n.error)
    .flatMap((n) => wrapWords(`${namespaceTitle(n)} (${n.inode}): ${printable(n.error!)}`, width, '  ', '    '));
  return [...head, ...lines, ...errors].join('\n');
}

/** A duration for humans: "45 s", "8 min 20 s", "3 h 5 min", "2 d 4 h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/**
 * One group as rows: key, entries and their share of nf_conntrack_max (the one share the tool
 * speaks of); without the max, no share column.
 */
export function formatGroup(title: string, items: TopItem[], max: number | null): string[] {
  const share = (n: number) => (max ? [`${((n / max) * 100).toFixed(1)}%`] : []);
  const rows = [[title, 'ENTRIES', ...(max ? ['OF MAX'] : [])]];
  for (const it of items) rows.push([it.key, String(it.entries), ...share(it.entries)]);
  if (items.length === 0) rows.push(['(none)', '0', ...share(0)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map(
    (row) => `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`,
  );
}

/** Terminal columns of a text (one per code point: the views use no wide characters). */
export const columns = (text: string) => [...text].length;

/**
 * Words wrapped to `width` columns: `first` before the first line, `indent` before the others.
 * Only a single word wider than a whole line is cut.
 */
export function wrapWords(text: string, width: number, first = '', indent = ' '.repeat(columns(first))): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const candidate = empty ? line + word : `${line} ${word}`;
    if (columns(candidate) <= width || empty) {
      line = candidate;
      empty = false;
    } else {
      lines.push(line);
      line = indent + word;
    }
    while (columns(line) > width) {
      const chars = [...line];
      lines.push(chars.slice(0, width).join(''));
      line = indent + chars.slice(width).join('');
    }
  }
  lines.push(line);
  return lines;
}
