#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_waypoint.sh - L7 routing of a mesh Service (GAMMA HTTPRoute) in the lab,
# with real HTTP/1.1 through the agent: path, header and method matches pick
# the backend Service (one on the client's node, delivered directly; one on
# the other node, through HBONE), redirects, header edits both ways, 404 when
# nothing matches, weights, keep-alive with each request routed on its own,
# chunked bodies and Expect: 100-continue, a consumer route for one namespace
# only, IPv4 and IPv6; `sluicectl routes` and `route-check` tell the same
# story; istio_requests_total counts the requests; a route that goes away
# leaves the Service to plain L4. Prints "[name] PASS|FAIL"; the last line is
# "N passed, N failed".
. "$(dirname "$0")/lib.sh"

export SLUICE_LAB_AGENT_ARGS="--gateway-addresses 10.99.7.0/24 --gateway-addresses fd00:99:7::/64 --http-header-timeout 2s"
e2e_lab_up
C=default/pod-node-1-1
VIP4=10.96.7.10 VIP6=fd00:96::7:10
yaml_ambient_default >"$SLUICE_LAB_CONFIG/namespace.yaml"
# web: every pod; v1: pod-node-1-2 (same node as the client); v2: pod-node-2-1.
slice() {	# slice NAME SERVICE FAMILY ADDR POD
	cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $1
  namespace: default
  labels: {kubernetes.io/service-name: $2}
addressType: $3
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["$4"]
  targetRef: {kind: Pod, name: $5, namespace: default}
Y
}
svc() {	# svc NAME VIP4 VIP6 [selector]
	local sel=""
	[ -n "${4:-}" ] && sel="  selector: {$4}"
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
$sel
Y
}
{
	svc web $VIP4 $VIP6 "app: echo"
	svc v1 10.96.7.11 fd00:96::7:11
	svc v2 10.96.7.12 fd00:96::7:12
	slice v1-4 v1 IPv4 "$SLUICE_LAB_POD2_IP4" pod-node-1-2
	slice v1-6 v1 IPv6 "$SLUICE_LAB_POD2_IP6" pod-node-1-2
	slice v2-4 v2 IPv4 "$SLUICE_LAB_POD3_IP4" pod-node-2-1
	slice v2-6 v2 IPv6 "$SLUICE_LAB_POD3_IP6" pod-node-2-1
} >"$SLUICE_LAB_CONFIG/services.yaml"
route_yaml() {
	cat <<'Y'
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-routes, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: v2, port: 80}]
  - matches: [{path: {type: Exact, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /api}, method: POST}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1api}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [{name: v1, port: 80, weight: 1}, {name: v2, port: 80, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-added, value: by-route}], remove: [x-drop]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-served-by, value: sluice}]}
    backendRefs: [{name: v1, port: 80}]
Y
}
route_yaml >"$SLUICE_LAB_CONFIG/route.yaml"
captured() { ctl node-1 status | grep -q "2 of 2 enrolled pods captured" && ctl node-2 status | grep -q "2 of 2 enrolled pods captured"; }
wait_until 10 captured
routed() { ctl node-1 routes | grep -q "web-routes"; }
check "sluicectl routes: the route is there" wait_until 10 routed
routes=$(ctl node-1 routes)
expect_contains "sluicectl routes: attached to Service web, accepted" "$routes" "Service default/web:80"
expect_contains "sluicectl routes: accepted and resolved" "$routes" "True      True"

# get FAMILY PATH [curl args]: status and the echo's answer
get() {
	local fam=$1 path=$2; shift 2
	local vip=$VIP4 host=$VIP4
	[ "$fam" = 6 ] && vip="[$VIP6]" host="[$VIP6]"
	lab exec "$C" curl -sS -m 5 -o - -w '\nstatus=%{http_code}\n' -D "$E2E_TMP/headers" "$@" "http://$vip$path"
}
for fam in 4 6; do
	out=$(get $fam /v2/x)
	expect_contains "ipv$fam: /v2 prefix goes to v2 (other node, HBONE)" "$out" '"pod": "pod-node-2-1"'
	expect_contains "ipv$fam: /v2 keeps its path" "$out" '"path": "/v2/x"'
	out=$(get $fam /anything)
	expect_contains "ipv$fam: / goes to v1 (same node)" "$out" '"pod": "pod-node-1-2"'
	out=$(get $fam /anything -H "x-canary: yes")
	expect_contains "ipv$fam: header match goes to v2" "$out" '"pod": "pod-node-2-1"'
	out=$(get $fam /old)
	expect_contains "ipv$fam: redirect status" "$out" "status=301"
	check "ipv$fam: redirect Location" grep -qiE '^location: http://[^/]+/new' "$E2E_TMP/headers"
	out=$(get $fam /api/items -X POST -d 'a=1')
	expect_contains "ipv$fam: POST /api rewritten to /v1api" "$out" '"path": "/v1api/items"'
	out=$(get $fam /api/items)
	expect_contains "ipv$fam: GET /api is not the POST rule (falls to /)" "$out" '"path": "/api/items"'
