/**
 * deploy/prometheus/alerts.yml in a real Prometheus, against a served series: a table that
 * grows, is full for a while with its fill dipping to 71-72% for two scrapes at a time (as
 * batches of UDP flows expire), then drains. ConntrackTableFull must fire through the dips and
 * ConntrackTableFullSoon must not even go pending while the table is full; the instant rules
 * they replace (fill > 0.9, forecast < 1800) run beside them and show what went wrong.
 *
 * Prometheus scrapes every second and evaluates every second, so the shipped rules run with
 * every duration divided by 12 (2m windows take 10 s, `for: 1m` 5 s, `for: 5m` 25 s): the same
 * expressions at a scrape-to-window ratio like 15 s scrapes against 2 minutes. promtool's unit
 * tests (deploy/prometheus/alerts.test.yml) run them at their real durations. Unprivileged.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prometheusAvailable, startPrometheus, type RunningPrometheus } from './helpers/prometheus';

const RULES = join(__dirname, '..', 'deploy', 'prometheus', 'alerts.yml');
const SCALE = 12;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The shipped rules with every duration (`for: 5m`, `[2m]`) divided by SCALE. */
function scaledRules(): string {
  const seconds = (m: string) => `${(Number(m) * 60) / SCALE}s`;
  return readFileSync(RULES, 'utf8')
    .replace(/\bfor: (\d+)m\b/g, (_, m: string) => `for: ${seconds(m)}`)
    .replace(/\[(\d+)m\]/g, (_, m: string) => `[${seconds(m)}]`);
}

/** The rules before the fix, scaled alike: an instant fill and an instant forecast. */
const INSTANT_RULES = `groups:
  - name: instant
    rules:
      - alert: InstantTableFull
        expr: nf_conntrack_entries / nf_conntrack_entries_limit > 0.9
        for: ${60 / SCALE}s
      - alert: InstantTableFullSoon
        expr: nf_conntrack_time_to_full_seconds < 1800
        for: ${300 / SCALE}s
`;

/** What the table looks like `t` seconds into the scenario. */
function tableAt(t: number): { phase: string; entries: number; timeToFull: number | null } {
  if (t < 8) return { phase: 'growing', entries: Math.round(500 + 20 * t), timeToFull: 600 };
  const dips: [number, number, number][] = [
    [11, 13, 710],
    [16, 18, 720],
  ];
  if (t < 21) {
    const dip = dips.find(([from, to]) => t >= from && t < to);
    return dip ? { phase: 'dip', entries: dip[2], timeToFull: 20 } : { phase: 'full', entries: 1000, timeToFull: 0 };
  }
  return { phase: 'drained', entries: 500, timeToFull: null };
}

let prometheus: RunningPrometheus | null = null;
const server = createServer();
afterAll(() => {
  prometheus?.stop();
  server.close();
});

describe.skipIf(!prometheusAvailable)('the alert rules in a real Prometheus', () => {
  it('a table full with dips: ConntrackTableFull fires through them, ConntrackTableFullSoon is never pending while full', async () => {
    let started: number | null = null;
    const elapsed = () => (started === null ? 0 : (performance.now() - started) / 1000);
    server.on('request', (req, res) => {
      const table = tableAt(elapsed());
      const lines = [
        '# TYPE nf_conntrack_entries gauge',
        `nf_conntrack_entries{netns="red"} ${table.entries}`,
        '# TYPE nf_conntrack_entries_limit gauge',
        'nf_conntrack_entries_limit{netns="red"} 1000',
      ];
      if (table.timeToFull !== null)
        lines.push(
          '# TYPE nf_conntrack_time_to_full_seconds gauge',
          `nf_conntrack_time_to_full_seconds{netns="red"} ${table.timeToFull}`,
        );
      res.setHeader('content-type', 'text/plain; version=0.0.4');
      res.end(`${lines.join('\n')}\n`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    prometheus = await startPrometheus((server.address() as AddressInfo).port, [scaledRules(), INSTANT_RULES]);
    // The scenario starts once Prometheus has scraped the target (its first scrape can take seconds).
    for (let i = 0; !(await prometheus.query('up{job="serve"}')); i++) {
      if (i > 100) throw new Error('Prometheus never scraped the served series');
      await sleep(200);
    }
    started = performance.now();

    type Poll = { t: number; phase: string; states: Record<string, string> };
    const polls: Poll[] = [];
    while (elapsed() < 34) {
      const t = elapsed();
      const states: Record<string, string> = {};
      const alerts = (await prometheus.alerts()).filter((a) => a.labels.netns === 'red');
      for (const a of alerts.sort((x, y) => x.labels.alertname!.localeCompare(y.labels.alertname!)))
        states[a.labels.alertname!] = a.state;
      polls.push({ t, phase: tableAt(t).phase, states });
      await sleep(250);
    }
    // One line per change, for the log.
    const changes = polls.filter(
      (p, i) =>
        i === 0 || JSON.stringify(p.states) !== JSON.stringify(polls[i - 1]!.states) || p.phase !== polls[i - 1]!.phase,
    );
    console.info(
      `alert states (served table: growing 0-8 s, full 8-21 s with dips to 71% at 11-13 s and 72% at 16-18 s, drained after):\n` +
        changes.map((p) => `  ${p.t.toFixed(1)} s ${p.phase}: ${JSON.stringify(p.states)}`).join('\n'),
    );
    const state = (name: string) => (p: Poll) => p.states[name];
    const during = (from: number, to: number) => polls.filter((p) => p.t >= from && p.t < to);

    // ConntrackTableFull fires while the table is full, at a dip too, and stays firing to the end
    // of the full phase; the instant rule restarts at each dip and never fires.
    const firing = polls.filter((p) => state('ConntrackTableFull')(p) === 'firing');
    expect(firing.length).toBeGreaterThan(0);
    expect(firing[0]!.t).toBeLessThan(18);
    expect(firing.some((p) => p.phase === 'dip')).toBe(true);
    expect(during(firing[0]!.t, 21).every((p) => state('ConntrackTableFull')(p) === 'firing')).toBe(true);
    expect(polls.some((p) => state('InstantTableFull')(p) === 'firing')).toBe(false);
    expect(polls.some((p) => state('InstantTableFull')(p) === 'pending')).toBe(true);

    // ConntrackTableFullSoon: pending while the table grows, never once it is full (2 s for
    // the first scrape and evaluation of the full table), nor after; the instant forecast rule
    // was pending all through the full table.
    expect(during(2, 8).some((p) => state('ConntrackTableFullSoon')(p) === 'pending')).toBe(true);
    expect(during(10, 34).filter((p) => state('ConntrackTableFullSoon')(p) !== undefined)).toEqual([]);
    expect(during(10, 21).every((p) => state('InstantTableFullSoon')(p) === 'pending')).toBe(true);
  }, 90_000);
});
