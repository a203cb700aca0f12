#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_websocket.sh - WebSockets through the waypoint, in the lab, IPv4 and
# IPv6, from an HTTP/1.1 client (sl-ws.py: Upgrade, RFC 6455) and from an
# HTTP/2 client (sl-h2c --websocket: extended CONNECT, RFC 8441), to a
# backend whose port says appProtocol http (sl-echo --only http1, same node)
# and to one whose port says kubernetes.io/h2c (sl-echo --only h2c, another
# node: HBONE). Each client sends a text frame and a close frame; the
# backend echoes both and ends; the client checks the text, the close frame
# and the end (and, over HTTP/1.1, the 101's Sec-WebSocket-Accept). The
# backends' logs show what the waypoint sent them: GET with Upgrade to the
# HTTP/1.1 one, an extended CONNECT to the HTTP/2 one.
# Prints "[name] PASS|FAIL"; the last line is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

WS=$E2E_REPO/selftests/tools/sl-ws.py
trap 'rc=$?; e2e_servers_stop; (exit $rc); e2e_finish' EXIT
e2e_lab_up
C=default/pod-node-1-1
H1_4=10.96.8.21 H1_6=fd00:96::8:21	# wsh1: appProtocol http, pod-node-1-2:9081 (same node)
H2_4=10.96.8.22 H2_6=fd00:96::8:22	# wsh2: appProtocol kubernetes.io/h2c, pod-node-2-1:9082 (HBONE)

lab exec default/pod-node-1-2 sl-echo serve --pod pod-node-1-2 --namespace default --service wsh1 \
	--tcp 9081 --only http1 >>"$E2E_TMP/h1.log" 2>&1 &
E2E_SRV_PIDS+=($!)
lab exec default/pod-node-2-1 sl-echo serve --pod pod-node-2-1 --namespace default --service wsh2 \
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
  - matches: [{path: {type: PathPrefix, value: /ws}, method: GET}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-route, value: $1}]}
    backendRefs: [{name: $1, port: 80}]
Y
}
{
	svc wsh1 $H1_4 $H1_6 9081 http pod-node-1-2 "$SLUICE_LAB_POD2_IP4" "$SLUICE_LAB_POD2_IP6"
	svc wsh2 $H2_4 $H2_6 9082 kubernetes.io/h2c pod-node-2-1 "$SLUICE_LAB_POD3_IP4" "$SLUICE_LAB_POD3_IP6"
} >"$SLUICE_LAB_CONFIG/services.yaml"
captured() { ctl node-1 status | grep -q "2 of 2 enrolled pods captured" && ctl node-2 status | grep -q "2 of 2 enrolled pods captured"; }
check "pods captured" wait_until 20 captured
routed() { [ "$(ctl node-1 routes | grep -c 'True      True')" -ge 2 ]; }
check "both routes accepted" wait_until 20 routed
listening() { lab exec "$C" bash -c "exec 3<>/dev/tcp/$SLUICE_LAB_POD2_IP4/9081 && exec 4<>/dev/tcp/$SLUICE_LAB_POD3_IP4/9082"; }
check "the single-protocol backends listen" wait_until 10 listening

# logged LOG TEXT : the backend logged TEXT (its log emptied after the check)
logged() { grep -qF -- "$2" "$1"; }
log_check() {	# log_check NAME LOG TEXT
	if wait_until 5 logged "$2" "$3"; then
		pass "$1"
	else
		fail "$1" "no '$3' in the backend's log:"
		tail -n 6 "$2" | sed 's/^/    /'
	fi
	: >"$2"
}

for fam in 4 6; do
	if [ $fam = 4 ]; then h1=$H1_4 h2=$H2_4 u1=$H1_4 u2=$H2_4; else h1=$H1_6 h2=$H2_6 u1="[$H1_6]" u2="[$H2_6]"; fi

	# ---- HTTP/1.1 client (Upgrade)
	out=$(lab exec "$C" /usr/bin/python3 "$WS" "$h1" 80 --path "/ws/a$fam" --text "h1 to h1 v$fam" 2>&1)
	expect_contains "ipv$fam h1->h1: 101, echo, close" "$out" \
		"ws status=101 accept=ok text=h1 to h1 v$fam close=yes eof=yes"
	log_check "ipv$fam h1->h1: the backend got the Upgrade" "$E2E_TMP/h1.log" "http GET /ws/a$fam"

	out=$(lab exec "$C" /usr/bin/python3 "$WS" "$h2" 80 --path "/ws/b$fam" --text "h1 to h2 v$fam" \
		--protocol "chat, other" 2>&1)
	expect_contains "ipv$fam h1->h2: 101 with the Accept for our key, echo, close" "$out" \
		"ws status=101 accept=ok text=h1 to h2 v$fam close=yes eof=yes"
	expect_contains "ipv$fam h1->h2: subprotocol chosen by the backend" "$out" "protocol=chat"
	log_check "ipv$fam h1->h2: an extended CONNECT to the backend" "$E2E_TMP/h2.log" "http CONNECT /ws/b$fam"

	# ---- HTTP/2 client (extended CONNECT)
	out=$(lab exec "$C" sl-h2c --timeout-ms 5000 --websocket "h2 to h1 v$fam" \
		--header "sec-websocket-protocol: chat, other" "http://$u1/ws/c$fam" 2>&1)
	expect_contains "ipv$fam h2->h1: 200" "$out" '"status": 200'
	expect_contains "ipv$fam h2->h1: echo" "$out" "\"ws_text\": \"h2 to h1 v$fam\""
	expect_contains "ipv$fam h2->h1: close frame back" "$out" '"ws_close": true'
	expect_contains "ipv$fam h2->h1: subprotocol chosen by the backend" "$out" '"sec-websocket-protocol": ["chat"]'
	expect_contains "ipv$fam h2->h1: routed (the route's header)" "$out" '"x-route": ["wsh1"]'
	log_check "ipv$fam h2->h1: a GET with Upgrade to the backend" "$E2E_TMP/h1.log" "http GET /ws/c$fam"

	out=$(lab exec "$C" sl-h2c --timeout-ms 5000 --websocket "h2 to h2 v$fam" \
		--header "sec-websocket-protocol: chat, other" "http://$u2/ws/d$fam" 2>&1)
	expect_contains "ipv$fam h2->h2: 200" "$out" '"status": 200'
	expect_contains "ipv$fam h2->h2: echo" "$out" "\"ws_text\": \"h2 to h2 v$fam\""
	expect_contains "ipv$fam h2->h2: close frame back" "$out" '"ws_close": true'
	expect_contains "ipv$fam h2->h2: subprotocol chosen by the backend" "$out" '"sec-websocket-protocol": ["chat"]'
	expect_contains "ipv$fam h2->h2: routed (the route's header)" "$out" '"x-route": ["wsh2"]'
	log_check "ipv$fam h2->h2: an extended CONNECT to the backend" "$E2E_TMP/h2.log" "http CONNECT /ws/d$fam"
done

# a route that matches GET only: a POST is no WebSocket and gets 404
out=$(lab exec "$C" curl -sS -m 5 -o /dev/null -w '%{http_code}' -X POST "http://$H1_4/ws/x" 2>&1)
expect_contains "a POST to the GET-only route: 404" "$out" "404"
m=$(lab node-exec node-1 curl -s http://127.0.0.1:15020/metrics)
expect_contains "metrics: the WebSockets counted (101 to HTTP/1.1 clients)" "$m" 'response_code="101"'
