/**
 * The live terminal view: a pure renderer (sample + history -> text) made of sections, each
 * laid out for the terminal's width, and a small controller that redraws it in the alternate
 * screen once per interval and whenever the terminal is resized. Under pressure it shows what
 * fills the table (the monitor's snapshots, src/top.ts) and a forecast of when it is full.
 *
 * No line is ever longer than the width, so the terminal never wraps one mid-word: rows are
 * lists of items (`insert 120/s`, `500 / 1,000 entries`) that move whole to a continuation
 * line, and sentences wrap between words. A new block (say, the busiest sources) is one more
 * Section in SECTIONS.
 */
import type { PressureLevel } from '../pressure.js';
import type { TopReport } from '../top.js';
import { compositionOfSample, evictableVerdict, reclaimableText } from '../verdict.js';
import { TCP_STATE_NAMES, type ConntrackSample } from '../types.js';
import { columns, formatDuration, formatGroup, formatPercent, formatRate, wrapWords } from './format.js';
import { printable } from '../errors.js';

export { wrapWords };

export interface LiveViewState {
  sample: ConntrackSample;
  /** Fill (0..1) of recent intervals, oldest first. */
  fillHistory: number[];
  /** Drops of recent intervals, oldest first. */
  dropHistory: number[];
  /** Why the monitor runs on /proc, if it does. */
  fallback: string | null;
  /** The monitor's latest errors, oldest first (kept on screen: stderr would be drawn over). */
  errors?: string[];
  /** Columns of the terminal. */
  width: number;
  /** The monitor's pressure level; what fills the table shows while it is not ok. */
  pressure?: PressureLevel;
  /** The latest snapshot the monitor took under pressure. */
  top?: TopReport | null;
  /** Whether `q` quits (stdin is a terminal, read key by key). */
  quitKey?: boolean;
}

/** Keys per group the live view shows (and asks the monitor's snapshots for). */
export const LIVE_TOP = 5;

/** A block of the view: its lines for the state, none longer than `width`. */
export type Section = (v: LiveViewState, width: number) => string[];

const SPARKS = '▁▂▃▄▅▆▇█';
const HISTORY = 60;
/** Row labels ("Rates      ") take this many columns; continuation lines are indented as much. */
const LABEL = 11;
/** The narrowest layout; a narrower terminal gets this one (and wraps it). */
const MIN_WIDTH = 30;

const count = (x: number | null | undefined) =>
  x === null || x === undefined ? 'n/a' : Math.round(x).toLocaleString('en');

/** Display columns of a string: every character this view draws takes one. */
/**
 * A labelled row of items separated by two spaces; an item that does not fit on the line moves
 * whole to a continuation line (indented under the first item). An item wider than a line is
 * wrapped between its words.
 */
export function itemRow(label: string, items: string[], width: number): string[] {
  const indent = ' '.repeat(label ? LABEL : 0);
  const lines: string[] = [];
  let line = label ? label.padEnd(LABEL) : '';
  let empty = true;
  for (const item of items) {
    const candidate = empty ? line + item : `${line}  ${item}`;
    if (columns(candidate) <= width) {
      line = candidate;
      empty = false;
      continue;
    }
    if (!empty) lines.push(line);
    const wrapped = wrapWords(item, width, empty ? line : indent, indent);
    line = wrapped.pop()!;
    lines.push(...wrapped);
    empty = false;
  }
  lines.push(line);
  return lines;
}

function sparkline(values: number[], scale: number, length: number): string {
  return values
    .slice(-Math.max(1, Math.min(HISTORY, length)))
    .map((v) => SPARKS[Math.min(SPARKS.length - 1, Math.max(0, Math.floor((v / scale) * (SPARKS.length - 1) + 0.5)))])
    .join('');
}

const header: Section = ({ sample: s }, width) =>
  itemRow(
    '',
    [
      'conntrack-monitor',
      `${s.netns ?? 'this namespace'} (${s.source})`,
      s.time.slice(11, 19),
      `interval ${Math.round(s.intervalMs)} ms`,
    ],
    width,
  ).concat('');

