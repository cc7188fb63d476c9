/**
 * MetricsServer (serve's HTTP server) in this process, on loopback, with raw sockets where a
 * client must misbehave and with real clients (curl, fetch) where it must not. The attacks on
 * the real `serve` process, with its RSS measured, are in serve-attack.test.ts.
 */
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { MetricsServer, type MetricsServerLimits } from '../dist/cli/metrics-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const servers: MetricsServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  sockets.splice(0).forEach((s) => s.destroy());
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const BODY = '# HELP x a metric\n# TYPE x gauge\nx 1\n';

async function serve(limits: Partial<MetricsServerLimits> = {}, body = BODY) {
  let renders = 0;
  const server = new MetricsServer({
    render: async () => {
      renders++;
      await sleep(5); // prom-client renders asynchronously
      return body;
    },
    contentType: 'text/plain; version=0.0.4; charset=utf-8',
    limits,
  });
  servers.push(server);
  await server.start();
  const port = await server.listen(0, '127.0.0.1');
  return { server, port, url: `http://127.0.0.1:${port}`, renders: () => renders };
}

/** A raw client: what it was sent back, and whether the server closed the connection. */
function raw(port: number) {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  let text = '';
  let closed = false;
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (text += d));
  socket.on('error', () => {});
  const ended = new Promise<void>((resolve) => socket.on('close', () => ((closed = true), resolve())));
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return {
    socket,
    connected,
    ended,
    send: (s: string) => socket.write(s, 'latin1'),
    text: () => text,
    closed: () => closed,
    statuses: () => [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1])),
  };
}

const until = async (condition: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(10);
  }
};
const GET = (path = '/metrics', extra = '') => `GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`;

