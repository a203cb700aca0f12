#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""sl-kube-api: a test Kubernetes API server (list + watch), stdlib only.

Serves over HTTPS (a CA and certificates made with the openssl CLI at start)
the shapes of the Kubernetes API reference: List objects with
metadata.resourceVersion and metadata.continue (limit/continue paging), and
watch streams as chunked JSON lines (ADDED/MODIFIED/DELETED, BOOKMARK every
half second, ERROR 410 when a resourceVersion is too old). Groups named with
--unserved answer 404. A plain-HTTP control port on 127.0.0.1 changes objects
and injects faults:

  POST /apply   {"object": {...}}            ADDED or MODIFIED
  POST /delete  {"kind": K, "namespace": N, "name": X}
  POST /expire  {"resource": "services"}     open watches get ERROR 410, older
                                             resourceVersions are compacted
  POST /drop    {"resource": R or null}      abort open watch connections
  POST /fail    {"resource": R, "status": 500, "count": 1}
  GET  /stats   {"lists": {R: n}, "watches": {R: n}, "open": {R: n}}

usage: sl-kube-api.py --dir DIR [--objects FILE] [--token T] [--unserved GROUP]...
Writes DIR/ca.crt, client.crt/key, server.crt/key and DIR/ports ("api ctl").
"""
import argparse
import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# kind -> (group, version, resource, namespaced), as the agent asks for them
KINDS = {
    "Namespace": ("", "v1", "namespaces", False),
    "Pod": ("", "v1", "pods", True),
    "Service": ("", "v1", "services", True),
    "EndpointSlice": ("discovery.k8s.io", "v1", "endpointslices", True),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies", True),
    "GatewayClass": ("gateway.networking.k8s.io", "v1", "gatewayclasses", False),
    "Gateway": ("gateway.networking.k8s.io", "v1", "gateways", True),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes", True),
    "GRPCRoute": ("gateway.networking.k8s.io", "v1", "grpcroutes", True),
    "ReferenceGrant": ("gateway.networking.k8s.io", "v1beta1", "referencegrants", True),
    "TCPRoute": ("gateway.networking.k8s.io", "v1alpha2", "tcproutes", True),
    "TLSRoute": ("gateway.networking.k8s.io", "v1alpha2", "tlsroutes", True),
    "AuthorizationPolicy": ("security.istio.io", "v1", "authorizationpolicies", True),
    "PeerAuthentication": ("security.istio.io", "v1", "peerauthentications", True),
    "Secret": ("", "v1", "secrets", True),
}
BY_PATH = {}
for _k, (_g, _v, _r, _n) in KINDS.items():
    BY_PATH[(_g + "/" + _v if _g else "v1") + "/" + _r] = _k


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 100
        self.objs = {k: {} for k in KINDS}       # kind -> "ns/name" -> object
        self.log = []                             # (rv, kind, type, object)
        self.compacted = {k: 0 for k in KINDS}    # older resourceVersions: 410
        self.kicks = {k: 0 for k in KINDS}
        self.fails = {}                           # kind -> [status, count]
        self.stats = {"lists": {}, "watches": {}, "open": {}}
        self.socks = {}                           # kind -> set of open watch sockets
        self.unserved = set()
        self.token = None

    def apply(self, obj, typ=None):
        kind = obj["kind"]
        md = obj.setdefault("metadata", {})
        key = "%s/%s" % (md.get("namespace", ""), md["name"])
        with self.cond:
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            t = typ or ("MODIFIED" if key in self.objs[kind] else "ADDED")
            if t == "DELETED":
                obj = self.objs[kind].pop(key, obj)
                obj["metadata"]["resourceVersion"] = str(self.rv)
            else:
                self.objs[kind][key] = obj
            self.log.append((self.rv, kind, t, json.loads(json.dumps(obj))))
            self.cond.notify_all()


S = State()


def bump(table, kind):
    S.stats[table][kind] = S.stats[table].get(kind, 0) + 1


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("sl-kube-api: " + (fmt % args) + "\n")

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason, msg):
        self.reply(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": msg, "reason": reason, "code": code})

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        parts = u.path.strip("/").split("/")
        if parts[:1] == ["api"]:
            key = "/".join(parts[1:])
        elif parts[:1] == ["apis"]:
            key = "/".join(parts[1:])
        else:
            key = None
        kind = BY_PATH.get(key)
        if S.token and self.headers.get("Authorization") != "Bearer " + S.token:
            return self.status(401, "Unauthorized", "Unauthorized")
        if not kind or KINDS[kind][0] in S.unserved:
            return self.status(404, "NotFound", "the server could not find the requested resource")
        with S.cond:
            f = S.fails.get(kind)
            if f and f[1] > 0:
                f[1] -= 1
                code = f[0]
            else:
                code = 0
        if code:
            return self.status(code, "InternalError", "injected failure")
        if q.get("watch") in ("1", "true"):
            return self.watch(kind, q)
        return self.list(kind, q)

    def list(self, kind, q):
        limit = int(q.get("limit", "0") or 0)
        with S.cond:
            bump("lists", kind)
            if "continue" in q:
                tok = json.loads(base64.b64decode(q["continue"]))
                rv, start = tok["rv"], tok["start"]
                if rv < S.compacted[kind]:
                    return self.status(410, "Expired", "continue token expired")
            else:
                rv, start = S.rv, 0
            # a snapshot at rv: what the log says existed then
            keys = sorted(S.objs[kind])
            items = [S.objs[kind][k] for k in keys]
        page = items[start:start + limit] if limit else items[start:]
        md = {"resourceVersion": str(rv)}
        if limit and start + limit < len(items):
            md["continue"] = base64.b64encode(json.dumps({"rv": rv, "start": start + limit}).encode()).decode()
        out = []
        for o in page:  # List items carry no kind/apiVersion
            o = dict(o)
            o.pop("kind", None)
            o.pop("apiVersion", None)
            out.append(o)
        g, v, _, _ = KINDS[kind]
        self.reply(200, {"kind": kind + "List", "apiVersion": (g + "/" + v) if g else v, "metadata": md,
                         "items": out})

    def watch(self, kind, q):
        since = int(q.get("resourceVersion", "0") or 0)
        timeout = min(int(q.get("timeoutSeconds", "300")), 300)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        with S.cond:
            bump("watches", kind)
            kick = S.kicks[kind]
            S.socks.setdefault(kind, set()).add(self.connection)
            S.stats["open"][kind] = len(S.socks[kind])
            too_old = since < S.compacted[kind]
        gone = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                            "status": "Failure", "reason": "Expired", "code": 410,
                                            "message": "too old resource version: %d" % since}}
        end = time.time() + timeout
        try:
            if too_old:
                self.chunk(json.dumps(gone).encode() + b"\n")
                return self.chunk(b"")
            cursor = since
            while time.time() < end:
                with S.cond:
                    evs = [e for e in S.log if e[0] > cursor and e[1] == kind]
                    if not evs and S.kicks[kind] == kick:
                        S.cond.wait(0.5)
                        evs = [e for e in S.log if e[0] > cursor and e[1] == kind]
                    kicked = S.kicks[kind] != kick
                    now_rv = S.rv
                for rv, _, t, o in evs:
                    self.chunk(json.dumps({"type": t, "object": o}).encode() + b"\n")
                    cursor = rv
                if kicked:
                    self.chunk(json.dumps(gone).encode() + b"\n")
                    break
                if not evs and bookmarks:
                    g, v, _, _ = KINDS[kind]
                    bm = {"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": (g + "/" + v) if g else v,
                                                         "metadata": {"resourceVersion": str(now_rv)}}}
                    self.chunk(json.dumps(bm).encode() + b"\n")
                    cursor = max(cursor, now_rv)
            self.chunk(b"")
        except (OSError, ValueError):
            self.close_connection = True
        finally:
            with S.cond:
                S.socks[kind].discard(self.connection)
                S.stats["open"][kind] = len(S.socks[kind])


class Ctl(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with S.cond:
            self.reply(S.stats)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n) or b"{}")
        p = self.path
        if p == "/apply":
            S.apply(body["object"])
        elif p == "/delete":
            md = {"name": body["name"]}
            if body.get("namespace"):
                md["namespace"] = body["namespace"]
            S.apply({"kind": body["kind"], "metadata": md}, "DELETED")
        elif p == "/expire":
            with S.cond:
                k = BY_PATH.get(body["resource"], None) or next(
                    x for x, d in KINDS.items() if d[2] == body["resource"])
                S.compacted[k] = S.rv + 1
                S.kicks[k] += 1
                S.cond.notify_all()
        elif p == "/drop":
            with S.cond:
                for k, socks in S.socks.items():
                    if body.get("resource") in (None, KINDS[k][2]):
                        for s in list(socks):
                            try:
                                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                                socket.socket.shutdown(s, socket.SHUT_RDWR)
                            except OSError:
                                pass
        elif p == "/fail":
            k = next(x for x, d in KINDS.items() if d[2] == body["resource"])
            with S.cond:
                S.fails[k] = [body.get("status", 500), body.get("count", 1)]
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.reply({"ok": True, "rv": S.rv})


def make_certs(d):
    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    j = lambda n: os.path.join(d, n)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=sl-kube-api test CA", "-keyout", j("ca.key"), "-out", j("ca.crt"))
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"),
                      ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
            "/CN=" + name, "-keyout", j(name + ".key"), "-out", j(name + ".csr"))
        with open(j(name + ".ext"), "w") as f:
            f.write(ext + "\n")
        run("x509", "-req", "-in", j(name + ".csr"), "-CA", j("ca.crt"), "-CAkey", j("ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", j(name + ".ext"), "-out", j(name + ".crt"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--objects")
    ap.add_argument("--token")
    ap.add_argument("--unserved", action="append", default=[])
    ap.add_argument("--lifetime", type=float, default=120, help="exit after this many seconds")
    a = ap.parse_args()
    S.token = a.token
    S.unserved = set(a.unserved)
    make_certs(a.dir)
    if a.objects:
        with open(a.objects) as f:
            data = json.load(f)
        for o in data.get("items", data) if isinstance(data, dict) else data:
            S.apply(o)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(a.dir, "server.crt"), os.path.join(a.dir, "server.key"))
    ctx.load_verify_locations(os.path.join(a.dir, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    api = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    api.daemon_threads = True
    api.socket = ctx.wrap_socket(api.socket, server_side=True)
    ctl = ThreadingHTTPServer(("127.0.0.1", 0), Ctl)
    ctl.daemon_threads = True
    threading.Thread(target=api.serve_forever, daemon=True).start()
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    tmp = os.path.join(a.dir, "ports.tmp")
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (api.server_address[1], ctl.server_address[1]))
    os.rename(tmp, os.path.join(a.dir, "ports"))
    # bounded: a test that dies cannot leave us behind for long
    time.sleep(a.lifetime)


if __name__ == "__main__":
    main()
