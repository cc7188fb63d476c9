# A file whose reads never answer, as on a hung FUSE or network mount: a minimal FUSE server
# mounted over a regular file (rootmode=100644). It answers INIT, GETATTR, OPEN, FLUSH and
# RELEASE, and leaves every READ (and the INTERRUPT the kernel sends for it) unanswered; a
# reader waits in the kernel until this process ends. Needs root (mount). Prints "mounted".
#   python3 fuse-hang.py FILE
import os
import struct
import subprocess
import sys

target = sys.argv[1]
fd = os.open('/dev/fuse', os.O_RDWR)
subprocess.run(
    ['mount', '-t', 'fuse', '-o', f'fd={fd},rootmode=100644,user_id=0,group_id=0,allow_other', 'ctmon-hang', target],
    pass_fds=[fd],
    check=True,
)
print('mounted', flush=True)

IN_HEADER = struct.Struct('<IIQQIIII')  # len, opcode, unique, nodeid, uid, gid, pid, padding
INIT, GETATTR, OPEN, READ, RELEASE, FLUSH, INTERRUPT = 26, 3, 14, 15, 18, 25, 36
# fuse_attr: ino, size, blocks, [amc]time, [amc]timensec, mode, nlink, uid, gid, rdev, blksize, flags
ATTR = struct.pack('<QQQQQQIIIIIIIIII', 1, 5, 1, 0, 0, 0, 0, 0, 0, 0o100644, 1, 0, 0, 0, 4096, 0)


def reply(unique, payload=b'', error=0):
    os.write(fd, struct.pack('<IiQ', 16 + len(payload), error, unique) + payload)


while True:
    try:
        request = os.read(fd, 1 << 20)  # at least max_write plus headers
    except OSError:
        break  # unmounted
    _, opcode, unique = IN_HEADER.unpack_from(request)[:3]
    if opcode == INIT:
        major, minor, readahead, _flags = struct.unpack_from('<IIII', request, IN_HEADER.size)
        reply(unique, struct.pack('<IIIIHHIIHHI7I', 7, min(minor, 31), readahead, 0, 16, 16, 1 << 17, 1, 0, 0, 0, *[0] * 7))
    elif opcode == GETATTR:
        reply(unique, struct.pack('<QII', 1, 0, 0) + ATTR)
    elif opcode == OPEN:
        reply(unique, struct.pack('<QII', 1, 1, 0))  # fh, FOPEN_DIRECT_IO: every read comes here
    elif opcode in (FLUSH, RELEASE):
        reply(unique)
    elif opcode in (READ, INTERRUPT):
        pass  # never answered
    else:
        reply(unique, error=-38)  # ENOSYS
