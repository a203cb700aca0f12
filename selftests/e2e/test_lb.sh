#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Service load balancing in the lab, with real TCP and UDP traffic from a pod:
# spread across nodes, IPv4 and IPv6, UDP connected and not, sessionAffinity,
# internalTrafficPolicy Local, refusal without endpoints, config reloads (good
# and bad), endpoint readiness, agent restart and stop with traffic flowing,
# uninstall. The resources are manifests/examples (the demo's), copied so the
# test can change them.
. "$(dirname "$0")/lib.sh"

cfg=$E2E_TMP/config
mkdir -p "$cfg"
cp "$E2E_REPO"/manifests/examples/*.yaml "$cfg"/
e2e_lab_up --config "$cfg"

VIP4=10.96.0.10 VIP6=fd00:96::10

# --- spread over the backends on both nodes ---
out=$(lab exec demo/client sl-echo probe tcp $VIP4 80 --count 60)
sum=$(grep '^summary' <<<"$out")
expect_contains "tcp4: 60 connects through the VIP" "$sum" "ok=60 err=0"
for p in echo-1 echo-2 echo-3; do expect_contains "tcp4: $p answers" "$sum" "$p:"; done
check "tcp4: the client sees the VIP as its peer" test "$(grep -c "peer=$VIP4:80 " <<<"$out")" -eq 60
check "tcp4: the server sees the client pod's IP" test "$(grep -c 'server_saw=10.244.1.10:' <<<"$out")" -eq 60

out=$(lab exec demo/client sl-echo probe tcp $VIP6 80 --count 30)
sum=$(grep '^summary' <<<"$out")
expect_contains "tcp6: 30 connects through the IPv6 VIP" "$sum" "ok=30 err=0"
check "tcp6: more than one backend" test "$(tr ',' '\n' <<<"${sum#*pods=}" | wc -l)" -ge 2
check "tcp6: the client sees the VIP" test "$(grep -c "peer=\[$VIP6\]:80 " <<<"$out")" -eq 30

out=$(lab exec demo/client sl-echo probe udp $VIP4 53 --count 30)
sum=$(grep '^summary' <<<"$out")
expect_contains "udp4 unconnected: 30 datagrams answered" "$sum" "ok=30 err=0"
check "udp4 unconnected: replies come from the VIP" test "$(grep -c "peer=$VIP4:53 " <<<"$out")" -eq 30
out=$(lab exec demo/client sl-echo probe udp $VIP4 53 --count 20 --connected)
expect_contains "udp4 connected: 20 answered" "$(grep '^summary' <<<"$out")" "ok=20 err=0"
check "udp4 connected: getpeername shows the VIP" test "$(grep -c "peer=$VIP4:53 " <<<"$out")" -eq 20
out=$(lab exec demo/client sl-echo probe udp $VIP6 53 --count 20)
expect_contains "udp6: 20 answered" "$(grep '^summary' <<<"$out")" "ok=20 err=0"
check "udp6: replies come from the VIP" test "$(grep -c "peer=\[$VIP6\]:53 " <<<"$out")" -eq 20
out=$(lab exec demo/client sl-echo probe tcp ::ffff:$VIP4 80 --count 10)
expect_contains "v4-mapped: an IPv6 socket reaches the IPv4 Service" "$(grep '^summary' <<<"$out")" "ok=10 err=0"

# --- Service variants ---
sum=$(probe_summary demo/client tcp 10.96.0.11 80 --count 20)
expect_contains "sessionAffinity ClientIP: 20 connects" "$sum" "ok=20 err=0"
check "sessionAffinity ClientIP: one backend for the client" test "$(tr ',' '\n' <<<"${sum#*pods=}" | wc -l)" -eq 1
sum=$(probe_summary demo/client tcp 10.96.0.12 80 --count 20)
expect_contains "internalTrafficPolicy Local: only node-1's endpoint" "$sum" "ok=20 err=0 pods=echo-1:20"
sum=$(probe_summary demo/client tcp 10.96.0.13 8080 --count 10)
expect_contains "selector version=v2: only echo-3" "$sum" "pods=echo-3:10"
start=$(date +%s%N)
out=$(lab exec demo/client sl-echo probe tcp 10.96.0.14 80 --timeout-ms 3000)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_contains "no endpoints: connection refused" "$out" "err ECONNREFUSED"
check "no endpoints: refused at once, not after a timeout (${ms} ms)" test "$ms" -lt 1500
out=$(lab exec demo/client sl-echo probe udp 10.96.0.14 80 --timeout-ms 500 || true)
# (UDP port 80 is not a Service port: the datagram is not translated and nobody answers.)
expect_contains "UDP to a TCP-only Service port is not translated" "$out" "err "

# --- the operator's view ---
out=$(ctl node-1 services)
expect_contains "sluicectl services: echo with 3/3 ready" "$out" "3/3"
expect_contains "sluicectl services: Local policy shown" "$out" "Local"
out=$(ctl node-1 --json services)
expect_contains "sluicectl --json services" "$out" '"svc_id"'
out=$(ctl node-2 workloads)
expect_contains "sluicectl workloads on node-2: echo-2 is local" "$out" "echo-2"
out=$(ctl node-1 maps)
expect_contains "sluicectl maps: counters" "$out" "lb_translated"
out=$(bpftool map dump pinned "/sys/fs/bpf/sluice-lab-$E2E_ID/node-1/sl_svc_v1")
expect_contains "bpftool map dump shows field names" "$out" '"svc_id"'
expect_contains "bpftool map dump shows address bytes" "$out" '"octets": [10,96,0,10,'

# --- configuration changes ---
cat >"$cfg/40-new.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata: {name: echo-new, namespace: demo}
spec:
  clusterIP: 10.96.0.20
  selector: {app: echo, version: v1}
  ports: [{port: 80, targetPort: 8080}]
Y
check "a new Service works once its file lands (inotify)" \
	wait_until 5 lab exec demo/client sl-echo probe tcp 10.96.0.20 80
gen=$(ctl node-1 --json status | grep -o '"generation": [0-9]*' | head -1)

printf 'apiVersion: v1\nkind: Service\nmetadata: {name: broken\n  spec: [\n' >"$cfg/99-bad.yaml"
check "broken YAML is reported in status" \
	wait_until 5 sh -c "sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock status | grep -q '99-bad.yaml:'"
out=$(ctl node-1 status)
expect_contains "status says error, with file and line" "$out" "error"
expect_contains "the agent log names the file and line" "$(cat /run/sluice-lab/$E2E_ID/node-1/agent.log)" "99-bad.yaml:"
expect_contains "the last good generation stays" "$(ctl node-1 --json status)" "$gen"
sum=$(probe_summary demo/client tcp $VIP4 80 --count 10)
expect_contains "traffic still flows on the last good config" "$sum" "ok=10 err=0"
cat >"$cfg/99-bad.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata: {name: thief, namespace: demo}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}
Y
check "a second Service claiming a VIP is rejected" \
	wait_until 5 sh -c "sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock status | grep -q 'already claimed'"
sum=$(probe_summary demo/client tcp $VIP4 80 --count 10)
expect_contains "the VIP still goes to echo's backends" "$sum" "ok=10 err=0"
rm -f "$cfg/99-bad.yaml"
check "the config is good again once the file goes" \
	wait_until 5 sh -c "sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock --json status | grep -q '\"state\": \"ok\"'"

# echo-2 stops being ready: it is no longer chosen.
sed -i '/addresses: \[10.244.2.11\]/{n;s/ready: true/ready: false/}' "$cfg/20-service-echo.yaml"
check "a not-ready endpoint leaves the slots" \
	wait_until 5 sh -c "sluicectl --socket /run/sluice-lab/$E2E_ID/node-1/agent.sock services | grep -E '^demo +echo +10.96.0.10 +80 ' | grep -q '2/3'"
sum=$(probe_summary demo/client tcp $VIP4 80 --count 40)
expect_not_contains "the not-ready endpoint gets nothing" "$sum" "echo-2:"

# --- the agent goes away: the kernel keeps balancing ---
lab exec demo/client sl-echo stream tcp $VIP4 80 --duration-ms 4000 --interval-ms 20 >"$E2E_TMP/stream" 2>&1 &
spid=$!
sleep 0.5	# let the stream start before the restart
lab agent-restart node-1 >/dev/null 2>&1
wait $spid; src=$?
expect_contains "agent restart: no error on a long-lived or new connection" "$(cat "$E2E_TMP/stream")" "long_errors=0"
check "agent restart: stream exit status 0" test "$src" = 0
expect_contains "agent restart: maps reused" "$(ctl node-1 status)" "reused"

lab agent-stop node-1 >/dev/null 2>&1
sum=$(probe_summary demo/client tcp $VIP4 80 --count 20)
expect_contains "agent stopped: VIP still balanced by the pinned programs" "$sum" "ok=20 err=0"
root=/sys/fs/bpf/sluice-lab-$E2E_ID/node-1
check "uninstall" sluice-agent --uninstall --bpffs-root "$root"
check "uninstall leaves no pins" test ! -e "$root"
out=$(lab exec demo/client sl-echo probe tcp $VIP4 80 --timeout-ms 500 || true)
expect_contains "after uninstall the VIP is not translated" "$out" "err "
lab agent-start node-1 >/dev/null 2>&1
sum=$(probe_summary demo/client tcp $VIP4 80 --count 10)
expect_contains "a fresh agent serves again" "$sum" "ok=10 err=0"
