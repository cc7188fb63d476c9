/**
 * One model of what the kernel can reclaim in a conntrack table, and the one verdict every
 * command gives from it: top, check, advise, the live view and the report's advice.
 *
 * The kernel makes room in two ways (docs/verdicts.md has the measurements):
 * - early_drop(): when an insert finds the table full, it evicts an entry without IPS_ASSURED
 *   from the hash buckets around the new one; when there is none, the packet is dropped;
 * - the garbage collector: once an insert has failed and the namespace holds 95% of
 *   nf_conntrack_max, it evicts unassured entries and TCP entries in FIN_WAIT, CLOSE_WAIT,
 *   LAST_ACK, TIME_WAIT and CLOSE, assured or not (the kernel's gc_worker_can_early_drop and
 *   tcp_can_early_drop).
 *
 * So an entry is in one of three classes, each with its own remedy:
 * - `unassured` (a scan, a flood, a peer that never answers): evicted on demand, so a larger
 *   nf_conntrack_max only makes room for more of them; look at who opens them, and at the
 *   timeout of their state (nf_conntrack_udp_timeout for UDP);
 * - `tcp-closing` (assured TCP in a closing state, mostly TIME_WAIT): reclaimed only after drops
 *   at 95% full; a shorter timeout of that state frees them sooner;
 * - `assured` (the rest: established connections, assured UDP): never evicted; only a larger
 *   nf_conntrack_max (and buckets with it) makes room.
 *
 * Every share is said of nf_conntrack_max, as the samples' fill and TIME_WAIT share are.
 */
import type { TopItem } from './top.js';
import { TCP_STATE_NAMES, type ConntrackSample } from './types.js';

export type EntryClass = 'unassured' | 'tcp-closing' | 'assured';

/**
 * What fills a table, as far as it is known. A snapshot (TopReport) knows it all; a sample knows
 * its TCP states, so its closing TCP entries, but not which entries are assured (null).
 */
export interface TableComposition {
  entries: number;
  /** nf_conntrack_max, for the shares; null when unknown. */
  max: number | null;
  /** Entries in either class the kernel can reclaim, each once. */
  evictable: number | null;
  /** Entries without IPS_ASSURED. */
  unassured: number | null;
  /** TCP entries in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE, assured or not. */
  tcpClosing: number | null;
  /** States, heaviest first ("tcp/TIME_WAIT", "udp/UNREPLIED"); may list only the heaviest. */
  byState: readonly TopItem[];
  /** Sources, heaviest first (who opens the entries); may be empty. */
  bySource?: readonly TopItem[];
}

/** The sysctls a verdict can point at (under net.netfilter.). */
export type Knob =
  | 'nf_conntrack_max'
  | 'nf_conntrack_tcp_timeout_time_wait'
  | 'nf_conntrack_tcp_timeout_fin_wait'
  | 'nf_conntrack_tcp_timeout_close_wait'
  | 'nf_conntrack_tcp_timeout_last_ack'
  | 'nf_conntrack_tcp_timeout_close'
  | 'nf_conntrack_tcp_timeout_syn_sent'
  | 'nf_conntrack_tcp_timeout_syn_recv'
  | 'nf_conntrack_udp_timeout'
  | 'nf_conntrack_icmp_timeout'
  | 'nf_conntrack_icmpv6_timeout'
  | 'nf_conntrack_generic_timeout';

export interface EvictableVerdict {
  /** The class most entries are in; null for an empty table, or when what is known cannot tell. */
  mostly: EntryClass | null;
  /** The heaviest state of that class ("tcp/TIME_WAIT", "udp/UNREPLIED"), when the states list one. */
  state: string | null;
  /** Entries of that class (closing TCP: all of them, assured or not). */
  entries: number | null;
  /** The sysctl that acts on that class: the timeout of its state, or nf_conntrack_max. */
  knob: Knob | null;
  /** Whether a larger nf_conntrack_max is the remedy: only for a table of assured connections. */
  raiseMax: boolean;
  /** evictable / entries (null when unknown or for an empty table). */
  share: number | null;
  /** The verdict in a few words, with the knob, for status lines (check) and headings. */
  summary: string;
  /** One sentence for a human, with the counts and their share of nf_conntrack_max. */
  text: string;
}

