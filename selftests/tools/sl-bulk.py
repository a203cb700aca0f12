#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sl-bulk.py - large TCP transfers both ways, checked end to end.

  sl-bulk.py serve --port P [--ready-file F]
  sl-bulk.py client HOST PORT [--bytes N] [--reply-bytes M] [--parallel K]
                    [--timeout S]

Per connection the client sends "BULK <M>\\n" and N random bytes, then
half-closes (shutdown SHUT_WR). The server reads to EOF, then answers
"<n> <sha256 of what it read> <peer ip> <sha256 of its reply>\\n" and M random
bytes, and closes. The client checks the count and digest of what it sent,
reads to EOF and checks the reply's length and digest. So a lost, duplicated
or reordered byte, a half-close that is not carried (the server never sees
EOF) or one that closes both ways (the reply never arrives) each fail.

client prints "bulk ok=K err=E sent=BYTES received=BYTES server_saw=IP" and one
"err ..." line per failure; exit 0 iff every connection was ok. Every wait is
bounded by --timeout (default 60 s).
"""
import argparse
import hashlib
import os
import socket
import sys
import threading


def read_line(sock, limit=256):
    buf = b""
    while not buf.endswith(b"\n"):
        c = sock.recv(1)
        if not c or len(buf) > limit:
            raise IOError("connection ended before a full line")
        buf += c
    return buf[:-1].decode()


def serve_one(conn, peer):
    try:
        conn.settimeout(120)
        want = int(read_line(conn).split()[1])
        h, n = hashlib.sha256(), 0
        while True:
            b = conn.recv(1 << 16)
            if not b:
                break
            h.update(b)
            n += len(b)
        reply = os.urandom(want)
        ip = peer[0][7:] if peer[0].startswith("::ffff:") else peer[0]
        conn.sendall(f"{n} {h.hexdigest()} {ip} {hashlib.sha256(reply).hexdigest()}\n".encode())
        conn.sendall(reply)
    except (OSError, ValueError, IndexError) as e:
        print(f"sl-bulk: serve {peer}: {e}", file=sys.stderr)
    finally:
        conn.close()


def serve(args):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", args.port))
    s.listen(128)
    if args.ready_file:
        open(args.ready_file, "w").close()
    while True:
        conn, peer = s.accept()
        threading.Thread(target=serve_one, args=(conn, peer), daemon=True).start()


def client_one(args, results, i):
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(args.timeout)
        s.connect((args.host, args.port))
        data = os.urandom(args.bytes)
        s.sendall(f"BULK {args.reply_bytes}\n".encode())
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        head = read_line(s).split()
        n, digest, saw, reply_digest = int(head[0]), head[1], head[2], head[3]
        h, got = hashlib.sha256(), 0
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            h.update(b)
            got += len(b)
        s.close()
        if n != len(data) or digest != hashlib.sha256(data).hexdigest():
            raise IOError(f"server read {n} bytes with another digest (sent {len(data)})")
        if got != args.reply_bytes or h.hexdigest() != reply_digest:
            raise IOError(f"reply: {got} of {args.reply_bytes} bytes, digest "
                          f"{'ok' if h.hexdigest() == reply_digest else 'wrong'}")
        results[i] = ("ok", saw, len(data), got)
    except (OSError, ValueError, IndexError) as e:
        results[i] = ("err", str(e), 0, 0)


def client(args):
    results = [None] * args.parallel
    threads = [threading.Thread(target=client_one, args=(args, results, i))
               for i in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.timeout * 2)
    ok = [r for r in results if r and r[0] == "ok"]
    for r in results:
        if not r or r[0] != "ok":
            print(f"err {r[1] if r else 'did not finish'}")
    saw = ",".join(sorted({r[1] for r in ok})) or "-"
    print(f"bulk ok={len(ok)} err={args.parallel - len(ok)} sent={sum(r[2] for r in ok)} "
          f"received={sum(r[3] for r in ok)} server_saw={saw}")
    return 0 if len(ok) == args.parallel else 1


def main():
    p = argparse.ArgumentParser(description="large TCP transfers both ways, checked")
    p.add_argument("mode", choices=("serve", "client"))
    p.add_argument("host", nargs="?")
    p.add_argument("port", nargs="?", type=int)
    p.add_argument("--port", dest="listen_port", type=int)
    p.add_argument("--ready-file")
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--reply-bytes", type=int, default=1 << 20)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    if args.mode == "serve":
        args.port = args.listen_port
        if not args.port:
            p.error("serve needs --port")
        return serve(args)
    if not args.host or not args.port:
        p.error("client needs HOST PORT")
    return client(args)


if __name__ == "__main__":
    sys.exit(main())
