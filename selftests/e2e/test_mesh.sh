#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_mesh.sh - the ambient mesh in the lab, with real traffic: enrolled pods'
# TCP is captured in their netns and carried in HBONE (mTLS + HTTP/2 CONNECT)
# between nodes, delivered directly on one node; the server still sees the
# client's IP; only TLS to 15008 crosses the node link; large transfers both
# ways and half-close survive; streams share a pooled connection; wrong
# identity, untrusted CA and expired certificates are refused both ways;
# certificates rotate under a live connection; unlabelled pods are untouched;
# labels enrol and un-enrol pods without restarts; agents restart. IPv4+IPv6.
# Prints "[name] PASS|FAIL"; the last line is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

cfg=$E2E_TMP/config
mkdir -p "$cfg"
PY=/usr/bin/python3
BULK=$E2E_REPO/selftests/tools/sl-bulk.py
PEER=$E2E_REPO/selftests/interop/hbone_peer.py
TD=cluster.local

# pod NAME NS NODE N SA [LABELS] : a Pod with 10.244.<node>.<N> and fd00:244:<node>::<N>
pod() {
	local name=$1 ns=$2 node=$3 n=$4 sa=$5 labels=${6:-}
	cat <<Y
---
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $ns
  labels: {app: $name${labels:+, $labels}}
spec:
  nodeName: node-$node
  serviceAccountName: $sa
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}]
status:
  podIPs: [{ip: 10.244.$node.$n}, {ip: "fd00:244:$node::$n"}]
Y
}

ns_yaml() {
	local name=$1 mode=${2:-}
	cat <<Y
apiVersion: v1
kind: Namespace
metadata:
  name: $name
  labels: {kubernetes.io/metadata.name: $name${mode:+, sluice.io/dataplane-mode: $mode}}
Y
}

ns_yaml mesh ambient >"$cfg/00-ns-mesh.yaml"
ns_yaml plain >"$cfg/01-ns-plain.yaml"
{
	pod client mesh 1 10 client
	pod server-1 mesh 1 11 server "tier: server"
	pod opt-out mesh 1 12 default "istio.io/dataplane-mode: none"
	pod server-2 mesh 2 11 server "tier: server"
	pod plain-client plain 1 20 default
	pod plain-server plain 2 20 default
	pod solo plain 2 21 default "istio.io/dataplane-mode: ambient"
} >"$cfg/10-pods.yaml"
cat >"$cfg/20-svc.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata: {name: server, namespace: mesh}
spec:
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [10.96.1.10, "fd00:96::1:10"]
  selector: {tier: server}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: server-v4, namespace: mesh, labels: {kubernetes.io/service-name: server}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.11], nodeName: node-1, conditions: {ready: true}}
- {addresses: [10.244.2.11], nodeName: node-2, conditions: {ready: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: server-v6, namespace: mesh, labels: {kubernetes.io/service-name: server}}
addressType: IPv6
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["fd00:244:1::11"], nodeName: node-1, conditions: {ready: true}}
- {addresses: ["fd00:244:2::11"], nodeName: node-2, conditions: {ready: true}}
Y

# Bad mesh options are refused before anything is loaded (exit 2, a reason).
for bad in "--metrics nonsense" "--metrics 127.0.0.1:0" "--metrics fd00::1:80" "--cert-ttl 5" "--cert-ttl 10x"; do
	# shellcheck disable=SC2086
	out=$(sluice-agent $bad 2>&1); rc=$?
	check "agent refuses $bad" test "$rc" = 2 -a -n "$(grep -- "${bad%% *}" <<<"$out")"
done

e2e_lab_up --config "$cfg"
STATE=/run/sluice-lab/$E2E_ID
CA=$STATE/ca
C4=10.244.1.10 C6=fd00:244:1::10
S1_4=10.244.1.11 S1_6=fd00:244:1::11
S2_4=10.244.2.11 S2_6=fd00:244:2::11
PS4=10.244.2.20 PS6=fd00:244:2::20
BG_PIDS=()

