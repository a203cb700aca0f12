// SPDX-License-Identifier: Apache-2.0
/* main.c - sluice-agent: wires config -> model -> sync -> BPF maps, the
 * loader, the status socket and the signals into one event loop.
 * The only file with process globals. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sluice/pin.h>

#include "agent.h"
#include "config.h"
#include "gateway.h"
#include "handover.h"
#include "hbone_hdr.h"
#include "kstatus.h"
#include "kube.h"
#include "loader.h"
#include "log.h"
#include "loop.h"
#include "mesh.h"
#include "model.h"
#include "pods.h"
#include "policy.h"
#include "privs.h"
#include "route.h"
#include "polsync.h"
#include "status.h"
#include "sync.h"
#include "tunnel.h"
#include "waypoint.h"
#include "views.h"

#define DEFAULT_CONFIG_DIR "/etc/sluice/config"
#define DEFAULT_CA_DIR "/etc/sluice/ca"
#define MEM_TRIM_MS 10000		/* how often idle memory is looked at (mem_tick) */
#define MEM_TRIM_STEP (4 << 20)		/* heap freed since the last trim that calls for one */

static struct agent agent;
static struct loop *loop;
static struct loop_io signal_io;
static struct status *status_srv, *metrics_srv;
static struct loop_timer mem_timer;
static size_t mem_free_base;		/* the allocator's free bytes after the last trim */

/* Upgrades (handover.h): this agent hands over to a successor, or took over. */
static struct {
	struct handover *srv;		/* the handover socket */
	bool frozen;			/* a successor is starting: the maps are its */
	bool reload_pending;		/* a change came while frozen */
	bool draining;			/* handed over: serving what is open, then exit */
	bool term_pending;		/* SIGTERM while frozen: exit unless handed over */
	unsigned int n_terms;		/* SIGTERMs while draining: a second ends it */
	pid_t successor;
	unsigned int drain_ms;
	uint64_t drain_due;
	unsigned int drain_ticks;	/* drain_tick calls (every 100 ms) */
	struct loop_timer drain_timer;
	struct loop_timer ready_timer;	/* Kubernetes mode: READY at the latest */
	bool exiting;			/* releasing the status Lease, then exit */
	bool releasing;			/* the Lease's release is on its way */
	uint64_t release_due;
	struct loop_timer exit_timer;
} up = { .drain_ms = 30000 };

#define EXIT_RELEASE_MS	1000		/* the longest exit waits for the Lease's release */

static void drain_tick(struct loop_timer *t);
static int adopt_relay(void *arg, const char *meta, const int fd[2], const struct iovec data[2]);

static const char usage[] =
	"usage: sluice-agent [options]            run the node agent\n"
	"       sluice-agent --uninstall [--bpffs-root DIR]\n"
	"       sluice-agent plan --config-dir DIR print the pods a config directory describes\n"
	"       sluice-agent check --config-dir DIR validate a config directory and exit\n"
	"       sluice-agent features               the Gateway API features it supports\n"
	"\n"
	"  --config-dir DIR      Kubernetes YAML/JSON to serve (default " DEFAULT_CONFIG_DIR ")\n"
	"  --kubeconfig FILE     list and watch the Kubernetes API instead (its current-context)\n"
	"  --kube-in-cluster     the same, with the pod's service account (" KUBE_SA_DIR ")\n"
	"  --lease-namespace NS  Kubernetes mode: the namespace of the Lease " KSTATUS_LEASE_NAME " whose\n"
	"                        holder writes Gateway API status (default $POD_NAMESPACE,\n"
	"                        else " KSTATUS_LEASE_NS ")\n"
	"  --lease-duration S    its leaseDurationSeconds (default 15; renewed every third)\n"
	"  --node-name NAME      this node, as Pods' spec.nodeName says (default: hostname)\n"
	"  --bpffs-root DIR      where maps and links are pinned (default " SL_BPFFS_ROOT ")\n"
	"  --cgroup DIR          cgroup v2 directory to attach to (default: the v2 root)\n"
	"  --status-socket PATH  status socket (default " SL_STATUS_SOCK ")\n"
	"  --netns-dir DIR       where pods' network namespaces are named (default " PODS_NETNS_DIR ")\n"
	"  --netns-prefix STR    only namespaces whose name starts with STR (the lab's own)\n"
	"  --procfs DIR          procfs for the sysctls set in pods' namespaces (default /proc;\n"
	"                        in a container, where /proc/sys is read-only: the host's)\n"
	"  --trust-domain TD     SPIFFE trust domain (default cluster.local)\n"
	"  --ca-cert FILE        mesh-ca mode: the CA that signs workload certificates\n"
	"                        (default " DEFAULT_CA_DIR "/ca.crt when it exists)\n"
	"  --ca-key FILE         its key (default: ca.key next to --ca-cert)\n"
	"  --certs-dir DIR       files mode: DIR/<ns>/<sa>/tls.{crt,key} instead of minting\n"
	"  --trust-bundle FILE   trusted roots (default: the CA certificate)\n"
	"  --cert-ttl SECONDS    lifetime of minted certificates (default 86400)\n"
	"  --metrics ADDR:PORT   Prometheus metrics (default 127.0.0.1:15020; off: none)\n"
	"  --no-mesh             Service load balancing only: no capture, no tunnel\n"
	"  --no-access-log       no log line per request through the waypoint\n"
	"  --http-header-timeout DURATION  a request head (each one on a keep-alive\n"
	"                        connection) must arrive within it (default 10s)\n"
	"  --http-idle-timeout DURATION    an idle keep-alive client connection (HTTP/2:\n"
	"                        one without a stream) is closed after it (default 60s)\n"
	"  --gateway-addresses CIDR  addresses for Gateways without spec.addresses, put on\n"
	"                        the node's loopback (one CIDR per family; repeatable)\n"
	"  --no-sockmap          no same-node acceleration: mesh hops inside the node go\n"
	"                        through TCP/IP (sockops + sk_msg off)\n"
	"  --uplink IFNAME       a node uplink: XDP drops there what pods' ingress policy\n"
	"                        denies, before an skb exists (repeatable, at most 4)\n"
	"  --root-namespace NS   Istio's root namespace: its AuthorizationPolicies and\n"
	"                        PeerAuthentications apply mesh-wide (default istio-system)\n"
	"  --policy-scope SCOPE  NetworkPolicy in the kernel for: enrolled (pods in the mesh,\n"
	"                        the default), all (every pod of the node) or none\n"
	"  --ingress-clsact      attach pod_ingress with clsact even where tcx exists\n"
	"  --max-services N      Service frontends (VIP:port:proto) the maps hold (default\n"
	"                        65536, at most 1048576), and 16 backend slots per frontend;\n"
	"                        pinned maps of another size are resized, entries copied\n"
	"  --map-max NAME=N      a hash map's size instead of the built-in one (tests fill\n"
	"                        maps with it; e.g. sl_svc_v1=16; repeatable; wins over\n"
	"                        --max-services)\n"
	"  --log-level LEVEL     err, warn, info or debug (default info)\n"
	"  --takeover            when another agent holds --bpffs-root, take over its\n"
	"                        listening sockets and links and let it drain: an upgrade\n"
	"                        without resets (DaemonSet maxSurge; docs/operations.md)\n"
	"  --drain-seconds N     handed over: serve open connections up to N s, then exit\n"
	"                        (default 30)\n"
	"  --handover-socket P   where a successor asks to take over (default: the status\n"
	"                        socket's path + \".handover\")\n"
	"  --keep-capabilities   keep every capability after set-up (by default the agent\n"
	"                        drops all but the seven it needs: docs/security.md)\n"
	"  --uninstall           detach the programs and remove every pin, then exit\n"
	"  --version\n";

