#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Check manifests/ against the code it deploys (run by test_manifests.sh).

No cluster is needed: every YAML document is parsed and checked for what the
API server would refuse or the agent would not do, and what the manifests
promise is compared with what the code says, so neither can drift silently:

- RBAC against user/kube.c's kind_defs (every kind it lists and watches);
- the container's capabilities against user/privs.c's privs_kept_mask (and
  docs/security.md's table against both);
- the DaemonSet's flags against `sluice-agent --help`, its probes against
  `sluicectl --help`, its mounts against the paths those flags name;
- the GatewayClass `sluice` against user/route.h's ROUTE_CONTROLLER_NAME;
- the examples with `sluice-agent check`;
- the Containerfile against scripts/deps, the Makefile and the binaries' ldd;
- the CA commands of manifests/README.md, run with openssl.

Prints "[name] PASS|FAIL|SKIP" per check and ends with "N passed, N failed".
"""
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../.."))
AGENT = os.path.join(REPO, "build/sluice-agent")
CTL = os.path.join(REPO, "build/sluicectl")
NS = "sluice-system"

passed = failed = skipped = 0


def result(name, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"[{name}] PASS")
    else:
        failed += 1
        print(f"[{name}] FAIL{': ' + why if why else ''}")
    return ok


def skip(name, why):
    global skipped
    skipped += 1
    print(f"[{name}] SKIP: {why}")


def read(rel):
    with open(os.path.join(REPO, rel)) as f:
        return f.read()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kw)


# ---- what the code says ----

def kube_kinds():
    """(kind, group, resource) of every entry of kind_defs in user/kube.c."""
    src = read("user/kube.c")
    table = re.search(r"kind_defs\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    return re.findall(r'\{\s*"(\w+)",\s*"([\w.]*)",\s*"\w+",\s*"(\w+)"', table.group(1)) if table else []


def kept_caps():
    """CAP_* names in privs_kept_mask() of user/privs.c, without the prefix."""
    body = re.search(r"uint64_t privs_kept_mask\(void\)\s*\{(.*?)\}", read("user/privs.c"), re.S)
    return sorted(set(re.findall(r"CAP_BIT\(CAP_(\w+)\)", body.group(1)))) if body else []


def security_doc_caps():
    """Capabilities in the 'kept' table of docs/security.md."""
    sec = read("docs/security.md")
    part = sec.split("## Privileges", 1)[-1].split("\n## ", 1)[0]
    caps = set()
    for line in part.splitlines():
        if line.startswith("| CAP_"):
            caps.update(re.findall(r"CAP_(\w+)", line.split("|")[1]))
    return sorted(caps)


def controller_name():
    m = re.search(r'#define\s+ROUTE_CONTROLLER_NAME\s+"([^"]+)"', read("user/route.h"))
    return m.group(1) if m else None


def c_define(rel, name):
    m = re.search(r'#define\s+' + name + r'\s+"([^"]+)"', read(rel))
    return m.group(1) if m else None


def long_flags(binary):
    """--flags named in a binary's --help (for the agent, its usage text)."""
    try:
        out = run([binary, "--help"])
    except OSError:
        return None
    return set(re.findall(r"--([a-z][a-z0-9-]*)", out.stdout + out.stderr))


def ctl_commands():
    out = run([CTL, "--help"])
    text = out.stdout.split("commands:", 1)[-1].split("options:", 1)[0]
    return set(re.findall(r"^  ([a-z][a-z-]*)", text, re.M))


# ---- the manifests ----

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "GatewayClass"}
NAMESPACED = {"ServiceAccount", "Role", "RoleBinding", "DaemonSet", "Secret", "ConfigMap"}
API_VERSIONS = {
    "Namespace": "v1", "ServiceAccount": "v1", "Secret": "v1", "ConfigMap": "v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
    "DaemonSet": "apps/v1", "GatewayClass": "gateway.networking.k8s.io/v1",
}


def load_manifests():
    """(file, docs) of manifests/*.y*ml, the files kubectl apply -f manifests/ reads."""
    files = sorted(glob.glob(os.path.join(REPO, "manifests", "*.yaml")) +
                   glob.glob(os.path.join(REPO, "manifests", "*.yml")) +
                   glob.glob(os.path.join(REPO, "manifests", "*.json")))
    out = []
    for f in files:
        with open(f) as fh:
            out.append((os.path.basename(f), [d for d in yaml.safe_load_all(fh) if d is not None]))
    return out


