#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sl-netpol-probe.py - run many connectivity probes at once from this netns.

    sl-netpol-probe.py [--timeout SEC] [--concurrency N] [--udp connected|unconnected]
        < [{"id": ..., "dst_ip": "10.244.1.11", "port": 80, "protocol": "TCP", "family": 4}, ...]

Prints a JSON list on stdout, one result per probe, in input order:

    {"id": ..., "ok": true|false, "error": null|"ETIMEDOUT"|..., "detail": "...",
     "pod": <server name from the reply>, "peer": <client address the server saw>,
     "ms": <duration>}

A probe (each with its own overall deadline, default 1 s, counted from when it
starts; at most --concurrency run at a time, default 64):
  TCP  connect, send "netpol <id>\\n", read one line; ok iff it is the sl-echo
       line-mode answer "<pod> <peer> netpol <id>".
  UDP  send the datagram "netpol <id>" (on a connected socket by default),
       wait for "<pod> <peer> netpol <id>".
Anything else is not ok, with error the errno name: ECONNREFUSED and EPERM
included (a refusal is not a connection), ETIMEDOUT when the deadline passed,
ECONNABORTED for EOF before the answer, EPROTO for a wrong answer.
Python standard library only. Exit status 0 when every probe ran (whatever its
result), 2 on bad input.
"""
import argparse
import errno
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


class ProbeError(Exception):
    def __init__(self, name, detail=""):
        super().__init__(name)
        self.name = name
        self.detail = detail


def errno_name(e):
    if isinstance(e, socket.timeout):
        return "ETIMEDOUT"
    n = getattr(e, "errno", None)
    if n is None:
        return type(e).__name__
    return errno.errorcode.get(n, "E%d" % n)


def left(deadline):
    t = deadline - time.monotonic()
    if t <= 0:
        raise ProbeError("ETIMEDOUT", "deadline passed")
    return t


def check_answer(data, line, out):
    """data: bytes of one answer (without the newline). Fills out[pod, peer]."""
    text = data.decode("utf-8", "replace")
    parts = text.split(" ", 2)
    if len(parts) != 3 or parts[2] != line:
        raise ProbeError("EPROTO", "unexpected answer %r" % text[:200])
    out["pod"], out["peer"] = parts[0], parts[1]


def probe_tcp(fam, addr, line, deadline, out):
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.settimeout(left(deadline))
        try:
            s.connect(addr)
        except socket.timeout:
            raise ProbeError("ETIMEDOUT", "no connection") from None
        s.settimeout(left(deadline))
        s.sendall((line + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            s.settimeout(left(deadline))
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                raise ProbeError("ETIMEDOUT", "connected, no answer") from None
            if not chunk:
                raise ProbeError("ECONNABORTED", "EOF before the answer (got %r)" % buf[:200])
            buf += chunk
            if len(buf) > 65536:
                raise ProbeError("EPROTO", "answer too long")
        check_answer(buf.split(b"\n", 1)[0], line, out)
    finally:
        s.close()


def probe_udp(fam, addr, line, deadline, out, connected):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        if connected:
            s.connect(addr)
            s.send(line.encode())
        else:
            s.sendto(line.encode(), addr)
        while True:
            s.settimeout(left(deadline))
            try:
                data, frm = s.recvfrom(65536)
            except socket.timeout:
                raise ProbeError("ETIMEDOUT", "no answer") from None
            if not connected and frm[0] != addr[0] and frm[0] != "::ffff:" + addr[0]:
                continue    # not from the address we sent to
            check_answer(data.rstrip(b"\n"), line, out)
            return
    finally:
        s.close()


def run_one(p, timeout, udp_connected):
    t0 = time.monotonic()
    deadline = t0 + timeout
    out = {"id": p.get("id"), "ok": False, "error": None, "detail": None, "pod": None,
           "peer": None, "ms": None}
    try:
        proto = str(p["protocol"]).upper()
        port = int(p["port"])
        dst = str(p["dst_ip"])
        fam_n = int(p.get("family") or (6 if ":" in dst else 4))
        fam = socket.AF_INET6 if fam_n == 6 else socket.AF_INET
        addr = (dst, port, 0, 0) if fam == socket.AF_INET6 else (dst, port)
        line = "netpol %s" % p.get("id")
        if proto == "TCP":
            probe_tcp(fam, addr, line, deadline, out)
        elif proto == "UDP":
            probe_udp(fam, addr, line, deadline, out, udp_connected)
        else:
            raise ProbeError("EPROTONOSUPPORT", "protocol %s" % proto)
        out["ok"] = True
    except ProbeError as e:
        out["error"], out["detail"] = e.name, e.detail or None
    except (OSError, ValueError, KeyError, TypeError) as e:
        out["error"], out["detail"] = errno_name(e) if isinstance(e, OSError) else "EINVAL", str(e)
    out["ms"] = round((time.monotonic() - t0) * 1000, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--timeout", type=float, default=1.0, help="seconds per probe (1)")
    ap.add_argument("--concurrency", type=int, default=64, help="probes at once (64)")
    ap.add_argument("--udp", choices=("connected", "unconnected"), default="connected")
    a = ap.parse_args()
    try:
        probes = json.load(sys.stdin)
        if not isinstance(probes, list) or not all(isinstance(p, dict) for p in probes):
            raise ValueError("want a JSON list of objects")
    except ValueError as e:
        print("sl-netpol-probe: bad input: %s" % e, file=sys.stderr)
        return 2
    # Fail fast on file descriptors rather than reporting EMFILE as a verdict.
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    threading.stack_size(256 * 1024)
    udp_connected = a.udp == "connected"
    with ThreadPoolExecutor(max_workers=max(1, a.concurrency)) as ex:
        results = list(ex.map(lambda p: run_one(p, a.timeout, udp_connected), probes))
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
