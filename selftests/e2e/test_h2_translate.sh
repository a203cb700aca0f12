#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_h2_translate.sh - the waypoint translates between HTTP/1.1 and HTTP/2
# as the backend Service port's appProtocol says, in the lab, IPv4 and IPv6:
#   - an HTTP/2 client (curl --http2-prior-knowledge) to a Service whose port
#     says appProtocol http, served by an sl-echo that closes any HTTP/2
#     connection (--only http1): status, headers, bodies (content-length,
#     none: chunked upstream, 300 KB) and keep-alive reuse;
#   - an HTTP/1.1 client (curl --http1.1) to a Service whose port says
#     kubernetes.io/h2c, served by an sl-echo that closes anything but HTTP/2
#     (--only h2c): the same, chunked request bodies and Expect too;
#   - an HTTPS Gateway listener offers h2 by ALPN: curl gets HTTP/2, the
#     backend with no appProtocol HTTP/1.1, the h2c one HTTP/2;
#   - one HTTP/2 client connection (h2load -c 1) to a Service with two h2c
#     endpoints (one per node): its streams are balanced over both;
#   - retries: one of a Service's two endpoints dead, POSTs from an HTTP/1.1
#     client to an HTTP/1.1 and an h2c backend all answered when the route
#     retries (the retry avoids the endpoint that failed), some not when it
#     does not.
# The backends log each request body's length and FNV-1a; the test compares.
# Prints "[name] PASS|FAIL"; the last line is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
export SLUICE_LAB_AGENT_ARGS="--gateway-addresses 10.99.8.0/24 --gateway-addresses fd00:99:8::/64"
trap 'rc=$?; e2e_servers_stop; (exit $rc); e2e_finish' EXIT
e2e_lab_up
C=default/pod-node-1-1
H1_4=10.96.8.11 H1_6=fd00:96::8:11	# h1only: appProtocol http, pod-node-1-2:9081 (same node)
H2_4=10.96.8.12 H2_6=fd00:96::8:12	# h2only: appProtocol kubernetes.io/h2c, pod-node-2-1:9082 (HBONE)

# The single-protocol backends, in the pods' netns and cgroup (lab exec);
# their logs opened to append, so that the test can empty them.
lab exec default/pod-node-1-2 sl-echo serve --pod pod-node-1-2 --namespace default --service h1only \
	--tcp 9081 --only http1 >>"$E2E_TMP/h1.log" 2>&1 &
E2E_SRV_PIDS+=($!)
lab exec default/pod-node-2-1 sl-echo serve --pod pod-node-2-1 --namespace default --service h2only \
	--tcp 9082 --only h2c >>"$E2E_TMP/h2.log" 2>&1 &
E2E_SRV_PIDS+=($!)

yaml_ambient_default >"$SLUICE_LAB_CONFIG/namespace.yaml"
svc() {	# svc NAME VIP4 VIP6 TARGET_PORT APP_PROTOCOL POD IP4 IP6 (and its route)
	yaml_app_svc "$@"
	cat <<Y
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: $1, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: $1, port: 80}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-route, value: $1}]}
    backendRefs: [{name: $1, port: 80}]
Y
}
{
	svc h1only $H1_4 $H1_6 9081 http pod-node-1-2 "$SLUICE_LAB_POD2_IP4" "$SLUICE_LAB_POD2_IP6"
	svc h2only $H2_4 $H2_6 9082 kubernetes.io/h2c pod-node-2-1 "$SLUICE_LAB_POD3_IP4" "$SLUICE_LAB_POD3_IP6"
} >"$SLUICE_LAB_CONFIG/services.yaml"
captured() { ctl node-1 status | grep -q "2 of 2 enrolled pods captured" && ctl node-2 status | grep -q "2 of 2 enrolled pods captured"; }
check "pods captured" wait_until 20 captured
routed() { [ "$(ctl node-1 routes | grep -c 'True      True')" -ge 2 ]; }
check "both routes accepted" wait_until 20 routed
listening() { lab exec "$C" bash -c "exec 3<>/dev/tcp/$SLUICE_LAB_POD2_IP4/9081 && exec 4<>/dev/tcp/$SLUICE_LAB_POD3_IP4/9082"; }
check "the single-protocol backends listen" wait_until 10 listening

