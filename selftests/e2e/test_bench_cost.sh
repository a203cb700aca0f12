#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A tiny run of `scripts/bench cost` (issue 8: agent CPU per GB and per 1,000
# requests, memory per 1,000 connections, BPF memory per 1,000 Services), so
# that the bench does not rot: one round, 20 MB, 300 short connections, 100
# held, 10 and 100 Services, in a lab of this test's ID, into a temp dir (not
# build/bench). Checks that every figure was measured and that the BPF
# entries are the Services installed; no timing or size is judged. About 15 s.
. "$(dirname "$0")/lib.sh"
need_root bench-cost
for t in wrk haproxy bpftool; do
	command -v "$t" >/dev/null || { skip bench-cost "no $t (scripts/deps)"; exit 0; }
done

BENCH_OUT=$E2E_TMP/bench BENCH_COST_ID=$E2E_ID BENCH_ROUNDS=1 BENCH_SECONDS=1 BENCH_COST_BYTES=20000000 \
	BENCH_COST_REQUESTS=300 BENCH_COST_CONNS=100 BENCH_COST_HOLD=1 BENCH_COST_SERVICES="10 100" \
	timeout 120 "$E2E_REPO/scripts/bench" cost >"$E2E_TMP/cost.out" 2>&1
rc=$?
check "scripts/bench cost exits 0" test "$rc" = 0
[ "$rc" = 0 ] || tail -n 30 "$E2E_TMP/cost.out" | sed 's/^/    /'
md=$(cat "$E2E_TMP/bench/cost.md" 2>/dev/null)
row() { grep -F "| $1" <<<"$md" | head -n 1; }
num='[0-9][0-9.]* \([0-9.]*-[0-9.]*\)'
measured() {	# measured NAME ROW : the row's first figure is a number with its range
	if grep -qE "^\| [^|]* \| $num \|" <<<"$2"; then pass "$1"; else fail "$1" "no figure in: '$2'"; fi
}
measured "agent CPU per GB, cross-node" "$(row 'per GB, cross-node bulk')"
measured "agent CPU per GB, same node" "$(row 'per GB, same-node bulk')"
measured "agent CPU per 1,000 keep-alive requests" "$(row 'per 1,000 keep-alive requests')"
measured "agent CPU per 1,000 short connections" "$(row 'per 1,000 short connections')"
expect_not_contains "haproxy's CPU measured too" "$(row 'per GB, cross-node bulk')$(row 'per 1,000 keep-alive')$(row 'per 1,000 short')" "failed"
# | kind | open | node-1 idle -> held | node-2 idle -> held | node-1 per 1,000 | node-2 per 1,000 |
for k in active idle; do
	r=$(row "$k |")
	expect_contains "$k: all 100 connections held open" "$r" "| $k | 100 (100-100) |"
	if grep -qE "\| $num \| $num \|\$" <<<"$r"; then pass "$k: agent memory per 1,000 connections, both nodes"
	else fail "$k: agent memory per 1,000 connections, both nodes" "no figures in: '$r'"; fi
done
# | Services | all maps | svc memlock | svc entries | svc bytes | be memlock | be entries | be bytes |
expect_contains "BPF: 100 Services, 100 frontends and 100 backend slots" "$(row '100 |')" "| 100 | "
check "BPF: the entry counts are the Services'" awk -F'|' '$2 + 0 == 100 && $5 + 0 == 100 && $8 + 0 == 100 {ok = 1} END {exit !ok}' <<<"$md"
expect_contains "BPF memory per 1,000 Services reported" "$md" "Per 1,000 Services (10 -> 100): all maps"
check "the lab is down" test ! -e "/run/sluice-lab/$E2E_ID/lab.env"
