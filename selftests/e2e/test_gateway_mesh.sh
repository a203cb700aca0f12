#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_gateway_mesh.sh - a Gateway of class sluice is a mesh client of its
# own (spiffe://cluster.local/ns/<gateway ns>/sa/<gateway name>-sluice), in
# the lab with real traffic over IPv4 and IPv6: with PeerAuthentication
# STRICT on the backends, where the node's plaintext is refused, the
# Gateway's HTTP and TCP upstreams get through: to a pod on the other node
# over HBONE (the destination agent's `sluicectl --json connections` and
# metrics name the Gateway's identity as the source), to a pod of its own
# node delivered directly; the backends still see the node's address as the
# client. An AuthorizationPolicy allowing only the Gateway's principal lets
# the Gateway's requests through and refuses another mesh pod. Requests to
# a pod outside the mesh stay plain TCP from the node. Prints
# "[name] PASS|FAIL"; the last line is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

export SLUICE_LAB_AGENT_ARGS="--gateway-addresses 10.99.9.0/24 --gateway-addresses fd00:99:9::/64"
e2e_lab_up
GW4=10.99.9.1 GW6=fd00:99:9::1
NODE4=10.100.0.2 NODE6=fd00:100::2	# node-2: where the clients run and the Gateway answers
GW_ID=spiffe://cluster.local/ns/default/sa/edge-sluice
PY=/usr/bin/python3

yaml_ambient_default >"$SLUICE_LAB_CONFIG/namespace.yaml"
# pod-node-1-2 leaves the mesh (its own label wins over the namespace's)
sed -i '/^  name: pod-node-1-2$/,/^spec:/ s/^    app: echo$/    app: echo\n    sluice.io\/dataplane-mode: none/' \
	"$SLUICE_LAB_CONFIG/pods.yaml"
slice() {	# slice NAME SERVICE FAMILY ADDR POD
	cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $1, namespace: default, labels: {kubernetes.io/service-name: $2}}
addressType: $3
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["$4"]
  targetRef: {kind: Pod, name: $5, namespace: default}
Y
}
svc() {	# svc NAME VIP4 VIP6
	cat <<Y
---
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: default}
spec:
  clusterIPs: ["$2", "$3"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
Y
}
# far: pod-node-1-1 (the other node: HBONE); near: pod-node-2-1 (the
# Gateway's node: direct); plain: pod-node-1-2 (outside the mesh)
{
	svc far 10.96.9.10 fd00:96::9:10
	svc near 10.96.9.11 fd00:96::9:11
	svc plain 10.96.9.12 fd00:96::9:12
	slice far-4 far IPv4 "$SLUICE_LAB_POD1_IP4" pod-node-1-1
	slice far-6 far IPv6 "$SLUICE_LAB_POD1_IP6" pod-node-1-1
	slice near-4 near IPv4 "$SLUICE_LAB_POD3_IP4" pod-node-2-1
	slice near-6 near IPv6 "$SLUICE_LAB_POD3_IP6" pod-node-2-1
	slice plain-4 plain IPv4 "$SLUICE_LAB_POD2_IP4" pod-node-1-2
	slice plain-6 plain IPv6 "$SLUICE_LAB_POD2_IP6" pod-node-1-2
} >"$SLUICE_LAB_CONFIG/services.yaml"
cat >"$SLUICE_LAB_CONFIG/strict.yaml" <<'Y'
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec: {mtls: {mode: STRICT}}
Y
cat >"$SLUICE_LAB_CONFIG/gateway.yaml" <<'Y'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: edge, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /near}}]
    backendRefs: [{name: near, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /plain}}]
    backendRefs: [{name: plain, port: 80}]
  - backendRefs: [{name: far, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: edge-tcp, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: tcp}]
  rules: [{backendRefs: [{name: far, port: 80}]}]
