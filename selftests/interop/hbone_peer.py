#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""hbone_peer.py - an HBONE peer written from HBONE.md alone (Python's ssl
module and the h2 package, Debian's python3-h2), to check that sluice speaks
HBONE the way the page says, independently of sluice's own code.

  client: TLS 1.3 with a client certificate to --connect, check the server's
          SPIFFE ID, settings and ALPN; send one request (CONNECT to
          --authority, or --method GET); expect --expect-status; on 200 send
          --bytes random bytes, half-close, and expect them echoed back.
  server: listen on --listen, require a client certificate with --expect-id;
          check the client's TLS (1.3, ALPN h2, no SNI), its HTTP/2 settings
          and each CONNECT's headers (no :scheme/:path, :authority,
          forwarded for=, baggage, a traceparent per stream); answer 200 and
          echo; exit after --streams streams. --refuse-first: refuse the first
          connection's first stream (REFUSED_STREAM without GOAWAY, a draining
          server's race) and expect the retry on a second connection.
          --reset-first: read the first connection's first request, then
          reset that connection (TCP RST, no answer) and expect the retry on
          a second connection. --reset-after-data: answer 200, reset once
          the first stream's first DATA is in, and expect no retry (the
          app's bytes went out: the server may have acted on them) for
          --timeout / 10 s.

Exit status 0 when every check passed; otherwise 1 with the reasons on
stderr. Every wait is bounded by --timeout seconds.
"""
import argparse
import os
import re
import select
import socket
import struct
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

ALLOWED_CIPHERS = {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"}
STREAM_WINDOW = 4 * 1024 * 1024
CONN_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 1024 * 1024

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("hbone_peer: FAIL: " + what, file=sys.stderr)
    return cond


def hostport(s):
    """'10.0.0.1:80' or '[fd00::1]:80' -> (host, port, family)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)", s)
    if m:
        return m.group(1), int(m.group(2)), socket.AF_INET6
    host, _, port = s.rpartition(":")
    return host, int(port), socket.AF_INET