const table: Section = ({ sample: s }, width) => {
  const entries = `${count(s.entries)} / ${count(s.max)} entries`;
  const pct = formatPercent(s.fill);
  // The bar takes what the first line leaves after the percentage and the entries.
  const bar = Math.max(10, Math.min(50, width - LABEL - 4 - columns(pct) - 2 - columns(entries), width - 40));
  const filled = s.fill === null ? 0 : Math.min(bar, Math.round(s.fill * bar));
  return itemRow(
    'Table',
    [`[${'█'.repeat(filled)}${'░'.repeat(bar - filled)}] ${pct}`, entries, `(buckets ${count(s.buckets)})`],
    width,
  );
};

const rates: Section = ({ sample: s }, width) =>
  itemRow(
    'Rates',
    [
      `insert ${formatRate(s.rates.insert)}`,
      `delete ${formatRate(s.rates.delete)}`,
      `drop ${formatRate(s.rates.drop)}`,
      `early_drop ${formatRate(s.rates.earlyDrop)}`,
      `insert_failed ${formatRate(s.rates.insertFailed)}`,
    ],
    width,
  );

/** TIME_WAIT's share is always said as a share of nf_conntrack_max (the sample's timeWait.share). */
function timeWaitShare(s: ConntrackSample): string {
  return s.timeWait.share === null ? '' : ` (${formatPercent(s.timeWait.share)} of nf_conntrack_max)`;
}

const timeWait: Section = ({ sample: s }, width) =>
  itemRow(
    'TIME_WAIT',
    [
      `${count(s.timeWait.entries)} entries${timeWaitShare(s)}`,
      `timeout ${count(s.timeWait.timeoutSeconds)} s`,
      `TCP sockets in TIME_WAIT: ${count(s.socketTimeWait)}`,
    ],
    width,
  );

const tcpStates: Section = ({ sample: s }, width) => {
  if (!s.tcpStates) return [];
  const states = TCP_STATE_NAMES.filter((st) => s.tcpStates![st] > 0).map((st) => `${st} ${count(s.tcpStates![st])}`);
  return itemRow('TCP states', states.length ? states : ['none'], width);
};

const protocols: Section = ({ sample: s }, width) =>
  s.protocols
    ? itemRow(
        'Protocols',
        (['tcp', 'udp', 'icmp', 'other'] as const).map((p) => `${p} ${count(s.protocols![p])}`),
        width,
      )
    : [];

/**
 * What the event reader did this interval. On the eBPF path the kernel counts NEW and DESTROY
 * itself and queues only the TCP state changes: the counts come first, then what was read.
 */
const events: Section = ({ sample: s }, width) => {
  const e = s.events;
  if (!e) return [];
  const lost = `lost ${count(e.lost)} (${count(e.lostTotal)} in all${e.lostSince ? ` since ${e.lostSince.slice(11, 19)}` : ''})`;
  const items =
    e.path === 'ebpf'
      ? [
          `counted in the kernel (eBPF): ${count(s.counts.insert)} new, ${count(s.counts.delete)} destroyed`,
          `${count(e.received)} TCP state changes read`,
        ]
      : [`${count(e.received)} read this interval`];
  items.push(lost, `resyncs ${count(e.resyncs)}`);
  if (e.path !== 'ebpf') items.push(`classic filter: ${e.pathReason}`);
  return itemRow('Events', items, width);
};

const forecast: Section = ({ sample: s }, width) =>
  itemRow(
    'Forecast',
    [
      s.timeToFullSeconds === null
        ? `none: ${s.unavailable.timeToFullSeconds ?? 'unknown'}`
        : s.timeToFullSeconds === 0
          ? 'full now'
          : `full in ${formatDuration(s.timeToFullSeconds)} at the growth of the last minute`,
    ],
    width,
  );

/**
 * Under pressure, what fills the table (the monitor's latest snapshot): the top sources and
 * destination ports, side by side when both fit the width, else one under the other.
 */
