/**
 * Loads the addon and types its contract. The shapes here mirror native/binding/, the only
 * Node-API files; nothing else in src/ touches the addon.
 */
import * as path from 'node:path';
import type { NativeErrorLike } from './errors.js';

/** One interval's counters (native/binding/convert.cc interval_to_js). */
export interface RawInterval {
  endWallMs: number;
  durationNs: number;
  final: boolean;
  kernelStatsOk: boolean;
  /** errno of this interval's failed stats request (0 when it succeeded). */
  statsError: number;
  /** In the order of `counterNames`; null where unknown in this interval. */
  counts: (number | null)[];
  totals: number[];
  entries: number | null;
  max: number | null;
  eventsReceived: number;
  eventsUpdates: number;
  eventsUpdatesTotal: number;
  eventsLost: number;
  eventsLostTotal: number;
  /** When a loss was first seen (CLOCK_REALTIME ms): in this interval, and since start. */
  firstLossWallMs: number | null;
  firstLossEverWallMs: number | null;
  malformedTotal: number;
}

export interface RawSample extends RawInterval {
  buckets: number | null;
  eventsMode: number | null;
  socketTimeWait: number | null;
  timeWaitTimeout: number | null;
  /** The initial dump has completed, so `tracked` describes the table. */
  synced: boolean;
  /** errno of the latest dump when it failed (0: it succeeded, or the first one still runs). */
  dumpError: number;
  /** The entries the kernel lists: their deadline ahead, or found alive by the latest check. */
  tracked: RawTableCounts;
  /** Entries past their announced deadline, not checked against the kernel since (not in tracked). */
  unverified: RawTableCounts;
  /** CLOCK_REALTIME ms when the latest check (a walk of the table, or a listing) began; null before. */
  verifiedAt: number | null;
  /** Walks of the table since start, and the latest one's duration. */
  walks: number;
  lastWalkMs: number | null;
  resyncs: number;
  lastResyncMs: number | null;
  tableBytes: number;
  /** On the eBPF event path: what the kernel's filter did (cumulative); null otherwise. */
  eventProgram: {
    /** Messages it queued to user space. */
    passed: number;
    /** Flows its table holds and counts now (included in tracked). */
    tracked: number;
    /** Messages whose layout it could not parse (passed). */
    unknownLayout: number;
    /** Flows whose bucket of its table was full (passed, kept in user space). */
    flowsFull: number;
    /** Slots of its flow table. */
    tableSlots: number;
    /** All its counters, by enum ct_diagnostic (native/ebpf/ct_events.h). */
    diagnostics: number[];
  } | null;
  /** Records the binding dropped because the JS thread stalled (its queue is bounded), since start. */
  droppedRecords: number;
}

export type NativeRecord = { type: 'sample'; sample: RawSample } | { type: 'error'; error: Error & NativeErrorLike };

export interface NativeMonitorOptions {
  netnsPath: string | null;
  intervalMs: number;
  receiveBufferBytes: number;
  resyncIntervalMs: number;
}

export interface NativeMonitor {
  /** Starts the reader thread; throws (errno, syscall, context) if it cannot subscribe. */
  start(): void;
  /** Stops the reader and returns the records not yet delivered (the final sample). */
  stop(): NativeRecord[];
  ref(): void;
  unref(): void;
  info(): {
    receiveBufferBytes: number;
    receiveBufferForced: boolean;
    /** 'ebpf': the eBPF event filter counts events in the kernel; 'netlink': the classic filter. */
    eventsPath: 'ebpf' | 'netlink';
    /** Why not 'ebpf' (one line); null on the eBPF path. */
    eventsPathReason: string | null;
  };
}

/** How a namespace's events are counted: in the kernel (eBPF), or from the classic filter's headers. */
export type CountingPath = 'ebpf' | 'filter';

/** Entries by protocol class (tcp, udp, icmp, other) and TCP state (enum tcp_conntrack). */
export interface RawTableCounts {
  entries: number;
  protocols: number[];
  tcpStates: number[];
}

