/**
 * The kernel's listing (`conntrack -L` text, conntrack-tools being the reference reader) grouped
 * the way a TopReport names things: keys from the original direction (the first src=, dst=,
 * dport=, type= of a line); unassured = lines without [ASSURED]; tcpClosing = tcp lines in
 * FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE; evictable = lines in either. Written
 * independently of the native grouping, to check it.
 */
export interface ListingGroups {
  entries: number;
  evictable: number;
  unassured: number;
  tcpClosing: number;
  bySource: Record<string, number>;
  byDestination: Record<string, number>;
  byDestinationPort: Record<string, number>;
  byState: Record<string, number>;
}

const ICMP_REQUESTS: Record<string, Record<string, string>> = {
  icmp: { '8': 'echo-request', '13': 'timestamp-request', '15': 'info-request', '17': 'address-mask-request' },
  icmpv6: { '128': 'echo-request', '139': 'node-info-query' },
};

export function groupListing(text: string): ListingGroups {
  const g: ListingGroups = {
    entries: 0,
    evictable: 0,
    unassured: 0,
    tcpClosing: 0,
    bySource: {},
    byDestination: {},
    byDestinationPort: {},
    byState: {},
  };
  const add = (map: Record<string, number>, key: string) => (map[key] = (map[key] ?? 0) + 1);
  for (const line of text.split('\n').filter((l) => l.trim())) {
    const tokens = line.trim().split(/\s+/);
    const proto = tokens[0] === 'ipv6-icmp' ? 'icmpv6' : tokens[0]!;
    const field = (name: string) => tokens.find((t) => t.startsWith(`${name}=`))?.slice(name.length + 1);
    g.entries++;
    const unassured = !line.includes('[ASSURED]');
    const closing =
      proto === 'tcp' && ['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE'].includes(tokens[3]!);
    g.unassured += Number(unassured);
    g.tcpClosing += Number(closing);
    g.evictable += Number(unassured || closing);
    add(g.bySource, field('src')!);
    add(g.byDestination, field('dst')!);
    if (proto === 'icmp' || proto === 'icmpv6') {
      const type = field('type')!;
      add(g.byDestinationPort, `${proto}/${ICMP_REQUESTS[proto]![type] ?? type}`);
    } else {
      add(g.byDestinationPort, `${proto}/${field('dport')}`);
    }
    if (proto === 'tcp') add(g.byState, `tcp/${tokens[3]}`);
    else
      add(
        g.byState,
        `${proto}/${line.includes('[UNREPLIED]') ? 'UNREPLIED' : line.includes('[ASSURED]') ? 'ASSURED' : 'REPLIED'}`,
      );
  }
  return g;
}

/** A report's group as { key: entries } (for comparison with a listing's). */
export function asCounts(items: { key: string; entries: number }[]): Record<string, number> {
  return Object.fromEntries(items.map((i) => [i.key, i.entries]));
}

/** Natural order of address keys: IPv4 before IPv6, then numerically. */
export function addressOrder(a: string, b: string): number {
  const bytes = (s: string): number[] => {
    if (!s.includes(':')) return [4, ...s.split('.').map(Number)];
    const [head, tail = ''] = s.split('::');
    const h = head ? head.split(':') : [];
    const t = s.includes('::') && tail ? tail.split(':') : [];
    const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((x) => parseInt(x, 16));
    return [6, ...groups];
  };
  const x = bytes(a);
  const y = bytes(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) return (x[i] ?? -1) - (y[i] ?? -1);
  return 0;
}
