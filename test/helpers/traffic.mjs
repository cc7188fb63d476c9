#!/usr/bin/env node
// Traffic generator for integration tests, run inside a test namespace with
// `ip netns exec NS node traffic.mjs MODE N`. Prints one JSON result line.
//   tcp N   N TCP connections to a loopback server, each opened, then closed by both ends.
//   udp N   N UDP sockets, each sending one datagram to a loopback receiver (one conntrack
//           entry each); sends the kernel drops fail with EPERM and are counted as failed.
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
        hadError ? failed++ : ok++;
        resolve();
      });
      client.on('error', () => {});
      client.resume();
    });
  }
  server.close();
  return { ok, failed };
}

async function udp(n) {
  const receiver = dgram.createSocket('udp4');
  await new Promise((resolve) => receiver.bind(0, '127.0.0.1', resolve));
  const { port } = receiver.address();
  const sockets = [];
  const errors = {};
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    await new Promise((resolve) =>
      s.send('x', port, '127.0.0.1', (err) => {
        if (err) errors[err.code] = (errors[err.code] ?? 0) + 1;
        else ok++;
        resolve();
      }),
    );
  }
  for (const s of sockets) s.close();
  receiver.close();
  const failed = Object.values(errors).reduce((a, b) => a + b, 0);
  return { ok, failed, errors };
}

const run = { tcp, udp }[mode];
if (!run || !Number.isInteger(count) || count < 0) {
  console.error('usage: traffic.mjs tcp|udp N');
  process.exit(2);
}
console.log(JSON.stringify(await run(count)));
