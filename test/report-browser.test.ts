/**
 * The report page in a real browser: headless Chromium (Debian's /usr/bin/chromium), driven
 * over the DevTools protocol (scripts/chromium-page.mjs). It opens the page made from a real
 * recording, finds the charts laid out with their data, checks that the page made no request
 * but its own, and takes screenshots (build/report-*.png). At 1400 and 800 px: the first drop
 * marked where it was counted and never cut off, the drop strips drawn as the legend draws
 * them and over nothing else, and the sysctl snippet without a scroll bar. A hostile
 * recording's markup stays text: no element from it exists, and nothing reaches the server its
 * URLs point to.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRecording, renderReport, runsOf } from '../dist/index.js';
import { CHROMIUM, openPage } from '../scripts/chromium-page.mjs';
import { hostileRecording } from './helpers/hostile-recording';

const missing = existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed (apt-get install chromium)`;
if (missing && process.env.CI === 'true') throw new Error(`the browser test must run under CI=true, but: ${missing}`);
if (missing) console.warn(`skipping the browser test: ${missing}`);

const ROOT = join(__dirname, '..');
const FIXTURE = join(__dirname, 'fixtures', 'recordings', 'table-full.ndjson');
/** A first drop 5 s into a 35 s run, and drops to its end (test/fixtures/recordings/capture.mjs). */
const LATE = join(__dirname, 'fixtures', 'recordings', 'late-drops.ndjson');
const DEMO = join(ROOT, 'docs', 'demo', 'before.ndjson');
const BUILD = join(ROOT, 'build');
const dir = mkdtempSync(join(tmpdir(), 'ctmon-browser-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const runsOfFile = (file: string) => runsOf(parseRecording(readFileSync(file, 'utf8'), file), file);

function writePage(name: string, page: string): string {
  const path = join(dir, name);
  writeFileSync(path, page);
  return pathToFileURL(path).href;
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

interface ChartFacts {
  id: string;
  title: string;
  desc: string;
  width: number;
  height: number;
  series: number;
  drawn: number;
  marks: number;
  legend: string[];
  ticks: string[];
}

const CHART_FACTS = `[...document.querySelectorAll('figure.panel')].filter((f) => f.querySelector('svg.chart')).map((f) => {
  const svg = f.querySelector('svg.chart');
  const box = svg.getBoundingClientRect();
  const series = [...svg.querySelectorAll('path.series, path:not(.series):not(.mark)')];
  return {
    id: f.id,
    title: svg.querySelector('title').textContent,
    desc: svg.querySelector('desc').textContent,
    width: box.width,
    height: box.height,
    series: svg.querySelectorAll('path.series').length,
    drawn: series.filter((p) => p.getTotalLength() > 0).length,
    marks: svg.querySelectorAll('.mark').length,
    legend: [...f.querySelectorAll('.legend li')].map((li) => li.textContent),
    ticks: [...svg.querySelectorAll(':scope > text')].map((t) => t.textContent),
  };
})`;

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
}
interface MarkFacts {
  chart: Box;
  plot: Box;
  ticks: { seconds: number; x: number }[];
  rule: { x: number; stroke: string; dash: string };
  label: Box & { text: string };
  strips: (Box & { fill: string; opacity: string })[];
  legend: { band: { fill: string; opacity: string }; moment: { stroke: string; dash: string } };
  paintedInDrops: string[];
  snippets: { scrollWidth: number; clientWidth: number }[];
}

/** Evaluated in the page: the fill chart's first-drop rule, label, strips and axis, as laid out. */
const MARK_FACTS = `(() => {
  document.querySelector('#chart-fill').scrollIntoView({ block: 'center' }); // elementsFromPoint sees the viewport
  const box = (e) => {
    const r = e.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
  };
  const svg = document.querySelector('#chart-fill svg.chart');
  const style = (e) => getComputedStyle(e);
  // The plot: the extent of the horizontal grid lines.
  const grid = [...svg.querySelectorAll(':scope > line')].map(box).filter((b) => b.right - b.left > 200 && b.bottom - b.top < 1.5);
  const plot = {
    left: Math.min(...grid.map((b) => b.left)),
    right: Math.max(...grid.map((b) => b.right)),
    top: Math.min(...grid.map((b) => b.top)),
    bottom: Math.max(...grid.map((b) => b.bottom)),
  };
  const ticks = [...svg.querySelectorAll(':scope > text')]
    .filter((t) => /^\\d+(\\.\\d+)? s$/.test(t.textContent))
    .map((t) => ({ seconds: parseFloat(t.textContent), x: (box(t).left + box(t).right) / 2 }));
  const rule = svg.querySelector('line.moment');
  const label = svg.querySelector('text.moment-label');
  const strips = [...svg.querySelectorAll('rect.mark')];
  const legendBand = document.querySelector('#chart-fill .legend li.note-band svg > *');
  const legendMoment = document.querySelector('#chart-fill .legend li.note-moment svg > *');
  // What is painted at a point of the plot in the middle of the last strip's interval, just
  // above the axis (lines aside): the entries' area, and no drop shading.
  const last = box(strips.at(-1));
  const painted = document
    .elementsFromPoint((last.left + last.right) / 2, plot.bottom - 5)
    .filter((e) => e instanceof SVGGeometryElement && !(e instanceof SVGLineElement) && e.closest('#chart-fill'))
    .map((e) => (e.classList.contains('mark') ? 'mark' : e.getAttribute('fill-opacity') ? 'area' : e.tagName));
  return {
    chart: box(svg),
    plot,
    ticks,
    rule: { x: (box(rule).left + box(rule).right) / 2, stroke: style(rule).stroke, dash: style(rule).strokeDasharray },
    label: { ...box(label), text: label.textContent },
    strips: strips.map((r) => ({ ...box(r), fill: style(r).fill, opacity: style(r).fillOpacity })),
    legend: {
      band: { fill: style(legendBand).fill, opacity: style(legendBand).fillOpacity },
      moment: { stroke: style(legendMoment).stroke, dash: style(legendMoment).strokeDasharray },
    },
    paintedInDrops: painted,
    snippets: [...document.querySelectorAll('pre')].map((p) => ({ scrollWidth: p.scrollWidth, clientWidth: p.clientWidth })),
  };
})()`;

describe.skipIf(missing !== null)('the report page in headless Chromium', () => {
  it('renders the charts of a real recording, fetches nothing, and screenshots', async () => {
    const url = writePage('report.html', renderReport(runsOfFile(FIXTURE)));
    const page = await openPage(url, { width: 1280 });
    try {
      expect(page.requests).toEqual([url]);
      const charts: ChartFacts[] = await page.evaluate(CHART_FACTS);
      console.info(
        `Chromium: ${charts.length} charts: ${charts.map((c) => `${c.id} ${Math.round(c.width)}x${Math.round(c.height)} (${c.drawn} paths drawn, ${c.marks} drop marks)`).join(', ')}`,
      );
      expect(charts.map((c) => c.id)).toEqual([
        'chart-fill',
        'chart-rates',
        'chart-drops',
        'chart-timewait',
        'chart-states-0',
      ]);
      for (const c of charts) {
        expect(c.title.length, c.id).toBeGreaterThan(0);
        expect(c.desc.length, c.id).toBeGreaterThan(10);
        expect(c.width, c.id).toBeGreaterThan(450);
        expect(c.height, c.id).toBeGreaterThan(180);
        expect(c.drawn, c.id).toBeGreaterThan(0);
        expect(c.marks, c.id).toBe(1); // the one interval with drops
        expect(c.legend, c.id).toContain('intervals with drops');
        expect(
          c.ticks.some((t) => /^\d+(\.\d+)? s$/.test(t)),
          c.id,
        ).toBe(true);
      }
      const fill = charts[0]!;
      expect(fill.legend.slice(0, 2)).toEqual(['entries', 'nf_conntrack_max']);
      expect(fill.ticks).toEqual(expect.arrayContaining(['0', '60', '100%', 'entries', 'seconds since start']));
      expect(charts[1]!.legend.slice(0, 2)).toEqual(['inserts', 'deletes']);
      const text: string = await page.evaluate('document.body.innerText');
      expect(text).toContain('The table was full: 60 packets dropped');
      expect(text).toMatch(/PACKETS DROPPED\s+60/);
      const png = await page.screenshot();
      const size = pngSize(png);
      expect(size.width).toBe(1280);
      expect(size.height).toBeGreaterThan(1500);
      mkdirSync(BUILD, { recursive: true });
      writeFileSync(join(BUILD, 'report-browser.png'), png);
      console.info(`screenshot ${size.width}x${size.height}, ${png.length} bytes: build/report-browser.png`);
    } finally {
      await page.close();
    }
  });

  it.each([1400, 800])(
    'at %i px: the first drop marked where it was counted, never cut off; drop strips as in the legend; no scrolling snippet',
    async (width) => {
      for (const file of [LATE, FIXTURE]) {
        const [run] = runsOfFile(file);
        const firstDrop = run!.summary.firstDropSeconds!;
        const url = writePage(`marks-${width}.html`, renderReport([run!]));
        const page = await openPage(url, { width });
        try {
          const facts: MarkFacts = await page.evaluate(MARK_FACTS);
          // The axis's own scale, from its tick labels: where the first drop's time lies on it.
          const [t0, t1] = [facts.ticks[0]!, facts.ticks.at(-1)!];
          const expectedX = t0.x + ((t1.x - t0.x) * firstDrop) / (t1.seconds - t0.seconds);
          console.info(
            `${width} px, ${file.split('/').pop()}: first drop ${firstDrop} s at x ${facts.rule.x.toFixed(1)} (axis: ${expectedX.toFixed(1)}); ` +
              `label ${JSON.stringify(facts.label)} in chart ${JSON.stringify(facts.chart)}; ${facts.strips.length} strips; ` +
              `snippet ${facts.snippets.map((p) => `${p.scrollWidth}/${p.clientWidth}`).join(', ')}`,
          );
          expect(Math.abs(facts.rule.x - expectedX)).toBeLessThan(1.5);
          expect(facts.label.text).toBe(
            `first drop at +${firstDrop < 10 ? firstDrop.toFixed(1).replace(/\.0$/, '') : Math.round(firstDrop)} s`,
          );
          // Inside the chart and the plot's width, above the plot (nothing is drawn under it).
          expect(facts.label.left).toBeGreaterThanOrEqual(facts.plot.left - 0.5);
          expect(facts.label.right).toBeLessThanOrEqual(facts.plot.right + 0.5);
          expect(facts.label.bottom).toBeLessThanOrEqual(facts.plot.top);
          expect(facts.label.right - facts.label.left).toBeGreaterThan(20); // drawn, not empty
          // The rule and the legend's swatch for it: the same colour and dashes.
          expect(facts.rule.stroke).toBe(facts.legend.moment.stroke);
          expect(facts.rule.dash).toBe(facts.legend.moment.dash);
          // Strips: opaque, the legend's colour, above the plot; at a point of the plot inside the
          // drop interval only the entries' area is painted (no shading to blend with it).
          expect(facts.strips.length).toBeGreaterThan(0);
          for (const strip of facts.strips) {
            expect(strip.fill).toBe(facts.legend.band.fill);
            expect(strip.opacity).toBe('1');
            expect(strip.bottom).toBeLessThanOrEqual(facts.plot.top);
          }
          expect(facts.legend.band.opacity).toBe('1');
          expect(facts.paintedInDrops).toEqual(['area']);
          // The sysctl snippet wraps rather than scrolls.
          expect(facts.snippets.length).toBeGreaterThan(0);
          for (const p of facts.snippets) expect(p.scrollWidth).toBeLessThanOrEqual(p.clientWidth);
          if (file === LATE) {
            const png = await page.screenshot();
            expect(pngSize(png).width).toBe(width);
            writeFileSync(join(BUILD, `report-${width}.png`), png);
          }
        } finally {
          await page.close();
        }
      }
    },
  );

  it('overlays several runs (before/after) in one chart per measure', async () => {
    const runs = [...runsOfFile(DEMO), ...runsOfFile(FIXTURE)];
    const url = writePage('compare.html', renderReport(runs));
    const page = await openPage(url, { width: 1280 });
    try {
      expect(page.requests).toEqual([url]);
      const charts: ChartFacts[] = await page.evaluate(CHART_FACTS);
      expect(charts.map((c) => c.id)).toEqual([
        'chart-fill',
        'chart-inserts',
        'chart-deletes',
        'chart-drops',
        'chart-timewait',
        'chart-states-0',
        'chart-states-1',
      ]);
      for (const id of ['chart-inserts', 'chart-deletes', 'chart-drops', 'chart-timewait']) {
        const c = charts.find((x) => x.id === id)!;
        expect(c.series, id).toBe(2);
        expect(c.legend.slice(0, 2), id).toEqual(['before', 'table-full']);
      }
      // Their nf_conntrack_max differ (16,384 and 60): each run's fill in percent, and 100%.
      expect(charts[0]!.series).toBe(3);
      expect(charts[0]!.legend.slice(0, 3)).toEqual(['before', 'table-full', 'nf_conntrack_max (100%)']);
      expect(charts[0]!.ticks).toEqual(expect.arrayContaining(['0%', '50%', '100%', '% of nf_conntrack_max']));
      const png = await page.screenshot();
      writeFileSync(join(BUILD, 'report-compare.png'), png);
    } finally {
      await page.close();
    }
  });

  it("keeps a hostile recording's markup as text: no element from it, nothing fetched", async () => {
    let hits = 0;
    const server = createServer((req, res) => {
      hits++;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const target = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const page = renderReport(runsOf(parseRecording(hostileRecording(target), 'x'), '/tmp/<b>run</b>.ndjson'));
      const url = writePage('hostile.html', page);
      const tab = await openPage(url, { width: 1280 });
      try {
        await new Promise((r) => setTimeout(r, 300));
        expect(tab.requests).toEqual([url]);
        expect(await tab.evaluate(`document.querySelectorAll('script, img, iframe, marquee, b, i').length`)).toBe(0);
        expect(await tab.evaluate(`document.querySelectorAll('svg').length`)).toBe(
          await tab.evaluate(`document.querySelectorAll('svg.chart, .legend svg, svg.swatch').length`),
        );
        const text: string = await tab.evaluate('document.body.innerText');
        expect(text).toContain('<script>alert("host")</script>');
        expect(text).toContain(`</code><img src=${target}/img onerror=alert(1)>`);
        expect(text).toContain('/var/run/netns/"><svg onload=alert(1)>');
        expect(text).toContain(`<iframe src="${target}/frame"></iframe>`);
      } finally {
        await tab.close();
      }
      expect(hits).toBe(0);
    } finally {
      server.close();
    }
  });
});