describe('MetricsServer', () => {
  it('renders once per refresh, however many scrapes share it', async () => {
    const { server, url, renders } = await serve();
    expect(renders()).toBe(1);
    const bodies = await Promise.all(Array.from({ length: 50 }, () => fetch(`${url}/metrics`).then((r) => r.text())));
    expect(new Set(bodies)).toEqual(new Set([BODY]));
    expect(renders()).toBe(1); // 50 scrapes, no rendering
    await Promise.all([server.refresh(), server.refresh(), server.refresh()]); // one tick's samples
    expect(renders()).toBe(2);
    expect(server.stats()).toMatchObject({ renders: 2, served: 50 });
  });

  it('answers real clients: curl with keep-alive, HEAD, 404, 405, fetch', async () => {
    const { url } = await serve();
    const { stderr, stdout } = await promisify(execFile)('curl', [
      '-sv',
      `${url}/metrics`,
      `${url}/nope`,
      '-X',
      'GET',
      `${url}/`,
    ]);
    expect(stdout).toBe(`${BODY}not found\nconntrack-monitor: metrics at /metrics\n`);
    expect(stderr).toMatch(/Re-using existing connection/); // keep-alive
    expect(stderr).toMatch(/< HTTP\/1\.1 200 OK\r?\n< Content-Type: text\/plain; version=0\.0\.4; charset=utf-8/);
    expect(stderr).toMatch(/< HTTP\/1\.1 404 Not Found/);
    const head = await fetch(`${url}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(BODY.length));
    expect(await head.text()).toBe('');
    const post = await fetch(`${url}/metrics`, { method: 'DELETE' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(`${url}/metrics?name[]=x`)).status).toBe(200);
  });

  it.each([
    ['a body', `POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello`, 400],
    ['chunked framing', `GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
    ['no Host', `GET /metrics HTTP/1.1\r\n\r\n`, 400],
    ['two Hosts', `GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, 400],
    ['obsolete line folding', `GET /metrics HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n`, 400],
    ['a space before the colon', `GET /metrics HTTP/1.1\r\nHost : t\r\n\r\n`, 400],
    ['a bad request line', `GET /metrics HTTP/2.0\r\nHost: t\r\n\r\n`, 400],
    // RFC 9110 5.5: a field value is visible characters, spaces and tabs.
    ['a NUL in a header value', `GET /metrics HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n`, 400],
    ['a NUL in the Host value', `GET /metrics HTTP/1.1\r\nHost: t\x00evil\r\n\r\n`, 400],
    ['a bare CR in a header value', `GET /metrics HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n`, 400],
    ['a bare LF in a header value', `GET /metrics HTTP/1.1\r\nHost: t\r\nX-A: a\nInjected: b\r\n\r\n`, 400],
    [
      'an ESC sequence in a header value',
      `GET /metrics HTTP/1.1\r\nHost: t\r\nUser-Agent: \x1b]0;title\x07\r\n\r\n`,
      400,
    ],
    ['DEL in a header value', `GET /metrics HTTP/1.1\r\nHost: t\r\nX-A: a\x7f\r\n\r\n`, 400],
    ['a control byte in the request target', `GET /metrics\x01 HTTP/1.1\r\nHost: t\r\n\r\n`, 400],
    ['a head over 8 KiB', `GET /metrics HTTP/1.1\r\nHost: t\r\nX: ${'a'.repeat(9000)}\r\n\r\n`, 431],
    ['an endless head', `GET /metrics HTTP/1.1\r\nHost: t\r\nX: ${'a'.repeat(20000)}`, 431],
  ])('refuses %s with one answer and closes: nothing is left to misread', async (_, request, status) => {
    const { port } = await serve();
    const c = raw(port);
    c.send(request + GET()); // a request after it must never be answered
    await c.ended;
    expect(c.statuses()).toEqual([status]);
    expect(c.text()).toMatch(/\r\nConnection: close\r\n/);
  });

  it('takes tabs, spaces and obs-text (bytes 0x80-0xff) in header values, as RFC 9110 allows', async () => {
    const { port } = await serve();
    const c = raw(port);
    c.send(`GET /metrics HTTP/1.1\r\nHost: t\r\nX-A: a\tb c \xe9\xff\r\nConnection: close\r\n\r\n`);
    await c.ended;
    expect(c.statuses()).toEqual([200]);
  });

  it('ignores empty lines before a request line, and reads a head split across packets', async () => {
    const { port } = await serve();
    const c = raw(port);
    c.send('\r\n\r\nGET /metrics HTTP/1.1\r\nHo');
    await sleep(50);
    c.send('st: t\r\n\r');
    await sleep(50);
    c.send('\n');
    await until(() => c.text().endsWith(BODY));
    expect(c.statuses()).toEqual([200]);
  });

  it('HTTP/1.0 and Connection: close get one answer, then the connection ends', async () => {
    const { port } = await serve();
    for (const request of [`GET /metrics HTTP/1.0\r\n\r\n`, GET('/metrics', 'Connection: keep-alive, close\r\n')]) {
      const c = raw(port);
      c.send(request);
      await c.ended;
      expect(c.statuses()).toEqual([200]);
      expect(c.text().endsWith(BODY)).toBe(true);
    }
  });

  it('answers at most maxPipelined requests sent ahead of their answers, then closes', async () => {
    const { port, server } = await serve({ maxPipelined: 16 });
    const c = raw(port);
    c.send(GET().repeat(100));
    await c.ended;
    expect(c.statuses()).toEqual(Array(16).fill(200));
    expect(c.text().match(/Connection: close/g)).toHaveLength(1);
    // One request at a time, waiting for each answer: no limit but maxRequestsPerConnection.
    const polite = raw(port);
    for (let i = 1; i <= 40; i++) {
      polite.send(GET());
      await until(() => polite.statuses().length === i);
    }
    expect(polite.closed()).toBe(false);
    expect(server.stats().served).toBe(56);
  });

  it('says Connection: close after maxRequestsPerConnection', async () => {
    const { port } = await serve({ maxRequestsPerConnection: 3 });
    const c = raw(port);
    for (let i = 1; i <= 3; i++) {
      c.send(GET());
      await until(() => c.statuses().length === i);
    }
    await c.ended;
    expect(c.text().match(/Connection: close/g)).toHaveLength(1);
    expect(c.text().lastIndexOf('Connection: close')).toBeGreaterThan(c.text().lastIndexOf('HTTP/1.1 200'));
  });

  it('when full, evicts the connection idle longest and admits the new one', async () => {
    const { port, server } = await serve({ maxConnections: 4 });
    const scrape = async (extra = '') => {
      const c = raw(port);
      c.send(GET('/metrics', extra));
      await until(() => c.text().endsWith(BODY));
      return c;
    };
    const keepAlive = await scrape(); // served, then idle: evicted first
    const halfOpen = [raw(port), raw(port), raw(port)]; // connected, nothing sent
    await Promise.all(halfOpen.map((c) => c.connected));
    await until(() => server.stats().connections === 4);
    const scraper = await scrape();
    await keepAlive.ended;
    expect(halfOpen.map((c) => c.closed())).toEqual([false, false, false]);
    // Full of half-open connections and one idle scraper: the idle one goes first again...
    await (
      await scrape('Connection: close\r\n')
    ).ended;
    await scraper.ended;
    expect(halfOpen.map((c) => c.closed())).toEqual([false, false, false]);
    await until(() => server.stats().connections === 3);
    // ...and with none idle, the oldest half-open one.
    const late = raw(port);
    await late.connected;
    await until(() => server.stats().connections === 4);
    raw(port);
    await halfOpen[0]!.ended;
    expect(halfOpen.map((c) => c.closed())).toEqual([true, false, false]);
    expect(server.stats().evicted).toBe(3);
  });

  it('closes a half-open or slowloris connection at the head deadline', async () => {
    const { port, server } = await serve({ headersTimeoutMs: 300 });
    const silent = raw(port);
    const slow = raw(port);
    slow.send('GET /metrics HTTP/1.1\r\nHo');
    const ticker = setInterval(() => slow.send('a'), 100);
    const started = Date.now();
    await Promise.all([silent.ended, slow.ended]);
    clearInterval(ticker);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(slow.statuses()).toEqual([]);
    expect(server.stats().headTimeouts).toBe(2);
  });

  it('stops reading a client that does not take its answers, and closes it at the stall deadline', async () => {
    // 32 MiB: more than the kernel's socket buffers hold, so the answer waits on the client.
    const { port, server } = await serve({ stallTimeoutMs: 500 }, 'x'.repeat(32 << 20));
    const c = raw(port);
    c.socket.pause(); // never reads
    await c.connected;
    c.send(GET().repeat(3));
    const started = Date.now();
    await until(() => server.stats().connections === 0, 5000);
    expect(Date.now() - started).toBeLessThan(2500);
    expect(server.stats()).toMatchObject({ stalled: 1, served: 1 }); // the next two were never read
  });

  it('closes an idle keep-alive connection after keepAliveTimeoutMs', async () => {
    const { port } = await serve({ keepAliveTimeoutMs: 300 });
    const c = raw(port);
    c.send(GET());
    await until(() => c.statuses().length === 1);
    const started = Date.now();
    await c.ended;
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('keeps serving the previous rendering when a rendering fails, and says so when there is none', async () => {
    let fail = false;
    const server = new MetricsServer({
      render: async () => {
        if (fail) throw new Error('collect failed');
        return BODY;
      },
      contentType: 'text/plain',
    });
    servers.push(server);
    await server.start();
    const port = await server.listen(0, '127.0.0.1');
    fail = true;
    await server.refresh();
    expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toBe(BODY);
    const broken = new MetricsServer({ render: () => Promise.reject(new Error('collect failed')), contentType: 'x' });
    servers.push(broken);
    await broken.start();
    const res = await fetch(`http://127.0.0.1:${await broken.listen(0, '127.0.0.1')}/metrics`);
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('collect failed\n');
  });
});
