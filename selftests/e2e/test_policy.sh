#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_policy.sh - NetworkPolicy with the mesh, in the lab, with real traffic
# (IPv4 and IPv6): port-based ingress policy keeps working for traffic
# tunnelled in HBONE (the agent decides on the real port and the real client
# pod, cross-node and same-node); plaintext from outside the mesh is dropped in
# the kernel; egress deny fails connect() at once with EPERM; `sluicectl
# policy check` and `sluicectl policies` explain and count; denies are logged;
# a policy change applies without a restart; a bad policy keeps the last good
# set. Istio's AuthorizationPolicy (ALLOW/DENY on verified principals and
# ports) and PeerAuthentication STRICT are enforced by the agent on what it
# delivers. The truth tables with every pod policed are in test_netpol.sh.
# Prints "[name] PASS|FAIL"; the last line is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

cfg=$E2E_TMP/config
mkdir -p "$cfg"
PY=/usr/bin/python3

# pod NAME NS NODE N [LABELS] : a Pod with 10.244.<node>.<N> and fd00:244:<node>::<N>
pod() {
	local name=$1 ns=$2 node=$3 n=$4 labels=${5:-}
	cat <<Y
---
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $ns
  labels: {app: ${labels:-$name}}
spec:
  nodeName: node-$node
  serviceAccountName: $name
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9000}]
status:
  podIPs: [{ip: 10.244.$node.$n}, {ip: "fd00:244:$node::$n"}]
Y
}

cat >"$cfg/00-ns.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {sluice.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
Y
{
	pod client shop 1 10
	pod web-1 shop 1 11 web
	pod web-2 shop 2 11 web
	pod open shop 2 12
	pod other plain 1 20
	pod outside plain 2 20
} >"$cfg/10-pods.yaml"

# web: only app=client, only the named port http. client: egress to shop only.
policies() {
	local web_ports=$1
	cat <<Y
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: $web_ports
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}}]
Y
}
policies "[{port: http}]" >"$cfg/20-policy.yaml"

export SLUICE_LAB_XDP=1	# edge on the nodes' uplinks
e2e_lab_up --config "$cfg"
STATE=/run/sluice-lab/$E2E_ID
C4=10.244.1.10 W1_4=10.244.1.11 W2_4=10.244.2.11 W2_6=fd00:244:2::11 O4=10.244.1.20

agent_log() { cat "$STATE/$1/agent.log"; }
policies_json() { ctl "$1" --json policies; }
# deny_count NODE POLICY DIR : the policy's default-deny count on NODE
deny_count() {
	policies_json "$1" | $PY -c "import json,sys; d=json.load(sys.stdin); print(sum(p['denied_as_isolating']['$3'] for p in d['policies'] if p['name']=='$2'))"
}
# allow_count NODE POLICY RULE
allow_count() {
	policies_json "$1" | $PY -c "import json,sys; d=json.load(sys.stdin); print(sum(r['allowed'] for p in d['policies'] if p['name']=='$2' for r in p['rules'] if r['rule']=='$3'))"
}
in_force() { ctl "$1" --json status | $PY -c "import json,sys; p=json.load(sys.stdin)['policy']; sys.exit(0 if p['in_force'] and p['policies']==$2 else 1)"; }

check "node-1: policies in force" wait_until 10 in_force node-1 2
check "node-2: policies in force" wait_until 10 in_force node-2 2

# --- port-based ingress policy through HBONE (the real port, the real client) ---
for w in "$W2_4" "$W2_6"; do
	out=$(lab exec shop/client sl-echo probe tcp "$w" 8080 --count 5)
	expect_contains "cross-node HBONE to the allowed named port ($w)" "$(grep summary <<<"$out")" "ok=5 err=0"
	out=$(lab exec shop/client sl-echo probe tcp "$w" 9000 --count 3 --timeout-ms 2000)
	expect_contains "cross-node HBONE to another port is refused ($w)" "$(grep summary <<<"$out")" "ok=0 err=3"
done
check "node-2's agent logged the deny with the rule and the peer's identity" \
	grep -qE "policy: deny TCP 10\.244\.1\.10 -> shop/web-2 10\.244\.2\.11:9000 \(ingress, hbone, peer spiffe://cluster.local/ns/shop/sa/client\): isolated by shop/web-ingress \(ingress\)" "$STATE/node-2/agent.log"
check "node-2 counts the denies of web-ingress" test "$(deny_count node-2 web-ingress ingress)" -ge 6
check "node-2 counts what web-ingress ingress[0] allowed" test "$(allow_count node-2 web-ingress 'ingress[0]')" -ge 10
out=$(lab exec shop/client sl-echo probe tcp "$W1_4" 8080 --count 3)
expect_contains "same node (direct) to the allowed port" "$(grep summary <<<"$out")" "ok=3 err=0"
out=$(lab exec shop/client sl-echo probe tcp "$W1_4" 9000 --count 3 --timeout-ms 2000)
expect_contains "same node (direct) to another port is refused" "$(grep summary <<<"$out")" "ok=0 err=3"

