#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_gateway_l4.sh - a Gateway of class sluice with TCP and TLS Passthrough
# listeners in the lab, with real connections over IPv4 and IPv6: a TCPRoute
# relays bytes to its backend both ways (half-close passed on: the echo
# answers only once it sees our end, and its own end comes back), weights
# spread connections, a route without a valid backend closes at once; a
# TLSRoute picks its backend by the ClientHello's server name (two
# `openssl s_server` with their own certificates; s_client checks which one
# answered), no route for a name closes; conflicting listeners (on one
# Gateway, and across Gateways on one address) are reported and not served,
# a TLS Terminate listener without certificateRefs is reported
# (InvalidCertificateRef; test_gateway_tls has it working); backends see the node's own
# address as the client, not the Gateway's. Prints "[name] PASS|FAIL"; the
# last line is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

export SLUICE_LAB_AGENT_ARGS="--gateway-addresses 10.99.8.0/24 --gateway-addresses fd00:99:8::/64"
e2e_lab_up
GW4=10.99.8.1 GW6=fd00:99:8::1
NODE4=10.100.0.2 NODE6=fd00:100::2	# node-2, where the clients run and the Gateway answers
yaml_ambient_default >"$SLUICE_LAB_CONFIG/namespace.yaml"
# echo-a: pod-node-2-1 (on the Gateway's node), echo-b: pod-node-1-1 (the
# other node); tls-a: an s_server in pod-node-2-1, tls-b: one in pod-node-1-2.
{
	yaml_svc echo-a 10.96.8.10 fd00:96::8:10 9000 8080
	yaml_svc echo-b 10.96.8.11 fd00:96::8:11 9000 8080
	yaml_svc tls-a 10.96.8.12 fd00:96::8:12 443 8443
	yaml_svc tls-b 10.96.8.13 fd00:96::8:13 443 8443
	yaml_slice echo-a-4 echo-a IPv4 "$SLUICE_LAB_POD3_IP4" pod-node-2-1 8080
	yaml_slice echo-a-6 echo-a IPv6 "$SLUICE_LAB_POD3_IP6" pod-node-2-1 8080
	yaml_slice echo-b-4 echo-b IPv4 "$SLUICE_LAB_POD1_IP4" pod-node-1-1 8080
	yaml_slice echo-b-6 echo-b IPv6 "$SLUICE_LAB_POD1_IP6" pod-node-1-1 8080
	yaml_slice tls-a-4 tls-a IPv4 "$SLUICE_LAB_POD3_IP4" pod-node-2-1 8443
	yaml_slice tls-a-6 tls-a IPv6 "$SLUICE_LAB_POD3_IP6" pod-node-2-1 8443
	yaml_slice tls-b-4 tls-b IPv4 "$SLUICE_LAB_POD2_IP4" pod-node-1-2 8443
	yaml_slice tls-b-6 tls-b IPv6 "$SLUICE_LAB_POD2_IP6" pod-node-1-2 8443
} >"$SLUICE_LAB_CONFIG/services.yaml"

# The TLS backends: their own self-signed certificates, `s_server -rev`
# (answers each line reversed; a line "CLOSE" ends the connection), on
# IPv4 and IPv6 (an -accept without an address).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_TMP/a.key" -out "$E2E_TMP/a.crt" -days 2 \
	-subj "/CN=a.example" -addext "subjectAltName=DNS:a.example" >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_TMP/b.key" -out "$E2E_TMP/b.crt" -days 2 \
	-subj "/CN=b.example" -addext "subjectAltName=DNS:*.b.example" >/dev/null 2>&1
SERVERS=()
stop_servers() {	# ours only, by pid; `lab down` would end them anyway
	local p
	for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap 'e2e_rc=$?; stop_servers; (exit $e2e_rc); e2e_finish' EXIT
for s in "a pod-node-2-1" "b pod-node-1-2"; do
	set -- $s
	lab exec "$2" openssl s_server -accept 8443 -cert "$E2E_TMP/$1.crt" -key "$E2E_TMP/$1.key" -rev \
		>"$E2E_TMP/s_server-$1.log" 2>&1 </dev/null &
	SERVERS+=($!)
done
srv_up() { grep -q ACCEPT "$E2E_TMP/s_server-a.log" && grep -q ACCEPT "$E2E_TMP/s_server-b.log"; }
check "TLS backends: two openssl s_server" wait_until 10 srv_up

{
	cat <<'Y'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: l4, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: tcp, port: 9000, protocol: TCP}
  - {name: tcp-split, port: 9001, protocol: TCP}
  - {name: tcp-none, port: 9002, protocol: TCP}
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}
  - {name: tls-term, port: 8443, protocol: TLS, tls: {mode: Terminate}}
  - {name: http, port: 80, protocol: HTTP}
  - {name: clash-tcp, port: 7000, protocol: TCP}
  - {name: clash-http, port: 7000, protocol: HTTP}
  - {name: dup-a, port: 7001, protocol: HTTP, hostname: dup.example}
  - {name: dup-b, port: 7001, protocol: HTTP, hostname: dup.example}
  - {name: shared, port: 7002, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: l4b, namespace: default}
