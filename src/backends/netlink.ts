import type { Backend, BackendSink } from './backend.js';
import { ConntrackError } from '../errors.js';
import type { NativeBinding, NativeMonitor, NativeRecord } from '../native.js';
import type { ResolvedOptions } from '../options.js';
import { buildSample, netlinkParts } from '../sample.js';
import { COUNTER_NAMES } from '../types.js';

// process.exit() runs no environment cleanup hooks on the main thread: running readers are
// stopped from one 'exit' listener so no thread is left polling while the process tears down.
const running = new Set<{ stop(): unknown }>();
let exitHooked = false;
/** Registers (or, with add false, forgets) a native reader that 'exit' must stop. */
export function stopOnExit(native: { stop(): unknown }, add: boolean): void {
  if (!add) {
    running.delete(native);
    return;
  }
  running.add(native);
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', () => running.forEach((n) => n.stop()));
}

/** The ctnetlink backend: a native reader thread per monitor, one sample per interval. */
export class NetlinkBackend implements Backend {
  private readonly native: NativeMonitor;
  private info: ReturnType<NativeMonitor['info']> | null = null;

  /** `binding`: the addon (src/native.ts), or a fake of it in tests. */
  constructor(
    private readonly options: ResolvedOptions,
    private readonly sink: BackendSink,
    binding: NativeBinding,
  ) {
    if (binding.counterNames.join() !== COUNTER_NAMES.join()) {
      throw new Error(`addon counters ${binding.counterNames.join()} do not match this library; rebuild it`);
    }
    this.native = new binding.NativeMonitor(
      {
        netnsPath: options.netnsPath,
        intervalMs: options.intervalMs,
        receiveBufferBytes: options.receiveBufferBytes,
        resyncIntervalMs: options.resyncIntervalMs,
      },
      (records) => this.deliver(records),
    );
  }

  start(): void {
    try {
      this.native.start();
    } catch (err) {
      throw ConntrackError.fromNative(
        err as Error & Parameters<typeof ConntrackError.fromNative>[0],
        this.options.netnsPath,
      );
    }
    this.info = this.native.info();
    stopOnExit(this.native, true);
  }

  stop(): void {
    stopOnExit(this.native, false);
    this.deliver(this.native.stop());
  }

  ref(): void {
    this.native.ref();
  }

  unref(): void {
    this.native.unref();
  }

  // JS thread, once per interval (or once per batch if JS fell behind). Nothing may throw
  // back into the native callback: an error surfaces on the next tick, after every record.
  private deliver(records: NativeRecord[]): void {
    for (const record of records) {
      try {
        this.deliverOne(record);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }

  private deliverOne(record: NativeRecord): void {
    if (record.type === 'sample') {
      this.sink.sample(
        buildSample(
          netlinkParts(record.sample, {
            netns: this.options.netnsPath,
            receiveBufferBytes: this.info?.receiveBufferBytes ?? 0,
            eventsPath: this.info?.eventsPath ?? 'netlink',
            eventsPathReason: this.info?.eventsPathReason ?? null,
          }),
        ),
      );
    } else {
      this.sink.error(ConntrackError.fromNative(record.error, this.options.netnsPath));
    }
  }
}
