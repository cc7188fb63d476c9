/**
 * Time charts as inline SVG, generated from the data: no script, no library, nothing fetched.
 * The x axis is seconds since the run's start, so runs overlay for before/after comparisons.
 * Every chart has a title and a description in words (role="img"), axes with units and ticks,
 * and an HTML legend; series differ by dash as well as colour. Long runs are thinned to about
 * two points per pixel column, keeping each column's minimum and maximum, so peaks survive.
 */
import { markup, trusted, type Html } from './html-escape.js';
import { clock, compact, count } from './numbers.js';

/** A value at time x (seconds); `x0` is where its interval began (for steps). */
export interface Point {
  x: number;
  x0?: number;
  y: number | null;
}

export interface Series {
  label: string;
  colour: string;
  dash?: string;
  width?: number;
  /** 'line' through the points (gauges), or 'step': each value holds over its interval (rates). */
  shape: 'line' | 'step';
  /** Shade the area under the line. */
  area?: boolean;
  points: Point[];
}

/** A layer of a stacked area (entries by state). */
export interface Layer {
  label: string;
  colour: string;
  values: (number | null)[];
}

/**
 * A span of time to point out: a band (a solid strip above the plot, so it never blends with
 * what is drawn in it), or a triangle along the top.
 */
export interface Mark {
  x0: number;
  x1: number;
  title: string;
  colour: string;
}

/** One moment to point out (the first drop): a dashed rule through the plot, labelled above it. */
export interface Moment {
  x: number;
  label: string;
  title: string;
  colour: string;
}

/**
 * A level of the y range to point out (the warning and critical fill): a dotted line across
 * the plot, never a shaded zone, which would blend with an area drawn over it.
 */
export interface Threshold {
  y: number;
  colour: string;
  label: string;
}

export interface ChartSpec {
  id: string;
  title: string;
  subtitle: string;
  /** The chart in words, for screen readers (the SVG's <desc>). */
  description: string;
  /** The y axis's unit, e.g. "entries" or "per second". */
  yLabel: string;
  /** Seconds shown on the x axis. */
  xMax: number;
  /** The y range goes at least this high. */
  yMin?: number;
  /** Integer quantities: no fractional ticks. */
  integer?: boolean;
  /** How y ticks are written (default: compact numbers). */
  yFormat?: (y: number) => string;
  series?: Series[];
  stack?: { xs: number[]; layers: Layer[] };
  bands?: Mark[];
  markers?: Mark[];
  moment?: Moment;
  thresholds?: Threshold[];
  /** A second axis on the right, e.g. percent of nf_conntrack_max. */
  right?: { label: string; ticks: { y: number; label: string }[] };
  wide?: boolean;
  /** Legend entries besides the series: what the bands and markers mean. */
  legendNotes?: { label: string; colour: string; kind: 'band' | 'marker' | 'threshold' | 'moment' }[];
}

/** Height of a band's strip above the plot, and the gap between it and the plot. */
const STRIP = 6;
const STRIP_GAP = 3;
/** Average advance of a 12 px label character (bold system-ui), to keep labels inside the chart. */
const LABEL_CHAR = 7;

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"';

