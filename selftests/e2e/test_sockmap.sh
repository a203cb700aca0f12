#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_sockmap.sh - same-node acceleration in the lab, with real traffic: a
# meshed connection between two pods of one node moves its bytes socket to
# socket on both hops (app -> agent, agent -> app), IPv4 and IPv6, intact and
# with half-close; the counters and `sluicectl status` prove it; the
# delivering node of a cross-node connection accelerates its hop too; a flow
# that policy denies never reaches the server; --no-sockmap turns it off and
# traffic still flows. Prints "[name] PASS|FAIL"; the last line is
# "N passed, N failed".
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
BULK=$E2E_REPO/selftests/tools/sl-bulk.py

e2e_lab_up
C=default/pod-node-1-1
S4=$SLUICE_LAB_POD2_IP4 S6=$SLUICE_LAB_POD2_IP6		# pod-node-1-2: same node
R4=$SLUICE_LAB_POD3_IP4						# pod-node-2-1: the other node
enrol() { yaml_ambient_default >"$SLUICE_LAB_CONFIG/namespace.yaml"; }
enrol
captured() { ctl node-1 status | grep -q "2 of 2 enrolled pods captured" && ctl node-2 status | grep -q "2 of 2 enrolled pods captured"; }
wait_until 10 captured
# counter NODE NAME : a datapath counter of that node's agent.
counter() { ctl "$1" maps | awk -v n="$2" '$1 == n { print $2 }'; }

expect_contains "sluicectl status: sockmap on" "$(ctl node-1 status)" "Sockmap:      on,"

# --- same node: both hops socket to socket ---
for fam in 4 6; do
	eval "dst=\$S$fam"
	r0=$(counter node-1 sockmap_redirected) a0=$(counter node-1 sockmap_added) d0=$(counter node-1 sockmap_direct)
	out=$(probe_summary "$C" tcp "$dst" 8080 --count 10)
	expect_contains "ipv$fam same node: 10 connections through the mesh" "$out" "ok=10 err=0 pods=pod-node-1-2:10"
	r1=$(counter node-1 sockmap_redirected) a1=$(counter node-1 sockmap_added) d1=$(counter node-1 sockmap_direct)
	check "ipv$fam same node: 4 sockets recorded per connection (two hops)" test $((a1 - a0)) -eq 40
	# Each request and reply: two sends through the agent, or one app to app.
	check "ipv$fam same node: every request and reply moved without TCP" test $(( (r1 - r0) + 2 * (d1 - d0) )) -ge 40
	check "ipv$fam same node: replies went app to app, past the agent" test $((d1 - d0)) -ge 10
done
check "same node: no fallback to TCP" test "$(counter node-1 sockmap_fallback)" -eq 0

# A long-lived connection: both hops are in sl_socks_v1 while it is open.
lab exec "$C" sl-echo stream tcp "$S4" 8080 --duration-ms 3000 --interval-ms 50 >"$E2E_TMP/stream.out" 2>&1 &
SPID=$!
check "an open connection: sluicectl status counts its two hops" \
	wait_until 3 sh -c "sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock status | grep -q 'Sockmap: .* 4 sockets in sl_socks_v1, 2 same-node hops'"
hops=$(ctl node-1 sockmap)
check "sluicectl sockmap: the app's hop to 15001, both ends" \
	bash -c "grep -E '127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:15001 .* yes' <<<'$hops' && grep -E '127\.0\.0\.1:15001 +127\.0\.0\.1:[0-9]+ .* yes' <<<'$hops'"
check "sluicectl sockmap: the delivery hop from the client's IP, both ends" \
	bash -c "grep -E '$SLUICE_LAB_POD1_IP4:[0-9]+ +$S4:8080 .* yes' <<<'$hops' && grep -E '$S4:8080 +$SLUICE_LAB_POD1_IP4:[0-9]+ .* yes' <<<'$hops'"
check "the agent still lists the connection, carried app to app (direct+)" grep -qE '^outbound +direct\+ ' <<<"$(ctl node-1 connections)"
# The agent pairs the two app sockets in sl_hoppair_v1 (an entry per
# direction) from its loop, after the delivery connected: wait for both, as
# for the hops above (one CI run read the status before the second entry).
check "sluicectl status: both directions app to app" \
	wait_until 2 sh -c "sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock status | grep -q ', 2 directions app to app'"
wait "$SPID"; src=$?
check "the stream kept flowing: every line answered, no error" \
	bash -c "test $src -eq 0 && grep -qE '^stream sent=[1-9][0-9]* replies=[1-9]' '$E2E_TMP/stream.out'"
check "closed hops leave the map" wait_until 3 sh -c \
	"sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock status | grep -q ' 0 sockets in sl_socks_v1'"

# --- large transfers, half-close ---
lab exec default/pod-node-1-2 $PY "$BULK" serve --port 9000 --ready-file "$E2E_TMP/bulk.ready" >/dev/null 2>&1 &
wait_until 10 test -f "$E2E_TMP/bulk.ready"
# Istio's byte counters (reporter source) include what went app to app.
sent_total() { lab node-exec node-1 curl -s --max-time 5 http://127.0.0.1:15020/metrics |
	awk '/^istio_tcp_received_bytes_total\{reporter="source"/ { s += $NF } END { printf "%d\n", s }'; }
