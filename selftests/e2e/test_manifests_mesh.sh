#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# manifests/examples-mesh in the lab, with real traffic: the namespace's pods
# are captured, the canary HTTPRoute sends x-canary requests to web-v2 and
# splits the rest 90/10, the L7 AuthorizationPolicy refuses /admin with 403,
# and the L4 one lets only the client's service account reach the web pods
# (web-v2's own identity is refused). The examples are what the docs show;
# this keeps them working. Prints "[name] PASS|FAIL"; the last line is
# "N passed, N failed".
. "$(dirname "$0")/lib.sh"

cfg=$E2E_TMP/config
mkdir -p "$cfg"
cp "$E2E_REPO"/manifests/examples-mesh/*.yaml "$cfg"/
e2e_lab_up --config "$cfg"

C=shop/client VIP=10.96.1.10
captured() {
	ctl node-1 workloads | grep -qE '^shop +client .* captured' &&
		ctl node-1 workloads | grep -qE '^shop +web-v1-a .* captured' &&
		ctl node-2 workloads | grep -qE '^shop +web-v1-b .* captured' &&
		ctl node-2 workloads | grep -qE '^shop +web-v2 .* captured'
}
check "the namespace's label enrols every pod (captured on both nodes)" wait_until 15 captured
routed() { ctl node-1 routes | grep -E 'web-canary' | grep -qE 'True +True'; }
check "sluicectl routes: web-canary attached to Service shop/web, accepted and resolved" wait_until 10 routed
expect_contains "route-check: x-canary: yes goes to web-v2" \
	"$(ctl node-1 route-check shop/web GET / -H x-canary:yes --from shop)" "forward to shop/web-v2:80"

out=$(for i in $(seq 1 5); do echo "url = \"http://$VIP/c$i\""; done |
	lab exec "$C" curl -sS -m 10 -H "x-canary: yes" -K - -w '\n')
check "x-canary: yes: 5 of 5 to web-v2" test "$(grep -c '"pod": "web-v2"' <<<"$out")" -eq 5

out=$(for i in $(seq 1 100); do echo "url = \"http://$VIP/s$i\""; done | lab exec "$C" curl -sS -m 20 -K - -w '\n')
v1=$(grep -cE '"pod": "web-v1-[ab]"' <<<"$out") v2=$(grep -c '"pod": "web-v2"' <<<"$out")
# 90/10 over 100 requests: web-v2 gets none with probability 0.9^100 (3e-5).
check "90/10 split: 100 answered, most by web-v1, some by web-v2 ($v1/$v2)" \
	test $((v1 + v2)) -eq 100 -a "$v1" -ge 75 -a "$v2" -ge 1

code=$(lab exec "$C" curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$VIP/admin/x")
check "L7 AuthorizationPolicy web-no-admin: /admin/x refused (403, got $code)" test "$code" = 403
code=$(lab exec "$C" curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$VIP/shop")
check "the client's other requests pass (200, got $code)" test "$code" = 200

# web-v2 (service account web) to web-v1 (no route: L4 HBONE to the pods):
# web-from-client allows only sa/client.
out=$(lab exec shop/web-v2 sl-echo probe tcp 10.96.1.11 80 --count 3 --timeout-ms 2000 2>&1 | grep '^summary' || true)
expect_contains "L4 AuthorizationPolicy web-from-client: another identity is refused" "$out" "ok=0 err=3"
denied_web() { cat /run/sluice-lab/"$E2E_ID"/node-*/agent.log | grep 'policy: deny' |
	grep 'peer spiffe://cluster.local/ns/shop/sa/web)' | grep -q 'shop/web-from-client'; }
check "... refused for its identity (sa/web), by web-from-client (agent log)" wait_until 5 denied_web
out=$(probe_summary "$C" tcp 10.96.1.11 80 --count 3)
expect_contains "L4 AuthorizationPolicy web-from-client: the client is let through" "$out" "ok=3 err=0"
expect_contains "sluicectl policies lists both policies" "$(ctl node-2 policies)" "web-from-client"
