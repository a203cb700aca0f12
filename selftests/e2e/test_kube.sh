#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Kubernetes mode end to end: two agents in a network namespace of their own
# (own bpffs roots, own empty cgroup subtrees, no mesh), one reading
# manifests/examples from the directory, the other the same objects from the
# test API server (selftests/tools/sl-kube-api.py, TLS, a bearer token) with
# --kubeconfig. Both must serve the same Services and workloads; a Service
# added, changed and deleted through the API shows in sluicectl; a bad object
# is reported in the status and skipped; a dropped watch comes back. nsenter,
# not `ip netns exec`: that one remounts /sys, hiding bpffs and cgroup2.
. "$(dirname "$0")/lib.sh"
need_root kube

NS=slk-$E2E_ID
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG=$CG2/sluice-kube-$E2E_ID
BPF_DIR=/sys/fs/bpf/sluice-kube-$E2E_ID-dir
BPF_KUBE=/sys/fs/bpf/sluice-kube-$E2E_ID-kube
API=$E2E_TMP/api
pids=()

cleanup() {
	local rc=$?
	# agents first, then the server (no "unexpected eof" noise in their logs)
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	for r in "$BPF_DIR" "$BPF_KUBE"; do
		[ -d "$r" ] && nsenter --net="/run/netns/$NS" sluice-agent --uninstall --bpffs-root "$r" >/dev/null 2>&1
		rm -rf "$r" 2>/dev/null
	done
	rmdir "$CG/dir" "$CG/kube" "$CG" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	return "$rc"
}
trap 'cleanup; e2e_finish' EXIT

if [ -z "$CG2" ] || ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
	skip kube "needs cgroup2 and python3-yaml (to turn the examples into JSON)"
	exit 0
fi
mkdir -p "$API" "$CG/dir" "$CG/kube"
ip netns add "$NS" && nsenter --net="/run/netns/$NS" ip link set lo up	# not ip -n: it fails in a chroot

# The examples as the API server holds them, plus one bad Service.
/usr/bin/python3 - "$E2E_REPO/manifests/examples" >"$E2E_TMP/objects.json" <<'EOF'
import glob, json, sys, yaml
items = []
for f in sorted(glob.glob(sys.argv[1] + "/*.yaml")):
    items += [d for d in yaml.safe_load_all(open(f)) if d]
items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad", "namespace": "demo"},
              "spec": {"clusterIP": "10.96.0.999", "ports": [{"port": 80}]}})
json.dump(items, sys.stdout)
EOF

nsenter --net="/run/netns/$NS" /usr/bin/python3 "$E2E_REPO/selftests/tools/sl-kube-api.py" --dir "$API" \
	--objects "$E2E_TMP/objects.json" --token e2e-token --unserved security.istio.io \
	--lifetime 300 2>"$E2E_TMP/api.log" &
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
    server: https://127.0.0.1:$API_PORT
    certificate-authority: api/ca.crt
users:
- name: agent
  user: {token: e2e-token}
EOF

agent() {	# agent NAME ARGS...
	local name=$1; shift
	nsenter --net="/run/netns/$NS" sluice-agent --node-name node-1 --bpffs-root "/sys/fs/bpf/sluice-kube-$E2E_ID-$name" \
		--cgroup "$CG/$name" --status-socket "$E2E_TMP/$name.sock" --no-mesh --policy-scope none \
		--metrics off "$@" >"$E2E_TMP/agent-$name.log" 2>&1 &
	pids+=($!)
}
sctl() { local name=$1; shift; sluicectl --socket "$E2E_TMP/$name.sock" "$@"; }
generation() { sctl "$1" --json status | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["generation"])'; }
has_gen() { [ "$(generation "$1" 2>/dev/null || echo 0)" -ge "$2" ]; }
ctl_api() { nsenter --net="/run/netns/$NS" curl -s --max-time 5 -X POST --data "$2" "http://127.0.0.1:$CTL_PORT$1" >/dev/null; }

agent dir --config-dir "$E2E_REPO/manifests/examples"
agent kube --kubeconfig "$E2E_TMP/kubeconfig"
KUBE_PID=${pids[-1]}
check "directory agent has a configuration" wait_until 20 has_gen dir 1
check "kube agent has a configuration" wait_until 20 has_gen kube 1
if ! has_gen kube 1; then
	echo "    the kube agent's log:"; tail -n 15 "$E2E_TMP/agent-kube.log" | sed 's/^/    /'
	echo "    the API server's log:"; tail -n 5 "$E2E_TMP/api.log" | sed 's/^/    /'
