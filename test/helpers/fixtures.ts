import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ConntrackSample } from '../../dist/index.js';
import { ProcBackend } from '../../dist/backends/proc.js';

export const NETLINK_FIXTURES = join(__dirname, '..', 'fixtures', 'netlink');

/** Datagrams of a hex fixture: one per line, '#' lines are comments. */
export function loadHexFixture(name: string): Buffer[] {
  return readFileSync(join(NETLINK_FIXTURES, `${name}.hex`), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => Buffer.from(line, 'hex'));
}

/**
 * The samples of the /proc backend run on the tree test/fixtures/proc/`name` for `ms`
 * milliseconds (0: its first interval, then the final one stop() closes). Rejects on an error.
 */
export async function procFixtureSamples(name: string, ms = 0): Promise<ConntrackSample[]> {
  const samples: ConntrackSample[] = [];
  const errors: Error[] = [];
  const options = {
    netnsPath: null,
    intervalMs: 50,
    receiveBufferBytes: 0,
    resyncIntervalMs: 0,
    backend: 'proc' as const,
    pressure: { warning: 0.75, critical: 0.9, hysteresis: 0.05 },
  };
  const handlers = { sample: (x: ConntrackSample) => samples.push(x), error: (e: Error) => errors.push(e) };
  const backend = new ProcBackend(options, handlers, join(__dirname, '..', 'fixtures', 'proc', name));
  await backend.start();
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  backend.stop();
  if (errors.length > 0) throw errors[0];
  return samples;
}

export function fixtureNames(): string[] {
  return readdirSync(NETLINK_FIXTURES)
    .filter((f) => f.endsWith('.hex'))
    .map((f) => f.slice(0, -4));
}

export interface FlowExpectation {
  count: number;
  family: number;
  protocol: number;
  src: string;
  dst: string;
  srcPort: number;
  dstPort?: number;
  icmpType?: number;
}

export function fixtureIndex(): Record<
  string,
  FlowExpectation & { procStat?: string; entries?: number; max?: number }
> {
  return JSON.parse(readFileSync(join(NETLINK_FIXTURES, 'index.json'), 'utf8'));
}
