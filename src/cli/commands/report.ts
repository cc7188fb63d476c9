/**
 * `conntrack-monitor report FILE... [--json] [--html OUT.html]`: the summary of recordings made
 * by `record` (or of `--json` output): as text, as NDJSON (one summary per run), and as a
 * self-contained HTML page with charts, the runs overlaid when there are several.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../args.js';
import { parseRecording, RecordingFormatError } from '../../recording/format.js';
import { adviceOf, renderReport } from '../../report/html.js';
import { runsOf, type ReportRun } from '../../report/runs.js';
import { formatRun } from '../../report/text.js';

export const usage = `Usage: conntrack-monitor report FILE... [--json] [--html OUT.html]

Summarize recordings made by conntrack-monitor record (or conntrack-monitor --json output):
duration, samples, peak entries and fill, peak/p50/p99 insert, delete and drop rates, the
totals of insert, delete, drop, early_drop and insert_failed, peak TIME_WAIT and its share of
nf_conntrack_max, events lost and when the first drop happened. What a recording could not
know is n/a (null in JSON) with the reason. Several FILEs: one summary per run, and in the
HTML page one chart per measure with the runs overlaid (before/after comparisons).

Options:
  --json                 one JSON summary per run and line (NDJSON):
                         { file, label, command, hostname,
                           namespace: { name, inode, host }, durationSeconds, samples,
                           start, end, source, max,
                           peak: { entries, fill, insertRate, deleteRate, dropRate, timeWait,
                                   timeWaitShare },
                           p50: { insertRate, deleteRate, dropRate }, p99: { ... },
                           totals: { insert, delete, drop, earlyDrop, insertFailed },
                           eventsLost, firstDropAt, firstDropSeconds, unavailable }
                         namespace.name: the --netns name or path recorded, or the
                         namespace's name in an --all-namespaces recording; null for the
                         recorder's own namespace (a null inode or host says why in
                         unavailable)
  --html OUT.html        also write the report as one self-contained HTML page (inline SVG
                         charts, no scripts, nothing fetched: it works offline); - for stdout
  -h, --help             show this help

Exit status: 0, 1 if a FILE cannot be read or is not a recording (the message names the
line and field), 2 for bad usage.`;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { json: { type: 'boolean' }, html: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
  const { values, positionals: files } = parsed;
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (files.length === 0) throw new UsageError('no FILE to report on');
  if (values.html === '') throw new UsageError('--html needs a file name (or - for stdout)');

  const runs: ReportRun[] = [];
  for (const file of files) {
    try {
      runs.push(...runsOf(parseRecording(readFileSync(file, 'utf8'), file), file));
    } catch (err) {
      const message =
        err instanceof RecordingFormatError ? err.message : `cannot read ${file}: ${(err as Error).message}`;
      process.stderr.write(`conntrack-monitor report: ${message}\n`);
      return 1;
    }
  }

  const htmlToStdout = values.html === '-';
  if (values.json) {
    for (const r of runs) process.stdout.write(`${JSON.stringify(jsonOf(r))}\n`);
  } else if (!htmlToStdout) {
    process.stdout.write(`${runs.map(textOf).join('\n\n')}\n`);
  }
  if (values.html !== undefined) {
    const page = renderReport(runs);
    if (htmlToStdout) process.stdout.write(page);
    else {
      try {
        writeFileSync(values.html, page);
      } catch (err) {
        process.stderr.write(`conntrack-monitor report: cannot write ${values.html}: ${(err as Error).message}\n`);
        return 1;
      }
      process.stderr.write(`conntrack-monitor report: wrote ${values.html}\n`);
    }
  }
  return 0;
}

/** A run's summary as one JSON object: the namespace named once, in `namespace`. */
function jsonOf(r: ReportRun) {
  const { netns, unavailable, ...summary } = r.summary;
  const reasons = { ...unavailable };
  if (!r.namespace) {
    const why = 'a single-namespace recording does not record the namespace inode';
    reasons['namespace.inode'] = why;
    reasons['namespace.host'] = netns === null ? `${why}, so whether the recorder's own one was the host's` : why;
  }
  return {
    file: r.file,
    label: r.label,
    command: r.header?.command ?? null,
    hostname: r.header?.hostname ?? null,
    namespace: r.namespace
      ? { name: r.namespace.name, inode: r.namespace.inode, host: r.namespace.host }
      : { name: netns, inode: null, host: null },
    ...summary,
    unavailable: reasons,
  };
}

function textOf(r: ReportRun): string {
  const advice = adviceOf(r);
  const lines = [formatRun(r)];
  for (const rec of advice?.recommendations ?? []) {
    lines.push(`  advice: ${rec.sysctl} ${rec.current ?? '?'} -> ${rec.recommended}: ${rec.reason}`);
  }
  return lines.join('\n');
}
