#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_upgrade.sh - agents upgraded under load without a reset (`lab
# agent-upgrade`: a second agent with --takeover takes over the running one's
# sockets, BPF links and lock; the old one drains and exits). A lab of 2 nodes,
# dual stack, pods of namespace mesh enrolled in the mesh. Steady load all
# along: short connections through a Service VIP (backends on both nodes),
# IPv4 and IPv6 in turn, batch after batch. Then three upgrades, node-1,
# node-2 (the server side), node-1 again (an upgraded agent upgraded), each
# with connections held across it (opened before, held 4 s, a line every
# 500 ms; --drain-seconds 8): client on node-1 to a pod on node-2 over IPv4
# and IPv6 (HBONE: the old agent drains them), and to a pod on node-1 over
# IPv4; when node-1 is upgraded, also same-node IPv6 ones held 12 s, past the
# drain: plaintext relays, which the old agent hands over fd by fd. Pass:
# every sl-soak exits 0 with errors=0 and connect_err=0 (err=0 for the short
# ones); each old agent has exited within drain + 10 s and logged "handover:
# drained" (and the new one "handover: took over from pid OLD"); node-1's old
# agent handed over at least the 20 long relays and the new one carried them
# on; the new agent answers status with its pid; the pods' tcx links after
# the three upgrades are the ones before (same ids). Then --takeover with no agent
# on a fresh node root starts normally, and `lab down` leaves no pins, netns
# or agent. Every load and wait is bounded. About 50 s.
. "$(dirname "$0")/lib.sh"
need_root upgrade

PY=/usr/bin/python3
DRAIN=8		# --drain-seconds; each hold (4 s) ends within it
HOLD_S=4
LONG_S=$((DRAIN + 4))	# same-node holds that outlive the drain: handed over, not drained
cfg=$E2E_TMP/config
mkdir -p "$cfg"

# pod NAME NODE N : a Pod of namespace mesh with 10.244.<node>.<N> and fd00:244:<node>::<N>
pod() {
	cat <<Y
---
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: mesh, labels: {app: ${1%-*}}}
spec:
  nodeName: node-$2
  serviceAccountName: ${1%-*}
  containers: [{name: app, ports: [{name: line, containerPort: 8080}]}]
status:
  podIPs: [{ip: 10.244.$2.$3}, {ip: "fd00:244:$2::$3"}]
Y
}
{
	cat <<'Y'
apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {kubernetes.io/metadata.name: mesh, sluice.io/dataplane-mode: ambient}}
Y
	pod client-1 1 10
	pod server-1 1 11
	pod server-2 2 11
	pod server-3 2 12
	cat <<'Y'
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: mesh}
spec:
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [10.96.7.10, "fd00:96::7:10"]
  selector: {app: server}
  ports: [{name: line, port: 80, targetPort: line}]
Y
	for fam in 4 6; do
		cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-v$fam, namespace: mesh, labels: {kubernetes.io/service-name: echo}}
addressType: IPv$fam
ports: [{name: line, port: 8080, protocol: TCP}]
endpoints:
Y
		for e in 1.11 2.11 2.12; do
			if [[ $fam == 4 ]]; then a=10.244.$e; else a="\"fd00:244:${e%.*}::${e#*.}\""; fi
			echo "- {addresses: [$a], nodeName: node-${e%.*}, conditions: {ready: true}}"
		done
	done
} >"$cfg/mesh.yaml"

e2e_lab_up --config "$cfg"
STATE=/run/sluice-lab/$E2E_ID
ROOT=/sys/fs/bpf/sluice-lab-$E2E_ID
VIP4=10.96.7.10 VIP6=fd00:96::7:10
REMOTE4=10.244.2.11 REMOTE6=fd00:244:2::11 LOCAL4=10.244.1.11 LOCAL6=fd00:244:1::11

BG_PIDS=()
bg_stop() {
	local p
	touch "$E2E_TMP/stop"
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	BG_PIDS=()
}
# Every agent pid the test saw, to check that none is left after lab down.
ALL_PIDS=()
# lib.sh's trap tears the lab down; stop our own processes before it, and
# make sure no agent of ours outlives it.
trap 'rc=$?; bg_stop; (exit $rc); e2e_finish' EXIT

