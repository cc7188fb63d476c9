/**
 * One verdict per class of what fills a table, against the kernel: three namespaces whose
 * tables are full (nf_conntrack_max lowered to 100, under the kernel lock) of TIME_WAIT, of
 * unreplied UDP, and of assured established connections. For each, `top --json` counts the
 * classes as conntrack -L lists them, and top, check, advise and the monitor's snapshot under
 * pressure give the one verdict (src/verdict.ts) with its knob. Then the kernel shows the
 * model is its own: twenty new flows into each full table are dropped, after which the
 * garbage collector reclaims TIME_WAIT and unreplied UDP to under 95% of the max, and never an
 * established connection.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConntrackMonitor, evictableVerdict, type TopReport } from '../../dist/index.js';
import { runCli } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { groupListing, type ListingGroups } from '../helpers/listing';
import { withConntrackMax } from '../helpers/kernel-lock.mjs';
import type { TestNamespace } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const FLOWS = join(__dirname, '..', 'helpers', 'flows.mjs');
const MAX = 100;
const TIME_WAIT_S = 600; // nothing expires while the test runs
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Flow = { kind: string; src: string; dst: string; port: number; count: number };

interface Case {
  label: string;
  flows: Flow[];
  verdict: { mostly: string; state: string; knob: string; raiseMax: boolean };
  /** The sysctls advise recommends for a full table of it, observed without drops. */
  advice: string[];
  /** Whether the garbage collector reclaims it once an insert failed. */
  reclaimed: boolean;
}

const CASES: Case[] = [
  {
    label: 'timewait',
    flows: [{ kind: 'tcp-closed', src: '10.17.0.3', dst: '10.17.0.101', port: 80, count: MAX }],
    verdict: {
      mostly: 'tcp-closing',
      state: 'tcp/TIME_WAIT',
      knob: 'nf_conntrack_tcp_timeout_time_wait',
      raiseMax: false,
    },
    // The shorter timeout frees 95 of the 100: no larger max.
    advice: ['net.netfilter.nf_conntrack_tcp_timeout_time_wait'],
    reclaimed: true,
  },
  {
    label: 'unreplied',
    flows: [
      { kind: 'udp-noreply', src: '10.17.0.4', dst: '10.17.0.101', port: 53, count: 70 },
      { kind: 'udp-noreply', src: '10.17.0.5', dst: '10.17.0.101', port: 123, count: 30 },
    ],
    verdict: { mostly: 'unassured', state: 'udp/UNREPLIED', knob: 'nf_conntrack_udp_timeout', raiseMax: false },
    advice: [], // a larger max only makes room for more of them
    reclaimed: true,
  },
  {
    label: 'assured',
    flows: [{ kind: 'tcp-open', src: '10.17.0.1', dst: '10.17.0.100', port: 443, count: MAX }],
    verdict: { mostly: 'assured', state: 'tcp/ESTABLISHED', knob: 'nf_conntrack_max', raiseMax: true },
    advice: ['net.netfilter.nf_conntrack_max'],
    reclaimed: false,
  },
];

async function kernelGroups(ns: TestNamespace): Promise<ListingGroups> {
  return groupListing(await ns.exec('conntrack', ['-L', '-f', 'ipv4']));
}

/** A namespace holding the case's flows until the test ends. */
async function filled(c: Case): Promise<TestNamespace> {
  const ns = await namespace(c.label);
  for (const a of ['10.17.0.1', '10.17.0.3', '10.17.0.4', '10.17.0.5', '10.17.0.100', '10.17.0.101'])
    await ns.exec('ip', ['addr', 'add', `${a}/32`, 'dev', 'lo']);
  await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 600);
  await ns.sysctl('net.netfilter.nf_conntrack_tcp_timeout_time_wait', TIME_WAIT_S);
  const { child } = await ns.start(process.execPath, [FLOWS, JSON.stringify(c.flows)]);
  defer(
    () =>
      new Promise<void>((resolve) => {
        child.on('exit', () => resolve());
        child.stdin!.end();
      }),
  );
  return ns;
}

/** The monitor's snapshot under pressure ('top'), as the live view and serve --top get it. */
async function snapshotUnderPressure(ns: TestNamespace): Promise<TopReport> {
  const monitor = new ConntrackMonitor({ netns: ns.name, intervalMs: 200, snapshotOnPressure: { limit: 5 } });
  const tops: TopReport[] = [];
  monitor.on('top', (r) => tops.push(r));
  await monitor.start();
  try {
    for (let i = 0; i < 100 && tops.length === 0; i++) await sleep(50);
  } finally {
    await monitor.stop();
  }
  expect(tops.length).toBeGreaterThan(0);
  return tops[0]!;
}

