/**
 * What a report shows: runs. A recording of one namespace is one run; an --all-namespaces
 * recording is one run per namespace, made from the reports' rows. Those rows carry entries,
 * max, fill, drops and inserts only; everything else is null with that reason, never 0.
 */
import { basename } from 'node:path';
import { COUNTER_NAMES, type ConntrackSample, type CounterSet } from '../types.js';
import type {
  ParsedLine,
  RecordedReport,
  Recording,
  RecordingEnd,
  RecordingHeader,
  RecordingNotice,
} from '../recording/format.js';
import { Decimator } from './decimate.js';
import { SummaryBuilder, type RunSummary } from './summary.js';

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

/**
 * Bounds on what a report keeps of a recording of any size (the summaries are exact whatever
 * it holds): points to draw, shared by the runs (at most POINTS_PER_RUN each); notices; and
 * namespaces of an --all-namespaces recording (a node's pods over days are a few thousand).
 */
export const REPORT_LIMITS = { points: 40_000, pointsPerRun: 2000, notices: 200, namespaces: 10_000 };

/** The runs of a parsed recording; `file` names them. */
export function runsOf(recording: Recording, file: string | null): ReportRun[] {
  const builder = new RunsBuilder(file);
  if (recording.header) builder.add({ type: 'header', header: recording.header });
  for (const sample of recording.samples) builder.add({ type: 'sample', sample });
  for (const report of recording.reports) builder.add({ type: 'namespaces', report });
  for (const notice of recording.notices) builder.add({ type: 'notice', notice });
  if (recording.end) builder.add({ type: 'end', end: recording.end });
  if (recording.truncated) builder.add({ type: 'truncated' });
  return builder.runs();
}

/** One run as it is read: its exact summary, and the points kept to draw it. */
class RunBuilder {
  readonly summary = new SummaryBuilder();
  readonly points: Decimator;
  constructor(limit: number) {
    this.points = new Decimator(limit);
  }
  add(sample: ConntrackSample): void {
    this.summary.add(sample);
    this.points.add(sample);
  }
}

/**
 * The runs of a recording, from its lines as they are read (readRecording): memory bounded by
 * REPORT_LIMITS whatever the recording's length.
 */
export class RunsBuilder {
  private header: RecordingHeader | null = null;
  private readonly notices: RecordingNotice[] = [];
  private noticesLeftOut = 0;
  private lastNoticeTime: string | null = null;
  private end: RecordingEnd | null = null;
  private truncated = false;
  private own: RunBuilder | null = null;
  private readonly namespaces = new Map<number, { name: string | null; host: boolean; run: RunBuilder }>();
  private namespacesLeftOut = new Set<number>();
  private sawReports = false;

  constructor(private readonly file: string | null) {}

  add(line: ParsedLine): void {
    if (line.type === 'header') this.header = line.header;
    else if (line.type === 'sample') (this.own ??= this.newRun()).add(line.sample);
    else if (line.type === 'namespaces') this.addReport(line.report);
    else if (line.type === 'notice') {
      if (this.notices.length < REPORT_LIMITS.notices) this.notices.push(line.notice);
      else {
        this.noticesLeftOut++;
        this.lastNoticeTime = line.notice.time;
      }
    } else if (line.type === 'end') this.end = line.end;
    else this.truncated = true;
  }