/** One namespace's interval in a node report. */
export interface RawNamespaceInterval extends RawInterval {
  /** The id given to add(). */
  id: number;
  counting: CountingPath;
  /** The in-kernel counter could not be read: insert and delete are null this interval. */
  counterFailed: boolean;
  /** nf_conntrack_events of the namespace; null when unreadable. */
  eventsMode: number | null;
  /** On the eBPF path once the namespace's first listing completed: what the kernel lists; else null. */
  tracked: RawTableCounts | null;
  /** Entries past their announced deadline, not checked against the kernel since (not in tracked). */
  unverified: RawTableCounts;
  /** Listings of the namespace after the first. */
  listings: number;
}

export type NodeRecord =
  | {
      type: 'opened';
      id: number;
      ok: boolean;
      counting: CountingPath;
      /** Why the in-kernel counter is not used, on the filter path. */
      fallbackReason: string | null;
      receiveBufferBytes: number;
      error: (Error & NativeErrorLike) | null;
    }
  | { type: 'report'; final: boolean; droppedRecords: number; namespaces: RawNamespaceInterval[] }
  | { type: 'error'; id: number; error: Error & NativeErrorLike };

export interface NativeNodeMonitorOptions {
  intervalMs: number;
  receiveBufferBytes: number;
  counting: 'auto' | CountingPath;
}

/** One reader thread for every namespace of the node (native/ctnetlink/node_monitor.h). */
export interface NativeNodeMonitor {
  /** Starts the reader thread (no namespace yet); throws (errno, syscall, context) if it cannot. */
  start(): void;
  /** Stops it and returns the records not yet delivered (the final report). */
  stop(): NodeRecord[];
  /** Queues opening the namespace at `path` (checked to have inode `inode`); answered by an 'opened' record. */
  add(id: number, path: string, inode: number): void;
  /** Queues closing a namespace's sockets. */
  remove(id: number): void;
  ref(): void;
  unref(): void;
}

/** One table snapshot on a thread of its own (native/binding/snapshot_binding.cc). */
export interface NativeSnapshot {
  /** Starts the dump; resolves with the grouped report, rejects with (errno, syscall, context). */
  start(): Promise<unknown>;
  /** The dump stops at its next datagram; start() then rejects with ECANCELED. */
  cancel(): void;
  /** The pending dump no longer keeps the process alive. */
  unref(): void;
}

/** The eBPF table-full drop probe (native/drop_probe.h); the constructor loads and attaches it. */
export interface NativeDropProbe {
  /** Cumulative table-full drops per namespace inode since attach. */
  namespaces(): { inode: number; drops: number }[];
  /** The flows dropped since the previous call, with counts; the kernel map is emptied. */
  flows(): {
    netns: number;
    family: number;
    protocol: number;
    src: string;
    dst: string;
    sport: number;
    dport: number;
    count: number;
  }[];
  /** Removes a namespace from the kernel map (it is gone; its inode may be reused). */
  forget(inode: number): void;
  /** The program's id, size and (while BPF run-time stats are on) run count and time. */
  stats(): { id: number; instructions: number; runCount: number; runTimeNs: number };
  close(): void;
}

/** The event program's counters (struct ct_counters in native/ebpf/ct_events.h), summed over CPUs. */
export interface EventProgramCounters {
  /** [kind: new, update, destroy][class: tcp, udp, icmp, other, unknown] */
  messages: number[][];
  /** enum ct_diagnostic slots: short, not conntrack, passed, ... */
  diagnostics: number[];
}

export interface EventProgramRun {
  /** The program's return value per message: 0 dropped, nonzero passed to the socket. */
  verdicts: number[];
  counters: EventProgramCounters;
  /** With perMessage: the [kind, class] each message was counted under, or null. */
  counted?: ([number, number] | null)[];
  /** The monitor variant's maps after the runs (absent for count-only). */
  seed?: bigint;
  /** Buckets of 8 slots in its flow table. */
  flowBuckets?: number;
  /** CLOCK_MONOTONIC deciseconds when the maps were read. */
  nowDs?: number;
  /** Every slot its flow table holds. */
  flows?: { key: bigint; deadlineDs: number; class: number; tcpState: number; touched: boolean; ns: number }[];
  /** For each of the options' goneKeys: whether ct_gone holds it (a DESTROY during a listing). */
  goneOf?: boolean[];
  /** With verifierStats: what the verifier reported when it accepted the program. */
  verifier?: { processedInsns: number; summary: string };
}

