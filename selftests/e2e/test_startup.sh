#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The failures operators meet when the agent starts, each provoked for real,
# with the message docs/troubleshooting.md quotes: no kernel BTF (a tmpfs over
# /sys/kernel/btf in a mount namespace of our own), bpffs not mounted (the
# agent mounts it), a cgroup that is not v2, a bpffs root held by another
# agent, no privileges. A failed start leaves no pin or directory behind.
# Every agent runs in a network namespace of its own (no traffic), attached to
# an empty cgroup of its own, never the machine's root cgroup.
. "$(dirname "$0")/lib.sh"
need_root startup

NS=sls-$E2E_ID
BPF=/sys/fs/bpf/sluice-startup-$E2E_ID
AGENT=$E2E_REPO/build/sluice-agent
pids=()

cleanup() {
	local rc=$? p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	for r in "$BPF" "$BPF-held"; do
		[ -d "$r" ] && "$AGENT" --uninstall --bpffs-root "$r" >/dev/null 2>&1
		rm -rf "$r" 2>/dev/null
	done
	e2e_cgroup2_release "sluice-startup-$E2E_ID"
	ip netns del "$NS" 2>/dev/null
	return "$rc"
}
trap 'cleanup; e2e_finish' EXIT

e2e_cgroup2 || { skip startup "no cgroup v2 and none can be mounted"; exit 0; }
CG=$CG2/sluice-startup-$E2E_ID
mkdir -p "$CG" "$E2E_TMP/cfg"
ip netns add "$NS" && nsenter --net="/run/netns/$NS" ip link set lo up	# not ip -n: it fails in a chroot

# In a mount namespace of our own, /sys private (not / itself: in a chroot
# / is no mount point, and unshare's --propagation private fails there), so
# that nothing mounted or unmounted below it reaches the host. Exit 77 when
# that cannot be had.
PRIVATE_SYS='mount --make-rprivate /sys || exit 77'

# agent LOG [SETUP] -- ARGS...: run the agent to its end (at most 20 s) in a
# mount namespace of our own (SETUP runs there first) and our network
# namespace; its output goes to LOG, its exit status is returned.
agent() {
	local log=$1 setup=$2; shift 3
	local priv=$PRIVATE_SYS
	[ "$setup" = true ] && priv=true	# nothing mounted: nothing to keep in
	timeout 20 nsenter --net="/run/netns/$NS" unshare -m --propagation unchanged \
		bash -c "$priv; $setup"' && exec "$@"' agent "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" \
		--cgroup "$CG" --no-mesh --metrics off --status-socket "$E2E_TMP/agent.sock" "$@" >"$log" 2>&1
}

# nothing_pinned ROOT: a failed start left no directory (and so no pin).
nothing_pinned() { [ ! -e "$1" ] || { find "$1"; return 1; }; }

# --- no kernel BTF ---
agent "$E2E_TMP/btf.log" 'mount -t tmpfs none /sys/kernel/btf || exit 77' -- --bpffs-root "$BPF"
rc=$?
if [ "$rc" = 77 ]; then
	skip "no kernel BTF" "cannot hide /sys/kernel/btf here (mount: $(tail -n 1 "$E2E_TMP/btf.log"))"
else
	check "no kernel BTF: the agent exits 1" test "$rc" = 1
	expect_contains "no kernel BTF: it says so and what the kernel needs" "$(cat "$E2E_TMP/btf.log")" \
		"loader: load sock_lb: No such process (no kernel BTF: sluice needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
	check "no kernel BTF: nothing left under the bpffs root" nothing_pinned "$BPF"
fi

# --- not privileged ---
timeout 20 nsenter --net="/run/netns/$NS" setpriv --reuid 65534 --regid 65534 --clear-groups \
	--inh-caps=-all --bounding-set=-all "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" --cgroup "$CG" \
	--no-mesh --metrics off --status-socket "$E2E_TMP/nopriv.sock" --bpffs-root "$BPF" >"$E2E_TMP/nopriv.log" 2>&1
rc=$?
check "no privileges: the agent exits 1" test "$rc" = 1
expect_contains "no privileges: it names the capabilities" "$(cat "$E2E_TMP/nopriv.log")" \
	"(not privileged: the agent needs root, or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN"
check "no privileges: nothing left under the bpffs root" nothing_pinned "$BPF"

# --- a cgroup that is not v2 ---
agent "$E2E_TMP/cg1.log" 'true' -- --bpffs-root "$BPF" --cgroup "$E2E_TMP/cfg"
rc=$?
check "not a cgroup v2 directory: the agent exits 1" test "$rc" = 1
expect_contains "not a cgroup v2 directory: it says how to mount one" "$(cat "$E2E_TMP/cg1.log")" \
	"is not a cgroup v2 directory (cgroup v1 only? mount one: mount -t cgroup2 none <dir>)"
check "not a cgroup v2 directory: nothing pinned" nothing_pinned "$BPF"