bg() { "$@" & BG_PIDS+=($!); }
bg_stop() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	BG_PIDS=()
}
# lib.sh's trap tears the lab down; stop our own processes before it.
trap 'rc=$?; bg_stop; (exit $rc); e2e_finish' EXIT

metric() { lab node-exec "$1" curl -s --max-time 5 "http://127.0.0.1:15020/metrics"; }
stat_of() { ctl "$1" --json connections | $PY -c "import json,sys; print(json.load(sys.stdin)['stats']['$2'])"; }
serial_of() { ctl "$1" --json certs | $PY -c "import json,sys; c=[x for x in json.load(sys.stdin)['certs'] if x['identity'].endswith('$2')]; print(c[0]['serial'] if c else '-')"; }

# capture_start FILE : tcpdump on the fabric bridge (every node-to-node packet).
capture_start() {
	rm -f "$1" "$1.err"
	nsenter --net="/run/netns/sl$E2E_ID-fabric" timeout 60 tcpdump -i br0 -nn -U --immediate-mode -Z root -s 0 -w "$1" tcp 2>"$1.err" &
	CAP_PID=$!
	wait_until 10 grep -q 'listening on' "$1.err"
}
capture_stop() {
	sleep 0.3
	kill -INT "$CAP_PID" 2>/dev/null
	wait "$CAP_PID" 2>/dev/null
}
# Ports seen on the fabric between pod addresses, as "src>dst" port pairs, one per line.
capture_ports() { tcpdump -nn -r "$1" 2>/dev/null | awk '$2 == "IP" || $2 == "IP6" {print $3, $5}' | sed -E 's/.*\.([0-9]+) .*\.([0-9]+):?$/\1>\2/' | sort -u; }

# --- enrolment as the agents see it ---
wl=$(ctl node-1 workloads)
check "client is enrolled and captured" grep -qE "^mesh +client .*spiffe://$TD/ns/mesh/sa/client +yes +yes +yes +captured" <<<"$wl"
check "server-1 is captured, with its service account's identity" grep -qE "^mesh +server-1 .*spiffe://$TD/ns/mesh/sa/server .* captured" <<<"$wl"
check "pod label none opts out of an enrolled namespace" grep -qE "^mesh +opt-out .* no +- *$" <<<"$wl"
check "unlabelled namespace: not enrolled" grep -qE "^plain +plain-client .* no +- *$" <<<"$wl"
wait_until 10 sh -c "sluicectl --socket $STATE/node-2/agent.sock workloads | grep -qE '^plain +solo .* captured'"
check "a pod label enrols one pod of an unlabelled namespace" grep -qE "^plain +solo .* yes +captured" <<<"$(ctl node-2 workloads)"
# After set-up the agent keeps seven capabilities (docs/security.md), in
# every set that could give others back.
caps=$(grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs)' "/proc/$(cat "$STATE/node-1/agent.pid")/status" | tr -s '\t ' ' ')
expect_contains "agent: effective capabilities are the seven kept" "$caps" "CapEff: 000000c000203404"
expect_contains "agent: the bounding set is cut to them too" "$caps" "CapBnd: 000000c000203404"
expect_contains "agent: nothing inheritable" "$caps" "CapInh: 0000000000000000"
expect_contains "agent: no_new_privs" "$caps" "NoNewPrivs: 1"
ls=$(lab exec mesh/client ss -ltnH)
expect_contains "sluicectl status: mesh on" "$(ctl node-1 status)" "Mesh:         on, trust domain cluster.local, 2 of 2 enrolled pods captured"
check "listeners 15001/15006/15008 in the enrolled pod" bash -c "grep -q ':15001 ' <<<'$ls' && grep -q ':15006 ' <<<'$ls' && grep -q ':15008 ' <<<'$ls'"
check "no listeners in an unlabelled pod" bash -c "! grep -q ':1500[168] ' <<<'$(lab exec plain/plain-client ss -ltnH)'"

