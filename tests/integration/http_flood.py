#!/usr/bin/python3
"""Sends bad HTTP to an endpoint over raw sockets, for test_metrics.c.

    http_flood.py HOST PORT COUNT

COUNT connections from 4 threads, each carrying one kind of bad request in
turn: random bytes, a 64 KiB header, a request line of 100 KB, POST and PUT
with bodies, a Content-Length that lies, chunked garbage, NUL bytes and
headers without a colon, an unknown method and HTTP version, requests cut
off mid-line or mid-headers, and connections closed before or while the
answer is written. One in 25 connections reads the answer (up to 0.25 s);
the rest close at once. A few connections are held open, silent, until
the end. Prints how many answers of each status it saw, then checks that
GET /metrics still answers 200 with Prometheus text (a broker's or an
engine's) and exits 0; 1 if it does not."""
import random
import socket
import sys
import threading
import urllib.request

BIG = b"a" * 65536


def requests(rng):
    return [
        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000))),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + BIG + b"\r\n\r\n",
        b"GET /" + BIG + BIG[:34464] + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello=world",
        b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde",
        b"DELETE /status.json HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nqq\r\n",
        b"GET / HTTP/1.1\r\nHo\x00st: a\r\nno colon here\r\n\r\n",
        b"BREW /pot HTCPCP/1.0\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /metr",
        b"GET /metrics HTTP/1.1\r\nHost:",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",  # closed before the answer is read
        b"\r\n\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
    ]


def worker(host, port, count, seed, statuses, lock, held):
    rng = random.Random(seed)
    kinds = requests(rng)
    for i in range(count):
        req = kinds[i % len(kinds)] if i % 7 else kinds[0][: rng.randint(1, 2000)]
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError as e:
            with lock:
                statuses["connect-failed:" + type(e).__name__] = (
                    statuses.get("connect-failed:" + type(e).__name__, 0) + 1
                )
            continue
        try:
            s.sendall(req)
            if i % 25 == 0:
                s.settimeout(0.25)
                data = s.recv(256)
                status = data.split(b" ")[1].decode("latin-1") if data[:5] == b"HTTP/" else "none"
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        except OSError:
            pass
        if i % 1000 == 0 and len(held) < 16:
            held.append(s)  # stays open, silent, until the end
        else:
            s.close()


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    statuses, lock, held = {}, threading.Lock(), []
    threads = [
        threading.Thread(
            target=worker, args=(host, port, count // 4 + (i < count % 4), i, statuses, lock, held)
        )
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("answers seen:", dict(sorted(statuses.items())))
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        ok = r.status == 200 and r.read().startswith(b"# HELP keel_")
    for s in held:
        s.close()
    if not ok:
        sys.exit("http_flood: GET /metrics did not answer after the flood")
    print("GET /metrics answers after", count, "bad requests")


if __name__ == "__main__":
    main()