# --- bpffs not mounted: the agent mounts it. The bpffs it mounts lives only
# in the private mount namespace, so its pins (and the attachments they hold)
# go with the agent. ---
if ! nsenter --net="/run/netns/$NS" unshare -m --propagation unchanged bash -c "$PRIVATE_SYS" >/dev/null 2>&1; then
	skip "bpffs not mounted" "cannot make /sys private in a mount namespace here"
else
	rm -f "$E2E_TMP/agent.sock"
	nsenter --net="/run/netns/$NS" unshare -m --propagation unchanged bash -c \
		"$PRIVATE_SYS"'; umount /sys/fs/bpf 2>/dev/null; ! grep -q " /sys/fs/bpf bpf " /proc/mounts && exec "$@"' agent \
		"$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" --cgroup "$CG" --no-mesh --metrics off \
		--status-socket "$E2E_TMP/agent.sock" --bpffs-root /sys/fs/bpf/sluice-startup >"$E2E_TMP/bpffs.log" 2>&1 &
	pids+=($!)
	check "bpffs not mounted: the agent mounts it and gets ready" \
		wait_until 20 grep -q "agent: .* ready on node n1" "$E2E_TMP/bpffs.log"
	expect_contains "bpffs not mounted: it says it mounted one" "$(cat "$E2E_TMP/bpffs.log")" \
		"loader: mounted bpffs at /sys/fs/bpf"
	kill "${pids[-1]}" 2>/dev/null
	check "bpffs not mounted: the agent exits on SIGTERM" wait_until 10 bash -c "! kill -0 ${pids[-1]}"
fi

# --- a bpffs root held by another agent ---
rm -f "$E2E_TMP/agent.sock"
nsenter --net="/run/netns/$NS" "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" --cgroup "$CG" \
	--no-mesh --metrics off --status-socket "$E2E_TMP/agent.sock" --bpffs-root "$BPF-held" \
	>"$E2E_TMP/held.log" 2>&1 &
pids+=($!)
check "first agent ready" wait_until 20 sluicectl --socket "$E2E_TMP/agent.sock" status
agent "$E2E_TMP/second.log" 'true' -- --bpffs-root "$BPF-held" --status-socket "$E2E_TMP/second.sock"
rc=$?
check "a second agent on the same bpffs root exits 1" test "$rc" = 1
expect_contains "a second agent: it says the root is in use" "$(cat "$E2E_TMP/second.log")" \
	"loader: $BPF-held is in use by another sluice-agent (flock held)"
check "the first agent still serves" sluicectl --socket "$E2E_TMP/agent.sock" status
check "the first agent's pins are intact" test -e "$BPF-held/links"

# --- a takeover (issue 9's upgrade; test_upgrade has it under load): the
# status socket, the handover socket and the lock change hands ---
first=${pids[-1]}
nsenter --net="/run/netns/$NS" "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" --cgroup "$CG" \
	--no-mesh --metrics off --status-socket "$E2E_TMP/agent.sock" --bpffs-root "$BPF-held" --takeover \
	>"$E2E_TMP/takeover.log" 2>&1 &
pids+=($!)
new=$!
check "takeover: the first agent hands over and exits" wait_until 20 bash -c "! kill -0 $first"
expect_contains "takeover: the new agent says whom it took over from" "$(cat "$E2E_TMP/takeover.log")" \
	"handover: took over from pid $first"
expect_contains "takeover: the first agent says it drained" "$(cat "$E2E_TMP/held.log")" "handover: drained"
status_pid() { sluicectl --socket "$E2E_TMP/agent.sock" --json status | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
check "takeover: the status socket answers from the new agent" test "$(status_pid)" = "$new"
check "takeover: the pins stay" test -e "$BPF-held/links"
check "takeover: the handover socket is 0600" test "$(stat -c %a "$E2E_TMP/agent.sock.handover")" = 600

# --- options with bad values: exit 2 and say what is expected, before
# touching anything (and were one taken, the agent would stay in our netns,
# cgroup and roots: never the machine's) ---
bad_opt() {
	local want=$1 out rc; shift
	out=$(timeout 10 nsenter --net="/run/netns/$NS" "$AGENT" --node-name n1 --config-dir "$E2E_TMP/cfg" \
		--cgroup "$CG" --no-mesh --metrics off --status-socket "$E2E_TMP/bad.sock" --bpffs-root "$BPF" \
		"$@" 2>&1)
	rc=$?
	check "bad option $*: exit 2" test "$rc" = 2
	expect_contains "bad option $*: says what it expects" "$out" "$want"
}
bad_opt "--drain-seconds: expected 0 to 3600 seconds" --drain-seconds x
bad_opt "--drain-seconds: expected 0 to 3600 seconds" --drain-seconds 3601
bad_opt "--drain-seconds: expected 0 to 3600 seconds" --drain-seconds ""
bad_opt "--http-header-timeout: a duration from 100ms to 3600s" --http-header-timeout 50ms
bad_opt "--http-idle-timeout: a duration from 100ms to 3600s" --http-idle-timeout 2h
bad_opt "--map-max: expected NAME=N" --map-max sl_svc_v1=0
bad_opt "--lease-duration: expected 3 to 3600 seconds" --lease-duration 2
