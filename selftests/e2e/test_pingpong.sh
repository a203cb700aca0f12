#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# sl-pingpong (the benchmarks' check of where the host runs CPU 0 and 1): one
# result line whose round trips are positive and ordered, within its bound;
# bad usage refused with a reason, exit 2.
. "$(dirname "$0")/lib.sh"

if ! command -v sl-pingpong >/dev/null; then
	fail "sl-pingpong built" "no build/sl-pingpong (make tools)"; exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
	skip "round trip between two CPUs" "one CPU"
	exit 0
fi
t0=$(date +%s%N)
out=$(timeout 30 sl-pingpong --cpus 0,1 --rounds 2000 --bursts 5); rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "    $out ($ms ms)"
check "exits 0" test "$rc" = 0
read -r med lo hi < <(sed -n 's/^rtt_ns=\([0-9]*\) min=\([0-9]*\) max=\([0-9]*\)$/\1 \2 \3/p' <<<"$out")
check "one line rtt_ns=N min=N max=N" test -n "$hi"
check "round trips positive and ordered (${lo:-?} <= ${med:-?} <= ${hi:-?})" \
	test "${lo:-0}" -gt 0 -a "${lo:-0}" -le "${med:-0}" -a "${med:-0}" -le "${hi:-0}"
# 6 bursts of at most 1 s each (a partner that never answers): well under 10 s
check "bounded ($ms ms)" test "$ms" -lt 10000

out=$(sl-pingpong --cpus 1,1 2>&1); rc=$?
check "one CPU twice: exit 2" test "$rc" = 2
expect_contains "one CPU twice: says so" "$out" "two different CPUs"
out=$(sl-pingpong --cpus 0 2>&1); rc=$?
check "--cpus without B: exit 2" test "$rc" = 2
expect_contains "--cpus without B: says the form" "$out" "expected A,B"
out=$(sl-pingpong --cpus 0,$(( $(nproc) + 64 )) 2>&1); rc=$?
check "a CPU this machine lacks: exit 2" test "$rc" = 2
expect_contains "a CPU this machine lacks: names it" "$out" "CPU $(( $(nproc) + 64 ))"
out=$(sl-pingpong --rounds 5 2>&1); rc=$?
check "too few rounds: exit 2" test "$rc" = 2
expect_contains "too few rounds: names the option" "$out" "--rounds"
out=$(sl-pingpong --bogus 1 2>&1); rc=$?
check "unknown option: exit 2" test "$rc" = 2
expect_contains "unknown option: names it" "$out" "unknown option --bogus"
