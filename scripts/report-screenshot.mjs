#!/usr/bin/env node
// Screenshot of a report page in headless Chromium, as in the README (docs/report.png):
//   node scripts/report-screenshot.mjs PAGE.html OUT.png [--width 1280] [--until SELECTOR] [--scale 1]
// --until: down to the bottom of that element (e.g. '.grid', the charts), else the whole page.
// Fails if the page made any request besides itself (the report must be self-contained).
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { openPage } from './chromium-page.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    width: { type: 'string', default: '1280' },
    until: { type: 'string' },
    scale: { type: 'string', default: '1' },
  },
});
if (positionals.length !== 2) {
  console.error('usage: report-screenshot.mjs PAGE.html OUT.png [--width PX] [--until SELECTOR] [--scale N]');
  process.exit(2);
}
const [page, out] = positionals;
const url = pathToFileURL(resolve(page)).href;
const tab = await openPage(url, { width: Number(values.width), scale: Number(values.scale) });
try {
  const others = tab.requests.filter((r) => r !== url);
  if (others.length) throw new Error(`the page fetched ${others.join(', ')}`);
  const bottom = values.until
    ? await tab.evaluate(
        `Math.ceil(document.querySelector(${JSON.stringify(values.until)}).getBoundingClientRect().bottom + 20)`,
      )
    : Infinity;
  writeFileSync(out, await tab.screenshot({ maxHeight: bottom }));
  console.log(`wrote ${out}`);
} finally {
  await tab.close();
}
