#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Gateway API status write-back in Kubernetes mode: two agents (node-1 and
# node-2, own bpffs roots and cgroup subtrees, no mesh) against one test API
# server (selftests/tools/sl-kube-api.py) with a 3 s Lease. Exactly one holds
# the Lease and writes; the Gateway gets gwplan's conditions (a listener
# conflict), the HTTPRoutes theirs (BackendNotFound), another controller's
# entry stays, a route of another class's Gateway is left alone (and the
# GatewayClass of another controller; ours is Accepted); objects
# skipped as invalid (a Gateway, an HTTPRoute) say why until fixed; nothing is
# written while nothing changes; conditions someone else overwrites are
# written back, without a rebuild. Node-local listener failures: each node
# has a netns of its own (node-2's joined to node-1's, where the API server
# is, by a veth pair), so a port taken on the non-holder's node fails
# there only; its node report (Lease sluice-node-<node>) carries it, and
# the written listener status names the node, heals when the port is freed
# (the agent tries the port again), ages out when that agent stops
# renewing, and comes back when it renews again. The holder killed, the
# other takes over and writes the next change; that one, upgraded (a
# successor pod with --takeover), releases the Lease as it hands over and
# the successor takes it; the successor stopped by SIGTERM releases it as
# it exits.
. "$(dirname "$0")/lib.sh"
need_root kube_status

NS=slks-$E2E_ID
NS2=slks2-$E2E_ID
VETH=ks${E2E_ID}a
API_IP=10.177.0.1
declare -A nsof=([node-1]=$NS [node-2]=$NS2)
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG=$CG2/sluice-kstatus-$E2E_ID
API=$E2E_TMP/api
declare -A apid
pids=()

cleanup() {
	local rc=$?
	# agents first, then the server (no "unexpected eof" noise in their logs)
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	for n in node-1 node-2; do
		r=/sys/fs/bpf/sluice-kstatus-$E2E_ID-$n
		[ -d "$r" ] && nsenter --net="/run/netns/${nsof[$n]}" sluice-agent --uninstall --bpffs-root "$r" >/dev/null 2>&1
		rm -rf "$r" 2>/dev/null
	done
	rmdir "$CG/node-1" "$CG/node-2" "$CG" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	ip netns del "$NS2" 2>/dev/null
	return "$rc"
}
trap 'cleanup; e2e_finish' EXIT

if [ -z "$CG2" ]; then
	skip kube_status "needs cgroup2"
	exit 0
fi
mkdir -p "$API" "$CG/node-1" "$CG/node-2"
ip netns add "$NS" && nsenter --net="/run/netns/$NS" ip link set lo up
ip netns add "$NS2" && nsenter --net="/run/netns/$NS2" ip link set lo up
nsenter --net="/run/netns/$NS" ip link add "$VETH" type veth peer name "${VETH%a}b" &&
	nsenter --net="/run/netns/$NS" ip link set "${VETH%a}b" netns "$NS2" &&
	nsenter --net="/run/netns/$NS" ip addr add "$API_IP/30" dev "$VETH" &&
	nsenter --net="/run/netns/$NS" ip link set "$VETH" up &&
	nsenter --net="/run/netns/$NS2" ip addr add 10.177.0.2/30 dev "${VETH%a}b" &&
	nsenter --net="/run/netns/$NS2" ip link set "${VETH%a}b" up ||
	{ fail "node netns set up"; exit 1; }
"$E2E_REPO/scripts/lab-ca" "$E2E_TMP/ca" >/dev/null || { fail "a CA for the mesh"; exit 1; }

