/**
 * Reading conntrack state from /proc without privileges: pure parsers, and readers with an
 * injectable proc root so tests can use fixture trees.
 *
 * /proc/net/stat/nf_conntrack is parsed by its header names, never by column position: columns
 * were renamed (searched -> clashres in 5.10, delete_list -> chainlength in 5.15), old kernels
 * have 16 columns, and several are dead. It exists only with CONFIG_NF_CONNTRACK_PROCFS.
 */
import { closeSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { fileError, openRegularFile } from '../host/host-file.js';
import type { CounterName } from '../types.js';

/** One CPU row of /proc/net/stat/nf_conntrack, by column name (values are hex in the file). */
export type StatRow = Record<string, number>;

export interface ConntrackStat {
  columns: string[];
  rows: StatRow[];
  /** The namespace's entry count: the same on every row, so taken once, never summed. */
  entries: number | null;
}

/**
 * Kernel counters by the /proc column that carries them. `clashres` and `chainlength` are the
 * current names; their predecessors `searched` and `delete_list` are dead and map to nothing.
 */
export const STAT_COLUMNS: Partial<Record<CounterName, string>> = {
  drop: 'drop',
  earlyDrop: 'early_drop',
  insertFailed: 'insert_failed',
  invalid: 'invalid',
  icmpError: 'icmp_error',
  clashResolve: 'clashres',
  chainTooLong: 'chainlength',
  searchRestart: 'search_restart',
};

export class ProcFormatError extends Error {
  override name = 'ProcFormatError';
}

export function parseConntrackStat(text: string): ConntrackStat {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const columns = lines[0]?.trim().split(/\s+/) ?? [];
  if (!columns.includes('entries')) {
    throw new ProcFormatError(`nf_conntrack stat header has no 'entries' column: ${JSON.stringify(lines[0] ?? '')}`);
  }
  const rows = lines.slice(1).map((line, i) => {
    const fields = line.trim().split(/\s+/);
    if (fields.length !== columns.length) {
      throw new ProcFormatError(
        `nf_conntrack stat row ${i + 1} has ${fields.length} fields, the header ${columns.length}`,
      );
    }
    const row: StatRow = {};
    fields.forEach((hex, c) => {
      const value = Number.parseInt(hex, 16);
      if (!/^[0-9a-fA-F]+$/.test(hex) || !Number.isSafeInteger(value)) {
        throw new ProcFormatError(`nf_conntrack stat row ${i + 1} column ${columns[c]}: not hex: ${hex}`);
      }
      row[columns[c]!] = value;
    });
    return row;
  });
  return { columns, rows, entries: rows[0]?.entries ?? null };
}

/**
 * Socket TIME_WAIT count (`tw` of the TCP line of /proc/net/sockstat): sockets, not conntracks.
 * native/base/proc_text.cc has the same parser for the netlink backend's reader thread, which
 * reads the file from inside the monitored namespace; this one serves the /proc backend, which
 * must work when the addon cannot load. Both are tested on the fixtures in test/fixtures/proc.
 */
export function parseSockstatTimeWait(text: string): number | null {
  const match = /^TCP:.*\btw (\d+)/m.exec(text);
  return match ? Number(match[1]) : null;
}

/**
 * Sums per-CPU deltas of the kernel counters between readings, in 32-bit arithmetic: the
 * kernel's counters are u32 per CPU and wrap. A CPU row seen for the first time only sets its
 * baseline.
 */
export class StatDeltas {
  private last: StatRow[] = [];

  /** Deltas since the previous reading by counter; null where the kernel has no such column. */
  update(stat: ConntrackStat): Partial<Record<CounterName, number | null>> {
    const out: Partial<Record<CounterName, number | null>> = {};
    for (const [counter, column] of Object.entries(STAT_COLUMNS) as [CounterName, string][]) {
      if (!stat.columns.includes(column)) {
        out[counter] = null;
        continue;
      }
      let sum = 0;
      stat.rows.forEach((row, cpu) => {
        const previous = this.last[cpu]?.[column];
        if (previous !== undefined) sum += (row[column]! - previous) >>> 0;
      });
      out[counter] = sum;
    }
    this.last = stat.rows;
    return out;
  }
}

/** Where the proc backend reads, for the process's own namespace or another one's. */
export interface ProcPaths {
  /** Global and own-namespace sysctls. */
  sysctl: string;
  /** net/ of the monitored namespace: /proc/net, or /proc/PID/net for another namespace. */
  net: string;
  /** True when the sysctls under `sysctl` belong to the monitored namespace. */
  ownNamespace: boolean;
}

export function procPaths(root = '/proc', pid: number | null = null): ProcPaths {
  return {
    sysctl: join(root, 'sys/net/netfilter'),
    net: pid === null ? join(root, 'net') : join(root, String(pid), 'net'),
    ownNamespace: pid === null,
  };
}

export interface ProcReading {
  count: number | null;
  max: number | null;
  buckets: number | null;
  eventsMode: number | null;
  timeWaitTimeout: number | null;
  /** null when /proc/net/stat/nf_conntrack does not exist. */
  stat: ConntrackStat | null;
  socketTimeWait: number | null;
}

/** The largest proc file read: /proc/net/stat/nf_conntrack has a ~200-byte row per CPU. */
const MAX_FILE_BYTES = 4 << 20;

/**
 * Reads what one proc sample needs. The files stay open and are re-read from offset 0 each
 * time (procfs and sysctl files regenerate their text on every read), so a sample costs seven
 * pread calls and no open/close. Reads are synchronous: they are served from kernel memory.
 */
export class ProcReader {
  private readonly files = new Map<string, number | null>();
  private buffer = Buffer.alloc(64 * 1024);

  constructor(private readonly paths: ProcPaths) {}

  read(): ProcReading {
    const sysctl = (name: string) => this.integer(join(this.paths.sysctl, name));
    const own = (name: string) => (this.paths.ownNamespace ? sysctl(name) : null);
    const statText = this.text(join(this.paths.net, 'stat/nf_conntrack'));
    const sockstatText = this.text(join(this.paths.net, 'sockstat'));
    const stat = statText === null ? null : parseConntrackStat(statText);
    return {
      count: own('nf_conntrack_count') ?? stat?.entries ?? null,
      max: sysctl('nf_conntrack_max'),
      buckets: sysctl('nf_conntrack_buckets'),
      eventsMode: own('nf_conntrack_events'),
      timeWaitTimeout: own('nf_conntrack_tcp_timeout_time_wait'),
      stat,
      socketTimeWait: sockstatText === null ? null : parseSockstatTimeWait(sockstatText),
    };
  }

  close(): void {
    for (const fd of this.files.values()) if (fd !== null) closeSync(fd);
    this.files.clear();
  }

  /** The file's whole text, or null when it does not exist. Other errors throw. */
  private text(path: string): string | null {
    let fd = this.files.get(path);
    if (fd === undefined) {
      try {
        fd = openRegularFile(path).fd; // a FIFO or device under a fixture root is refused, not waited on
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        fd = null;
      }
      this.files.set(path, fd);
    }
    if (fd === null) return null;
    let length = 0;
    for (;;) {
      if (length === this.buffer.length) {
        if (length >= MAX_FILE_BYTES) throw fileError('EFBIG', 'read', path, `is larger than ${MAX_FILE_BYTES} bytes`);
        this.buffer = Buffer.concat([this.buffer, Buffer.alloc(this.buffer.length)]);
      }
      const n = readSync(fd, this.buffer, length, this.buffer.length - length, length);
      if (n === 0) break;
      length += n;
    }
    return this.buffer.toString('utf8', 0, length);
  }

  private integer(path: string): number | null {
    const text = this.text(path);
    if (text === null) return null;
    const value = Number(text.trim());
    return Number.isSafeInteger(value) ? value : null;
  }
}

/** One reading with files opened and closed for it (tests, one-off checks). */
export function readProc(paths: ProcPaths): ProcReading {
  const reader = new ProcReader(paths);
  try {
    return reader.read();
  } finally {
    reader.close();
  }
}