struct options {
	const char *config_dir;
	const char *kubeconfig;	/* Kubernetes mode: a kubeconfig file, or */
	bool kube_in_cluster;	/* the pod's service account */
	const char *lease_ns;	/* NULL: $POD_NAMESPACE, else KSTATUS_LEASE_NS */
	unsigned int lease_s;	/* 0: KSTATUS_LEASE_S */
	const char *node_name;
	struct loader_opts loader;
	const char *status_socket;
	struct mesh_opts mesh;
	const char *metrics;	/* "ip:port" ("[v6]:port"), or NULL: off */
	struct tunnel_addr metrics_addr;
	bool no_mesh;
	enum policy_scope policy_scope;
	const char *uplinks[LOADER_UPLINKS_MAX];
	size_t n_uplinks;
	bool uninstall;
	bool keep_capabilities;
	bool takeover;
	const char *handover_socket;	/* NULL: status_socket + ".handover" */
	const char *cmd;	/* "run", "plan" or "check" */
};

/* "sl_svc_v1=16" into the loader's options: 0, or -EINVAL. */
static int map_max_parse(const char *s, struct loader_opts *lo)
{
	const char *eq = strchr(s, '=');
	unsigned long n;
	char *end;

	if (!eq || eq == s || eq - s >= 16 || lo->n_map_max == LOADER_MAP_MAX_N)
		return -EINVAL;	/* BPF object names hold 15 characters */
	errno = 0;
	n = strtoul(eq + 1, &end, 10);
	if (errno || end == eq + 1 || *end || n < 1 || n > UINT32_MAX)
		return -EINVAL;
	memcpy(lo->map_max[lo->n_map_max].name, s, (size_t)(eq - s));
	lo->map_max[lo->n_map_max++].max_entries = (uint32_t)n;
	return 0;
}

enum {
	OPT_KEEP_CAPABILITIES = 1000, OPT_HTTP_HEADER_TIMEOUT, OPT_HTTP_IDLE_TIMEOUT, OPT_PROCFS, OPT_LEASE_NS, OPT_LEASE_S, OPT_MAP_MAX,
	OPT_MAX_SERVICES, OPT_TAKEOVER, OPT_DRAIN_S, OPT_HANDOVER_SOCKET
};

/* "10", "10s", "2.5s" or "500ms" into milliseconds, 100 ms to 1 hour; -1 when
 * it is none of those. */
static long duration_ms(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v != v)
		return -1;
	if (!strcmp(end, "ms"))
		;
	else if (!*end || !strcmp(end, "s"))
		v *= 1000;
	else
		return -1;
	return v >= 100 && v <= 3600000 ? (long)v : -1;
}

/* Each proxied connection costs the agent a descriptor or more (one per
 * tunnelled connection on each side; up to six on a spliced relay: both
 * sockets, two pipes): the soft limit, often 1024, would cap a node near a
 * thousand connections. Raise it to the hard one
 * (no capability needed), as Envoy and ztunnel do. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		pr_warn("agent: raising the open files limit to %llu: %s", (unsigned long long)rl.rlim_max,
			strerror(errno));
	else
		pr_info("agent: open files limit %llu", (unsigned long long)rl.rlim_cur);
}

/* Set up is done: keep only the capabilities running needs (privs.h). */
static void drop_capabilities(const struct options *o)
{
	char err[160], names[200];
	int r;

	if (o->keep_capabilities) {
		pr_info("agent: --keep-capabilities: every capability kept");
		return;
	}
	r = privs_drop(err, sizeof(err));
	if (r == -EPERM) {
		pr_info("agent: %s", err);
		return;
	}
	if (r) {
		pr_warn("agent: dropping capabilities: %s", err);
		return;
	}
	privs_names(privs_kept_mask(), names, sizeof(names));
	pr_info("agent: capabilities kept: %s; the rest dropped (bounding set too), no_new_privs", names);
}

/* "10.99.0.0/24" or "fd00:99::/64": 0 or -EINVAL. */
static int cidr_parse(const char *s, struct sl_cidr *c)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	char *end;
	long len;

	if (!slash || (size_t)(slash - s) >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = 0;
	if (sl_ip_parse(buf, &c->ip))
		return -EINVAL;
	len = strtol(slash + 1, &end, 10);
	if (*end || len < 1 || len > (c->ip.family == SL_AF_INET ? 31 : 127))
		return -EINVAL;
	c->len = (uint8_t)len;
	return 0;
}

/* ---- configuration ---- */

static void log_diags(const char *what, const struct diags *d)
{
	char buf[1024];

	for (size_t i = 0; i < d->n; i++)
		pr_err("%s: %s", what, diag_str(&d->v[i], buf, sizeof(buf)));
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The objects from the source in use: the Kubernetes API's stores (bad
 * objects skipped there, see kube.h) or the directory (all or nothing). */
static int load_resources(const char *dir, struct sl_resources **res, struct diags *errs)
{
	int err;

	if (agent.kube)
		return kube_resources(agent.kube, res, NULL);
	err = config_load_dir(dir, res, errs);
	if (err && !errs->n)
		diags_add(errs, dir, 0, "cannot read: %s", strerror(-err));
	return err;
}

static const char *config_source(void)
{
	return agent.kube ? "the Kubernetes API" : agent.config_dir;
}

/* Load, validate and resolve the configuration; on success *out is the model.
 * times[0] and [1] get the decode and resolve durations (ms). */
static int build_model(const char *dir, const char *node, struct sl_model **out, struct diags *errs,
		       double times[2])
{
	struct sl_resources *res = NULL;
	double t0 = now_ms();
	int err;

	err = load_resources(dir, &res, errs);
	times[0] = now_ms() - t0;
	if (err)
		return err;
	t0 = now_ms();
	err = model_build(res, node, out, errs);
	times[1] = now_ms() - t0;
	return err;
}