# --- plaintext from outside the mesh: dropped in the kernel at the pod ---
before=$(deny_count node-2 web-ingress ingress)
out=$(lab exec plain/other sl-echo probe tcp "$W2_4" 8080 --count 2 --timeout-ms 1000)
expect_contains "unenrolled pod -> web: SYN dropped (timeout)" "$(grep -E '^err' <<<"$out" | head -1)" "ETIMEDOUT"
check "the kernel counted those drops against web-ingress" test "$(deny_count node-2 web-ingress ingress)" -gt "$before"
check "XDP on node-2's uplink dropped it, and the deny reached the log" wait_until 5 grep -qE "policy: deny TCP 10\.244\.1\.20:[0-9]+ -> 10\.244\.2\.11:8080 \(ingress, xdp\): isolated by shop/web-ingress" "$STATE/node-2/agent.log"
check "edge (XDP) is attached to node-2's uplink with a pinned link" sh -c "sluicectl --socket $STATE/node-2/agent.sock status | grep -q 'edge_xdp.*xdp eth0'"
# Same node: no uplink on the way, so pod_ingress (TC) drops it.
out=$(lab exec plain/other sl-echo probe tcp "$W1_4" 8080 --count 1 --timeout-ms 1000)
expect_contains "same node, unenrolled -> web-1: dropped" "$(grep -E '^err' <<<"$out" | head -1)" "ETIMEDOUT"
check "the same-node deny came from pod_ingress" wait_until 5 grep -qE "policy: deny TCP 10\.244\.1\.20:[0-9]+ -> 10\.244\.1\.11:8080 \(ingress, tc ingress\): isolated by shop/web-ingress" "$STATE/node-1/agent.log"

# --- egress: connect() fails at once with EPERM, nothing leaves ---
t0=$(date +%s%N)
out=$(lab exec shop/client sl-echo probe tcp "$O4" 8080 --count 1 --timeout-ms 3000)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_contains "client -> plain namespace: EPERM" "$out" "err EPERM"
check "EPERM comes at once (${ms} ms)" test "$ms" -lt 1000
out=$(lab exec shop/client sl-echo probe udp "$O4" 8080 --count 1 --timeout-ms 1000)
expect_contains "client -> plain namespace, UDP sendmsg: EPERM" "$out" "err EPERM"
check "client-egress counted the denies on node-1" test "$(deny_count node-1 client-egress egress)" -ge 2
out=$(lab exec plain/outside sl-echo probe tcp "$O4" 8080 --count 2)
expect_contains "unpoliced pods are untouched" "$(grep summary <<<"$out")" "ok=2 err=0"

# --- sluicectl ---
out=$(ctl node-2 policy check --from shop/client --to shop/web-2:9000)
expect_contains "policy check: deny, and the isolating policy" "$out" "deny: TCP shop/client (10.244.1.10) -> shop/web-2 (10.244.2.11) port 9000"
expect_contains "policy check: the ingress reason" "$out" "ingress: deny  isolated by shop/web-ingress  [this node: deny, isolated by shop/web-ingress (ingress)]"
out=$(ctl node-2 policy check --from shop/client --to shop/web-2:8080)
expect_contains "policy check: allow by the rule" "$out" "ingress: allow shop/web-ingress ingress[0]"
out=$(ctl node-1 policy check --from shop/client --to '[fd00:244:1::20]:8080')
expect_contains "policy check: IPv6 egress deny" "$out" "egress:  deny  isolated by shop/client-egress"
out=$(ctl node-1 policies)
expect_contains "sluicectl policies lists the rules" "$out" "shop/web-ingress"
expect_contains "sluicectl policies: web-1 isolated for ingress" "$out" "shop/web-1"
expect_contains "sluicectl policies: the kernel's tables" "$out" "scope enrolled; 2 policies"
m=$(lab node-exec node-2 curl -s --max-time 5 http://127.0.0.1:15020/metrics)
check "Prometheus: denies by policy and rule" grep -qE '^sluice_networkpolicy_verdicts_total\{namespace="shop",policy="web-ingress",direction="ingress",rule="default-deny",verdict="deny"\} [1-9]' <<<"$m"

# --- changes apply live; a bad policy keeps the last good set ---
policies "[{port: http}, {port: 9000}]" >"$cfg/20-policy.yaml.tmp" && mv "$cfg/20-policy.yaml.tmp" "$cfg/20-policy.yaml"
check "node-2 reloaded the policy" wait_until 10 sh -c "grep -c 'config: generation 2' '$STATE/node-2/agent.log' | grep -q 1"
out=$(lab exec shop/client sl-echo probe tcp "$W2_4" 9000 --count 3)
expect_contains "port 9000 allowed after the change, no restart" "$(grep summary <<<"$out")" "ok=3 err=0"
cat >"$cfg/30-bad.yaml" <<'Y'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: shop}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]
Y
check "the bad policy is refused with its field" wait_until 10 sh -c "grep -q 'spec.ingress\[0\].from\[0\].ipBlock.cidr: not a CIDR' '$STATE/node-2/agent.log'"
out=$(lab exec shop/client sl-echo probe tcp "$W2_4" 9000 --count 3)
expect_contains "the last good policy set stays in force" "$(grep summary <<<"$out")" "ok=3 err=0"
rm -f "$cfg/30-bad.yaml"

