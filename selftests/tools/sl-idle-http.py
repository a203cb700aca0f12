#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sl-idle-http.py - many HTTP/1.1 keep-alive connections, one request each, then idle.

  sl-idle-http.py HOST PORT --conns N --seconds S [--host-header NAME] [--timeout T]

Opens N connections, 200 at a time, sends "GET / HTTP/1.1" (Host: NAME,
default "web") on each and reads the answer's head, then holds them all
open and silent for S seconds, and closes them. What an idle keep-alive
connection costs a proxy between requests (docs/benchmarks.md, "Where the
memory goes"). Prints "idle conns=N ok=K err=E" once all answered, and
"idle done" at the end; exit 0 iff every request got a 2xx. Every wait is
bounded by --timeout (default 10 s).
"""
import argparse
import resource
import socket
import sys
import time


def answer_ok(sock):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf.startswith(b"HTTP/1.1 2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--host-header", dest="name", default="web")
    ap.add_argument("--timeout", type=float, default=10)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
    req = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % a.name).encode()
    socks, ok, err = [], 0, 0
    for start in range(0, a.conns, 200):
        batch = []
        for _ in range(min(200, a.conns - start)):
            try:
                s = socket.create_connection((a.host, a.port), timeout=a.timeout)
                s.sendall(req)
                batch.append(s)
            except OSError:
                err += 1
        for s in batch:
            try:
                if answer_ok(s):
                    ok += 1
                else:
                    err += 1
            except OSError:
                err += 1
        socks += batch
    print("idle conns=%d ok=%d err=%d" % (a.conns, ok, err), flush=True)
    time.sleep(a.seconds)
    for s in socks:
        s.close()
    print("idle done", flush=True)
    return 0 if err == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
