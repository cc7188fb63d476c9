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
  tracked: { entries: number; protocols: number[]; tcpStates: number[] };
  resyncs: number;
  lastResyncMs: number | null;
  tableBytes: number;
  /** On the eBPF event path: what the kernel's filter did (cumulative); null otherwise. */
  eventProgram: {
    /** Messages it queued to user space. */
    passed: number;
    /** Non-TCP flows it tracks, not past their deadline (included in tracked.protocols). */
    tracked: number;
    /** Messages whose layout it could not parse (passed). */
    unknownLayout: number;
    /** NEWs its flow map refused (passed). */
    flowsFull: number;
    /** Times its expiry wheel was read too late and rebuilt from the flow map. */
    rebases: number;
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

/** One namespace's interval in a node report. */
export interface RawNamespaceInterval extends RawInterval {
  /** The id given to add(). */
  id: number;
  counting: CountingPath;
  /** The in-kernel counter could not be read: insert and delete are null this interval. */
  counterFailed: boolean;
  /** nf_conntrack_events of the namespace; null when unreadable. */
  eventsMode: number | null;
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
  /** EventDiagnostic slots: short, not conntrack, passed, ... */
  diagnostics: number[];
  /** Per class (tcp, udp, icmp, other): flows started minus flows ended before their deadline. */
  tracked: number[];
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
  flows?: { key: bigint; deadlineDs: number; class: number }[];
  /** Keys of slots a DESTROY marked CT_FLOW_DESTROYED during a dump. */
  destroyed?: bigint[];
  /** Nonzero wheel slots: net flows per class (tcp, udp, icmp, other). */
  wheel?: { slot: number; flows: number[] }[];
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
   * each message (BPF_PROG_TEST_RUN): what it returned for each, and its counters after.
   */
  _eventProgram(
    messages: Buffer[],
    options?: {
      variant?: 'count-only' | 'monitor';
      perMessage?: boolean;
      dumping?: boolean;
      maxFlows?: number;
      seed?: bigint;
      /** Load it asking the verifier for its statistics (EventProgramRun.verifier). */
      verifierStats?: boolean;
    },
  ): EventProgramRun;
  /** The flow key the monitor's event program gives a message's entry, from the decoder's view. */
  _flowKey(message: Buffer, seed: bigint): bigint | null;
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
