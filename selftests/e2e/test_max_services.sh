#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_max_services.sh - --max-services (issue 8 part 3): the Service maps
# sized at start instead of at build time.
#   1. an agent with --max-services 100000 takes 70,001 Service frontends
#      (more than the built-in 65,536): `sluicectl status` and `maps` show the
#      capacity, and connects through the cgroup hook to the VIP of the Service
#      added last (two backends) are balanced over both, and to one of the
#      generated Services beyond the 65,536th reach its backend;
#   2. a --takeover at the built-in size over those pins is refused, saying
#      the pinned size, the entries held and the flag; the running agent
#      carries on, the pins and the datapath stay as they were;
#   3. a --takeover with --max-services 131072 resizes the pinned maps and
#      copies their entries: the log says so, the first sync has nothing to
#      write (the copies held everything), connections are still balanced;
#   4. a plain restart at the built-in size is refused the same way;
#   5. a restart with a smaller size that still holds every entry resizes
#      the maps down;
#   6. bad values of --max-services exit 2 with the range.
# Everything runs in a network namespace of our own (loopback only), with the
# agent attached to an empty cgroup of our own and its own bpffs root.
. "$(dirname "$0")/lib.sh"
need_root max-services

NS=slx-$E2E_ID
BPF=/sys/fs/bpf/sluice-maxsvc-$E2E_ID
AGENT=$E2E_REPO/build/sluice-agent
PY=/usr/bin/python3
SOCK=$E2E_TMP/agent.sock
pids=()

stop_pid() {	# stop_pid PID : SIGTERM, then at most 10 s, then SIGKILL
	kill "$1" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$1" 2>/dev/null
}
cleanup() {
	local rc=$? p
	for p in "${pids[@]}"; do stop_pid "$p"; done
	[ -d "$BPF" ] && "$AGENT" --uninstall --bpffs-root "$BPF" >/dev/null 2>&1
	rm -rf "$BPF" 2>/dev/null
	e2e_cgroup2_release "sluice-maxsvc-$E2E_ID"
	ip netns del "$NS" 2>/dev/null
	return "$rc"
}
trap 'cleanup; e2e_finish' EXIT

e2e_cgroup2 || { skip max-services "no cgroup v2 and none can be mounted"; exit 0; }
CG=$CG2/sluice-maxsvc-$E2E_ID
mkdir -p "$CG" "$E2E_TMP/cfg"
ip netns add "$NS" && nsenter --net="/run/netns/$NS" ip link set lo up
# The two backends: addresses on the namespace's loopback.
nsenter --net="/run/netns/$NS" ip addr add 10.244.9.1/32 dev lo
nsenter --net="/run/netns/$NS" ip addr add 10.244.9.2/32 dev lo

# 70,000 generated Services (VIPs 10.112.0.1 ...), one backend each, and one
# Service with two backends added last.
"$PY" "$E2E_REPO/scripts/gen-services" yaml "$E2E_TMP/cfg" --count 70000 --backend 10.244.9.1:8080 \
	--vip-base 10.112.0.0
cat >"$E2E_TMP/cfg/zz-two.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata: {name: two, namespace: bench}
spec:
  clusterIP: 10.96.9.9
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: two-1, namespace: bench, labels: {kubernetes.io/service-name: two}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.9.1], conditions: {ready: true}, nodeName: n1}
- {addresses: [10.244.9.2], conditions: {ready: true}, nodeName: n1}
Y
FRONTENDS=70001
# The 65,600th generated Service: a frontend beyond the built-in capacity.
FAR_VIP=$("$PY" -c "import ipaddress; print(ipaddress.ip_address('10.112.0.0') + 1 + 65600)")

# Backend servers: each accepted connection is answered with the server's
# own address, so the client sees which backend it reached (getpeername
# would show the VIP: the hook translates it back).
cat >"$E2E_TMP/serve.py" <<'P'
import selectors, socket, sys
sel = selectors.DefaultSelector()
for a in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a, 8080)); s.listen(128); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, a)
print("ready", flush=True)
while True:
    for k, _ in sel.select():
        c, _ = k.fileobj.accept()
        c.sendall((k.data + "\n").encode()); c.close()