# The backends really speak one protocol: straight to them (L4, no waypoint).
out=$(lab exec "$C" curl -sS -m 5 --http2-prior-knowledge "http://$SLUICE_LAB_POD2_IP4:9081/direct" 2>&1)
expect_not_contains "control: the http1 backend refuses HTTP/2" "$out" '"proto"'
out=$(lab exec "$C" curl -sS -m 5 --http1.1 "http://$SLUICE_LAB_POD3_IP4:9082/direct" 2>&1)
expect_not_contains "control: the h2c backend refuses HTTP/1.1" "$out" '"proto"'

# fnv TEXT_FILE : "len=N fnv=XXXXXXXX" of the file's bytes, as sl-echo logs it.
fnv() {
	"$PY" -c 'import sys
d = open(sys.argv[1], "rb").read()
h = 2166136261
for b in d:
    h = ((h ^ b) * 16777619) & 0xffffffff
print("body len=%d fnv=%08x" % (len(d), h))' "$1"
}
printf 'hello, translated world' >"$E2E_TMP/small"
head -c 300000 /dev/urandom | base64 -w 76 | head -c 300000 >"$E2E_TMP/big"
small=$(fnv "$E2E_TMP/small") big=$(fnv "$E2E_TMP/big")
# logged LOG LINE : the backend's log has LINE (it writes once per loop turn)
logged() { grep -qF -- "$2" "$1"; }
# body_check NAME LOG LINE : a check that the backend logged LINE (its log shown when not)
body_check() {
	if wait_until 5 logged "$2" "$3"; then
		pass "$1"
	else
		fail "$1" "no '$3' in the backend's log:"
		tail -n 6 "$2" | sed 's/^/    /'
	fi
	: >"$2"
}

# req FAMILY VIP4 VIP6 PATH [curl args]: the answer's head and body
req() {
	local fam=$1 v4=$2 v6=$3 path=$4; shift 4
	local host=$v4
	[ "$fam" = 6 ] && host="[$v6]"
	lab exec "$C" curl -sS -m 10 -D - -o - -w '\nstatus=%{http_code} version=%{http_version}\n' "$@" \
		"http://$host$path" 2>&1
}