const topSources: Section = (v, width) => {
  const top = v.top;
  if (!top || !v.pressure || v.pressure === 'ok') return [];
  const left = formatGroup('TOP SOURCES', top.bySource.slice(0, LIVE_TOP + 1), top.max);
  const right = formatGroup('TOP DEST PORTS', top.byDestinationPort.slice(0, LIVE_TOP + 1), top.max);
  const leftWidth = Math.max(...left.map(columns));
  const sideBySide = leftWidth + 2 + Math.max(...right.map(columns)) <= width;
  const rows = sideBySide
    ? Array.from({ length: Math.max(left.length, right.length) }, (_, i) =>
        `${(left[i] ?? '').padEnd(leftWidth)}  ${right[i] ?? ''}`.trimEnd(),
      )
    : [...left, ...right];
  return [
    '',
    ...itemRow('Snapshot', [`${top.time.slice(11, 19)}: ${top.entries} entries`, reclaimableText(top)], width),
    ...rows.flatMap((row) => (columns(row) <= width ? [row] : wrapWords(row, width, '', '    '))),
  ];
};

const history: Section = (v, width) => {
  // Sparklines as long as the history, within the width; their legends follow, or wrap under.
  const length = Math.max(10, Math.min(HISTORY, width - 6 - 2 - 36));
  const drops = v.dropHistory.slice(-length);
  return [
    '',
    ...itemRow(
      '',
      [
        `Fill  ${sparkline(v.fillHistory, 1, length)}`,
        `(last ${Math.min(length, HISTORY, v.fillHistory.length)} intervals, scale 0-100%)`,
      ],
      width,
    ),
    ...itemRow(
      '',
      [
        `Drops ${sparkline(drops, Math.max(1, ...drops), length)}`,
        `(peak ${count(Math.max(0, ...drops))} per interval)`,
      ],
      width,
    ),
    '',
  ];
};

const warnings: Section = (v, width) => {
  const recentDrops = v.dropHistory.reduce((a, b) => a + b, 0);
  const list = warningsFor(
    v.sample,
    v.fallback,
    { drops: recentDrops, seconds: (v.dropHistory.length * v.sample.intervalMs) / 1000 },
    v.pressure && v.pressure !== 'ok' ? v.top : null,
  );
  for (const e of v.errors ?? []) list.push(`Error: ${e}`);
  return list.length ? list.flatMap((w) => wrapWords(w, width, '! ', '  ')) : ['No warnings.'];
};

const footer: Section = (v) => ['', v.quitKey ? 'q or Ctrl-C to quit.' : 'Ctrl-C to quit.'];

/** The view, top to bottom. */
export const SECTIONS: readonly Section[] = [
  header,
  table,
  rates,
  timeWait,
  tcpStates,
  protocols,
  events,
  forecast,
  topSources,
  history,
  warnings,
  footer,
];

/** Renders the view as plain text lines (no colour codes), none longer than the width. */
export function renderLiveView(state: LiveViewState, sections: readonly Section[] = SECTIONS): string {
  const width = Math.max(MIN_WIDTH, state.width);
  // The namespace's name and the monitor's messages come from elsewhere: escaped before layout.
  const v: LiveViewState = {
    ...state,
    sample: state.sample.netns === null ? state.sample : { ...state.sample, netns: printable(state.sample.netns) },
    fallback: state.fallback === null ? null : printable(state.fallback),
    errors: state.errors?.map(printable),
  };
  return sections.flatMap((section) => section(v, width)).join('\n');
}

/**
 * Plain-words warnings for a sample. Drops are counted over the recent history shown, so a
 * burst stays on screen long enough to be read; whether they happen now is said apart. What
 * fills the table is the verdict (src/verdict.ts) on the snapshot taken under pressure, when
 * there is one, else on the sample's TCP states (said when the table is a quarter full or more).
 */