  runs(): ReportRun[] {
    const name = this.file === null ? 'recording' : basename(this.file).replace(/\.(nd)?jsonl?$/, '');
    const notices = [...this.notices];
    if (this.noticesLeftOut > 0) {
      notices.push({
        type: 'notice',
        time: this.lastNoticeTime!,
        kind: 'warning',
        message: `${this.noticesLeftOut} more notices are in the recording, not shown here`,
      });
    }
    if (this.namespacesLeftOut.size > 0) {
      notices.push({
        type: 'notice',
        time: this.end?.endTime ?? this.lastNoticeTime ?? new Date(0).toISOString(),
        kind: 'warning',
        message: `${this.namespacesLeftOut.size} more namespaces are in the recording, beyond the ${REPORT_LIMITS.namespaces} summarized`,
      });
    }
    const common = { file: this.file, header: this.header, notices, end: this.end, truncated: this.truncated };
    const runs: ReportRun[] = [];
    if (this.own || !this.sawReports) {
      const own = this.own ?? this.newRun();
      runs.push({
        ...common,
        label: name,
        namespace: null,
        samples: own.points.result(),
        summary: own.summary.result(),
      });
    }
    const byNamespace = [...this.namespaces].map(([inode, ns]) => ({ inode, ns, summary: ns.run.summary.result() }));
    // Busiest first: drops, then peak fill (a stable sort: ties stay in the order first seen).
    const weight = (s: RunSummary) => [s.totals.drop ?? 0, s.peak.fill ?? 0] as const;
    byNamespace.sort((a, b) => {
      const [da, fa] = weight(a.summary);
      const [db, fb] = weight(b.summary);
      return db - da || fb - fa;
    });
    for (const { inode, ns, summary } of byNamespace) {
      runs.push({
        ...common,
        label: `${name}: ${ns.host ? '(host)' : (ns.name ?? `netns ${inode}`)}`,
        namespace: { inode, name: ns.name, host: ns.host },
        samples: ns.run.points.result(),
        summary,
      });
    }
    return runs;
  }

  /** A run whose points are the runs' share of REPORT_LIMITS.points; the others' shrink to make room. */
  private newRun(): RunBuilder {
    const runs = this.namespaces.size + (this.own ? 1 : 0) + 1;
    const limit = Math.min(REPORT_LIMITS.pointsPerRun, Math.floor(REPORT_LIMITS.points / runs));
    if (limit < REPORT_LIMITS.pointsPerRun) {
      this.own?.points.setLimit(limit);
      for (const ns of this.namespaces.values()) ns.run.points.setLimit(limit);
    }
    return new RunBuilder(limit);
  }

  /** Each namespace's row as a sample of that namespace's run. */
  private addReport(r: RecordedReport): void {
    this.sawReports = true;
    for (const row of r.namespaces) {
      if (row.error !== null || row.source === null) continue; // not monitored, or no sample yet
      let ns = this.namespaces.get(row.inode);
      if (!ns) {
        if (this.namespaces.size >= REPORT_LIMITS.namespaces) {
          if (this.namespacesLeftOut.size < 1_000_000) this.namespacesLeftOut.add(row.inode);
          continue;
        }
        const run = this.newRun();
        this.namespaces.set(row.inode, (ns = { name: row.name, host: row.host, run }));
      }
      ns.name ??= row.name;
      ns.run.add(rowSample(r, row));
    }
  }
}

/** What a namespace row's sample lacks, and why: one object for all rows alike (they are many). */
const rowReasons = new Map<string, Partial<Record<string, string>>>();
function rowUnavailable(counts: CounterSet, source: 'netlink' | 'proc'): Partial<Record<string, string>> {
  const key = `${source} ${counts.insert === null} ${counts.drop === null}`;
  let unavailable = rowReasons.get(key);
  if (unavailable) return unavailable;
  unavailable = {};
  for (const c of COUNTER_NAMES) {
    if (counts[c] !== null) continue;
    unavailable[`counts.${c}`] =
      c === 'insert' && source === 'proc' ? 'the /proc backend has no insert counts' : ROW_ONLY;
  }
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
  rowReasons.set(key, Object.freeze(unavailable));
  return unavailable;
}

/** A recorded namespace row as a sample: what the row lacks is null, with ROW_ONLY as the reason. */
function rowSample(r: RecordedReport, row: RecordedReport['namespaces'][number]): ConntrackSample {
  const source = row.source!;
  const counts = {} as CounterSet;
  for (const c of COUNTER_NAMES) counts[c] = c === 'insert' ? row.inserts : c === 'drop' ? row.drops : null;
  const seconds = r.intervalMs / 1000;
  const rates = {} as CounterSet;
  for (const c of COUNTER_NAMES) rates[c] = counts[c] === null || seconds <= 0 ? null : counts[c]! / seconds;
  return {
    time: r.time,
    intervalMs: r.intervalMs,
    source,
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
    unavailable: rowUnavailable(counts, source),
  };
}
