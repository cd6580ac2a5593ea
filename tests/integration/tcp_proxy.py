#!/usr/bin/env python3
"""tcp_proxy.py LISTEN_PORT TARGET_PORT — a loopback TCP proxy for tests.

Forwards every connection made to 127.0.0.1:LISTEN_PORT to
127.0.0.1:TARGET_PORT, both ways. A test cuts the link by stopping the
proxy (SIGSTOP: connections stay open, nothing flows, as with a pulled
cable) and mends it with SIGCONT; it ends the proxy with SIGTERM.
Prints "ready" on stdout once it listens.
"""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
