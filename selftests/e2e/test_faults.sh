#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_faults.sh - faults with traffic flowing, in the lab (IPv4 and IPv6):
#   1. node-1's agent SIGKILLed under a stream to a ClusterIP: the kernel keeps
#      balancing and enforcing connect-time policy (XDP too) while it is gone; the
#      restarted agent reuses the pins, the mesh works again, nothing leaks;
#   2. node-2's agent restarted while node-1 sends to it through the mesh;
#   3. a backend removed from its Service mid-stream (kernel LB and the mesh);
#   4. a config file replaced with garbage (broken YAML, binary, a well-formed
#      invalid object): clear error, last good config kept, recovery;
#   5. the service map filled past its capacity (shrunk with --map-max);
#   6. CA rotation (a trust bundle of old + new CA) and workload certificates
#      expiring under live connections (--cert-ttl 10);
#   7. the status socket flooded while traffic flows.
# docs/reliability.md has the table. Prints "[name] PASS|FAIL"; the last line
# is "N passed, N failed".
. "$(dirname "$0")/lib.sh"

cfg=$E2E_TMP/config
mkdir -p "$cfg"
PY=/usr/bin/python3

# pod NAME NS NODE N SA [LABELS] : a Pod with 10.244.<node>.<N> and fd00:244:<node>::<N>
pod() {
	local name=$1 ns=$2 node=$3 n=$4 sa=$5 labels=${6:-}
	cat <<Y
---
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $ns
  labels: {app: $name${labels:+, $labels}}
spec:
  nodeName: node-$node
  serviceAccountName: $sa
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}]
status:
  podIPs: [{ip: 10.244.$node.$n}, {ip: "fd00:244:$node::$n"}]
Y
}

# slices SVC NS "N.M ..." : IPv4 and IPv6 EndpointSlices of SVC for pods 10.244.N.M
slices() {
	local svc=$1 ns=$2 fam e
	for fam in 4 6; do
		cat <<Y
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $svc-v$fam, namespace: $ns, labels: {kubernetes.io/service-name: $svc}}
addressType: IPv$fam
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
Y
		for e in $3; do
			if [[ $fam == 4 ]]; then
				echo "- {addresses: [10.244.$e], nodeName: node-${e%.*}, conditions: {ready: true}}"
			else
				echo "- {addresses: [\"fd00:244:${e%.*}::${e#*.}\"], nodeName: node-${e%.*}, conditions: {ready: true}}"
			fi
		done
	done
}

# service NAME NS VIP4 VIP6 SELECTOR ENDPOINTS
service() {
	cat <<Y
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: $2}
spec:
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [$3, "$4"]
  selector: {$5}
  ports: [{name: http, port: 80, targetPort: http}]
Y
	slices "$1" "$2" "$6"
}

cat >"$cfg/00-ns.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {kubernetes.io/metadata.name: mesh, sluice.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain, labels: {kubernetes.io/metadata.name: plain}}
Y
{
	pod client mesh 1 10 client
	pod server-1 mesh 1 11 server "tier: server"
	pod server-2 mesh 2 11 server "tier: server"
	pod lb-client plain 1 20 default
	pod web-1 plain 1 21 default "role: web"
	pod web-2 plain 2 21 default "role: web"
	pod web-3 plain 2 22 default "role: web"
	pod outside plain 2 23 default
} >"$cfg/10-pods.yaml"
# The mesh client may only talk to its own namespace; the servers only hear it.
cat >"$cfg/20-policy.yaml" <<'Y'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: mesh}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: mesh}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-ingress, namespace: mesh}
spec:
  podSelector: {matchLabels: {tier: server}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: mesh}}}]
Y
service server mesh 10.96.1.10 fd00:96::1:10 "tier: server" "1.11 2.11" >"$cfg/30-server.yaml"
web_yaml() { service web plain 10.96.2.10 fd00:96::2:10 "role: web" "$1"; }
web_yaml "1.21 2.21 2.22" >"$cfg/31-web.yaml"
cp "$cfg/31-web.yaml" "$E2E_TMP/31-web.good"