spec:
  gatewayClassName: sluice
  addresses: [{type: IPAddress, value: 10.99.8.1}]
  listeners:
  - {name: shared, port: 7002, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp-split, namespace: default}
spec:
  parentRefs: [{name: l4, port: 9001}]
  rules: [{backendRefs: [{name: echo-a, port: 9000, weight: 1}, {name: echo-b, port: 9000, weight: 1}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp-none, namespace: default}
spec:
  parentRefs: [{name: l4, sectionName: tcp-none}]
  rules: [{backendRefs: [{name: missing, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: tls-a, namespace: default}
spec:
  parentRefs: [{name: l4, sectionName: tls}]
  hostnames: [a.example]
  rules: [{backendRefs: [{name: tls-a, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: tls-b, namespace: default}
spec:
  parentRefs: [{name: l4, sectionName: tls}]
  hostnames: ["*.b.example"]
  rules: [{backendRefs: [{name: tls-b, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http, namespace: default}
spec:
  parentRefs: [{name: l4, sectionName: http}]
  rules: [{backendRefs: [{name: echo-a, port: 9000}]}]
Y
} >"$SLUICE_LAB_CONFIG/gateway.yaml"
cat >"$SLUICE_LAB_CONFIG/tcproute.yaml" <<'Y'
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp, namespace: default}
spec:
  parentRefs: [{name: l4, sectionName: tcp}]
  rules: [{backendRefs: [{name: echo-a, port: 9000}]}]
Y

gw_up() { ctl node-2 gateways | grep -qE "^  tls +443 .*listening"; }
check "sluicectl gateways: the TLS listener is listening" wait_until 10 gw_up
gws=$(ctl node-2 gateways)
expect_contains "gateways: pool addresses" "$gws" "$GW4 $GW6"
check "gateways: tcp listening" grep -qE "^  tcp +9000 +TCP .* 1 +listening" <<<"$gws"
check "gateways: tls listening, two routes attached" grep -qE "^  tls +443 +TLS/pass .* 2 +listening" <<<"$gws"
check "gateways: HTTP and TCP on 7000: ProtocolConflict" \
	bash -c "grep -E '^  clash-(tcp|http) ' <<<'$gws' | grep -c 'Conflicted ProtocolConflict' | grep -qx 2"
check "gateways: two HTTP listeners, one hostname: HostnameConflict" \
	bash -c "grep -E '^  dup-(a|b) ' <<<'$gws' | grep -c 'Conflicted HostnameConflict' | grep -qx 2"
check "gateways: across Gateways on one address: ProtocolConflict" \
	bash -c "grep -E '^  shared ' <<<'$gws' | grep -c 'Conflicted ProtocolConflict' | grep -qx 2"
check "gateways: TLS Terminate without certificateRefs: InvalidCertificateRef" \
	grep -qE "^  tls-term +8443 +TLS/term .*ResolvedRefs InvalidCertificateRef" <<<"$gws"
expect_contains "gateways: l4 Accepted with ListenersNotValid" "$gws" "Accepted True (ListenersNotValid)"
js=$(ctl node-2 --json gateways)
check "gateways JSON: listener conditions" /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.argv[1])
l4 = [g for g in d["gateways"] if g["name"] == "l4"][0]
ls = {l["name"]: l for l in l4["listeners"]}
assert l4["programmed"] and l4["programmed_reason"] == "Programmed", l4
assert ls["tcp"]["programmed"] and ls["tcp"]["attached_routes"] == 1 and ls["tcp"]["supported_kinds"] == ["TCPRoute"]
assert ls["tls"]["supported_kinds"] == ["TLSRoute"] and ls["tls"]["sockets"] == 2, ls["tls"]
c = ls["clash-tcp"]
assert c["conflicted"] and c["conflict_reason"] == "ProtocolConflict" and not c["programmed"] and c["sockets"] == 0, c
t = ls["tls-term"]
assert t["accepted"] and not t["resolved_refs"] and t["refs_reason"] == "InvalidCertificateRef", t
assert not t["programmed"] and t["tls_mode"] == "Terminate", t
assert ls["tls"]["tls_mode"] == "Passthrough" and ls["tcp"]["tls_mode"] is None
' "$js"
routes=$(ctl node-2 routes)
check "routes: the TCPRoute accepted and resolved" grep -qE "^TCPRoute +default/tcp .*True +True" <<<"$routes"
check "routes: the TLSRoutes accepted and resolved" \
	bash -c "grep -cE '^TLSRoute +default/tls-. .*True +True' <<<'$routes' | grep -qx 2"
check "routes: a TCPRoute to a missing Service: BackendNotFound" \
	grep -qE "^TCPRoute +default/tcp-none .*True +False +BackendNotFound" <<<"$routes"

# --- TCPRoute ---
probe() { lab node-exec node-2 sl-echo probe tcp "$@" 2>&1; }
for a in $GW4 $GW6; do
	out=$(probe "$a" 9000 --line "hello-$a" --timeout-ms 3000)
	expect_contains "TCP $a: relayed to echo-a (pod-node-2-1)" "$out" "ok pod=pod-node-2-1"
done
out=$(probe $GW4 9000 --line src --timeout-ms 3000)
expect_contains "TCP IPv4: the backend sees the node's address ($NODE4), not the Gateway's" "$out" \
	"server_saw=$NODE4:"
out=$(probe $GW6 9000 --line src --timeout-ms 3000)
expect_contains "TCP IPv6: the backend sees the node's address ($NODE6)" "$out" "server_saw=[$NODE6]:"
# half-close: no newline, so the echo answers only at our end; its end comes back
halfclose() {
	lab node-exec node-2 timeout 10 /usr/bin/python3 - "$@" <<'P'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"half-closed")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    data += d
print(data.decode(errors="replace").strip())
print("EOF")
P
}
for a in $GW4 $GW6; do
	out=$(halfclose "$a" 9000)
	expect_contains "TCP $a: our FIN reached the backend (it answered at EOF)" "$out" "pod-node-2-1"
	expect_contains "TCP $a: the backend's answer and its end came back" "$out" "half-closed"$'\n'"EOF"
done
for a in $GW4 $GW6; do
	out=$(probe "$a" 9001 --count 30 --timeout-ms 3000 | grep '^summary')
	check "TCP $a weights 1:1: both backends get connections ($out)" \
		bash -c "grep -q 'ok=30 err=0' <<<'$out' && grep -q 'pod-node-1-1:' <<<'$out' && grep -q 'pod-node-2-1:' <<<'$out'"
	t0=$(date +%s%N)
	out=$(probe "$a" 9002 --timeout-ms 3000)
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	check "TCP $a: no valid backend: closed at once (${ms} ms: $(head -n1 <<<"$out"))" \
		bash -c "grep -qE '^err (ECONNRESET|ECONNABORTED|EPIPE)' <<<'$out' && test $ms -lt 2500"
	out=$(probe "$a" 7000 --timeout-ms 2000)
	expect_contains "conflicted listeners on $a:7000 are not served" "$out" "err ECONNREFUSED"
done

# --- TLSRoute (Passthrough) ---
tls() {	# tls ADDR SNI|- CAFILE NAME: s_client through the Gateway, line "hello" answered reversed
	local sni=(-servername "$2")
	[ "$2" = - ] && sni=(-noservername)
	printf 'hello\nCLOSE\n' | lab node-exec node-2 timeout 5 openssl s_client -connect "$1" "${sni[@]}" \
		-CAfile "$3" -verify_hostname "$4" -verify_return_error -brief -ign_eof 2>&1
}
for a in "$GW4:443" "[$GW6]:443"; do
	out=$(tls "$a" a.example "$E2E_TMP/a.crt" a.example)
	expect_contains "TLS $a SNI a.example: the a backend's certificate, verified" "$out" "Verified peername: a.example"
	expect_contains "TLS $a SNI a.example: bytes both ways, untouched" "$out" "olleh"
	out=$(tls "$a" x.b.example "$E2E_TMP/b.crt" x.b.example)
	expect_contains "TLS $a SNI x.b.example (*.b.example): the b backend's certificate, verified" "$out" \
		"Verified peername: *.b.example"
	expect_contains "TLS $a SNI x.b.example: bytes both ways" "$out" "olleh"
	out=$(tls "$a" nope.example "$E2E_TMP/a.crt" nope.example)
	expect_not_contains "TLS $a SNI no route takes: closed, no certificate" "$out" "Peer certificate"
	out=$(tls "$a" - "$E2E_TMP/a.crt" a.example)
	expect_not_contains "TLS $a without SNI: closed" "$out" "Peer certificate"
done

# --- HTTP through the same Gateway: the node's address as the client too ---
out=$(lab node-exec node-2 curl -sS -m 5 "http://$GW4/src")
expect_contains "HTTP: routed to echo-a" "$out" '"pod": "pod-node-2-1"'
expect_contains "HTTP IPv4: the backend sees the node's address" "$out" "\"remote\": \"$NODE4:"
out=$(lab node-exec node-2 curl -sS -m 5 "http://[$GW6]/src")
expect_contains "HTTP IPv6: the backend sees the node's address" "$out" "\"remote\": \"[$NODE6]:"

# --- a route removed: its listener closes connections at once ---
rm -f "$SLUICE_LAB_CONFIG/tcproute.yaml"
gone() { ! ctl node-2 routes | grep -qE "^TCPRoute +default/tcp "; }
check "TCPRoute removed: sluicectl routes" wait_until 10 gone
out=$(probe $GW4 9000 --timeout-ms 2000)
check "TCPRoute removed: the listener closes connections ($(head -n1 <<<"$out"))" \
	grep -qE '^err (ECONNRESET|ECONNABORTED|EPIPE)' <<<"$out"
rm -f "$SLUICE_LAB_CONFIG/gateway.yaml"
gw_gone() { nsenter --net="/run/netns/sl$E2E_ID-node-2" ip addr show lo >"$E2E_TMP/lo" && ! grep -q "$GW4" "$E2E_TMP/lo"; }
check "Gateways removed: their address leaves the node" wait_until 10 gw_gone