P
# probe VIP N: N connects from a process in our cgroup; prints "addr count"
# per backend reached, and "err N" for failures.
cat >"$E2E_TMP/probe.py" <<'P'
import collections, socket, sys
seen = collections.Counter()
for _ in range(int(sys.argv[2])):
    try:
        with socket.create_connection((sys.argv[1], 80), timeout=2) as s:
            seen[s.makefile().readline().strip()] += 1
    except OSError:
        seen["err"] += 1
for k in sorted(seen):
    print(k, seen[k])
P
nsenter --net="/run/netns/$NS" "$PY" "$E2E_TMP/serve.py" 10.244.9.1 10.244.9.2 >"$E2E_TMP/serve.log" 2>&1 &
pids+=($!)
check "backend servers ready" wait_until 10 grep -q ready "$E2E_TMP/serve.log"
probe() {
	timeout 30 bash -c 'echo $$ >"$1/cgroup.procs" && exec nsenter --net="/run/netns/$2" "$3" "$4" "$5" "$6"' \
		probe "$CG" "$NS" "$PY" "$E2E_TMP/probe.py" "$1" "$2"
}
# balanced: both backends answered and nothing failed
balanced() { local o; o=$(probe 10.96.9.9 40); echo "$o"; grep -q '^10.244.9.1 ' <<<"$o" && grep -q '^10.244.9.2 ' <<<"$o" && ! grep -q '^err' <<<"$o"; }

