/**
 * The HTTP server behind `serve`: GET /metrics for Prometheus, with memory bounded whatever its
 * clients do and a well-behaved scraper always served.
 *
 * Why not node:http. Measured with benchmarks/serve-attack.mjs (clients that pipeline
 * `GET /metrics` with a 4 KiB receive buffer and never read): node:http parses every request
 * of a 64 KiB read (about a thousand) into request and response objects before anything can
 * stop it, and when such a connection closes it aborts each pending request with an Error
 * whose stack it captures: ~80 µs per pipelined request. Even with a synchronous, shared
 * rendering and a cap on pipelined requests, 20 such clients held good scrapes at ~0.8-3 s.
 * A scrape endpoint needs little of HTTP/1.1: GET and HEAD without a body, keep-alive,
 * Content-Length. This server reads one request head at a time and reads the next only once
 * the answer to the previous one has been taken by the kernel, so a pipelining client that does
 * not read holds at most one read chunk and one socket buffer; anything it does not need
 * (a body, chunked framing, obsolete line folding, a malformed line) gets a 400 and the
 * connection is closed, so there is no framing to disagree about.
 *
 * The metrics change once per interval, so they are rendered once per new sample into one
 * Buffer that every answer shares (refresh()); a scrape never renders.
 *
 * Limits (DEFAULT_LIMITS):
 * - `maxConnections`; one more evicts another (one already answered with `Connection: close`,
 *   else the one idle longest between requests, then one still sending its request head, then
 *   one not taking its answers): a new scraper is never refused;
 * - a request head within `headersTimeoutMs` (from the connection or its first byte) and of at
 *   most `maxHeaderBytes`; an idle keep-alive connection for `keepAliveTimeoutMs`; a client
 *   that takes none of its answer for `stallTimeoutMs` is closed;
 * - `maxRequestsPerConnection`, and `maxPipelined` requests in a row sent before the answer to
 *   the previous one (Prometheus never pipelines), then `Connection: close`.
 */
import { createServer, type Server, type Socket } from 'node:net';

export interface MetricsServerLimits {
  maxConnections: number;
  maxPipelined: number;
  maxRequestsPerConnection: number;
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  stallTimeoutMs: number;
}

export const DEFAULT_LIMITS: MetricsServerLimits = {
  maxConnections: 512,
  maxPipelined: 16,
  maxRequestsPerConnection: 1000,
  maxHeaderBytes: 8192,
  headersTimeoutMs: 5_000,
  keepAliveTimeoutMs: 30_000,
  stallTimeoutMs: 10_000,
};

export interface MetricsServerOptions {
  /** Renders the exposition (a prom-client registry's metrics()). */
  render: () => Promise<string>;
  contentType: string;
  limits?: Partial<MetricsServerLimits>;
}

/** What the server did about its clients (tests, and `serve` says it at exit). */
export interface MetricsServerStats {
  connections: number;
  renders: number;
  served: number;
  /** Connections closed to admit a new one. */
  evicted: number;
  /** Closed for a request head not complete within headersTimeoutMs. */
  headTimeouts: number;
  /** Closed for taking none of an answer for stallTimeoutMs. */
  stalled: number;
  /** Requests answered 400 or 431, after which the connection was closed. */
  rejected: number;
}

/**
 * Where a connection is: waiting for (or receiving) a request head; idle between requests of a
 * keep-alive connection; waiting for the client to take an answer (the socket's buffer is
 * full); or answered with `Connection: close` and waiting for the kernel to deliver it.
 * Connections are evicted in this order: closing, idle, head, draining.
 */
type Phase = 'closing' | 'idle' | 'head' | 'draining';
const EVICTION_ORDER: Record<Phase, number> = { closing: 0, idle: 1, head: 2, draining: 3 };
/** What a closing connection may still send before it is no longer read at all. */
const LINGER_BYTES = 4096;

interface Connection {
  socket: Socket;
  phase: Phase;
  /** When the phase began (while draining: when the client last took an answer). */
  since: number;
  /** Bytes read and not yet parsed, from `offset`: at most one read chunk or one partial head. */
  input: Buffer | null;
  offset: number;
  requests: number;
  /** Requests answered in a row that had the next one already behind them. */
  pipelined: number;
  /** Bytes read and thrown away after `Connection: close`. */
  discarded: number;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// The request target is visible ASCII only (RFC 9112 3.2, RFC 3986).
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/;
/**
 * A field value is visible characters, spaces and tabs (RFC 9110 5.5): NUL, CR, LF and every
 * other control byte make the request a 400. The head is decoded as latin1, one char per byte.
 */
// eslint-disable-next-line no-control-regex -- the bytes being refused
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const TEXT = 'text/plain; charset=utf-8';
const ROOT = Buffer.from('conntrack-monitor: metrics at /metrics\n');
const NOT_FOUND = Buffer.from('not found\n');
const REASONS: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
};