def check_docs(files):
    problems = []
    for name, docs in files:
        if not re.match(r"^\d\d-[a-z0-9-]+\.yaml$", name):
            problems.append(f"{name}: not NN-name.yaml (apply order)")
        if not docs:
            problems.append(f"{name}: no objects")
        for i, d in enumerate(docs):
            where = f"{name}#{i}"
            if not isinstance(d, dict):
                problems.append(f"{where}: not a mapping")
                continue
            kind, meta = d.get("kind"), d.get("metadata") or {}
            if kind not in API_VERSIONS:
                problems.append(f"{where}: unexpected kind {kind!r}")
            elif d.get("apiVersion") != API_VERSIONS[kind]:
                problems.append(f"{where}: {kind} apiVersion {d.get('apiVersion')!r}, want {API_VERSIONS[kind]}")
            if not meta.get("name") or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", str(meta["name"])):
                problems.append(f"{where}: metadata.name missing or not a DNS name")
            if kind in CLUSTER_SCOPED and "namespace" in meta:
                problems.append(f"{where}: {kind} is cluster-scoped but has a namespace")
            if kind in NAMESPACED and meta.get("namespace") != NS:
                problems.append(f"{where}: {kind} {meta.get('name')} not in namespace {NS}")
    return problems


def objs(files, kind):
    return [d for _, docs in files for d in docs if isinstance(d, dict) and d.get("kind") == kind]


def first_file_of(files, kind):
    for name, docs in files:
        if any(isinstance(d, dict) and d.get("kind") == kind for d in docs):
            return name
    return None


def check_order(files):
    """The namespace first; the service account and RBAC before the DaemonSet."""
    ns, sa, ds = (first_file_of(files, k) for k in ("Namespace", "ServiceAccount", "DaemonSet"))
    if not ns or files[0][0] != ns:
        return f"the Namespace is not in the first file ({files[0][0] if files else '-'})"
    if not sa or not ds or sa > ds:
        return f"ServiceAccount ({sa}) must apply before the DaemonSet ({ds})"
    return None


def check_rbac(files, kinds):
    problems = []
    crs = [c for c in objs(files, "ClusterRole") if c["metadata"]["name"] == "sluice-agent"]
    if len(crs) != 1:
        return ["no ClusterRole sluice-agent"]
    rules = crs[0].get("rules") or []
    grants = {}		# (group, resource) -> verbs
    for r in rules:
        for key in ("apiGroups", "resources", "verbs"):
            if "*" in (r.get(key) or []):
                problems.append(f"a rule has '*' in {key}")
        if r.get("resourceNames") or r.get("nonResourceURLs"):
            problems.append("unexpected resourceNames/nonResourceURLs")
        for g in r.get("apiGroups") or []:
            for res in r.get("resources") or []:
                grants.setdefault((g, res), set()).update(r.get("verbs") or [])
    watched = {(g, res) for _, g, res in kinds}
    for kind, g, res in kinds:
        if grants.get((g, res)) != {"list", "watch"}:
            problems.append(f"{kind} ({g or 'core'}/{res}): verbs {sorted(grants.get((g, res), []))}, "
                            "want exactly list, watch (kube.c lists and watches it)")
    # the kinds whose status kstatus.c writes back (its kst_kinds table)
    kst = open(os.path.join(REPO, "user/kstatus.c")).read()
    status = {("gateway.networking.k8s.io", f"{r}/status")
              for r in re.findall(r'\{ "\w+", "v1\w*", "(\w+)", (?:true|false), (?:true|false) \}', kst)}
    if len(status) < 5:
        problems.append(f"kstatus.c's kst_kinds: found only {sorted(status)}")
    for key in status:
        if grants.get(key) != {"patch", "update"}:
            problems.append(f"{key[1]}: verbs {sorted(grants.get(key, []))}, want patch, update (status write-back)")
    for key, verbs in grants.items():
        if key not in watched and key not in status:
            problems.append(f"{key[0] or 'core'}/{key[1]} ({sorted(verbs)}): granted but the agent neither "
                            "watches it (kube.c) nor writes its status")
    # the binding
    crbs = [b for b in objs(files, "ClusterRoleBinding") if b.get("roleRef", {}).get("name") == "sluice-agent"]
    if not crbs or not any({"kind": "ServiceAccount", "name": "sluice-agent", "namespace": NS}.items()
                           <= s.items() for b in crbs for s in b.get("subjects") or []):
        problems.append("no ClusterRoleBinding of ClusterRole sluice-agent to ServiceAccount sluice-system/sluice-agent")
    # leases: a namespaced Role, bound
    roles = objs(files, "Role")
    lease_rules = [r for role in roles for r in role.get("rules") or []
                   if "leases" in (r.get("resources") or [])]
    if len(lease_rules) != 1 or lease_rules[0].get("apiGroups") != ["coordination.k8s.io"] or \
            set(lease_rules[0].get("verbs") or []) != {"get", "list", "create", "update", "delete"}:
        problems.append("want one Role rule: coordination.k8s.io leases get, list (node reports), create, "
                        "update, delete (stale node reports)")
    for role in roles:
        name = role["metadata"]["name"]
        if not any(b.get("roleRef", {}).get("kind") == "Role" and b["roleRef"].get("name") == name and
                   b["metadata"].get("namespace") == role["metadata"].get("namespace") and
                   any(s.get("kind") == "ServiceAccount" and s.get("name") == "sluice-agent" and
                       s.get("namespace") == NS for s in b.get("subjects") or [])
                   for b in objs(files, "RoleBinding")):
            problems.append(f"Role {name} is not bound to the agent's ServiceAccount in its namespace")
    return problems