export SLUICE_LAB_XDP=1	# edge on the uplinks: ingress policy from other nodes is pinned XDP
# Small service maps, so that check 5 fills them: 4 frontends and 10 slots are
# in use before it.
MAPMAX="--map-max sl_svc_v1=6 --map-max sl_be_v1=16"
SLUICE_LAB_AGENT_ARGS=$MAPMAX e2e_lab_up --config "$cfg"
STATE=/run/sluice-lab/$E2E_ID
ROOT=/sys/fs/bpf/sluice-lab-$E2E_ID
S1_4=10.244.1.11 S2_4=10.244.2.11 S2_6=fd00:244:2::11
OUT4=10.244.2.23 OUT6=fd00:244:2::23
VIP4=10.96.2.10 VIP6=fd00:96::2:10 MVIP4=10.96.1.10 MVIP6=fd00:96::1:10
BG_PIDS=()

# bg CMD... : run CMD in the background, its pid in $BG and BG_PIDS (which the
# EXIT trap stops); bg_done PID... waits for them and forgets every pid.
bg() { "$@" & BG=$!; BG_PIDS+=($BG); }
bg_done() { wait "$@"; local rc=$?; BG_PIDS=(); return $rc; }
bg_stop() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	BG_PIDS=()
}
# lib.sh's trap tears the lab down; stop our own processes before it.
trap 'rc=$?; bg_stop; (exit $rc); e2e_finish' EXIT

SOCK1=$STATE/node-1/agent.sock
agent_pid() { cat "$STATE/$1/agent.pid"; }
jstatus() { ctl "$1" --json status | $PY -c "import json,sys; d=json.load(sys.stdin); print($2)"; }
captured() { ctl "$1" workloads | grep -qE "^$2 .* captured"; }
both_captured() { captured node-1 'mesh +client' && captured node-2 'mesh +server-2'; }
stat_of() { ctl "$1" --json connections | $PY -c "import json,sys; print(json.load(sys.stdin)['stats']['$2'])"; }
new_log() { tail -c +"$(($2 + 1))" "$STATE/$1/agent.log"; }	# new_log NODE OFFSET
# put FILE < content : replace a config file at once (rename), so that the
# agent never reads half of it.
put() { cat >"$E2E_TMP/put.tmp" && mv "$E2E_TMP/put.tmp" "$1"; }
log_size() { stat -c %s "$STATE/$1/agent.log"; }

check "setup: both agents capture their mesh pods" wait_until 10 both_captured
out=$(probe_summary lb-client tcp $VIP4 80 --count 30)
expect_contains "setup: ipv4 ClusterIP balanced over 3 backends" "$out" "ok=30 err=0 pods=web-1:"
for fam in 4 6; do
	eval "s2=\$S2_$fam"
	expect_contains "setup: ipv$fam cross-node through HBONE" \
		"$(probe_summary mesh/client tcp "$s2" 8080 --count 5)" "ok=5 err=0 pods=server-2:5"
done

# ---------------------------------------------------------------- 1. SIGKILL
# What the agent owns in the kernel: pins, attachments, the maps its programs
# use, its own BPF fds; and, to compare, the ids of programs and maps.
cat >"$E2E_TMP/owned.py" <<'P'
import json, os, subprocess, sys
def bt(*a):
    return json.loads(subprocess.run(["bpftool", "-j", *a], capture_output=True, text=True, check=True).stdout or "null")
if sys.argv[1] == "alive":	# alive PROG_IDS MAP_IDS: which of them still exist
    progs = {p["id"] for p in bt("prog", "show")}
    maps = {m["id"] for m in bt("map", "show")}
    want_p = {int(x) for x in sys.argv[2].split(",") if x}
    want_m = {int(x) for x in sys.argv[3].split(",") if x}
    print(f"progs={len(want_p & progs)} maps={len(want_m & maps)}")
    sys.exit(0)
root, pid, cgs = sys.argv[1], sys.argv[2], sys.argv[3:]
att = [p for cg in cgs for p in (bt("cgroup", "show", cg) or [])]
ids = {p["id"] for p in att}
progs = {p["id"]: p for p in bt("prog", "show")}
maps = set()
for i in ids:
    maps.update(progs.get(i, {}).get("map_ids", []))
pins = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
pinned = {m: bt("map", "show", "pinned", os.path.join(root, m))["id"] for m in sorted(p for p in pins if p.startswith("sl_"))}
fds = {}
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        t = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if t.startswith("anon_inode:bpf"):
        k = t.split(":")[1].replace("_", "-")	# bpf_link (created) and bpf-link (opened from a pin)
        fds[k] = fds.get(k, 0) + 1