export function warningsFor(
  s: ConntrackSample,
  fallback: string | null,
  recent: { drops: number; seconds: number },
  snapshot: TopReport | null = null,
): string[] {
  const out: string[] = [];
  const dropsNow = (s.counts.drop ?? 0) > 0;
  const drops = Math.max(recent.drops, s.counts.drop ?? 0);
  if (drops > 0) {
    out.push(
      `TABLE FULL: ${drops} packets dropped in the last ${recent.seconds.toFixed(1)} s ("nf_conntrack: table full, dropping packet"). ` +
        (dropsNow ? 'New connections are being dropped now.' : 'None in the last interval.'),
    );
  }
  if (s.fill !== null && s.fill >= 0.9) {
    out.push(
      `The table is ${(s.fill * 100).toFixed(1)}% full: new connections ${dropsNow ? 'are being' : 'will soon be'} dropped. ` +
        'Run `conntrack-monitor advise`.',
    );
  } else if (s.fill !== null && s.fill >= 0.75) {
    out.push(`The table is over 75% full (${(s.fill * 100).toFixed(1)}%).`);
  }
  if (s.events && s.events.lost > 0)
    out.push(
      `EVENTS LOST: ${s.events.lost.toLocaleString('en')} events could not be queued (the receive buffer was full), ` +
        'so insert and delete are unknown in this interval and their totals incomplete; the table is re-read ' +
        'to repair the states. A larger --receive-buffer loses fewer.',
    );
  const composition = snapshot ?? ((s.fill ?? 0) >= 0.25 ? compositionOfSample(s) : null);
  const verdict = composition && evictableVerdict(composition);
  if (verdict?.mostly) out.push(`${verdict.text.charAt(0).toUpperCase()}${verdict.text.slice(1)}.`);
  if (s.source === 'netlink' && s.eventsMode === 0)
    out.push('nf_conntrack_events is 0 in this namespace: no events, so no insert/delete rates or states.');
  if (s.source === 'netlink' && s.eventsMode === 2)
    out.push(
      'nf_conntrack_events is 2 (the kernel default): entries made while no event listener existed are seen only at table dumps.',
    );
  if (fallback) out.push(`Reading /proc, not ctnetlink (${fallback}): no insert/delete rates, no conntrack TIME_WAIT.`);
  return out;
}

/** Keeps history and redraws the view on a TTY: each sample, and when the terminal is resized. */
export class LiveView {
  private readonly fillHistory: number[] = [];
  private readonly dropHistory: number[] = [];
  private readonly errors: string[] = [];
  private last: ConntrackSample | null = null;
  private readonly onResize = () => this.draw();
  fallback: string | null = null;
  pressure: PressureLevel = 'ok';
  top: TopReport | null = null;
  quitKey = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  open(): void {
    this.out.write('\x1b[?1049h\x1b[?25l'); // alternate screen, hide the cursor
    // Node turns SIGWINCH into 'resize' on a TTY stream.
    this.out.on('resize', this.onResize);
  }

  close(): void {
    this.out.off('resize', this.onResize);
    this.out.write('\x1b[?25h\x1b[?1049l');
  }

  /** An error the monitor reported: kept on screen (the last three). */
  error(message: string): void {
    this.errors.push(message);
    if (this.errors.length > 3) this.errors.shift();
    this.draw();
  }

  update(sample: ConntrackSample): void {
    this.fillHistory.push(sample.fill ?? 0);
    this.dropHistory.push(sample.counts.drop ?? 0);
    if (this.fillHistory.length > HISTORY) this.fillHistory.shift();
    if (this.dropHistory.length > HISTORY) this.dropHistory.shift();
    this.last = sample;
    this.draw();
  }

  private draw(): void {
    if (!this.last) return;
    const text = renderLiveView({
      sample: this.last,
      fillHistory: this.fillHistory,
      dropHistory: this.dropHistory,
      fallback: this.fallback,
      errors: this.errors,
      width: this.out.columns ?? 100,
      pressure: this.pressure,
      top: this.top,
      quitKey: this.quitKey,
    });
    this.out.write(`\x1b[H\x1b[J${text}\n`);
  }
}

/**
 * `q` quits, as in top and htop: stdin read key by key (raw mode: no echo, no line buffering).
 * Raw mode also keeps the terminal from turning Ctrl-C into SIGINT, so Ctrl-C is passed on as
 * that signal, whose handling (the final sample, a second Ctrl-C forcing the exit) stays the
 * same. `close()` gives the terminal back as it was. Null when stdin is not a terminal.
 */
export function readQuitKey(input: NodeJS.ReadStream): { quit: Promise<void>; close(): void } | null {
  if (!input.isTTY) return null;
  let pressed!: () => void;
  const quit = new Promise<void>((resolve) => (pressed = resolve));
  const onData = (data: Buffer) => {
    for (const byte of data) {
      if (byte === 0x71 || byte === 0x51)
        pressed(); // q, Q
      else if (byte === 0x03) process.kill(process.pid, 'SIGINT'); // Ctrl-C
    }
  };
  input.setRawMode(true);
  input.on('data', onData);
  input.resume();
  return {
    quit,
    close: () => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
    },
  };
}
