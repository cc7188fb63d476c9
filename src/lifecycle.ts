/**
 * The one lifecycle every monitor shares (ConntrackMonitor, DropMonitor, AllNamespacesMonitor):
 * start() and stop() are idempotent and safe in any order and concurrency (concurrent starts
 * share one attempt, stop() waits for a start in flight, a start after a stop waits for the stop
 * to finish), ref()/unref() hold before and after start, and errors after start go to 'error'
 * listeners or, when there are none, become process warnings, never exceptions.
 *
 * A subclass provides open() (acquire everything; throw a ConntrackError when it cannot run),
 * close() (emit the final partial interval, then release everything) and setReferenced().
 */
import { EventEmitter } from 'node:events';
import { reportError, type ConntrackError } from './errors.js';

/** The events of a monitor: its own, plus 'error'. */
type MonitorEvents<E> = E & { error: [error: ConntrackError] };

export abstract class Lifecycle<E extends Record<keyof E, unknown[]>> extends EventEmitter<MonitorEvents<E>> {
  #running = false;
  #referenced = true;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  /** Acquires what the monitor needs; rejects (with a ConntrackError) when it cannot run. */
  protected abstract open(): Promise<void>;
  /** Emits the final partial interval, then releases everything open() acquired. */
  protected abstract close(): Promise<void>;
  /** Whether the monitor's timers, threads and sockets keep the process alive. */
  protected abstract setReferenced(referenced: boolean): void;

  /** True between a successful start() and stop(). */
  get running(): boolean {
    return this.#running;
  }

  /** Whether ref() (the default) or unref() was called last. */
  protected get referenced(): boolean {
    return this.#referenced;
  }

  /** Starts monitoring; rejects with a ConntrackError when it cannot. Idempotent. */
  start(): Promise<void> {
    if (this.#running) return Promise.resolve();
    this.#starting ??= (async () => {
      await this.#stopping;
      await this.open();
      this.#running = true;
      if (!this.#referenced) this.setReferenced(false);
    })().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  /** Stops monitoring after emitting the final partial interval. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#starting?.catch(() => {});
      if (!this.#running) return;
      this.#running = false;
      await this.close();
    })().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  /** Lets the process exit while the monitor runs (like timer.unref()). */
  unref(): this {
    this.#referenced = false;
    if (this.#running) this.setReferenced(false);
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    this.#referenced = true;
    if (this.#running) this.setReferenced(true);
    return this;
  }

  /** An error after start: to 'error' listeners, else a process warning. */
  protected reportError(error: ConntrackError): void {
    reportError(this as unknown as Parameters<typeof reportError>[0], error);
  }

  /**
   * Emits an event whose listeners may throw: a listener's exception surfaces as it would from
   * any emitter (an uncaught exception on the next tick, with its stack) without stopping the
   * other listeners' turn at the next event or the monitor itself.
   */
  protected emitSafely<K extends keyof E>(event: K, ...args: E[K]): void {
    try {
      (this.emit as unknown as (event: K, ...args: E[K]) => boolean).call(this, event, ...args);
    } catch (err) {
      process.nextTick(() => {
        throw err;
      });
    }
  }
}
