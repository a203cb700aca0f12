#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""selftests/conformance/http_client.py - the conformance harness's client.

Run by selftests/conformance/run inside a lab pod or external host
(`scripts/lab exec ... python3 http_client.py`). Reads one JSON object on
stdin:

    {"concurrency": 10, "timeout": 5.0,
     "requests": [{"id": ..., "ip": "10.96.0.10", "port": 80,
                   "scheme": "http"|"https", "sni": null, "method": "GET",
                   "target": "/path?q", "headers": [["Host", "echo"], ...],
                   "protocol": null|"H2C_PRIOR_KNOWLEDGE",
                   "trust_pem": null|"-----BEGIN CERTIFICATE-----...",
                   "verify_name": null|"example.org"}, ...]}

and sends every request to ip:port exactly as given (the Host header as
listed, nothing else added: no User-Agent, no Accept-Encoding), one
connection per request, never following a redirect; HTTPS sends the SNI
given (default: the Host header's name; none for an address) and, with
trust_pem, verifies the server's certificate chain against those certificates
and its names against verify_name (default: the SNI, else the address) as
Go's crypto/x509 does (the upstream suite's client: subjectAltName only, a
wildcard only as a whole leftmost label, "*.org" matches "example.org");
without trust_pem it does not verify. H2C_PRIOR_KNOWLEDGE goes through curl
--http2-prior-knowledge.
Requests with the same "group" (a case) stop being sent once give_up_after
(default 10) of them failed with no answer and none was answered: the rest
get the error "not sent". Prints a JSON list, one object per request, in
input order:

    {"id": ..., "status": 200, "headers": [[name, value], ...],
     "body": "...", "error": null|"...", "ms": 1.2}
"""
import collections
import concurrent.futures
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

MAX_BODY = 256 * 1024


def name_matches(pattern, host):
    """Go's crypto/x509 matchHostnames: case-insensitive, trailing dot ignored,
    "*" only as the whole leftmost label of a pattern with as many labels."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern or not host:
        return False
    pp, hp = pattern.split("."), host.split(".")
    if len(pp) != len(hp):
        return False
    for i, (p, h) in enumerate(zip(pp, hp)):
        if i == 0 and p == "*" and h:
            continue
        if p != h:
            return False
    return True


def check_name(cert, name):
    """Raise unless the verified peer certificate (getpeercert()) is for name
    (a DNS name or an address)."""
    sans = cert.get("subjectAltName") or ()
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    for kind, v in sans:
        if ip is not None and kind == "IP Address":
            try:
                if ipaddress.ip_address(v.strip()) == ip:
                    return
            except ValueError:
                pass
        elif ip is None and kind == "DNS" and name_matches(v, name):
            return
    raise ssl.SSLCertVerificationError("certificate is not valid for %s (subjectAltName: %s)" % (
        name, ", ".join("%s:%s" % kv for kv in sans) or "none"))


def one_http(r, timeout):
    ip, port = r["ip"], int(r["port"])
    sock = socket.create_connection((ip, port), timeout=timeout)
    try:
        if r.get("scheme") == "https":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False      # checked below, with Go's rules
            if r.get("trust_pem"):
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cadata=r["trust_pem"])
            else:
                ctx.verify_mode = ssl.CERT_NONE
            if r.get("client_cert"):
                ctx.load_cert_chain(r["client_cert"], r.get("client_key"))
            sni = r.get("sni")
            if not sni:
                host = next((v for k, v in r["headers"] if k.lower() == "host"), ip)
                sni = host.rsplit(":", 1)[0] if not host.startswith("[") else None
            try:
                ipaddress.ip_address(sni or "")
                sni = None          # an address is not sent as SNI
            except ValueError:
                pass
            sock = ctx.wrap_socket(sock, server_hostname=sni or None)
            if r.get("trust_pem"):
                check_name(sock.getpeercert() or {}, r.get("verify_name") or sni or ip)
        conn = http.client.HTTPConnection(ip, port, timeout=timeout)
        conn.sock = sock
        conn.putrequest(r.get("method") or "GET", r.get("target") or "/", skip_host=True,
                        skip_accept_encoding=True)
        for k, v in r["headers"]:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read(MAX_BODY) if r.get("method") != "HEAD" else b""
        return {"status": resp.status, "headers": [[k, v] for k, v in resp.getheaders()],
                "body": body.decode("utf-8", "replace")}
    finally:
        sock.close()