export class MetricsServer {
  private readonly limits: MetricsServerLimits;
  private readonly server: Server;
  private readonly connections = new Map<Socket, Connection>();
  private readonly sweeper: NodeJS.Timeout;
  private body: Buffer | null = null;
  private renderError: string | null = null;
  private rendering: Promise<void> | null = null;
  private dirty = false;
  private closed = false;
  private date = { second: -1, text: '' };
  private readonly counters = { renders: 0, served: 0, evicted: 0, headTimeouts: 0, stalled: 0, rejected: 0 };

  constructor(private readonly options: MetricsServerOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.server = createServer((socket) => this.admit(socket));
    // Deadlines are checked once a second for every connection (at most maxConnections).
    const l = this.limits;
    this.sweeper = setInterval(
      () => this.sweep(),
      Math.min(1000, l.headersTimeoutMs, l.keepAliveTimeoutMs, l.stallTimeoutMs),
    );
    this.sweeper.unref();
  }

  /** Renders the metrics (before listening, so that the first scrape has them). */
  start(): Promise<void> {
    return this.refresh();
  }

  /**
   * The metrics changed (a new sample): render them again, once for however many calls arrive
   * before the rendering starts. Scrapes are answered from the previous rendering meanwhile.
   */
  refresh(): Promise<void> {
    this.dirty = true;
    this.rendering ??= (async () => {
      await new Promise<void>((resolve) => setImmediate(resolve)); // one rendering per tick
      while (this.dirty && !this.closed) {
        this.dirty = false;
        try {
          this.body = Buffer.from(await this.options.render(), 'utf8');
          this.renderError = null;
          this.counters.renders++;
        } catch (err) {
          this.renderError = (err as Error).message; // the previous rendering stays
        }
      }
      this.rendering = null;
    })();
    return this.rendering;
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as { port: number }).port);
      });
    });
  }

  close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.connections.keys()) socket.destroy();
    });
  }

  stats(): MetricsServerStats {
    return { connections: this.connections.size, ...this.counters };
  }

  private admit(socket: Socket): void {
    const c: Connection = {
      socket,
      phase: 'head', // the head deadline runs from the connection
      since: performance.now(),
      input: null,
      offset: 0,
      requests: 0,
      pipelined: 0,
      discarded: 0,
    };
    this.connections.set(socket, c);
    socket.setNoDelay(true);
    socket.on('error', () => {}); // resets and the like: 'close' follows and cleans up
    socket.on('close', () => this.connections.delete(socket));
    socket.on('data', (chunk: Buffer) => this.received(c, chunk));
    socket.on('drain', () => {
      if (c.phase !== 'draining') return;
      c.since = performance.now(); // the client took the answer: progress
      this.serve(c);
    });
    if (this.connections.size > this.limits.maxConnections) this.evictFor(socket);
  }

  /**
   * Full: close the connection that matters least, so that a new one is always admitted (see
   * EVICTION_ORDER; within a phase, the one in it longest). Never the new one.
   */
  private evictFor(newcomer: Socket): void {
    let victim: Connection | null = null;
    for (const c of this.connections.values()) {
      if (c.socket === newcomer) continue;
      const rank = victim === null ? -1 : EVICTION_ORDER[c.phase] - EVICTION_ORDER[victim.phase];
      if (rank < 0 || (rank === 0 && c.since < victim!.since)) victim = c;
    }
    if (victim) {
      this.counters.evicted++;
      victim.socket.destroy();
    }
  }

  private sweep(): void {
    const now = performance.now();
    const l = this.limits;
    for (const c of this.connections.values()) {
      const age = now - c.since;
      if (c.phase === 'head' && age > l.headersTimeoutMs) {
        this.counters.headTimeouts++;
        c.socket.destroy();
      } else if ((c.phase === 'draining' || c.phase === 'closing') && age > l.stallTimeoutMs) {
        this.counters.stalled++;
        c.socket.destroy();
      } else if (c.phase === 'idle' && age > l.keepAliveTimeoutMs) {
        c.socket.destroy();
      }
    }
  }

  private received(c: Connection, chunk: Buffer): void {
    if (c.phase === 'closing') {
      // Read on, to see the client close its end, but not for long: past LINGER_BYTES the
      // connection waits, unread, for the stall deadline.
      c.discarded += chunk.length;
      if (c.discarded > LINGER_BYTES) c.socket.pause();
      return;
    }
    if (c.phase === 'idle') this.enter(c, 'head'); // the head deadline runs from its first byte
    if (c.input === null) {
      c.input = chunk;
    } else {
      c.input = Buffer.concat([c.input.subarray(c.offset), chunk]); // after a partial head: small
    }
    c.offset = 0;
    this.serve(c);
  }

  /**
   * Answers the complete request heads in the input, one at a time, while the socket takes the
   * answers; stops reading as soon as it does not (back-pressure), and goes on at 'drain'.
   */
  private serve(c: Connection): void {
    const socket = c.socket;
    while (c.phase !== 'closing' && !socket.destroyed) {
      if (socket.writableNeedDrain) {
        if (c.phase !== 'draining') this.enter(c, 'draining');
        socket.pause();
        return;
      }
      const input = c.input;
      // Empty lines before a request line are ignored (RFC 9112 2.2).
      while (input !== null && input[c.offset] === 13 && input[c.offset + 1] === 10) c.offset += 2;
      const end = input === null ? -1 : input.indexOf(HEAD_END, c.offset);
      if (input === null || end < 0) {
        const pending = input === null ? 0 : input.length - c.offset;
        if (pending > this.limits.maxHeaderBytes) return this.reject(c, 431);
        // Keep only the partial head, not the whole read chunk it came in.
        c.input = pending === 0 ? null : Buffer.from(input!.subarray(c.offset));
        c.offset = 0;
        if (pending === 0 && c.requests > 0) this.enter(c, 'idle');
        else if (c.phase === 'draining') this.enter(c, 'head');
        socket.resume();
        return;
      }
      if (end - c.offset > this.limits.maxHeaderBytes) return this.reject(c, 431);
      const head = input.toString('latin1', c.offset, end);
      c.offset = end + HEAD_END.length;
      // Sent before its answer could have been read: a client that keeps doing that is told
      // Connection: close after maxPipelined, so that no connection costs more than that much.
      c.pipelined = c.offset < input.length ? c.pipelined + 1 : 0;
      this.answer(c, head);
      if (c.phase === 'head' || c.phase === 'idle') this.enter(c, 'head'); // the next one's
    }
  }

  private answer(c: Connection, head: string): void {
    const lines = head.split('\r\n');
    const line = REQUEST_LINE.exec(lines[0]!);
    if (!line) return this.reject(c, 400);
    const [, method, target, minor] = line;
    let close = minor === '0'; // HTTP/1.0: one request per connection
    let hosts = 0;
    for (let i = 1; i < lines.length; i++) {
      const header = lines[i]!;
      const colon = header.indexOf(':');
      // No obsolete line folding, no space before the colon, no empty names: 400, as RFC 9112 says.
      if (colon <= 0 || !TOKEN.test(header.slice(0, colon))) return this.reject(c, 400);
      const name = header.slice(0, colon).toLowerCase();
      if (CONTROL.test(header)) return this.reject(c, 400);
      const value = header.slice(colon + 1).trim();
      // A body would have to be read to find the next request: nothing here takes one.
      if (name === 'transfer-encoding' || (name === 'content-length' && value !== '0')) return this.reject(c, 400);
      if (name === 'host') hosts++;
      if (name === 'connection' && /(^|,)\s*close\s*(,|$)/i.test(value)) close = true;
    }
    if (minor === '1' && hosts !== 1) return this.reject(c, 400); // RFC 9112 3.2
    c.requests++;
    if (c.requests >= this.limits.maxRequestsPerConnection || c.pipelined >= this.limits.maxPipelined) close = true;
    const path = target!.replace(/^https?:\/\/[^/]*/i, '').split('?')[0];
    let status = 200;
    let type = TEXT;
    let body: Buffer;
    let extra = '';
    if (method !== 'GET' && method !== 'HEAD') {
      status = 405;
      body = Buffer.alloc(0);
      extra = 'Allow: GET, HEAD\r\n';
    } else if (path === '/metrics') {
      if (this.body) {
        body = this.body;
        type = this.options.contentType;
      } else {
        status = 500;
        body = Buffer.from(`${this.renderError ?? 'no metrics rendered yet'}\n`);
      }
    } else if (path === '/') {
      body = ROOT;
    } else {
      status = 404;
      body = NOT_FOUND;
    }
    this.counters.served++;
    this.send(c, status, `Content-Type: ${type}\r\n${extra}`, method === 'HEAD' ? null : body, body.length, close);
  }

  /** A request this server does not take: say why in the status line and close. */
  private reject(c: Connection, status: 400 | 431): void {
    this.counters.rejected++;
    this.send(c, status, `Content-Type: ${TEXT}\r\n`, null, 0, true);
  }

  private send(c: Connection, status: number, headers: string, body: Buffer | null, length: number, close: boolean) {
    const socket = c.socket;
    const head =
      `HTTP/1.1 ${status} ${REASONS[status]}\r\n${headers}Content-Length: ${length}\r\n` +
      `Date: ${this.httpDate()}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;
    socket.cork();
    socket.write(head, 'latin1');
    if (body !== null && body.length > 0) socket.write(body); // shared, never copied
    socket.uncork();
    if (close) {
      // The answer, then FIN; the connection ends when the client closes its side (allowHalfOpen
      // is off) or at the stall deadline. A client that already sent more is not read further.
      if (c.input !== null && c.offset < c.input.length) socket.pause();
      c.input = null;
      socket.end();
      this.enter(c, 'closing');
    }
  }

  private enter(c: Connection, phase: Phase): void {
    c.phase = phase;
    c.since = performance.now();
  }

  /** The Date header, formatted once per second. */
  private httpDate(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.date.second) this.date = { second, text: new Date(now).toUTCString() };
    return this.date.text;
  }
}
