#!/usr/bin/env node
// Traffic generator for integration tests, run inside a test namespace with
// `ip netns exec NS node traffic.mjs MODE N`. Prints one JSON result line.
//   tcp N   N TCP connections to a loopback server, each opened, then closed by both ends.
//   udp N   N UDP sockets, each sending one datagram to a loopback receiver (one conntrack
//           entry each); sends the kernel drops fail with EPERM and are counted as failed.
//   udp-echo N   N UDP request/response flows (NEW, then an UPDATE for the reply).
//   paced N MS   N UDP flows like udp's, spread evenly over MS milliseconds (drops that go on
//                for a while, not one burst).
//   flood N      N UDP flows as fast as Node sends: one datagram to each of 64,000 destination
//                ports (1024 up) on 127.0.0.1 per socket, nothing listening: a burst of NEW
//                events (and of DESTROYs when they expire), for tests of a monitor under load.
//   hold E C     E established TCP connections and C half-closed ones (client sent FIN, the
//                server did not close: CLOSE_WAIT in conntrack), held until stdin closes; prints
//                the result when they are all set up, then closes everything and exits.
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

async function hold(established, halfClosed) {
  const serverSide = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    serverSide.push(socket);
    socket.on('error', () => {});
    socket.resume();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
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

if (mode === 'hold') {
  await hold(Number(process.argv[3]), Number(process.argv[4]));
  process.exit(0);
}
const run = { tcp, udp, 'udp-echo': udpEcho, flood, paced: (n) => udp(n, Number(process.argv[4])) }[mode];
if (!run || !Number.isInteger(count) || count < 0) {
  console.error('usage: traffic.mjs tcp|udp|udp-echo N | paced N MS | flood N | hold E C');
  process.exit(2);
}
console.log(JSON.stringify(await run(count)));