def tls_context(server, cert, key, ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    if not server:
        ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


def spiffe_ids(tls):
    cert = tls.getpeercert() or {}
    return [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]


def check_tls(tls, expect_id):
    check(tls.version() == "TLSv1.3", "TLS version %s, want TLSv1.3" % tls.version())
    check(tls.selected_alpn_protocol() == "h2",
          "ALPN %r, want h2" % tls.selected_alpn_protocol())
    cipher = tls.cipher()[0] if tls.cipher() else None
    check(cipher in ALLOWED_CIPHERS, "cipher %s not in %s" % (cipher, sorted(ALLOWED_CIPHERS)))
    ids = spiffe_ids(tls)
    check(ids == [expect_id], "peer SPIFFE IDs %r, want [%r]" % (ids, expect_id))


class Pump:
    """Send queued stream data as flow control allows; END_STREAM when asked."""

    def __init__(self, conn):
        self.conn = conn
        self.pending = {}
        self.end = set()

    def queue(self, sid, data=b"", end=False):
        self.pending.setdefault(sid, bytearray()).extend(data)
        if end:
            self.end.add(sid)

    def run(self):
        for sid in list(self.pending):
            buf = self.pending[sid]
            while buf:
                try:
                    window = self.conn.local_flow_control_window(sid)
                except Exception:
                    buf.clear()
                    break
                n = min(window, self.conn.max_outbound_frame_size, len(buf))
                if n <= 0:
                    break
                self.conn.send_data(sid, bytes(buf[:n]))
                del buf[:n]
            if not buf and sid in self.end:
                self.conn.end_stream(sid)
                self.end.discard(sid)
                del self.pending[sid]


def io_loop(sock, conn, pump, handle, done, timeout):
    """Feed events to handle() until done() or the deadline."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    while not done():
        pump.run()
        out = conn.data_to_send()
        if out:
            sock.setblocking(True)
            sock.sendall(out)
            sock.setblocking(False)
        if done():
            break
        left = deadline - time.monotonic()
        if left <= 0:
            check(False, "timed out")
            return
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            select.select([sock], [], [], min(left, 1.0))
        try:
            data = sock.recv(1 << 20)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        except (ConnectionResetError, ssl.SSLError) as e:
            check(False, "connection error: %s" % e)
            return
        if not data:
            handle(None)
            return
        for ev in conn.receive_data(data):
            if os.environ.get("HBONE_PEER_DEBUG"):
                print("hbone_peer: event %r" % ev, file=sys.stderr)
            handle(ev)
    out = conn.data_to_send()
    if out:
        sock.setblocking(True)
        sock.sendall(out)


def run_client(a):
    host, port, fam = hostport(a.connect)
    raw = socket.socket(fam, socket.SOCK_STREAM)
    raw.settimeout(a.timeout)
    raw.connect((host, port))
    if a.pause_before_tls:
        time.sleep(a.pause_before_tls)	# the server has accepted: its handshake waits
    # No server_hostname: no SNI, as HBONE.md asks of clients.
    tls = tls_context(False, a.cert, a.key, a.ca).wrap_socket(raw)
    check_tls(tls, a.expect_id)
    # h2 4.1 wants :scheme and :path on every request; classic CONNECT has
    # neither (RFC 9113 8.5), so its own header checks are off for requests.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8", validate_outbound_headers=False))
    conn.initiate_connection()
    pump = Pump(conn)
    payload = os.urandom(a.bytes)
    st = {"status": None, "got": bytearray(), "ended": False, "reset": False,
          "settings": None, "conn_window": None, "goaway": None}
    sid = conn.get_next_available_stream_id()
    headers = [(":method", a.method), (":authority", a.authority)]
    if a.method != "CONNECT":
        headers += [(":scheme", "https"), (":path", "/")]
    headers += [("forwarded", 'for="127.0.0.1:1"'),
                ("baggage", "k8s.cluster.name=Kubernetes,k8s.namespace.name=default"),
                ("traceparent", "00-%s-%s-00" % (os.urandom(16).hex(), os.urandom(8).hex()))]
    conn.send_headers(sid, headers)

    def handle(ev):
        if ev is None:
            st["reset"] = True
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            st["settings"] = {k: v.new_value for k, v in ev.changed_settings.items()}
        elif isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
            st["status"] = int(dict(ev.headers)[":status"])
            st["conn_window"] = conn.outbound_flow_control_window
            if st["status"] == 200:
                pump.queue(sid, payload, end=True)
        elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
            st["got"].extend(ev.data)
            conn.acknowledge_received_data(ev.flow_controlled_length, sid)
        elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
            st["ended"] = True
        elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
            st["reset"] = True
        elif isinstance(ev, h2.events.ConnectionTerminated):
            st["goaway"] = ev.last_stream_id
            if ev.last_stream_id is not None and ev.last_stream_id < sid:
                st["reset"] = True	# our stream will not be processed

    def done():
        if st["status"] is None:
            return st["reset"]
        if st["status"] != 200:
            return True
        return st["ended"] or st["reset"]

    io_loop(tls, conn, pump, handle, done, a.timeout)
    s = st["settings"] or {}
    check(s.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == 200,
          "server MAX_CONCURRENT_STREAMS %r, want 200" % s.get(
              h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS))
    check(s.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE) == STREAM_WINDOW,
          "server INITIAL_WINDOW_SIZE %r" % s.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE))
    check(s.get(h2.settings.SettingCodes.MAX_FRAME_SIZE) == MAX_FRAME,
          "server MAX_FRAME_SIZE %r" % s.get(h2.settings.SettingCodes.MAX_FRAME_SIZE))
    check(s.get(h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE) == 64 * 1024,
          "server MAX_HEADER_LIST_SIZE %r" % s.get(h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE))
    if a.expect_goaway:
        check(st["goaway"] == 0, "GOAWAY last stream %r, want 0" % st["goaway"])
        check(st["status"] is None, "status %r, want none (refused)" % st["status"])
    else:
        check(st["status"] == a.expect_status,
              "status %r, want %d" % (st["status"], a.expect_status))
    if st["status"] == 200:
        check(st["conn_window"] == CONN_WINDOW,
              "server connection window %r, want %d" % (st["conn_window"], CONN_WINDOW))
        check(st["ended"], "stream did not end cleanly")
        check(bytes(st["got"]) == payload,
              "echo differs: got %d bytes of %d" % (len(st["got"]), len(payload)))
    try:
        conn.close_connection()
        tls.sendall(conn.data_to_send())
        tls.close()
    except OSError:
        pass


TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00")


def run_server(a):
    host, port, fam = hostport(a.listen)
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(8)
    ctx = tls_context(True, a.cert, a.key, a.ca)
    sni = []
    ctx.sni_callback = lambda sock, name, c: sni.append(name)
    if a.ready_file:
        open(a.ready_file, "w").close()
    ls.settimeout(a.timeout)
    refusing = refuse_first(ls, ctx, a) if a.refuse_first else None
    if a.reset_first or a.reset_after_data:
        reset_first(ls, ctx, a)
    if a.reset_after_data:
        ls.settimeout(a.timeout / 10)
        try:
            ls.accept()[0].close()
            check(False, "a retry came after the app's bytes had gone out")
        except socket.timeout:
            pass
        return
    raw, _ = ls.accept()
    raw.settimeout(a.timeout)
    tls = ctx.wrap_socket(raw, server_side=True)
    check_tls(tls, a.expect_id)
    check(all(n is None for n in sni), "client sent SNI %r" % sni)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding="utf-8", validate_inbound_headers=False))
    conn.initiate_connection()
    pump = Pump(conn)
    st = {"done": 0, "closed": False, "settings": None, "traces": set(), "checked_window": False,
          "goaway": False}

    def handle(ev):
        if ev is None:
            st["closed"] = True
        elif isinstance(ev, h2.events.ConnectionTerminated):
            st["goaway"] = True
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            st["settings"] = {k: v.new_value for k, v in ev.changed_settings.items()}
        elif isinstance(ev, h2.events.RequestReceived):
            h = dict(ev.headers)
            ok = check(h.get(":method") == "CONNECT", "method %r" % h.get(":method"))
            ok &= check(":scheme" not in h and ":path" not in h,
                        "classic CONNECT has no :scheme/:path: %r" % h)
            ok &= check(h.get(":authority") == a.expect_authority,
                        "authority %r, want %r" % (h.get(":authority"), a.expect_authority))
            fwd = h.get("forwarded", "")
            ok &= check(re.fullmatch(r'for="%s:\d+"(;host=[^;]+)?' % re.escape(a.expect_for),
                                     fwd) is not None, "forwarded %r" % fwd)
            tp = h.get("traceparent", "")
            ok &= check(TRACEPARENT.fullmatch(tp) is not None, "traceparent %r" % tp)
            ok &= check(tp not in st["traces"], "traceparent repeated: %r" % tp)
            st["traces"].add(tp)
            bag = h.get("baggage", "")
            for k in ("k8s.cluster.name=", "k8s.namespace.name=" + a.expect_namespace, "service.name=",
                      "service.version="):
                ok &= check(k in bag, "baggage %r lacks %s" % (bag, k))
            if not st["checked_window"]:
                st["checked_window"] = True
                check(conn.outbound_flow_control_window == CONN_WINDOW,
                      "client connection window %r, want %d" %
                      (conn.outbound_flow_control_window, CONN_WINDOW))
            conn.send_headers(ev.stream_id, [(":status", "200" if ok else "400")],
                              end_stream=not ok)
            if not ok:
                st["done"] += 1
        elif isinstance(ev, h2.events.DataReceived):
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            pump.queue(ev.stream_id, ev.data)
        elif isinstance(ev, h2.events.StreamEnded):
            pump.queue(ev.stream_id, b"", end=True)
            st["done"] += 1
        elif isinstance(ev, h2.events.StreamReset):
            check(False, "stream %d reset by the client" % ev.stream_id)
            st["done"] += 1

    def done():
        return st["closed"] or (st["done"] >= a.streams and not pump.pending)

    io_loop(tls, conn, pump, handle, done, a.timeout)
    if a.expect_client_close and not st["closed"]:
        # the client, done with its streams, must end the connection itself
        io_loop(tls, conn, pump, handle, lambda: st["closed"] or st["goaway"], a.expect_client_close)
        check(st["closed"] or st["goaway"],
              "the client kept the connection %.1f s after its streams" % a.expect_client_close)
    check(st["done"] >= a.streams, "served %d of %d streams" % (st["done"], a.streams))
    s = st["settings"] or {}
    check(s.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE) == STREAM_WINDOW,
          "client INITIAL_WINDOW_SIZE %r" % s.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE))
    check(s.get(h2.settings.SettingCodes.MAX_FRAME_SIZE) == MAX_FRAME,
          "client MAX_FRAME_SIZE %r" % s.get(h2.settings.SettingCodes.MAX_FRAME_SIZE))
    check(s.get(h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE) == 16 * 1024,
          "client MAX_HEADER_LIST_SIZE %r" % s.get(h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE))
    check(s.get(h2.settings.SettingCodes.ENABLE_PUSH) == 0,
          "client ENABLE_PUSH %r" % s.get(h2.settings.SettingCodes.ENABLE_PUSH))
    if refusing:
        # the retry went on the second connection: nothing more on the first
        rtls, rconn = refusing
        rtls.setblocking(False)
        try:
            data = rtls.recv(1 << 20)
        except (ssl.SSLWantReadError, BlockingIOError):
            data = b""
        except OSError:
            data = b""
        for ev in rconn.receive_data(data) if data else ():
            check(not isinstance(ev, h2.events.RequestReceived),
                  "a request on the connection that refused a stream")
        rtls.close()
    try:
        conn.close_connection()
        tls.sendall(conn.data_to_send())
        tls.close()
    except OSError:
        pass


def accept_h2(ls, ctx, a):
    """A server's HTTP/2 connection on the next TLS connection of ls, its
    settings queued: (tls, conn)."""
    raw, _ = ls.accept()
    raw.settimeout(a.timeout)
    tls = ctx.wrap_socket(raw, server_side=True)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding="utf-8", validate_inbound_headers=False))
    conn.initiate_connection()
    return tls, conn


def refuse_first(ls, ctx, a):
    """Accept a connection and refuse its first stream with REFUSED_STREAM and
    no GOAWAY, as a server going away does in a race; keep the connection
    open (returned) so a retry on it would be seen."""
    tls, conn = accept_h2(ls, ctx, a)
    st = {"refused": False}

    def handle(ev):
        if isinstance(ev, h2.events.RequestReceived) and not st["refused"]:
            time.sleep(a.refuse_delay)  # the client may begin its drain meanwhile
            conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            st["refused"] = True

    io_loop(tls, conn, Pump(conn), handle, lambda: st["refused"], a.timeout)
    check(st["refused"], "no stream to refuse")
    return tls, conn


def reset_first(ls, ctx, a):
    """Accept a connection, read its first stream's request and close the
    connection with a reset (SO_LINGER 0), unanswered: a draining server that
    closed with the client's new stream unread, whose GOAWAY the client may
    never read. --reset-after-data: answer it, and reset once its first DATA
    is in (a server lost mid-stream)."""
    tls, conn = accept_h2(ls, ctx, a)
    st = {"got": False, "data": False}

    def handle(ev):
        if isinstance(ev, h2.events.RequestReceived):
            st["got"] = True
            if a.reset_after_data:  # sluice sends the app's bytes after the answer
                conn.send_headers(ev.stream_id, [(":status", "200")])
        elif isinstance(ev, h2.events.DataReceived) and a.reset_after_data:
            st["data"] = True

    def ready():
        return st["data"] if a.reset_after_data else st["got"]

    io_loop(tls, conn, Pump(conn), handle, ready, a.timeout)
    check(ready(), "no stream (with DATA) to reset")
    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tls.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("client", "server"))
    p.add_argument("--connect")
    p.add_argument("--listen")
    p.add_argument("--authority")
    p.add_argument("--method", default="CONNECT")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--expect-id", required=True)
    p.add_argument("--expect-status", type=int, default=200)
    p.add_argument("--expect-authority")
    p.add_argument("--expect-for")
    p.add_argument("--expect-namespace", default="default",
                   help="the client's namespace, as its baggage should say")
    p.add_argument("--bytes", type=int, default=100000)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--ready-file")
    p.add_argument("--pause-before-tls", type=float, default=0,
                   help="client: wait this long between the TCP connect and TLS")
    p.add_argument("--expect-goaway", action="store_true",
                   help="client: expect GOAWAY with last stream 0 and no response")
    p.add_argument("--refuse-first", action="store_true",
                   help="server: refuse the first connection's first stream (REFUSED_STREAM, "
                   "no GOAWAY); the retry must come on a new connection")
    p.add_argument("--reset-first", action="store_true",
                   help="server: reset the first connection (TCP RST) once its first request "
                   "is in, unanswered; the retry must come on a new connection")
    p.add_argument("--reset-after-data", action="store_true",
                   help="server: reset the first connection once its first stream's DATA is in; "
                   "no retry may come")
    p.add_argument("--expect-client-close", type=float, default=0,
                   help="server: after the streams, the client must close (or GOAWAY) within this long")
    p.add_argument("--refuse-delay", type=float, default=0,
                   help="server: wait this long before that refusal")
    p.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args()
    try:
        if a.mode == "client":
            run_client(a)
        else:
            run_server(a)
    except (OSError, ssl.SSLError) as e:
        check(False, "%s: %s" % (type(e).__name__, e))
    if not failures:
        print("hbone_peer: %s ok" % a.mode)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