/* Tell pods which local pods to set up now: enrolled ones for the mesh,
 * and the others the policy scope takes (it diffs against what it has). */
static void agent_sync_pods(void)
{
	const struct sl_model *m = agent.model;
	struct pods_spec *want;
	size_t n = 0;

	if (!agent.pods || !m)
		return;
	want = calloc(m->res->n_pods ? m->res->n_pods : 1, sizeof(*want));
	if (!want) {
		pr_err("pods: out of memory");
		return;
	}
	for (size_t i = 0; i < m->res->n_pods; i++) {
		const struct sl_workload *w = &m->workloads[i];
		const struct sl_pod *p = w->pod;

		bool mesh = w->enrolled && agent.tunnel;
		bool policed = agent.policy_scope == POLICY_SCOPE_ALL ||
			       (agent.policy_scope == POLICY_SCOPE_ENROLLED && w->enrolled);

		if (!w->local || !p->n_ips || p->host_network || !(mesh || policed))
			continue;
		want[n].mesh = mesh;
		want[n].ns = p->ns;
		want[n].name = p->name;
		want[n].service_account = p->service_account;
		for (size_t j = 0; j < p->n_ips && j < 2; j++)
			want[n].ips[j] = p->ips[j];
		want[n].n_ips = p->n_ips < 2 ? p->n_ips : 2;
		n++;
	}
	if (pods_set_enrolled(agent.pods, want, n))
		pr_err("pods: cannot apply the enrolled set");
	free(want);
}

/* Read the configuration again; keep the last good one if anything is wrong. */
static void agent_reload(void)
{
	struct sl_model *m = NULL;
	struct diags errs = { 0 };
	struct sync_stats st;
	double times[2] = { 0 };
	int err;

	if (!agent.config_dir && !agent.kube)
		return;
	if (up.frozen || up.draining) {	/* the maps are the successor's */
		up.reload_pending = !up.draining;
		return;
	}
	if (agent.kube && !kube_ready(agent.kube)) {	/* SIGHUP early: a partial set would drop traffic */
		pr_info("config: the Kubernetes API is not fully listed yet; nothing to reload");
		return;
	}
	struct policy *pol = NULL;
	struct route_table *routes = NULL;
	struct polsync_stats pst = { 0 };
	int perr = 0;

	err = build_model(agent.config_dir, agent.node_name, &m, &errs, times);
	if (!err)
		err = sync_check(agent.sync, m, &errs);
	if (!err)
		err = policy_compile(m, agent.node_name, agent.policy_scope, agent.polreg, &pol, &errs);
	if (!err)
		err = route_table_build(m, &routes, &errs);
	if (!err)	/* enrolled clients reach these on the VIP, for the waypoint */
		for (size_t i = 0; i < m->n_frontends; i++)
			if (m->frontends[i].key.proto == SL_IPPROTO_TCP &&
			    route_service_has_l7(routes, m->frontends[i].svc->ns, m->frontends[i].svc->name))
				m->frontends[i].flags |= SL_SVC_F_L7;
	if (err == -ENOMEM && !errs.n)
		diags_add(&errs, NULL, 0, "out of memory");
	if (err) {
		log_diags("config", &errs);
		pr_err("config: %s rejected (%zu problem%s); generation %lu stays in force", config_source(),
		       errs.n, errs.n == 1 ? "" : "s", (unsigned long)agent.generation);
		diags_clear(&agent.errors);
		diags_move(&agent.errors, &errs);
		agent.config_state = CONFIG_ERROR;
		policy_free(pol);
		model_free(m);
		return;
	}
	err = sync_apply(agent.sync, m, &st);
	perr = polsync_apply(agent.polsync, &pol->t, &pst);
	agent.last_polsync = pst;
	agent.polsync_err = perr;
	policy_free(agent.policy);
	agent.policy = pol;
	agent.last_sync = st;
	agent.last_sync_at = time(NULL);
	agent.sync_generation = agent.generation + 1;
	route_table_free(agent.routes);	/* it points into the model */
	agent.routes = routes;
	model_free(agent.model);
	agent.model = m;
	if (agent.gateways)
		gateways_apply(agent.gateways, m, routes);
	if (agent.kstatus && kstatus_update(agent.kstatus, m, routes))
		pr_warn("kstatus: out of memory: status not worked out for generation %lu",
			(unsigned long)agent.generation + 1);
	mesh_gateways_applied(&agent);
	agent.generation++;
	agent.last_good_at = time(NULL);
	agent.config_state = CONFIG_OK;
	diags_clear(&agent.errors);
	if (err)
		diags_add(&agent.errors, NULL, 0, "sync: %zu map operations failed: %s", st.errors,
			  strerror(-err));
	if (perr)
		diags_add(&agent.errors, NULL, 0, "policy sync: %zu map operations failed: %s", pst.errors,
			  strerror(-perr));
	pr_info("config: generation %lu: %zu services, %zu pods, %zu frontends, %zu backends; "
		"decode %.1f ms, resolve %.1f ms, sync %.1f ms (%zu updates, %zu deletes)",
		(unsigned long)agent.generation, m->res->n_services, m->res->n_pods, st.frontends, st.backends,
		times[0], times[1], st.ms, st.updates, st.deletes);
	pr_info("policy: %zu NetworkPolicies (%zu select pods here), %zu endpoints, %zu identities, "
		"%zu rule entries; sync %.1f ms (%zu updates, %zu deletes)",
		pol->n_policies, pol->n_local_policies, pol->n_eps, pol->n_identities, pol->t.n_rules, pst.ms,
		pst.updates, pst.deletes);
	agent_sync_pods();
	/* Kubernetes mode: a successor serves once it has the cluster's state. */
	if (agent.kube && handover_pending())
		handover_ready(loop, adopt_relay, NULL);
	/* Decoding churns the heap; hand what it no longer needs back to the kernel. */
	malloc_trim(0);
}

static void on_kube_changed(void *arg)
{
	(void)arg;
	pr_debug("config: the Kubernetes API changed, rebuilding");
	agent_reload();
}

static void on_config_changed(void *arg)
{
	(void)arg;
	pr_info("config: change in %s, reloading", agent.config_dir);
	agent_reload();
}

/* ---- memory ---- */

/* Give back memory that idle time shows is not needed. glibc keeps what the
 * agent frees (thousands of connections closing, a burst of relay buffers)
 * and only returns the top of the heap by itself, so RSS would stay at the
 * high-water mark. The tunnel drops its unused spares first; then, when the
 * allocator holds MEM_TRIM_STEP more free bytes than after the last trim,
 * malloc_trim hands the free pages back (a walk of the free chunks: cheap at
 * this rate, and never per connection). */