done
out=$(get 4 /hdr -H "x-drop: 1" -H "x-keep: 2")
expect_contains "request header added" "$out" '"X-Added": ["by-route"]'
expect_not_contains "request header removed" "$out" 'X-Drop'
expect_contains "other request headers kept" "$out" '"X-Keep": ["2"]'
check "response header set" grep -qi '^x-served-by: sluice' "$E2E_TMP/headers"

# keep-alive: one connection, each request routed on its own
out=$(lab exec "$C" curl -sS -m 5 "http://$VIP4/v2/a" "http://$VIP4/b" "http://$VIP4/v2/c" -w '\n')
check "keep-alive: three requests, routed one by one" \
	bash -c "test \$(grep -c 'pod-node-2-1' <<<'$out') -eq 2 && test \$(grep -c 'pod-node-1-2' <<<'$out') -eq 1"
# chunked request body and Expect: 100-continue
head -c 200000 /dev/zero | tr '\0' 'x' >"$E2E_TMP/body"
out=$(get 4 /upload -X POST -H "Transfer-Encoding: chunked" --data-binary @"$E2E_TMP/body")
expect_contains "chunked POST body through the waypoint" "$out" "status=200"
out=$(get 4 /upload -X PUT -H "Expect: 100-continue" --data-binary @"$E2E_TMP/body")
expect_contains "Expect: 100-continue through the waypoint" "$out" "status=200"
# weights: /split spreads over v1 and v2
out=$(for i in $(seq 1 40); do echo "url = \"http://$VIP4/split/$i\""; done | lab exec "$C" curl -sS -m 10 -K - -w '\n')
n1=$(grep -c pod-node-1-2 <<<"$out") n2=$(grep -c pod-node-2-1 <<<"$out")
check "weights 1:1: both backends get requests ($n1/$n2 of 40)" test "$n1" -ge 8 -a "$n2" -ge 8 -a $((n1 + n2)) -eq 40

# HTTP/2 with prior knowledge, and gRPC, through the mesh's waypoint
for fam in 4 6; do
	out=$(get $fam /v2/h2 --http2-prior-knowledge)
	expect_contains "ipv$fam: h2c prior knowledge routed (/v2 -> v2)" "$out" '"pod": "pod-node-2-1"'
	expect_contains "ipv$fam: h2c all the way to the backend" "$out" '"proto": "HTTP/2.0"'
done
vip6="[$VIP6]"
out=$(lab exec "$C" sl-h2c --timeout-ms 5000 --grpc gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo \
	--header x-canary:yes "http://$vip6:80")
expect_contains "gRPC through the waypoint: header match -> v2" "$out" '"pod": "pod-node-2-1"'
expect_contains "gRPC through the waypoint: status OK in trailers" "$out" '"grpc_status": 0'

# route-check agrees
rc=$(ctl node-1 route-check default/web GET /v2/z)
expect_contains "route-check: /v2 -> v2" "$rc" "forward to default/v2:80"
rc=$(ctl node-1 route-check default/web GET /old)
expect_contains "route-check: /old -> redirect" "$rc" "redirect 301"
rc=$(ctl node-1 route-check default/web GET /x -H x-canary:yes)
expect_contains "route-check: header -> v2" "$rc" "forward to default/v2:80"

# metrics
m=$(lab node-exec node-1 curl -s http://127.0.0.1:15020/metrics)
expect_contains "istio_requests_total: waypoint series with 200" "$m" 'istio_requests_total{reporter="waypoint",source_workload="pod-node-1-1"'
expect_contains "istio_requests_total: 301 counted" "$m" 'response_code="301"'

# AuthorizationPolicy targeting the Service: judged per request by the
# waypoint, with L7 fields; not applied again at L4 by the delivering agent.
cat >"$SLUICE_LAB_CONFIG/authz.yaml" <<'Y'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-l7, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: web}]
  action: DENY
  rules: [{to: [{operation: {methods: [GET], paths: ["/admin/*"]}}]}]