export interface NativeBinding {
  NativeDropProbe: new (options: { maxFlows: number }) => NativeDropProbe;
  /** '' when the drop probe can be attached here, else why not. */
  dropProbeAvailable(): string;
  /** Benchmarks: hold BPF_ENABLE_STATS so run counts and times accumulate (false releases it). */
  _bpfRunTimeStats(on: boolean): void;
  NativeMonitor: new (options: NativeMonitorOptions, onRecords: (records: NativeRecord[]) => void) => NativeMonitor;
  NativeNodeMonitor: new (
    options: NativeNodeMonitorOptions,
    onRecords: (records: NodeRecord[]) => void,
  ) => NativeNodeMonitor;
  NativeSnapshot: new (options: {
    netnsPath: string | null;
    limit: number;
    receiveTimeoutMs: number;
    deadlineMs: number;
  }) => NativeSnapshot;
  counterNames: string[];
  _decode(buffer: Buffer): Record<string, unknown>[];
  _classifyHeader(buffer: Buffer): 'new' | 'destroy' | 'other';
  _aggregate(steps: object[]): RawSample[];
  _table(steps: object[]): Record<string, unknown>[];
  _liveMonitors(): number;
  _groupSnapshot(
    datagrams: Buffer[],
    limit: number,
    options?: { expectedEntries?: number; maxKeys?: number },
  ): Record<string, unknown>;
  _liveSnapshots(): number;
  _parseSockstat(text: string): number;
  /** Bytes the C/C++ allocator has handed out (glibc mallinfo2), all threads: leak checks. */
  _nativeHeapBytes(): number;
  /**
   * Loads the event socket filter (native/ebpf/event_counter.h) and runs it in the kernel on
   * each message sent to a netlink socket it filters: passed or dropped, and its counters after.
   */
  _eventProgram(
    messages: Buffer[],
    options?: {
      variant?: 'count-only' | 'monitor';
      perMessage?: boolean;
      maxFlows?: number;
      seed?: bigint;
      /** Load it asking the verifier for its statistics (EventProgramRun.verifier). */
      verifierStats?: boolean;
      /** Monitor variant: a listing of the namespace is under way (CT_NS_LISTING). */
      listing?: boolean;
      /** Monitor variant: keys to look up in ct_gone (EventProgramRun.goneOf). */
      goneKeys?: bigint[];
    },
  ): EventProgramRun;
  /** The flow key the monitor's event program gives a message's entry (in namespace index ns), from the decoder's view. */
  _flowKey(message: Buffer, seed: bigint, ns?: number): bigint | null;
  _injectFaults(faults: {
    netlinkProtocol?: number;
    ctnetlinkSubsystem?: number;
    eventProgramType?: number;
    openNamespaceDelayMs?: number;
    dropProgramOffsetDelta?: number;
  }): {
    netlinkProtocol: number;
    ctnetlinkSubsystem: number;
    eventProgramType: number;
    openNamespaceDelayMs: number;
    dropProgramOffsetDelta: number;
  };
  /** Attaches the drop probe with the verifier's statistics, and detaches it. */
  _dropProgram(): { instructions: number; verifier: { processedInsns: number; summary: string } };
}

let binding: NativeBinding | undefined;

/** The addon, loaded on first use (prebuilds/ or build/Release via node-gyp-build). */
export function loadBinding(): NativeBinding {
  if (!binding) {
    const load = require('node-gyp-build') as (dir: string) => unknown;
    binding = load(path.join(__dirname, '..')) as NativeBinding;
  }
  return binding;
}