/** At least this share of the entries in the classes the kernel can reclaim: "mostly" reclaimable. */
export const MOSTLY_EVICTABLE = 0.5;

/** The TCP states the garbage collector may evict under pressure (its tcp_can_early_drop). */
export const TCP_CLOSING_STATES = ['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE'] as const;

/** The class of a state key as TopReport.byState names them; null when the key cannot tell. */
export function classOfState(key: string): EntryClass | null {
  const [proto, state] = key.split('/', 2);
  if (state === undefined) return null; // a sample's "udp": assured or not is unknown
  if (proto === 'tcp') {
    if ((TCP_CLOSING_STATES as readonly string[]).includes(state)) return 'tcp-closing';
    if (state === 'ESTABLISHED') return 'assured';
    return ['SYN_SENT', 'SYN_RECV', 'SYN_SENT2', 'NONE'].includes(state) ? 'unassured' : null;
  }
  if (state === 'ASSURED') return 'assured';
  return state === 'UNREPLIED' || state === 'REPLIED' ? 'unassured' : null;
}

/** The timeout sysctl of a state key (how long an entry in that state stays), or null. */
export function knobOfState(key: string): Knob | null {
  const [proto, state = ''] = key.split('/', 2);
  if (proto === 'tcp') {
    const tcp: Record<string, Knob> = {
      TIME_WAIT: 'nf_conntrack_tcp_timeout_time_wait',
      FIN_WAIT: 'nf_conntrack_tcp_timeout_fin_wait',
      CLOSE_WAIT: 'nf_conntrack_tcp_timeout_close_wait',
      LAST_ACK: 'nf_conntrack_tcp_timeout_last_ack',
      CLOSE: 'nf_conntrack_tcp_timeout_close',
      SYN_SENT: 'nf_conntrack_tcp_timeout_syn_sent',
      SYN_RECV: 'nf_conntrack_tcp_timeout_syn_recv',
    };
    return tcp[state] ?? null;
  }
  if (proto === 'udp' || proto === 'udplite') return 'nf_conntrack_udp_timeout';
  if (proto === 'icmp') return 'nf_conntrack_icmp_timeout';
  if (proto === 'icmpv6') return 'nf_conntrack_icmpv6_timeout';
  return proto ? 'nf_conntrack_generic_timeout' : null;
}

/**
 * The verdict on a table: which class most entries are in, its heaviest state and the knob that
 * acts on it. A table of which at least half can be reclaimed is mostly `unassured` or mostly
 * `tcp-closing` (whichever holds more of those entries); otherwise mostly `assured`. From a
 * sample, which does not tell assured entries from unassured ones, only a table at least half
 * closing TCP has a verdict.
 */
