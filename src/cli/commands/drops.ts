/**
 * `conntrack-monitor drops`: which namespaces and flows a full conntrack table is dropping,
 * host-wide, from the eBPF probe. One block (or, with --json, one JSON line) per interval, and
 * a final one on exit.
 */
import { MAX_TIMER_S, number, parseFlags, seconds, withFlags } from '../args.js';
import { awaitShutdown, forcedExit, stopUnlessForced } from '../monitor.js';
import { DropMonitor, type DropSample } from '../../host/drop-monitor.js';
import { printable } from '../../errors.js';

export const usage = `Usage: conntrack-monitor drops [--json] [--interval MS] [--duration S] [--top N]

Attribute conntrack table-full drops ("nf_conntrack: table full, dropping packet") to the
network namespaces and flows they hit, on the whole host, with an eBPF program on the
skb:kfree_skb tracepoint. Drops by firewall rules are not counted. A namespace that is
deleted leaves the output; one that gets its inode (the kernel reuses them at once) counts
only its own drops.

Options:
  --json                 one JSON line per interval:
                         { time, intervalMs, final, namespaces: [{ inode, name, pid, drops,
                         totalDrops }], flows: [{ netnsInode, protocol, src, dst, sport,
                         dport, count }] }
  --interval MS          interval length in milliseconds (default 1000)
  --duration S           stop after S seconds (default: run until SIGINT/SIGTERM)
  --top N                flows listed per interval (default 10)
  -h, --help             show this help

Needs root (CAP_BPF and CAP_PERFMON, and CAP_SYSLOG for /proc/kallsyms addresses) and
kernel BTF (/sys/kernel/btf/vmlinux). Exit status: 0 after a clean stop, 1 if the probe cannot run (the reason
is printed), 2 for bad usage.`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, {
    json: { type: 'boolean' },
    interval: { type: 'string' },
    duration: { type: 'string' },
    top: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const durationS = values.duration === undefined ? 0 : seconds('--duration', values.duration, 0, 0.001, MAX_TIMER_S);
  const monitor = withFlags(
    () =>
      new DropMonitor({
        intervalMs: values.interval === undefined ? undefined : number('--interval', values.interval),
        topFlows: values.top === undefined ? undefined : number('--top', values.top),
      }),
  );
  const json = values.json === true;
  monitor.on('sample', (s) => process.stdout.write(`${json ? JSON.stringify(s) : formatDrops(s)}\n`));
  monitor.on('error', (e) => process.stderr.write(`conntrack-monitor drops: ${printable(e.message)}\n`));
  try {
    await monitor.start(); // loads the program once; available() would load it a first time
  } catch (err) {
    process.stderr.write(`conntrack-monitor drops: cannot run: ${printable((err as Error).message)}\n`);
    return 1;
  }
  const shutdown = awaitShutdown(durationS > 0 ? durationS * 1000 : undefined);
  await shutdown.requested;
  return (await stopUnlessForced(shutdown, () => monitor.stop())) ? 0 : forcedExit();
}

function formatDrops(s: DropSample): string {
  const total = s.namespaces.reduce((t, n) => t + n.drops, 0);
  const lines = [
    `${s.time.slice(11, 19)}  table-full drops: ${total} in ${Math.round(s.intervalMs)} ms${s.final ? ' (final)' : ''}`,
  ];
  for (const n of s.namespaces) {
    const who = n.name !== null ? printable(n.name) : n.pid === null ? '-' : `pid ${n.pid}`;
    lines.push(`  netns ${n.inode} ${who}: ${n.drops} (total ${n.totalDrops})`);
  }
  for (const f of s.flows) {
    const at = (addr: string, port: number | null) =>
      port === null ? addr : addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
    lines.push(`  ${f.protocol} ${at(f.src, f.sport)} -> ${at(f.dst, f.dport)}  ${f.count}  (netns ${f.netnsInode})`);
  }
  return lines.join('\n');
}
