#!/usr/bin/env node
// Flows from chosen source addresses, for the snapshot tests. Run inside a test namespace whose
// lo carries the addresses: `ip netns exec NS node flows.mjs SPEC`, SPEC a JSON array of
//   { kind, src, dst, port, count }
// kind: 'tcp-open' (ESTABLISHED), 'tcp-half' (client FIN only: CLOSE_WAIT), 'tcp-closed'
// (both closed: TIME_WAIT), 'tcp-picked-up' (an open connection whose entry is deleted, then
// closed: conntrack picks it up again mid-stream from the server's ACK, in the server's
// direction, and it closes to CLOSE_WAIT without ever being ASSURED), 'udp-reply' (a request and
// its reply), 'udp-noreply' (a request to a socket that never answers: UNREPLIED, and no ICMP
// error). Servers listen on dst:port.
// Everything is set up in order, then one result line is printed; sockets stay open until
// stdin closes (so no port, hence no flow, is reused), then the process exits.
//   steady RATE SECONDS   RATE new unreplied UDP flows per second for SECONDS, to distinct
//                         loopback addresses (one entry each), paced on the clock; prints
//                         { sent, failed } at the end.
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';

const servers = new Map();
const open = [];
const closing = new Set(); // client ports whose server side closes too (tcp-closed)
const pickedUp = new Set(); // of those, the ones picked up mid-stream (tcp-picked-up)

// Another flows.mjs of the same test may already serve dst:port: its server answers then.
function listening(server, listen) {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => (err.code === 'EADDRINUSE' ? resolve() : reject(err)));
    listen(resolve);
  });
}

async function tcpServer(dst, port) {
  const key = `tcp ${dst} ${port}`;
  if (!servers.has(key)) {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      open.push(s);
      s.on('error', () => {});
      s.resume();
      // A picked-up connection's server closes a moment after the client: its ACK of the
      // client's FIN goes first, alone, and starts the entry (a FIN cannot).
      s.on('end', () => closing.has(s.remotePort) && setTimeout(() => s.end(), pickedUp.has(s.remotePort) ? 200 : 0));
    });
    await listening(server, (done) => server.listen(port, dst, done));
    servers.set(key, server);
  }
  return servers.get(key);
}

async function udpServer(dst, port, reply) {
  const key = `udp ${dst} ${port}`;
  if (!servers.has(key)) {
    const family = net.isIPv6(dst) ? 'udp6' : 'udp4';
    const server = dgram.createSocket(family);
    if (reply) server.on('message', (msg, peer) => server.send(msg, peer.port, peer.address));
    await listening(server, (done) => server.bind(port, dst, done));
    servers.set(key, server);
  }
}

async function tcp(kind, src, dst, port) {
  await tcpServer(dst, port);
  const client = await new Promise((resolve, reject) => {
    const c = net.connect({ host: dst, port, localAddress: src, allowHalfOpen: true }, () => resolve(c));
    c.on('error', reject);
  });
  client.resume();
  open.push(client);
  if (kind === 'tcp-half') client.end();
  if (kind === 'tcp-picked-up') {
    execFileSync('conntrack', ['-D', '-p', 'tcp', '--orig-port-src', String(client.localPort)], { stdio: 'ignore' });
    closing.add(client.localPort);
    pickedUp.add(client.localPort);
    const serverClosed = new Promise((resolve) => client.once('end', resolve));
    client.end(); // the FIN cannot start an entry; the server's ACK, FIN and the last ACK do
    await serverClosed;
  }
  if (kind === 'tcp-closed') {
    // The client closes first: its end goes to TIME_WAIT, and conntrack with it.
    closing.add(client.localPort);
    await new Promise((resolve) => {
      client.on('close', resolve);
      client.end();
    });
  }
}

async function udp(kind, src, dst, port) {
  await udpServer(dst, port, kind === 'udp-reply');
  const s = dgram.createSocket(net.isIPv6(dst) ? 'udp6' : 'udp4');
  open.push(s);
  await new Promise((resolve) => s.bind(0, src, resolve));
  await new Promise((resolve, reject) => {
    if (kind === 'udp-reply') s.once('message', resolve);
    s.send('q', port, dst, (err) => (err ? reject(err) : kind === 'udp-noreply' && resolve()));
  });
}

async function steady(rate, seconds) {
  const sink = dgram.createSocket('udp4');
  await new Promise((resolve) => sink.bind(9, '0.0.0.0', resolve));
  const src = dgram.createSocket('udp4');
  let sent = 0;
  let failed = 0;
  const start = Date.now();
  while (Date.now() - start < seconds * 1000) {
    const due = Math.floor(((Date.now() - start) / 1000) * rate);
    while (sent + failed < due) {
      const j = sent + failed + 1;
      const ok = await new Promise((resolve) =>
        src.send('x', 9, `127.${(j >> 16) & 255}.${(j >> 8) & 255}.${j & 255}`, (err) => resolve(!err)),
      );
      if (ok) sent++;
      else failed++;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  src.close();
  sink.close();
  return { sent, failed };
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'steady') {
  console.log(JSON.stringify(await steady(Number(args[0]), Number(args[1]))));
  process.exit(0);
}
const spec = JSON.parse(mode);
let flows = 0;
for (const { kind, src, dst, port, count } of spec) {
  for (let i = 0; i < count; i++) {
    await (kind.startsWith('tcp') ? tcp(kind, src, dst, port) : udp(kind, src, dst, port));
    flows++;
  }
}
await new Promise((r) => setTimeout(r, 200)); // FINs and ACKs settle
console.log(JSON.stringify({ ok: flows, failed: 0 }));
process.stdin.resume();
await new Promise((resolve) => process.stdin.on('end', resolve));
for (const s of open) (s.destroy ?? s.close).call(s);
for (const s of servers.values()) s.close();
process.exit(0);
