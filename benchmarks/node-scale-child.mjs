#!/usr/bin/env node
// The monitor side of benchmarks/node-scale.mjs, in its own process so that its CPU, memory
// and threads are its own: node node-scale-child.mjs ENGINE INTERVAL_MS
//   node           AllNamespacesMonitor: one reader thread for every namespace (this library)
//   per-namespace  the engine it replaced: a ConntrackMonitor (reader thread, two sockets,
//                  initial dump and a dump every 60 s) per namespace of listNamespaces(),
//                  found again every 5 s, as src/host/all-namespaces.ts did before
// Prints one line per namespace the first time a report has it ({"seen": NAME, "t": ms}) and
// when it has gone from the reports ({"gone": NAME, "t"}); on "report" on stdin, one JSON line
// with each named namespace's inserts since it was found and latest entries; exits on EOF.
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const lib = createRequire(import.meta.url)('../dist/index.js');
const [engine, intervalText] = process.argv.slice(2);
const intervalMs = Number(intervalText);
/** name -> { insert, entries, lost, counting } from the latest report */
let latest = new Map();
const seen = new Set();
const say = (o) => process.stdout.write(`${JSON.stringify({ ...o, t: Date.now() })}\n`);

function update(rows) {
  latest = new Map(rows.map((r) => [r.name, r]));
  for (const name of latest.keys())
    if (!seen.has(name)) {
      seen.add(name);
      say({ seen: name });
    }
  for (const name of seen)
    if (!latest.has(name)) {
      seen.delete(name);
      say({ gone: name });
    }
}

let stop;
if (engine === 'node') {
  const host = new lib.AllNamespacesMonitor({ intervalMs });
  host.on('error', (e) => console.error(`monitor: ${e.message}`));
  host.on('report', (r) =>
    update(
      r.namespaces
        .filter((n) => n.name)
        .map((n) => ({
          name: n.name,
          insert: n.totals.insert,
          entries: n.entries,
          lost: n.events?.lostTotal ?? null,
          counting: n.events?.counting ?? null,
        })),
    ),
  );
  await host.start();
  stop = () => host.stop();
} else if (engine === 'per-namespace') {
  const monitors = new Map(); // inode -> { ns, monitor, sample }
  const publish = () =>
    update(
      [...monitors.values()]
        .filter((m) => m.ns.name && m.sample)
        .map((m) => ({
          name: m.ns.name,
          insert: m.sample.totals.insert,
          entries: m.sample.entries,
          lost: m.sample.events?.lostTotal ?? null,
          counting: 'per-namespace',
        })),
    );
  const discover = async () => {
    const found = await lib.listNamespaces();
    const inodes = new Set(found.map((n) => n.inode));
    for (const [inode, m] of monitors)
      if (!inodes.has(inode)) {
        monitors.delete(inode);
        await m.monitor.stop();
      }
    await Promise.all(
      found
        .filter((ns) => !monitors.has(ns.inode))
        .map(async (ns) => {
          const entry = { ns, monitor: new lib.ConntrackMonitor({ netns: ns.path, intervalMs }), sample: null };
          entry.monitor.on('sample', (s) => (entry.sample = s));
          entry.monitor.on('error', (e) => console.error(`monitor ${ns.name}: ${e.message}`));
          monitors.set(ns.inode, entry);
          await entry.monitor.start().catch((e) => console.error(`monitor ${ns.name}: ${e.message}`));
        }),
    );
  };
  await discover();
  const timers = [setInterval(() => void discover(), 5000), setInterval(publish, intervalMs)];
  stop = async () => {
    timers.forEach(clearInterval);
    await Promise.all([...monitors.values()].map((m) => m.monitor.stop()));
  };
} else {
  console.error('usage: node-scale-child.mjs node|per-namespace INTERVAL_MS');
  process.exit(2);
}
say({ ready: true });

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line === 'report') say({ namespaces: Object.fromEntries(latest) });
  })
  .on('close', async () => {
    await stop();
    process.exit(0);
  });
