#!/usr/bin/env python3
"""The kernel's floor for a full ctnetlink dump: send IPCTNL_MSG_CT_GET with NLM_F_DUMP and
walk the reply headers, decoding nothing. Prints the wall time in ms of one dump."""
import socket
import struct
import time

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
start = time.perf_counter()
s.send(struct.pack("=IHHII", 20, (1 << 8) | 1, 0x1 | 0x300, 1, 0) + bytes(4))
done = False
while not done:
    d = s.recv(65536)
    o = 0
    while o + 16 <= len(d):
        length, kind = struct.unpack_from("=IH", d, o)
        if kind == 3:  # NLMSG_DONE
            done = True
            break
        o += (length + 3) & ~3
print(round((time.perf_counter() - start) * 1000))