def one_h2c(r, timeout):
    curl = shutil.which("curl")
    if not curl:
        raise RuntimeError("no curl for HTTP/2 prior knowledge")
    host = "[%s]" % r["ip"] if ":" in r["ip"] else r["ip"]
    with tempfile.TemporaryDirectory(prefix="sl-conf-") as d:
        hdr, body = os.path.join(d, "h"), os.path.join(d, "b")
        argv = [curl, "-sS", "--http2-prior-knowledge", "--path-as-is", "--max-time", str(timeout),
                "-D", hdr, "-o", body, "-X", r.get("method") or "GET"]
        for k, v in r["headers"]:
            argv += ["-H", "%s: %s" % (k, v) if v != "" else "%s;" % k]
        argv.append("http://%s:%d%s" % (host, int(r["port"]), r.get("target") or "/"))
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
        if p.returncode != 0:
            raise RuntimeError("curl exit %d: %s" % (p.returncode, p.stderr.strip()[-200:]))
        with open(hdr, errors="replace") as f:
            lines = f.read().split("\r\n")
        with open(body, "rb") as f:
            b = f.read(MAX_BODY)
    status, headers = 0, []
    for line in lines:
        if line.startswith("HTTP/"):
            status, headers = int(line.split()[1]), []
        elif ":" in line:
            k, _, v = line.partition(":")
            headers.append([k.strip(), v.strip()])
    return {"status": status, "headers": headers, "body": b.decode("utf-8", "replace")}


def one_grpc(r, timeout):
    """A unary gRPC call with sl-h2c (selftests/tools): its answer as the
    echo's would look (pod, namespace, path: the method called), plus
    grpc_status and grpc_message."""
    g = r["grpc"]
    host = "[%s]" % r["ip"] if ":" in r["ip"] else r["ip"]
    argv = [r["sl_h2c"], "--timeout-ms", str(int(timeout * 1000)), "--grpc",
            "%s/%s" % (g["service"], g["method"]), "--authority", g["authority"]]
    for k, v in g.get("metadata") or []:
        argv += ["--header", "%s:%s" % (k, v)]
    argv.append("http://%s:%d" % (host, int(r["port"])))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
    if p.returncode != 0:
        raise RuntimeError("sl-h2c exit %d: %s" % (p.returncode, (p.stderr.strip().splitlines() or [""])[-1]))
    j = json.loads(p.stdout)
    res = {"status": j.get("status"), "headers": [[k, v] for k, vs in (j.get("headers") or {}).items()
                                                   for v in (vs if isinstance(vs, list) else [vs])],
           "grpc_status": j.get("grpc_status"), "grpc_message": j.get("grpc_message"), "body": ""}
    a = (j.get("grpc_response") or {}).get("assertions") or {}
    ctx = a.get("context") or {}
    if j.get("grpc_status") == 0 and ctx:
        hdrs = {}
        for h in a.get("headers") or []:
            hdrs.setdefault(h.get("key"), []).append(h.get("value"))
        res["body"] = json.dumps({"path": a.get("fully_qualified_method"), "host": a.get("authority"),
                                  "method": "POST", "proto": "HTTP/2.0", "headers": hdrs,
                                  "namespace": ctx.get("namespace"), "service": ctx.get("service_name"),
                                  "pod": ctx.get("pod")})
    return res


def one(r, timeout):
    t0 = time.monotonic()
    res = {"id": r.get("id"), "status": None, "headers": [], "body": "", "error": None}
    try:
        if r.get("protocol") in (None, "", "HTTP/1.1"):
            res.update(one_http(r, timeout))
        elif r["protocol"] == "H2C_PRIOR_KNOWLEDGE":
            res.update(one_h2c(r, timeout))
        elif r["protocol"] == "GRPC":
            res.update(one_grpc(r, timeout))
        else:
            res["error"] = "protocol %s: not implemented in the harness's client" % r["protocol"]
    except Exception as e:     # every failure is a result, not a crash
        res["error"] = "%s: %s" % (type(e).__name__, e)
    res["ms"] = round((time.monotonic() - t0) * 1000, 1)
    return res


def main():
    job = json.load(sys.stdin)
    reqs = job.get("requests") or []
    timeout = float(job.get("timeout") or 5)
    conc = max(1, int(job.get("concurrency") or 1))
    give_up = int(job.get("give_up_after") or 10)
    lock = threading.Lock()
    errors, answered = collections.Counter(), set()

    def run_one(r):
        g = r.get("group")
        with lock:
            if g is not None and g not in answered and errors[g] >= give_up:
                return {"id": r.get("id"), "status": None, "headers": [], "body": "", "ms": 0,
                        "error": "not sent: the first %d requests of this case got no answer" % give_up}
        res = one(r, timeout)
        with lock:
            if res["error"]:
                errors[g] += 1
            else:
                answered.add(g)
        return res

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(conc, max(1, len(reqs)))) as ex:
        results = list(ex.map(run_one, reqs))
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