export function renderChart(spec: ChartSpec): Html {
  const W = spec.wide ? 1120 : 548;
  const H = spec.wide ? 290 : 250;
  const bands = spec.bands?.length ? STRIP + STRIP_GAP + 4 : 0;
  const m = {
    l: 64,
    r: spec.right ? 56 : 20,
    t: 14 + (spec.markers?.length ? 14 : 0) + bands + (spec.moment ? 14 : 0),
    b: 44,
  };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const series = (spec.series ?? []).map((s) => ({ ...s, points: thin(s.points, spec.xMax, pw) }));
  const stack = spec.stack ? stacked(spec.stack, spec.xMax, pw) : null;

  let top = spec.yMin ?? 0;
  for (const s of series) for (const p of s.points) if (p.y !== null) top = Math.max(top, p.y);
  for (const total of stack?.totals ?? []) top = Math.max(top, total);
  for (const t of spec.thresholds ?? []) top = Math.max(top, t.y);
  const yTicks = niceTicks(top, spec.integer === true);
  const yTop = yTicks.at(-1)!;
  const xMax = spec.xMax > 0 ? spec.xMax : 1;
  const X = (x: number) => round(m.l + (Math.min(Math.max(x, 0), xMax) / xMax) * pw);
  const Y = (y: number) => round(m.t + ph - (y / yTop) * ph);
  const xTicks = timeTicks(xMax);
  const clip = `${spec.id}-clip`;

  const parts: (Html | string)[] = [];
  for (const t of yTicks) {
    parts.push(
      markup`<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(t)}" y2="${Y(t)}" stroke="${t === 0 ? '#8a8f98' : '#e3e6ea'}" stroke-width="1"/>`,
      markup`<text x="${m.l - 8}" y="${Y(t) + 4}" text-anchor="end">${(spec.yFormat ?? compact)(t)}</text>`,
    );
  }
  for (const t of spec.thresholds ?? []) {
    parts.push(
      markup`<line class="threshold" x1="${m.l}" x2="${m.l + pw}" y1="${Y(t.y)}" y2="${Y(t.y)}" stroke="${t.colour}" stroke-width="1.5" stroke-dasharray="2 3"><title>${t.label}</title></line>`,
    );
  }
  for (const t of spec.right?.ticks ?? []) {
    if (t.y > yTop) continue;
    parts.push(
      markup`<line x1="${m.l + pw}" x2="${m.l + pw + 5}" y1="${Y(t.y)}" y2="${Y(t.y)}" stroke="#8a8f98"/>`,
      markup`<text x="${m.l + pw + 8}" y="${Y(t.y) + 4}">${t.label}</text>`,
    );
  }
  for (const t of xTicks) {
    parts.push(
      markup`<line x1="${X(t)}" x2="${X(t)}" y1="${m.t + ph}" y2="${m.t + ph + 5}" stroke="#8a8f98"/>`,
      markup`<text x="${X(t)}" y="${m.t + ph + 18}" text-anchor="middle">${tickLabel(t, xMax)}</text>`,
    );
  }
  const labels: Html[] = [];
  // Bands: solid strips just above the plot, as the legend draws them.
  const stripY = m.t - STRIP_GAP - STRIP;
  for (const b of spec.bands ?? []) {
    const x = X(b.x0);
    parts.push(
      markup`<rect class="mark" x="${x}" y="${stripY}" width="${Math.max(2, round(X(b.x1) - x))}" height="${STRIP}" fill="${b.colour}"><title>${b.title}</title></rect>`,
    );
  }
  if (spec.moment) {
    // A rule at the moment, through the plot; its label above the strips, on the side where it
    // fits inside the chart (right of the rule, else left, else as far as the plot allows).
    const mo = spec.moment;
    const x = X(mo.x);
    const width = mo.label.length * LABEL_CHAR;
    const right = m.l + pw;
    const start = x + 4 + width <= right ? x + 4 : x - 4 - width >= m.l ? x - 4 - width : Math.max(m.l, right - width);
    parts.push(
      markup`<line class="moment" x1="${x}" x2="${x}" y1="${bands ? stripY : m.t}" y2="${m.t + ph}" stroke="${mo.colour}" stroke-width="1.5" stroke-dasharray="4 3"><title>${mo.title}</title></line>`,
    );
    labels.push(
      markup`<text class="moment-label" x="${round(start)}" y="${(bands ? stripY : m.t) - 5}" text-anchor="start" font-weight="600" fill="${mo.colour}">${mo.label}</text>`,
    );
  }

  const plot: Html[] = [];
  if (stack) {
    spec.stack!.layers.forEach((layer, i) => {
      const d = stackPath(stack, i, X, Y);
      if (d)
        plot.push(markup`<path d="${d}" fill="${layer.colour}" stroke="none"><title>${layer.label}</title></path>`);
    });
  }
  for (const s of series) {
    if (s.area) {
      const d = areaPath(s, X, Y);
      if (d) plot.push(markup`<path d="${d}" fill="${s.colour}" fill-opacity="0.14" stroke="none"/>`);
    }
    const d = linePath(s, X, Y);
    if (d) {
      plot.push(
        markup`<path class="series" d="${d}" fill="none" stroke="${s.colour}" stroke-width="${s.width ?? 2}" stroke-linejoin="round" stroke-dasharray="${s.dash ?? 'none'}"><title>${s.label}</title></path>`,
      );
    }
  }
  for (const mk of spec.markers ?? []) {
    const x = (X(mk.x0) + X(mk.x1)) / 2;
    plot.push(
      markup`<path class="mark" d="M${round(x - 5)} ${m.t - 11}h10l-5 8z" fill="${mk.colour}"><title>${mk.title}</title></path>`,
    );
  }

  const titleId = `${spec.id}-title`;
  const descId = `${spec.id}-desc`;
  const svg = markup`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${titleId} ${descId}" ${trusted(FONT)} font-size="12" fill="#3b4048">
<title id="${titleId}">${spec.title}</title>
<desc id="${descId}">${spec.description}</desc>
<defs><clipPath id="${clip}"><rect x="${m.l}" y="${m.t - 14}" width="${pw}" height="${ph + 14}"/></clipPath></defs>
${parts}
<g clip-path="url(#${clip})">${plot}</g>
${labels}
<text x="${m.l + pw / 2}" y="${H - 6}" text-anchor="middle" fill="#5f6670">${xMax >= 120 ? 'time since start (min:s)' : 'seconds since start'}</text>
<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle" fill="#5f6670">${spec.yLabel}</text>
${spec.right ? markup`<text transform="translate(${W - 8} ${m.t + ph / 2}) rotate(90)" text-anchor="middle" fill="#5f6670">${spec.right.label}</text>` : ''}
</svg>`;

  return markup`<figure class="panel${spec.wide ? ' wide' : ''}" id="${spec.id}">
<figcaption><h3>${spec.title}</h3><p class="sub">${spec.subtitle}</p>${legend(spec)}</figcaption>
${svg}
</figure>`;
}

