/**
 * renderReport(runs): the report as one self-contained HTML page. Inline CSS and inline SVG
 * charts drawn from the data; no script and nothing fetched (a Content-Security-Policy of
 * `default-src 'none'` says so to the browser too), so it works offline and can be mailed.
 * Every string from a recording is escaped (see html-escape.ts): the file is untrusted input.
 *
 * One run: a verdict, key figures, charts of fill (with nf_conntrack_max), insert/delete
 * rates, drops, TIME_WAIT and entries by state with drops marked, the summary table, the
 * tuning advice (adviseTuning, as `advise` prints it) and the recording's details. Several
 * runs: the same charts with the runs overlaid on "seconds since start", for before/after.
 */
import { adviseTuning, formatBytes, type TuningAdvice, type TuningEnvironment } from '../advise.js';
import { TCP_STATE_NAMES, type ConntrackSample, type TcpStateName } from '../types.js';
import { renderChart, type ChartSpec, type Layer, type Mark, type Moment, type Point, type Series } from './chart.js';
import { markup, trusted, type Html } from './html-escape.js';
import { count, duration, offset, percent, rate, utc } from './numbers.js';
import type { ReportRun } from './runs.js';
import { largest, summarize, type RunSummary } from './summary.js';

export interface RenderOptions {
  /** The page's heading; default: the command of a single run, else "N runs compared". */
  title?: string;
  /** When the page was made (footer); default now. */
  generatedAt?: Date;
  /** Runs overlaid in the charts at most (the first ones); the tables show all. Default 8. */
  maxChartRuns?: number;
}

/** Okabe-Ito colours (distinguishable with the common colour-vision deficiencies). */
const C = {
  blue: '#0072B2',
  vermillion: '#D55E00',
  green: '#009E73',
  orange: '#E69F00',
  sky: '#56B4E9',
  purple: '#CC79A7',
  ink: '#1f2328',
};
const RUN_COLOURS = [C.blue, C.vermillion, C.green, C.purple, C.orange, C.sky, C.ink, '#8c6d31'];
const RUN_DASHES = ['none', '7 4', '2 3', '10 3 2 3', 'none', '7 4', '2 3', '10 3 2 3'];
/** Layers of "entries by state", bottom to top (Paul Tol's muted palette). */
const STATE_COLOURS: Record<string, string> = {
  ESTABLISHED: '#332288',
  SYN_SENT: '#88CCEE',
  SYN_RECV: '#44AA99',
  FIN_WAIT: '#117733',
  CLOSE_WAIT: '#999933',
  LAST_ACK: '#AA4499',
  TIME_WAIT: '#CC6677',
  CLOSE: '#882255',
  NONE: '#BBBBBB',
  SYN_SENT2: '#BBBBBB',
  udp: '#DDCC77',
  icmp: '#6699CC',
  other: '#999999',
};

/** A run as renderReport takes it: a ReportRun (runsOf), or just a label and samples (record()). */
export type RunInput = Pick<ReportRun, 'label' | 'samples'> & Partial<ReportRun>;