static void mem_tick(struct loop_timer *t)
{
	struct mallinfo2 mi;

	if (agent.tunnel)
		agent.mem_spares_freed += tunnel_mem_trim(agent.tunnel);
	mi = mallinfo2();
	if (mi.fordblks < mem_free_base)
		mem_free_base = mi.fordblks;	/* reused: those pages are resident again */
	if (mi.fordblks > mem_free_base + MEM_TRIM_STEP) {
		malloc_trim(0);
		mem_free_base = mallinfo2().fordblks;
		agent.mem_trims++;
	}
	loop_timer_arm(loop, t, MEM_TRIM_MS);
}

/* ---- status socket ---- */

static json_t *h_status(void *arg, const char *q, int *code)
{
	json_t *st = views_status(&agent);
	struct stat ns;

	(void)arg, (void)q, (void)code;
	/* Which agent answered, for `sluicectl ready` in a surge pod: pids
	 * repeat across containers, pid namespaces do not. */
	if (st && !stat("/proc/self/ns/pid", &ns))
		json_object_set_new(st, "pid_ns", json_integer((json_int_t)ns.st_ino));
	if (st)
		json_object_set_new(st, "handover", json_pack("{s:s, s:s?, s:i}", "state",
			up.draining ? "draining" : up.frozen ? "handing-over" :
			handover_pending() ? "taking-over" : "serving",
			"socket", up.srv ? "listening" : NULL, "successor", (int)up.successor));
	return st;
}

static json_t *h_services(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_services(&agent);
}

static json_t *h_workloads(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_workloads(&agent);
}

static json_t *h_maps(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_maps(&agent);
}

static json_t *h_sockmap(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_sockmap(&agent);
}

static json_t *h_routes(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_routes(&agent);
}

static json_t *h_gateways(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return gateways_json(agent.gateways);
}

static json_t *h_route_check(void *arg, const char *q, int *code)
{
	(void)arg;
	return views_route_check(&agent, q, code);
}

static json_t *h_connections(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_connections(&agent);
}

static json_t *h_policies(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_policies(&agent);
}

static json_t *h_policy_check(void *arg, const char *q, int *code)
{
	(void)arg;
	return views_policy_check(&agent, q, code);
}

static json_t *h_certs(void *arg, const char *q, int *code)
{
	(void)arg, (void)q, (void)code;
	return views_certs(&agent);
}

/* ---- signals ---- */

static void exit_timer_cb(struct loop_timer *t)
{
	(void)t;
	pr_warn("agent: no answer to the Lease's release in %u ms: exiting without it", EXIT_RELEASE_MS);
	loop_stop(loop);
}

static void on_released(void *arg)
{
	(void)arg;
	up.releasing = false;
	if (up.exiting)
		loop_stop(loop);
}

/* Give the status Lease up (exit or handover): another agent writes status
 * at its next read, not a lease duration later. Whether a release is on
 * its way (wait for it up to up.release_due). */
static bool release_lease(void)
{
	up.releasing = kstatus_release(agent.kstatus, on_released, NULL) > 0;
	up.release_due = loop_now_ms() + EXIT_RELEASE_MS;
	return up.releasing;
}

/* Exit once the Lease is released, at most EXIT_RELEASE_MS from now. */
static void agent_exit(void)
{
	if (up.exiting || !release_lease()) {
		loop_stop(loop);
		return;
	}
	up.exiting = true;
	loop_timer_init(&up.exit_timer, exit_timer_cb, NULL);
	loop_timer_arm(loop, &up.exit_timer, EXIT_RELEASE_MS);
}

static void on_signal(struct loop_io *io, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)events;
	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			pr_info("agent: SIGHUP, reloading");
			agent_reload();
		} else if (up.draining && !up.n_terms++) {
			pr_info("agent: signal %u: handed over to pid %d, still draining (up to %llu ms "
				"more; a second signal ends it)", si.ssi_signo, (int)up.successor,
				(unsigned long long)(up.drain_due - loop_now_ms()));
		} else if (up.draining) {
			up.drain_due = loop_now_ms();
			drain_tick(&up.drain_timer);
		} else if (up.frozen) {
			/* Kubernetes may stop the old pod as the new one starts:
			 * exit only if the takeover fails. */
			pr_info("agent: signal %u during a handover: exiting once it is done", si.ssi_signo);
			up.term_pending = true;
		} else {
			pr_info("agent: signal %u, exiting (pinned maps and links keep the datapath up)",
				si.ssi_signo);
			agent_exit();
		}
	}
}

static int setup_signals(void)
{
	sigset_t set;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	return loop_add(loop, &signal_io, fd, EPOLLIN, on_signal, NULL);
}

/* ---- subcommands ---- */

static int cmd_plan(const struct options *o, bool print)
{
	struct sl_model *m = NULL;
	struct diags errs = { 0 };
	char ip[SL_IP_STRLEN];
	int err;

	double times[2];

	err = build_model(o->config_dir, o->node_name, &m, &errs, times);
	if (err) {
		log_diags("config", &errs);
		diags_clear(&errs);
		return 1;
	}
	for (size_t i = 0; print && i < m->res->n_pods; i++) {
		const struct sl_pod *p = &m->res->pods[i];
		const struct sl_ip *v4 = NULL, *v6 = NULL;

		for (size_t j = 0; j < p->n_ips; j++) {
			if (p->ips[j].family == SL_AF_INET)
				v4 = &p->ips[j];
			else
				v6 = &p->ips[j];
		}
		printf("pod %s %s %s", p->ns, p->name, p->node ? p->node : "-");
		printf(" %s", v4 ? sl_ip_str(v4, ip) : "-");
		printf(" %s ", v6 ? sl_ip_str(v6, ip) : "-");
		for (size_t j = 0; j < p->n_ports; j++)
			printf("%s%s/%u", j ? "," : "", p->ports[j].proto == SL_IPPROTO_UDP ? "udp" : "tcp",
			       p->ports[j].port);
		printf("%s ", p->n_ports ? "" : "-");
		for (size_t j = 0; j < p->labels.n; j++)
			printf("%s%s=%s", j ? "," : "", p->labels.v[j].key, p->labels.v[j].value);
		printf("%s\n", p->labels.n ? "" : "-");
	}
	if (!print)
		printf("%s: ok: %zu pods, %zu services, %zu frontends, %zu backends\n", o->config_dir,
		       m->res->n_pods, m->res->n_services, m->n_frontends, m->n_backends_total);
	model_free(m);
	return 0;
}

/* This node's failing Gateway listeners, for its report (kreport.h). */
static json_t *node_failures(void *arg)
{
	(void)arg;
	return gateways_node_failures(agent.gateways);
}

/* A listener healed (or broke) between configurations: report it. */
static void gateways_changed(void *arg)
{
	(void)arg;
	kstatus_node_changed(agent.kstatus);
}

/* The mesh needs workload certificates: without a CA or a certificate
 * directory the agent balances Services only, and says so. */
