#!/usr/bin/env node
// Traffic generator for integration tests, run inside a test namespace with
// `ip netns exec NS node traffic.mjs MODE N`. Prints one JSON result line.
//   tcp N   N TCP connections to a loopback server, each opened, then closed by both ends.
//   udp N   N UDP sockets, each sending one datagram to a loopback receiver (one conntrack
//           entry each); sends the kernel drops fail with EPERM and are counted as failed.
//   udp-echo N   N UDP request/response flows (NEW, then an UPDATE for the reply).
//   udp-stream N one UDP flow of N datagrams, 200 ms apart, never answered: the kernel
//                refreshes its timeout with each one and sends no event after the NEW.
//   paced N MS   N UDP flows like udp's, spread evenly over MS milliseconds (drops that go on
//                for a while, not one burst).
//   flood N      N UDP flows as fast as Node sends: one datagram to each of 64,000 destination
//                ports (1024 up) on 127.0.0.1 per socket, nothing listening: a burst of NEW
//                events (and of DESTROYs when they expire), for tests of a monitor under load.
//   hold E C     E established TCP connections and C half-closed ones (client sent FIN, the
//                server did not close: CLOSE_WAIT in conntrack), held until stdin closes; prints
//                the result when they are all set up, then closes everything and exits.
//   tcp-shapes N  N TCP connections of each shape: reset by the client (RST), closed by both
//                ends at once, half-closed by the client while the server sends then closes,
//                SYNs to a closed port (answered by RST), and opened and closed over IPv6.
//   keepalive A O H S MS [PORT]  flows kept alive by packets every MS milliseconds, which refresh
//                their timeouts and send no event, held until stdin closes: A answered UDP flows
//                (request and reply: the kernel's UDP "stream" timeout), O one-way UDP flows
//                (nobody listens: syslog, statsd), H TCP connections half-closed by the client
//                while the server keeps sending (CLOSE_WAIT), and S connections whose SYN goes to
//                PORT, where the namespace drops it: SYN_SENT, retransmitted by the kernel.
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, countText] = process.argv.slice(2);
const count = Number(countText);

async function tcp(n) {
  const server = net.createServer((socket) => socket.on('data', () => {}).on('end', () => socket.end()));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  let ok = 0;
  let failed = 0;
  for (let i = 0; i < n; i++) {
    await new Promise((resolve) => {
      const client = net.connect(port, '127.0.0.1');
      client.on('connect', () => client.end('x'));
      client.on('close', (hadError) => {
        if (hadError) failed++;
        else ok++;
        resolve();
      });
      client.on('error', () => {});
      client.resume();
    });
  }
  server.close();
  return { ok, failed };
}

async function udp(n, spreadMs = 0) {
  const receiver = dgram.createSocket('udp4');
  await new Promise((resolve) => receiver.bind(0, '127.0.0.1', resolve));
  const { port } = receiver.address();
  const sockets = [];
  const errors = {};
  const failedSourcePorts = [];
  let ok = 0;
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const due = started + (spreadMs * i) / n;
    if (spreadMs > 0 && performance.now() < due) await new Promise((r) => setTimeout(r, due - performance.now()));
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    await new Promise((resolve) =>
      s.send('x', port, '127.0.0.1', (err) => {
        if (err) {
          errors[err.code] = (errors[err.code] ?? 0) + 1;
          failedSourcePorts.push(s.address().port); // bound by the send, before netfilter saw it
        } else ok++;
        resolve();
      }),
    );
  }
  for (const s of sockets) s.close();
  receiver.close();
  const failed = Object.values(errors).reduce((a, b) => a + b, 0);
  return { ok, failed, errors, port, failedSourcePorts };
}