# --- traffic through the mesh ---
for fam in 4 6; do
	eval "s2=\$S2_$fam s1=\$S1_$fam c=\$C$fam"
	[[ $fam == 6 ]] && pc="[$c]" || pc=$c
	out=$(lab exec mesh/client sl-echo probe tcp "$s2" 8080 --count 10)
	expect_contains "ipv$fam cross-node: 10 connections through HBONE" "$(grep summary <<<"$out")" "ok=10 err=0 pods=server-2:10"
	check "ipv$fam cross-node: server sees the client pod's IP" test "$(grep -cF "server_saw=$pc:" <<<"$out")" -eq 10
	out=$(lab exec mesh/client sl-echo probe tcp "$s1" 8080 --count 10)
	expect_contains "ipv$fam same node: 10 connections delivered by the agent" "$(grep summary <<<"$out")" "ok=10 err=0 pods=server-1:10"
	check "ipv$fam same node: server sees the client pod's IP" test "$(grep -cF "server_saw=$pc:" <<<"$out")" -eq 10
done
out=$(lab exec mesh/client sl-echo probe tcp 10.96.1.10 80 --count 30)
expect_contains "Service VIP through the mesh: both backends answer" "$(grep summary <<<"$out")" "ok=30 err=0 pods=server-1:"
expect_contains "Service VIP through the mesh: node-2's backend too" "$(grep summary <<<"$out")" "server-2:"
check "Service VIP: the app still sees the VIP as its peer" test "$(grep -c 'peer=10.96.1.10:80 ' <<<"$out")" -eq 30
out=$(lab exec mesh/client sl-echo probe tcp fd00:96::1:10 80 --count 10)
expect_contains "IPv6 Service VIP through the mesh" "$(grep summary <<<"$out")" "ok=10 err=0"
out=$(lab exec mesh/client sl-echo probe tcp "$PS4" 8080 --count 5)
expect_contains "enrolled -> unenrolled pod: passthrough works" "$(grep summary <<<"$out")" "ok=5 err=0"
out=$(lab exec plain/plain-client sl-echo probe tcp "$S2_4" 8080 --count 5)
expect_contains "unenrolled -> enrolled pod (inbound 15006)" "$(grep summary <<<"$out")" "ok=5 err=0"
check "unenrolled -> enrolled: server sees the client's IP" test "$(grep -c 'server_saw=10.244.1.20:' <<<"$out")" -eq 5
# The delivery's port comes from 61000-65535, never the client's own range
# (docs/mesh.md, "Delivery ports").
check "unenrolled -> enrolled: delivered from a port in 61000-65535" test "$(grep -oE 'server_saw=10.244.1.20:[0-9]+' <<<"$out" | awk -F: '$2 >= 61000 && $2 <= 65535' | wc -l)" -eq 5
out=$(lab exec plain/plain-client sl-echo probe tcp "$S2_6" 8080 --count 5)
expect_contains "ipv6 unenrolled -> enrolled pod (inbound 15006)" "$(grep summary <<<"$out")" "ok=5 err=0"
check "ipv6 unenrolled -> enrolled: delivered from a port in 61000-65535" test "$(grep -oE 'server_saw=\[[0-9a-f:]+\]:[0-9]+' <<<"$out" | awk -F: '$NF >= 61000 && $NF <= 65535' | wc -l)" -eq 5

