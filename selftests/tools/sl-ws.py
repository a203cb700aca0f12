#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sl-ws.py - one WebSocket exchange over HTTP/1.1 (RFC 6455), stdlib only.

  sl-ws.py HOST PORT [--path P] [--host H] [--text T] [--protocol P]
           [--timeout S]

Sends GET P with Upgrade: websocket and a random Sec-WebSocket-Key, checks
the 101 and its Sec-WebSocket-Accept, sends T as one masked text frame, then
a close frame (1000), and reads the server's frames until its close frame
and the end of the connection. Prints one line

  ws status=<code> accept=ok|bad|none text=<the text frames' payloads>
     close=yes|no eof=yes|no protocol=<Sec-WebSocket-Protocol or ->

(one line; text with spaces kept). Exit 0 iff status was 101, the accept
right, the text echoed, the close frame came and then the end of the
connection. Every wait is bounded by --timeout (default 10 s).
"""
import argparse
import base64
import hashlib
import os
import socket
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(op, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | op])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(4096)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def frames(buf):
    """Whole server frames (not masked) of buf: [(op, payload)], rest."""
    out = []
    while len(buf) >= 2:
        n, hl = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, hl = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, hl = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < hl + n:
            break
        out.append((buf[0] & 0x0F, buf[hl:hl + n]))
        buf = buf[hl + n:]
    return out, buf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--path", default="/")
    ap.add_argument("--host", dest="host_hdr")
    ap.add_argument("--text", default="hello websocket")
    ap.add_argument("--protocol")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    host = a.host_hdr or (("[%s]" % a.host if ":" in a.host else a.host) + ":%d" % a.port)
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (a.path, host, key))
    if a.protocol:
        req += "Sec-WebSocket-Protocol: %s\r\n" % a.protocol
    req += "\r\n"
    status, accept, text, closed, eof, proto = 0, "none", b"", False, False, "-"
    try:
        sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
        sock.sendall(req.encode())
        head, rest = read_head(sock)
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "sec-websocket-accept":
                accept = "ok" if value == want else "bad"
            elif name == "sec-websocket-protocol":
                proto = value
        if status == 101:
            sock.sendall(frame(0x1, a.text.encode()) + frame(0x8, struct.pack("!H", 1000)))
            buf = rest
            while True:
                got, buf = frames(buf)
                for op, payload in got:
                    if op in (0x0, 0x1):
                        text += payload
                    elif op == 0x8:
                        closed = True
                d = sock.recv(65536)
                if not d:
                    eof = True
                    break
                buf += d
        sock.close()
    except OSError as e:
        print("err %s" % e, file=sys.stderr)
    text = text.decode("utf-8", "replace")
    print("ws status=%d accept=%s text=%s close=%s eof=%s protocol=%s" % (
        status, accept, text, "yes" if closed else "no", "yes" if eof else "no", proto))
    ok = status == 101 and accept == "ok" and text == a.text and closed and eof
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
