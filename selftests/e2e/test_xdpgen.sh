#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# sl-xdpgen (the policy benchmark's frame feed) in namespaces of its own:
# gen --veth-- node --veth-- pod. The frames it makes in the kernel reach the
# node's veth as xdp_frames (GRO on gives that veth the NAPI that takes
# them), and the node forwards every one of them to the pod's veth, IPv4 and IPv6:
# the count matches what sl-xdpgen says it sent, and none dies of its TTL,
# though each page is used again many times (the generator puts the header
# back every run). Paced (--pace), it sends about what the receiver takes.
# Bad usage is refused with a reason.
. "$(dirname "$0")/lib.sh"
need_root xdpgen

G=sl$E2E_ID-xg N=sl$E2E_ID-xn P=sl$E2E_ID-xp
# nsenter, not `ip -n` or `ip netns exec`: those remount / (failing where / is no
# mount point) and /sys
nsx() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }
cleanup() { ip netns del "$G" 2>/dev/null; ip netns del "$N" 2>/dev/null; ip netns del "$P" 2>/dev/null; true; }
trap 'cleanup; e2e_finish' EXIT

if ! command -v sl-xdpgen >/dev/null; then
	fail "sl-xdpgen built" "no build/sl-xdpgen (make tools)"; exit 1
fi
out=$(sl-xdpgen --dev lo 2>&1); rc=$?
check "no destination: usage, exit 2" test "$rc" = 2
expect_contains "usage names the options" "$out" "usage: sl-xdpgen"
out=$(sl-xdpgen --dev nosuchdev0 --dst-mac 02:00:00:00:00:01 --src 10.0.0.1 --dst 10.0.0.2 --port 9 --seconds 1 2>&1); rc=$?
check "unknown interface: exit 2" test "$rc" = 2
expect_contains "unknown interface: says which" "$out" "no interface 'nosuchdev0'"
out=$(sl-xdpgen --dev lo --dst-mac 02:00:00:00:00:01 --src 10.0.0.1 --dst 10.0.0.2 --port 9 --seconds 1 --batch 257 2>&1); rc=$?
check "batch over the kernel's 256: exit 2" test "$rc" = 2
expect_contains "batch over 256: says which option" "$out" "--batch"
out=$(sl-xdpgen --dev lo --dst-mac 02:00:00:00:00:01 --src 10.0.0.1 --dst 10.0.0.2 --port 9 --seconds 1 --pace 0 2>&1); rc=$?
check "pace under 1%: exit 2" test "$rc" = 2
expect_contains "pace under 1%: says which option" "$out" "--pace"
out=$(sl-xdpgen --dev lo --dst-mac 02:00:00:00:00:01 --src 10.0.0.1 --dst 10.0.0.2 --port 9 --seconds 1 --pace 1 2>&1); rc=$?
check "pace on a device without xdp_xmit_errors (lo): exit 2" test "$rc" = 2
expect_contains "pace on lo: says why" "$out" "no ethtool statistics on lo"
out=$(sl-xdpgen --dev lo --dst-mac 02:00:00:00:00:01 --src 10.0.0.1 --dst fd00::2 --port 9 --seconds 1 2>&1); rc=$?
check "mixed families: exit 2" test "$rc" = 2
expect_contains "mixed families: says so" "$out" "not of one family"

cleanup
ip netns add "$G" && ip netns add "$N" && ip netns add "$P" || { fail "namespaces"; exit 1; }
nsx "$G" ip link add g0 type veth peer name e0 netns "$N"
nsx "$N" ip link add p0 type veth peer name eth0 netns "$P"
nsx "$G" ip link set lo up
nsx "$G" ip link set g0 up
nsx "$N" ip link set lo up
nsx "$N" ip addr add 10.76.0.2/24 dev e0
nsx "$N" ip addr add fd00:76::2/64 dev e0 nodad
nsx "$N" ip link set e0 up
nsx "$N" ip link set p0 up
nsx "$N" ip route add 10.77.0.10/32 dev p0
nsx "$N" ip route add fd00:77::10/128 dev p0
nsx "$N" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv4.conf.all.rp_filter=0 \
	net.ipv4.conf.e0.rp_filter=0
nsx "$N" ethtool -K e0 gro on >/dev/null
nsx "$P" ip link set lo up
nsx "$P" ip addr add 10.77.0.10/32 dev eth0
nsx "$P" ip addr add fd00:77::10/128 dev eth0 nodad
nsx "$P" ip link set eth0 up
mac=$(nsx "$N" ip -o link show e0 | awk '{for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1)}')
cpu=$(( $(nproc) - 1 ))

# snmp FIELD: the node's counter (Ip: ForwDatagrams, InHdrErrors; Ip6OutForwDatagrams ...)
snmp() {
	case $1 in
	Ip6*) nsx "$N" awk -v f="$1" '$1 == f {print $2}' /proc/net/snmp6 ;;
	*) nsx "$N" awk -v f="$1" '$1 == "Ip:" && !h {for (i = 2; i <= NF; i++) c[$i] = i; h = 1; next}
		$1 == "Ip:" {print $(c[f])}' /proc/net/snmp ;;
	esac
}
# to_pod: packets the node's veth to the pod sent on (or dropped: the pod's
# backlog is a socket flood's, not the frames' path)
to_pod() { nsx "$N" ip -s -j link show p0 | /usr/bin/python3 -c 'import json,sys; t = json.load(sys.stdin)[0]["stats64"]["tx"]; print(t["packets"] + t["dropped"])'; }