static int start_mesh(const struct options *o)
{
	static char ca_key[PATH_MAX];
	struct mesh_opts m = o->mesh;
	char *err = NULL;
	int ret;

	if (o->no_mesh) {
		agent.mesh_off = "--no-mesh";
		return 0;
	}
	if (m.identity.mode == IDENTITY_MESH_CA && !m.identity.ca_cert_file) {
		if (access(DEFAULT_CA_DIR "/ca.crt", R_OK)) {
			agent.mesh_off = "no CA (--ca-cert) and no --certs-dir";
			pr_warn("mesh: off: %s; enrolled pods are not captured", agent.mesh_off);
			return 0;
		}
		m.identity.ca_cert_file = DEFAULT_CA_DIR "/ca.crt";
	}
	if (m.identity.mode == IDENTITY_MESH_CA && !m.identity.ca_key_file) {
		const char *slash = strrchr(m.identity.ca_cert_file, '/');
		int dlen = slash ? (int)(slash - m.identity.ca_cert_file + 1) : 0;

		snprintf(ca_key, sizeof(ca_key), "%.*sca.key", dlen, m.identity.ca_cert_file);
		m.identity.ca_key_file = ca_key;
	}
	m.tunnel.trust_domain = m.identity.trust_domain;
	m.gateway.changed = gateways_changed;
	/* splice() reads a socket's TCP queue only, never what sk_msg put in
	 * front of it: relays of accelerated hops read and write. */
	if (!o->loader.no_sockmap)
		m.tunnel.no_splice = true;
	agent.trust_domain = m.identity.trust_domain;
	ret = mesh_start(&agent, loop, &m, &err);
	if (ret)
		pr_err("mesh: %s", err ? err : strerror(-ret));
	free(err);
	return ret;
}

/* NetworkPolicy: the registry, the maps' sync, and the pods module when the
 * mesh did not start it (policy needs the pods' TC programs too). */
static int start_policy(const struct options *o)
{
	struct polsync_maps pm = {
		.id_fd = loader_map_fd(agent.loader, SL_MAP_POLID),
		.ep_fd = loader_map_fd(agent.loader, SL_MAP_POLEP),
		.rule_fd = loader_map_fd(agent.loader, SL_MAP_POLRULE),
		.port_fd = loader_map_fd(agent.loader, SL_MAP_POLPORT),
		.range_fd = loader_map_fd(agent.loader, SL_MAP_POLRANGE),
		.stat_fd = loader_map_fd(agent.loader, SL_MAP_POLSTAT),
		.ev_fd = loader_map_fd(agent.loader, SL_MAP_POLEV),
	};
	int err;

	agent.policy_scope = o->policy_scope;
	err = policy_registry_new(&agent.polreg);
	if (!err)
		err = polsync_new(&agent.polsync, loop, &pm, agent.polreg);
	if (err) {
		pr_err("policy: cannot read the pinned policy maps: %s", strerror(-err));
		return err;
	}
	if (!agent.pods && o->policy_scope != POLICY_SCOPE_NONE) {
		char *why = NULL;

		err = mesh_pods_start(&agent, loop, &o->mesh.pods, &why);
		if (err)
			pr_err("policy: %s", why ? why : strerror(-err));
		free(why);
	}
	return err;
}

static int start_metrics(const struct options *o, struct status **out)
{
	char ip[SL_IP_STRLEN];
	int err;

	if (!o->metrics)
		return 0;
	err = status_new_tcp(out, loop, sl_ip_str(&o->metrics_addr.ip, ip), o->metrics_addr.port);
	if (err) {
		pr_err("metrics: cannot listen on %s: %s", o->metrics, strerror(-err));
		return err;
	}
	return status_route_text(*out, "/metrics", mesh_metrics_text,
				 "text/plain; version=0.0.4; charset=utf-8", &agent);
}

/* Gateway API status, written by whichever agent holds the Lease. The pod's
 * name (two agents on one node during an upgrade), else the node's. */
static int start_kstatus(const struct options *o)
{
	const char *pod = getenv("POD_NAME"), *ns = getenv("POD_NAMESPACE");
	struct kstatus_opts so = {
		.identity = pod && pod[0] ? pod : agent.node_name,
		.ns = o->lease_ns ? o->lease_ns : ns && ns[0] ? ns : KSTATUS_LEASE_NS,
		.lease_s = o->lease_s,
		.pools = o->mesh.gateway.pools,
		.n_pools = o->mesh.gateway.n_pools,
		.node = agent.node_name,
		.node_failures = node_failures,
	};
	int err = kstatus_new(&agent.kstatus, loop, agent.kube, &so);

	if (err)
		pr_err("kstatus: cannot start: %s", strerror(-err));
	return err;
}

/* Kubernetes mode: the API server's objects replace the directory. */
static int start_kube(const struct options *o)
{
	struct kube_opts ko = { 0 };	/* the defaults */
	struct kube_cfg cfg;
	struct diags errs = { 0 };
	int err;

	if (o->kubeconfig)
		err = kube_cfg_load(&cfg, o->kubeconfig, &errs);
	else
		err = kube_cfg_in_cluster(&cfg, KUBE_SA_DIR, &errs);
	if (err) {
		log_diags("kube", &errs);
		diags_clear(&errs);
		return err;
	}
	err = kube_new(&agent.kube, loop, &cfg, &ko, on_kube_changed, NULL);
	kube_cfg_clear(&cfg);
	if (err) {
		pr_err("kube: cannot start: %s", strerror(-err));
		return err;
	}
	pr_info("config: from the Kubernetes API; the pinned maps stay as they are until every "
		"required kind is listed (%zu frontends)", sync_n_frontends(agent.sync));
	return start_kstatus(o);
}

/* ---- upgrades: handing over to a successor (handover.h) ---- */

static void on_handover_freeze(void *arg, pid_t successor)
{
	(void)arg;
	(void)successor;
	up.frozen = true;
	if (agent.pods)
		pods_freeze(agent.pods, true);
}

static void on_handover_abort(void *arg, pid_t successor, const char *why)
{
	(void)arg;
	(void)successor;
	(void)why;
	up.frozen = false;
	if (up.term_pending) {
		agent_exit();
		return;
	}
	if (agent.pods)
		pods_freeze(agent.pods, false);
	if (up.reload_pending) {
		up.reload_pending = false;
		agent_reload();
	}
}

static void waypoint_stats_get_opt(struct waypoint_stats *ws)
{
	*ws = (struct waypoint_stats){ 0 };
	if (agent.waypoint)
		waypoint_stats_get(agent.waypoint, ws);
}

static bool drained(void)
{
	struct waypoint_stats ws;

	waypoint_stats_get_opt(&ws);
	return (!agent.tunnel || tunnel_idle(agent.tunnel)) && !ws.conns_open;
}

/* Exit without undoing anything: capture, pins, links, routes and the
 * listening sockets are the successor's now. */