def mount_of(ds_spec, container, path):
    """(volumeMount, volume) whose mountPath is path or holds it."""
    vols = {v["name"]: v for v in ds_spec.get("volumes") or []}
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if not best or len(mp) > len(best[0]["mountPath"]):
                best = (m, vols.get(m["name"]))
    return best


def flag_values(args):
    """{flag: value} from --flag=value and --flag value."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out[k] = v
        elif a.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else True
            out[a[2:]] = nxt
            i += 0 if nxt is True else 1
        i += 1
    return out


def check_daemonset(files, caps_kept, agent_flags, ctl_cmds):
    """Returns {check name: problem list}."""
    res = {}
    dss = objs(files, "DaemonSet")
    if len(dss) != 1:
        return {"daemonset: one DaemonSet": [f"{len(dss)} DaemonSets"]}
    ds = dss[0]
    spec = ds.get("spec") or {}
    tmpl = spec.get("template") or {}
    pod = tmpl.get("spec") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    res["daemonset: selector matches the template's labels"] = \
        [] if sel and sel.items() <= labels.items() else [f"selector {sel} vs labels {labels}"]
    sas = {s["metadata"]["name"] for s in objs(files, "ServiceAccount")}
    res["daemonset: runs as the ServiceAccount defined here"] = \
        [] if pod.get("serviceAccountName") in sas else [f"serviceAccountName {pod.get('serviceAccountName')!r}"]
    cs = pod.get("containers") or []
    if len(cs) != 1:
        res["daemonset: one container"] = [f"{len(cs)} containers"]
        return res
    c = cs[0]
    p = []
    if not c.get("image"):
        p.append("no image")
    if not c.get("command") and not c.get("args"):
        p.append("no command or args")
    res["daemonset: image and command"] = p

    args = [str(a) for a in (c.get("command") or [])[1:] + (c.get("args") or [])]
    flags = flag_values(args)
    if agent_flags is None:
        skip("daemonset: every flag is one sluice-agent --help lists", "build/sluice-agent not built")
    else:
        unknown = [f for f in flags if f not in agent_flags]
        res["daemonset: every flag is one sluice-agent --help lists"] = [f"--{f}" for f in unknown]
    p = []
    if "kube-in-cluster" not in flags:
        p.append("no --kube-in-cluster")
    env = {e["name"]: e for e in c.get("env") or []}
    if flags.get("node-name") != "$(NODE_NAME)":
        p.append(f"--node-name is {flags.get('node-name')!r}, want $(NODE_NAME) (the hostname need not be the Node's name)")
    if ((env.get("NODE_NAME") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") != "spec.nodeName":
        p.append("env NODE_NAME is not the downward API's spec.nodeName")
    res["daemonset: Kubernetes mode and the node's name"] = p

    # host namespaces and privileges
    sc = c.get("securityContext") or {}
    p = []
    if pod.get("hostNetwork") is not True:
        p.append("hostNetwork is not true")
    if pod.get("hostPID"):
        p.append("hostPID: the agent finds pods' netns under /run/netns, not /proc/<pid>/ns")
    if sc.get("privileged"):
        p.append("privileged: capabilities are listed instead")
    res["daemonset: host network, no host PID, not privileged"] = p
    capsc = sc.get("capabilities") or {}
    add = sorted(str(x).upper().removeprefix("CAP_") for x in capsc.get("add") or [])
    want = sorted(set(caps_kept) | {"SETPCAP"})
    p = []
    if [str(x).upper() for x in capsc.get("drop") or []] != ["ALL"]:
        p.append(f"drop is {capsc.get('drop')}, want [ALL]")
    if add != want:
        p.append(f"add {add}, want user/privs.c's kept set + SETPCAP (to drop the rest): {want}")
    if not caps_kept:
        p.append("could not read privs_kept_mask() in user/privs.c")
    res["daemonset: capabilities = privs.c's kept set + SETPCAP"] = p
    p = []
    if sc.get("allowPrivilegeEscalation") is False and "SYS_ADMIN" in add:
        p.append("allowPrivilegeEscalation: false with SYS_ADMIN is refused by the API server")
    for m in c.get("volumeMounts") or []:
        if m.get("mountPropagation") == "Bidirectional" and not sc.get("privileged"):
            p.append(f"{m['mountPath']}: Bidirectional propagation is refused outside privileged containers")
    if sc.get("runAsUser") != 0:
        p.append("runAsUser is not 0 (the agent drops privileges itself, as root)")
    res["daemonset: a securityContext the API server accepts"] = p

    # probes
    p = []
    sock = flags.get("status-socket") or c_define("user/status.h", "SL_STATUS_SOCK")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        cmd = ((c.get(probe) or {}).get("exec") or {}).get("command")
        if not cmd:
            p.append(f"no {probe} exec command")
            continue
        if os.path.basename(cmd[0]) != "sluicectl":
            p.append(f"{probe}: not sluicectl")
            continue
        pf = flag_values(cmd[1:])
        sub = [a for a in cmd[1:] if not a.startswith("-") and a not in pf.values()]
        if pf.get("socket") != sock:
            p.append(f"{probe}: --socket {pf.get('socket')!r}, the agent's is {sock!r}")
        if ctl_cmds is not None and (not sub or sub[0] not in ctl_cmds):
            p.append(f"{probe}: {sub[:1]} is no sluicectl command ({sorted(ctl_cmds)})")
        if probe == "readinessProbe" and sub[:1] != ["ready"]:
            p.append("readinessProbe: want `sluicectl ready` (exits 1 until the first sync)")
    res["daemonset: startup, liveness and readiness probes with sluicectl"] = p
    if ctl_cmds is None:
        skip("daemonset: probe commands exist", "build/sluicectl not built")

    # mounts
    p = []
    names = [m["name"] for m in c.get("volumeMounts") or []]
    vols = {v["name"] for v in pod.get("volumes") or []}
    p += [f"volumeMount {n} has no volume" for n in names if n not in vols]
    p += [f"volume {n} is not mounted" for n in vols if n not in names]

    def host(path, want_host, what, propagation=None):
        mv = mount_of(pod, c, path)
        if not mv or not mv[1]:
            p.append(f"{path} ({what}): not mounted")
            return
        m, v = mv
        hp = (v.get("hostPath") or {}).get("path")
        if hp is None or hp.rstrip("/") + path[len(m["mountPath"].rstrip("/")):] != want_host:
            p.append(f"{path} ({what}): from {hp!r}, want the host's {want_host}")
        if propagation and m.get("mountPropagation") != propagation:
            p.append(f"{path} ({what}): mountPropagation {m.get('mountPropagation')!r}, want {propagation}")

    bpffs = flags.get("bpffs-root") or c_define("include/sluice/pin.h", "SL_BPFFS_ROOT")
    host(bpffs, bpffs, "pinned maps and links: the host's bpffs, so they outlive the pod", "HostToContainer")
    if "cgroup" in flags:
        host(flags["cgroup"], "/sys/fs/cgroup", "--cgroup: the host's cgroup v2 root")
    else:
        p.append("no --cgroup: the container's own /sys/fs/cgroup is its cgroup namespace, not the node's")
    netns = flags.get("netns-dir") or c_define("user/pods.h", "PODS_NETNS_DIR")
    host(netns, "/run/netns", "pods' network namespaces", "HostToContainer")
    if "procfs" in flags:
        host(flags["procfs"], "/proc", "--procfs: pods' sysctls (the container's /proc/sys is read-only)")
    else:
        p.append("no --procfs: writing pods' sysctls through the container's read-only /proc/sys fails")
    host(os.path.dirname(sock), os.path.dirname(sock), "the status socket, for sluicectl on the node")
    ca_dir = c_define("user/main.c", "DEFAULT_CA_DIR")
    mv = mount_of(pod, c, (flags.get("ca-cert") and os.path.dirname(flags["ca-cert"])) or ca_dir)
    if not mv or not mv[1] or (mv[1].get("secret") or {}).get("secretName") != "sluice-ca":
        p.append(f"the agent's CA directory ({ca_dir}) is not the Secret sluice-ca")
    res["daemonset: volumes for bpffs, cgroup, netns, procfs, status socket, CA"] = p

    # scheduling and updates
    p = []
    ru = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {})
    if (spec.get("updateStrategy") or {}).get("type") != "RollingUpdate":
        p.append("updateStrategy is not RollingUpdate")
    surge = ru.get("maxSurge", 0) not in (0, "0", "0%")
    if "takeover" in flags:
        # the surge pod's agent takes over the old one's sockets (no reset);
        # the old pod goes once the new one is ready, draining meanwhile
        if not surge:
            p.append("--takeover without maxSurge: the old agent stops before the new one can take over")
        if ru.get("maxUnavailable", 1) not in (0, "0", "0%"):
            p.append("--takeover with maxUnavailable above 0: a node's agent is stopped, not taken over from")
        drain = int(flags.get("drain-seconds", 30)) if str(flags.get("drain-seconds", 30)).isdigit() else 30
        grace = pod.get("terminationGracePeriodSeconds")
        if isinstance(grace, int) and grace <= drain:
            p.append(f"terminationGracePeriodSeconds {grace} not above the drain ({drain} s): "
                     "the kubelet would SIGKILL a draining agent")
    elif surge:
        p.append("maxSurge above 0 without --takeover: a second agent on the node stops at start (flock on the bpffs root)")
    if pod.get("priorityClassName") != "system-node-critical":
        p.append("priorityClassName is not system-node-critical")
    if not any(t.get("operator") == "Exists" and not t.get("key") and not t.get("effect")
               for t in pod.get("tolerations") or []):
        p.append("no toleration of every taint (operator: Exists)")
    if not isinstance(pod.get("terminationGracePeriodSeconds"), int):
        p.append("no terminationGracePeriodSeconds")
    r = c.get("resources") or {}
    if not (r.get("requests") or {}).get("cpu") or not (r.get("requests") or {}).get("memory") or \
            not (r.get("limits") or {}).get("memory"):
        p.append("resources: want cpu and memory requests and a memory limit")
    res["daemonset: rolling update (surge only with --takeover), priority, tolerations, resources"] = p
    return res


def check_gatewayclasses(files):
    gcs = {g["metadata"]["name"]: (g.get("spec") or {}).get("controllerName") for g in objs(files, "GatewayClass")}
    want = controller_name()
    p = []
    if not want:
        p.append("no ROUTE_CONTROLLER_NAME in user/route.h")
    if gcs.get("sluice") != want:
        p.append(f"sluice: controllerName {gcs.get('sluice')!r}, the agent serves {want!r}")
    if "sluice-waypoint" not in gcs:
        p.append("no GatewayClass sluice-waypoint")
    elif not gcs["sluice-waypoint"] or gcs["sluice-waypoint"] == want:
        p.append("sluice-waypoint: its controllerName must not be the Gateway one (no node listeners for waypoints)")
    return p


def check_examples():
    res = {}
    for d in ("manifests/examples", "manifests/examples-mesh"):
        out = run([AGENT, "check", "--config-dir", os.path.join(REPO, d)])
        res[f"examples: sluice-agent check {d}"] = \
            [] if out.returncode == 0 else [(out.stderr or out.stdout).strip().splitlines()[-1:]]
    docs = []
    for f in sorted(glob.glob(os.path.join(REPO, "manifests/examples-mesh/*.yaml"))):
        with open(f) as fh:
            docs += [d for d in yaml.safe_load_all(fh) if d]
    p = []
    if not any(d["kind"] == "Namespace" and (d["metadata"].get("labels") or {}).get("sluice.io/dataplane-mode") ==
               "ambient" for d in docs):
        p.append("no Namespace labelled sluice.io/dataplane-mode=ambient")
    canary = [d for d in docs if d["kind"] == "HTTPRoute" and
              any(pr.get("kind") == "Service" for pr in d["spec"].get("parentRefs") or []) and
              any(len([b for b in r.get("backendRefs") or [] if b.get("weight")]) >= 2
                  for r in d["spec"].get("rules") or [])]
    if not canary:
        p.append("no HTTPRoute on a Service with a weighted split")
    if not any(d["kind"] == "AuthorizationPolicy" for d in docs):
        p.append("no AuthorizationPolicy")
    res["examples: mesh namespace, canary HTTPRoute, AuthorizationPolicy"] = p
    return res


def deps_build_group():
    src = read("scripts/deps")
    m = re.search(r"# build\n(.*?)\n\t# ", src, re.S)
    return sorted(m.group(1).split()) if m else []


def containerfile_stages():
    """[(from, [packages installed])] per stage of the Containerfile."""
    text = read("Containerfile").replace("\\\n", " ")
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            stages.append((line.split()[1], [], []))
        elif line.startswith("RUN ") and stages:
            for part in line[4:].split("&&"):
                words = shlex.split(part)
                if "apt-get" in words and "install" in words:
                    stages[-1][1].extend(w for w in words[words.index("install") + 1:] if not w.startswith("-"))
                stages[-1][2].append(part.strip())
        elif line.startswith("COPY ") and stages:
            stages[-1][2].append(line)
    return stages


def check_containerfile(ds_command):
    res = {}
    stages = containerfile_stages()
    p = []
    if len(stages) != 2 or stages[0][0] != "docker.io/library/debian:12" or \
            stages[1][0] != "docker.io/library/debian:12-slim":
        p.append(f"stages {[s[0] for s in stages]}, want debian:12 then debian:12-slim")
    res["containerfile: two stages, debian:12 and debian:12-slim"] = p
    if len(stages) != 2:
        return res
    want = deps_build_group()
    got = sorted(stages[0][1])
    res["containerfile: build packages = scripts/deps' build group"] = \
        [] if want and got == want else [f"{got} vs {want}"]
    # make targets and what they produce
    mk = [c for c in stages[0][2] if c.startswith("make ")]
    p = []
    if not mk:
        p.append("no make in the build stage")
    else:
        targets = [w for w in shlex.split(mk[0])[1:] if "=" not in w and not w.startswith("-")]
        dry = run(["make", "-n", "-B", "-C", REPO] + targets)
        for b in ("build/sluice-agent", "build/sluicectl"):
            if f"-o {b} " not in dry.stdout + " ":
                p.append(f"make {' '.join(targets)} does not link {b}")
    copies = " ".join(c for c in stages[1][2] if c.startswith("COPY"))
    for b in ("sluice-agent", "sluicectl"):
        if f"/src/build/{b}" not in copies or "/usr/bin/" not in copies:
            p.append(f"{b} is not copied to /usr/bin/")
    if ds_command and ds_command[0] != "/usr/bin/sluice-agent":
        p.append(f"the DaemonSet runs {ds_command[0]}, the image has /usr/bin/sluice-agent")
    res["containerfile: make targets build what is copied and run"] = p
    # runtime libraries: every library the binaries link comes from a package installed
    if not (os.access(AGENT, os.X_OK) and os.access(CTL, os.X_OK)):
        skip("containerfile: runtime packages hold every library the binaries link", "not built")
        return res
    libs = set()
    for b in (AGENT, CTL):
        for line in run(["ldd", b]).stdout.splitlines():
            m = re.search(r"=>\s+(/\S+)", line)
            if m:
                libs.add(m.group(1))
    # dpkg knows a library by the path its package ships: /lib/... or
    # /usr/lib/... (merged /usr), whichever ldd did not say.
    paths = set()
    for lib in libs:
        paths |= {lib, lib[4:] if lib.startswith("/usr/") else "/usr" + lib}
    out = run(["dpkg", "-S"] + sorted(paths))
    pkgs = set()
    p = []
    for lib in sorted(libs):
        owners = {l.split(":")[0] for l in out.stdout.splitlines()
                  if l.endswith(" " + lib) or l.endswith(" " + lib.removeprefix("/usr")) or
                  l.endswith(" /usr" + lib)}
        if not owners:
            p.append(f"{os.path.basename(lib)}: no package owns it here")
        pkgs |= owners
    missing = sorted(x for x in pkgs - set(stages[1][1]) if x not in ("libc6",))
    if missing:
        p.append(f"runtime stage lacks {missing}")
    res["containerfile: runtime packages hold every library the binaries link"] = p
    return res


def check_ca_commands():
    readme = read("manifests/README.md")
    m = re.search(r"<!-- ca-commands.*?-->\s*```sh\n(.*?)```\s*<!-- /ca-commands -->", readme, re.S)
    if not m:
        return ["no ca-commands block in manifests/README.md"]
    p = []
    with tempfile.TemporaryDirectory() as d:
        out = run(["bash", "-euc", m.group(1)], cwd=d)
        if out.returncode:
            return [f"the commands fail: {out.stderr.strip()[-200:]}"]
        text = run(["openssl", "x509", "-in", os.path.join(d, "ca.crt"), "-noout", "-text"]).stdout
        if "CA:TRUE" not in text or "Certificate Sign" not in text:
            p.append("ca.crt is not CA:TRUE with keyCertSign (the agent refuses it)")
        k = run(["openssl", "pkey", "-in", os.path.join(d, "ca.key"), "-pubout"]).stdout
        c = run(["openssl", "x509", "-in", os.path.join(d, "ca.crt"), "-noout", "-pubkey"]).stdout
        if not k or k != c:
            p.append("ca.key does not match ca.crt")
        if os.stat(os.path.join(d, "ca.key")).st_mode & 0o077:
            p.append("ca.key is readable by others")
    if not re.search(r"-n sluice-system create secret generic sluice-ca --from-file=ca.crt --from-file=ca.key", readme):
        p.append("no `kubectl -n sluice-system create secret generic sluice-ca --from-file=ca.crt --from-file=ca.key`")
    return p


def main():
    try:
        files = load_manifests()
    except yaml.YAMLError as e:
        result("manifests: every document parses", False, str(e).replace("\n", " "))
        return
    result("manifests: every document parses", bool(files), "no manifests/*.yaml")
    prob = check_docs(files)
    result("manifests: apiVersion, kind, name, namespace of every object", not prob, "; ".join(prob))
    why = check_order(files)
    result("manifests: apply order (namespace, RBAC, then the DaemonSet)", not why, why or "")

    kinds = kube_kinds()
    result("rbac: kube.c's kind_defs read", len(kinds) >= 4, f"{len(kinds)} kinds found in user/kube.c")
    prob = check_rbac(files, kinds)
    result("rbac: list+watch of exactly kube.c's kinds, status patch/update, leases in sluice-system",
           not prob, "; ".join(prob))

    caps = kept_caps()
    doc = security_doc_caps()
    result("capabilities: docs/security.md's table = privs.c's kept set", caps and doc == caps,
           f"doc {doc} vs privs.c {caps}")
    agent_flags = long_flags(AGENT) if os.access(AGENT, os.X_OK) else None
    ctl_cmds = ctl_commands() if os.access(CTL, os.X_OK) else None
    for name, prob in check_daemonset(files, caps, agent_flags, ctl_cmds).items():
        result(name, not prob, "; ".join(str(x) for x in prob))

    prob = check_gatewayclasses(files)
    result("gatewayclasses: sluice has the agent's controllerName, sluice-waypoint another", not prob,
           "; ".join(prob))

    if os.access(AGENT, os.X_OK):
        for name, prob in check_examples().items():
            result(name, not prob, "; ".join(str(x) for x in prob))
    else:
        skip("examples", "build/sluice-agent not built (make)")

    ds = objs(files, "DaemonSet")
    ds_cmd = ds[0]["spec"]["template"]["spec"]["containers"][0].get("command") if ds else None
    for name, prob in check_containerfile(ds_cmd).items():
        result(name, not prob, "; ".join(str(x) for x in prob))

    prob = check_ca_commands()
    result("ca: manifests/README.md's openssl commands make a CA the agent takes", not prob, "; ".join(prob))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:		# a crash is a failure, with the tally still printed
        result("check_manifests.py ran to the end", False, f"{type(e).__name__}: {e}")
    tail = f", {skipped} skipped" if skipped else ""
    print(f"{passed} passed, {failed} failed{tail}")
    sys.exit(1 if failed else 0)