describe.skipIf(!canRunIntegration)('one verdict per class, against conntrack -L and the kernel', () => {
  it('tables full of TIME_WAIT, unreplied UDP and assured connections: each class counted and named the same everywhere; the kernel reclaims the first two only', async () => {
    const namespaces = await Promise.all(CASES.map(filled));
    await withConntrackMax(MAX, async () => {
      await Promise.all(
        CASES.map(async (c, i) => {
          const ns = namespaces[i]!;
          const kernel = await kernelGroups(ns);
          expect(kernel.entries, c.label).toBe(MAX);

          // top --json: the classes, as conntrack -L lists them.
          const top = JSON.parse(
            (await runCli(['top', '--netns', ns.name, '--json', '--limit', '5'])).stdout,
          ) as TopReport;
          const classes = (r: { entries: number; evictable: number; unassured: number; tcpClosing: number }) => ({
            entries: r.entries,
            evictable: r.evictable,
            unassured: r.unassured,
            tcpClosing: r.tcpClosing,
          });
          expect(classes(top), c.label).toEqual(classes(kernel));
          expect(top.max).toBe(MAX);
          const verdict = evictableVerdict(top);
          expect(verdict, c.label).toMatchObject(c.verdict);
          const text = await runCli(['top', '--netns', ns.name]);
          expect(text.stdout.replace(/\n {2}/g, ' ')).toContain(
            `${verdict.text.charAt(0).toUpperCase()}${verdict.text.slice(1)}.`,
          );

          // check: CRITICAL at 100%, and the same verdict on its status line.
          const check = await runCli(['check', '--netns', ns.name, '--observe', '0.5']);
          expect(check.code, c.label).toBe(2);
          expect(check.stdout, c.label).toContain(`: ${verdict.summary} |`);
          expect(check.stdout.trim()).toMatch(
            new RegExp(
              ` evictable=${kernel.evictable};;;0;${MAX} unassured=${kernel.unassured};;;0;${MAX} tcp_closing=${kernel.tcpClosing};;;0;${MAX}$`,
            ),
          );

          // advise: the verdict decides the knob; never a larger max beside "only makes room".
          const advise = await runCli(['advise', '--netns', ns.name, '--observe', '1', '--interval', '250', '--json']);
          expect(advise.code, c.label).toBe(0);
          const a = JSON.parse(advise.stdout);
          expect(a.verdict, c.label).toMatchObject(c.verdict);
          expect(
            a.recommendations.map((r: { sysctl: string }) => r.sysctl),
            c.label,
          ).toEqual(c.advice);
          expect(a.notes.join(' '), c.label).toContain(`What fills the table: ${a.verdict.text}.`);
          if (c.verdict.mostly === 'unassured') expect(a.verdict.text).toContain('(top source 10.17.0.4: 70 entries)');

          // The monitor's snapshot under pressure: the same counts.
          const pressured = await snapshotUnderPressure(ns);
          expect(classes(pressured), c.label).toEqual(classes(kernel));
          expect(evictableVerdict(pressured), c.label).toMatchObject(c.verdict);
          console.info(
            `${c.label}: conntrack -L ${JSON.stringify(classes(kernel))}; check: ${check.stdout.trim()}\n` +
              `  advise: ${a.recommendations.map((r: { sysctl: string; current: number; recommended: number }) => `${r.sysctl} ${r.current} -> ${r.recommended}`).join('; ') || 'no sysctl'}`,
          );
        }),
      );

      // The kernel's own model: new flows into a full table are dropped (nothing near them in
      // the hash table to early-drop at this max), then the garbage collector evicts TIME_WAIT
      // and unassured entries until the table is under 95% of the max; never an established one.
      const before = await Promise.all(namespaces.map((ns) => ns.kernelStats()));
      const sent = await Promise.all(namespaces.map((ns) => ns.traffic('udp', 20)));
      const started = Date.now();
      const counts = async () => Promise.all(namespaces.map((ns) => ns.count()));
      let now = await counts();
      while (Date.now() - started < 90_000 && !CASES.every((c, i) => !c.reclaimed || now[i]! < MAX * 0.95)) {
        await sleep(1000);
        now = await counts();
      }
      const after = await Promise.all(namespaces.map((ns) => ns.kernelStats()));
      const listed = await Promise.all(namespaces.map(kernelGroups));
      console.info(
        `after 20 new flows each: ${CASES.map((c, i) => `${c.label} ${sent[i]!.failed} failed sends, drop +${after[i]!.drop! - before[i]!.drop!}, early_drop +${after[i]!.early_drop! - before[i]!.early_drop!}, ${now[i]} entries ${JSON.stringify(listed[i]!.byState)}`).join('; ')} ` +
          `(${((Date.now() - started) / 1000).toFixed(0)} s)`,
      );
      CASES.forEach((c, i) => {
        // The kernel's counter is the truth of the failed sends: every one a drop.
        expect(sent[i]!.failed, c.label).toBeGreaterThan(0);
        expect(after[i]!.drop! - before[i]!.drop!, c.label).toBe(sent[i]!.failed);
        if (c.reclaimed) expect(now[i], c.label).toBeLessThan(MAX * 0.95);
        else expect(listed[i]!.byState, c.label).toEqual({ 'tcp/ESTABLISHED': MAX });
      });
      // What the collector took was the reclaimable class itself (nothing of it expires for
      // 10 minutes): fewer TIME_WAIT entries, fewer unreplied flows from the two sources.
      expect(listed[0]!.byState['tcp/TIME_WAIT']).toBeLessThan(MAX);
      expect((listed[1]!.bySource['10.17.0.4'] ?? 0) + (listed[1]!.bySource['10.17.0.5'] ?? 0)).toBeLessThan(MAX);
    });
  }, 240_000);
});
