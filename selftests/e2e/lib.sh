# SPDX-License-Identifier: Apache-2.0
# lib.sh - shared by the lab tests (selftests/e2e/test_*.sh). Source it, then:
#   e2e_lab_up [lab up args...]   a lab of this test's own ID, torn down on exit
#   check NAME CMD...             one counted check (output shown on failure)
#   expect_contains NAME HAYSTACK NEEDLE
#   wait_until SECONDS CMD...     poll (10 ms steps) until CMD succeeds
#   lab ARGS...                   scripts/lab with this test's ID
# The last line printed is "N passed, N failed[, N skipped]".
set -uo pipefail

E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$E2E_REPO/build:$PATH"
E2E_PASS=0 E2E_FAIL=0 E2E_SKIP=0
# A short ID of our own ([a-z0-9]{1,6}), so a user's lab (ID 0) and other test
# runs are never touched.
E2E_ID=${E2E_ID:-e$(printf '%05d' $(( $$ % 100000 )))}
E2E_TMP=$(mktemp -d /tmp/sluice-e2e.XXXXXX)

lab() { "$E2E_REPO/scripts/lab" --id "$E2E_ID" "$@"; }

e2e_finish() {
	local rc=$?
	lab down >/dev/null 2>&1 || true
	rm -rf "$E2E_TMP"
	if [ "$E2E_SKIP" -gt 0 ]; then
		echo "$E2E_PASS passed, $E2E_FAIL failed, $E2E_SKIP skipped"
	else
		echo "$E2E_PASS passed, $E2E_FAIL failed"
	fi
	[ "$E2E_FAIL" = 0 ] && [ "$rc" = 0 ] || exit 1
}
trap e2e_finish EXIT
trap 'exit 130' INT TERM

pass() { E2E_PASS=$((E2E_PASS + 1)); echo "[$1] PASS"; }
fail() { E2E_FAIL=$((E2E_FAIL + 1)); echo "[$1] FAIL${2:+: $2}"; }
skip() { E2E_SKIP=$((E2E_SKIP + 1)); echo "[$1] SKIP: $2"; }

# check NAME CMD... : CMD must succeed.
check() {
	local name=$1 out; shift
	if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; echo "$out" | tail -n 20 | sed 's/^/    /'; fi
}

# expect_contains NAME TEXT NEEDLE
expect_contains() {
	if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "'$3' not found in:"; echo "$2" | tail -n 20 | sed 's/^/    /'; fi
}

expect_not_contains() {
	if grep -qF -- "$3" <<<"$2"; then fail "$1" "'$3' found in:"; echo "$2" | tail -n 20 | sed 's/^/    /'; else pass "$1"; fi
}

# wait_until SECONDS CMD... : true once CMD succeeds, false after the deadline.
wait_until() {
	local limit=$1; shift
	local end=$(( $(date +%s%N) + limit * 1000000000 ))
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.01
	done
}

need_root() {
	if [ "$(id -u)" != 0 ]; then skip "${1:-e2e}" "needs root"; exit 0; fi
}

# CG2: a cgroup v2 mount, the machine's or, when it has none, one of our own
# under $E2E_TMP (CG2_MOUNTED=1). e2e_cgroup2 returns 1 when none can be had.
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG2_MOUNTED=
e2e_cgroup2() {
	[ -n "$CG2" ] && return 0
	CG2=$E2E_TMP/cgroup2
	mkdir -p "$CG2" && mount -t cgroup2 none "$CG2" && CG2_MOUNTED=1
}
# e2e_cgroup2_release NAME : remove our cgroup $CG2/NAME, unmount our own mount.
e2e_cgroup2_release() {
	[ -n "$CG2" ] && rmdir "$CG2/$1" 2>/dev/null
	[ -n "$CG2_MOUNTED" ] && umount "$CG2" && rmdir "$CG2"
}

e2e_lab_up() {
	need_root lab
	if ! lab up "$@" >"$E2E_TMP/lab-up.log" 2>&1; then
		fail "lab up" "$(tail -n 5 "$E2E_TMP/lab-up.log")"
		exit 1
	fi
	eval "$(lab env)"
}

# ctl NODE ARGS... : sluicectl against that node's agent.
ctl() {
	local node=$1; shift
	sluicectl --socket "/run/sluice-lab/$E2E_ID/$node/agent.sock" "$@"
}

# probe_summary POD ARGS... : the summary line of sl-echo probe.
probe_summary() {
	local pod=$1; shift
	lab exec "$pod" sl-echo probe "$@" 2>&1 | grep '^summary' || true
}

# ---- manifests the lab tests write (YAML on stdout)

# yaml_ambient_default : namespace default, enrolled (ambient).
yaml_ambient_default() {
	cat <<'Y'
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels: {sluice.io/dataplane-mode: ambient}
Y
}
# yaml_slice NAME SERVICE FAMILY ADDR POD PORT : an EndpointSlice of one endpoint.
yaml_slice() {
	cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $1, namespace: default, labels: {kubernetes.io/service-name: $2}}
addressType: $3
ports: [{name: p, port: $6, protocol: TCP}]
endpoints:
- addresses: ["$4"]
  targetRef: {kind: Pod, name: $5, namespace: default}
Y
}
# yaml_svc NAME VIP4 VIP6 PORT TARGET [APP_PROTOCOL PORT_NAME] : a dual-stack
# Service in default (its port named p, else PORT_NAME).
yaml_svc() {
	cat <<Y
---
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: default}
spec:
  clusterIPs: ["$2", "$3"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: ${7:-p}, port: $4, targetPort: $5, protocol: TCP${6:+, appProtocol: $6}}]
Y
}
# yaml_app_svc NAME VIP4 VIP6 TARGET_PORT APP_PROTOCOL POD IP4 IP6 : a
# dual-stack Service in default (port 80 "http", appProtocol as given) and
# its two EndpointSlices, one pod each.
yaml_app_svc() {
	yaml_svc "$1" "$2" "$3" 80 "$4" "$5" http
	for f in 4 6; do
		cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $1-$f, namespace: default, labels: {kubernetes.io/service-name: $1}}
addressType: IPv$f
ports: [{name: http, port: $4, protocol: TCP}]
endpoints: [{addresses: ["$([ $f = 4 ] && echo "$7" || echo "$8")"], targetRef: {kind: Pod, name: $6, namespace: default}}]
Y
	done
}

# Servers a test starts in the background (lab exec ... &; E2E_SRV_PIDS+=($!)),
# ended by e2e_servers_stop: ours only, by pid.
E2E_SRV_PIDS=()
e2e_servers_stop() {
	local p
	for p in "${E2E_SRV_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${E2E_SRV_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	E2E_SRV_PIDS=()
}
