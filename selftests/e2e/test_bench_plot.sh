#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/bench-plot on small fixture raw files (the formats scripts/bench
# writes) in a temp dir: each figure is written and is a PNG. No lab, no root;
# a few seconds (two gnuplot runs).
source "$(dirname "$0")/lib.sh"

if ! command -v gnuplot >/dev/null; then
	skip bench-plot "no gnuplot (scripts/deps installs gnuplot-nox)"
	exit 0
fi
in=$E2E_TMP/in out=$E2E_TMP/out
mkdir -p "$in" "$out"
cat >"$in/lb.raw" <<'R'
1 direct 1 15000
1 sluice 1 14000
1 iptables-nft 1 12000
1 iptables-legacy 1 13000
1 direct 2 16000
1 sluice 2 15500
1 iptables-nft 2 11000
1 iptables-legacy 2 12500
10000 direct 1 15200
10000 sluice 1 15000
10000 iptables-nft 1 6200
10000 iptables-legacy 1 7100
R
cat >"$in/lb.md" <<'R'
Machine: 2 vCPU, 4 GiB, kernel 6.1.0-test, fixture
Versions: sluice fixture, wrk x, iptables y
R
cat >"$in/scale.raw" <<'R'
cfg services 1 1 120
conn 1 direct 1 15000
conn 1 sluice 1 14800
cfg services 1000 1 300
conn 1000 direct 1 15100
conn 1000 sluice 1 14900
lat 1 plain 1 0.2 0.5 0 100 10 1
lat 1 mesh 1 0.6 1.5 0 100 10 1
lat 1000 plain 1 0.4 2.0 0 2000 500 1000
lat 1000 mesh 1 0.9 4.0 0 2000 500 1000
cfg pods 100 1 150
mem pods 100 1 9800 9500
cfg pods 1000 1 400
mem pods 1000 1 11000 9500
cfg routes 100 1 140
mem routes 100 1 9900 9500
R

plot_out=$(timeout 20 "$E2E_REPO/scripts/bench-plot" --in "$in" --out "$out" 2>&1)
rc=$?
check "bench-plot exits 0" test "$rc" = 0
# A PNG starts with \x89PNG\r\n\x1a\n.
is_png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
for n in lb scale; do
	check "bench-$n.png written as a PNG" is_png "$out/bench-$n.png"
done
expect_contains "bench-plot names what it wrote" "$plot_out" "$out/bench-lb.png"
check "no figure without a raw file (policy)" test ! -e "$out/bench-policy.png"
if timeout 20 "$E2E_REPO/scripts/bench-plot" --in "$in" --out "$out" sockmap >/dev/null 2>&1; then
	fail "a named bench without a raw file fails"
else
	pass "a named bench without a raw file fails"
fi
# gnuplot did not warn (a warning here means a column or a series is off).
expect_not_contains "gnuplot printed no warning" "$plot_out" "warning"