# --- AuthorizationPolicy and PeerAuthentication (the agent, real identities) ---
O2_4=10.244.2.12
out=$(lab exec plain/outside sl-echo probe tcp "$O2_4" 8080 --count 2)
expect_contains "before PeerAuthentication: plaintext into the mesh works" "$(grep summary <<<"$out")" "ok=2 err=0"
cat >"$cfg/40-istio.yaml" <<'Y'
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin-from-client, namespace: shop}
spec:
  selector: {matchLabels: {app: open}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/client]}}]
    to: [{operation: {ports: ["9000"]}}]
Y
check "node-2 took the Istio policies" wait_until 10 sh -c "sluicectl --socket $STATE/node-2/agent.sock --json policies | grep -q no-admin-from-client"
out=$(lab exec plain/outside sl-echo probe tcp "$O2_4" 8080 --count 2 --timeout-ms 2000)
expect_contains "PeerAuthentication STRICT: plaintext refused" "$(grep summary <<<"$out")" "ok=0 err=2"
check "the refusal is logged with the policy" grep -q "PeerAuthentication shop/strict is STRICT: plaintext refused" "$STATE/node-2/agent.log"
for w in "$O2_4" "fd00:244:2::12"; do
	out=$(lab exec shop/client sl-echo probe tcp "$w" 8080 --count 2)
	expect_contains "STRICT: mTLS from the mesh still gets through ($w)" "$(grep summary <<<"$out")" "ok=2 err=0"
	out=$(lab exec shop/client sl-echo probe tcp "$w" 9000 --count 2 --timeout-ms 2000)
	expect_contains "AuthorizationPolicy DENY on principal and port ($w)" "$(grep summary <<<"$out")" "ok=0 err=2"
done
check "the deny names the AuthorizationPolicy rule" grep -q "denied by shop/no-admin-from-client rules\[0\]" "$STATE/node-2/agent.log"
out=$(ctl node-2 policies)
expect_contains "sluicectl policies: the AuthorizationPolicy and its counts" "$out" "shop/no-admin-from-client"
expect_contains "sluicectl policies: the PeerAuthentication" "$out" "shop/strict"
m=$(lab node-exec node-2 curl -s --max-time 5 http://127.0.0.1:15020/metrics)
check "Prometheus: AuthorizationPolicy denies" grep -qE '^sluice_authorization_decisions_total\{kind="AuthorizationPolicy",namespace="shop",policy="no-admin-from-client",decision="deny"\} [1-9]' <<<"$m"
check "Prometheus: PeerAuthentication refusals" grep -qE '^sluice_authorization_decisions_total\{kind="PeerAuthentication",namespace="shop",policy="strict",decision="deny"\} [1-9]' <<<"$m"

# --- an older agent's map of another layout is replaced, not fatal ---
R=/sys/fs/bpf/sluice-lab-$E2E_ID/node-1
lab agent-stop node-1 >/dev/null
rm -f "$R/sl_metrics_v1" "$R/sl_polstat_v1"
bpftool map create "$R/sl_metrics_v1" type percpu_array key 4 value 8 entries 18 name sl_metrics_v1
# sl_polstat_v1 was a per-CPU hash of the same sizes before it became an array
bpftool map create "$R/sl_polstat_v1" type percpu_hash key 4 value 8 entries 65536 name sl_polstat_v1
check "agent starts over a pinned map of an older layout" lab agent-start node-1
check "and says it replaced it" grep -q "pinned map $R/sl_metrics_v1 has another layout (max_entries 18" "$STATE/node-1/agent.log"
check "and one of another type" grep -q "pinned map $R/sl_polstat_v1 has another layout (max_entries 65536, key 4, value 8, percpu_hash; now 65536, 4, 8, percpu_array)" "$STATE/node-1/agent.log"
out=$(lab exec shop/client sl-echo probe tcp "$O4" 8080 --count 1 --timeout-ms 3000)
expect_contains "egress policy still enforced after the restart" "$out" "err EPERM"

# --- a restarted agent counts from 0: its slot numbers are its own, and the
# pinned counts array it reuses is zeroed ---
web2_denied() { [ "$(deny_count node-2 web-ingress ingress)" -gt 0 ]; }
policy_in_force() { ctl "$1" --json status | $PY -c "import json,sys; sys.exit(0 if json.load(sys.stdin)['policy']['in_force'] else 1)"; }
check "node-2 counted web-ingress denies before the restart" web2_denied
lab agent-stop node-2 >/dev/null
check "node-2's agent starts again" lab agent-start node-2
check "node-2: policy in force again" wait_until 10 policy_in_force node-2
check "its counts start from 0" test "$(deny_count node-2 web-ingress ingress)" -eq 0
out=$(lab exec plain/other sl-echo probe tcp "$W2_4" 8080 --count 1 --timeout-ms 1000)
check "and count the next drop" wait_until 5 web2_denied
