#!/usr/bin/env python3
"""flood.py — the hostile load of the flood benchmark (docs/security.md, "Flood").

    flood.py HOST PORT [IDLE] [MIN_FRAMES]

Opens IDLE (default 1,000) raw TCP connections to a broker's endpoint that
never finish a ZMTP handshake (half send nothing, half a partial greeting),
prints "ready idle=N" on stdout, then sends random frames on fresh
connections, over and over, until it has been sent SIGTERM *and* has sent
MIN_FRAMES (default 100,000) frames. A third of the connections send bytes
with no greeting, a third a CURVE greeting and random command frames, a
third a CURVE greeting and a HELLO-sized command of random bytes (the
server's HELLO check must refuse it). Then prints
"frames=N connections=M idle_open=K" (K: idle connections still open) and
exits. Only the standard library; every socket has a timeout.
"""
import os
import random
import signal
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
idle_n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
min_frames = int(sys.argv[4]) if len(sys.argv) > 4 else 100000
stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)

# ZMTP 3.0 greeting, CURVE mechanism, as client (RFC 23/ZMTP).
GREETING = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\x00")
            + b"\x00" + b"\x00" * 31)

idle = []
for i in range(idle_n):
    s = socket.create_connection((host, port), timeout=5)
    if i % 2:
        s.sendall(GREETING[:10])  # signature only: the greeting never ends
    idle.append(s)
print("ready idle=%d" % len(idle), flush=True)

rng = random.Random(15)
frames = 0
connections = 0
while not (stop and frames >= min_frames):
    kind = connections % 3
    connections += 1
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        if kind == 0:
            for _ in range(10):
                s.sendall(os.urandom(rng.randint(1, 300)))
                frames += 1
        elif kind == 1:
            s.sendall(GREETING)
            for _ in range(10):
                size = rng.randint(0, 255)
                s.sendall(bytes([rng.choice((0x00, 0x01, 0x04))]) + bytes([size]) + os.urandom(size))
                frames += 1
        else:
            s.sendall(GREETING)
            body = b"\x05HELLO" + b"\x01\x00" + b"\x00" * 72 + os.urandom(120)
            s.sendall(b"\x04" + bytes([len(body)]) + body)
            frames += 1
        s.close()
    except OSError:
        frames += 0  # the broker closed it first: go on with a new one

idle_open = 0
for s in idle:
    s.setblocking(False)
    try:
        idle_open += 1 if s.recv(1) else 0
    except BlockingIOError:
        idle_open += 1  # nothing to read, still open
    except OSError:
        pass
    s.close()
print("frames=%d connections=%d idle_open=%d" % (frames, connections, idle_open), flush=True)