# The node knows the pod's address for good: no frame waits on a neighbour lookup.
pmac=$(nsx "$P" ip -o link show eth0 | awk '{for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1)}')
nsx "$N" ip neigh replace 10.77.0.10 lladdr "$pmac" dev p0 nud permanent
nsx "$N" ip neigh replace fd00:77::10 lladdr "$pmac" dev p0 nud permanent

for fam in 4 6; do
	if [ $fam = 4 ]; then src=10.76.0.1 dst=10.77.0.10 fwd=ForwDatagrams; else src=fd00:76::1 dst=fd00:77::10 fwd=Ip6OutForwDatagrams; fi
	f0=$(snmp $fwd) h0=$(snmp InHdrErrors) r0=$(to_pod)
	out=$(nsx "$G" timeout 20 sl-xdpgen --dev g0 --dst-mac "$mac" --src $src --dst $dst --port 9 \
		--seconds 0.5 --cpu $cpu 2>&1); rc=$?
	sent=$(sed -n 's/^sent=\([0-9]*\) .*/\1/p' <<<"$out")
	check "IPv$fam: exits 0 with a result line" test "$rc" = 0 -a -n "$sent"
	echo "    IPv$fam: $out"
	check "IPv$fam: more frames than a page is used again (64 rounds of TTL)" test "${sent:-0}" -gt 100000
	f1=$(snmp $fwd) h1=$(snmp InHdrErrors)
	check "IPv$fam: the node forwarded every frame sent ($((f1 - f0)) of ${sent:-0})" test "$((f1 - f0))" = "${sent:-x}"
	[ $fam = 4 ] && check "IPv4: no header errors (TTL put back each run)" test "$((h1 - h0))" = 0
	check "IPv$fam: on to the pod's veth ($(( $(to_pod) - r0 )))" test "$(( $(to_pod) - r0 ))" -ge "${sent:-1}"
done

# The bench's frame feed: the node's veth polled by a NAPI thread (threaded
# NAPI) pinned to another CPU than the generator's, as a NIC queue's work runs
# on its own core. Every frame sent is forwarded or, when the thread falls
# behind, lost at the veth's ring and counted there: none unaccounted for.
if [ "$(nproc)" -lt 2 ]; then
	skip "threaded NAPI" "one CPU: the generator and the thread cannot be apart"
	exit 0
fi
napis() { grep -l '^napi/e0-' /proc/[0-9]*/comm 2>/dev/null | sed 's,^/proc/\([0-9]*\)/comm$,\1,' | sort; }
before=$(napis)
nsx "$N" unshare -m sh -c 'mount -t sysfs sysfs /sys && echo 1 >/sys/class/net/e0/threaded'
thread=$(comm -13 <(echo "$before") <(napis) | head -n 1)
check "threaded NAPI: e0 has a NAPI thread" test -n "$thread"
if [ -n "$thread" ]; then
	taskset -p -c 1 "$thread" >/dev/null
	ticks() { awk '{print $14 + $15}' "/proc/$thread/stat"; }
	xmit_lost() { nsx "$G" ethtool -S g0 | awk '/tx_queue_0_xdp_xmit_errors:/ {print $2}'; }
	f0=$(snmp ForwDatagrams) l0=$(xmit_lost) t0=$(ticks)
	out=$(nsx "$G" timeout 20 sl-xdpgen --dev g0 --dst-mac "$mac" --src 10.76.0.1 --dst 10.77.0.10 --port 9 \
		--seconds 0.5 --cpu 0 2>&1)
	sent=$(sed -n 's/^sent=\([0-9]*\) .*/\1/p' <<<"$out")
	echo "    threaded: $out"
	f1=$(snmp ForwDatagrams) l1=$(xmit_lost) t1=$(ticks)
	check "threaded NAPI: the thread on CPU 1 did the receive work ($((t1 - t0)) ticks)" test "$((t1 - t0))" -gt 0
	check "threaded NAPI: forwarded $((f1 - f0)) + lost at the ring $((l1 - l0)) = sent ${sent:-?}" \
		test "$((f1 - f0 + l1 - l0))" = "${sent:-x}"
	ulost=$((l1 - l0)) usent=${sent:-0}
	# --pace 1: the generator lets out about what the thread takes, and
	# drops the rest itself: few frames lost at the ring, the same accounts
	f0=$(snmp ForwDatagrams) l0=$(xmit_lost)
	out=$(nsx "$G" timeout 20 sl-xdpgen --dev g0 --dst-mac "$mac" --src 10.76.0.1 --dst 10.77.0.10 --port 9 \
		--seconds 2 --cpu 0 --pace 1 2>&1); rc=$?
	sent=$(sed -n 's/^sent=\([0-9]*\) .*/\1/p' <<<"$out")
	echo "    paced: $out"
	f1=$(snmp ForwDatagrams) l1=$(xmit_lost)
	check "paced: exits 0 with frames sent" test "$rc" = 0 -a "${sent:-0}" -gt 0
	check "paced: forwarded $((f1 - f0)) + lost at the ring $((l1 - l0)) = sent ${sent:-?}" \
		test "$((f1 - f0 + l1 - l0))" = "${sent:-x}"
	# (unpaced above, the ring refuses about 90% here; paced, 5-10%, most
	# of it in the first unpaced call and the receiver's first 0.2 s)
	check "paced: under half the share lost unpaced ($((l1 - l0)) of ${sent:-?}; unpaced $ulost of $usent)" \
		test "$(( (l1 - l0) * usent * 2 ))" -lt "$(( ulost * ${sent:-0} ))"
fi
