/**
 * The report page as markup: every string from a recording is escaped (hostile header,
 * command, namespace, notices, file name), only the page's own elements and no event-handler
 * attributes exist, nothing is fetched, and the charts carry the recording's data: one chart
 * per measure, the runs overlaid. test/report-browser.test.ts renders it in Chromium.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRecording, renderReport, runsOf } from '../dist/index.js';
import { hostileRecording, HOSTILE } from './helpers/hostile-recording';

const FIXTURE = join(__dirname, 'fixtures', 'recordings', 'table-full.ndjson');
const fixtureRuns = () => runsOf(parseRecording(readFileSync(FIXTURE, 'utf8'), FIXTURE), FIXTURE);

/** Every element the page may contain; anything else came from the input. */
const ELEMENTS = new Set(
  `html head meta title style body main header p h1 h2 h3 h4 code ul ol li strong span section div figure figcaption
   svg line rect path text g defs clippath desc table thead tbody tr th td abbr pre footer br`.split(/\s+/),
);
const elementsOf = (page: string) => new Set([...page.matchAll(/<([a-zA-Z][\w-]*)/g)].map((m) => m[1]!.toLowerCase()));

describe('renderReport', () => {
  it('escapes every string from the recording: the file is hostile input', () => {
    const page = renderReport(runsOf(parseRecording(hostileRecording(), 'x'), HOSTILE.file));
    for (const el of elementsOf(page)) expect(ELEMENTS, `<${el}> in the page`).toContain(el);
    // No event-handler attribute or script URL in any tag (escaped text has no '<' to open one).
    for (const [tag] of page.matchAll(/<[a-zA-Z][^>]*>/g)) {
      expect(tag).not.toMatch(/\son[a-z]+\s*=/i);
      expect(tag).not.toMatch(/javascript:/i);
    }
    expect(page).not.toContain('<script');
    expect(page).not.toContain('<img');
    // The hostile text is there, as text.
    expect(page).toContain('&lt;script&gt;alert(&quot;host&quot;)&lt;/script&gt;');
    expect(page).toContain('&lt;/code&gt;&lt;img src=');
    expect(page).toContain('&quot;&gt;&lt;svg onload=alert(1)&gt;');
    expect(page).toContain('&lt;iframe src=&quot;http://127.0.0.1');
  });

  it('is self-contained: a CSP that forbids every fetch and script, no URLs to load', () => {
    const page = renderReport(fixtureRuns());
    expect(page).toContain(`content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"`);
    expect(page).not.toMatch(/<(link|script|img|iframe|object|embed)\b/);
    expect(page).not.toMatch(/\b(src|href)=/);
    expect(page).not.toMatch(/url\((?!#)/); // only in-document references (the clip paths)
  });

  it('one run: fill with nf_conntrack_max, rates, drops, TIME_WAIT and states, drops marked, summary and advice', () => {
    const runs = fixtureRuns();
    const page = renderReport(runs);
    const ids = [...page.matchAll(/<figure class="panel[^"]*" id="([^"]+)"/g)].map((m) => m[1]);
    expect(ids).toEqual(['chart-fill', 'chart-rates', 'chart-drops', 'chart-timewait', 'chart-states-0']);
    expect(page.match(/<svg class="chart"/g)).toHaveLength(5);
    expect(page.match(/role="img" aria-labelledby="chart-fill-title chart-fill-desc"/g)).toHaveLength(1);
    // The drop: one band per chart, titled with the kernel's count.
    const kernel = JSON.parse(
      readFileSync(join(__dirname, 'fixtures', 'recordings', 'table-full.kernel.json'), 'utf8'),
    );
    const bands = [...page.matchAll(/<rect class="mark"[^>]*><title>([^<]+)<\/title>/g)].map((m) => m[1]);
    expect(bands).toHaveLength(5);
    expect(bands[0]).toMatch(new RegExp(`^${kernel.drop} packets dropped between \\+[\\d.]+ s and \\+[\\d.]+ s$`));
    expect(page).toContain(`The table was full: ${kernel.drop} packets dropped`);
    expect(page).toContain(`nf_conntrack_max = ${kernel.max}`);
    expect(page).toContain('<code>net.netfilter.nf_conntrack_max</code>');
    expect(page).toContain(`<th scope="row">Drops (table full)</th><td class="num">${kernel.drop}</td>`);
  });

  it('several runs: one chart per measure with the runs overlaid, one summary column each', () => {
    const runs = [...fixtureRuns(), ...runsOf(parseRecording(readFileSync(FIXTURE, 'utf8')), '/tmp/after.ndjson')];
    const page = renderReport(runs);
    const ids = [...page.matchAll(/<figure class="panel[^"]*" id="([^"]+)"/g)].map((m) => m[1]);
    expect(ids).toEqual([
      'chart-fill',
      'chart-inserts',
      'chart-deletes',
      'chart-drops',
      'chart-timewait',
      'chart-states-0',
      'chart-states-1',
    ]);
    const inserts = /<figure class="panel" id="chart-inserts">([\s\S]*?)<\/figure>/.exec(page)![1]!;
    expect(inserts.match(/<path class="series"/g)).toHaveLength(2);
    expect(inserts).toContain('<title>table-full</title>');
    expect(inserts).toContain('<title>after</title>');
    expect(page).toContain('2 runs compared');
    expect(page.match(/<th scope="col" class="num">/g)).toHaveLength(2);
  });

  it('a recording of days (250,000 samples, more than a call takes as arguments) stays a small page', () => {
    const base = parseRecording(readFileSync(FIXTURE, 'utf8')).samples;
    const t0 = Date.parse(base[0]!.time);
    const samples = Array.from({ length: 250_000 }, (_, i) => ({
      ...base[i % base.length]!,
      time: new Date(t0 + i * 1000).toISOString(),
      intervalMs: 1000,
      final: false,
    }));
    const runs = [{ label: 'days', samples }];
    const page = renderReport(runs);
    const drops = samples.reduce((sum, x) => sum + x.counts.drop!, 0);
    expect(page).toContain(`The table was full: ${drops.toLocaleString('en-US')} packets dropped`);
    expect(page.length).toBeLessThan(1_000_000);
  }, 60_000);

  it('what a recording cannot know shows as such, not as an empty chart', () => {
    const proc = parseRecording(readFileSync(FIXTURE, 'utf8'));
    for (const s of proc.samples) {
      s.source = 'proc';
      s.counts.insert = s.rates.insert = null;
      s.counts.delete = s.rates.delete = null;
      s.tcpStates = s.protocols = null;
      s.timeWait.entries = s.timeWait.share = null;
      s.events = null;
      s.unavailable = {
        'counts.insert': 'needs ctnetlink',
        'counts.delete': 'needs ctnetlink',
        tcpStates: 'needs a dump',
        'timeWait.entries': 'needs a dump',
      };
    }
    const page = renderReport(runsOf(proc, 'proc.ndjson'));
    expect(page).toMatch(
      /id="chart-rates"><figcaption><h3>New and destroyed entries<\/h3><\/figcaption><p class="unknown">Unknown for this recording: needs ctnetlink<\/p>/,
    );
    expect(page).toMatch(/id="chart-timewait">[\s\S]*?Unknown for this recording: needs a dump/);
    expect(page).toContain('<abbr title="needs ctnetlink">n/a</abbr>');
  });
});
