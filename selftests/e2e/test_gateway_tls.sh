#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_gateway_tls.sh - a Gateway of class sluice with TLS listeners in mode
# Terminate in the lab, with real connections over IPv4 and IPv6: a Python
# ssl client connects with a server name, the Gateway's certificate for that
# name (from a kubernetes.io/tls Secret; two listeners on one port, each its
# own) verifies, no ALPN is chosen, and the echo server behind the TLSRoute
# the name picks gets the lines in plaintext (it echoes each one with its pod
# name and the client it saw: the node's address), on the Gateway's node
# (direct) and on the other node (HBONE, the Gateway's identity); a
# TCPRoute on a listener without hostname takes every name and none; a name
# no route takes, one outside the listener's hostname, and no name at all
# are refused in the handshake (unrecognized_name, no certificate); a
# listener whose certificateRef is missing, or in another namespace without
# a ReferenceGrant, is reported (InvalidCertificateRef, RefNotPermitted) and
# resets its connections (refuses them in the handshake when another listener
# on its port has a certificate: no other listener's certificate is shown).
# On the same port, distinct by hostname (the spec's distinct listeners),
# an HTTPS listener (HTTP/2 by ALPN, its own certificate, an HTTPRoute) and
# a TLS Passthrough one (an openssl s_server behind it shows its own
# certificate): the server name picks the listener.
# Prints "[name] PASS|FAIL"; the last line is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

export SLUICE_LAB_AGENT_ARGS="--gateway-addresses 10.99.9.0/24 --gateway-addresses fd00:99:9::/64"
trap 'rc=$?; e2e_servers_stop; (exit $rc); e2e_finish' EXIT
e2e_lab_up
GW4=10.99.9.1 GW6=fd00:99:9::1
NODE4=10.100.0.2 NODE6=fd00:100::2	# node-2, where the clients run and the Gateway answers
yaml_ambient_default >"$SLUICE_LAB_CONFIG/namespace.yaml"
# echo-a: pod-node-2-1 (the Gateway's node), echo-b: pod-node-1-1 (the other
# node); both the lab's sl-echo on 8080, in line mode for non-HTTP bytes.
{
	yaml_svc echo-a 10.96.9.10 fd00:96::9:10 9000 8080
	yaml_svc echo-b 10.96.9.11 fd00:96::9:11 9000 8080
	yaml_slice echo-a-4 echo-a IPv4 "$SLUICE_LAB_POD3_IP4" pod-node-2-1 8080
	yaml_slice echo-a-6 echo-a IPv6 "$SLUICE_LAB_POD3_IP6" pod-node-2-1 8080
	yaml_slice echo-b-4 echo-b IPv4 "$SLUICE_LAB_POD1_IP4" pod-node-1-1 8080
	yaml_slice echo-b-6 echo-b IPv6 "$SLUICE_LAB_POD1_IP6" pod-node-1-1 8080
	# tls-pass: an openssl s_server in pod-node-1-2 (Passthrough's backend)
	yaml_svc tls-pass 10.96.9.12 fd00:96::9:12 443 8443
	yaml_slice tls-pass-4 tls-pass IPv4 "$SLUICE_LAB_POD2_IP4" pod-node-1-2 8443
	yaml_slice tls-pass-6 tls-pass IPv6 "$SLUICE_LAB_POD2_IP6" pod-node-1-2 8443
} >"$SLUICE_LAB_CONFIG/services.yaml"

# The Gateway's certificates: one for *.shop.example, one for api.example.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_TMP/shop.key" -out "$E2E_TMP/shop.crt" -days 2 \
	-subj "/CN=shop.example" -addext "subjectAltName=DNS:*.shop.example" >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_TMP/api.key" -out "$E2E_TMP/api.crt" -days 2 \
	-subj "/CN=api.example" -addext "subjectAltName=DNS:api.example" >/dev/null 2>&1
# the HTTPS listener's, and the Passthrough backend's own
for n in www pass; do
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_TMP/$n.key" -out "$E2E_TMP/$n.crt" -days 2 \
		-subj "/CN=$n.example" -addext "subjectAltName=DNS:$n.example" >/dev/null 2>&1