# tlab SECONDS ARGS... : lab ARGS, bounded in time
tlab() { timeout "$1" "$E2E_REPO/scripts/lab" --id "$E2E_ID" "${@:2}"; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
agent_pid() { cat "$STATE/$1/agent.pid" 2>/dev/null; }
status_pid() { ctl "$1" --json status | $PY -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
captured() { ctl "$1" workloads | grep -qE "^mesh +$2 .* captured"; }
all_captured() {
	captured node-1 client-1 && captured node-1 server-1 && captured node-2 server-2 && captured node-2 server-3
}
log_size() { stat -c %s "$STATE/$1/agent.log"; }
new_log() { tail -c +"$(($2 + 1))" "$STATE/$1/agent.log"; }	# new_log NODE OFFSET
gone() {	# gone PID: exited (a zombie counts)
	[[ ! -e /proc/$1 ]] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

check "setup: the agents capture the mesh pods" wait_until 15 all_captured
# short connections reuse client ports within seconds: a wide range, and no
# TIME_WAIT on the servers (as scripts/soak)
lab exec mesh/client-1 sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
for p in mesh/server-1 mesh/server-2 mesh/server-3; do lab exec "$p" sysctl -qw net.ipv4.tcp_max_tw_buckets=0; done
for fam in 4 6; do
	eval "vip=\$VIP$fam"
	out=$(tlab 20 exec mesh/client-1 sl-soak short "$vip" 80 --total 30 --concurrency 4 --seconds 10 2>&1)
	expect_contains "setup: ipv$fam short connections through the VIP" "$out" " err=0 "
done

# ---------------------------------------------------------------- load
# Short connections, batch after batch (IPv4, IPv6 in turn) until
# $E2E_TMP/stop appears, at most 150 s: each line "<end ms> <rc> <summary>".
SHORTS=$E2E_TMP/short.log
: >"$SHORTS"
short_loop() {
	local end=$((SECONDS + 150)) n=0 vip out rc
	while [[ ! -e $E2E_TMP/stop ]] && ((SECONDS < end)); do
		vip=$VIP4
		((n++ % 2)) && vip=$VIP6
		out=$(tlab 30 exec mesh/client-1 sl-soak short "$vip" 80 \
			--total 200 --concurrency 8 --seconds 20 2>&1)
		rc=$?
		echo "$(now_ms) $rc $vip $(grep '^short' <<<"$out" || echo "no summary: ${out//$'\n'/ | }")" >>"$SHORTS"
		sleep 0.2
	done
}
short_loop &
BG_PIDS+=($!)
SHORT_PID=$!

# hold NAME DST : connections held across an upgrade, in the background;
# output in $E2E_TMP/hold-NAME.out, pid in HOLD_PIDS.
HOLD_PIDS=() HOLD_NAMES=()
hold() {
	local secs=${3:-$HOLD_S}
	tlab $((secs + 40)) exec mesh/client-1 sl-soak hold "$2" 8080 \
		--conns 20 --seconds "$secs" --interval-ms 500 --open-rate 200 >"$E2E_TMP/hold-$1.out" 2>&1 &
	BG_PIDS+=($!)
	HOLD_PIDS+=($!)
	HOLD_NAMES+=("$1")
}
# hold_check STEP : wait for the holds (bounded by their timeout) and judge them.
hold_check() {
	local i rc out
	for i in "${!HOLD_PIDS[@]}"; do
		wait "${HOLD_PIDS[$i]}"
		rc=$?
		out=$(cat "$E2E_TMP/hold-${HOLD_NAMES[$i]}.out")
		if [[ $rc == 0 ]] && grep -qE '^hold .* connect_err=0 .* errors=0 ' <<<"$out"; then
			pass "$1: ${HOLD_NAMES[$i]}: 20 connections held across it, no error"
		else
			fail "$1: ${HOLD_NAMES[$i]}: held connections failed (exit $rc$([[ $rc == 124 ]] && echo ', timed out'))"
			echo "$out" | tail -n 5 | sed 's/^/    /'
		fi
	done
	HOLD_PIDS=() HOLD_NAMES=()
}
# open_at_least NODE N : node's agent counts N open connections
open_at_least() {
	local n
	n=$(ctl "$1" --json connections | $PY -c 'import json,sys; print(json.load(sys.stdin)["stats"]["open"])') &&
		((n >= $2))
}

UPGRADE_FAILED=""
STEP_WINDOWS=()
# upgrade STEP NODE : one upgrade of NODE's agent with connections held across it.
upgrade() {
	local step=$1 node=$2 old new off t0 t1 out rc relays
	old=$(agent_pid "$node")
	ALL_PIDS+=("$old")
	off=$(log_size "$node")
	hold "cross-node ipv4" "$REMOTE4"
	hold "cross-node ipv6" "$REMOTE6"
	hold "same-node ipv4" "$LOCAL4"
	local want=60
	if [[ $node == node-1 ]]; then
		# plaintext relays of the agent upgraded, longer than its drain
		hold "same-node ipv6, held ${LONG_S} s (past the drain)" "$LOCAL6" "$LONG_S"
		want=80
	fi
	# the held connections open on node-1 (its agent captures the client)
	wait_until 5 open_at_least node-1 $want || echo "    ($step: node-1 did not count $want open connections within 5 s; upgrading anyway)"
	t0=$(now_ms)
	out=$(tlab $((DRAIN + 40)) agent-upgrade "$node" \
		--drain-seconds "$DRAIN" --wait 2>&1)
	rc=$?
	t1=$(now_ms)
	STEP_WINDOWS+=("$t0 $t1 $step")
	new=$(agent_pid "$node")
	[[ -z $new || $new == "$old" ]] || ALL_PIDS+=("$new")
	if [[ $rc != 0 ]]; then
		fail "$step: lab agent-upgrade $node --drain-seconds $DRAIN --wait (exit $rc$([[ $rc == 124 ]] && echo ', timed out'))"
		echo "$out" | sed 's/^/    /'
		# lab shows the log since the upgrade, unless it was cut short
		if ! grep -q 'agent.log since the upgrade' <<<"$out"; then
			echo "    --- $STATE/$node/agent.log, last 30 lines:"
			tail -n 30 "$STATE/$node/agent.log" | sed 's/^/    /'
		fi
		UPGRADE_FAILED=$step
		hold_check "$step"
		return 1
	fi
	pass "$step: lab agent-upgrade $node: pid $old -> $new, old one exited ($((t1 - t0)) ms)"
	check "$step: the new agent ($new) answers status with its pid" test "$(status_pid "$node")" = "$new"
	check "$step: the old agent ($old) is gone within drain + 10 s" \
		bash -c "(( $t1 - $t0 <= ($DRAIN + 10) * 1000 )) && { [[ ! -e /proc/$old ]] || grep -q '^State:.*Z' /proc/$old/status; }"
	local log
	log=$(new_log "$node" "$off")
	expect_contains "$step: the old agent logged the handover to $new" "$log" "handover: handed over to pid $new"
	expect_contains "$step: the new agent logged the takeover from $old" "$log" "handover: took over from pid $old"
	expect_contains "$step: the old agent logged it drained" "$log" "handover: drained"
	if [[ $node == node-1 ]]; then
		relays=$(grep -oE "handed over to pid $new with [0-9]+ plaintext relays" <<<"$log" | grep -oE '[0-9]+ plaintext' | cut -d' ' -f1)
		check "$step: the old agent handed over its plaintext relays (${relays:-none}; at least the 20 long ones)" \
			test "${relays:-0}" -ge 20
		expect_contains "$step: the new agent carried them on, none failed" "$log" "relays carried on from the old agent (0 failed)"
	fi
	check "$step: agent.old.pids lists $old" grep -qx "$old" "$STATE/$node/agent.old.pids"
	hold_check "$step"
}

# the pods' tcx links: after any number of upgrades the very same links (ids),
# each new agent having swapped its program into the one it inherited
tc_links() {
	local p f
	p=$(agent_pid "$1")
	for f in /proc/"$p"/fdinfo/*; do
		grep -q '^link_type:.tcx' "$f" 2>/dev/null && awk '/^link_id:/ {print $2}' "$f"
	done | sort -n | tr '\n' ' '
}
TC_BEFORE="node-1: $(tc_links node-1)node-2: $(tc_links node-2)"

sleep 1	# the short load runs before the first upgrade
for s in "upgrade 1:node-1" "upgrade 2:node-2" "upgrade 3:node-1"; do
	if [[ -n $UPGRADE_FAILED ]]; then
		echo "[${s%%:*}] not run: $UPGRADE_FAILED failed"
		continue
	fi
	upgrade "${s%%:*}" "${s#*:}"
done
sleep 1	# and after the last one
TC_AFTER="node-1: $(tc_links node-1)node-2: $(tc_links node-2)"
check "the pods' tcx links are the same ones after the upgrades ($TC_AFTER)" \
	test "$TC_BEFORE" = "$TC_AFTER" -a "$TC_BEFORE" != "node-1: node-2: "

# ---------------------------------------------------------------- short load
touch "$E2E_TMP/stop"
wait "$SHORT_PID" 2>/dev/null
BG_PIDS=()
nb=$(wc -l <"$SHORTS")
bad=$(awk '$2 != 0 || $0 !~ / err=0 /' "$SHORTS")
if ((nb > 0)) && [[ -z $bad ]]; then
	pass "short connections through the VIP: $nb batches of 200 (ipv4, ipv6), none failed"
else
	fail "short connections through the VIP: $nb batches, failed ones:"
	echo "${bad:-(none ran)}" | head -n 10 | sed 's/^/    /'
	# what the agents said about failed connections, to tell whose they were
	# (a failed relay is logged at debug only: the current agents' counters
	# say whether it was theirs)
	for n in node-1 node-2; do
		echo "    --- $n: agent.log, tunnel, handover, warn and error lines (last 40):"
		grep -E 'tunnel: |handover: | warn | error ' "$STATE/$n/agent.log" | tail -n 40 | sed 's/^/    /'
		echo "    --- $n: the current agent's relay counters: $(ctl "$n" --json get /connections 2>/dev/null |
			$PY -c 'import json,sys; print(json.load(sys.stdin)["stats"])' 2>&1)"
	done
fi
# the load ran through every upgrade: batches ended while it went on (up to
# the old agent's exit, or 2 s after a quick failure)
for w in "${STEP_WINDOWS[@]}"; do
	read -r t0 t1 step <<<"$w"
	n=$(awk -v a="$t0" -v b="$((t1 + 2000))" '$1 >= a && $1 <= b' "$SHORTS" | wc -l)
	check "$step: short connections went on during it ($n batches)" test "$n" -gt 0
done

# ---------------------------------------------------------------- no agent
# --takeover with no agent running, on a fresh node root: a normal start.
if [[ -z $UPGRADE_FAILED ]]; then
	ALL_PIDS+=("$(agent_pid node-2)")
	lab agent-stop node-2 >/dev/null 2>&1
	rm -rf "${ROOT:?}/node-2"
	off=$(log_size node-2)
	out=$(tlab 30 agent-upgrade node-2 --drain-seconds "$DRAIN" 2>&1)
	rc=$?
	new=$(agent_pid node-2)
	[[ -n $new ]] && ALL_PIDS+=("$new")
	if [[ $rc == 0 ]]; then
		pass "no agent: --takeover on a fresh node root starts normally (pid $new)"
	else
		fail "no agent: --takeover on a fresh node root (exit $rc)"
		echo "$out" | tail -n 20 | sed 's/^/    /'
	fi
	expect_not_contains "no agent: nothing taken over" "$(new_log node-2 "$off")" "handover: took over"
	check "no agent: it answers status with its pid" test "$(status_pid node-2)" = "$new"
	check "no agent: its pods are captured again" wait_until 10 all_captured
	out=$(tlab 20 exec mesh/client-1 sl-soak short "$REMOTE4" 8080 --total 20 --concurrency 4 --seconds 10 2>&1)
	expect_contains "no agent: cross-node connections to node-2 again" "$out" " err=0 "
else
	echo "[no agent] not run: $UPGRADE_FAILED failed"
fi

# ---------------------------------------------------------------- down
check "lab down" lab down
all_gone() {
	local p
	for p in "${ALL_PIDS[@]}"; do [[ -z $p ]] || gone "$p" || return 1; done
}
# a killed process may take a moment to be reaped on a loaded machine
check "after down: no agent left ($(printf '%s\n' "${ALL_PIDS[@]}" | sort -un | xargs))" wait_until 5 all_gone
check "after down: no pins" test ! -e "$ROOT"
check "after down: no netns" bash -c "! ls /run/netns 2>/dev/null | grep -q '^sl$E2E_ID-'"
check "after down: no state" test ! -e "$STATE"
