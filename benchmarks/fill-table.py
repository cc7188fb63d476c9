#!/usr/bin/env python3
"""Fill this network namespace's conntrack table with N UDP flows, fast.

Run inside a benchmark namespace (ip netns exec NS python3 fill-table.py N). Each datagram
goes from one socket to a distinct loopback address (127.0.0.0/8), so each makes one entry;
a socket bound to the wildcard address swallows them so no ICMP errors are generated.
"""
import socket
import sys

n = int(sys.argv[1])
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("0.0.0.0", 9))
src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = failed = 0
for i in range(n):
    j = i + 1
    addr = "127.%d.%d.%d" % ((j >> 16) & 255, (j >> 8) & 255, j & 255)
    try:
        src.sendto(b"x", (addr, 9))
        sent += 1
    except OSError:
        failed += 1
print('{"sent": %d, "failed": %d}' % (sent, failed))