/** The page for one run, or for several overlaid (before/after). */
export function renderReport(inputs: readonly RunInput[], options: RenderOptions = {}): string {
  if (inputs.length === 0) throw new TypeError('renderReport needs at least one run');
  const runs: ReportRun[] = inputs.map((r) => ({
    file: null,
    header: null,
    namespace: null,
    notices: [],
    end: null,
    truncated: false,
    ...r,
    summary: r.summary ?? summarize(r.samples),
  }));
  const single = runs.length === 1 ? runs[0]! : null;
  const charted = runs.slice(0, options.maxChartRuns ?? 8);
  const title =
    options.title ??
    (single
      ? single.header?.command
        ? commandText(single.header.command)
        : single.label
      : `${runs.length} runs compared`);
  const generated = (options.generatedAt ?? new Date()).toISOString();

  const body = markup`<main>
<header>
<p class="eyebrow">conntrack pressure report</p>
<h1>${single?.header?.command ? markup`<code>${title}</code>` : title}</h1>
${single ? meta(single) : markup`<ul class="runs">${runs.map((r, i) => markup`<li>${swatch(i)}<strong>${r.label}</strong> ${runMeta(r)}</li>`)}</ul>`}
</header>
<section aria-label="Verdict">${runs.map((r) => verdict(r, single === null))}</section>
${single ? cards(single) : null}
<section class="grid" aria-label="Charts">
${charts(charted)}
</section>
${runs.length > charted.length ? markup`<p class="note">The charts show the first ${charted.length} of ${runs.length} runs; the tables show all.</p>` : null}
<div class="grid">
<section class="panel${single ? '' : ' wide'}" aria-labelledby="summary-h">
<h2 id="summary-h">Summary</h2>
${summaryTable(runs)}
</section>
<section class="panel${single ? '' : ' wide'}" aria-labelledby="advice-h">
<h2 id="advice-h">Tuning advice</h2>
<p class="sub">From what was observed, as <code>conntrack-monitor advise</code> gives it. Nothing is applied.</p>
${runs.map((r) => advice(r, single === null))}
</section>
</div>
<section class="panel wide" aria-labelledby="details-h">
<h2 id="details-h">Recording details</h2>
${runs.map((r) => details(r, single === null))}
</section>
<footer>Made by ${runs[0]!.header?.tool ?? 'conntrack-monitor'} report at ${utc(generated)} from ${runs
    .map((r) => r.file ?? r.label)
    .filter((f, i, all) => all.indexOf(f) === i)
    .join(', ')}. Self-contained: no scripts, nothing fetched.</footer>
</main>`;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="conntrack-monitor">
<title>${markup`${title} - conntrack report`}</title>
<style>${CSS}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

// ---------------------------------------------------------------------------------------------
// Header, verdict, key figures

function meta(run: ReportRun): Html {
  const h = run.header;
  const s = run.summary;
  const items: (Html | string)[] = [];
  if (h) items.push(markup`host <strong>${h.hostname}</strong>`, `Linux ${h.kernel}`, `${h.cpus} CPUs`);
  items.push(netnsText(run));
  if (s.start) items.push(`started ${utc(s.start)}`);
  items.push(
    `${duration(s.durationSeconds)}, ${count(s.samples)} sample${s.samples === 1 ? '' : 's'}${intervalText(run)}`,
  );
  if (s.source)
    items.push(`${s.source === 'proc' ? '/proc backend' : s.source === 'netlink' ? 'ctnetlink' : 'mixed backends'}`);
  const exit = exitText(run);
  if (exit) items.push(exit);
  return markup`<p class="meta">${items.map((i) => markup`<span>${i}</span>`)}</p>`;
}

function runMeta(run: ReportRun): Html {
  const parts: string[] = [];
  if (run.header?.command) parts.push(commandText(run.header.command));
  if (run.namespace)
    parts.push(run.namespace.host ? 'host namespace' : `namespace ${run.namespace.name ?? run.namespace.inode}`);
  if (run.summary.start) parts.push(utc(run.summary.start));
  parts.push(duration(run.summary.durationSeconds));
  if (run.header) parts.push(`${run.header.hostname}, Linux ${run.header.kernel}`);
  return markup`<span class="muted">${parts.join(' · ')}</span>`;
}

function netnsText(run: ReportRun): string {
  if (run.namespace)
    return run.namespace.host ? 'host namespace' : `namespace ${run.namespace.name ?? run.namespace.inode}`;
  return run.summary.netns ? `namespace ${run.summary.netns}` : "the recorder's own namespace";
}

function intervalText(run: ReportRun): string {
  const ms = run.header?.intervalMs;
  return ms ? ` every ${ms >= 1000 ? `${count(ms / 1000, 1)} s` : `${ms} ms`}` : '';
}

function exitText(run: ReportRun): string | null {
  if (run.truncated || !run.end) return run.header ? 'the recording was cut short (no end line)' : null;
  const e = run.end.exit;
  if (!e) return `stopped by ${run.end.reason}`;
  return e.signal ? `command killed by ${e.signal}` : `command exited with ${e.code}`;
}

function verdict(run: ReportRun, named: boolean): Html {
  const s = run.summary;
  const who = named ? markup`<strong>${run.label}:</strong> ` : null;
  const fill = s.peak.fill;
  const peak = s.peak.entries !== null && s.max !== null ? `${count(s.peak.entries)} of ${count(s.max)} entries` : null;
  let tone: 'bad' | 'warn' | 'ok' | 'unknown';
  let text: string;
  if (s.samples === 0) {
    tone = 'unknown';
    text = 'The recording has no samples.';
  } else if ((s.totals.drop ?? 0) > 0) {
    tone = 'bad';
    text = `The table was full: ${count(s.totals.drop!)} packets dropped${s.firstDropSeconds === null ? '' : `, the first ${duration(s.firstDropSeconds)} into the run`}${peak ? ` (peak ${peak})` : ''}.`;
  } else if (fill !== null && fill >= 0.75) {
    tone = 'warn';
    text = `The table came close to full: peak ${percent(fill)} of nf_conntrack_max (${peak}); nothing was dropped.`;
  } else if (s.totals.drop === null) {
    tone = 'unknown';
    text = `Drops are unknown (${s.unavailable['totals.drop']}).${fill === null ? '' : ` Peak fill ${percent(fill)}.`}`;
  } else {
    tone = 'ok';
    text = `The table peaked at ${fill === null ? 'an unknown fill' : `${percent(fill)} of nf_conntrack_max`}${peak ? ` (${peak})` : ''}; nothing was dropped.`;
  }
  const extra: string[] = [];
  // What filled the table: the advice's verdict (src/verdict.ts), as advise gives it.
  const what = adviceOf(run)?.verdict;
  if (what) extra.push(`What filled it: ${what.text}.`);
  if ((s.eventsLost ?? 0) > 0)
    extra.push(`${count(s.eventsLost!)} events were lost (counted, then repaired by a resync).`);
  if (run.header && (run.truncated || !run.end)) extra.push('The recording was cut short.');
  return markup`<p class="verdict ${tone}">${who}${text}${extra.length ? markup` <span class="muted">${extra.join(' ')}</span>` : null}</p>`;
}

function cards(run: ReportRun): Html {
  const s = run.summary;
  const na = (path: string) => markup`<abbr title="${s.unavailable[path] ?? 'unknown'}">n/a</abbr>`;
  const drops = s.totals.drop;
  const card = (label: string, value: Html | string, detail: Html | string, tone = '') =>
    markup`<div class="card ${tone}"><div class="label">${label}</div><div class="value">${value}</div><div class="detail">${detail}</div></div>`;
  const fillTone = (s.peak.fill ?? 0) >= 0.9 ? 'bad' : (s.peak.fill ?? 0) >= 0.75 ? 'warn' : '';
  return markup`<section class="cards" aria-label="Key figures">
${card('Peak fill', s.peak.fill === null ? na('peak.fill') : percent(s.peak.fill), s.peak.entries === null ? '' : `${count(s.peak.entries)} of ${s.max === null ? '?' : count(s.max)} entries`, fillTone)}
${card('Packets dropped', drops === null ? na('totals.drop') : count(drops), drops ? `first at ${offset(s.firstDropSeconds ?? 0)}; peak ${rate(s.peak.dropRate ?? 0)}/s` : 'table full: none', drops ? 'bad' : drops === 0 ? 'good' : '')}
${card('Inserts / s', s.peak.insertRate === null ? na('peak.insertRate') : rate(s.peak.insertRate), s.p50.insertRate === null ? 'peak' : `peak; p50 ${rate(s.p50.insertRate)}, p99 ${rate(s.p99.insertRate!)}`)}
${card('Deletes / s', s.peak.deleteRate === null ? na('peak.deleteRate') : rate(s.peak.deleteRate), s.p50.deleteRate === null ? 'peak' : `peak; p50 ${rate(s.p50.deleteRate)}, p99 ${rate(s.p99.deleteRate!)}`)}
${card('Peak TIME_WAIT', s.peak.timeWait === null ? na('peak.timeWait') : count(s.peak.timeWait), s.peak.timeWaitShare === null ? '' : `${percent(s.peak.timeWaitShare)} of nf_conntrack_max`)}
${card('Events lost', s.eventsLost === null ? na('eventsLost') : count(s.eventsLost), `${count(s.totals.insert ?? 0)} inserts, ${count(s.totals.delete ?? 0)} deletes`, (s.eventsLost ?? 0) > 0 ? 'warn' : '')}
</section>`;
}

// ---------------------------------------------------------------------------------------------
// Charts

interface Timeline {
  run: ReportRun;
  index: number;
  colour: string;
  dash: string;
  startMs: number;
  /** Seconds since the start at each sample's end, and at its interval's start. */
  x: number[];
  x0: number[];
}

function charts(runs: readonly ReportRun[]): Html {
  const lines: Timeline[] = runs.map((run, index) => {
    const startMs = run.summary.start ? Date.parse(run.summary.start) : 0;
    const x = run.samples.map((s) => (Date.parse(s.time) - startMs) / 1000);
    return {
      run,
      index,
      colour: RUN_COLOURS[index % RUN_COLOURS.length]!,
      dash: RUN_DASHES[index % RUN_DASHES.length]!,
      startMs,
      x,
      x0: run.samples.map((s, i) => x[i]! - s.intervalMs / 1000),
    };
  });
  const xMax = Math.max(0.1, ...lines.map((l) => l.x.at(-1) ?? 0));
  const single = lines.length === 1;
  const drops = dropMarks(lines, single, xMax);
  const common = { xMax, ...drops };
  // The fill chart marks the first drop of a single run where it was counted: the end of the
  // first interval with a drop (summary.firstDropSeconds, the time the summary gives).
  const firstDrop = single ? lines[0]!.run.summary.firstDropSeconds : null;
  const fillCommon: Common =
    firstDrop === null
      ? common
      : {
          ...common,
          moment: {
            x: firstDrop,
            label: `first drop at ${offset(firstDrop)}`,
            title: `the first packet dropped for a full table was counted in the interval that ended ${offset(firstDrop)} into the run`,
            colour: C.vermillion,
          },
          legendNotes: [...(common.legendNotes ?? []), { label: 'first drop', colour: C.vermillion, kind: 'moment' }],
        };
  const out: Html[] = [fillChart(lines, fillCommon, single)];
  out.push(
    single
      ? rateChart(
          'chart-rates',
          'New and destroyed entries',
          'entries created (NEW events) and removed (DESTROY events) per second, per interval',
          lines,
          ['insert', 'delete'],
          common,
        )
      : rateChart(
          'chart-inserts',
          'Inserts per second',
          'entries created (NEW events), per interval',
          lines,
          ['insert'],
          common,
        ),
  );
  if (!single) {
    out.push(
      rateChart(
        'chart-deletes',
        'Deletes per second',
        'entries removed (DESTROY events), per interval',
        lines,
        ['delete'],
        common,
      ),
    );
  }
  out.push(
    rateChart(
      'chart-drops',
      'Drops per second',
      single
        ? 'packets dropped for a full table (drop), entries evicted to make room (early_drop), failed inserts'
        : 'packets dropped because the table was full, per interval',
      lines,
      single ? ['drop', 'earlyDrop', 'insertFailed'] : ['drop'],
      common,
    ),
  );
  out.push(timeWaitChart(lines, common));
  for (const line of lines) out.push(stateChart(line, common, single));
  return markup`${out}`;
}

type Common = {
  xMax: number;
  bands?: Mark[];
  markers?: Mark[];
  moment?: Moment;
  legendNotes?: ChartSpec['legendNotes'];
};

/** Intervals with drops: strips above the plot for one run, triangles in the run's colour for several. */
function dropMarks(lines: Timeline[], single: boolean, xMax: number): Omit<Common, 'xMax'> {
  const marks: Mark[] = [];
  // Spans less than about a pixel apart are one mark: a week of samples stays a small page.
  const gap = xMax / 1000;
  for (const l of lines) {
    let open: Mark | null = null;
    let packets = 0;
    const close = () => {
      if (open)
        marks.push({
          ...open,
          title: `${single ? '' : `${l.run.label}: `}${count(packets)} packets dropped between ${offset(open.x0)} and ${offset(open.x1)}`,
        });
      open = null;
      packets = 0;
    };
    l.run.samples.forEach((s, i) => {
      if ((s.counts.drop ?? 0) === 0) return;
      if (open && l.x0[i]! - open.x1 > gap) close();
      if (open) open.x1 = l.x[i]!;
      else open = { x0: l.x0[i]!, x1: l.x[i]!, title: '', colour: single ? C.vermillion : l.colour };
      packets += s.counts.drop!;
    });
    close();
  }
  if (!marks.length) return {};
  return single
    ? { bands: marks, legendNotes: [{ label: 'intervals with drops', colour: C.vermillion, kind: 'band' }] }
    : {
        markers: marks,
        legendNotes: [{ label: 'intervals with drops (run colour)', colour: '#5f6670', kind: 'marker' }],
      };
}

function points(l: Timeline, value: (s: ConntrackSample) => number | null): Point[] {
  return l.run.samples.map((s, i) => ({ x: l.x[i]!, x0: l.x0[i]!, y: value(s) }));
}

function unknownPanel(id: string, title: string, reason: string): Html {
  return markup`<figure class="panel" id="${id}"><figcaption><h3>${title}</h3></figcaption><p class="unknown">Unknown for this recording: ${reason}</p></figure>`;
}

/**
 * Entries against nf_conntrack_max when every run had the same one; otherwise the fill in
 * percent, so that runs with different limits (before and after raising it) compare.
 */
function fillChart(lines: Timeline[], common: Common, single: boolean): Html {
  const max = constantMax(lines);
  const percentMode = max === null;
  const top = percentMode ? 100 : max;
  const series: Series[] = [];
  for (const l of lines) {
    const pts = points(l, (s) => (percentMode ? (s.fill === null ? null : s.fill * 100) : s.entries));
    if (!pts.some((p) => p.y !== null)) continue;
    series.push({
      label: single ? (percentMode ? 'fill' : 'entries') : l.run.label,
      colour: l.colour,
      dash: single ? 'none' : l.dash,
      shape: 'line',
      area: single,
      width: 2.5,
      points: pts,
    });
  }
  if (!series.length)
    return unknownPanel('chart-fill', 'Table fill', lines[0]!.run.summary.unavailable['peak.entries'] ?? 'no entries');
  series.push({
    label: percentMode ? 'nf_conntrack_max (100%)' : 'nf_conntrack_max',
    colour: C.ink,
    dash: '6 4',
    width: 1.5,
    shape: 'line',
    points: [
      { x: 0, y: top },
      { x: common.xMax, y: top },
    ],
  });
  const description = lines
    .map(
      (l) =>
        `${single ? '' : `${l.run.label}: `}peak ${l.run.summary.peak.entries === null ? 'unknown' : count(l.run.summary.peak.entries)} entries` +
        (l.run.summary.peak.fill === null ? '' : ` (${percent(l.run.summary.peak.fill)} of nf_conntrack_max)`) +
        `, ${l.run.summary.totals.drop === null ? 'drops unknown' : `${count(l.run.summary.totals.drop)} drops`}.`,
    )
    .join(' ');
  return renderChart({
    id: 'chart-fill',
    title: 'Table fill',
    subtitle: percentMode
      ? 'entries as a share of nf_conntrack_max, which differs between the runs; dotted at 75% (warning) and 90% (critical)'
      : `entries in the table, against nf_conntrack_max = ${count(max)} (dashed); dotted at 75% (warning) and 90% (critical)`,
    description,
    yLabel: percentMode ? '% of nf_conntrack_max' : 'entries',
    integer: !percentMode,
    yFormat: percentMode ? (y) => `${y}%` : undefined,
    yMin: top,
    series,
    thresholds: [
      { y: top * 0.75, colour: C.orange, label: 'warning: 75% of nf_conntrack_max' },
      { y: top * 0.9, colour: '#b42318', label: 'critical: 90% of nf_conntrack_max' },
    ],
    right: percentMode
      ? undefined
      : {
          label: '% of nf_conntrack_max',
          ticks: [0, 0.25, 0.5, 0.75, 1].map((f) => ({ y: f * top, label: `${f * 100}%` })),
        },
    wide: true,
    ...common,
    legendNotes: [
      ...(common.legendNotes ?? []),
      { label: '75% (warning)', colour: C.orange, kind: 'threshold' },
      { label: '90% (critical)', colour: '#b42318', kind: 'threshold' },
    ],
  });
}

const COUNTER_LABEL = {
  insert: 'inserts',
  delete: 'deletes',
  drop: 'drops (table full)',
  earlyDrop: 'early drops',
  insertFailed: 'failed inserts',
} as const;
const COUNTER_STYLE = {
  insert: { colour: C.green, dash: 'none' },
  delete: { colour: C.sky, dash: '7 4' },
  drop: { colour: C.vermillion, dash: 'none' },
  earlyDrop: { colour: C.orange, dash: '7 4' },
  insertFailed: { colour: C.purple, dash: '2 3' },
} as const;

function rateChart(
  id: string,
  title: string,
  subtitle: string,
  lines: Timeline[],
  counters: (keyof typeof COUNTER_LABEL)[],
  common: Common,
): Html {
  const single = lines.length === 1;
  const series: Series[] = [];
  const reasons: string[] = [];
  for (const l of lines) {
    for (const c of counters) {
      const pts = points(l, (s) => s.rates[c]);
      if (!pts.some((p) => p.y !== null)) {
        reasons.push(l.run.summary.unavailable[`totals.${c}`] ?? `${c} unknown`);
        continue;
      }
      series.push({
        label: single ? COUNTER_LABEL[c] : l.run.label,
        colour: single ? COUNTER_STYLE[c].colour : l.colour,
        dash: single ? COUNTER_STYLE[c].dash : l.dash,
        shape: 'step',
        area: single && c === 'drop',
        points: pts,
      });
    }
  }
  if (!series.length) return unknownPanel(id, title, [...new Set(reasons)].join('; '));
  const description = lines
    .map((l) => {
      const s = l.run.summary;
      return counters
        .map((c) => {
          const total = s.totals[c];
          const peak =
            c === 'insert'
              ? s.peak.insertRate
              : c === 'delete'
                ? s.peak.deleteRate
                : c === 'drop'
                  ? s.peak.dropRate
                  : null;
          return `${single ? '' : `${l.run.label}: `}${COUNTER_LABEL[c]} ${total === null ? 'unknown' : `${count(total)} in all`}${peak === null ? '' : `, peak ${rate(peak)} per second`}.`;
        })
        .join(' ');
    })
    .join(' ');
  return renderChart({ id, title, subtitle, description, yLabel: 'per second', series, ...common });
}

function timeWaitChart(lines: Timeline[], common: Common): Html {
  const single = lines.length === 1;
  const series: Series[] = [];
  for (const l of lines) {
    const pts = points(l, (s) => s.timeWait.entries);
    if (!pts.some((p) => p.y !== null)) continue;
    series.push({
      label: single ? 'TIME_WAIT entries' : l.run.label,
      colour: single ? STATE_COLOURS.TIME_WAIT! : l.colour,
      dash: single ? 'none' : l.dash,
      shape: 'line',
      area: single,
      points: pts,
    });
  }
  if (!series.length)
    return unknownPanel('chart-timewait', 'TIME_WAIT', lines[0]!.run.summary.unavailable['peak.timeWait'] ?? 'unknown');
  const timeouts = [
    ...new Set(lines.flatMap((l) => l.run.samples.map((s) => s.timeWait.timeoutSeconds)).filter((t) => t !== null)),
  ];
  const max = constantMax(lines);
  return renderChart({
    id: 'chart-timewait',
    title: 'TIME_WAIT',
    subtitle: `TCP entries in TIME_WAIT${timeouts.length === 1 ? `: each stays nf_conntrack_tcp_timeout_time_wait = ${timeouts[0]} s` : ''}`,
    description: lines
      .map(
        (l) =>
          `${single ? '' : `${l.run.label}: `}peak ${l.run.summary.peak.timeWait === null ? 'unknown' : count(l.run.summary.peak.timeWait)} TIME_WAIT entries.`,
      )
      .join(' '),
    yLabel: 'entries',
    integer: true,
    series,
    right: max === null ? undefined : shareAxis(max, series),
    ...common,
  });
}

/** nf_conntrack_max when every sample of every run has the same one. */
function constantMax(lines: Timeline[]): number | null {
  const maxes = new Set(lines.flatMap((l) => l.run.samples.map((s) => s.max)).filter((m) => m !== null));
  return maxes.size === 1 ? [...maxes][0]! : null;
}

/** A right axis in percent of nf_conntrack_max, with round steps up to the series' peak. */
function shareAxis(max: number, series: Series[]): ChartSpec['right'] {
  const peak = largest([0, ...series.flatMap((s) => s.points.map((p) => p.y ?? 0))]) / max;
  const step = [0.01, 0.02, 0.05, 0.1, 0.25].find((st) => peak / st <= 5) ?? 0.25;
  const n = Math.round(Math.min(1, peak + step) / step);
  const ticks = Array.from({ length: n + 1 }, (_, i) => ({ y: i * step * max, label: percent(i * step, 0) }));
  return { label: '% of nf_conntrack_max', ticks };
}

function stateChart(l: Timeline, common: Common, single: boolean): Html {
  const id = `chart-states-${l.index}`;
  const title = single ? 'Entries by state' : `Entries by state: ${l.run.label}`;
  const samples = l.run.samples;
  if (!samples.some((s) => s.tcpStates !== null)) {
    return unknownPanel(
      id,
      title,
      l.run.summary.unavailable['peak.timeWait'] ??
        samples.find((s) => s.unavailable.tcpStates)?.unavailable.tcpStates ??
        'unknown',
    );
  }
  const layers: Layer[] = [];
  const order: TcpStateName[] = [
    'ESTABLISHED',
    'SYN_SENT',
    'SYN_RECV',
    'FIN_WAIT',
    'CLOSE_WAIT',
    'LAST_ACK',
    'TIME_WAIT',
    'CLOSE',
    'NONE',
    'SYN_SENT2',
  ];
  for (const state of order.filter((n) => TCP_STATE_NAMES.includes(n))) {
    const values = samples.map((s) => s.tcpStates?.[state] ?? null);
    if (values.some((v) => (v ?? 0) > 0)) layers.push({ label: `TCP ${state}`, colour: STATE_COLOURS[state]!, values });
  }
  for (const p of ['udp', 'icmp', 'other'] as const) {
    const values = samples.map((s) => s.protocols?.[p] ?? null);
    if (values.some((v) => (v ?? 0) > 0))
      layers.push({ label: p === 'other' ? 'other protocols' : p.toUpperCase(), colour: STATE_COLOURS[p]!, values });
  }
  if (!layers.length) {
    return markup`<figure class="panel" id="${id}"><figcaption><h3>${title}</h3></figcaption><p class="unknown">The monitor tracked no entries in this run.</p></figure>`;
  }
  const peakAt = (v: (number | null)[]) => largest([0, ...v.map((x) => x ?? 0)]);
  return renderChart({
    id,
    title,
    subtitle: 'tracked entries, stacked: TCP by state, then UDP, ICMP and others',
    description: `Peak per layer: ${layers.map((ly) => `${ly.label} ${count(peakAt(ly.values))}`).join(', ')}.`,
    yLabel: 'entries',
    integer: true,
    stack: { xs: l.x, layers },
    xMax: common.xMax,
    bands: single ? common.bands : undefined,
    markers: single ? undefined : common.markers?.filter((m) => m.colour === l.colour),
    legendNotes: common.legendNotes,
  });
}

// ---------------------------------------------------------------------------------------------
// Tables

function summaryTable(runs: readonly ReportRun[]): Html {
  type Cell = string | Html;
  const na = (s: RunSummary, path: string): Html =>
    markup`<abbr title="${s.unavailable[path] ?? 'unknown'}">n/a</abbr>`;
  const num = (s: RunSummary, path: string, v: number | null, f: (n: number) => string = count): Cell =>
    v === null ? na(s, path) : f(v);
  const rates = (s: RunSummary, key: 'insertRate' | 'deleteRate' | 'dropRate'): Cell =>
    s.peak[key] === null ? na(s, `peak.${key}`) : `${rate(s.peak[key]!)} / ${rate(s.p50[key]!)} / ${rate(s.p99[key]!)}`;
  const rows: [string, (s: RunSummary) => Cell][] = [
    ['Duration', (s) => duration(s.durationSeconds)],
    ['Samples', (s) => count(s.samples)],
    ['Peak entries', (s) => num(s, 'peak.entries', s.peak.entries)],
    ['Peak fill', (s) => num(s, 'peak.fill', s.peak.fill, (v) => percent(v))],
    ['nf_conntrack_max (at the end)', (s) => (s.max === null ? 'n/a' : count(s.max))],
    ['Inserts/s: peak / p50 / p99', (s) => rates(s, 'insertRate')],
    ['Deletes/s: peak / p50 / p99', (s) => rates(s, 'deleteRate')],
    ['Drops/s: peak / p50 / p99', (s) => rates(s, 'dropRate')],
    ['Inserts', (s) => num(s, 'totals.insert', s.totals.insert)],
    ['Deletes', (s) => num(s, 'totals.delete', s.totals.delete)],
    ['Drops (table full)', (s) => num(s, 'totals.drop', s.totals.drop)],
    ['Early drops', (s) => num(s, 'totals.earlyDrop', s.totals.earlyDrop)],
    ['Failed inserts', (s) => num(s, 'totals.insertFailed', s.totals.insertFailed)],
    ['Peak TIME_WAIT', (s) => num(s, 'peak.timeWait', s.peak.timeWait)],
    ['Peak TIME_WAIT share of max', (s) => num(s, 'peak.timeWaitShare', s.peak.timeWaitShare, (v) => percent(v))],
    ['Events lost', (s) => num(s, 'eventsLost', s.eventsLost)],
    [
      'First drop',
      (s) =>
        s.firstDropAt === null
          ? s.unavailable.firstDropAt
            ? na(s, 'firstDropAt')
            : 'none'
          : `${offset(s.firstDropSeconds ?? 0)} (${utc(s.firstDropAt).slice(11)})`,
    ],
  ];
  const multi = runs.length > 1;
  return markup`<table class="summary">
<thead><tr><th scope="col">Measure</th>${runs.map((r, i) => markup`<th scope="col" class="num">${multi ? swatch(i) : null}${multi ? r.label : 'Value'}</th>`)}</tr></thead>
<tbody>${rows.map(([label, f]) => markup`<tr><th scope="row">${label}</th>${runs.map((r) => markup`<td class="num">${f(r.summary)}</td>`)}</tr>`)}</tbody>
</table>
<p class="sub">Rates are per interval; p50 and p99 are nearest-rank percentiles over the intervals. n/a: the recording could not know (hover for why).</p>`;
}

function swatch(i: number): Html {
  return markup`<svg class="swatch" width="22" height="10" aria-hidden="true"><line x1="1" x2="21" y1="5" y2="5" stroke="${RUN_COLOURS[i % RUN_COLOURS.length]!}" stroke-width="3" stroke-dasharray="${RUN_DASHES[i % RUN_DASHES.length]!}"/></svg>`;
}

/** The advisor's environment: the run's last sample, the header for what samples lack. */
export function environmentOf(run: ReportRun): TuningEnvironment | null {
  const last = [...run.samples].reverse();
  const max = last.find((s) => s.max !== null)?.max ?? run.header?.conntrack.max ?? null;
  if (max === null) return null;
  return {
    max,
    buckets: last.find((s) => s.buckets !== null)?.buckets ?? run.header?.conntrack.buckets ?? null,
    timeWaitTimeout:
      last.find((s) => s.timeWait.timeoutSeconds !== null)?.timeWait.timeoutSeconds ??
      run.header?.conntrack.timeouts.nf_conntrack_tcp_timeout_time_wait ??
      null,
    entryBytes: run.header?.conntrack.entryBytes ?? null,
    memoryBytes: run.header?.memoryBytes ?? null,
  };
}

/** adviseTuning for a run, or null (with no max known there is nothing to advise on). */
export function adviceOf(run: ReportRun): TuningAdvice | null {
  const env = environmentOf(run);
  return env && run.samples.length ? adviseTuning(run.samples, env) : null;
}

function advice(run: ReportRun, named: boolean): Html {
  const a = adviceOf(run);
  const heading = named ? markup`<h3>${run.label}</h3>` : null;
  if (!a) return markup`${heading}<p>No advice: nf_conntrack_max is unknown in this recording.</p>`;
  return markup`${heading}
${
  a.recommendations.length
    ? markup`<ul class="advice">${a.recommendations.map(
        (r) =>
          markup`<li><code>${r.sysctl}</code>: <strong>${r.current === null ? '?' : count(r.current)} → ${count(r.recommended)}</strong><br><span class="muted">${r.reason}</span></li>`,
      )}</ul>`
    : null
}
${a.notes.map((n) => markup`<p>${n}</p>`)}
${a.memory && !a.recommendations.length ? markup`<p>One entry takes ${a.memory.entryBytes} bytes (${formatBytes(a.memory.bytes)} for a full table).</p>` : null}
${a.sysctlConf ? markup`<pre><code>${a.sysctlConf}</code></pre><ol class="steps">${a.steps.map((s) => markup`<li>${s}</li>`)}</ol>` : null}`;
}

function details(run: ReportRun, named: boolean): Html {
  const h = run.header;
  const rows: [string, Html | string][] = [];
  if (run.file) rows.push(['File', run.file]);
  if (h) {
    rows.push(
      ['Command', h.command ? markup`<code>${commandText(h.command)}</code>` : 'none: recorded until a signal'],
      [
        'Host',
        `${h.hostname}, Linux ${h.kernel}, ${h.cpus} CPUs${h.memoryBytes === null ? '' : `, ${formatBytes(h.memoryBytes)} RAM`}`,
      ],
      ['Namespace', h.allNamespaces ? 'all namespaces' : (h.netns ?? "the recorder's own")],
      ['Started', utc(h.startTime)],
      ['Interval, backend', `${h.intervalMs} ms, ${h.backend}`],
      [
        'nf_conntrack_max, buckets',
        `${h.conntrack.max === null ? 'n/a' : count(h.conntrack.max)}, ${h.conntrack.buckets === null ? 'n/a' : count(h.conntrack.buckets)}`,
      ],
      ['Entry size', h.conntrack.entryBytes === null ? 'n/a' : `${h.conntrack.entryBytes} bytes`],
      ['Recorded by', h.tool],
    );
    const known = Object.entries(h.conntrack.timeouts).filter(([, v]) => v !== null);
    rows.push([
      'Timeouts (s)',
      known.length
        ? markup`<span class="timeouts">${known.map(([k, v]) => markup`<span><code>${k.replace(/^nf_conntrack_/, '')}</code> ${v}</span>`)}</span>`
        : (h.unavailable['conntrack.timeouts'] ?? 'n/a'),
    ]);
  } else rows.push(['Header', 'none (conntrack-monitor --json output): host facts unknown']);
  rows.push(['End', exitText(run) ?? (run.end ? run.end.reason : 'no end line')]);
  if (run.namespace) rows.push(['Namespace inode', String(run.namespace.inode)]);
  const notices = run.notices.map(
    (n) => markup`<li><span class="muted">${utc(n.time)} ${n.kind}:</span> ${n.message}</li>`,
  );
  return markup`${named ? markup`<h3>${run.label}</h3>` : null}<table class="details"><tbody>${rows.map(([k, v]) => markup`<tr><th scope="row">${k}</th><td>${v}</td></tr>`)}</tbody></table>
${notices.length ? markup`<h4>What the monitor said</h4><ul class="notices">${notices}</ul>` : null}`;
}

/** argv as one line, quoting arguments with spaces or quotes (for display only). */
export function commandText(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

const CSS = trusted(`
:root{--ink:#1f2328;--muted:#5f6670;--line:#dde1e6;--bg:#f4f5f7;--panel:#fff;--bad:#b42318;--warn:#9a4a00;--ok:#067647}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 24px 40px}
h1{font-size:24px;margin:2px 0 6px;word-break:break-word}
h1 code{font-size:22px}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:14px 0 4px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.eyebrow{text-transform:uppercase;letter-spacing:.08em;font-size:12px;font-weight:650;color:var(--muted);margin:0}
.meta{color:var(--muted);margin:0 0 4px;font-size:14px}
.meta span+span::before{content:" · "}
.muted{color:var(--muted)}
.runs{list-style:none;padding:0;margin:6px 0;font-size:14px}
.runs li{margin:2px 0}
.swatch{margin-right:6px;vertical-align:middle}
.verdict{margin:14px 0 0;padding:12px 16px;border-radius:10px;border:1px solid var(--line);border-left:6px solid;background:#fff;font-size:16px}
.verdict.bad{border-left-color:var(--bad);background:#fef3f2}
.verdict.warn{border-left-color:#dc6803;background:#fffaeb}
.verdict.ok{border-left-color:var(--ok);background:#ecfdf3}
.verdict.unknown{border-left-color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-top:16px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .label{font-size:12px;font-weight:650;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.card .value{font-size:28px;font-weight:700;font-variant-numeric:tabular-nums;margin:2px 0;line-height:1.2}
.card .detail{font-size:13px;color:var(--muted)}
.card.bad{border-top:4px solid var(--bad)}.card.bad .value{color:var(--bad)}
.card.warn{border-top:4px solid #dc6803}.card.warn .value{color:var(--warn)}
.card.good{border-top:4px solid var(--ok)}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;margin-top:16px}
.panel{margin:0;background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:14px 16px 10px}
figure.panel{display:flex;flex-direction:column}
figure.panel svg.chart{margin-top:auto}
section.panel{margin-top:16px}
.grid>section.panel{margin-top:0}
.panel.wide{grid-column:1/-1}
.panel h3{margin:0;font-size:16px}
.sub{margin:2px 0 6px;color:var(--muted);font-size:13px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 16px;padding:0;margin:4px 0 2px;font-size:13px}
.legend li{display:flex;align-items:center;gap:6px}
svg.chart{width:100%;height:auto;display:block}
.unknown{color:var(--muted);font-style:italic}
.note{color:var(--muted);font-size:13px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:14px}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
tbody th{font-weight:500}
.num{text-align:right}
table.details th{width:220px;color:var(--muted);font-weight:500}
.timeouts{display:flex;flex-wrap:wrap;gap:2px 16px}
abbr{text-decoration:underline dotted;cursor:help;color:var(--muted)}
.advice li{margin:8px 0}
pre{background:#0d1117;color:#e6edf3;padding:12px 14px;border-radius:8px;font-size:13px;white-space:pre-wrap;overflow-wrap:anywhere}
footer{margin-top:20px;color:var(--muted);font-size:13px}
@media (max-width:900px){.grid{grid-template-columns:1fr}.cards{grid-template-columns:repeat(2,1fr)}}
@media print{body{background:#fff}.panel,.card{break-inside:avoid}}
`);