for fam in 4 6; do
	# ---- HTTP/2 client -> HTTP/1.1-only backend
	out=$(req $fam $H1_4 $H1_6 "/h2c-to-h1?fam=$fam" --http2-prior-knowledge -H 'x-req: one')
	expect_contains "ipv$fam h2->h1: HTTP/2 200 to the client" "$out" "status=200 version=2"
	expect_contains "ipv$fam h2->h1: the backend saw HTTP/1.1" "$out" '"proto": "HTTP/1.1"'
	expect_contains "ipv$fam h2->h1: path and query" "$out" "\"path\": \"/h2c-to-h1?fam=$fam\""
	expect_contains "ipv$fam h2->h1: :authority as Host" "$out" '"host": "'"$([ $fam = 4 ] && echo $H1_4 || echo "[$H1_6]")"'"'
	expect_contains "ipv$fam h2->h1: request header passed" "$out" '"X-Req": ["one"]'
	expect_contains "ipv$fam h2->h1: backend pod" "$out" '"pod": "pod-node-1-2"'
	expect_contains "ipv$fam h2->h1: the route's response header" "$out" "x-route: h1only"
	expect_contains "ipv$fam h2->h1: content-type passed back" "$out" "content-type: application/json"
	echo "$out" >"$E2E_TMP/out"
	check "ipv$fam h2->h1: no connection-specific field in the HTTP/2 answer" \
		bash -c "! grep -qiE '^(connection|keep-alive|transfer-encoding):' '$E2E_TMP/out'"
	out=$(req $fam $H1_4 $H1_6 /post --http2-prior-knowledge --data-binary @"$E2E_TMP/small")
	expect_contains "ipv$fam h2->h1: POST with content-length answered" "$out" "status=200 version=2"
	body_check "ipv$fam h2->h1: ... its body reached the backend whole" "$E2E_TMP/h1.log" "$small"
	# (sl-echo answers HTTP/1.1 after the head, and curl stops sending an
	# HTTP/2 body once the answer is whole: the answer is held a second)
	out=$(req $fam $H1_4 $H1_6 '/chunked?delay=1s' --http2-prior-knowledge -H 'Transfer-Encoding: chunked' \
		--data-binary @"$E2E_TMP/big")
	expect_contains "ipv$fam h2->h1: 300 KB POST without content-length answered" "$out" "status=200 version=2"
	body_check "ipv$fam h2->h1: ... sent chunked, reached the backend whole" "$E2E_TMP/h1.log" "$big"

	# ---- HTTP/1.1 client -> HTTP/2-only backend
	out=$(req $fam $H2_4 $H2_6 "/h1-to-h2c?fam=$fam" --http1.1 -H 'x-req: two' -H 'Connection: keep-alive')
	expect_contains "ipv$fam h1->h2: HTTP/1.1 200 to the client" "$out" "status=200 version=1.1"
	expect_contains "ipv$fam h1->h2: the backend saw HTTP/2" "$out" '"proto": "HTTP/2.0"'
	expect_contains "ipv$fam h1->h2: path and query" "$out" "\"path\": \"/h1-to-h2c?fam=$fam\""
	expect_contains "ipv$fam h1->h2: Host as :authority" "$out" '"host": "'"$([ $fam = 4 ] && echo $H2_4 || echo "[$H2_6]")"'"'
	expect_contains "ipv$fam h1->h2: request header passed" "$out" '"X-Req": ["two"]'
	expect_not_contains "ipv$fam h1->h2: Connection not passed on" "$out" '"Connection"'
	expect_contains "ipv$fam h1->h2: backend pod (other node)" "$out" '"pod": "pod-node-2-1"'
	expect_contains "ipv$fam h1->h2: the route's response header" "$out" "x-route: h2only"
	out=$(req $fam $H2_4 $H2_6 /post --http1.1 --data-binary @"$E2E_TMP/small")
	expect_contains "ipv$fam h1->h2: POST with content-length answered" "$out" "status=200 version=1.1"
	body_check "ipv$fam h1->h2: ... its body reached the backend whole" "$E2E_TMP/h2.log" "$small"
	out=$(req $fam $H2_4 $H2_6 /chunked --http1.1 -H 'Transfer-Encoding: chunked' -H 'Expect: 100-continue' \
		--data-binary @"$E2E_TMP/big")
	expect_contains "ipv$fam h1->h2: 300 KB chunked POST with Expect answered" "$out" "status=200 version=1.1"
	body_check "ipv$fam h1->h2: ... its body reached the backend whole" "$E2E_TMP/h2.log" "$big"
done

# keep-alive: three requests on one client connection, one HTTP/2 upstream
out=$(lab exec "$C" curl -sS -m 10 -v --http1.1 "http://$H2_4/a" "http://$H2_4/b" "http://$H2_4/c" -w '\n' 2>&1)
check "h1->h2 keep-alive: three answers from HTTP/2" test "$(grep -c '"proto": "HTTP/2.0"' <<<"$out")" -eq 3
expect_contains "h1->h2 keep-alive: the client's connection reused" "$out" "Re-using existing connection"
# (HTTP/2 streams one after another on one client connection share one
# HTTP/1.1 upstream: test_waypoint_h2_to_h1; curl 7.88 cannot reuse an h2c
# prior-knowledge connection)

# ---- HTTPS Gateway: h2 by ALPN
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_TMP/gw.key" -out "$E2E_TMP/gw.crt" -days 2 \
	-subj "/CN=tr.example" -addext "subjectAltName=DNS:tr.example,DNS:*.tr.example" >/dev/null 2>&1
{
	cat <<'Y'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tr, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.tr.example"
    tls: {certificateRefs: [{name: tr-cert}]}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: default}
spec:
  clusterIPs: ["10.96.8.13", "fd00:96::8:13"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: tr, namespace: default}
spec:
  parentRefs: [{name: tr}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /h2}}]
    backendRefs: [{name: h2only, port: 80}]
  - backendRefs: [{name: plain, port: 80}]