static void drain_tick(struct loop_timer *t)
{
	struct tunnel_stats ts = { 0 };
	struct waypoint_stats ws;
	bool done = drained();

	/* the successor writes status once the Lease is released: wait for
	 * the answer, at most EXIT_RELEASE_MS */
	if (done && up.releasing && loop_now_ms() < up.release_due) {
		loop_timer_arm(loop, t, 20);
		return;
	}
	if (!done && loop_now_ms() < up.drain_due) {
		/* every 5 s, what the drain waits for (an operator's question) */
		if (agent.tunnel && ++up.drain_ticks % 50 == 0) {
			char open[256];

			tunnel_describe_open(agent.tunnel, open, sizeof(open));
			waypoint_stats_get_opt(&ws);
			pr_info("handover: draining, %llu s left: %s; %llu L7 connections",
				(unsigned long long)((up.drain_due - loop_now_ms()) / 1000), open,
				(unsigned long long)ws.conns_open);
		}
		loop_timer_arm(loop, t, 100);
		return;
	}
	if (agent.tunnel)
		tunnel_stats_get(agent.tunnel, &ts);
	if (agent.waypoint)
		waypoint_flush_log(agent.waypoint);
	waypoint_stats_get_opt(&ws);
	pr_info("handover: drained%s: %llu connections, %llu+%llu HBONE sessions and %llu L7 "
		"connections left (reset), exiting; pid %d serves", done ? "" : " (grace over)",
		(unsigned long long)ts.conns_open, (unsigned long long)ts.hbone_clients,
		(unsigned long long)ts.hbone_servers, (unsigned long long)ws.conns_open, (int)up.successor);
	fflush(NULL);
	_exit(0);
}

static int export_relay(void *arg, const struct tunnel_relay *r)
{
	(void)arg;
	return handover_send_relay(up.srv, r->meta, r->fd, r->data);
}

static int adopt_relay(void *arg, const char *meta, const int fd[2], const struct iovec data[2])
{
	(void)arg;
	if (!agent.tunnel) {
		close(fd[0]);
		close(fd[1]);
		return -EOPNOTSUPP;
	}
	return tunnel_adopt(agent.tunnel, meta, fd, data);
}

static void on_handed_over(void *arg, pid_t successor)
{
	struct tunnel_stats ts = { 0 };
	size_t relays = 0;

	(void)arg;
	up.draining = true;
	up.successor = successor;
	up.drain_due = loop_now_ms() + up.drain_ms;
	handover_stop(up.srv);
	status_stop_accepting(status_srv);
	status_stop_accepting(metrics_srv);
	gateways_stop_accepting(agent.gateways);
	if (agent.tunnel) {
		relays = tunnel_export(agent.tunnel, export_relay, NULL);
		tunnel_drain(agent.tunnel, up.drain_ms);
		tunnel_stats_get(agent.tunnel, &ts);
	}
	if (agent.waypoint)
		waypoint_drain(agent.waypoint);
	release_lease();	/* the successor writes status; drain_tick waits for it */
	pr_info("handover: handed over to pid %d with %zu plaintext relays; draining %llu connections "
		"(up to %u s)", (int)successor, relays, (unsigned long long)ts.conns_open, up.drain_ms / 1000);
	loop_timer_init(&up.drain_timer, drain_tick, NULL);
	loop_timer_arm(loop, &up.drain_timer, 0);
}

static const struct handover_ops handover_ops = {
	.freeze = on_handover_freeze,
	.handed_over = on_handed_over,
	.abort = on_handover_abort,
};

/* Kubernetes mode: READY waits for the first configuration, but not forever
 * (the old agent would thaw: two agents on one root). */
static void ready_tick(struct loop_timer *t)
{
	(void)t;
	if (handover_pending()) {
		pr_warn("handover: no configuration from the API yet; serving with the pinned maps");
		handover_ready(loop, adopt_relay, NULL);
	}
}

static const char *handover_path(const struct options *o, char *buf, size_t len)
{
	if (o->handover_socket)
		return o->handover_socket;
	snprintf(buf, len, "%s.handover", o->status_socket);
	return buf;
}

static int start_handover(const struct options *o)
{
	char path[PATH_MAX];

	return handover_serve(&up.srv, loop, handover_path(o, path, sizeof(path)), &handover_ops, NULL);
}

/* After a takeover: tell the old agent this one serves, now (a config
 * directory was read at start) or once the API is listed. */
static void takeover_ready(void)
{
	if (!handover_pending())
		return;
	if (!agent.kube) {
		handover_ready(loop, adopt_relay, NULL);
		return;
	}
	loop_timer_init(&up.ready_timer, ready_tick, NULL);
	loop_timer_arm(loop, &up.ready_timer, 60000);
}

/* --takeover: before anything is loaded, ask the agent holding the root. */
static int take_over(const struct options *o)
{
	char buf[PATH_MAX];
	const char *path = handover_path(o, buf, sizeof(buf));
	pid_t from = 0;
	int err;

	if (!o->takeover)
		return 0;
	err = handover_request(path, &from);
	if (err == -ENOENT) {
		pr_info("handover: no agent at %s to take over from: starting afresh", path);
		return 0;
	}
	return err;
}

static const struct {
	const char *path;
	status_handler fn;
} status_routes[] = {
	{ "/status", h_status },
	{ "/services", h_services },
	{ "/workloads", h_workloads },
	{ "/maps", h_maps },
	{ "/sockmap", h_sockmap },
	{ "/connections", h_connections },
	{ "/certs", h_certs },
	{ "/policies", h_policies },
	{ "/policy-check", h_policy_check },
	{ "/routes", h_routes },
	{ "/gateways", h_gateways },
	{ "/route-check", h_route_check },
};

