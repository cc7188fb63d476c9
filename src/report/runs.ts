/**
 * What a report shows: runs. A recording of one namespace is one run; an --all-namespaces
 * recording is one run per namespace, made from the reports' rows. Those rows carry entries,
 * max, fill, drops and inserts only; everything else is null with that reason, never 0.
 */
import { basename } from 'node:path';
import { COUNTER_NAMES, type ConntrackSample, type CounterSet } from '../types.js';
import type { RecordedReport, Recording, RecordingEnd, RecordingHeader, RecordingNotice } from '../recording/format.js';
import { summarize, type RunSummary } from './summary.js';

export interface ReportRun {
  /** How legends and tables name the run: the file's name, and the namespace's. */
  label: string;
  file: string | null;
  header: RecordingHeader | null;
  /** For a run taken from an --all-namespaces recording. */
  namespace: { inode: number; name: string | null; host: boolean } | null;
  samples: ConntrackSample[];
  notices: RecordingNotice[];
  end: RecordingEnd | null;
  truncated: boolean;
  summary: RunSummary;
}

const ROW_ONLY = 'an --all-namespaces recording has only entries, fill, drops and inserts per namespace';

/** The runs of a parsed recording; `file` names them. */
export function runsOf(recording: Recording, file: string | null): ReportRun[] {
  const name = file === null ? 'recording' : basename(file).replace(/\.(nd)?jsonl?$/, '');
  const common = {
    file,
    header: recording.header,
    notices: recording.notices,
    end: recording.end,
    truncated: recording.truncated,
  };
  const runs: ReportRun[] = [];
  if (recording.samples.length || !recording.reports.length) {
    runs.push({
      ...common,
      label: name,
      namespace: null,
      samples: recording.samples,
      summary: summarize(recording.samples),
    });
  }
  for (const [inode, ns] of namespaceSamples(recording.reports)) {
    const label = `${name}: ${ns.host ? '(host)' : (ns.name ?? `netns ${inode}`)}`;
    runs.push({
      ...common,
      label,
      namespace: { inode, name: ns.name, host: ns.host },
      samples: ns.samples,
      summary: summarize(ns.samples),
    });
  }
  return runs;
}

/** Each namespace's rows as samples, busiest first (drops, then peak fill). */
export function namespaceSamples(
  reports: readonly RecordedReport[],
): Map<number, { name: string | null; host: boolean; samples: ConntrackSample[] }> {
  const byInode = new Map<number, { name: string | null; host: boolean; samples: ConntrackSample[] }>();
  for (const r of reports) {
    for (const row of r.namespaces) {
      if (row.error !== null || row.source === null) continue; // not monitored, or no sample yet
      let ns = byInode.get(row.inode);
      if (!ns) byInode.set(row.inode, (ns = { name: row.name, host: row.host, samples: [] }));
      ns.name ??= row.name;
      const counts = {} as CounterSet;
      const unavailable: Partial<Record<string, string>> = {};
      for (const c of COUNTER_NAMES) {
        counts[c] = c === 'insert' ? row.inserts : c === 'drop' ? row.drops : null;
        if (counts[c] === null) {
          unavailable[`counts.${c}`] =
            c === 'insert' && row.source === 'proc' ? 'the /proc backend has no insert counts' : ROW_ONLY;
        }
      }
      const seconds = r.intervalMs / 1000;
      const rates = {} as CounterSet;
      for (const c of COUNTER_NAMES) rates[c] = counts[c] === null || seconds <= 0 ? null : counts[c]! / seconds;
      for (const f of [
        'buckets',
        'timeWait.entries',
        'timeWait.share',
        'timeWait.timeoutSeconds',
        'tcpStates',
        'protocols',
        'events',
        'socketTimeWait',
        'eventsMode',
        'timeToFullSeconds',
      ]) {
        unavailable[f] = ROW_ONLY;
      }
      ns.samples.push({
        time: r.time,
        intervalMs: r.intervalMs,
        source: row.source,
        netns: row.name,
        entries: row.entries,
        max: row.max,
        fill: row.fill,
        buckets: null,
        counts,
        rates,
        totals: Object.fromEntries(COUNTER_NAMES.map((c) => [c, c === 'drop' ? row.totalDrops : null])) as CounterSet,
        events: null,
        socketTimeWait: null,
        timeToFullSeconds: null,
        timeWait: { entries: null, timeoutSeconds: null, share: null },
        tcpStates: null,
        protocols: null,
        eventsMode: null,
        final: r.final,
        samplesMissed: 0,
        unavailable,
      });
    }
  }
  const weight = (s: ConntrackSample[]) => {
    const sum = summarize(s);
    return [sum.totals.drop ?? 0, sum.peak.fill ?? 0] as const;
  };
  return new Map(
    [...byInode].sort(([, a], [, b]) => {
      const [da, fa] = weight(a.samples);
      const [db, fb] = weight(b.samples);
      return db - da || fb - fa;
    }),
  );
}