---
apiVersion: v1
kind: Secret
metadata: {name: tr-cert, namespace: default}
type: kubernetes.io/tls
Y
	echo "data: {tls.crt: $(base64 -w0 "$E2E_TMP/gw.crt"), tls.key: $(base64 -w0 "$E2E_TMP/gw.key")}"
} >"$SLUICE_LAB_CONFIG/gateway.yaml"
gw_up() { ctl node-2 gateways | grep -q "https .*listening"; }
check "Gateway: HTTPS listener listening" wait_until 15 gw_up
gwget() {	# gwget ADDR PATH [curl args]
	local a=$1 p=$2; shift 2
	lab node-exec node-2 curl -sS -m 10 --cacert "$E2E_TMP/gw.crt" --resolve "www.tr.example:443:$a" \
		-o - -w '\nstatus=%{http_code} version=%{http_version}\n' "$@" "https://www.tr.example$p" 2>&1
}
for a in 10.99.8.1 "[fd00:99:8::1]"; do
	gw_ok() { gwget "$a" /ready | grep -q "status=200"; }
	wait_until 10 gw_ok
	out=$(gwget "$a" /plain)
	expect_contains "gateway $a: ALPN h2 (HTTP/2 to the client)" "$out" "status=200 version=2"
	expect_contains "gateway $a: no appProtocol: HTTP/1.1 to the backend" "$out" '"proto": "HTTP/1.1"'
	out=$(gwget "$a" /h2/x)
	expect_contains "gateway $a: h2c backend: HTTP/2 to it" "$out" '"proto": "HTTP/2.0"'
	out=$(gwget "$a" /h2/post --data-binary @"$E2E_TMP/small")
	expect_contains "gateway $a: POST over h2 to the h2c backend" "$out" "status=200 version=2"
	out=$(gwget "$a" /plain --http1.1)
	expect_contains "gateway $a: an HTTP/1.1 client still gets HTTP/1.1" "$out" "status=200 version=1.1"
done
body_check "gateway: the POST bodies reached the h2c backend whole" "$E2E_TMP/h2.log" "$small"

m=$(lab node-exec node-1 curl -s http://127.0.0.1:15020/metrics)
expect_contains "metrics: translated requests counted" "$m" 'destination_service="h2only.default.svc.cluster.local"'

# ---- HTTP/2 balanced per request: one client connection, two endpoints
for p in 2 4; do
	pod=SLUICE_LAB_POD${p}_NAME
	lab exec "default/${!pod}" sl-echo serve --pod "${!pod}" --namespace default --service h2two \
		--tcp 9083 --only h2c >>"$E2E_TMP/two-$p.log" 2>&1 &
	E2E_SRV_PIDS+=($!)
done
{
	cat <<Y
apiVersion: v1
kind: Service
metadata: {name: h2two, namespace: default}
spec:
  clusterIPs: ["10.96.8.14", "fd00:96::8:14"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: grpc, port: 80, targetPort: 9083, protocol: TCP, appProtocol: kubernetes.io/h2c}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: h2two, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: h2two, port: 80}]
  rules: [{backendRefs: [{name: h2two, port: 80}]}]
Y
	for f in 4 6; do
		cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: h2two-$f, namespace: default, labels: {kubernetes.io/service-name: h2two}}
addressType: IPv$f
ports: [{name: grpc, port: 9083, protocol: TCP}]
endpoints:
Y
		for p in 2 4; do
			ip=SLUICE_LAB_POD${p}_IP$f pod=SLUICE_LAB_POD${p}_NAME
			echo "- {addresses: [\"${!ip}\"], targetRef: {kind: Pod, name: ${!pod}, namespace: default}}"
		done
	done
} >"$SLUICE_LAB_CONFIG/h2two.yaml"
two_routed() { ctl node-1 route-check default/h2two:80 GET /x --from default 2>/dev/null | grep -q 'forward to default/h2two:80'; }
check "h2two: route accepted" wait_until 20 two_routed
two_listening() {
	lab exec "$C" bash -c "exec 3<>/dev/tcp/$SLUICE_LAB_POD2_IP4/9083 && exec 4<>/dev/tcp/$SLUICE_LAB_POD4_IP4/9083"
}
check "h2two: both backends listen" wait_until 10 two_listening
for f in 4 6; do
	[ $f = 4 ] && u=http://10.96.8.14/spread$f || u=http://[fd00:96::8:14]/spread$f
	out=$(lab exec "$C" h2load -n 40 -c 1 -m 4 "$u" 2>&1)
	expect_contains "IPv$f: 40 streams on one HTTP/2 connection, all answered" "$out" "40 succeeded"
	n2=$(grep -c "/spread$f" "$E2E_TMP/two-2.log") n4=$(grep -c "/spread$f" "$E2E_TMP/two-4.log")
	check "IPv$f: balanced per stream over both endpoints ($n2 and $n4 of 40)" \
		test "$n2" -ge 5 -a "$n4" -ge 5 -a $((n2 + n4)) -eq 40
