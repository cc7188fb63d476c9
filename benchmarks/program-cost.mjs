#!/usr/bin/env node
// What the event programs cost per message, as the kernel itself times them: the monitor's
// ct_monitor and the count-only ct_count (benchmarks/native/count_only_reader --all, joined to
// the same groups), attached in one namespace under one TCP churn, so that each runs on the
// same messages. The kernel's run_cnt and run_time_ns of each program (bpftool: apt-get install
// bpftool; a reader's program is the one that appears when it starts), with
// kernel.bpf_stats_enabled set for the run (under /tmp/ctmon-kernel.lock, restored after; the
// timing itself adds some tens of ns a run).
//
//   node benchmarks/program-cost.mjs [--rate 10000] [--seconds 5] [--rounds 3] [--before DIR]
//
// --before DIR adds the monitor as built in another checkout (a worktree of an older commit),
// attached beside the others: before and after on the same messages.
// Root. Writes benchmarks/results/program-cost-<date>.{json,md}.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { withGlobalSetting } from '../test/helpers/kernel-lock.mjs';
import {
  benchNamespace,
  buildTools,
  machine as describeMachine,
  sleep,
  startCountOnlyReader,
  startMonitorChild,
} from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    before: { type: 'string' },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);

/** The kernel's run_cnt and run_time_ns of every loaded program, by id (bpftool). */
function programStats() {
  const out = {};
  for (const p of JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })))
    out[p.id] = { name: p.name, runs: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0 };
  return out;
}

/** The id of the program named `name` that `start()` loads (none of that name before). */
async function loadedBy(name, start) {
  const before = programStats();
  const started = await start();
  for (let i = 0; i < 100; i++) {
    const now = programStats();
    const id = Object.keys(now).find((k) => !(k in before) && now[k].name === name);
    if (id) return { started, id };
    await sleep(50);
  }
  throw new Error(`no new ${name} program appeared`);
}

// Each reader and the program it runs.
const READERS = [
  ['monitor', 'ct_monitor'],
  ...(values.before ? [[`monitor@${values.before}`, 'ct_monitor']] : []),
  ['count-only-all', 'ct_count'],
];

async function round(tools, n) {
  const bench = benchNamespace(`ctmon-bench-prog-${process.pid}-${n}`);
  try {
    const ids = {};
    const monitors = [];
    let counter = null;
    try {
      for (const [reader, prog] of READERS) {
        const { started, id } = await loadedBy(prog, async () => {
          if (reader === 'count-only-all') return startCountOnlyReader(bench.path, { all: true });
          const checkout = reader.startsWith('monitor@') ? reader.slice('monitor@'.length) : null;
          return startMonitorChild(bench.path, { loopDelay: false, checkout });
        });
        if (reader === 'count-only-all') counter = started;
        else monitors.push(started);
        ids[reader] = id;
      }
      while (bench.listeners() < READERS.length) await sleep(20);
      await sleep(1000);
      const stats = () => {
        const all = programStats();
        return Object.fromEntries(READERS.map(([r]) => [r, all[ids[r]]]));
      };
      const before = stats();
      const gen = JSON.parse(bench.inNs(tools.loadgen, ['tcp', String(RATE), String(SECONDS), '1']));
      await sleep(3000); // the DESTROYs of the 1 s TIME_WAITs
      const after = stats();
      const programs = {};
      for (const [reader] of READERS) {
        const runs = after[reader].runs - before[reader].runs;
        programs[reader] = { runs, nsPerRun: runs ? (after[reader].ns - before[reader].ns) / runs : null };
      }
      return { round: n, connections: gen.sent, programs };
    } finally {
      await counter?.stop();
      for (const m of monitors) await m.stop();
    }
  } finally {
    bench.destroy();
  }
}

async function main() {
  const tools = buildTools();
  const rounds = await withGlobalSetting('/proc/sys/kernel/bpf_stats_enabled', '1', async () => {
    const out = [];
    for (let n = 0; n < ROUNDS; n++) {
      out.push(await round(tools, n));
      console.error(JSON.stringify(out.at(-1)));
    }
    return out;
  });
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const summary = Object.fromEntries(
    READERS.map(([reader, prog]) => [
      reader,
      {
        program: prog,
        nsPerRun: Math.round(median(rounds.map((r) => r.programs[reader].nsPerRun))),
        nsEach: rounds.map((r) => Math.round(r.programs[reader].nsPerRun)),
        runsPerConnection: median(rounds.map((r) => r.programs[reader].runs / r.connections)),
      },
    ]),
  );
  const date = new Date().toISOString().slice(0, 10);
  const command = `node benchmarks/program-cost.mjs --rate ${RATE} --seconds ${SECONDS} --rounds ${ROUNDS}${values.before ? ` --before ${values.before}` : ''}`;
  const base = join(here, 'results', `program-cost-${date}`);
  writeFileSync(`${base}.json`, JSON.stringify({ command, machine: describeMachine(), rounds, summary }, null, 2));
  const md = [
    `# Event program cost per message (${date})`,
    '',
    `TCP churn at ${RATE} connections/s for ${SECONDS} s on loopback in a private namespace (1 s TIME_WAIT), every reader's program attached to a socket of that namespace joined to NEW, UPDATE and DESTROY, so each runs on every message. Time per run as the kernel measures it (kernel.bpf_stats_enabled=1 for the run), median of ${ROUNDS} rounds (each round in brackets). Machine: ${describeMachine().kernel}, ${describeMachine().cpus}.`,
    '',
    '| reader | program | ns per message | messages per connection |',
    '|---|---|---|---|',
    ...Object.entries(summary).map(
      ([reader, s]) =>
        `| ${reader} | ${s.program} | ${s.nsPerRun} (${s.nsEach.join(', ')}) | ${s.runsPerConnection.toFixed(2)} |`,
    ),
    '',
    `Command: \`${command}\``,
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  console.log(md);
}

await main();
