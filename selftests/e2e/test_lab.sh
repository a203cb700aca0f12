#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_lab.sh - checks scripts/lab itself, without agents: topology, pod-to-pod
# TCP/UDP (IPv4, IPv6, v4-mapped) across nodes and on one node, client IPs
# seen by servers, exec, two labs at once, failed ups, and that `down` leaves
# nothing behind. The agent lifecycle commands are checked with a stand-in
# agent (a tiny status-socket server), so they work before the real agent does.
#
# Prints "[name] PASS|FAIL" per check; the last line is "N passed, N failed".
# Always cleans up (trap). Needs root and build/sl-echo (make build/sl-echo).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=$REPO/scripts/lab
BUILD=${SLUICE_BUILD:-$REPO/build}
T=20					# seconds: bound for every single lab/probe command

PASSED=0
FAILED=0
# IDs unique to this run: [a-z0-9]{1,6}
A=a$(printf '%04d' $(($$ % 10000)))
B=b$(printf '%04d' $(($$ % 10000)))
C=c$(printf '%04d' $(($$ % 10000)))
TMP=$(mktemp -d /tmp/test_lab.XXXXXX)

finish() {
	local id
	trap - EXIT INT TERM
	for id in "$A" "$B" "$C"; do
		timeout 60 "$LAB" --id "$id" down >/dev/null 2>&1
	done
	SLUICE_BUILD=$TMP/build timeout 60 "$LAB" --id "$C" down >/dev/null 2>&1
	rm -rf "$TMP"
	echo "$PASSED passed, $FAILED failed"
	((FAILED == 0))
	exit $?
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { PASSED=$((PASSED + 1)); echo "[$1] PASS"; }
fail() {
	FAILED=$((FAILED + 1))
	echo "[$1] FAIL${2:+: $2}"
}
# check NAME CMD...: pass when CMD succeeds; on failure show its output.
check() {
	local name=$1 out; shift
	if out=$("$@" 2>&1); then
		pass "$name"
	else
		fail "$name" "$*"
		[[ -n $out ]] && tail -n 15 <<<"$out" | sed 's/^/    /'
	fi
}

lab() { local id=$1; shift; timeout "$T" "$LAB" --id "$id" "$@"; }

# probe_ok ID FROM PROTO HOST PORT WANT_POD WANT_SAW_IP [probe args]: one
# successful probe answered by WANT_POD, which saw the client as WANT_SAW_IP.
probe_ok() {
	local id=$1 from=$2 proto=$3 host=$4 port=$5 pod=$6 saw=$7 out; shift 7
	out=$(lab "$id" exec "$from" sl-echo probe "$proto" "$host" "$port" --timeout-ms 3000 "$@") ||
		{ echo "$out"; return 1; }
	echo "$out"
	[[ $(head -n 1 <<<"$out") =~ ^ok\ pod=$pod\ peer=[^\ ]+\ server_saw=\[?${saw//./\\.}\]?:[0-9]+$ ]]
}

# Nothing of lab ID left: netns, cgroup, bpffs dir, state dir, processes.
nothing_left() {
	local id=$1 cg2 left=0 p
	for p in /run/netns/"sl$id"-*; do
		[[ -e $p ]] && { echo "netns left: ${p##*/}"; left=1; }
	done
	cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	if [[ -n $cg2 && -e $cg2/sluice-lab-$id ]]; then echo "cgroup left"; left=1; fi
	if [[ -e /sys/fs/bpf/sluice-lab-$id ]]; then echo "bpffs dir left"; left=1; fi
	if [[ -e /run/sluice-lab/$id ]]; then echo "state dir left"; left=1; fi
	# a killed process may take a moment to exit on a loaded machine
	for p in "${@:2}"; do
		gone "$p" >/dev/null || { echo "process $p left"; left=1; }
	done
	return $left
}

# gone PID: the process has exited (a zombie counts), waiting up to 5 s for init to reap.
gone() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -e /proc/$1 ]] || return 0
		grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "process $1 still running"
	return 1
}

pids_of() { cat /run/sluice-lab/"$1"/pod/*/server.pid /run/sluice-lab/"$1"/*/agent.pid 2>/dev/null; }
# pid_list VAR ID: append lab ID's recorded pids to array VAR.
pid_list() { local -n _v=$1; mapfile -t -O "${#_v[@]}" _v < <(pids_of "$2"); }

# ---------------------------------------------------------------- preconditions

if [[ $(id -u) != 0 ]]; then
	echo "SKIP: needs root"
	trap - EXIT
	rm -rf "$TMP"
	echo "0 passed, 0 failed"
	exit 0
fi
if [[ ! -x $BUILD/sl-echo ]]; then
	fail "sl-echo is built" "no $BUILD/sl-echo (make build/sl-echo)"
	exit 1
fi

# ---------------------------------------------------------------- lab A: 2 nodes x 2 pods, dual-stack

check "up lab A (2 nodes x 2 pods, dual-stack, no agent)" \
	lab "$A" up --nodes 2 --pods 2 --dual-stack --no-agent
check "status of lab A" lab "$A" status
check "env of lab A evaluates" bash -c "eval \"\$(timeout $T '$LAB' --id '$A' env)\" &&
	[[ \$SLUICE_LAB_NNODES == 2 && \$SLUICE_LAB_NPODS == 4 && \$SLUICE_LAB_NODE1 == node-1 &&
	   \$SLUICE_LAB_POD1_IP4 == 10.244.1.11 && \$SLUICE_LAB_POD1_IP6 == fd00:244:1::11 &&
	   -d \$SLUICE_LAB_NODE1_CGROUP ]]"
check "netns named after the lab" bash -c "ls /run/netns | grep -qx 'sl$A-fabric' &&
	ls /run/netns | grep -qx 'sl$A-node-1' && ls /run/netns | grep -qx 'sl$A-default-pod-node-2-1'"

# across nodes (node-1 -> node-2)
check "TCP v4 across nodes" probe_ok "$A" pod-node-1-1 tcp 10.244.2.11 8080 pod-node-2-1 10.244.1.11
check "TCP v6 across nodes" probe_ok "$A" pod-node-1-1 tcp fd00:244:2::11 8080 pod-node-2-1 fd00:244:1::11
check "UDP v4 across nodes (unconnected)" probe_ok "$A" pod-node-1-1 udp 10.244.2.12 5353 pod-node-2-2 10.244.1.11
check "UDP v6 across nodes (connected)" probe_ok "$A" pod-node-2-2 udp fd00:244:1::12 5353 pod-node-1-2 fd00:244:2::12 --connected
check "TCP v4-mapped (AF_INET6 socket) across nodes" \
	probe_ok "$A" pod-node-1-2 tcp ::ffff:10.244.2.11 8080 pod-node-2-1 10.244.1.12
# on one node (node-2 -> node-2)
check "TCP v4 on one node" probe_ok "$A" pod-node-2-1 tcp 10.244.2.12 8080 pod-node-2-2 10.244.2.11
check "TCP v6 on one node" probe_ok "$A" pod-node-2-1 tcp fd00:244:2::12 8080 pod-node-2-2 fd00:244:2::11
check "UDP v4 on one node (connected)" probe_ok "$A" default/pod-node-2-1 udp 10.244.2.12 5353 pod-node-2-2 10.244.2.11 --connected
check "UDP v6 on one node (unconnected)" probe_ok "$A" pod-node-2-1 udp fd00:244:2::12 5353 pod-node-2-2 fd00:244:2::11
check "count=5 probe summary" bash -c "lab_out=\$(timeout $T '$LAB' --id '$A' exec pod-node-1-1 sl-echo probe tcp 10.244.2.12 8080 --count 5) &&
	[[ \$(tail -n 1 <<<\"\$lab_out\") == 'summary ok=5 err=0 pods=pod-node-2-2:5' ]]"
check "closed port: ECONNREFUSED, exit 1" bash -c "out=\$(timeout $T '$LAB' --id '$A' exec pod-node-1-1 sl-echo probe tcp 10.244.2.11 9 --timeout-ms 3000); rc=\$?;
	[[ \$rc == 1 && \$(head -n 1 <<<\"\$out\") == 'err ECONNREFUSED Connection refused' ]]"
check "HTTP echo shows pod, namespace and client IP" bash -c "out=\$(timeout $T '$LAB' --id '$A' exec pod-node-1-1 curl -sS --max-time 5 'http://10.244.2.11:8080/x?y=1');
	echo \"\$out\"; [[ \$out == *'\"path\": \"/x?y=1\"'* && \$out == *'\"pod\": \"pod-node-2-1\"'* &&
	   \$out == *'\"namespace\": \"default\"'* && \$out == *'\"remote\": \"10.244.1.11:'* ]]"
check "HTTP /status/503" bash -c "[[ \$(timeout $T '$LAB' --id '$A' exec pod-node-2-1 curl -s -o /dev/null -w '%{http_code}' --max-time 5 'http://[fd00:244:1::11]:8080/status/503') == 503 ]]"
stream_ok() {
	local out
	out=$(lab "$A" exec pod-node-1-1 sl-echo stream tcp 10.244.2.11 8080 --duration-ms 600 --interval-ms 50) ||
		{ echo "$out"; return 1; }
	echo "$out"
	[[ $out =~ ^stream\ sent=([0-9]+)\ replies=([0-9]+)\ long_errors=0\ new_ok=([0-9]+)\ new_err=0\ first_err=-$ ]] &&
		((BASH_REMATCH[1] == BASH_REMATCH[2] && BASH_REMATCH[1] >= 5 && BASH_REMATCH[3] >= 5))
}
check "stream: long and new connections for 600 ms" stream_ok

# exec
check "exec propagates the exit code" bash -c "timeout $T '$LAB' --id '$A' exec pod-node-1-1 sh -c 'exit 7'; [[ \$? == 7 ]]"
check "exec passes stdin and stdout" bash -c "[[ \$(echo hello | timeout $T '$LAB' --id '$A' exec pod-node-1-1 cat) == hello ]]"
check "exec runs in the pod's netns" bash -c "timeout $T '$LAB' --id '$A' exec default/pod-node-2-2 ip -o addr show dev eth0 | grep -q ' 10.244.2.12/32 '"
check "exec runs in the node's pod cgroup" bash -c "timeout $T '$LAB' --id '$A' exec pod-node-2-2 cat /proc/self/cgroup | grep -qx '0::/sluice-lab-$A/node-2'"
check "exec has build/ on PATH" bash -c "[[ \$(timeout $T '$LAB' --id '$A' exec pod-node-1-1 sh -c 'command -v sl-echo') == '$BUILD/sl-echo' ]]"
check "exec of an unknown pod fails" bash -c "! timeout $T '$LAB' --id '$A' exec no-such-pod true"
check "servers run in their node's pod cgroup" bash -c "p=\$(cat /run/sluice-lab/$A/pod/default.pod-node-1-2/server.pid) &&
	grep -qx '0::/sluice-lab-$A/node-1' /proc/\$p/cgroup"

# ---------------------------------------------------------------- lab B at the same time (same addresses)

check "up lab B alongside A (3 nodes x 1 pod, IPv4 only)" lab "$B" up --nodes 3 --pods 1 --ipv4-only --no-agent
check "lab B: TCP across nodes" probe_ok "$B" pod-node-3-1 tcp 10.244.1.11 8080 pod-node-1-1 10.244.3.11
check "lab B: UDP across nodes" probe_ok "$B" pod-node-1-1 udp 10.244.2.11 5353 pod-node-2-1 10.244.1.11
check "lab A still answers with its own pods" probe_ok "$A" pod-node-2-2 tcp 10.244.1.11 8080 pod-node-1-1 10.244.2.12
check "lab B has no pod-node-1-2" bash -c "! timeout $T '$LAB' --id '$B' exec pod-node-1-2 true 2>/dev/null"

# ---------------------------------------------------------------- down

A_PIDS=()
pid_list A_PIDS "$A"
check "down lab A" lab "$A" down
check "lab A: nothing left" nothing_left "$A" "${A_PIDS[@]}"
check "lab B unaffected by A's down" probe_ok "$B" pod-node-2-1 tcp 10.244.3.11 8080 pod-node-3-1 10.244.2.11
check "down is idempotent" lab "$A" down

B_PIDS=()
pid_list B_PIDS "$B"
kill -9 "$(cat /run/sluice-lab/"$B"/pod/default.pod-node-2-1/server.pid)" 2>/dev/null
rm -f /run/sluice-lab/"$B"/pods
check "status reports a broken lab" bash -c "! timeout $T '$LAB' --id '$B' status >/dev/null 2>&1"
check "up over a broken lab of the same ID" lab "$B" up --nodes 1 --pods 1 --no-agent
check "lab B after re-up: TCP v6 on one node is refused on a closed port" bash -c "out=\$(timeout $T '$LAB' --id '$B' exec pod-node-1-1 sl-echo probe tcp fd00:244:1::11 1 --timeout-ms 3000); [[ \$out == 'err ECONNREFUSED'* ]]"
pid_list B_PIDS "$B"
check "down after a crash" lab "$B" down
check "lab B: nothing left" nothing_left "$B" "${B_PIDS[@]}"

# ---------------------------------------------------------------- failing ups clean up

printf 'pod default a - 10.244.1.11 - tcp/80,tcp/80 -\n' >"$TMP/plan-dup-port"
printf 'pod default a node-1 - - tcp/80 -\n' >"$TMP/plan-no-ip"
mkdir -p "$TMP/cfg"
check "up fails when a server cannot start" bash -c "! SLUICE_LAB_PLAN='$TMP/plan-dup-port' timeout $T '$LAB' --id '$C' up --config '$TMP/cfg' --no-agent"
check "failed up left nothing" nothing_left "$C"
check "up refuses a pod without IPs" bash -c "out=\$(SLUICE_LAB_PLAN='$TMP/plan-no-ip' timeout $T '$LAB' --id '$C' up --config '$TMP/cfg' --no-agent 2>&1); rc=\$?;
	echo \"\$out\"; [[ \$rc != 0 && \$out == *'has no IP'* ]]"
check "refused up left nothing" nothing_left "$C"
check "a bad ID is rejected" bash -c "! timeout $T '$LAB' --id 'Bad-ID' status 2>/dev/null"

# ---------------------------------------------------------------- agent lifecycle, with a stand-in agent

mkdir -p "$TMP/build"
ln -s "$BUILD/sl-echo" "$TMP/build/sl-echo"
cat >"$TMP/build/sluice-agent" <<'EOF'
#!/bin/bash
# stand-in agent: serves its --status-socket until SIGTERM
sock=
while (($#)); do [[ $1 == --status-socket ]] && sock=$2; shift; done
exec /usr/bin/python3 -c '
import os, signal, socket, sys
path = sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(16)
def bye(*_):
    os.unlink(path)
    os._exit(0)
signal.signal(signal.SIGTERM, bye)
while True:
    c, _ = s.accept()
    c.close()
' sluice-agent "$sock"
EOF
cat >"$TMP/build/sluicectl" <<'EOF'
#!/bin/bash
# stand-in sluicectl: `--socket PATH status` succeeds when the socket accepts
exec /usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$2"
EOF
chmod +x "$TMP/build/sluice-agent" "$TMP/build/sluicectl"
labc() { SLUICE_BUILD=$TMP/build timeout "$T" "$LAB" --id "$C" "$@"; }

check "up with (stand-in) agents" labc up --nodes 2 --pods 1
agent_pid() { cat "/run/sluice-lab/$C/$1/agent.pid"; }
check "agent runs in its node's netns and agent cgroup" bash -c "p=\$(cat /run/sluice-lab/$C/node-2/agent.pid) &&
	[[ \$(stat -L -c %i /proc/\$p/ns/net) == \$(stat -L -c %i /run/netns/sl$C-node-2) ]] &&
	grep -qx '0::/sluice-lab-$C/node-2-agent' /proc/\$p/cgroup"
check "agent got the lab's options" bash -c "grep -qx -- '--bpffs-root' /run/sluice-lab/$C/node-1/agent.args &&
	grep -qx '/sys/fs/bpf/sluice-lab-$C/node-1' /run/sluice-lab/$C/node-1/agent.args &&
	grep -qx '/run/sluice-lab/$C/node-1/agent.sock' /run/sluice-lab/$C/node-1/agent.args"
OLD=$(agent_pid node-1)
cp "/run/sluice-lab/$C/node-1/agent.args" "$TMP/args-before"
check "agent-restart" labc agent-restart node-1
check "agent-restart: same options" cmp "$TMP/args-before" "/run/sluice-lab/$C/node-1/agent.args"
check "agent-restart: new pid" bash -c "[[ \$(cat /run/sluice-lab/$C/node-1/agent.pid) != $OLD ]]"
check "agent-restart: old agent gone" gone "$OLD"
OLD=$(agent_pid node-2)
check "agent-stop" labc agent-stop node-2
check "agent-stop: process gone" gone "$OLD"
check "agent-stop: pid file removed" test ! -e "/run/sluice-lab/$C/node-2/agent.pid"
check "agent-start" labc agent-start node-2
check "status with agents" labc status
C_PIDS=()
pid_list C_PIDS "$C"
check "down with agents" labc down
check "lab with agents: nothing left" nothing_left "$C" "${C_PIDS[@]}"

# an agent that dies at startup: up fails, shows its log, and cleans up
mkdir -p "$TMP/badbuild"
ln -s "$BUILD/sl-echo" "$TMP/badbuild/sl-echo"
ln -s "$TMP/build/sluicectl" "$TMP/badbuild/sluicectl"
printf '#!/bin/sh\necho "stand-in agent: cannot start" >&2\nexit 1\n' >"$TMP/badbuild/sluice-agent"
chmod +x "$TMP/badbuild/sluice-agent"
check "up fails when an agent dies, and shows its log" bash -c "out=\$(SLUICE_BUILD='$TMP/badbuild' timeout $T '$LAB' --id '$C' up --nodes 1 --pods 1 2>&1); rc=\$?;
	echo \"\$out\"; [[ \$rc != 0 && \$out == *'stand-in agent: cannot start'* ]]"
check "failed agent start left nothing" nothing_left "$C"
