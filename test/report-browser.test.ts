/**
 * The report page in a real browser: headless Chromium (Debian's /usr/bin/chromium), driven
 * over the DevTools protocol (scripts/chromium-page.mjs). It opens the page made from a real
 * recording, finds the charts laid out with their data, checks that the page made no request
 * but its own, and takes screenshots (build/report-*.png). A hostile recording's markup stays
 * text: no element from it exists, and nothing reaches the server its URLs point to.
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