print(f"pins={len(pins)} {','.join(pins)}")
print(f"attachments={len(att)} programs={len(ids)} maps={len(maps)}")
print("pinned=" + ",".join(f"{k}:{v}" for k, v in pinned.items()))
print("agent_fds=" + ",".join(f"{k}:{v}" for k, v in sorted(fds.items())))
print("ids " + ",".join(map(str, sorted(ids))) + " " + ",".join(map(str, sorted(maps - set(pinned.values())))))
P
eval "$(lab env)"
owned() { $PY "$E2E_TMP/owned.py" "$ROOT/node-1" "$(agent_pid node-1)" "$SLUICE_LAB_NODE1_CGROUP" "$SLUICE_LAB_NODE1_AGENT_CGROUP"; }
before=$(owned)

bg lab exec lb-client sl-echo stream tcp $VIP4 80 --duration-ms 5000 --interval-ms 20 >"$E2E_TMP/stream1" 2>&1
spid=$BG
sleep 0.3	# the stream is going (no check depends on this)
pid1=$(agent_pid node-1)
kill -KILL "$pid1"
check "SIGKILL: node-1's agent is gone" wait_until 5 sh -c "! kill -0 $pid1"
# While it is gone: the pinned programs balance and enforce.
sum=$(probe_summary lb-client tcp $VIP6 80 --count 20)
expect_contains "agent killed: ipv6 ClusterIP still balanced in the kernel" "$sum" "ok=20 err=0"
check "agent killed: more than one ipv6 backend" test "$(tr ',' '\n' <<<"${sum#*pods=}" | wc -l)" -ge 2
for dst in $OUT4 $OUT6; do
	expect_contains "agent killed: egress policy still fails connect() to $dst with EPERM" \
		"$(lab exec mesh/client sl-echo probe tcp "$dst" 8080 --timeout-ms 1000 2>&1)" "err EPERM"
done
out=$(lab exec outside sl-echo probe tcp $S1_4 8080 --timeout-ms 500 2>&1)
expect_contains "agent killed: ingress policy from node-2 still dropped by XDP on node-1" "$out" "err ETIMEDOUT"
expect_contains "agent killed: control: node-2 -> an unpoliced pod of node-1 works" \
	"$(probe_summary outside tcp 10.244.1.21 8080)" "ok=1 err=0"
expect_contains "agent killed: enrolled pods fail open to the mesh Service" \
	"$(probe_summary mesh/client tcp $MVIP4 80 --count 10)" "ok=10 err=0"
check "agent restarted after SIGKILL" lab agent-start node-1
bg_done $spid; src=$?
out=$(cat "$E2E_TMP/stream1")
expect_contains "SIGKILL + restart: the stream to the ClusterIP saw no error" "$out" "long_errors=0"
expect_contains "SIGKILL + restart: every new connection succeeded" "$out" "new_err=0"
check "SIGKILL + restart: stream exit status 0" test "$src" = 0
expect_contains "restarted agent reused the pinned maps" "$(ctl node-1 status)" "reused"
check "restarted agent: mesh pods captured again" wait_until 10 both_captured
hb=$(stat_of node-1 hbone_clients_total)
for fam in 4 6; do
	eval "s2=\$S2_$fam"
	expect_contains "restarted agent: ipv$fam through HBONE to node-2 again" \
		"$(probe_summary mesh/client tcp "$s2" 8080 --count 5)" "ok=5 err=0 pods=server-2:5"
done
check "restarted agent: its own HBONE connections carried it" test "$(stat_of node-1 hbone_clients_total)" -gt "$hb"
after=$(owned)
expect_contains "no pin leaked or lost (same pins)" "$after" "$(grep '^pins=' <<<"$before")"
expect_contains "no attachment leaked: one program per hook, as before" "$after" "$(grep '^attachments=' <<<"$before")"
expect_contains "the same pinned maps (ids), reused" "$after" "$(grep '^pinned=' <<<"$before")"
expect_contains "the new agent holds as many BPF fds as the old one" "$after" "$(grep '^agent_fds=' <<<"$before")"
read -r _ old_progs old_maps <<<"$(grep '^ids ' <<<"$before")"
expect_contains "the killed agent's programs and unpinned maps are freed" \
	"$($PY "$E2E_TMP/owned.py" alive "$old_progs" "$old_maps")" "progs=0 maps=0"

# ---------------------------------------------------------------- 2. peer restart
# node-1's client streams to server-2 through HBONE while node-2's agent restarts:
# the tunnel goes with it (connections through it are reset, docs/mesh.md), and
# new connections work again once it is back.
pid1=$(agent_pid node-1)
for fam in 4 6; do
	eval "s2=\$S2_$fam"
	bg lab exec mesh/client sl-echo stream tcp "$s2" 8080 --duration-ms 4500 --interval-ms 50 \
		--timeout-ms 1000 >"$E2E_TMP/stream2-$fam" 2>&1
done
sleep 0.3
check "node-2's agent restarted while node-1 sends to it" lab agent-restart node-2
check "node-2: server-2 captured again" wait_until 10 captured node-2 'mesh +server-2'
for fam in 4 6; do
	eval "s2=\$S2_$fam"
	check "peer restarted: a new ipv$fam connection through HBONE succeeds" \
		wait_until 3 lab exec mesh/client sl-echo probe tcp "$s2" 8080 --timeout-ms 1000
	expect_contains "peer restarted: then 10 of 10 ipv$fam" \
		"$(probe_summary mesh/client tcp "$s2" 8080 --count 10)" "ok=10 err=0 pods=server-2:10"
done
bg_done "${BG_PIDS[@]}"
for fam in 4 6; do
	out=$(cat "$E2E_TMP/stream2-$fam")
	check "peer restarted: the ipv$fam stream went on after it ($(grep -o 'new_ok=[0-9]* new_err=[0-9]*' <<<"$out"))" \
		test "$(grep -o 'new_ok=[0-9]*' <<<"$out" | cut -d= -f2)" -gt 0
done
check "peer restarted: node-1's agent is the same process" test "$(agent_pid node-1)" = "$pid1"

# ---------------------------------------------------------------- 3. backend removed
web_ready() { ctl node-1 services | grep -E "^plain +web +$1 +80 +TCP" | grep -q " $2 "; }
srv_ready() { ctl node-1 services | grep -E "^mesh +server +$1 +80 +TCP" | grep -q " $2 "; }
bg lab exec lb-client sl-echo stream tcp $VIP4 80 --duration-ms 3000 --interval-ms 20 >"$E2E_TMP/stream3" 2>&1
bg lab exec mesh/client sl-echo stream tcp $MVIP6 80 --duration-ms 3000 --interval-ms 20 >"$E2E_TMP/stream3m" 2>&1
sleep 0.3
web_yaml "1.21 2.21" | put "$cfg/31-web.yaml"
service server mesh $MVIP4 $MVIP6 "tier: server" "1.11" | put "$cfg/30-server.yaml"
check "backend removed: web has 2 of 2 endpoints" wait_until 5 web_ready $VIP6 2/2
check "backend removed: the mesh Service has 1 of 1" wait_until 5 srv_ready $MVIP6 1/1
for vip in $VIP4 $VIP6; do
	sum=$(probe_summary lb-client tcp $vip 80 --count 30)
	expect_contains "backend removed: new connections to $vip all succeed" "$sum" "ok=30 err=0"
	expect_not_contains "backend removed: none goes to web-3 ($vip)" "$sum" "web-3"
done
expect_contains "backend removed: the mesh Service's new connections go to server-1 only" \
	"$(probe_summary mesh/client tcp $MVIP4 80 --count 10)" "ok=10 err=0 pods=server-1:10"
bg_done "${BG_PIDS[@]}"
expect_contains "backend removed mid-stream: no error on the ClusterIP stream" "$(cat "$E2E_TMP/stream3")" "long_errors=0"
expect_contains "backend removed mid-stream: no new ClusterIP connection failed" "$(cat "$E2E_TMP/stream3")" "new_err=0"
expect_contains "backend removed mid-stream: no error through the mesh either" "$(cat "$E2E_TMP/stream3m")" "long_errors=0"
expect_contains "backend removed mid-stream: no new mesh connection failed" "$(cat "$E2E_TMP/stream3m")" "new_err=0"
put "$cfg/31-web.yaml" <"$E2E_TMP/31-web.good"
service server mesh $MVIP4 $MVIP6 "tier: server" "1.11 2.11" | put "$cfg/30-server.yaml"
all_back() {
	local o
	o=$(ctl node-1 services)
	[ "$(grep -cE '^plain +web .* 3/3 ' <<<"$o")" = 2 ] && [ "$(grep -cE '^mesh +server .* 2/2 ' <<<"$o")" = 2 ]
}
check "the backends are back" wait_until 5 all_back

# ---------------------------------------------------------------- 4. garbage config
cstat() { jstatus node-1 "d['config']['$1']"; }
gen=$(cstat generation)
# garbage NAME NEEDLE : 31-web.yaml now holds garbage; NEEDLE is in the error.
garbage() {
	local name=$1 needle=$2 off sum
	off=$(log_size node-1)
	mv "$E2E_TMP/garbage" "$cfg/31-web.yaml"
	check "$name: status says error, naming the file" \
		wait_until 5 sh -c "sluicectl --socket $SOCK1 --json status | grep -F '\"last_error\"' | grep -F '31-web.yaml' | grep -qF -- '$needle'"
	expect_contains "$name: config state is error" "$(cstat state)" "error"
	expect_contains "$name: the agent logs it" "$(new_log node-1 "$off")" "31-web.yaml"
	expect_contains "$name: the log says the last good generation stays" "$(new_log node-1 "$off")" "generation $gen stays in force"
	check "$name: generation $gen still in force" test "$(cstat generation)" = "$gen"
	check "$name: the Service it defined is still there" web_ready $VIP4 3/3
	sum=$(probe_summary lb-client tcp $VIP4 80 --count 30)
	expect_contains "$name: traffic still flows on the last good config" "$sum" "ok=30 err=0"
	expect_contains "$name: ... to all three backends" "$sum" "web-3:"
}
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: web\n  spec: [\n' >"$E2E_TMP/garbage"
garbage "unparseable YAML" "YAML syntax"
{ printf 'apiVersion: v1\n\0\0'; head -c 2000 /dev/zero | tr '\0' '\377'; } >"$E2E_TMP/garbage"
garbage "binary junk" "control characters are not allowed"
web_yaml "1.21 2.21 2.22" | sed 's/port: 80, targetPort: http/port: http, targetPort: http/' >"$E2E_TMP/garbage"
garbage "a well-formed but invalid Service" "expected an integer"
put "$cfg/31-web.yaml" <"$E2E_TMP/31-web.good"
check "good file back: config ok again" wait_until 5 sh -c "sluicectl --socket $SOCK1 --json status | grep -q '\"state\": \"ok\"'"
check "good file back: a new generation" test "$(cstat generation)" -gt "$gen"
expect_contains "good file back: traffic flows" "$(probe_summary lb-client tcp $VIP6 80 --count 10)" "ok=10 err=0"

# ---------------------------------------------------------------- 5. full maps
# fill NAME VIP4 VIP6 : a dual-stack Service over the three web pods (2
# frontends, 6 slots).
fill() {
	cat <<Y
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: plain}
spec:
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [$2, "$3"]
  selector: {role: web}
  ports: [{name: http, port: 80, targetPort: http}]
Y
}
config_ok() { ctl node-1 --json status | grep -q '"state": "ok"'; }
maps=$(ctl node-1 maps)
check "--map-max: sl_svc_v1 holds 6" grep -qE '^sl_svc_v1 +hash +4 +6 ' <<<"$maps"
check "--map-max: sl_be_v1 holds 16" grep -qE '^sl_be_v1 +hash +10 +16 ' <<<"$maps"
fill fill-1 10.96.3.1 fd00:96::3:1 | put "$cfg/40-fill.yaml"
check "full maps: a Service that fills both maps exactly is taken" \
	wait_until 5 sh -c "sluicectl --socket $SOCK1 services | grep -q '^plain  *fill-1  *10.96.3.1 '"
check "full maps: config ok" wait_until 5 config_ok
maps=$(ctl node-1 maps)
check "full maps: sl_svc_v1 at 6 of 6" grep -qE '^sl_svc_v1 +hash +6 +6 +100' <<<"$maps"
check "full maps: sl_be_v1 at 16 of 16" grep -qE '^sl_be_v1 +hash +16 +16 +100' <<<"$maps"
expect_contains "full maps: the new Service answers" "$(probe_summary lb-client tcp 10.96.3.1 80 --count 10)" "ok=10 err=0"
# At capacity, the Service moves to other VIPs: the new entries need the old
# ones' room (the agent used to leave them out with E2BIG until the next change).
off=$(log_size node-1)
fill fill-1 10.96.3.2 fd00:96::3:2 | put "$cfg/40-fill.yaml"
check "full maps: a Service moved to new VIPs" \
	wait_until 5 sh -c "sluicectl --socket $SOCK1 services | grep -q '^plain  *fill-1  *fd00:96::3:2 '"
expect_contains "full maps: ... written whole (config ok, no error, no failed sync)" \
	"$(jstatus node-1 "d['config']['state'], d['config']['last_error'], d['sync']['errors']")" "ok None 0"
expect_not_contains "full maps: ... no failed map operation in the log" "$(new_log node-1 "$off")" "map operations failed"
for vip in 10.96.3.2 fd00:96::3:2; do
	expect_contains "full maps: the moved Service answers on $vip" "$(probe_summary lb-client tcp $vip 80 --count 10)" "ok=10 err=0"
done
expect_contains "full maps: the old VIP is gone" "$(lab exec lb-client sl-echo probe tcp 10.96.3.1 80 --timeout-ms 300 2>&1)" "err "
# One Service more than fits: rejected as a whole, with the count of what does not fit.
gen=$(cstat generation)
off=$(log_size node-1)
fill fill-2 10.96.3.3 fd00:96::3:3 | put "$cfg/41-more.yaml"
check "map overflow: status says how many do not fit" \
	wait_until 5 sh -c "sluicectl --socket $SOCK1 status | grep -qF 'sync: 8 Service frontends do not fit map sl_svc_v1 (6 entries): 2 too many'"
expect_contains "map overflow: so does the log" "$(new_log node-1 "$off")" "8 Service frontends do not fit map sl_svc_v1 (6 entries): 2 too many"
expect_contains "map overflow: the configuration is rejected, the last good one stays" "$(new_log node-1 "$off")" "generation $gen stays in force"
check "map overflow: generation $gen still in force" test "$(cstat generation)" = "$gen"
expect_contains "map overflow: existing Services still work" "$(probe_summary lb-client tcp $VIP4 80 --count 10)" "ok=10 err=0"
expect_contains "map overflow: ... the one at the brim too" "$(probe_summary lb-client tcp fd00:96::3:2 80 --count 10)" "ok=10 err=0"
expect_contains "map overflow: the Service that did not fit is not half-installed" \
	"$(lab exec lb-client sl-echo probe tcp 10.96.3.3 80 --timeout-ms 300 2>&1)" "err "
rm -f "$cfg/41-more.yaml" "$cfg/40-fill.yaml"
check "map overflow: config ok once the Service goes" wait_until 5 config_ok

# ---------------------------------------------------------------- 6. CA rotation
# The agent signs with one CA (--ca-cert, read at start) and trusts a bundle
# (--trust-bundle, one or more roots). Rotation: a new CA, a bundle of old +
# new, and a restart per node. A node on the new CA whose peer does not trust
# it yet is refused, with the reason in the log; once the peer trusts both,
# old and new certificates mix; then the peer moves to the new CA too.
"$E2E_REPO/scripts/lab-ca" "$E2E_TMP/ca2" --other >/dev/null
cat "$STATE/ca/ca.crt" "$E2E_TMP/ca2/ca.crt" >"$E2E_TMP/bundle.pem"
NEW_CA="$MAPMAX --ca-cert $E2E_TMP/ca2/ca.crt --ca-key $E2E_TMP/ca2/ca.key --trust-bundle $E2E_TMP/bundle.pem --cert-ttl 10"
TRUST_BOTH="$MAPMAX --trust-bundle $E2E_TMP/bundle.pem --cert-ttl 10"
serial_of() { ctl "$1" --json certs | $PY -c "import json,sys; c=[x for x in json.load(sys.stdin)['certs'] if x['identity'].endswith('$2')]; print(c[0]['serial'] if c else '-')"; }
source_of() { ctl "$1" --json certs | $PY -c "import json,sys; c=[x for x in json.load(sys.stdin)['certs'] if x['identity'].endswith('$2')]; print(c[0]['source'] if c else '-')"; }

off2=$(log_size node-2)
SLUICE_LAB_AGENT_ARGS=$NEW_CA lab agent-restart node-1 >/dev/null
check "CA rotation: node-1 restarted on the new CA" wait_until 10 captured node-1 'mesh +client'
out=$(lab exec mesh/client sl-echo probe tcp $S2_4 8080 --count 2 --timeout-ms 2000 2>&1)
expect_contains "CA rotation: node-2 (old CA only) refuses node-1's new certificate" "$out" "ok=0 err=2"
expect_contains "CA rotation: node-1 minted with the new CA" "$(source_of node-1 /sa/client)" "$E2E_TMP/ca2/ca.crt"
wait_until 3 sh -c "tail -c +$((off2 + 1)) '$STATE/node-2/agent.log' | grep -q 'HBONE from 10.244.1.10:'"
expect_contains "CA rotation: node-2's log says why (certificate verify failed, and the verifier's reason)" \
	"$(new_log node-2 "$off2" | grep 'HBONE from 10.244.1.10:' | head -1)" "certificate verify failed ("
SLUICE_LAB_AGENT_ARGS=$TRUST_BOTH lab agent-restart node-2 >/dev/null
check "CA rotation: node-2 restarted trusting old + new" wait_until 10 captured node-2 'mesh +server-2'
for fam in 4 6; do
	eval "s2=\$S2_$fam"
	expect_contains "CA rotation, mixed: node-1 (new CA) -> node-2 (old CA), ipv$fam" \
		"$(probe_summary mesh/client tcp "$s2" 8080 --count 5)" "ok=5 err=0"
done
expect_contains "CA rotation, mixed: node-2 (old CA) -> node-1 (new CA)" \
	"$(probe_summary mesh/server-2 tcp $S1_4 8080 --count 5)" "ok=5 err=0"
SLUICE_LAB_AGENT_ARGS=$NEW_CA lab agent-restart node-2 >/dev/null
check "CA rotation: node-2 on the new CA too" wait_until 10 captured node-2 'mesh +server-2'
for fam in 4 6; do
	eval "s2=\$S2_$fam"
	expect_contains "CA rotated: node-1 -> node-2 on the new CA, ipv$fam" \
		"$(probe_summary mesh/client tcp "$s2" 8080 --count 5)" "ok=5 err=0"
done
expect_contains "CA rotated: node-2 minted with the new CA" "$(source_of node-2 /sa/server)" "$E2E_TMP/ca2/ca.crt"

# ------------------------------------- 6b + 7. certificates expire; status flood
# Both agents mint 10 s certificates (renewed at half life). A stream through
# the mesh, opened on the current ones, runs past their expiry while a flood
# of clients connects to node-1's status socket, holds connections, sends junk,
# trickles requests and never reads answers.
cat >"$E2E_TMP/flood.py" <<'P'
import os, socket, sys, threading, time
path, secs, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
end = time.monotonic() + secs
st = {"conns": 0, "failed": 0}
lock = threading.Lock()

def worker(i):
    kind = i % 5
    while time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(path)
        except OSError:
            with lock:
                st["failed"] += 1
            s.close()
            time.sleep(0.01)
            continue
        with lock:
            st["conns"] += 1
        try:
            if kind == 0:	# connect and say nothing
                time.sleep(max(0, min(2, end - time.monotonic())))
            elif kind == 1:	# binary junk
                s.sendall(os.urandom(3000))
                time.sleep(0.1)
            elif kind == 2:	# a request one byte at a time
                s.sendall(b"GET /status HTTP/1.1\r\n")
                t = time.monotonic() + 2
                while time.monotonic() < min(end, t):
                    s.sendall(b"X")
                    time.sleep(0.05)
            elif kind == 3:	# a head past the limit
                s.sendall(b"GET /status HTTP/1.1\r\nX-Junk: " + b"a" * 40000 + b"\r\n\r\n")
            else:		# pipelined requests whose answers are never read
                s.sendall(b"GET /services HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
                time.sleep(0.5)
        except OSError:
            pass
        s.close()

ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(f"flood conns={st['conns']} failed={st['failed']}")
P
rss() { awk '/^VmRSS/ {print $2}' "/proc/$(agent_pid node-1)/status"; }
nfds() { ls "/proc/$(agent_pid node-1)/fd" | wc -l; }
s1=$(serial_of node-1 /sa/client) s2=$(serial_of node-2 /sa/server)
pid1=$(agent_pid node-1)
rss0=$(rss) fds0=$(nfds)
bg lab exec mesh/client sl-echo stream tcp $S2_4 8080 --duration-ms 10500 --interval-ms 100 --timeout-ms 3000 >"$E2E_TMP/stream6" 2>&1
sp=$BG
bg lab exec lb-client sl-echo stream tcp $VIP6 80 --duration-ms 7000 --interval-ms 50 --timeout-ms 3000 >"$E2E_TMP/stream7" 2>&1
spl=$BG
bg $PY "$E2E_TMP/flood.py" "$SOCK1" 6 200 >"$E2E_TMP/flood.out" 2>&1
fp=$BG
ok=0 bad=0 rss_max=$rss0 lat_max=0
end=$(( $(date +%s) + 5 ))
sleep 0.3
while [ "$(date +%s)" -lt "$end" ]; do
	t0=$(date +%s%N)
	if ctl node-1 --timeout 3 status >/dev/null 2>&1; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
	ms=$(( ($(date +%s%N) - t0) / 1000000 )); [ "$ms" -gt "$lat_max" ] && lat_max=$ms
	r=$(rss); [ "$r" -gt "$rss_max" ] && rss_max=$r
	sleep 0.1
done
wait $fp
flood=$(cat "$E2E_TMP/flood.out")
check "flood: the flood ran ($flood)" grep -qE 'conns=[1-9][0-9]{2,}' <<<"$flood"
check "flood: sluicectl status answered during it ($ok answered, $bad not; slowest ${lat_max} ms)" test "$bad" = 0 -a "$ok" -ge 5
# 64 connections of at most 4 KiB of input and one response each, plus the
# allocator's slack: far below 16 MiB, whatever the flood's length.
check "flood: VmRSS stayed bounded (${rss0} -> at most ${rss_max} kB)" test $((rss_max - rss0)) -lt 16384
check "flood: the agent is the same process" test "$(agent_pid node-1)" = "$pid1"
check "flood: its connections are let go afterwards (fds $fds0 before)" wait_until 5 sh -c "test \$(ls /proc/$pid1/fd | wc -l) -le $((fds0 + 2))"
expect_contains "flood: status after it" "$(ctl node-1 status)" "Config:       ok"
conns=$(grep -oE 'conns=[0-9]+' <<<"$flood" | cut -d= -f2)
check "flood: the cap is logged, not each connection" \
	test "$(grep -c 'status: 64 connections open' "$STATE/node-1/agent.log")" -le $((conns / 10000 + 1))
wait $spl	# (all three are forgotten below, once the last ends)
expect_contains "flood: the ClusterIP stream during it saw no error" "$(cat "$E2E_TMP/stream7")" "long_errors=0"
expect_contains "flood: ... and no new connection failed" "$(cat "$E2E_TMP/stream7")" "new_err=0"
bg_done $sp
out=$(cat "$E2E_TMP/stream6")
expect_contains "cert expiry + flood: a mesh stream lives past its certificates' expiry" "$out" "long_errors=0"
expect_contains "cert expiry + flood: no new mesh connection failed" "$out" "new_err=0"
check "cert expiry: node-1 minted a new client certificate" test "$(serial_of node-1 /sa/client)" != "$s1"
check "cert expiry: node-2 minted a new server certificate" test "$(serial_of node-2 /sa/server)" != "$s2"
valid() { ctl "$1" --json certs | $PY -c "
import json, sys, datetime
now = datetime.datetime.now(datetime.timezone.utc)
for c in json.load(sys.stdin)['certs']:
    t = datetime.datetime.strptime(c['not_after'], '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
    if t <= now or c.get('error'):
        sys.exit(1)"; }
check "cert expiry: every certificate on node-1 is valid now (renewed before expiry)" valid node-1
check "cert expiry: ... and on node-2" valid node-2