# --- memory: `sluicectl status` says where it is (docs/operations.md) ---
# 200 connections held cross-node: the client's agent counts them, their
# HBONE sessions and the allocator's bytes; once they close, none is left.
timeout 30 "$E2E_REPO/scripts/lab" --id "$E2E_ID" exec mesh/client sl-soak hold "$S2_4" 8080 --conns 200 --seconds 4 >"$E2E_TMP/mem-hold.out" 2>&1 &
hold_pid=$!
mem_open_is() {	# mem_open_is OP N: node-1's count compares so ([ OP ])
	local n
	n=$(ctl node-1 --json status | $PY -c 'import json,sys; print(json.load(sys.stdin)["memory"]["relay"]["connections"])')
	[ "$n" "$1" "$2" ]
}
check "memory: 200 connections held" wait_until 15 mem_open_is -ge 200
mem=$(ctl node-1 --json status | $PY -c '
import json, sys
m = json.load(sys.stdin)["memory"]
h, r, s = m["heap"], m["relay"], m["hbone"]
print("conns=%d sessions=%d" % (r["connections"], s["sessions"]))
print("conn_bytes_ok=%s" % (600 * r["connections"] <= r["connection_bytes"] <= 4096 * r["connections"]))
print("heap_ok=%s" % (0 < h["in_use_bytes"] <= h["from_system_bytes"] and h["free_bytes"] >= 0))
print("rss_ok=%s" % (m["anon_bytes"] > 0 and m["rss_bytes"] >= m["anon_bytes"]))
print("spare_ok=%s" % (r["buffers_spare"] <= r["buffers_spare_max"]))')
expect_contains "memory: the held connections are counted on the client's node" "$mem" "conns=200 "
check "memory: their HBONE sessions too" grep -qE 'sessions=[1-9]' <<<"$mem"
expect_contains "memory: connection bytes 0.6-4 KiB each" "$mem" "conn_bytes_ok=True"
expect_contains "memory: heap in use within what the allocator took" "$mem" "heap_ok=True"
expect_contains "memory: RSS and anon from /proc" "$mem" "rss_ok=True"
expect_contains "memory: spare relay buffers within their bound" "$mem" "spare_ok=True"
st=$(ctl node-1 status)
expect_contains "sluicectl status: a memory line" "$st" "Memory:       RSS "
expect_contains "sluicectl status: relay connections and buffers" "$st" "  Relay:      200 connections"
expect_contains "sluicectl status: HBONE sessions" "$st" "  HBONE:      "
wait "$hold_pid"
expect_contains "memory: the held connections all answered" "$(cat "$E2E_TMP/mem-hold.out")" "errors=0"
check "memory: none counted once they closed" wait_until 10 mem_open_is -eq 0

# --- only TLS to 15008 on the wire ---
MARK=sluice-plaintext-marker-$$
capture_start "$E2E_TMP/mesh.pcap"
lab exec mesh/client sl-echo probe tcp "$S2_4" 8080 --count 3 --line "$MARK" >/dev/null
lab exec mesh/client sl-echo probe tcp "$S2_6" 8080 --count 3 --line "$MARK" >/dev/null
capture_stop
ports=$(capture_ports "$E2E_TMP/mesh.pcap")
check "on the wire: packets were captured" test -n "$ports"
check "on the wire: every mesh packet is to or from port 15008" bash -c "! grep -vE '(^15008>|>15008$)' <<<'$ports'"
check "on the wire: the payload is not visible" sh -c "! tcpdump -nn -A -r '$E2E_TMP/mesh.pcap' 2>/dev/null | grep -q '$MARK'"
check "on the wire: TLS records (0x17) to 15008" sh -c "tcpdump -nn -x -r '$E2E_TMP/mesh.pcap' 'tcp dst port 15008 and tcp[((tcp[12]&0xf0)>>2)] = 0x17' 2>/dev/null | grep -q 15008"
capture_start "$E2E_TMP/plain.pcap"
lab exec plain/plain-client sl-echo probe tcp "$PS4" 8080 --count 3 --line "$MARK" >/dev/null
capture_stop
check "control: unlabelled pods' payload is visible on the wire" sh -c "tcpdump -nn -A -r '$E2E_TMP/plain.pcap' 2>/dev/null | grep -q '$MARK'"
check "control: unlabelled pods talk on 8080 directly" sh -c "tcpdump -nn -r '$E2E_TMP/plain.pcap' 2>/dev/null | grep -q '\.8080'"

# --- large transfers both ways, half-close, many streams ---
bg lab exec mesh/server-2 $PY "$BULK" serve --port 9000 --ready-file "$E2E_TMP/bulk2.ready"
bg lab exec mesh/server-1 $PY "$BULK" serve --port 9000 --ready-file "$E2E_TMP/bulk1.ready"
wait_until 10 test -f "$E2E_TMP/bulk2.ready" -a -f "$E2E_TMP/bulk1.ready"
for dst in "$S2_4" "$S2_6" "$S1_4" "$S1_6"; do
	out=$(lab exec mesh/client $PY "$BULK" client "$dst" 9000 --bytes 33554432 --reply-bytes 33554432 --timeout 60)
	expect_contains "32 MiB each way to $dst, checksums match, half-close carried" "$out" "bulk ok=1 err=0 sent=33554432 received=33554432"
done
before=$(stat_of node-1 hbone_clients_total)
out=$(lab exec mesh/client $PY "$BULK" client "$S2_4" 9000 --bytes 1000000 --reply-bytes 3000000 --parallel 40 --timeout 60)
expect_contains "40 concurrent connections to node-2, all checked" "$out" "bulk ok=40 err=0"
after=$(stat_of node-1 hbone_clients_total)
check "40 concurrent streams shared pooled HBONE connections (new: $((after - before)))" test $((after - before)) -le 1
bg_stop

# --- metrics on 15020 with Istio's names ---
m1=$(metric node-1) m2=$(metric node-2)
expect_contains "metrics: source reporter on node-1" "$m1" 'istio_tcp_connections_opened_total{reporter="source",source_workload="client",source_workload_namespace="mesh",source_principal="spiffe://cluster.local/ns/mesh/sa/client",destination_workload="server-2"'
expect_contains "metrics: mutual_tls" "$m1" 'connection_security_policy="mutual_tls"'
expect_contains "metrics: destination_service is the pod's Service" "$m1" 'destination_service="server.mesh.svc.cluster.local"'
expect_contains "metrics: destination reporter on node-2" "$m2" 'istio_tcp_received_bytes_total{reporter="destination",source_workload="client"'
check "metrics: bytes counted (> 32 MiB received by node-2's server)" bash -c "grep '^istio_tcp_received_bytes_total{reporter=\"destination\",source_workload=\"client\".*destination_workload=\"server-2\"' <<<'$m2' | awk '{s+=\$NF} END {exit !(s > 33554432)}'"
conns=$(ctl node-1 connections)
expect_contains "sluicectl connections: totals" "$conns" "since start"

# --- identities refused (sluice's client, then sluice's server) ---
lab agent-stop node-2 >/dev/null
issue() { "$E2E_REPO/scripts/lab-ca" issue "$1" "$2" "$3" "$E2E_TMP/certs/$4" "${@:5}" >/dev/null; }
"$E2E_REPO/scripts/lab-ca" "$E2E_TMP/other-ca" --other >/dev/null
issue "$CA" mesh wrong wrong
issue "$E2E_TMP/other-ca" mesh server untrusted
issue "$CA" mesh server expired --expired
issue "$CA" mesh server good
issue "$CA" plain default plain
for case in wrong untrusted expired good; do
	d=$E2E_TMP/certs/$case
	bg lab exec mesh/server-2 $PY "$PEER" server --listen "0.0.0.0:15008" --cert "$d/tls.crt" --key "$d/tls.key" \
		--ca "$CA/ca.crt" --expect-id "spiffe://$TD/ns/mesh/sa/client" --expect-for "$C4" --expect-authority "$S2_4:8080" --expect-namespace mesh --timeout 10 --ready-file "$E2E_TMP/peer-$case" >"$E2E_TMP/peer-$case.log" 2>&1
	wait_until 10 test -f "$E2E_TMP/peer-$case"
	out=$(lab exec mesh/client sl-echo probe tcp "$S2_4" 8080 --count 1 --timeout-ms 5000)
	if [[ $case == good ]]; then
		# the peer echoes bytes back where sl-echo answers with its name: EPROTO
		# says the connection went through the tunnel and data came back
		expect_contains "control: the interop peer with the right identity is accepted" "$out" "err EPROTO"
	else
		expect_contains "server with a $case certificate: sluice's client refuses it" "$out" "ok=0 err=1"
	fi
	bg_stop
done
log1=$(cat "$STATE/node-1/agent.log")
expect_contains "the client's agent says why: wrong identity" "$log1" "is not the expected one"
lab agent-start node-2 >/dev/null
wait_until 10 sh -c "sluicectl --socket $STATE/node-2/agent.sock workloads | grep -qE '^mesh +server-2 .* captured'"
for case in untrusted expired; do
	d=$E2E_TMP/certs/$case
	out=$(lab exec plain/plain-client $PY "$PEER" client --connect "$S2_4:15008" --authority "$S2_4:8080" \
		--cert "$d/tls.crt" --key "$d/tls.key" --ca "$CA/ca.crt" --expect-id "spiffe://$TD/ns/mesh/sa/server" \
		--bytes 0 --timeout 5 2>&1)
	check "client with a $case certificate: sluice's 15008 refuses it" test $? -ne 0 -a -n "$(grep -i 'fail\|error\|alert' <<<"$out")"
done
d=$E2E_TMP/certs/plain
out=$(lab exec plain/plain-client $PY "$PEER" client --connect "$S2_4:15008" --authority "$S2_4:8080" \
	--cert "$d/tls.crt" --key "$d/tls.key" --ca "$CA/ca.crt" --expect-id "spiffe://$TD/ns/mesh/sa/server" \
	--bytes 0 --timeout 5 2>&1)
check "control: an interop client with a valid certificate gets through" test $? -eq 0 || echo "$out" | tail -n 5

# --- enrol and un-enrol without restarts ---
pid1=$(cat "$STATE/node-1/agent.pid")
ns_yaml plain ambient >"$cfg/01-ns-plain.yaml"
check "labelling the namespace enrols its pods" wait_until 10 sh -c "sluicectl --socket $STATE/node-1/agent.sock workloads | grep -qE '^plain +plain-client .* captured'"
wait_until 10 sh -c "sluicectl --socket $STATE/node-2/agent.sock workloads | grep -qE '^plain +plain-server .* captured'"
capture_start "$E2E_TMP/enrol.pcap"
out=$(lab exec plain/plain-client sl-echo probe tcp "$PS4" 8080 --count 5 --line "$MARK")
capture_stop
expect_contains "newly enrolled pods talk through the mesh" "$(grep summary <<<"$out")" "ok=5 err=0"
check "newly enrolled: only 15008 on the wire" sh -c "ports=\$(tcpdump -nn -r '$E2E_TMP/enrol.pcap' 2>/dev/null | grep -c '\.8080'); test \$ports -eq 0"
check "newly enrolled: payload hidden" sh -c "! tcpdump -nn -A -r '$E2E_TMP/enrol.pcap' 2>/dev/null | grep -q '$MARK'"
ns_yaml plain >"$cfg/01-ns-plain.yaml"
check "removing the label takes the pods out" wait_until 10 sh -c "sluicectl --socket $STATE/node-1/agent.sock workloads | grep -qE '^plain +plain-client .* no +- *$'"
check "un-enrolled: listeners gone from the pod" wait_until 10 sh -c "! $E2E_REPO/scripts/lab --id $E2E_ID exec plain/plain-client ss -ltnH | grep -q ':1500[168]'"
wait_until 10 sh -c "sluicectl --socket $STATE/node-2/agent.sock workloads | grep -qE '^plain +plain-server .* no +- *$'"
capture_start "$E2E_TMP/unenrol.pcap"
out=$(lab exec plain/plain-client sl-echo probe tcp "$PS4" 8080 --count 5 --line "$MARK")
capture_stop
expect_contains "un-enrolled pods still talk" "$(grep summary <<<"$out")" "ok=5 err=0"
check "un-enrolled: plain TCP again" sh -c "tcpdump -nn -A -r '$E2E_TMP/unenrol.pcap' 2>/dev/null | grep -q '$MARK'"
check "no agent restarted for any of it" test "$(cat "$STATE/node-1/agent.pid")" = "$pid1"

# --- certificate rotation under a live connection ---
SLUICE_LAB_AGENT_ARGS="--cert-ttl 10" lab agent-restart node-1 >/dev/null
SLUICE_LAB_AGENT_ARGS="--cert-ttl 10" lab agent-restart node-2 >/dev/null
wait_until 10 sh -c "sluicectl --socket $STATE/node-1/agent.sock workloads | grep -qE '^mesh +client .* captured'"
wait_until 10 sh -c "sluicectl --socket $STATE/node-2/agent.sock workloads | grep -qE '^mesh +server-2 .* captured'"
lab exec mesh/client sl-echo probe tcp "$S2_4" 8080 --count 1 >/dev/null
s1=$(serial_of node-1 /sa/client) s2=$(serial_of node-2 /sa/server)
out=$(lab exec mesh/client sl-echo stream tcp "$S2_4" 8080 --duration-ms 9000 --interval-ms 100)
expect_contains "a connection lives through certificate rotation, new ones keep working" "$out" "long_errors=0 new_ok="
expect_contains "rotation: no new connection failed" "$out" "new_err=0"
check "rotation: node-1 minted a new client certificate" test "$(serial_of node-1 /sa/client)" != "$s1"
check "rotation: node-2 minted a new server certificate" test "$(serial_of node-2 /sa/server)" != "$s2"
SLUICE_LAB_AGENT_ARGS="" lab agent-restart node-1 >/dev/null
SLUICE_LAB_AGENT_ARGS="" lab agent-restart node-2 >/dev/null

# --- agent restart ---
wait_until 10 sh -c "sluicectl --socket $STATE/node-1/agent.sock workloads | grep -qE '^mesh +client .* captured'"
wait_until 10 sh -c "sluicectl --socket $STATE/node-2/agent.sock workloads | grep -qE '^mesh +server-2 .* captured'"
out=$(lab exec mesh/client sl-echo probe tcp "$S2_6" 8080 --count 10)
expect_contains "after agent restarts: traffic through the mesh again" "$(grep summary <<<"$out")" "ok=10 err=0"
check "after agent restarts: the new agent carried it" test "$(stat_of node-1 total)" -ge 10

# --- kernels without tcx: pod_ingress on a clsact qdisc (forced here) ---
SLUICE_LAB_AGENT_ARGS="--ingress-clsact" lab agent-restart node-1 >/dev/null
wait_until 10 sh -c "sluicectl --socket $STATE/node-1/agent.sock workloads | grep -qE '^mesh +server-1 .* captured'"
check "clsact: pod_ingress is a direct-action filter on the pod's eth0" \
	sh -c "$E2E_REPO/scripts/lab --id $E2E_ID exec mesh/server-1 tc filter show dev eth0 ingress | grep -q 'pod_ingress.*direct-action'"
out=$(lab exec plain/plain-client sl-echo probe tcp "$S1_4" 8080 --count 5)
expect_contains "clsact: unenrolled -> enrolled pod steered to 15006 and delivered" "$(grep summary <<<"$out")" "ok=5 err=0"
check "clsact: the server still sees the client's IP" test "$(grep -c 'server_saw=10.244.1.20:' <<<"$out")" -eq 5
lab agent-stop node-1 >/dev/null
check "clsact: the filter is gone when the agent lets go of the pod" \
	sh -c "! $E2E_REPO/scripts/lab --id $E2E_ID exec mesh/server-1 tc filter show dev eth0 ingress | grep -q pod_ingress"