static int run_agent(const struct options *o)
{
	struct config_watch *watch = NULL;
	struct sync_maps maps;
	struct stat st;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &agent.started);
	agent.node_name = o->node_name;
	raise_nofile();
	err = loop_new(&loop);
	if (err)
		goto out;
	err = setup_signals();
	if (!err)
		err = take_over(o);
	if (err)
		goto out;
	err = loader_open(&agent.loader, &o->loader);
	if (err)
		goto out;
	for (size_t i = 0; i < o->n_uplinks && !err; i++)
		err = loader_edge_attach(agent.loader, o->uplinks[i]);
	if (err)
		goto out;
	maps = (struct sync_maps){
		.svc_fd = loader_map_fd(agent.loader, SL_MAP_SVC),
		.be_fd = loader_map_fd(agent.loader, SL_MAP_BE),
		.svc_max = loader_map_max(agent.loader, SL_MAP_SVC),
		.be_max = loader_map_max(agent.loader, SL_MAP_BE),
	};
	err = sync_new(&agent.sync, &maps);
	if (err) {
		pr_err("sync: cannot read the pinned maps: %s", strerror(-err));
		goto out;
	}
	err = start_mesh(o);
	if (!err)
		err = start_policy(o);
	if (err)
		goto out;
	err = start_metrics(o, &metrics_srv);
	if (err)
		goto out;
	err = status_new(&status_srv, loop, o->status_socket);
	if (err) {
		pr_err("status: cannot listen on %s: %s", o->status_socket, strerror(-err));
		goto out;
	}
	for (size_t i = 0; i < sizeof(status_routes) / sizeof(status_routes[0]); i++)
		status_route(status_srv, status_routes[i].path, status_routes[i].fn, NULL);
	err = start_handover(o);
	if (err)
		goto out;

	if (o->kubeconfig || o->kube_in_cluster) {
		err = start_kube(o);
		if (err)
			goto out;
	} else if (stat(o->config_dir, &st) || !S_ISDIR(st.st_mode)) {
		pr_warn("config: %s is not a directory: serving what the pinned maps hold (%zu frontends)",
			o->config_dir, sync_n_frontends(agent.sync));
	} else {
		agent.config_dir = o->config_dir;
		err = config_watch_new(&watch, loop, o->config_dir, on_config_changed, NULL);
		if (err)
			pr_warn("config: cannot watch %s (%s): reload with SIGHUP", o->config_dir, strerror(-err));
		agent_reload();
		if (agent.config_state == CONFIG_ERROR)
			pr_warn("config: no valid configuration yet: the pinned maps stay as they are "
				"(%zu frontends)", sync_n_frontends(agent.sync));
	}
	takeover_ready();
	loop_timer_init(&mem_timer, mem_tick, NULL);
	loop_timer_arm(loop, &mem_timer, MEM_TRIM_MS);
	drop_capabilities(o);
	pr_info("agent: %s ready on node %s, status on %s", SL_VERSION, agent.node_name, o->status_socket);
	err = loop_run(loop);
