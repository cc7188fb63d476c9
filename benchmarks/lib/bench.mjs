// Shared pieces of the load benchmarks (event-rate.mjs, soak.mjs): the private namespace with
// its kernel ground truth, the benchmarks/native tools, the monitor in its own process, /proc
// readings of a process, and the machine description. Benchmark tooling only.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const benchmarks = join(dirname(fileURLToPath(import.meta.url)), '..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** benchmarks/native's loadgen, null_reader and count_only_reader, built with node-gyp if missing. */
export function buildTools() {
  const bin = (name) => join(benchmarks, 'native', 'build', 'Release', name);
  if (!['loadgen', 'null_reader', 'count_only_reader'].every((name) => existsSync(bin(name)))) {
    const nodeGyp =
      process.env.npm_config_node_gyp ?? '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js';
    // Run with node, not npm, node-gyp would download Node's headers: use the ones installed
    // with this Node where they are (npm's nodedir setting first), so no network is needed.
    const prefix = join(dirname(process.execPath), '..');
    const nodedir =
      process.env.npm_config_nodedir ?? (existsSync(join(prefix, 'include', 'node', 'node.h')) ? prefix : null);
    const args = [nodeGyp, 'rebuild', '--directory', join(benchmarks, 'native')];
    if (nodedir) args.push(`--nodedir=${nodedir}`);
    execFileSync(process.execPath, args, { stdio: 'inherit' });
  }
  return { loadgen: bin('loadgen'), nullReader: bin('null_reader'), countOnlyReader: bin('count_only_reader') };
}

/**
 * Creates the benchmark namespace `name`: lo up, an nft `ct state new counter` rule in its
 * output chain (the kernel's count of entries created = NEW events generated) and, unless
 * `shortTimeouts` is false, 1 s UDP / TIME_WAIT timeouts. Returns its helpers; destroy()
 * deletes it (safe to call twice).
 */
export function benchNamespace(name, { shortTimeouts = true } = {}) {
  const inNs = (file, args, opts = {}) =>
    execFileSync('ip', ['netns', 'exec', name, file, ...args], { encoding: 'utf8', ...opts });
  execFileSync('ip', ['netns', 'add', name]);
  let alive = true;
  const destroy = () => {
    if (!alive) return;
    alive = false;
    execFileSync('ip', ['netns', 'del', name]);
  };
  try {
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    inNs('nft', ['-f', '-'], {
      input: 'table inet bench {\n chain out { type filter hook output priority 0; ct state new counter; }\n}\n',
    });
    if (shortTimeouts)
      inNs('sysctl', [
        '-q',
        '-w',
        'net.netfilter.nf_conntrack_udp_timeout=1',
        'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1',
      ]);
  } catch (e) {
    destroy();
    throw e;
  }
  return {
    name,
    path: `/var/run/netns/${name}`,
    inNs,
    destroy,
    /** The namespace's stat counters, summed over CPUs, by /proc column name. */
    kernelStats() {
      const [header, ...rows] = inNs('cat', ['/proc/net/stat/nf_conntrack']).trim().split('\n');
      const names = header.trim().split(/\s+/);
      const sums = {};
      for (const row of rows)
        row
          .trim()
          .split(/\s+/)
          .forEach((hex, i) => (sums[names[i]] = (sums[names[i]] ?? 0) + parseInt(hex, 16)));
      return sums;
    },
    /** Packets the `ct state new` rule counted: new entries, before confirmation. */
    newCounter: () => Number(/counter packets (\d+)/.exec(inNs('nft', ['list', 'chain', 'inet', 'bench', 'out']))[1]),
    /** Entries in the namespace's table (nf_conntrack_count). */
    tableCount: () => Number(inNs('cat', ['/proc/sys/net/netfilter/nf_conntrack_count'])),
    /** Netfilter netlink sockets in the namespace subscribed to at least one group. */
    listeners: () =>
      inNs('cat', ['/proc/net/netlink'])
        .trim()
        .split('\n')
        .slice(1)
        .map((r) => r.trim().split(/\s+/))
        .filter((r) => r[1] === '12' && Number.parseInt(r[3], 16) !== 0).length,
  };
}

/**
 * benchmarks/monitor-child.mjs on the namespace at `netnsPath`, started; report() asks it for
 * one JSON line of totals. `classic`: with the classic event filter, as where eBPF cannot load;
 * `loopDelay: false`: without the event-loop delay histogram (whose timer has a CPU cost).
 */
export async function startMonitorChild(
  netnsPath,
  { stderr = 'inherit', classic = false, loopDelay = true, checkout = null } = {},
) {
  // `checkout`: another checkout's monitor (its benchmarks/monitor-child.mjs and its build), so
  // that two versions are measured in one run.
  const args = [
    join(checkout ? join(checkout, 'benchmarks') : benchmarks, 'monitor-child.mjs'),
    netnsPath,
    ...(classic ? ['--classic'] : []),
    ...(loopDelay ? [] : ['--no-loop-delay']),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['pipe', 'pipe', stderr],
  });
  child.stdin.on('error', () => {}); // EPIPE when it has died (Ctrl-C reaches it too): its exit says so
  const lines = createInterface({ input: child.stdout });
  const nextLine = () => new Promise((r) => lines.once('line', r));
  await nextLine(); // ready
  const report = async () => {
    const line = nextLine();
    child.stdin.write('report\n');
    return JSON.parse(await line);
  };
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const closed = new Promise((r) => child.once('close', r));
    child.stdin.end();
    await closed;
  };
  return { child, report, stop };
}

/**
 * benchmarks/native/count_only_reader on the namespace at `netnsPath`, started (`all`: joined to
 * the UPDATE group too); stop() ends it and resolves to its counts (its one JSON line).
 */
export async function startCountOnlyReader(netnsPath, { all = false } = {}) {
  const child = spawn(buildTools().countOnlyReader, [netnsPath, ...(all ? ['--all'] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  await new Promise((r) => lines.once('line', r)); // ready
  const stop = () => {
    const counts = new Promise((r) => lines.once('line', (l) => r(JSON.parse(l))));
    child.kill('SIGTERM');
    return counts;
  };
  return { child, stop };
}

/** CPU seconds (user + system) of a process so far. */
export const cpuSeconds = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICK; // utime + stime
};
const statusField = (pid, field) =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
/** Peak resident set (VmHWM) of a process, MiB. */
export const peakRssMiB = (pid) => statusField(pid, 'VmHWM') / 1024;
/** Resident set (VmRSS) of a process, KiB. */
export const rssKiB = (pid) => statusField(pid, 'VmRSS');
/** Threads of a process. */
export const threads = (pid) => statusField(pid, 'Threads');
/** Open file descriptors of a process. */
export const fdCount = (pid) => readdirSync(`/proc/${pid}/fd`).length;

/** Kernel, CPUs, memory and Node version of this machine. */
export function machine() {
  return {
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}