done

# ---- retries, HTTP/1.1 client: one of a Service's two endpoints is dead
# (nothing listens: the remote agent's connect is refused, the tunnel stream
# fails before an answer). POSTs with a body (which Istio's default policy
# sends once) on new client connections: a route with retry {attempts: 1}
# gets every one answered, the retry going to the other endpoint (the failed
# one is not picked again); to the same Service without a retry policy, some
# fail. Both an HTTP/1.1 backend and an h2c one (the request translated to
# HTTP/2 each time).
svc_dead() {	# svc_dead NAME VIP4 VIP6 PORT APP_PROTOCOL LIVE_POD_N RETRY(yes|no)
	yaml_svc "$1" "$2" "$3" 80 "$4" "$5" http
	cat <<Y
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: $1, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: $1, port: 80}]
  rules:
  - backendRefs: [{name: $1, port: 80}]
Y
	[ "$7" = yes ] && echo "    retry: {attempts: 1, backoff: 10ms}"
	for f in 4 6; do
		cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $1-$f, namespace: default, labels: {kubernetes.io/service-name: $1}}
addressType: IPv$f
ports: [{name: http, port: $4, protocol: TCP}]
endpoints:
Y
		for p in "$6" 4; do
			ip=SLUICE_LAB_POD${p}_IP$f pod=SLUICE_LAB_POD${p}_NAME
			echo "- {addresses: [\"${!ip}\"], targetRef: {kind: Pod, name: ${!pod}, namespace: default}}"
		done
	done
}
{
	svc_dead retry-h1 10.96.8.21 fd00:96::8:21 9081 http 2 yes
	svc_dead retry-h2 10.96.8.22 fd00:96::8:22 9082 kubernetes.io/h2c 3 yes
	svc_dead noretry-h2 10.96.8.23 fd00:96::8:23 9082 kubernetes.io/h2c 3 no
} >"$SLUICE_LAB_CONFIG/retry.yaml"
retry_routed() {
	for s in retry-h1 retry-h2 noretry-h2; do
		ctl node-1 route-check "default/$s:80" POST /x --from default 2>/dev/null | grep -q "forward to default/$s:80" || return 1
	done
}
check "retry: routes accepted" wait_until 20 retry_routed
: >"$E2E_TMP/h1.log"
: >"$E2E_TMP/h2.log"
# posts VIP N : N POSTs of the small body, each on its own connection (a
# curl each: one picks an endpoint per connection); the statuses
posts() {
	lab exec "$C" bash -c 'for ((i = 0; i < $2; i++)); do
		curl -sS -m 10 --http1.1 --data-binary @"$3" -o /dev/null -w "%{http_code}\n" "http://$1/retry$i" 2>&1
	done' _ "$1" "$2" "$E2E_TMP/small"
}
for f in 4 6; do
	for s in h1:21:9081 h2:22:9082; do
		IFS=: read -r proto last port <<<"$s"
		[ $f = 4 ] && vip=10.96.8.$last || vip="[fd00:96::8:$last]"
		log=$E2E_TMP/$proto.log
		out=$(posts "$vip" 20)
		check "IPv$f retry $proto: 20 POSTs, each answered 200 ($(sort <<<"$out" | uniq -c | xargs))" \
			test "$(grep -c '^200$' <<<"$out")" -eq 20
		wait_until 5 test "$(grep -cF "$small" "$log")" -ge 20
		check "IPv$f retry $proto: the live backend got each body whole, once ($(grep -cF "$small" "$log"))" \
			test "$(grep -cF "$small" "$log")" -eq 20
		: >"$log"
	done
	[ $f = 4 ] && vip=10.96.8.23 || vip="[fd00:96::8:23]"
	out=$(posts "$vip" 20)
	n=$(grep -c '^200$' <<<"$out")
	check "IPv$f control: without a retry policy a POST goes once; some of 20 fail ($n answered 200)" \
		test "$n" -lt 20
	: >"$E2E_TMP/h2.log"
done