Y
captured() { ctl node-1 status | grep -q "1 of 1 enrolled pods captured" && ctl node-2 status | grep -q "2 of 2 enrolled pods captured"; }
check "pods captured (pod-node-1-2 outside the mesh)" wait_until 15 captured
gw_up() { ctl node-2 gateways | grep -qE "^  tcp +9000 .*listening"; }
check "sluicectl gateways: listeners listening" wait_until 10 gw_up

# STRICT bites: the node's own plaintext to a backend is refused (walk 4)
out=$(lab node-exec node-2 curl -sS -m 3 -o /dev/null -w '%{http_code}' "http://$SLUICE_LAB_POD1_IP4:8080/" 2>&1)
expect_not_contains "STRICT: the node's plaintext to pod-node-1-1 is refused" "$out" "200"

gwget() { lab node-exec node-2 curl -sS -m 5 -o - -w '\nstatus=%{http_code}\n' "$@"; }
for a in $GW4 "[$GW6]"; do
	node=$NODE4
	[ "$a" != "$GW4" ] && node="[$NODE6]"
	out=$(gwget "http://$a/far")
	expect_contains "HTTP $a -> far (other node, HBONE, STRICT): 200" "$out" "status=200"
	expect_contains "HTTP $a -> far: answered by pod-node-1-1" "$out" '"pod": "pod-node-1-1"'
	expect_contains "HTTP $a -> far: the backend sees the node's address" "$out" "\"remote\": \"$node:"
	out=$(gwget "http://$a/near")
	expect_contains "HTTP $a -> near (same node, direct, STRICT): pod-node-2-1" "$out" '"pod": "pod-node-2-1"'
	expect_contains "HTTP $a -> near: the backend sees the node's address" "$out" "\"remote\": \"$node:"
	out=$(gwget "http://$a/plain")
	expect_contains "HTTP $a -> plain (outside the mesh): pod-node-1-2" "$out" '"pod": "pod-node-1-2"'
done

# pooled: many requests share few HBONE connections
hb_total() { ctl node-2 --json connections | $PY -c 'import json,sys; print(json.load(sys.stdin)["stats"]["hbone_clients_total"])'; }
before=$(hb_total)
out=$(for i in $(seq 1 20); do echo "url = \"http://$GW4/far/$i\""; done |
	lab node-exec node-2 curl -sS -m 10 -H "Connection: close" -K - -w '%{http_code}\n' -o /dev/null)
check "20 requests, 20 connections to the Gateway: all 200" test "$(grep -c '^200$' <<<"$out")" -eq 20
after=$(hb_total)
check "they shared the pooled HBONE connection ($before -> $after opened)" test "$after" -eq "$before"