fi

# svc_id and the like are the map's, not the configuration's: compare what
# the Services and workloads say.
norm() { /usr/bin/python3 -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in ("svc_id", "id", "generation")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(sys.stdin)), sort_keys=True, indent=1))'; }
sctl dir --json services | norm >"$E2E_TMP/svc-dir.json"
sctl kube --json services | norm >"$E2E_TMP/svc-kube.json"
sctl dir --json workloads | norm >"$E2E_TMP/wl-dir.json"
sctl kube --json workloads | norm >"$E2E_TMP/wl-kube.json"
check "same Services from the API as from the directory" diff "$E2E_TMP/svc-dir.json" "$E2E_TMP/svc-kube.json"
check "same workloads from the API as from the directory" diff "$E2E_TMP/wl-dir.json" "$E2E_TMP/wl-kube.json"
check "Services are there at all" grep -q '"echo"' "$E2E_TMP/svc-kube.json"

st=$(sctl kube status)
expect_contains "status: Kubernetes ready" "$st" "(ready)"
expect_contains "status: the bad Service is skipped and named" "$st" "Service demo/bad:1:"
expect_contains "status: security.istio.io not served" "$st" "not-served"
st=$(sctl kube --json status)
expect_contains "status JSON: source kubernetes" "$st" '"source": "kubernetes"'

svc() { printf '{"object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"e2e","namespace":"demo"},"spec":{"clusterIP":"10.96.0.77","ports":[{"port":%s,"targetPort":8080}],"selector":{"app":"echo"}}}}' "$1"; }
ctl_api /apply "$(svc 80)"
check "an added Service shows in sluicectl services" wait_until 10 bash -c "sluicectl --socket $E2E_TMP/kube.sock services | grep -qE '10\.96\.0\.77 +80 '"
ctl_api /apply "$(svc 81)"
check "a changed Service shows" wait_until 10 bash -c "sluicectl --socket $E2E_TMP/kube.sock services | grep -qE '10\.96\.0\.77 +81 '"
ctl_api /drop '{}'
ctl_api /delete '{"kind":"Service","namespace":"demo","name":"e2e"}'
check "a deleted Service goes, after a dropped watch" wait_until 15 bash -c "! sluicectl --socket $E2E_TMP/kube.sock services | grep -q '10.96.0.77'"
ctl_api /expire '{"resource":"services"}'
ctl_api /apply "$(svc 82)"
check "after 410 Gone and a relist, changes still show" wait_until 15 bash -c "sluicectl --socket $E2E_TMP/kube.sock services | grep -qE '10\.96\.0\.77 +82 '"
check "the kube agent logged no error" bash -c "! grep -E ' err ' $E2E_TMP/agent-kube.log"

# --- an upgrade in Kubernetes mode: the successor tells the old agent it is
# ready only once it has listed the API (not on the pinned maps alone)
nsenter --net="/run/netns/$NS" sluice-agent --node-name node-1 --bpffs-root "/sys/fs/bpf/sluice-kube-$E2E_ID-kube" \
	--cgroup "$CG/kube" --status-socket "$E2E_TMP/kube.sock" --no-mesh --policy-scope none \
	--metrics off --kubeconfig "$E2E_TMP/kubeconfig" --takeover --drain-seconds 5 \
	>"$E2E_TMP/agent-kube2.log" 2>&1 &
pids+=($!)
KUBE2_PID=$!
check "upgrade: the first kube agent hands over and exits" wait_until 20 bash -c "! kill -0 $KUBE_PID"
log2=$(cat "$E2E_TMP/agent-kube2.log")
expect_contains "upgrade: the successor took over" "$log2" "handover: took over from pid $KUBE_PID"
check "upgrade: it said READY after its first configuration from the API" /usr/bin/python3 -c '
import sys
log = open(sys.argv[1]).read()
gen, ready = log.find("config: generation 1:"), log.find("handover: serving")
sys.exit(0 if 0 <= gen < ready else 1)' "$E2E_TMP/agent-kube2.log"
status_pid() { sctl kube --json status | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
check "upgrade: the status socket answers from the successor" test "$(status_pid)" = "$KUBE2_PID"
check "upgrade: the Services are still there" bash -c "sluicectl --socket $E2E_TMP/kube.sock services | grep -qE '10\.96\.0\.77 +82 '"
check "upgrade: the successor logged no error" bash -c "! grep -E ' err ' $E2E_TMP/agent-kube2.log"