async function udpEcho(n) {
  const server = dgram.createSocket('udp4');
  server.on('message', (msg, peer) => server.send(msg, peer.port, peer.address));
  await new Promise((resolve) => server.bind(0, '127.0.0.1', resolve));
  const { port } = server.address();
  let ok = 0;
  // Sockets stay open until the end: a closed one's port could be handed out again, and a
  // reused port would be the same flow (one entry, no NEW) as the earlier one.
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    await new Promise((resolve) => {
      s.once('message', () => {
        ok++;
        resolve();
      });
      s.send('ping', port, '127.0.0.1');
    });
  }
  for (const s of sockets) s.close();
  server.close();
  return { ok, failed: n - ok };
}

async function udpStream(n) {
  const sink = dgram.createSocket('udp4');
  await new Promise((resolve) => sink.bind(0, '127.0.0.1', resolve));
  const { port } = sink.address();
  const s = dgram.createSocket('udp4');
  let ok = 0;
  for (let i = 0; i < n; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 200));
    await new Promise((resolve) => s.send('x', port, '127.0.0.1', (err) => resolve(err || ok++)));
  }
  s.close();
  sink.close();
  return { ok, failed: n - ok };
}

async function flood(n) {
  let ok = 0;
  let failed = 0;
  const started = performance.now();
  // A socket per 64,000 flows: each flow is one (source port, destination port) pair.
  for (let done = 0; done < n;) {
    const s = dgram.createSocket('udp4');
    await new Promise((resolve) => s.bind(0, '127.0.0.1', resolve));
    const flows = Math.min(64000, n - done);
    for (let sent = 0; sent < flows;) {
      // In batches, so the sends do not all queue in libuv at once.
      const batch = Math.min(1000, flows - sent);
      await Promise.all(
        Array.from(
          { length: batch },
          (_, i) =>
            new Promise((resolve) =>
              s.send('x', 1024 + sent + i, '127.0.0.1', (err) => resolve(err ? failed++ : ok++)),
            ),
        ),
      );
      sent += batch;
    }
    s.close();
    done += flows;
  }
  return { ok, failed, perSecond: Math.round(n / ((performance.now() - started) / 1000)) };
}

/** A loopback TCP server that keeps every connection it accepts half-open: its sockets, to close. */
async function halfOpenServer() {
  const serverSide = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    serverSide.push(socket);
    socket.on('error', () => {});
    socket.resume();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, serverSide };
}

async function hold(established, halfClosed) {
  const { server, serverSide } = await halfOpenServer();
  const { port } = server.address();
  const clients = [];
  const connect = () =>
    new Promise((resolve) => {
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(c));
      c.on('error', () => {});
      c.resume();
      clients.push(c);
    });
  for (let i = 0; i < established; i++) await connect();
  for (let i = 0; i < halfClosed; i++) (await connect()).end();
  await new Promise((resolve) => setTimeout(resolve, 200)); // FINs and ACKs settle
  console.log(JSON.stringify({ ok: established + halfClosed, failed: 0 }));
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  for (const c of clients) c.destroy();
  for (const s of serverSide) s.end();
  server.close();
  await new Promise((resolve) => setTimeout(resolve, 200));
  return null;
}

async function tcpShapes(n) {
  const servers = [];
  const listen = async (host, onSocket) => {
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => {});
      onSocket(socket);
    });
    await new Promise((resolve) => server.listen(0, host, resolve));
    servers.push(server);
    return server.address().port;
  };
  const connection = (port, host, onConnect) =>
    new Promise((resolve) => {
      const c = net.connect({ port, host, allowHalfOpen: true }, () => onConnect(c));
      c.on('error', () => {});
      c.on('close', resolve);
      c.resume();
    });
  const shapes = {
    reset: [await listen('127.0.0.1', (s) => s.resume()), '127.0.0.1', (c) => c.resetAndDestroy()],
    simultaneous: [
      await listen('127.0.0.1', (s) => s.resume().end()),
      '127.0.0.1',
      (c) => {
        c.end();
        c.on('end', () => c.destroy());
      },
    ],
    halfClosedWithData: [
      await listen('127.0.0.1', (s) => {
        s.resume();
        s.on('end', () => {
          for (let i = 0; i < 3; i++) s.write('data');
          s.end();
        });
      }),
      '127.0.0.1',
      (c) => c.end('request'),
    ],
    ipv6: [await listen('::1', (s) => s.resume().on('end', () => s.end())), '::1', (c) => c.end('x')],
  };
  for (const [port, host, onConnect] of Object.values(shapes))
    for (let i = 0; i < n; i++) await connection(port, host, onConnect);
  // A port nothing listens on: the SYN is answered by RST.
  const closedPort = await listen('127.0.0.1', () => {});
  servers.pop().close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  for (let i = 0; i < n; i++)
    await new Promise((resolve) => net.connect(closedPort, '127.0.0.1').on('error', resolve).on('connect', resolve));
  for (const server of servers) server.close();
  await new Promise((resolve) => setTimeout(resolve, 200)); // last ACKs settle
  return { ok: 5 * n, failed: 0 };
}