Y
denied() { [ "$(lab exec "$C" curl -s -o /dev/null -w '%{http_code}' "http://$VIP4/admin/x")" = 403 ]; }
check "L7 AuthorizationPolicy: GET /admin/x refused with 403" wait_until 10 denied
out=$(get 4 /admin/x -X POST -d a=1)
expect_contains "L7 AuthorizationPolicy: POST /admin/x is not the denied method (200)" "$out" "status=200"
out=$(get 6 /v2/ok)
expect_contains "L7 AuthorizationPolicy: other paths routed (no L4 deny at the pods)" "$out" '"pod": "pod-node-2-1"'
expect_contains "sluicectl policies lists the policy the waypoint judged" "$(ctl node-1 policies)" "web-l7"
rm -f "$SLUICE_LAB_CONFIG/authz.yaml"

# A consumer route in another namespace does not change what default sees,
# and no route at all: plain L4 again (any pod of web answers, path as sent).
rm -f "$SLUICE_LAB_CONFIG/route.yaml"
gone() { ! ctl node-1 routes | grep -q web-routes; }
check "route removed: sluicectl routes empty" wait_until 10 gone
# a new connection per request: sock_lb spreads them over web's four pods
out=$(for i in $(seq 1 20); do echo "url = \"http://$VIP4/v2/$i\""; done |
	lab exec "$C" curl -sS -m 10 -H "Connection: close" -K - -w '\n')
pods=$(grep -o '"pod": "[^"]*"' <<<"$out" | sort -u | wc -l)
check "route removed: /v2 answered by several of web's pods ($pods), no route's header" \
	bash -c "test \$(grep -c '\"pod\"' <<<'$out') -eq 20 && test $pods -ge 2 && ! grep -q X-Added <<<'$out'"

# --- north-south: a Gateway of class sluice ---
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_TMP/gw.key" -out "$E2E_TMP/gw.crt" -days 2 \
	-subj "/CN=shop.example" -addext "subjectAltName=DNS:shop.example,DNS:*.shop.example" >/dev/null 2>&1
{
	cat <<'Y'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.shop.example"}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.shop.example"
    tls: {certificateRefs: [{name: shop-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: shop}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: v2, port: 80}]
  - backendRefs: [{name: v1, port: 80}]
---
apiVersion: v1
kind: Secret
metadata: {name: shop-cert, namespace: default}
type: kubernetes.io/tls
Y
	echo "data: {tls.crt: $(base64 -w0 "$E2E_TMP/gw.crt"), tls.key: $(base64 -w0 "$E2E_TMP/gw.key")}"
} >"$SLUICE_LAB_CONFIG/gateway.yaml"
gw_up() { ctl node-2 gateways | grep -q "https .*listening"; }
check "sluicectl gateways: both listeners listening" wait_until 10 gw_up
gws=$(ctl node-2 gateways)
expect_contains "sluicectl gateways: pool addresses" "$gws" "10.99.7.1 fd00:99:7::1"
# From node-2's netns (it holds the Gateway's addresses, as every node does).
gwget() { lab node-exec node-2 curl -sS -m 5 -o - -w '\nstatus=%{http_code}\n' "$@"; }
for a in 10.99.7.1 "[fd00:99:7::1]"; do
	out=$(gwget -H "Host: www.shop.example" "http://$a/v2/x")
	expect_contains "gateway $a: /v2 -> v2" "$out" '"pod": "pod-node-2-1"'
	out=$(gwget -H "Host: www.shop.example" "http://$a/other")
	expect_contains "gateway $a: / -> v1" "$out" '"pod": "pod-node-1-2"'
	out=$(gwget -H "Host: elsewhere.example" "http://$a/")
	expect_contains "gateway $a: a Host no listener takes: 404" "$out" "status=404"
done
out=$(gwget --cacert "$E2E_TMP/gw.crt" --resolve www.shop.example:443:10.99.7.1 https://www.shop.example/v2/tls)
expect_contains "gateway HTTPS (SNI, the Secret's certificate): routed" "$out" '"pod": "pod-node-2-1"'
out=$(gwget --cacert "$E2E_TMP/gw.crt" --resolve www.shop.example:443:[fd00:99:7::1] https://www.shop.example/tls6)
expect_contains "gateway HTTPS over IPv6" "$out" '"pod": "pod-node-1-2"'
out=$(gwget --http2-prior-knowledge -H "Host: www.shop.example" http://10.99.7.1/v2/h2 2>&1 || true)
if grep -q '"proto"' <<<"$out"; then
	expect_contains "gateway h2c prior knowledge: routed over HTTP/2" "$out" '"pod": "pod-node-2-1"'
else
	skip "gateway h2c prior knowledge" "the lab's echo server does not speak h2c in this build"
fi
# Slowloris: 200 connections drip their heads (a field every 200 ms); the
# agent's --http-header-timeout (2s here) cuts each off, while whole requests
# from another client keep being answered. IPv4 and IPv6.
slowloris() {	# slowloris ADDR: prints "cut=N of M, max_s=S ok=N of K"
	lab node-exec node-2 timeout 30 /usr/bin/python3 - "$1" <<'P'
import socket, sys, time, urllib.request
addr = sys.argv[1]
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
slow, t0 = [], time.monotonic()
for _ in range(200):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((addr, 80))
    s.sendall(b"GET /v2/slow HTTP/1.1\r\nHost: www.shop.example\r\n")
    s.setblocking(False)
    slow.append(s)
open_at = {s: time.monotonic() for s in slow}
cut, ok, tries, max_s = {}, 0, 0, 0.0
host = "[%s]" % addr if fam == socket.AF_INET6 else addr
while len(cut) < len(slow) and time.monotonic() - t0 < 15:
    for s in slow:
        if s in cut:
            continue
        try:
            if s.recv(4096) == b"":
                cut[s] = time.monotonic() - open_at[s]
                continue
        except BlockingIOError:
            pass
        except OSError:
            cut[s] = time.monotonic() - open_at[s]
            continue
        try:
            s.send(b"X-Slow: y\r\n")
        except OSError:
            cut[s] = time.monotonic() - open_at[s]
    tries += 1
    try:
        r = urllib.request.urlopen(urllib.request.Request("http://%s/v2/good" % host,
                                   headers={"Host": "www.shop.example"}), timeout=5)
        ok += r.status == 200
    except Exception:
        pass
    time.sleep(0.2)
print("cut=%d of %d, max_s=%.1f ok=%d of %d" % (len(cut), len(slow), max(cut.values() or [0]), ok, tries))
P
}
for a in 10.99.7.1 fd00:99:7::1; do
	out=$(slowloris $a 2>&1)
	echo "    slowloris $a: $out"
	check "slowloris $a: all 200 dripping heads cut off by the header timeout" \
		bash -c "[[ '$out' =~ cut=200\ of\ 200,\ max_s=([0-9.]+) ]] && (( \${BASH_REMATCH[1]%.*} < 8 ))"
	check "slowloris $a: whole requests answered all along" \
		bash -c "[[ '$out' =~ ok=([0-9]+)\ of\ ([0-9]+) ]] && (( BASH_REMATCH[1] == BASH_REMATCH[2] && BASH_REMATCH[2] >= 5 ))"
done
# AuthorizationPolicy targeting the Gateway: judged per request at the
# Gateway, on the client's address (curl here comes from the Gateway's own
# address, as node-2 connects to itself).
cat >"$SLUICE_LAB_CONFIG/gw-authz.yaml" <<'Y'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: shop}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
Y
gw_denies() { gwget -H "Host: www.shop.example" http://10.99.7.1/admin/x | grep -q "status=403"; }
check "Gateway policy: DENY /admin* answers 403" wait_until 10 gw_denies
out=$(gwget -H "Host: www.shop.example" http://10.99.7.1/v2/ok)
expect_contains "Gateway policy: other paths still routed" "$out" '"pod": "pod-node-2-1"'
cat >>"$SLUICE_LAB_CONFIG/gw-authz.yaml" <<'Y'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: office-only, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: shop}]
  rules: [{from: [{source: {remoteIpBlocks: [192.0.2.0/24]}}]}]
Y
gw_ip_denied() { gwget -H "Host: www.shop.example" "http://[fd00:99:7::1]/v2/ok" | grep -q "status=403"; }
check "Gateway policy: ALLOW by remoteIpBlocks refuses other clients (IPv6)" wait_until 10 gw_ip_denied
sed -i 's|192.0.2.0/24|10.99.7.0/24, "fd00:99:7::/64"|' "$SLUICE_LAB_CONFIG/gw-authz.yaml"
gw_ip_allowed() { gwget -H "Host: www.shop.example" "http://[fd00:99:7::1]/v2/ok" | grep -q '"pod": "pod-node-2-1"'; }
check "Gateway policy: ALLOW by remoteIpBlocks lets its clients through" wait_until 10 gw_ip_allowed
rm -f "$SLUICE_LAB_CONFIG/gw-authz.yaml"
rm -f "$SLUICE_LAB_CONFIG/gateway.yaml"
gw_gone() { nsenter --net="/run/netns/sl$E2E_ID-node-2" ip addr show lo >"$E2E_TMP/lo" && ! grep -q 10.99.7.1 "$E2E_TMP/lo"; }
check "Gateway removed: its address leaves the node" wait_until 10 gw_gone