for dst in "$S4" "$S6"; do
	m0=$(sent_total)
	b0=$(counter node-1 sockmap_redirected_bytes) d0=$(counter node-1 sockmap_direct_bytes)
	out=$(lab exec "$C" $PY "$BULK" client "$dst" 9000 --bytes 33554432 --reply-bytes 33554432 --timeout 60)
	expect_contains "32 MiB each way to $dst, checksums match, half-close carried" "$out" "bulk ok=1 err=0 sent=33554432 received=33554432"
	b1=$(counter node-1 sockmap_redirected_bytes) d1=$(counter node-1 sockmap_direct_bytes)
	check "32 MiB each way to $dst: every byte moved without TCP (via the agent: twice)" \
		test $(( (b1 - b0) + 2 * (d1 - d0) )) -ge $((4 * 33554432))
	check "32 MiB each way to $dst: most of it app to app" test $((d1 - d0)) -ge 33554432
	check "32 MiB each way to $dst: istio_tcp_received_bytes_total counts it all" \
		test $(( $(sent_total) - m0 )) -ge 33554432
done
out=$(lab exec "$C" $PY "$BULK" client "$S4" 9000 --bytes 1000000 --reply-bytes 1000 --parallel 20 --timeout 60)
expect_contains "20 parallel connections, intact" "$out" "bulk ok=20 err=0"

# --- cross node: the delivering node accelerates its hop ---
a0=$(counter node-2 sockmap_added) r0=$(counter node-2 sockmap_redirected)
out=$(probe_summary "$C" tcp "$R4" 8080 --count 5)
expect_contains "cross node: 5 connections through HBONE" "$out" "ok=5 err=0"
check "cross node: node-2 recorded its delivery hop (2 sockets per connection)" test $(( $(counter node-2 sockmap_added) - a0 )) -eq 10
check "cross node: node-2 moved request and reply socket to socket" test $(( $(counter node-2 sockmap_redirected) - r0 )) -ge 10

# --- policy: a denied flow never reaches the server ---
cat >"$SLUICE_LAB_CONFIG/deny.yaml" <<'Y'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-from-node-2, namespace: default}
spec:
  podSelector: {matchLabels: {app: echo}}
  policyTypes: [Ingress]
  ingress:
  - from: [{ipBlock: {cidr: 10.244.2.0/24}}]
Y
check "the policy is in force" wait_until 10 sh -c \
	"sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock status | grep -q 'Policy: .* 1 NetworkPolicies'"
a0=$(counter node-1 sockmap_added)
out=$(probe_summary "$C" tcp "$S4" 8080 --count 5 --timeout-ms 1000)
expect_contains "denied: no connection answered" "$out" "ok=0 err=5"
check "denied: no delivery hop was made (at most the hop to the agent, 2 sockets)" test $(( $(counter node-1 sockmap_added) - a0 )) -le 10
rm -f "$SLUICE_LAB_CONFIG/deny.yaml"
wait_until 10 sh -c "sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock status | grep -q 'Policy: .* 0 NetworkPolicies'"

# --- --no-sockmap ---
SLUICE_LAB_AGENT_ARGS="--no-sockmap" lab agent-restart node-1 >/dev/null 2>&1
wait_until 10 captured
expect_contains "--no-sockmap: status says off" "$(ctl node-1 status)" "Sockmap:      off (--no-sockmap)"
a0=$(counter node-1 sockmap_added) r0=$(counter node-1 sockmap_redirected)
out=$(probe_summary "$C" tcp "$S4" 8080 --count 5)
expect_contains "--no-sockmap: traffic flows" "$out" "ok=5 err=0"
check "--no-sockmap: nothing recorded or redirected" test "$(counter node-1 sockmap_added)" -eq "$a0" -a "$(counter node-1 sockmap_redirected)" -eq "$r0"
out=$(lab exec "$C" $PY "$BULK" client "$S4" 9000 --bytes 8388608 --reply-bytes 8388608 --timeout 60)
expect_contains "--no-sockmap: 8 MiB each way intact (splice relay)" "$out" "bulk ok=1 err=0"
check "--no-sockmap: no sk_msg link left" sh -c "! test -e $SLUICE_LAB_NODE1_BPFFS/links/sockmap_msg"
SLUICE_LAB_AGENT_ARGS="" lab agent-restart node-1 >/dev/null 2>&1
wait_until 10 captured
r0=$(counter node-1 sockmap_redirected) d0=$(counter node-1 sockmap_direct)
out=$(probe_summary "$C" tcp "$S4" 8080 --count 5)
expect_contains "sockmap back on after a restart: traffic flows" "$out" "ok=5 err=0"
check "sockmap back on: moved without TCP again" \
	test $(( $(counter node-1 sockmap_redirected) - r0 + 2 * ($(counter node-1 sockmap_direct) - d0) )) -ge 20