/usr/bin/python3 - >"$E2E_TMP/objects.json" <<'EOF'
import json
GW = "gateway.networking.k8s.io"
def ns(n): return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
def route(name, parents, backend, status=None):
    o = {"apiVersion": GW + "/v1", "kind": "HTTPRoute", "metadata": {"name": name, "namespace": "demo"},
         "spec": {"parentRefs": parents, "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}}
    if status:
        o["status"] = status
    return o
gw = {"group": GW, "kind": "Gateway", "namespace": "infra", "name": "gw"}
items = [ns("demo"), ns("infra"), ns("sluice-system"),
    {"apiVersion": GW + "/v1", "kind": "GatewayClass", "metadata": {"name": "sluice"},
     "spec": {"controllerName": "sluice.io/gateway-controller"}},
    {"apiVersion": GW + "/v1", "kind": "GatewayClass", "metadata": {"name": "other"},
     "spec": {"controllerName": "example.com/other"}},
    {"apiVersion": GW + "/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "infra"},
     "spec": {"gatewayClassName": "sluice", "addresses": [{"type": "IPAddress", "value": "10.99.0.1"}],
              "listeners": [{"name": "web", "port": 80, "protocol": "HTTP",
                             "allowedRoutes": {"namespaces": {"from": "All"}}},
                            {"name": "t1", "port": 9000, "protocol": "TCP"},
                            {"name": "t2", "port": 9000, "protocol": "TCP"}]}},
    {"apiVersion": GW + "/v1", "kind": "Gateway", "metadata": {"name": "theirs", "namespace": "infra"},
     "spec": {"gatewayClassName": "other", "listeners": [{"name": "web", "port": 80, "protocol": "HTTP"}]}},
    # invalid (port 0): skipped by the agent; ours gets why, theirs nothing
    {"apiVersion": GW + "/v1", "kind": "Gateway", "metadata": {"name": "broken", "namespace": "infra"},
     "spec": {"gatewayClassName": "sluice", "listeners": [{"name": "web", "port": 0, "protocol": "HTTP"}]}},
    {"apiVersion": GW + "/v1", "kind": "Gateway", "metadata": {"name": "theirs-broken", "namespace": "infra"},
     "spec": {"gatewayClassName": "other", "listeners": [{"name": "web", "port": 0, "protocol": "HTTP"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "demo"},
     "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "echo"}}},
    route("good", [dict(gw, sectionName="web")], "echo",
          {"parents": [{"parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other",
                        "conditions": []}]}),
    route("bad", [dict(gw, sectionName="web")], "missing"),
    route("foreign", [{"group": GW, "kind": "Gateway", "namespace": "infra", "name": "theirs"}], "echo"),
]
json.dump(items, open("/dev/stdout", "w"))
EOF

nsenter --net="/run/netns/$NS" /usr/bin/python3 "$E2E_REPO/selftests/tools/sl-kube-api.py" --dir "$API" \
	--objects "$E2E_TMP/objects.json" --token e2e-token --lifetime 150 --address "$API_IP" 2>"$E2E_TMP/api.log" &
pids+=($!)
wait_until 15 test -e "$API/ports" || { fail "test API server starts" "$(tail -3 "$E2E_TMP/api.log")"; exit 1; }
read -r API_PORT CTL_PORT <"$API/ports"

cat >"$E2E_TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: e2e
contexts:
- name: e2e
  context: {cluster: test, user: agent}
clusters:
- name: test
  cluster:
    server: https://$API_IP:$API_PORT
    certificate-authority: api/ca.crt
users:
- name: agent
  user: {token: e2e-token}
EOF

agent() {	# agent NODE [LOG POD_NAME ARGS...] (the mesh on: Gateways are served)
	local n=$1 log=${2:-agent-$1} pod=${3:-}
	shift $(($# < 3 ? $# : 3))
	nsenter --net="/run/netns/${nsof[$n]}" env -u POD_NAME -u POD_NAMESPACE ${pod:+POD_NAME=$pod} \
		sluice-agent --node-name "$n" \
		--bpffs-root "/sys/fs/bpf/sluice-kstatus-$E2E_ID-$n" --cgroup "$CG/$n" \
		--status-socket "$E2E_TMP/$n.sock" --policy-scope none --metrics off \
		--ca-cert "$E2E_TMP/ca/ca.crt" --ca-key "$E2E_TMP/ca/ca.key" --netns-prefix "slks-none-$E2E_ID-" \
		--kubeconfig "$E2E_TMP/kubeconfig" --lease-namespace sluice-system --lease-duration 3 "$@" \
		</dev/null >"$E2E_TMP/$log.log" 2>&1 &
	apid[$n]=$!
	disown "$!"	# no "Killed" line when the test kills it
	pids+=($!)
}

# One Python process polls and checks (each start costs seconds on a loaded
# machine): it prints "PASS name" / "FAIL name: why" lines, turned into
# checks here, and kills the holder itself (by its PID).
cat >"$E2E_TMP/kst.py" <<'PY'
import json, os, signal, subprocess, sys, time, urllib.request
ctl, tmp, pids = sys.argv[1], sys.argv[2], {"node-1": int(sys.argv[3]), "node-2": int(sys.argv[4])}
netns = {"node-1": sys.argv[5], "node-2": sys.argv[6]}
OURS = "sluice.io/gateway-controller"

def say(ok, name, why=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + why), flush=True)

def get(path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s%s" % (ctl, path), timeout=5) as r:
            return json.load(r)
    except Exception:
        return None

def post(path, body):
    req = urllib.request.Request("http://127.0.0.1:%s%s" % (ctl, path), data=json.dumps(body).encode())
    urllib.request.urlopen(req, timeout=5).read()

def obj(kind, ns, name):
    return get("/object?kind=%s&namespace=%s&name=%s" % (kind, ns, name)) or {}

def agent_status(node):
    try:
        out = subprocess.run(["sluicectl", "--socket", "%s/%s.sock" % (tmp, node), "--json", "status"],
                             capture_output=True, timeout=5).stdout
        return json.loads(out)
    except Exception:
        return {}

def writer(node):
    return agent_status(node).get("kubernetes", {}).get("status_writer") or {}

def config_gen(node):
    return agent_status(node).get("config", {}).get("generation")

def holder():
    return obj("Lease", "sluice-system", "sluice-status").get("spec", {}).get("holderIdentity")

def status_writes():
    return sum(1 for w in get("/writes") or [] if w["verb"] == "PATCH/status" and w["code"] == 200)

def cond(conds, t):
    return next((c for c in conds or [] if c.get("type") == t), {})

def listener(st, name):
    return next((l for l in st.get("listeners", []) if l.get("name") == name), {})

def ours(st):
    return [p for p in st.get("parents", []) if p.get("controllerName") == OURS]

def wait(name, secs, pred):
    end, why = time.time() + secs, ""
    while time.time() < end:
        try:
            if pred():
                say(True, name)
                return True
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            why = repr(e)
        time.sleep(0.05)
    say(False, name, why or "not within %d s" % secs)
    return False

def gw():
    return obj("Gateway", "infra", "gw").get("status") or {}

def route(name):
    return obj("HTTPRoute", "demo", name)

def route_cond(name, t):
    return cond(ours(route(name)["status"])[0]["conditions"], t)

def one_leader():
    a, b = writer("node-1").get("leader"), writer("node-2").get("leader")
    return a is not None and b is not None and a != b

if not wait("exactly one agent holds the Lease", 15, one_leader):
    sys.exit(0)
L = "node-1" if writer("node-1")["leader"] else "node-2"
F = "node-2" if L == "node-1" else "node-1"
wait("the Lease's holderIdentity is the holder's", 5, lambda: holder() == L)
wait("Gateway: Accepted True ListenersNotValid", 10,
     lambda: cond(gw()["conditions"], "Accepted")["reason"] == "ListenersNotValid"
     and cond(gw()["conditions"], "Accepted")["status"] == "True")
g = obj("Gateway", "infra", "gw")
st = g.get("status") or {}
say(cond(st.get("conditions"), "Programmed").get("status") == "True"
    and cond(st.get("conditions"), "Accepted").get("observedGeneration") == g["metadata"]["generation"],
    "Gateway: Programmed, observedGeneration", json.dumps(st.get("conditions")))
t1 = listener(st, "t1").get("conditions")
say(cond(t1, "Conflicted").get("reason") == "HostnameConflict" and cond(t1, "Conflicted").get("status") == "True"
    and cond(t1, "Programmed").get("status") == "False",
    "listener t1: Conflicted True HostnameConflict, not Programmed", json.dumps(t1))
web = listener(st, "web")
say(cond(web.get("conditions"), "Programmed").get("status") == "True" and web.get("attachedRoutes") == 2
    and web.get("supportedKinds", [{}])[0].get("kind") == "HTTPRoute",
    "listener web: Programmed, 2 routes attached, supportedKinds", json.dumps(web))
wait("HTTPRoute bad: ResolvedRefs False BackendNotFound", 10,
     lambda: route_cond("bad", "ResolvedRefs")["reason"] == "BackendNotFound"
     and route_cond("bad", "ResolvedRefs")["status"] == "False" and route_cond("bad", "Accepted")["status"] == "True")
wait("HTTPRoute good: Accepted, ResolvedRefs; the other controller's entry kept", 10,
     lambda: route_cond("good", "Accepted")["status"] == "True" and route_cond("good", "ResolvedRefs")["status"] == "True"
     and len(route("good")["status"]["parents"]) == 2
     and ours(route("good")["status"])[0]["parentRef"]["sectionName"] == "web")
say("status" not in route("foreign"), "HTTPRoute of another class's Gateway: left alone")
say("status" not in obj("Gateway", "infra", "theirs"), "Gateway of another class: left alone")
def gwclass():
    return obj("GatewayClass", "", "sluice")
wait("GatewayClass sluice (our controllerName): Accepted True, observedGeneration", 10,
     lambda: cond(gwclass()["status"]["conditions"], "Accepted")["status"] == "True"
     and cond(gwclass()["status"]["conditions"], "Accepted")["observedGeneration"]
     == gwclass()["metadata"]["generation"])
say("status" not in obj("GatewayClass", "", "other"), "GatewayClass of another controller: left alone")
def broken(t):
    return cond((obj("Gateway", "infra", "broken").get("status") or {}).get("conditions"), t)
wait("invalid Gateway: Accepted False Invalid, Programmed False, the reason in the message", 10,
     lambda: broken("Accepted")["status"] == "False" and broken("Accepted")["reason"] == "Invalid"
     and "listeners[0].port" in broken("Accepted")["message"]
     and broken("Programmed")["status"] == "False" and broken("Programmed")["reason"] == "Invalid")
say("status" not in obj("Gateway", "infra", "theirs-broken"), "invalid Gateway of another class: left alone")

# No write loop: each write comes back by the watch and compares equal.
n, end, same = status_writes(), time.time() + 3, True
while time.time() < end and same:
    same = status_writes() == n
    time.sleep(0.2)
say(same, "no writes while nothing changes (3 s)", "%d -> %d" % (n, status_writes()))
say(writer(L).get("writes") == n, "the holder made every write (%d)" % n, str(writer(L)))
say(writer(F).get("writes") == 0, "the other agent wrote nothing", str(writer(F)))

# Someone else overwrites our conditions: a status-only change, which
# rebuilds nothing, and the holder writes its conditions back.
gen = config_gen(L)
g = obj("Gateway", "infra", "gw")
g["status"]["conditions"] = []
post("/apply", {"object": g})
wait("conditions overwritten by someone else are written back", 10,
     lambda: cond(gw()["conditions"], "Accepted")["reason"] == "ListenersNotValid")
say(gen is not None and config_gen(L) == gen, "a status-only change rebuilds nothing", "generation %s -> %s" % (gen, config_gen(L)))

def bad_backend(svc, path=None):
    rule = {"backendRefs": [{"name": svc, "port": 80}]}
    if path:
        rule["matches"] = [{"path": {"type": "PathPrefix", "value": path}}]
    post("/apply", {"object": {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                               "metadata": {"name": "bad", "namespace": "demo"},
                               "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                        "namespace": "infra", "name": "gw", "sectionName": "web"}],
                                        "rules": [rule]}}})

bad_backend("echo")
wait("a fixed backendRef: ResolvedRefs True, observedGeneration 2", 10,
     lambda: route_cond("bad", "ResolvedRefs")["status"] == "True"
     and route_cond("bad", "Accepted")["observedGeneration"] == 2)

# An invalid route (a path not starting with "/") is skipped: its parent
# entry says why; the rest goes on. Fixed, it is accepted again.
bad_backend("echo", "api")
wait("invalid HTTPRoute: Accepted False UnsupportedValue, the reason in the message", 10,
     lambda: route_cond("bad", "Accepted")["status"] == "False"
     and route_cond("bad", "Accepted")["reason"] == "UnsupportedValue"
     and "must start with '/'" in route_cond("bad", "Accepted")["message"]
     and route_cond("bad", "Accepted")["observedGeneration"] == 3 and len(route("bad")["status"]["parents"]) == 1)
print("INFO message: " + route_cond("bad", "Accepted").get("message", ""))
say(route_cond("good", "Accepted")["status"] == "True", "the other routes keep their status")
bad_backend("echo", "/api")
wait("the route fixed: Accepted True, ResolvedRefs True", 10,
     lambda: route_cond("bad", "Accepted")["status"] == "True" and route_cond("bad", "Accepted")["reason"] == "Accepted"
     and route_cond("bad", "ResolvedRefs")["status"] == "True"
     and route_cond("bad", "Accepted")["observedGeneration"] == 4)

# ---- node-local listener failures (node reports) ----
# A port taken on F's node only (a process of the test listening there);
# a Gateway listener on that port then fails on F alone.
def take_port(node, port):
    p = subprocess.Popen(["nsenter", "--net=" + netns[node], "/usr/bin/python3", "-c",
                          "import socket, time\n"
                          "s = socket.socket()\n"
                          "s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: 10.99.0.1 may come later\n"
                          "s.bind(('10.99.0.1', %d)); s.listen(1)\n"
                          "print('ok', flush=True); time.sleep(90)\n" % port],
                         stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ok":
        say(False, "port %d taken on %s" % (port, node), "the helper did not listen")
    helpers.append(p)
    return p

def free_port(p):
    p.kill()
    p.wait()

def extra_listener(port):
    g = obj("Gateway", "infra", "gw")
    g["spec"]["listeners"] = [l for l in g["spec"]["listeners"] if l["name"] != "extra"] + \
        [{"name": "extra", "port": port, "protocol": "HTTP"}]
    post("/apply", {"object": g})

def extra(t, field="status"):
    return cond(listener(gw(), "extra").get("conditions"), t).get(field, "")

def failing_on_f(port):
    m = extra("Programmed", "message")
    return (extra("Programmed") == "False" and extra("Programmed", "reason") == "Invalid"
            and ("not listening on %s (10.99.0.1:%d: cannot listen: Address already in use)" % (F, port)) in m
            and "listening on 1 of 2 nodes" in m and extra("Accepted") == "True")

def reports(node):
    return writer(node).get("node_reports") or {}

helpers = []
try:
    h = take_port(F, 8080)
    extra_listener(8080)
    if wait("a port taken on %s only, listener Programmed False Invalid, naming the node and the error" % F, 15,
            lambda: failing_on_f(8080)):
        print("INFO message: " + extra("Programmed", "message"))
    say(cond(gw()["conditions"], "Accepted").get("reason") == "ListenersNotValid"
        and cond(gw()["conditions"], "Programmed").get("status") == "True",
        "Gateway Accepted ListenersNotValid, Programmed (other listeners)", json.dumps(gw().get("conditions")))
    nr = writer(F).get("node_report") or {}
    say(nr.get("published") and "extra" in nr.get("listeners", {}).get("infra/gw", {}),
        "%s's sluicectl status shows its report published, the listener failing" % F, json.dumps(nr))
    rl = obj("Lease", "sluice-system", "sluice-node-" + F)
    say(rl.get("metadata", {}).get("labels", {}).get("sluice.io/node-report") == "true"
        and "Address already in use" in rl.get("metadata", {}).get("annotations", {}).get("sluice.io/listeners", "")
        and rl.get("spec", {}).get("holderIdentity") == F,
        "the report Lease is labelled, holder %s, the failure in its annotation" % F, json.dumps(rl.get("metadata")))
    say(reports(L).get("live") == 2 and not reports(L).get("stale"), "the holder sees 2 live reports",
        json.dumps(reports(L)))
    free_port(h)
    t = time.time()
    if wait("the port freed, %s listens again (tried again), the listener Programmed" % F, 15,
            lambda: extra("Programmed") == "True" and extra("Programmed", "reason") == "Programmed"):
        print("INFO healed after %.1f s" % (time.time() - t))

    h = take_port(F, 8081)
    extra_listener(8081)
    wait("taken again (port 8081 on %s), failing" % F, 15, lambda: failing_on_f(8081))
    n = len([w for w in get("/writes") or [] if w["kind"] == "Lease" and w["name"] == "sluice-node-" + F])
    # F stops (SIGSTOP: no renewal, as a dead agent): its report ages out
    os.kill(pids[F], signal.SIGSTOP)
    t = time.time()
    if wait("%s stopped, its report goes stale, the listener's conditions are the plan's again" % F, 15,
            lambda: extra("Programmed") == "True" and extra("Accepted") == "True"):
        print("INFO stale after %.1f s (lease 3 s)" % (time.time() - t))
    say(time.time() - t >= 2, "not before the lease duration", "%.1f s" % (time.time() - t))
    say(F in reports(L).get("stale", []), "the holder lists %s's report as stale" % F, json.dumps(reports(L)))
    # stale for 5 lease durations: the holder deletes it (a node gone for good)
    if wait("stale for 5 lease durations (15 s), %s's report Lease is deleted by the holder" % F, 25,
            lambda: not obj("Lease", "sluice-system", "sluice-node-" + F)):
        print("INFO deleted %.1f s after the stop" % (time.time() - t))
    wait("the holder counts the deletion", 5, lambda: reports(L).get("deleted", 0) >= 1)
    os.kill(pids[F], signal.SIGCONT)
    wait("%s back, its report made again, the listener failing again" % F, 15, lambda: failing_on_f(8081))
    say(obj("Lease", "sluice-system", "sluice-node-" + F).get("metadata", {}).get("labels", {})
        .get("sluice.io/node-report") == "true", "the report Lease is there again", "")
    free_port(h)
    wait("freed, Programmed again", 15, lambda: extra("Programmed") == "True")
    say(len([w for w in get("/writes") or [] if w["kind"] == "Lease" and w["name"] == "sluice-node-" + F]) > n,
        "the report is renewed", "%d writes before" % n)
finally:
    for p in helpers:
        if p.poll() is None:
            p.kill()
            p.wait()

# The holder goes away: the other takes over (3 s Lease) and writes.
os.kill(pids[L], signal.SIGKILL)
t = time.time()
if wait("the other agent takes over the Lease", 20, lambda: writer(F).get("leader")):
    print("INFO take-over after %.1f s" % (time.time() - t))
wait("the Lease's holderIdentity is the new holder's", 5, lambda: holder() == F)
bad_backend("gone")
wait("the new holder writes the next change", 10,
     lambda: route_cond("bad", "ResolvedRefs")["reason"] == "BackendNotFound"
     and route_cond("bad", "Accepted")["observedGeneration"] == 5)
say(writer(F).get("writes", 0) >= 1, "the new holder counts its writes", str(writer(F)))
st = subprocess.run(["sluicectl", "--socket", "%s/%s.sock" % (tmp, F), "status"], capture_output=True,
                    text=True, timeout=5).stdout
for name, want in (("the Lease held", "holding Lease sluice-system/sluice-status as " + F),
                   ("this node's report", "Report:     Lease sluice-system/sluice-node-%s: published" % F),
                   ("the nodes' reports (holder)", "Reports:    ")):
    say(want in st, "sluicectl status: " + name, "no %r in: %s" % (want, st))

def gone(pid):
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True

def released_by(log):
    return "kstatus: released the Lease sluice-system/sluice-status" in open("%s/%s.log" % (tmp, log)).read()

# An upgrade of the holder (a successor pod with --takeover, as the
# DaemonSet's maxSurge): the old agent releases the Lease as it hands over,
# and the successor (another pod name) takes it at its next read.
print("UPGRADE " + F, flush=True)
SUCC = "sluice-agent-" + F + "-new"
wait("the successor is started", 10, lambda: os.path.exists(tmp + "/successor.pid"))
t = time.time()
succ = int(open(tmp + "/successor.pid").read())
if not wait("the old agent hands over and releases the Lease", 15, lambda: released_by("agent-" + F)):
    for line in open("%s/agent-%s.log" % (tmp, F)).read().splitlines()[-12:]:
        print("INFO " + line)
if wait("the successor holds the Lease", 10, lambda: holder() == SUCC):
    print("INFO held by the successor %.1f s after it started (lease 3 s)" % (time.time() - t))
wait("the successor writes status", 10, lambda: writer(F).get("identity") == SUCC and writer(F).get("leader"))
bad_backend("gone-again")
wait("the successor writes the next change", 10,
     lambda: route_cond("bad", "Accepted")["observedGeneration"] == 6)
wait("the old agent exits (drained)", 35, lambda: gone(pids[F]))

# The holder stops (SIGTERM): it gives the Lease up on its way out (no
# holder, 1 s), so a candidate takes it at its next read.
os.kill(succ, signal.SIGTERM)
t = time.time()
if wait("the holder stopped by SIGTERM releases the Lease", 5, lambda: holder() == ""):
    print("INFO released %.1f s after SIGTERM" % (time.time() - t))
spec = obj("Lease", "sluice-system", "sluice-status").get("spec", {})
say(spec.get("leaseDurationSeconds") == 1, "released: a 1 s duration", json.dumps(spec))
wait("the agent logs the release and exits", 5, lambda: released_by("agent-" + F + "-new") and gone(succ))
print("NEW " + F)
PY

t0=$(date +%s)
agent node-1
agent node-2
new=
while read -r verdict rest; do
	case $verdict in
	PASS) pass "$rest" ;;
	FAIL) fail "${rest%%: *}" "${rest#*: }" ;;
	NEW) new=$rest ;;
	UPGRADE)
		agent "$rest" "agent-$rest-new" "sluice-agent-$rest-new" --takeover --drain-seconds 5
		echo "${apid[$rest]}" >"$E2E_TMP/successor.pid.tmp"
		mv "$E2E_TMP/successor.pid.tmp" "$E2E_TMP/successor.pid" ;;
	INFO) echo "    $rest" ;;
	*) echo "$verdict $rest" ;;
	esac
done < <(nsenter --net="/run/netns/$NS" /usr/bin/python3 "$E2E_TMP/kst.py" "$CTL_PORT" "$E2E_TMP" "${apid[node-1]}" \
	"${apid[node-2]}" "/run/netns/$NS" "/run/netns/$NS2" 2>&1)
if [ -z "$new" ]; then
	fail "the checks ran to the end" "$(tail -n 5 "$E2E_TMP"/agent-node-*.log)"
fi
check "the agents logged no error" bash -c "! grep -hE ' err ' $E2E_TMP/agent-node-*.log"
echo "    $(( $(date +%s) - t0 )) s with the agents up"