out:
	config_watch_free(watch);
	kstatus_free(agent.kstatus);	/* its requests are queued in kube */
	kube_free(agent.kube);
	handover_free(up.srv);
	status_free(status_srv);
	status_free(metrics_srv);
	mesh_stop(&agent);	/* undoes capture in every pod: the listeners die with us */
	polsync_free(agent.polsync);
	mesh_authz_counts_free(&agent);
	policy_free(agent.policy);
	policy_registry_free(agent.polreg);
	route_table_free(agent.routes);
	model_free(agent.model);
	diags_clear(&agent.errors);
	sync_free(agent.sync);
	loader_free(agent.loader);
	if (signal_io.fd > 0)
		close(signal_io.fd);
	loop_free(loop);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config-dir", required_argument, NULL, 'c' },
		{ "kubeconfig", required_argument, NULL, 'k' },
		{ "kube-in-cluster", no_argument, NULL, 'i' },
		{ "node-name", required_argument, NULL, 'n' },
		{ "bpffs-root", required_argument, NULL, 'b' },
		{ "cgroup", required_argument, NULL, 'g' },
		{ "status-socket", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "netns-dir", required_argument, NULL, 'N' },
		{ "netns-prefix", required_argument, NULL, 'P' },
		{ "trust-domain", required_argument, NULL, 'T' },
		{ "ca-cert", required_argument, NULL, 'C' },
		{ "ca-key", required_argument, NULL, 'K' },
		{ "certs-dir", required_argument, NULL, 'D' },
		{ "trust-bundle", required_argument, NULL, 'B' },
		{ "cert-ttl", required_argument, NULL, 't' },
		{ "metrics", required_argument, NULL, 'm' },
		{ "no-mesh", no_argument, NULL, 'M' },
		{ "no-sockmap", no_argument, NULL, 'S' },
		{ "no-access-log", no_argument, NULL, 'A' },
		{ "gateway-addresses", required_argument, NULL, 'G' },
		{ "policy-scope", required_argument, NULL, 'p' },
		{ "root-namespace", required_argument, NULL, 'R' },
		{ "uplink", required_argument, NULL, 'L' },
		{ "ingress-clsact", no_argument, NULL, 'I' },
		{ "uninstall", no_argument, NULL, 'U' },
		{ "keep-capabilities", no_argument, NULL, OPT_KEEP_CAPABILITIES },
		{ "http-header-timeout", required_argument, NULL, OPT_HTTP_HEADER_TIMEOUT },
		{ "http-idle-timeout", required_argument, NULL, OPT_HTTP_IDLE_TIMEOUT },
		{ "procfs", required_argument, NULL, OPT_PROCFS },
		{ "lease-namespace", required_argument, NULL, OPT_LEASE_NS },
		{ "lease-duration", required_argument, NULL, OPT_LEASE_S },
		{ "map-max", required_argument, NULL, OPT_MAP_MAX },
		{ "max-services", required_argument, NULL, OPT_MAX_SERVICES },
		{ "takeover", no_argument, NULL, OPT_TAKEOVER },
		{ "drain-seconds", required_argument, NULL, OPT_DRAIN_S },
		{ "handover-socket", required_argument, NULL, OPT_HANDOVER_SOCKET },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static char hostname[HOST_NAME_MAX + 1];
	struct options o = {
		.config_dir = DEFAULT_CONFIG_DIR,
		.loader = { .bpffs_root = SL_BPFFS_ROOT },
		.status_socket = SL_STATUS_SOCK,
		.metrics = "127.0.0.1:15020",
		.metrics_addr = { .ip = { .family = SL_AF_INET, .addr.octets = { 127, 0, 0, 1 } },
				  .port = SL_PORT_METRICS },
		.mesh = { .waypoint = { .access_log = true } },
		.cmd = "run",
	};
	unsigned long ttl;
	char *end;
	int opt, lvl;
	unsigned int seed;

	/* endpoint picks (random(), as kube-proxy's) differ from agent to agent
	 * and from run to run: unseeded, every agent would pick the same
	 * sequence */
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (unsigned int)getpid() ^ (unsigned int)time(NULL);
	srandom(seed);

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o.config_dir = optarg;
			break;
		case 'k':
			o.kubeconfig = optarg;
			break;
		case 'i':
			o.kube_in_cluster = true;
			break;
		case 'n':
			o.node_name = optarg;
			break;
		case 'b':
			o.loader.bpffs_root = optarg;
			break;
		case 'g':
			o.loader.cgroup = optarg;
			break;
		case 's':
			o.status_socket = optarg;
			break;
		case 'l':
			lvl = log_level_parse(optarg);
			if (lvl < 0) {
				fprintf(stderr, "sluice-agent: --log-level: expected err, warn, info or debug\n");
				return 2;
			}
			log_set_level((enum log_level)lvl);
			break;
		case 'N':
			o.mesh.pods.netns_dir = optarg;
			break;
		case 'P':
			o.mesh.pods.prefix = optarg;
			break;
		case OPT_PROCFS:
			o.mesh.pods.procfs = optarg;
			break;
		case 'T':
			o.mesh.identity.trust_domain = optarg;
			break;
		case 'C':
			o.mesh.identity.ca_cert_file = optarg;
			break;
		case 'K':
			o.mesh.identity.ca_key_file = optarg;
			break;
		case 'D':
			o.mesh.identity.mode = IDENTITY_FILES;
			o.mesh.identity.certs_dir = optarg;
			break;
		case 'B':
			o.mesh.identity.bundle_file = optarg;
			break;
		case 't':
			ttl = strtoul(optarg, &end, 10);
			/* short lifetimes are for tests of rotation */
			if (*end || ttl < 10 || ttl > 366UL * 86400) {
				fprintf(stderr, "sluice-agent: --cert-ttl: seconds, 10 to 31622400\n");
				return 2;
			}
			o.mesh.identity.cert_ttl_s = (unsigned int)ttl;
			break;
		case 'm':
			/* the same ip:port / [v6]:port form as an HBONE :authority */
			o.metrics = strcmp(optarg, "off") ? optarg : NULL;
			if (o.metrics && hbone_authority_parse(optarg, &o.metrics_addr)) {
				fprintf(stderr, "sluice-agent: --metrics: expected IP:PORT, [IPv6]:PORT or off\n");
				return 2;
			}
			break;
		case 'M':
			o.no_mesh = true;
			break;
		case 'S':
			o.loader.no_sockmap = true;
			break;
		case 'A':
			o.mesh.waypoint.access_log = false;
			break;
		case 'G': {
			struct gateway_opts *go = &o.mesh.gateway;
			struct sl_cidr c;

			if (go->n_pools == GATEWAY_POOLS_MAX || cidr_parse(optarg, &c)) {
				fprintf(stderr, "sluice-agent: --gateway-addresses: a CIDR (10.99.0.0/24), one per family\n");
				return 2;
			}
			go->pools[go->n_pools++] = c;
			break;
		}
		case 'I':
			o.loader.ingress_clsact = true;
			break;
		case 'R':
			agent.root_ns = optarg;
			break;
		case 'L':
			if (o.n_uplinks == LOADER_UPLINKS_MAX || !optarg[0] || strlen(optarg) >= IF_NAMESIZE) {
				fprintf(stderr, "sluice-agent: --uplink: an interface name, at most %d of them\n",
					LOADER_UPLINKS_MAX);
				return 2;
			}
			o.uplinks[o.n_uplinks++] = optarg;
			break;
		case 'p':
			if (!strcmp(optarg, "enrolled")) {
				o.policy_scope = POLICY_SCOPE_ENROLLED;
			} else if (!strcmp(optarg, "all")) {
				o.policy_scope = POLICY_SCOPE_ALL;
			} else if (!strcmp(optarg, "none")) {
				o.policy_scope = POLICY_SCOPE_NONE;
			} else {
				fprintf(stderr, "sluice-agent: --policy-scope: expected enrolled, all or none\n");
				return 2;
			}
			break;
		case 'U':
			o.uninstall = true;
			break;
		case OPT_HTTP_HEADER_TIMEOUT:
		case OPT_HTTP_IDLE_TIMEOUT: {
			long ms = duration_ms(optarg);

			if (ms < 0) {
				fprintf(stderr, "sluice-agent: --%s: a duration from 100ms to 3600s (e.g. 10s, 500ms)\n",
					opt == OPT_HTTP_HEADER_TIMEOUT ? "http-header-timeout" : "http-idle-timeout");
				return 2;
			}
			if (opt == OPT_HTTP_HEADER_TIMEOUT)
				o.mesh.waypoint.header_timeout_ms = (unsigned int)ms;
			else
				o.mesh.waypoint.idle_timeout_ms = (unsigned int)ms;
			break;
		}
		case OPT_KEEP_CAPABILITIES:
			o.keep_capabilities = true;
			break;
		case OPT_LEASE_NS:
			o.lease_ns = optarg;
			break;
		case OPT_LEASE_S:
			ttl = strtoul(optarg, &end, 10);
			if (*end || ttl < 3 || ttl > 3600) {	/* renewals every third: at least a second */
				fprintf(stderr, "sluice-agent: --lease-duration: expected 3 to 3600 seconds\n");
				return 2;
			}
			o.lease_s = (unsigned int)ttl;
			break;
		case OPT_MAP_MAX:
			if (map_max_parse(optarg, &o.loader)) {
				fprintf(stderr, "sluice-agent: --map-max: expected NAME=N (a map name, N >= 1), "
						"at most %d times\n", LOADER_MAP_MAX_N);
				return 2;
			}
			break;
		case OPT_MAX_SERVICES:
			errno = 0;
			ttl = strtoul(optarg, &end, 10);
			if (errno || !*optarg || *end || *optarg == '-' || ttl < 1 || ttl > LOADER_MAX_SERVICES) {
				fprintf(stderr, "sluice-agent: --max-services: expected 1 to %u Service frontends "
						"(default %u)\n", LOADER_MAX_SERVICES, (unsigned int)SL_SVC_MAX);
				return 2;
			}
			o.loader.max_services = (uint32_t)ttl;
			break;
		case OPT_TAKEOVER:
			o.takeover = true;
			break;
		case OPT_DRAIN_S:
			ttl = strtoul(optarg, &end, 10);
			if (!*optarg || *end || ttl > 3600) {
				fprintf(stderr, "sluice-agent: --drain-seconds: expected 0 to 3600 seconds\n");
				return 2;
			}
			up.drain_ms = (unsigned int)ttl * 1000;
			break;
		case OPT_HANDOVER_SOCKET:
			o.handover_socket = optarg;
			break;
		case 'V':
			printf("sluice-agent %s\n", SL_VERSION);
			return 0;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc)
		o.cmd = argv[optind++];
	if (optind < argc || (strcmp(o.cmd, "run") && strcmp(o.cmd, "plan") && strcmp(o.cmd, "check") &&
			      strcmp(o.cmd, "features"))) {
		fputs(usage, stderr);
		return 2;
	}
	if (!o.node_name) {
		if (gethostname(hostname, sizeof(hostname)))
			snprintf(hostname, sizeof(hostname), "localhost");
		o.node_name = hostname;
	}
	if (!strcmp(o.cmd, "plan") || !strcmp(o.cmd, "check"))
		return cmd_plan(&o, !strcmp(o.cmd, "plan"));
	if (!strcmp(o.cmd, "features")) {
		for (const char *const *f = waypoint_features; *f; f++)
			printf("%s\n", *f);
		return 0;
	}
	log_route_libbpf();
	if (o.uninstall)
		return loader_uninstall(&o.loader) ? 1 : 0;
	return run_agent(&o);
}
