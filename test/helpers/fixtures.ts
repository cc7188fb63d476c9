import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const NETLINK_FIXTURES = join(__dirname, '..', 'fixtures', 'netlink');

/** Datagrams of a hex fixture: one per line, '#' lines are comments. */
export function loadHexFixture(name: string): Buffer[] {
  return readFileSync(join(NETLINK_FIXTURES, `${name}.hex`), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => Buffer.from(line, 'hex'));
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