async function keepalive(answered, oneWay, halfClosed, syns, periodMs, silentPort) {
  const echo = dgram.createSocket('udp4');
  echo.on('message', (msg, peer) => echo.send(msg, peer.port, peer.address));
  await new Promise((resolve) => echo.bind(0, '127.0.0.1', resolve));
  const sink = dgram.createSocket('udp4'); // bound, never read: no ICMP unreachable, no reply
  await new Promise((resolve) => sink.bind(0, '127.0.0.1', resolve));
  const udp = [];
  for (let i = 0; i < answered + oneWay; i++) {
    const s = dgram.createSocket('udp4');
    s.on('message', () => {});
    await new Promise((resolve) => s.bind(0, '127.0.0.1', resolve));
    udp.push({ s, port: i < answered ? echo.address().port : sink.address().port });
  }
  const { server, serverSide } = await halfOpenServer();
  const clients = [];
  for (let i = 0; i < halfClosed; i++) {
    const c = await new Promise((resolve) => {
      const c = net.connect({ port: server.address().port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(c));
      c.on('error', () => {});
    });
    c.resume();
    c.end(); // FIN from the client; the server's side stays open and keeps sending
    clients.push(c);
  }
  for (let i = 0; i < syns; i++) {
    const c = net.connect({ port: silentPort, host: '127.0.0.1' });
    c.on('error', () => {});
    clients.push(c);
  }
  const send = () => {
    for (const { s, port } of udp) s.send('x', port, '127.0.0.1');
    for (const socket of serverSide) socket.write('x');
  };
  send();
  const timer = setInterval(send, periodMs);
  await new Promise((resolve) => setTimeout(resolve, 200)); // FINs and replies settle
  console.log(JSON.stringify({ ok: answered + oneWay + halfClosed + syns, failed: 0, sinkPort: sink.address().port }));
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  clearInterval(timer);
  for (const c of clients) c.destroy();
  for (const socket of serverSide) socket.destroy();
  for (const { s } of udp) s.close();
  echo.close();
  sink.close();
  server.close();
}

if (mode === 'keepalive') {
  const [a, o, h, s, ms, port] = process.argv.slice(3).map(Number);
  await keepalive(a, o, h, s, ms, port);
  process.exit(0);
}
if (mode === 'hold') {
  await hold(Number(process.argv[3]), Number(process.argv[4]));
  process.exit(0);
}
const run = {
  tcp,
  udp,
  'udp-echo': udpEcho,
  'udp-stream': udpStream,
  'tcp-shapes': tcpShapes,
  flood,
  paced: (n) => udp(n, Number(process.argv[4])),
}[mode];
if (!run || !Number.isInteger(count) || count < 0) {
  console.error(
    'usage: traffic.mjs tcp|udp|udp-echo|udp-stream|tcp-shapes N | paced N MS | flood N | hold E C | keepalive A O H S MS [PORT]',
  );
  process.exit(2);
}
console.log(JSON.stringify(await run(count)));