function legend(spec: ChartSpec): Html {
  const items: Html[] = [];
  for (const s of spec.series ?? []) {
    items.push(
      markup`<li><svg width="26" height="10" aria-hidden="true"><line x1="1" x2="25" y1="5" y2="5" stroke="${s.colour}" stroke-width="${Math.max(2, s.width ?? 2)}" stroke-dasharray="${s.dash ?? 'none'}"/></svg>${s.label}</li>`,
    );
  }
  for (const l of spec.stack?.layers ?? []) {
    items.push(
      markup`<li><svg width="14" height="12" aria-hidden="true"><rect width="14" height="12" rx="2" fill="${l.colour}"/></svg>${l.label}</li>`,
    );
  }
  for (const n of spec.legendNotes ?? []) {
    // Each swatch as the chart draws its kind: a triangle, a strip, a dashed rule, a dotted level.
    const swatch =
      n.kind === 'marker'
        ? markup`<path d="M2 1h10l-5 8z" fill="${n.colour}"/>`
        : n.kind === 'band'
          ? markup`<rect y="3" width="14" height="${STRIP}" fill="${n.colour}"/>`
          : n.kind === 'moment'
            ? markup`<line x1="7" x2="7" y1="0" y2="12" stroke="${n.colour}" stroke-width="1.5" stroke-dasharray="4 3"/>`
            : markup`<line x1="0" x2="14" y1="6" y2="6" stroke="${n.colour}" stroke-width="1.5" stroke-dasharray="2 3"/>`;
    items.push(
      markup`<li class="note-${n.kind}"><svg width="14" height="12" aria-hidden="true">${swatch}</svg>${n.label}</li>`,
    );
  }
  return items.length ? markup`<ul class="legend">${items}</ul>` : markup``;
}

/** About four to six round ticks from 0 to at least `top`. */
export function niceTicks(top: number, integer: boolean): number[] {
  const max = top > 0 ? top : 1;
  const rough = max / 4;
  const pow = 10 ** Math.floor(Math.log10(rough));
  let step = [1, 2, 2.5, 5, 10].map((f) => f * pow).find((s) => s >= rough)!;
  if (integer) step = Math.max(1, Math.ceil(step));
  const n = Math.ceil(max / step - 1e-9);
  return Array.from({ length: n + 1 }, (_, i) => round(i * step, 6));
}