export function evictableVerdict(c: TableComposition): EvictableVerdict {
  const n = c.entries;
  const unassured = c.unassured ?? null;
  const closing = c.tcpClosing ?? null;
  const evictable = c.evictable ?? null;
  const share = n > 0 && evictable !== null ? evictable / n : null;
  const none = (summary: string, text: string): EvictableVerdict => ({
    mostly: null,
    state: null,
    entries: null,
    knob: null,
    raiseMax: false,
    share,
    summary,
    text,
  });
  if (n === 0) return none('the table is empty', 'the table is empty');
  let mostly: EntryClass;
  if (evictable !== null && unassured !== null) {
    const assuredClosing = evictable - unassured;
    mostly =
      evictable >= n * MOSTLY_EVICTABLE ? (unassured >= assuredClosing ? 'unassured' : 'tcp-closing') : 'assured';
  } else if (closing !== null && closing >= n * MOSTLY_EVICTABLE) {
    mostly = 'tcp-closing';
  } else {
    const why = 'which entries are assured is unknown without a snapshot of the table (conntrack-monitor top)';
    return none(`what fills the table is unknown: ${why}`, `what fills the table is unknown: ${why}`);
  }
  const state = c.byState.find((s) => s.key !== 'other' && classOfState(s.key) === mostly)?.key ?? null;
  const count =
    mostly === 'unassured'
      ? unassured!
      : mostly === 'tcp-closing'
        ? (closing ?? evictable! - unassured!)
        : n - (evictable ?? 0);
  const knob: Knob | null =
    mostly === 'assured'
      ? 'nf_conntrack_max'
      : state
        ? knobOfState(state)
        : mostly === 'tcp-closing'
          ? 'nf_conntrack_tcp_timeout_time_wait'
          : null;
  const of = ofMax(c.max);
  const most = state ? ` (most ${state})` : '';
  const top = c.bySource?.find((s) => s.key !== 'other');
  let summary: string;
  let text: string;
  if (mostly === 'unassured') {
    summary = `mostly unassured entries${most}, which the kernel evicts for new ones: a larger nf_conntrack_max only makes room for more of them; look at who opens them${knob ? `, or shorten ${knob}` : ''}`;
    text =
      `mostly unassured: ${count} of ${n} entries${of(count)} are unassured${most}, which the kernel evicts to make room for new ones ` +
      `(at once when one is in a nearby hash bucket, else after a drop, at 95% full), ` +
      `so a larger nf_conntrack_max only makes room for more of them; look at who opens them` +
      (top ? ` (top source ${top.key}: ${top.entries} entries)` : '') +
      (knob ? `; ${knob} is how long each stays` : '');
  } else if (mostly === 'tcp-closing') {
    summary = `mostly closing TCP${most}, which the kernel reclaims only after drops at 95% full: shorten ${knob}`;
    text =
      `mostly closing TCP: ${count} of ${n} entries${of(count)} are in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE${most}, ` +
      `which the kernel reclaims only once an insert has failed at 95% of nf_conntrack_max, so drops come first; ` +
      `a shorter ${knob} frees them sooner`;
  } else {
    summary = `mostly assured connections${most}, which the kernel never evicts: raise nf_conntrack_max`;
    text =
      `mostly assured: ${count} of ${n} entries${of(count)} are assured connections${most}, which the kernel never evicts ` +
      `(only ${evictable ?? 0} can be reclaimed): raise nf_conntrack_max, and nf_conntrack_buckets with it`;
  }
  return { mostly, state, entries: count, knob, raiseMax: mostly === 'assured', share, summary, text };
}

/** "N reclaimable (P% of nf_conntrack_max: U unassured, C closing TCP)". */
export function reclaimableText(c: Pick<TableComposition, 'evictable' | 'unassured' | 'tcpClosing' | 'max'>): string {
  const e = c.evictable;
  if (e === null) return 'reclaimable unknown';
  const share = c.max ? `${((e / c.max) * 100).toFixed(1)}% of nf_conntrack_max: ` : '';
  return `${e} reclaimable (${share}${c.unassured ?? '?'} unassured, ${c.tcpClosing ?? '?'} closing TCP)`;
}

/** " (12.5% of nf_conntrack_max)", or nothing when the max is unknown. */
export function ofMax(max: number | null): (n: number) => string {
  return (n) => (max ? ` (${((n / max) * 100).toFixed(1)}% of nf_conntrack_max)` : '');
}

/**
 * What a sample knows of its table: its TCP states (so its closing TCP entries) and the other
 * protocols' entries, but not which are assured. Null when it has no state counts (/proc).
 */
export function compositionOfSample(s: ConntrackSample): TableComposition | null {
  if (s.entries === null || s.tcpStates === null) return null;
  const states: TopItem[] = TCP_STATE_NAMES.map((st) => ({ key: `tcp/${st}`, entries: s.tcpStates![st] }));
  for (const p of ['udp', 'icmp', 'other'] as const) if (s.protocols) states.push({ key: p, entries: s.protocols[p] });
  states.sort((a, b) => b.entries - a.entries);
  const closing = TCP_CLOSING_STATES.reduce((sum, st) => sum + s.tcpStates![st], 0);
  return {
    entries: s.entries,
    max: s.max,
    evictable: null,
    unassured: null,
    tcpClosing: closing,
    byState: states.filter((x) => x.entries > 0),
  };
}
