/**
 * Facts about the host the tuning advisor needs and the samples do not carry: the kernel's
 * size of one conntrack entry and the host's memory. Read-only; each is null when unreadable.
 */
import { readFileBoundedSync } from './host/host-file.js';
import type { TuningEnvironment } from './advise.js';
import type { ConntrackSample } from './types.js';

/** Bytes per conntrack entry: the nf_conntrack slab's object size (SLUB sysfs, else slabinfo). */
export function conntrackEntryBytes(): number | null {
  const fromSysfs = readNumber('/sys/kernel/slab/nf_conntrack/slab_size');
  if (fromSysfs !== null) return fromSysfs;
  try {
    // "nf_conntrack <active> <num> <objsize> ..." (root only, mode 0400)
    const line = readFileBoundedSync('/proc/slabinfo', 4 << 20)
      .split('\n')
      .find((l) => l.startsWith('nf_conntrack '));
    const size = line ? Number(line.trim().split(/\s+/)[3]) : NaN;
    return Number.isFinite(size) ? size : null;
  } catch {
    return null;
  }
}

export function memoryBytes(): number | null {
  try {
    const match = /^MemTotal:\s+(\d+) kB/m.exec(readFileBoundedSync('/proc/meminfo', 1 << 20));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The advisor's environment, from the latest sample and the host. */
export function tuningEnvironment(latest: ConntrackSample): TuningEnvironment | null {
  if (latest.max === null) return null;
  return {
    max: latest.max,
    buckets: latest.buckets,
    timeWaitTimeout: latest.timeWait.timeoutSeconds,
    entryBytes: conntrackEntryBytes(),
    memoryBytes: memoryBytes(),
  };
}

function readNumber(path: string): number | null {
  try {
    const n = Number(readFileBoundedSync(path, 4096).trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}
