#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sl-kube-api: a test Kubernetes API server (list + watch), stdlib only.

Serves over HTTPS (a CA and certificates made with the openssl CLI at start)
the shapes of the Kubernetes API reference: List objects with
metadata.resourceVersion and metadata.continue (limit/continue paging), and
watch streams as chunked JSON lines (ADDED/MODIFIED/DELETED, BOOKMARK every
half second, ERROR 410 when a resourceVersion is too old), cluster-wide or
in one namespace (/namespaces/NS/RESOURCE), with an equality labelSelector
(k=v, k==v, k!=v, k, comma-separated). Groups named with
--unserved answer 404. Writes, as the agent's status writer makes them:
coordination.k8s.io/v1 Leases (GET, POST, PUT; 409 on a stale
metadata.resourceVersion or a POST of one that exists) and the /status
subresource of gateway.networking.k8s.io objects (PATCH as a JSON merge patch,
or PUT; 409 on a stale resourceVersion), stored with a new resourceVersion and
a MODIFIED watch event. metadata.generation starts at 1 and grows when /apply
changes an object's spec. A plain-HTTP control port on 127.0.0.1 changes
objects, shows them and the writes, and injects faults:

  POST /apply   {"object": {...}}            ADDED or MODIFIED
  POST /delete  {"kind": K, "namespace": N, "name": X}
  POST /expire  {"resource": "services"}     open watches get ERROR 410, older
                                             resourceVersions are compacted
  POST /drop    {"resource": R or null}      abort open watch connections
  POST /fail    {"resource": R, "status": 500, "count": 1}
  GET  /stats   {"lists": {R: n}, "watches": {R: n}, "open": {R: n}}
  GET  /writes  [{"verb", "kind", "namespace", "name", "code", "holder"?}, ...]
  GET  /object?kind=K&namespace=N&name=X   the object as stored (404: none)

usage: sl-kube-api.py --dir DIR [--objects FILE] [--token T] [--unserved GROUP]... [--address IP]
The API listens on --address (default 127.0.0.1; in the server certificate
too), the control port on 127.0.0.1. Writes DIR/ca.crt, client.crt/key, server.crt/key and DIR/ports ("api ctl").
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
    "Lease": ("coordination.k8s.io", "v1", "leases", True),
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
        self.writes = []                          # what clients wrote, in order

    def apply(self, obj, typ=None, spec_change=True):
        kind = obj["kind"]
        md = obj.setdefault("metadata", {})
        key = "%s/%s" % (md.get("namespace", ""), md["name"])
        with self.cond:
            old = self.objs[kind].get(key)
            gen = (old or {}).get("metadata", {}).get("generation", 0)
            if spec_change and (not old or old.get("spec") != obj.get("spec")):
                gen += 1
            md["generation"] = gen or 1
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