# the destination agent sees the Gateway's identity
m=$(lab node-exec node-1 curl -s http://127.0.0.1:15020/metrics)
expect_contains "node-1 metrics: destination-reported, source principal is the Gateway's" "$m" \
	"istio_tcp_connections_opened_total{reporter=\"destination\",source_workload=\"unknown\",source_workload_namespace=\"unknown\",source_principal=\"$GW_ID\",destination_workload=\"pod-node-1-1\""
expect_not_contains "node-1 metrics: nothing for the pod outside the mesh" "$m" 'destination_workload="pod-node-1-2"'
# a TCP connection held open through the TCP listener: listed on node-1
lab node-exec node-2 sl-echo stream tcp "$GW4" 9000 --duration-ms 4000 --interval-ms 200 \
	>"$E2E_TMP/stream.log" 2>&1 &
STREAM=$!
gw_conn() {
	ctl node-1 --json connections | $PY -c '
import json, sys
cs = json.load(sys.stdin)["connections"]
sys.exit(0 if any(c["direction"] == "inbound" and c["path"] == "hbone" and c["source"]["identity"] == sys.argv[1]
		  and c["destination"]["name"] == "pod-node-1-1" and c["src"]["ip"] == sys.argv[2] for c in cs) else 1)
' "$GW_ID" "$NODE4"
}
check "node-1 sluicectl --json connections: inbound HBONE from the Gateway's identity and the node's address" \
	wait_until 4 gw_conn
wait "$STREAM"; src=$?
check "TCP through the Gateway (TCPRoute -> far, STRICT): a long-lived and new connections, no error" \
	bash -c "test $src = 0 && grep -q 'long_errors=0 new_ok=[1-9][0-9]* new_err=0' '$E2E_TMP/stream.log'"
out=$(lab node-exec node-2 sl-echo probe tcp "$GW6" 9000 --line src --timeout-ms 3000 2>&1)
expect_contains "TCP IPv6 through the Gateway: pod-node-1-1 sees the node's address" "$out" "server_saw=[$NODE6]:"

# AuthorizationPolicy: only the Gateway may reach the namespace's pods
cat >"$SLUICE_LAB_CONFIG/authz.yaml" <<'Y'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-only, namespace: default}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/edge-sluice"]}}]}]
Y
pod_denied() { probe_summary default/pod-node-2-2 tcp "$SLUICE_LAB_POD1_IP4" 8080 --count 1 --timeout-ms 1000 | grep -q "ok=0"; }
check "AuthorizationPolicy: a mesh pod (pod-node-2-2 -> pod-node-1-1, HBONE) is refused" wait_until 10 pod_denied
out=$(probe_summary default/pod-node-1-2 tcp "$SLUICE_LAB_POD3_IP4" 8080 --count 1 --timeout-ms 1000)
expect_contains "AuthorizationPolicy: plaintext from outside the mesh is refused too (STRICT)" "$out" "ok=0"
out=$(probe_summary default/pod-node-2-2 tcp "$SLUICE_LAB_POD3_IP4" 8080 --count 1 --timeout-ms 1000)
expect_contains "AuthorizationPolicy: a mesh pod on the Gateway's node (direct) is refused" "$out" "ok=0"
for a in $GW4 "[$GW6]"; do
	out=$(gwget "http://$a/far")
	expect_contains "AuthorizationPolicy: Gateway $a -> far (HBONE) allowed" "$out" '"pod": "pod-node-1-1"'
	out=$(gwget "http://$a/near")
	expect_contains "AuthorizationPolicy: Gateway $a -> near (direct) allowed" "$out" '"pod": "pod-node-2-1"'
done
out=$(lab node-exec node-2 sl-echo probe tcp "$GW4" 9000 --count 3 --timeout-ms 3000 2>&1 | grep '^summary')
expect_contains "AuthorizationPolicy: TCP through the Gateway allowed" "$out" "ok=3 err=0"
pol=$(ctl node-1 --json policies)
check "node-1 counted what gateway-only allowed" $PY -c '
import json, sys
d = json.loads(sys.argv[1])
text = json.dumps(d)
assert "gateway-only" in text, text[:400]
' "$pol"
# another principal only: the Gateway is refused as well (it is the identity that passed)
sed -i 's|sa/edge-sluice|sa/someone-else|' "$SLUICE_LAB_CONFIG/authz.yaml"
gw_refused() { gwget "http://$GW4/far" | grep -qE "status=5[0-9][0-9]"; }
check "AuthorizationPolicy for another principal: the Gateway's request is refused (5xx)" wait_until 10 gw_refused
out=$(gwget "http://[$GW6]/near")
expect_contains "AuthorizationPolicy for another principal: refused on the same node too (IPv6)" "$out" "status=50"
rm -f "$SLUICE_LAB_CONFIG/authz.yaml"

# the Gateway gone: it stops being a mesh client (nothing left to check but
# that its address leaves)
rm -f "$SLUICE_LAB_CONFIG/gateway.yaml"
gw_gone() { nsenter --net="/run/netns/sl$E2E_ID-node-2" ip addr show lo >"$E2E_TMP/lo" && ! grep -q "$GW4" "$E2E_TMP/lo"; }
check "Gateway removed: its address leaves the node" wait_until 10 gw_gone