done
# `s_server -rev` answers each line reversed, on IPv4 and IPv6
lab exec default/pod-node-1-2 openssl s_server -accept 8443 -cert "$E2E_TMP/pass.crt" -key "$E2E_TMP/pass.key" \
	-rev >"$E2E_TMP/s_server.log" 2>&1 </dev/null &
E2E_SRV_PIDS+=($!)
secret() {	# secret NAME NAMESPACE FILE-STEM
	cat <<Y
---
apiVersion: v1
kind: Secret
metadata: {name: $1, namespace: $2}
type: kubernetes.io/tls
data: {tls.crt: $(base64 -w0 "$E2E_TMP/$3.crt"), tls.key: $(base64 -w0 "$E2E_TMP/$3.key")}
Y
}
{
	secret shop-cert default shop
	secret api-cert default api
	secret www-cert default www
	secret shop-cert certs shop	# another namespace, no ReferenceGrant
} >"$SLUICE_LAB_CONFIG/secrets.yaml"

cat >"$SLUICE_LAB_CONFIG/gateway.yaml" <<'Y'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - name: shop
    port: 8443
    protocol: TLS
    hostname: "*.shop.example"
    tls: {mode: Terminate, certificateRefs: [{name: shop-cert}]}
  - name: api
    port: 8443
    protocol: TLS
    hostname: api.example
    tls: {mode: Terminate, certificateRefs: [{name: api-cert}]}
  - name: bad
    port: 8443
    protocol: TLS
    hostname: bad.example
    tls: {mode: Terminate, certificateRefs: [{name: no-such-secret}]}
  - name: web
    port: 8443
    protocol: HTTPS
    hostname: www.example
    tls: {certificateRefs: [{name: www-cert}]}
  - name: pass
    port: 8443
    protocol: TLS
    hostname: pass.example
    tls: {mode: Passthrough}
  - name: any
    port: 8444
    protocol: TLS
    tls: {mode: Terminate, certificateRefs: [{name: shop-cert}]}
  - name: missing
    port: 8445
    protocol: TLS
    tls: {mode: Terminate, certificateRefs: [{name: no-such-secret}]}
  - name: cross
    port: 8446
    protocol: TLS
    tls: {mode: Terminate, certificateRefs: [{name: shop-cert, namespace: certs}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{name: tls, sectionName: shop}]
  hostnames: [a.shop.example]
  rules: [{backendRefs: [{name: echo-a, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: b, namespace: default}
spec:
  parentRefs: [{name: tls, sectionName: shop}]
  hostnames: [b.shop.example]
  rules: [{backendRefs: [{name: echo-b, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: api, namespace: default}
spec:
  parentRefs: [{name: tls, sectionName: api}]
  hostnames: [api.example]
  rules: [{backendRefs: [{name: echo-b, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: bad, namespace: default}
spec:
  parentRefs: [{name: tls, sectionName: bad}]
  hostnames: [bad.example]
  rules: [{backendRefs: [{name: echo-a, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: tls, sectionName: web}]
  rules: [{backendRefs: [{name: echo-a, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: pass, namespace: default}
spec:
  parentRefs: [{name: tls, sectionName: pass}]
  hostnames: [pass.example]
  rules: [{backendRefs: [{name: tls-pass, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: any, namespace: default}
spec:
  parentRefs: [{name: tls, sectionName: any}]
  rules: [{backendRefs: [{name: echo-a, port: 9000}]}]
Y

gw_up() { ctl node-2 gateways | grep -qE "^  shop +8443 .*listening"; }
check "sluicectl gateways: the TLS Terminate listener is listening" wait_until 10 gw_up
gws=$(ctl node-2 gateways)
check "gateways: shop: TLS/term, two routes attached" grep -qE "^  shop +8443 +TLS/term +\*\.shop\.example +2 +listening" <<<"$gws"
check "gateways: api: TLS/term, one route" grep -qE "^  api +8443 +TLS/term +api\.example +1 +listening" <<<"$gws"
check "gateways: any: the TCPRoute attached" grep -qE "^  any +8444 +TLS/term .* 1 +listening" <<<"$gws"
check "gateways: web: HTTPS on 8443 beside them, by hostname" \
	grep -qE "^  web +8443 +HTTPS +www\.example +1 +listening" <<<"$gws"
check "gateways: pass: TLS Passthrough on 8443 beside them, by hostname" \
	grep -qE "^  pass +8443 +TLS/pass +pass\.example +1 +listening" <<<"$gws"
srv_up() { grep -q ACCEPT "$E2E_TMP/s_server.log"; }
check "Passthrough backend: openssl s_server" wait_until 10 srv_up
check "gateways: bad, beside shop and api on 8443: InvalidCertificateRef" \
	grep -qE "^  bad +8443 .*ResolvedRefs InvalidCertificateRef" <<<"$gws"
check "gateways: a missing Secret: InvalidCertificateRef" \
	grep -qE "^  missing +8445 .*ResolvedRefs InvalidCertificateRef: Secret default/no-such-secret not found" <<<"$gws"
check "gateways: a Secret in another namespace without a ReferenceGrant: RefNotPermitted" \
	grep -qE "^  cross +8446 .*ResolvedRefs RefNotPermitted" <<<"$gws"
js=$(ctl node-2 --json gateways)
check "gateways JSON: listener conditions and kinds" /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.argv[1])
g = [g for g in d["gateways"] if g["name"] == "tls"][0]
ls = {l["name"]: l for l in g["listeners"]}
s = ls["shop"]
assert s["accepted"] and s["resolved_refs"] and s["programmed"] and not s["conflicted"], s
assert s["tls_mode"] == "Terminate" and s["sockets"] == 2 and s["attached_routes"] == 2, s
assert s["supported_kinds"] == ["TCPRoute", "TLSRoute"], s
m = ls["missing"]
assert m["accepted"] and not m["resolved_refs"] and m["refs_reason"] == "InvalidCertificateRef", m
assert not m["programmed"], m
c = ls["cross"]
assert not c["resolved_refs"] and c["refs_reason"] == "RefNotPermitted" and not c["programmed"], c
assert g["accepted"] and g["programmed"], g
' "$js"
routes=$(ctl node-2 routes)
check "routes: the TLSRoutes accepted and resolved" \
	bash -c "grep -cE '^TLSRoute +default/(a|b|api|bad) .*True +True' <<<'$routes' | grep -qx 4"
check "routes: the TCPRoute on a TLS Terminate listener accepted" \
	grep -qE "^TCPRoute +default/any +Gateway default/tls#any +True +True" <<<"$routes"

# tls ADDR PORT SNI|- CAFILE LINES: a Python ssl client through the Gateway;
# prints what it verified and what came back, or why it was refused.
tls() {
	lab node-exec node-2 timeout 15 /usr/bin/python3 - "$@" <<'P'
import socket, ssl, sys
addr, port, sni, ca, lines = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2", "http/1.1"])
if sni == "-":
    ctx.check_hostname = False
    sni = None
try:
    # (a reset can come before connect() returns: the agent is that quick)
    raw = socket.create_connection((addr, port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname=sni)
except (ssl.SSLError, OSError) as e:
    print("refused", type(e).__name__, getattr(e, "reason", None) or e)
    sys.exit(0)
san = ",".join(v for k, v in s.getpeercert()["subjectAltName"])
print("verified", san, s.version(), "alpn", s.selected_alpn_protocol())
s.sendall(b"".join(b"line-%d\n" % i for i in range(lines)))
got = b""
while got.count(b"\n") < lines:
    d = s.recv(65536)
    if not d:
        break
    got += d
replies = got.decode(errors="replace").splitlines()
print("replies", len(replies))
print("first", replies[0] if replies else "")
print("in order", all(r.endswith(" line-%d" % i) for i, r in enumerate(replies)))
s.close()
P
}
for a in $GW4 $GW6; do
	node=$NODE4
	[ "$a" = "$GW6" ] && node="[$NODE6]"
	out=$(tls "$a" 8443 a.shop.example "$E2E_TMP/shop.crt" 1)
	expect_contains "TLS Terminate $a SNI a.shop.example: the listener's certificate, verified" "$out" \
		"verified *.shop.example"
	expect_contains "TLS Terminate $a: no ALPN chosen (the bytes are not ours to read)" "$out" "alpn None"
	expect_contains "TLS Terminate $a: echo-a (same node) got the line in plaintext, from the node's address" \
		"$out" "first pod-node-2-1 $node:"
	out=$(tls "$a" 8443 b.shop.example "$E2E_TMP/shop.crt" 1000)
	expect_contains "TLS Terminate $a SNI b.shop.example: echo-b (the other node, HBONE)" "$out" \
		"first pod-node-1-1 "
	expect_contains "TLS Terminate $a: 1000 lines both ways, in order" "$out" "replies 1000"
	expect_contains "TLS Terminate $a: ... each answered in order" "$out" "in order True"
	out=$(tls "$a" 8443 api.example "$E2E_TMP/api.crt" 1)
	expect_contains "TLS Terminate $a SNI api.example: the api listener's own certificate" "$out" \
		"verified api.example"
	expect_contains "TLS Terminate $a SNI api.example: its route's backend" "$out" "first pod-node-1-1 "
	out=$(tls "$a" 8443 nope.shop.example "$E2E_TMP/shop.crt" 1)
	expect_contains "TLS Terminate $a SNI no route takes: refused in the handshake" "$out" \
		"refused SSLError TLSV1_UNRECOGNIZED_NAME"
	out=$(tls "$a" 8443 x.other.example "$E2E_TMP/shop.crt" 1)
	expect_contains "TLS Terminate $a SNI outside the listeners' hostnames: refused" "$out" \
		"refused SSLError TLSV1_UNRECOGNIZED_NAME"
	out=$(tls "$a" 8443 - "$E2E_TMP/shop.crt" 1)
	expect_contains "TLS Terminate $a without SNI (every listener has a hostname): refused" "$out" "refused"
	out=$(tls "$a" 8444 - "$E2E_TMP/shop.crt" 1)
	expect_contains "TLS Terminate $a TCPRoute, no SNI: echo-a" "$out" "first pod-node-2-1 "
	out=$(tls "$a" 8444 anything.shop.example "$E2E_TMP/shop.crt" 1)
	expect_contains "TLS Terminate $a TCPRoute, any SNI: echo-a" "$out" "first pod-node-2-1 "
	out=$(tls "$a" 8443 bad.example "$E2E_TMP/shop.crt" 1)
	expect_contains "TLS Terminate $a SNI of a listener without a certificate: refused, no other's certificate" \
		"$out" "refused SSLError TLSV1_UNRECOGNIZED_NAME"
	# the same port: HTTPS and Passthrough by server name
	host=$a
	[ "$a" = "$GW6" ] && host="[$a]"
	out=$(lab node-exec node-2 curl -sS -m 10 --cacert "$E2E_TMP/www.crt" --resolve "www.example:8443:$host" \
		-w '\nstatus=%{http_code} version=%{http_version}\n' https://www.example:8443/mixed 2>&1)
	expect_contains "HTTPS on a mixed port $a SNI www.example: its certificate, HTTP/2 by ALPN" "$out" \
		"status=200 version=2"
	expect_contains "HTTPS on a mixed port $a: its HTTPRoute's backend" "$out" '"pod": "pod-node-2-1"'
	out=$(tls "$a" 8443 pass.example "$E2E_TMP/pass.crt" 1)
	expect_contains "Passthrough on a mixed port $a SNI pass.example: the backend's own certificate" "$out" \
		"verified pass.example"
	expect_contains "Passthrough on a mixed port $a: the backend answered (the line reversed)" "$out" \
		"first 0-enil"
	out=$(tls "$a" 8445 a.shop.example "$E2E_TMP/shop.crt" 1)
	check "TLS Terminate $a: no usable certificate: the connection is reset ($(head -n1 <<<"$out"))" \
		grep -qE "^refused" <<<"$out"
done

# The Gateway removed: its listeners close, its addresses leave the node.
rm -f "$SLUICE_LAB_CONFIG/gateway.yaml"
gw_gone() { nsenter --net="/run/netns/sl$E2E_ID-node-2" ip addr show lo >"$E2E_TMP/lo" && ! grep -q "$GW4" "$E2E_TMP/lo"; }
check "Gateway removed: its address leaves the node" wait_until 10 gw_gone