const TIME_STEPS = [
  0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/** Round time ticks (0.1 s to a day apart), at most eight. */
export function timeTicks(xMax: number): number[] {
  const step = TIME_STEPS.find((s) => xMax / s <= 8) ?? xMax / 8;
  const n = Math.floor(xMax / step + 1e-9);
  return Array.from({ length: n + 1 }, (_, i) => round(i * step, 6));
}

function tickLabel(t: number, xMax: number): string {
  return xMax >= 120 ? clock(t) : `${count(t, 1)} s`;
}

type P = { x: number; x0?: number; y: number | null };

/** At most two points per pixel column (each column's min and max, in time order). */
function thin(points: P[], xMax: number, width: number): P[] {
  if (points.length <= width * 2) return points;
  const columns = new Map<number, P[]>();
  for (const p of points) {
    const c = Math.floor((p.x / (xMax || 1)) * width);
    let col = columns.get(c);
    if (!col) columns.set(c, (col = []));
    col.push(p);
  }
  const out: P[] = [];
  for (const col of columns.values()) {
    const known = col.filter((p) => p.y !== null);
    if (known.length < col.length) out.push({ ...col[0]!, y: null }); // keep the gap
    if (!known.length) continue;
    let lo = known[0]!;
    let hi = known[0]!;
    for (const p of known) {
      if (p.y! < lo.y!) lo = p;
      if (p.y! > hi.y!) hi = p;
    }
    const first = lo.x <= hi.x ? lo : hi;
    const second = first === lo ? hi : lo;
    out.push({ ...first, x0: col[0]!.x0 ?? first.x0 });
    if (second !== first) out.push({ ...second, x0: first.x });
  }
  return out;
}

function linePath(s: Series, X: (x: number) => number, Y: (y: number) => number): string {
  let d = '';
  let pen = false;
  for (const p of s.points) {
    if (p.y === null) {
      pen = false;
      continue;
    }
    if (s.shape === 'step') {
      const x0 = X(p.x0 ?? p.x);
      d += `${pen ? 'L' : 'M'}${x0} ${Y(p.y)}L${X(p.x)} ${Y(p.y)}`;
    } else d += `${pen ? 'L' : 'M'}${X(p.x)} ${Y(p.y)}`;
    pen = true;
  }
  return d;
}

function areaPath(s: Series, X: (x: number) => number, Y: (y: number) => number): string {
  const runs: P[][] = [[]];
  for (const p of s.points) {
    if (p.y === null) runs.push([]);
    else runs.at(-1)!.push(p);
  }
  return runs
    .filter((r) => r.length)
    .map((r) => {
      const line = linePath({ ...s, points: r }, X, Y);
      const first = r[0]!;
      const startX = X(s.shape === 'step' ? (first.x0 ?? first.x) : first.x);
      return `${line}L${X(r.at(-1)!.x)} ${Y(0)}L${startX} ${Y(0)}Z`;
    })
    .join('');
}

interface Stacked {
  xs: number[];
  /** cumulative[i][j]: the top of layer i at xs[j]; null where unknown. */
  cumulative: (number | null)[][];
  totals: number[];
}

function stacked(stack: { xs: number[]; layers: Layer[] }, xMax: number, width: number): Stacked {
  let idx = stack.xs.map((_, j) => j);
  const totalAt = (j: number) => stack.layers.reduce((sum, l) => sum + (l.values[j] ?? 0), 0);
  if (idx.length > width * 2) {
    // One sample per half pixel column: the one with the largest total.
    const best = new Map<number, number>();
    for (const j of idx) {
      const c = Math.floor((stack.xs[j]! / (xMax || 1)) * width * 2);
      const b = best.get(c);
      if (b === undefined || totalAt(j) > totalAt(b)) best.set(c, j);
    }
    idx = [...best.values()];
  }
  const cumulative: (number | null)[][] = [];
  let below: (number | null)[] = idx.map(() => 0);
  for (const layer of stack.layers) {
    const mine = idx.map((j, k) =>
      layer.values[j] === null || below[k] === null ? null : below[k]! + layer.values[j]!,
    );
    cumulative.push(mine);
    below = mine;
  }
  return { xs: idx.map((j) => stack.xs[j]!), cumulative, totals: idx.map(totalAt) };
}

function stackPath(s: Stacked, layer: number, X: (x: number) => number, Y: (y: number) => number): string {
  const upper = s.cumulative[layer]!;
  const lower = layer === 0 ? upper.map((v) => (v === null ? null : 0)) : s.cumulative[layer - 1]!;
  let d = '';
  let segment: number[] = [];
  const flush = () => {
    if (segment.length) {
      const top = segment.map((j, k) => `${k ? 'L' : 'M'}${X(s.xs[j]!)} ${Y(upper[j]!)}`).join('');
      const bottom = [...segment]
        .reverse()
        .map((j) => `L${X(s.xs[j]!)} ${Y(lower[j]!)}`)
        .join('');
      d += `${top}${bottom}Z`;
    }
    segment = [];
  };
  upper.forEach((v, j) => {
    if (v === null || lower[j] === null) flush();
    else segment.push(j);
  });
  flush();
  return d;
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
