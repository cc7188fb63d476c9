/**
 * `conntrack-monitor report FILE... [--json] [--html OUT.html]`: the summary of recordings made
 * by `record` (or of `--json` output): as text, as NDJSON (one summary per run), and as a
 * self-contained HTML page with charts, the runs overlaid when there are several.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { UsageError } from '../args.js';
import { printable } from '../../errors.js';
import { RecordingFormatError } from '../../recording/format.js';
import { readRecording } from '../../recording/read.js';
import { adviceOf, renderReport } from '../../report/html.js';
import { RunsBuilder, type ReportRun } from '../../report/runs.js';
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

A FILE is read as it streams by: any size is summarized exactly in bounded memory, its charts
drawn from at most a few thousand points per run (neighbouring intervals merged: counts
summed, peaks kept). A FIFO, a device or a directory is refused at once.

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

  // Parsing a large recording makes garbage fast; V8 would let the heap grow to several times
  // what is live before collecting it. Grown by a quarter at most, the reader's RSS stays near its
  // bounded live set (REPORT_LIMITS): measured on 1 GiB recordings, 135-175 MB instead of
  // 155-300 MB, for about a fifth more CPU time.
  setFlagsFromString('--heap-growing-percent=25');
  const runs: ReportRun[] = [];
  for (const file of files) {
    try {
      // Streamed: memory stays bounded whatever the file's size (REPORT_LIMITS).
      const builder = new RunsBuilder(file);
      await readRecording(file, (line) => builder.add(line));
      runs.push(...builder.runs());
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // A FIFO, device or directory: the message says what it is (see readRecording).
      const refused = e.code === 'EINVAL' && e.syscall === 'open';
      const message = err instanceof RecordingFormatError || refused ? e.message : `cannot read ${file}: ${e.message}`;
      process.stderr.write(`conntrack-monitor report: ${printable(message)}\n`);
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
        process.stderr.write(
          `conntrack-monitor report: cannot write ${printable(`${values.html}: ${(err as Error).message}`)}\n`,
        );
        return 1;
      }
      process.stderr.write(`conntrack-monitor report: wrote ${printable(values.html)}\n`);
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
    lines.push(printable(`  advice: ${rec.sysctl} ${rec.current ?? '?'} -> ${rec.recommended}: ${rec.reason}`));
  }
  return lines.join('\n');
}
