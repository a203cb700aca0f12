#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_netpol.sh - NetworkPolicy truth tables with real traffic (selftests/netpol/run):
# the shared cases (../shared/netpol/cases beside the checkout; reported as
# skipped when absent) and our own (selftests/netpol/cases), and the shared
# ones again with every namespace in the mesh (--mesh). Every probe is
# one check; the last line is "N passed, N failed[, N skipped]".
# Needs root and a build (make). Uses a lab ID of its own (n<5 digits>).
E2E_ID=n$(printf '%05d' $(($$ % 100000)))
. "$(dirname "$0")/lib.sh"

RUN=$E2E_REPO/selftests/netpol/run

need_root netpol

# suite NAME ARGS...: run the harness, show its output (its tally line
# prefixed, so that ours stays the last one), add its tally to ours.
suite() {
	local name=$1 line p f s; shift
	"$RUN" --id "$E2E_ID" "$@" 2>&1 | tee "$E2E_TMP/$name.out" |
		sed -u -E "s/^([0-9]+ passed, [0-9]+ failed.*)/[$name] \1/"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$E2E_TMP/$name.out" | tail -n 1)
	if [[ -z $line ]]; then
		fail "$name" "selftests/netpol/run printed no tally line"
		return
	fi
	p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
	f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
	s=$(grep -oE '[0-9]+ skipped' <<<"$line" | cut -d' ' -f1)
	E2E_PASS=$((E2E_PASS + p)) E2E_FAIL=$((E2E_FAIL + f)) E2E_SKIP=$((E2E_SKIP + ${s:-0}))
}

# --- the lab's external hosts (what the harness relies on), without agents ---
X=$E2E_TMP/ext
mkdir -p "$X/cfg"
cat >"$X/plan" <<'PLAN'
pod x a node-1 10.244.0.10 fd00:244::10 tcp/80,udp/53 app=a
pod y b node-2 10.244.0.20 fd00:244::20 tcp/80 app=b
ext ext-1 node-1 192.0.2.10 - tcp/81,udp/53
ext ext-2 - - 2001:db8::10 tcp/81
PLAN
# xprobe FROM PROTO HOST PORT WANT_SERVER WANT_SAW_IP: one probe, answered by
# WANT_SERVER, which saw the client as WANT_SAW_IP.
xprobe() {
	local out
	out=$(timeout 20 "$E2E_REPO/scripts/lab" --id "$E2E_ID" exec "$1" sl-echo probe "$2" "$3" "$4" --timeout-ms 3000) ||
		{ echo "$out"; return 1; }
	echo "$out"
	[[ $(head -n 1 <<<"$out") =~ ^ok\ pod=$5\ peer=[^\ ]+\ server_saw=\[?${6//./\\.}\]?:[0-9]+$ ]]
}
# gone_all PID...: every one has exited (zombies count), waiting up to 5 s.
gone_all() {
	local p i
	for p in "$@"; do
		for ((i = 0; i < 100; i++)); do
			if [[ ! -e /proc/$p ]] || grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then break; fi
			sleep 0.05
		done
		((i < 100)) || { echo "process $p still running"; return 1; }
	done
}
xlab() { timeout 60 "$E2E_REPO/scripts/lab" --id "$E2E_ID" "$@"; }
if check "ext: lab up with external hosts" env SLUICE_LAB_PLAN="$X/plan" timeout 60 \
	"$E2E_REPO/scripts/lab" --id "$E2E_ID" up --config "$X/cfg" --no-agent; then
	st=$(xlab status 2>&1)
	expect_contains "ext: status lists them" "$st" "192.0.2.10"
	expect_not_contains "ext: all servers running" "$st" "DEAD"
	check "ext: named netns" test -e "/run/netns/sl$E2E_ID-ext-ext-2"
	check "ext: TCP v4 into a pod on another node" xprobe ext-1 tcp 10.244.0.20 80 b 192.0.2.10
	check "ext: UDP v4 into a pod" xprobe ext-1 udp 10.244.0.10 53 a 192.0.2.10
	check "ext: TCP v6 into a pod" xprobe ext-2 tcp fd00:244::20 80 b 2001:db8::10
	check "ext: a pod reaches it (TCP v4)" xprobe x/a tcp 192.0.2.10 81 ext-1 10.244.0.10
	check "ext: a pod reaches it (UDP v4)" xprobe y/b udp 192.0.2.10 53 ext-1 10.244.0.20
	check "ext: a pod reaches it (TCP v6)" xprobe x/a tcp 2001:db8::10 81 ext-2 fd00:244::10
	expect_contains "ext: to a pod via that pod's node's uplink" \
		"$(xlab exec ext-1 ip route get 10.244.0.20 2>&1)" "via 10.100.0.2 dev eth0 src 192.0.2.10"
	expect_not_contains "ext: exec runs outside the lab's cgroups" \
		"$(xlab exec ext-1 cat /proc/self/cgroup 2>&1)" "sluice-lab"
	mapfile -t xpids < <(cat /run/sluice-lab/"$E2E_ID"/ext/*/server.pid)
	check "ext: down" xlab down
	check "ext: no netns left" bash -c "! ls /run/netns | grep -q '^sl$E2E_ID-'"
	check "ext: no state left" test ! -e "/run/sluice-lab/$E2E_ID"
	check "ext: servers gone" gone_all "${xpids[@]}"
fi

suite shared			# the default: ../shared/netpol/cases
suite own "$E2E_REPO/selftests/netpol/cases"
# The same shared tables with every namespace in the mesh: pods' TCP goes
# through HBONE and the agents judge ingress on the real port.
suite shared-mesh --mesh
