#!/usr/bin/env python3
"""Hostile HTTP clients for the serve tests and benchmarks/serve-attack.mjs.

Python because Node cannot set SO_RCVBUF on a TCP socket before it connects, and a small
receive buffer is what makes a client that never reads cheap for the attacker.

  http-attack.py MODE HOST PORT --clients N --seconds S

MODE:
  pipeline   each client sets a 4 KiB receive buffer, connects, and writes pipelined
             `GET /metrics` requests as fast as the server takes them; it never reads.
  slowloris  each client sends a request line, then one header byte a second; never ends it.
  halfopen   each client connects and sends nothing.

A client whose connection the server closes reconnects (pipeline, slowloris) or is counted as
closed (halfopen). Bounded: N clients, S seconds, then every socket is closed. Prints one JSON
line: connects, requests sent, connections the server closed, and connect failures.
"""
import argparse
import errno
import json
import selectors
import socket
import time

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: attack\r\n\r\n"
PIPELINE_CHUNK = REQUEST * 256  # ~10 KiB per send


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["pipeline", "slowloris", "halfopen"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rcvbuf", type=int, default=4096)
    args = ap.parse_args()

    sel = selectors.DefaultSelector()
    stats = {"mode": args.mode, "clients": args.clients, "connects": 0, "connectFailures": 0,
             "requests": 0, "closedByServer": 0}
    state = {}  # socket -> {"sent": bytes written, "next": slowloris send time, "stage": ...}

    def connect():
        s = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        if args.mode == "pipeline":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        s.setblocking(False)
        err = s.connect_ex((args.host, args.port))
        if err not in (0, errno.EINPROGRESS):
            stats["connectFailures"] += 1
            s.close()
            return None
        stats["connects"] += 1
        state[s] = {"sent": 0, "next": time.monotonic(), "stage": 0}
        events = selectors.EVENT_WRITE if args.mode == "pipeline" else selectors.EVENT_READ
        sel.register(s, events)
        return s

    def drop(s):
        sel.unregister(s)
        state.pop(s, None)
        s.close()

    for _ in range(args.clients):
        connect()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        timeout = max(0.0, min(0.2, end - time.monotonic()))
        for key, mask in sel.select(timeout):
            s = key.fileobj
            if s not in state:
                continue
            if mask & selectors.EVENT_READ and args.mode != "pipeline":
                # Only a close (or a reset) makes these readable: they send no complete request.
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    stats["closedByServer"] += 1
                    drop(s)
                    if args.mode == "slowloris":
                        connect()
                continue
            if mask & selectors.EVENT_WRITE:
                st = state[s]
                try:
                    st["sent"] += s.send(PIPELINE_CHUNK[st["sent"] % len(PIPELINE_CHUNK):])
                except BlockingIOError:
                    continue
                except OSError:
                    stats["closedByServer"] += 1
                    stats["requests"] += st["sent"] // len(REQUEST)
                    drop(s)
                    connect()
        if args.mode == "slowloris":
            now = time.monotonic()
            for s, st in list(state.items()):
                if now < st["next"]:
                    continue
                st["next"] = now + 1.0
                piece = b"GET /metrics HTTP/1.1\r\n" if st["stage"] == 0 else b"X"
                st["stage"] += 1
                try:
                    s.send(piece)
                except OSError:
                    pass  # not connected yet, or closed: the read side notices
    for s, st in list(state.items()):
        stats["requests"] += st["sent"] // len(REQUEST)
        drop(s)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
