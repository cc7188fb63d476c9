/**
 * The live terminal view: a pure renderer (sample + history -> text) and a small controller
 * that redraws it in the alternate screen once per interval.
 */
import { TCP_STATE_NAMES, type ConntrackSample } from '../types.js';
import { formatPercent, formatRate } from './format.js';

export interface LiveViewState {
  sample: ConntrackSample;
  /** Fill (0..1) of recent intervals, oldest first. */
  fillHistory: number[];
  /** Drops of recent intervals, oldest first. */
  dropHistory: number[];
  /** Why the monitor runs on /proc, if it does. */
  fallback: string | null;
  width: number;
}

const SPARKS = '▁▂▃▄▅▆▇█';
const HISTORY = 60;

/** Renders the view as plain text lines (no colour codes). */
export function renderLiveView(v: LiveViewState): string {
  const s = v.sample;
  const n = (x: number | null | undefined) =>
    x === null || x === undefined ? 'n/a' : Math.round(x).toLocaleString('en');
  const r = formatRate;
  const pct = formatPercent;
  const barWidth = Math.max(10, Math.min(50, v.width - 40));
  const filled = s.fill === null ? 0 : Math.min(barWidth, Math.round(s.fill * barWidth));
  const lines = [
    `conntrack-monitor  ${s.netns ?? 'this namespace'} (${s.source})  ${s.time.slice(11, 19)}  interval ${Math.round(s.intervalMs)} ms`,
    '',
    `Table      [${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}] ${pct(s.fill)}  ${n(s.entries)} / ${n(s.max)} entries  (buckets ${n(s.buckets)})`,
    `Rates      insert ${r(s.rates.insert)}  delete ${r(s.rates.delete)}  drop ${r(s.rates.drop)}  early_drop ${r(s.rates.earlyDrop)}  insert_failed ${r(s.rates.insertFailed)}`,
    `TIME_WAIT  ${n(s.timeWait.entries)} entries (${pct(s.timeWait.share)} of max), timeout ${n(s.timeWait.timeoutSeconds)} s; TCP sockets in TIME_WAIT ${n(s.socketTimeWait)}`,
  ];
  if (s.tcpStates) {
    const states = TCP_STATE_NAMES.filter((st) => s.tcpStates![st] > 0).map((st) => `${st} ${n(s.tcpStates![st])}`);
    lines.push(`TCP states ${states.join('  ') || 'none'}`);
  }
  if (s.protocols)
    lines.push(
      `Protocols  tcp ${n(s.protocols.tcp)}  udp ${n(s.protocols.udp)}  icmp ${n(s.protocols.icmp)}  other ${n(s.protocols.other)}`,
    );
  if (s.events)
    lines.push(
      `Events     ${n(s.events.received)} this interval, lost ${n(s.events.lostTotal)} in all, resyncs ${n(s.events.resyncs)}`,
    );
  lines.push(
    '',
    `Fill  ${sparkline(v.fillHistory, 1)}  (last ${Math.min(HISTORY, v.fillHistory.length)} intervals, scale 0-100%)`,
    `Drops ${sparkline(v.dropHistory, Math.max(1, ...v.dropHistory))}  (peak ${n(Math.max(0, ...v.dropHistory))} per interval)`,
    '',
  );
  const recentDrops = v.dropHistory.reduce((a, b) => a + b, 0);
  const warnings = warningsFor(s, v.fallback, {
    drops: recentDrops,
    seconds: (v.dropHistory.length * s.intervalMs) / 1000,
  });
  lines.push(...(warnings.length ? warnings.map((w) => `! ${w}`) : ['No warnings.']));
  lines.push('', 'Ctrl-C to quit.');
  return lines.join('\n');
}

/**
 * Plain-words warnings for a sample. Drops are counted over the recent history shown, so a
 * burst stays on screen long enough to be read.
 */
export function warningsFor(
  s: ConntrackSample,
  fallback: string | null,
  recent: { drops: number; seconds: number },
): string[] {
  const out: string[] = [];
  const drops = Math.max(recent.drops, s.counts.drop ?? 0);
  if (drops > 0) {
    const now = (s.counts.drop ?? 0) > 0 ? 'New connections are failing.' : 'None in the last interval.';
    out.push(
      `TABLE FULL: ${drops} packets dropped in the last ${recent.seconds.toFixed(1)} s ("nf_conntrack: table full, dropping packet"). ${now}`,
    );
  }
  if (s.fill !== null && s.fill >= 0.9)
    out.push(
      `The table is ${(s.fill * 100).toFixed(1)}% full: new connections will soon be dropped. Run \`conntrack-monitor advise\`.`,
    );
  else if (s.fill !== null && s.fill >= 0.75) out.push(`The table is over 75% full (${(s.fill * 100).toFixed(1)}%).`);
  if (s.events && s.events.lost > 0)
    out.push(
      `${s.events.lost} events were lost (the monitor fell behind); the table was re-read to repair the counts.`,
    );
  if (s.timeWait.entries !== null && s.entries && s.timeWait.entries / s.entries >= 0.5 && (s.fill ?? 0) >= 0.25) {
    out.push(
      `TIME_WAIT entries are ${((s.timeWait.entries / s.entries) * 100).toFixed(0)}% of the table: a shorter nf_conntrack_tcp_timeout_time_wait would free them sooner.`,
    );
  }
  if (s.eventsMode === 0)
    out.push('nf_conntrack_events is 0 in this namespace: no events, so no insert/delete rates or states.');
  if (fallback) out.push(`Reading /proc, not ctnetlink (${fallback}): no insert/delete rates, no conntrack TIME_WAIT.`);
  return out;
}

function sparkline(values: number[], scale: number): string {
  return values
    .slice(-HISTORY)
    .map((v) => SPARKS[Math.min(SPARKS.length - 1, Math.max(0, Math.floor((v / scale) * (SPARKS.length - 1) + 0.5)))])
    .join('');
}

/** Keeps history and redraws the view on a TTY. */
export class LiveView {
  private readonly fillHistory: number[] = [];
  private readonly dropHistory: number[] = [];
  fallback: string | null = null;

  constructor(private readonly out: NodeJS.WriteStream) {}

  open(): void {
    this.out.write('\x1b[?1049h\x1b[?25l'); // alternate screen, hide the cursor
  }

  close(): void {
    this.out.write('\x1b[?25h\x1b[?1049l');
  }

  update(sample: ConntrackSample): void {
    this.fillHistory.push(sample.fill ?? 0);
    this.dropHistory.push(sample.counts.drop ?? 0);
    if (this.fillHistory.length > HISTORY) this.fillHistory.shift();
    if (this.dropHistory.length > HISTORY) this.dropHistory.shift();
    const text = renderLiveView({
      sample,
      fillHistory: this.fillHistory,
      dropHistory: this.dropHistory,
      fallback: this.fallback,
      width: this.out.columns ?? 100,
    });
    this.out.write(`\x1b[H\x1b[J${text}\n`);
  }
}
