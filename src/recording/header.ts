/**
 * The first line of a recording: the host and the run, read when recording starts. Read-only:
 * /proc/sys/net/netfilter of the recorder's own namespace, os.*, the slab size and meminfo.
 *
 * nf_conntrack_max and nf_conntrack_buckets are global. The timeouts are per namespace, and
 * /proc/sys shows those of the namespace of the process that reads it, so for --netns they are
 * null with that reason (each sample still carries the namespace's TIME_WAIT timeout).
 */
import { readFileSync } from 'node:fs';
import { readFileBoundedSync } from '../host/host-file.js';
import * as os from 'node:os';
import { join } from 'node:path';
import { conntrackEntryBytes, memoryBytes } from '../environment.js';
import { RECORDING_FORMAT, RECORDING_VERSION, type RecordingHeader } from './format.js';

/** The conntrack timeouts a load test meets, by sysctl name under /proc/sys/net/netfilter. */
export const TIMEOUT_SYSCTLS = [
  'nf_conntrack_tcp_timeout_syn_sent',
  'nf_conntrack_tcp_timeout_syn_recv',
  'nf_conntrack_tcp_timeout_established',
  'nf_conntrack_tcp_timeout_fin_wait',
  'nf_conntrack_tcp_timeout_close_wait',
  'nf_conntrack_tcp_timeout_last_ack',
  'nf_conntrack_tcp_timeout_time_wait',
  'nf_conntrack_tcp_timeout_close',
  'nf_conntrack_tcp_timeout_unacknowledged',
  'nf_conntrack_udp_timeout',
  'nf_conntrack_udp_timeout_stream',
  'nf_conntrack_icmp_timeout',
  'nf_conntrack_icmpv6_timeout',
  'nf_conntrack_generic_timeout',
] as const;

export interface HeaderInput {
  command: string[] | null;
  netns: string | null;
  allNamespaces: boolean;
  intervalMs: number;
  backend: string;
  /** Where the sysctls are read (tests). */
  sysctlDir?: string;
  startTime?: Date;
}

export function recordingHeader(input: HeaderInput): RecordingHeader {
  const dir = input.sysctlDir ?? '/proc/sys/net/netfilter';
  const unavailable: Partial<Record<string, string>> = {};
  const sysctl = (name: string, field: string) => {
    const value = readInteger(join(dir, name));
    if (value === null) unavailable[field] = `${join(dir, name)} is not readable`;
    return value;
  };
  const timeouts: Record<string, number | null> = {};
  for (const name of TIMEOUT_SYSCTLS) {
    timeouts[name] = input.netns === null ? sysctl(name, `conntrack.timeouts.${name}`) : null;
  }
  if (input.netns !== null) {
    unavailable['conntrack.timeouts'] =
      "the namespace's own sysctls are not readable from outside it; each sample has its TIME_WAIT timeout";
  }
  const entryBytes = conntrackEntryBytes();
  if (entryBytes === null)
    unavailable['conntrack.entryBytes'] = 'no nf_conntrack slab in /sys/kernel/slab or /proc/slabinfo';
  const memory = memoryBytes();
  if (memory === null) unavailable.memoryBytes = '/proc/meminfo is not readable';
  return {
    type: 'header',
    format: RECORDING_FORMAT,
    version: RECORDING_VERSION,
    tool: toolVersion(),
    startTime: (input.startTime ?? new Date()).toISOString(),
    hostname: os.hostname(),
    kernel: os.release(),
    cpus: os.availableParallelism(),
    memoryBytes: memory,
    command: input.command,
    netns: input.netns,
    allNamespaces: input.allNamespaces,
    intervalMs: input.intervalMs,
    backend: input.backend,
    conntrack: {
      max: sysctl('nf_conntrack_max', 'conntrack.max'),
      buckets: sysctl('nf_conntrack_buckets', 'conntrack.buckets'),
      entryBytes,
      timeouts,
    },
    unavailable,
  };
}

/** "conntrack-monitor 0.1.0", from the package's own package.json. */
export function toolVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    return `conntrack-monitor ${pkg.version}`;
  } catch {
    return 'conntrack-monitor';
  }
}

function readInteger(path: string): number | null {
  try {
    const text = readFileBoundedSync(path, 4096).trim();
    return /^\d+$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}