# start_agent LOG ARGS... : in the background, in our netns; its pid in $AGENT_PID
start_agent() {
	local log=$1; shift
	rm -f "$SOCK"
	nsenter --net="/run/netns/$NS" "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" --cgroup "$CG" \
		--no-mesh --metrics off --status-socket "$SOCK" --bpffs-root "$BPF" "$@" >"$log" 2>&1 &
	AGENT_PID=$!
	pids+=($AGENT_PID)
}
jstatus() { sluicectl --socket "$SOCK" --json status | "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
synced() { [ "$(jstatus "d['sync']['frontends']")" = "$FRONTENDS" ]; }

# --- 1. more frontends than the built-in size ---
start_agent "$E2E_TMP/a1.log" --max-services 100000
A1=$AGENT_PID
check "--max-services 100000: the agent syncs $FRONTENDS frontends" wait_until 40 synced
expect_contains "--max-services 100000: the loader says the sizes" "$(cat "$E2E_TMP/a1.log")" \
	"loader: --max-services 100000: sl_svc_v1 holds at most 100000 frontends, sl_be_v1 1600000 backend slots"
expect_contains "sluicectl status shows the capacity" "$(sluicectl --socket "$SOCK" status)" \
	"Capacity:   100000 frontends, 1600000 backend slots (--max-services)"
maps=$(sluicectl --socket "$SOCK" maps)
check "sluicectl maps: sl_svc_v1 holds $FRONTENDS of 100000" grep -qE "^sl_svc_v1 +hash +$FRONTENDS +100000 " <<<"$maps"
check "sluicectl maps: sl_be_v1 has room for 1600000" grep -qE "^sl_be_v1 +hash +70002 +1600000 " <<<"$maps"
check "connects to the VIP are balanced over both backends" balanced
expect_contains "a Service beyond the 65,536th reaches its backend ($FAR_VIP)" "$(probe "$FAR_VIP" 3)" "10.244.9.1 3"

# agent_exit LOG ARGS... : run an agent (as start_agent) to its end; its exit status
agent_exit() {
	local log=$1; shift
	nsenter --net="/run/netns/$NS" timeout 30 "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" --cgroup "$CG" \
		--no-mesh --metrics off --status-socket "$SOCK" --bpffs-root "$BPF" "$@" >"$log" 2>&1
}
REFUSED="loader: pinned map $BPF/sl_svc_v1 holds $FRONTENDS entries, more than its new size 65536 (--max-services; pinned with room for 100000): start with --max-services $FRONTENDS or more"
status_pid() { jstatus "d['pid']"; }
# pinned_max N: bpftool shows the pinned sl_svc_v1 with room for N (what it
# shows otherwise is printed, for a failed check)
pinned_max() {
	local out
	out=$(bpftool map show pinned "$BPF/sl_svc_v1" 2>&1)
	grep -q "max_entries $1 " <<<"$out " && return 0
	echo "$out"
	return 1
}
# the same, given a moment (and what bpftool shows then, when it does not)
pinned_max_soon() { wait_until 5 pinned_max "$1" || pinned_max "$1"; }

# --- 2. a takeover with a smaller size than the pinned maps hold: refused,
# the running agent carries on ---
agent_exit "$E2E_TMP/a2.log" --takeover
rc=$?
check "takeover at the built-in size over 70,001 pinned frontends: exit 1" test "$rc" = 1
expect_contains "... it says the size, what the pin holds and the flag" "$(cat "$E2E_TMP/a2.log")" "$REFUSED"
check "... the running agent carries on (status from its pid)" wait_until 10 test "$(status_pid)" = "$A1"
check "... the pinned map is as it was" pinned_max 100000
check "... connects still balanced" balanced

# --- 3. a takeover with a larger size: the pinned maps are resized, their
# entries copied before the new programs take the links ---
start_agent "$E2E_TMP/a3.log" --max-services 131072 --takeover
check "takeover with --max-services 131072: the old agent hands over and exits" \
	wait_until 30 bash -c "! kill -0 $A1 2>/dev/null"
check "... the new agent serves, synced" wait_until 40 synced
log=$(cat "$E2E_TMP/a3.log")
expect_contains "... sl_svc_v1 resized, every entry copied" "$log" \
	"loader: map sl_svc_v1 resized from 100000 to 131072 entries (--max-services): $FRONTENDS entries copied"
expect_contains "... sl_be_v1 too" "$log" \
	"loader: map sl_be_v1 resized from 1600000 to 2097152 entries (--max-services): 70002 entries copied"
check "... the first sync finds nothing to write (the copies held it all)" \
	grep -qE "config: generation 1: .* $FRONTENDS frontends, .* sync [0-9.]+ ms \(0 updates, 0 deletes\)" "$E2E_TMP/a3.log"
check "... bpftool sees the new size" pinned_max_soon 131072
check "... connects still balanced" balanced
expect_contains "... and sluicectl status the new capacity" "$(sluicectl --socket "$SOCK" status)" \
	"Capacity:   131072 frontends, 2097152 backend slots (--max-services)"

# --- 4. a plain restart at the built-in size: refused, nothing touched ---
stop_pid "$AGENT_PID"
check "the pins stay after the agent stops" test -e "$BPF/sl_svc_v1"
agent_exit "$E2E_TMP/a4.log"
rc=$?
check "restart at the built-in size over the pins: exit 1" test "$rc" = 1
expect_contains "... with the same message" "$(cat "$E2E_TMP/a4.log")" "${REFUSED/100000/131072}"
check "... the pinned map is as it was" pinned_max 131072
check "... the datapath too: connects still balanced without an agent" balanced

# --- 5. a smaller size that still holds every entry: resized down ---
start_agent "$E2E_TMP/a5.log" --max-services 100000
check "restart with --max-services 100000 (room for the 70,001): synced" wait_until 40 synced
expect_contains "... sl_svc_v1 resized down, every entry copied" "$(cat "$E2E_TMP/a5.log")" \
	"loader: map sl_svc_v1 resized from 131072 to 100000 entries (--max-services): $FRONTENDS entries copied"
check "... bpftool sees the new size" pinned_max_soon 100000
check "... connects still balanced" balanced
stop_pid "$AGENT_PID"

# --- 6. bad values ---
for v in 0 -1 x 1048577 99999999999999999999 ""; do
	out=$(timeout 10 nsenter --net="/run/netns/$NS" "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" \
		--cgroup "$CG" --no-mesh --metrics off --status-socket "$E2E_TMP/bad.sock" --bpffs-root "$BPF" \
		--max-services "$v" 2>&1)
	rc=$?
	check "--max-services '$v': exit 2" test "$rc" = 2
	expect_contains "--max-services '$v': says the range" "$out" \
		"--max-services: expected 1 to 1048576 Service frontends (default 65536)"
done