def merge_patch(target, patch):
    """RFC 7386: objects merge key by key, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def selected(obj, ns, selector):
    """Whether obj is in namespace ns (None: any) and matches selector."""
    md = obj.get("metadata", {})
    if ns is not None and md.get("namespace", "") != ns:
        return False
    labels = md.get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.strip() not in labels:
            return False
    return True


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

    def body(self):
        n = int(self.headers.get("Content-Length", "0") or 0)
        return json.loads(self.rfile.read(n) or b"null")

    def write_target(self):
        """(kind, ns, name, subresource) of an object path, or None; ns is ""
        for a cluster-scoped kind (/apis/G/V/RESOURCE/NAME[/SUB])."""
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts[:1] == ["api"]:
            gv, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) > 2:
            gv, rest = parts[1] + "/" + parts[2], parts[3:]
        else:
            return None
        if rest[:1] != ["namespaces"]:
            kind = BY_PATH.get(gv + "/" + rest[0]) if rest else None
            if not kind or KINDS[kind][3] or KINDS[kind][0] in S.unserved:
                return None
            return kind, "", rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        if len(rest) < 3:
            return None
        kind = BY_PATH.get(gv + "/" + rest[2])
        if not kind or KINDS[kind][0] in S.unserved:
            return None
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        return kind, rest[1], name, sub

    def authorized(self):
        if S.token and self.headers.get("Authorization") != "Bearer " + S.token:
            self.status(401, "Unauthorized", "Unauthorized")
            return False
        return True

    def record(self, verb, kind, ns, name, code, obj=None):
        w = {"verb": verb, "kind": kind, "namespace": ns, "name": name, "code": code, "time": time.time()}
        if kind == "Lease" and obj:
            w["holder"] = obj.get("spec", {}).get("holderIdentity")
        with S.cond:
            S.writes.append(w)

    def lease_get(self, ns, name):
        with S.cond:
            o = S.objs["Lease"].get(ns + "/" + name)
            o = json.loads(json.dumps(o)) if o else None
        if not o:
            return self.status(404, "NotFound", 'leases.coordination.k8s.io "%s" not found' % name)
        self.reply(200, o)

    def write_start(self):
        """(target, body) of a write, or None once answered (bad JSON,
        not authorized)."""
        t = self.write_target()
        try:
            body = self.body()
        except ValueError:
            self.status(400, "BadRequest", "not JSON")
            return None
        if not self.authorized():
            return None
        return t, body

    def write(self, verb):
        start = self.write_start()
        if not start:
            return
        t, body = start
        if not t:
            return self.status(404, "NotFound", "the server could not find the requested resource")
        kind, ns, name, sub = t
        if verb == "POST" and name is None and kind == "Lease":
            name = (body.get("metadata") or {}).get("name")
            with S.cond:
                exists = (ns + "/" + name) in S.objs[kind]
                if not exists:
                    body.setdefault("metadata", {})["namespace"] = ns
                    body["metadata"].pop("resourceVersion", None)
                    body["kind"], body["apiVersion"] = "Lease", "coordination.k8s.io/v1"
                    S.apply(body)
                    out = json.loads(json.dumps(body))
            if exists:
                self.record(verb, kind, ns, name, 409, body)
                return self.status(409, "AlreadyExists", 'leases "%s" already exists' % name)
            self.record(verb, kind, ns, name, 201, out)
            return self.reply(201, out)
        if name is None or (verb == "PUT" and sub not in (None, "status")) or \
                (verb == "PATCH" and sub != "status") or (sub == "status" and kind == "Lease") or \
                (sub is None and kind != "Lease"):
            return self.status(405, "MethodNotAllowed", "not served by this test server")
        key = ns + "/" + name
        with S.cond:
            cur = S.objs[kind].get(key)
            want = (body.get("metadata") or {}).get("resourceVersion")
            if not cur:
                code = 404
            elif want and want != cur["metadata"]["resourceVersion"]:
                code = 409
            elif verb == "PUT" and not want:
                code = 422  # an update needs the resourceVersion it saw
            else:
                code = 200
                new = json.loads(json.dumps(cur))
                if sub == "status" and verb == "PATCH":
                    new["status"] = merge_patch(cur.get("status"), body.get("status"))
                elif sub == "status":
                    new["status"] = body.get("status")
                else:  # an update: the spec, and labels and annotations as the body has them
                    new["spec"] = body.get("spec")
                    for k in ("labels", "annotations"):
                        v = (body.get("metadata") or {}).get(k)
                        if v is None:
                            new["metadata"].pop(k, None)
                        else:
                            new["metadata"][k] = v
                S.apply(new, spec_change=False)
                out = json.loads(json.dumps(new))
        self.record(verb + ("/status" if sub else ""), kind, ns, name, code, body)
        if code == 404:
            return self.status(404, "NotFound", '%s "%s" not found' % (KINDS[kind][2], name))
        if code == 409:
            return self.status(409, "Conflict", "the object has been modified; please apply your changes "
                               "to the latest version and try again")
        if code == 422:
            return self.status(422, "Invalid", "metadata.resourceVersion: must be specified for an update")
        self.reply(200, out)

    def do_POST(self):
        self.write("POST")

    def do_DELETE(self):
        """A Lease only (stale node reports), with DeleteOptions'
        preconditions.resourceVersion honoured (409 when it differs)."""
        start = self.write_start()
        if not start:
            return
        t, body = start
        if not t or t[0] != "Lease" or not t[2] or t[3]:
            return self.status(405, "MethodNotAllowed", "not served by this test server")
        kind, ns, name, _ = t
        want = ((body or {}).get("preconditions") or {}).get("resourceVersion")
        with S.cond:
            cur = S.objs[kind].get(ns + "/" + name)
            if not cur:
                code = 404
            elif want and want != cur["metadata"]["resourceVersion"]:
                code = 409
            else:
                code = 200
                S.apply({"kind": kind, "metadata": cur["metadata"]}, "DELETED")
        self.record("DELETE", kind, ns, name, code)
        if code == 404:
            return self.status(404, "NotFound", 'leases.coordination.k8s.io "%s" not found' % name)
        if code == 409:
            return self.status(409, "Conflict", "Precondition failed: UID in precondition or resourceVersion")
        self.reply(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200})

    def do_PUT(self):
        self.write("PUT")

    def do_PATCH(self):
        self.write("PATCH")

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        parts = u.path.strip("/").split("/")
        t = self.write_target()
        if t and t[0] == "Lease" and t[2]:
            if not self.authorized():
                return
            return self.lease_get(t[1], t[2])
        ns = None
        if parts[:1] in (["api"], ["apis"]):
            rest = parts[1:]
            if len(rest) >= 4 and rest[-3] == "namespaces":  # one namespace's
                ns, rest = rest[-2], rest[:-3] + rest[-1:]
            key = "/".join(rest)
        else:
            key = None
        kind = BY_PATH.get(key)
        if ns is not None and kind and not KINDS[kind][3]:
            kind = None
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
            return self.watch(kind, q, ns)
        return self.list(kind, q, ns)

    def list(self, kind, q, ns=None):
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
            items = [S.objs[kind][k] for k in keys if selected(S.objs[kind][k], ns, q.get("labelSelector"))]
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

    def watch(self, kind, q, ns=None):
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
                    cursor = rv
                    if not selected(o, ns, q.get("labelSelector")):
                        continue
                    self.chunk(json.dumps({"type": t, "object": o}).encode() + b"\n")
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
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with S.cond:
            if u.path == "/writes":
                return self.reply(S.writes)
            if u.path == "/object":
                o = S.objs.get(q.get("kind"), {}).get(q.get("namespace", "") + "/" + q.get("name", ""))
                if o is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                return self.reply(o)
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


def make_certs(d, address):
    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    j = lambda n: os.path.join(d, n)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=sl-kube-api test CA", "-keyout", j("ca.key"), "-out", j("ca.crt"))
    san = "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" + ("" if address == "127.0.0.1" else ",IP:" + address)
    for name, ext in (("server", san),
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
    ap.add_argument("--address", default="127.0.0.1", help="where the API listens")
    ap.add_argument("--lifetime", type=float, default=120, help="exit after this many seconds")
    a = ap.parse_args()
    S.token = a.token
    S.unserved = set(a.unserved)
    make_certs(a.dir, a.address)
    if a.objects:
        with open(a.objects) as f:
            data = json.load(f)
        for o in data.get("items", data) if isinstance(data, dict) else data:
            S.apply(o)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(a.dir, "server.crt"), os.path.join(a.dir, "server.key"))
    ctx.load_verify_locations(os.path.join(a.dir, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    api = ThreadingHTTPServer((a.address, 0), Api)
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
