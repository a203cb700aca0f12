// SPDX-License-Identifier: Apache-2.0
/* mesh.c - identity, pods and tunnel wired to the agent: the tunnel's
 * directory is the model in force, its original destinations come from the
 * loader's sl_origdst_v1, its sockets from the pods' namespaces. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/abi.h>

#include "agent.h"
#include "loader.h"
#include "log.h"
#include "mesh.h"
#include "policy.h"
#include "polsync.h"
#include "authz.h"
#include "model.h"
#include "route.h"
#include "gateway.h"
#include "views.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* ---- naming workloads as Istio does ---- */

/* Kubernetes' rand.SafeEncodeString alphabet: what ReplicaSet hashes and pod
 * name suffixes are made of. */
static bool k8s_suffix(const char *s, size_t len, size_t min, size_t max)
{
	if (len < min || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!strchr("bcdfghjklmnpqrstvwxz2456789", s[i]))
			return false;
	return true;
}

/* The canonical workload of a pod: <deployment>-<rs hash>-<suffix> -> the
 * Deployment's name; anything else is its own workload. */
static const char *workload_of(const struct sl_pod *p, char *buf, size_t len, const char **kind)
{
	const char *name = p->name, *d2 = strrchr(name, '-'), *d1;

	*kind = "pod";
	if (!d2 || !k8s_suffix(d2 + 1, strlen(d2 + 1), 5, 5))
		return name;
	for (d1 = d2 - 1; d1 > name && *d1 != '-'; d1--)
		;
	if (d1 <= name || !k8s_suffix(d1 + 1, (size_t)(d2 - d1 - 1), 6, 10) ||
	    (size_t)(d1 - name) >= len)
		return name;
	memcpy(buf, name, (size_t)(d1 - name));
	buf[d1 - name] = '\0';
	*kind = "deployment";
	return buf;
}

/* Istio's canonical service: its label, else the app labels, else the workload. */
static const char *canonical_app(const struct sl_pod *p, const char *workload)
{
	static const char *const keys[] = { "service.istio.io/canonical-name", "app.kubernetes.io/name",
					    "app" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = labels_get(&p->labels, keys[i]);

		if (v && *v)
			return v;
	}
	return workload;
}

static const char *canonical_version(const struct sl_pod *p)
{
	const char *v = labels_get(&p->labels, "service.istio.io/canonical-revision");

	if (!v)
		v = labels_get(&p->labels, "app.kubernetes.io/version");
	if (!v)
		v = labels_get(&p->labels, "version");
	return v && *v ? v : "latest";
}

/* (no snprintf: the waypoint copies names per request) */
static void copy(char *dst, size_t len, const char *src)
{
	size_t n = src ? strnlen(src, len - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = 0;
}

/* ---- tunnel -> agent ---- */

static int mesh_orig_dst(void *arg, int fd, struct tunnel_addr *dst, struct tunnel_addr *vip)
{
	struct agent *a = arg;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer, self;
	socklen_t plen = sizeof(peer), slen = sizeof(self), clen = sizeof(uint64_t);
	struct sl_origdst_key k;
	struct sl_orig o;
	uint64_t cookie = 0;
	int err;

	memset(&peer, 0, sizeof(peer));
	memset(&self, 0, sizeof(self));
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &clen) ||
	    getpeername(fd, &peer.sa, &plen) || getsockname(fd, &self.sa, &slen))
		return -errno;
	memset(&k, 0, sizeof(k));
	k.netns_cookie = cookie;
	k.family = self.sa.sa_family == AF_INET6 ? SL_AF_INET6 : SL_AF_INET;
	/* sin_port and sin6_port share their offset */
	k.sport = peer.sa.sa_family == AF_INET6 ? peer.in6.sin6_port : peer.in.sin_port;
	err = loader_origdst_take(a->loader, &k, &o);
	if (err)
		return err;
	memset(dst, 0, sizeof(*dst));
	dst->ip.family = o.family;
	dst->ip.addr = o.addr;
	dst->port = ntohs(o.port);
	if (o.flags & SL_ORIG_F_SERVICE) {
		memset(vip, 0, sizeof(*vip));
		vip->ip.family = o.vip_family;
		vip->ip.addr = o.vip;
		vip->port = ntohs(o.vip_port);
	}
	return 0;
}

static int mesh_lookup(void *arg, const struct sl_ip *ip, struct tunnel_workload *wl)
{
	struct agent *a = arg;
	const struct sl_workload *w = a->model ? model_workload_by_ip(a->model, ip) : NULL;
	const char *kind;
	char buf[TUNNEL_NAME_MAX];

	if (!w)
		return -ENOENT;
	memset(wl, 0, sizeof(*wl));
	copy(wl->ns, sizeof(wl->ns), w->pod->ns);
	copy(wl->name, sizeof(wl->name), w->pod->name);
	copy(wl->workload, sizeof(wl->workload), workload_of(w->pod, buf, sizeof(buf), &kind));
	copy(wl->service_account, sizeof(wl->service_account), w->pod->service_account);
	if (w->service)	/* Kubernetes' default cluster domain */
		snprintf(wl->service, sizeof(wl->service), "%s.%s.svc.cluster.local", w->service->name,
			 w->service->ns);
	wl->enrolled = w->enrolled;
	wl->local = w->local;
	return 0;
}

static int mesh_pod_socket(void *arg, const struct sl_ip *ip, int family)
{
	struct agent *a = arg;

	return pods_socket(a->pods, ip, family, SOCK_STREAM);
}

static SSL_CTX *mesh_ctx(struct agent *a, const char *ns, const char *sa, bool server)
{
	char *err = NULL;
	SSL_CTX *ctx = server ? identity_server_ctx(a->identity, ns, sa, &err)
			      : identity_client_ctx(a->identity, ns, sa, &err);

	if (!ctx)
		pr_err("mesh: no %s certificate for %s/%s: %s", server ? "server" : "client", ns, sa,
		       err ? err : "out of memory");
	free(err);
	return ctx;
}

static SSL_CTX *mesh_client_ctx(void *arg, const char *ns, const char *sa)
{
	return mesh_ctx(arg, ns, sa, false);
}

static SSL_CTX *mesh_server_ctx(void *arg, const char *ns, const char *sa)
{
	return mesh_ctx(arg, ns, sa, true);
}

static int mesh_peer_check(void *arg, SSL *ssl, const char *expected, char *out, size_t len)
{
	enum identity_peer_reason why = IDENTITY_PEER_OK;
	int err = identity_peer_check(ssl, expected, out, len, &why);

	(void)arg;
	if (err)
		pr_warn("mesh: peer %s refused: %s%s%s", out && *out ? out : "(no identity)",
			identity_peer_reason_str(why), expected ? ", expected " : "",
			expected ? expected : "");
	return err;
}

static const char *const path_names[] = { "hbone", "direct", "passthrough", "plaintext" };

static struct agent_authz_count *authz_count(struct agent *a, const char *kind, const char *ns, const char *name)
{
	struct agent_authz_count *v;

	for (size_t i = 0; i < a->n_authz_counts; i++) {
		v = &a->authz_counts[i];
		if (!strcmp(v->kind, kind) && !strcmp(v->ns, ns) && !strcmp(v->name, name))
			return v;
	}
	v = realloc(a->authz_counts, (a->n_authz_counts + 1) * sizeof(*v));
	if (!v)
		return NULL;
	a->authz_counts = v;
	v = &v[a->n_authz_counts];
	memset(v, 0, sizeof(*v));
	v->kind = strdup(kind);
	v->ns = strdup(ns);
	v->name = strdup(name);
	if (!v->kind || !v->ns || !v->name) {
		free(v->kind);
		free(v->ns);
		free(v->name);
		return NULL;
	}
	a->n_authz_counts++;
	return v;
}

void mesh_authz_counts_free(struct agent *a)
{
	for (size_t i = 0; i < a->n_authz_counts; i++) {
		free(a->authz_counts[i].kind);
		free(a->authz_counts[i].ns);
		free(a->authz_counts[i].name);
	}
	free(a->authz_counts);
	a->authz_counts = NULL;
	a->n_authz_counts = 0;
}

/* NetworkPolicy ingress of the destination pod on the real port and the real
 * client (the kernel cannot see them inside HBONE; plaintext inbound on 15006
 * was judged by the kernel already). 0 or 403. */
static int mesh_netpol(struct agent *a, const struct tunnel_authz *az, const char *what)
{
	uint32_t slot = 0;
	int r;

	if (!a->policy || az->path == TUNNEL_PATH_PLAINTEXT)
		return 0;
	r = policy_lookup(a->policy, SL_DIR_INGRESS, &az->dst->ip, &az->src->ip, az->dst->port, SL_IPPROTO_TCP,
			  &slot);
	if (r < 0 || (r == 1 && !slot))
		return 0;	/* not policed here, or not isolated */
	if (a->polsync)
		polsync_agent_count(a->polsync, slot, !r, what);
	return r ? 0 : 403;
}

/* PeerAuthentication, then AuthorizationPolicy, for the destination pod. 0 or 403. */
static int mesh_istio_policy(struct agent *a, const struct tunnel_authz *az, const char *what)
{
	const struct sl_workload *w = model_workload_by_ip(a->model, &az->dst->ip);
	char principal[256], ns[64], why[320];
	struct authz_peer peer = { .ip = &az->src->ip };
	const struct sl_peerauthn *pa = NULL;
	struct agent_authz_count *cnt;
	struct authz_decision d;

	if (!w)
		return 0;
	if (az->path == TUNNEL_PATH_PLAINTEXT &&
	    authz_mtls_mode(a->model, a->root_ns, w->pod, az->dst->port, &pa) == SL_MTLS_STRICT) {
		cnt = authz_count(a, "PeerAuthentication", pa->ns, pa->name);
		if (cnt)
			cnt->denied++;
		snprintf(why, sizeof(why), "PeerAuthentication %s/%s is STRICT: plaintext refused", pa->ns, pa->name);
		if (a->polsync)
			polsync_log_deny(a->polsync, what, why);
		return 403;
	}
	if (az->src_identity && authz_principal(az->src_identity, principal, sizeof(principal), ns, sizeof(ns))) {
		peer.principal = principal;
		peer.ns = ns;
	}
	authz_decide(a->model, a->root_ns, w->pod, &az->dst->ip, az->dst->port, &peer, &d);
	if (d.by && (cnt = authz_count(a, "AuthorizationPolicy", d.by->ns, d.by->name))) {
		if (d.allow)
			cnt->allowed++;
		else
			cnt->denied++;
	}
	if (d.audit)
		pr_info("policy: audit %s: an AUDIT policy matched", what);
	if (d.allow)
		return 0;
	if (a->polsync)
		polsync_log_deny(a->polsync, what, d.reason);
	return 403;
}

/* What the tunnel asks before it delivers to a pod of this node. */
static int mesh_authorize(void *arg, const struct tunnel_authz *az)
{
	struct agent *a = arg;
	char what[384], sb[SL_IP_STRLEN], db[SL_IP_STRLEN];
	int r;

	if (!a->model)
		return 0;
	snprintf(what, sizeof(what), "TCP %s -> %s/%s %s:%u (ingress, %s%s%s)", sl_ip_str(&az->src->ip, sb),
		 az->dst_ns, az->dst_name, sl_ip_str(&az->dst->ip, db), az->dst->port,
		 path_names[az->path < 4 ? az->path : 0], az->src_identity ? ", peer " : "",
		 az->src_identity ? az->src_identity : "");
	r = mesh_netpol(a, az, what);
	return r ? r : mesh_istio_policy(a, az, what);
}

/* ---- tunnel -> loader: direct connections app to app ---- */

static void *mesh_shortcut_open(void *arg, int client_fd, int server_fd, const uint64_t relayed[2])
{
	struct agent *a = arg;
	struct loader_shortcut *sc = malloc(sizeof(*sc));
	int err;

	if (!sc)
		return NULL;
	err = loader_shortcut_open(a->loader, client_fd, server_fd, relayed, sc);
	if (err) {
		if (err != -EOPNOTSUPP)
			pr_debug("mesh: direct connection stays relayed: %s", strerror(-err));
		free(sc);
		return NULL;
	}
	return sc;
}

static int mesh_shortcut_relayed(void *arg, void *sc, int client_fd, int server_fd, int d, uint64_t relayed)
{
	struct agent *a = arg;

	return loader_shortcut_relayed(a->loader, sc, client_fd, server_fd, d, relayed);
}

static void mesh_shortcut_bytes(void *arg, void *sc, uint64_t direct[2])
{
	struct agent *a = arg;

	loader_shortcut_bytes(a->loader, sc, direct);
}

static void mesh_shortcut_close(void *arg, void *sc, uint64_t direct[2])
{
	struct agent *a = arg;

	loader_shortcut_close(a->loader, sc, direct);
	free(sc);
}

/* ---- waypoint ---- */

/* The Service frontend a VIP belongs to (TCP). */
static const struct sl_frontend *frontend_of(const struct agent *a, const struct tunnel_addr *vip)
{
	struct sl_svc_key k;

	if (!a->model)
		return NULL;
	memset(&k, 0, sizeof(k));
	k.vip = vip->ip.addr;
	k.port = htons(vip->port);
	k.proto = SL_IPPROTO_TCP;
	k.family = vip->ip.family;
	return model_find_frontend(a->model, &k);
}

static bool mesh_l7_accept(void *arg, int fd, const struct tunnel_client *cl, const struct tunnel_addr *vip)
{
	struct agent *a = arg;
	const struct sl_frontend *fe = frontend_of(a, vip);

	if (!fe || !a->waypoint || !a->routes ||
	    !route_for_service(a->routes, cl->ns, fe->svc->ns, fe->svc->name, fe->port->port))
		return false;
	return waypoint_accept(a->waypoint, fd, cl, vip);
}

static const struct route_set *mesh_wp_routes(void *arg, const struct tunnel_client *cl,
					      const struct tunnel_addr *vip, const char *host,
					      struct route_backend *svc, bool *https)
{
	struct agent *a = arg;
	const struct sl_frontend *fe;

	memset(svc, 0, sizeof(*svc));
	if (!cl->ns[0])		/* a Gateway listener's */
		return gateways_routes(a->gateways, a->routes, vip, host, https);
	fe = frontend_of(a, vip);
	if (!fe)
		return NULL;
	svc->ns = fe->svc->ns;
	svc->name = fe->svc->name;
	svc->port = fe->port->port;
	return a->routes ? route_for_service(a->routes, cl->ns, svc->ns, svc->name, svc->port) : NULL;
}

/* A Gateway's proxy is a mesh client of its own: service account
 * <gateway name>-sluice in the Gateway's namespace, as Istio names the one
 * of a Gateway it deploys (<name>-<gatewayClassName>). */
#define GATEWAY_SA_SUFFIX "-sluice"

/* An upstream of a Gateway's client to dst: for an enrolled pod, through the
 * tunnel with the Gateway's identity (HBONE to another node, delivery here
 * after the policy check); else plain TCP from the node's address. An fd,
 * or -errno. */
static int mesh_gw_upstream(struct agent *a, const struct tunnel_client *cl, const struct tunnel_addr *dst,
			    bool enrolled)
{
	char sa[TUNNEL_NAME_MAX];
	struct sl_ip src;
	int fd;

	if (!enrolled || !cl->gw_ns || !cl->gw_ns[0] || !cl->gw_name || !cl->gw_name[0] ||
	    !gateways_source(a->gateways, dst, &src))
		return gateways_connect(a->gateways, dst);
	fd = tunnel_vclient_open(a->tunnel, cl->gw_ns, cl->gw_name, &src, dst);
	if (fd == -ENOENT) {
		/* first upstream into the mesh of this Gateway: its identity
		 * (the certificate comes with its first HBONE connection) */
		struct tunnel_vclient v = {
			.ns = cl->gw_ns, .name = cl->gw_name, .service_account = sa, .workload = sa,
			.workload_kind = "deployment",
		};
		int r;

		if (snprintf(sa, sizeof(sa), "%s" GATEWAY_SA_SUFFIX, cl->gw_name) >= (int)sizeof(sa))
			return -ENAMETOOLONG;
		r = tunnel_vclient_add(a->tunnel, &v);
		if (r) {
			pr_warn("mesh: gateway %s/%s as a mesh client: %s", cl->gw_ns, cl->gw_name, strerror(-r));
			return r;
		}
		fd = tunnel_vclient_open(a->tunnel, cl->gw_ns, cl->gw_name, &src, dst);
	}
	if (fd == -ESRCH)	/* the directory changed its mind: not the mesh's */
		return gateways_connect(a->gateways, dst);
	return fd;
}

static int vclient_stale(void *arg, const char *ns, const char *name)
{
	struct agent *a = arg;

	for (size_t i = 0; a->model && i < a->model->res->n_gateways; i++)
		if (!strcmp(a->model->res->gateways[i].ns, ns) && !strcmp(a->model->res->gateways[i].name, name))
			return 0;
	tunnel_vclient_remove(a->tunnel, ns, name);
	return 0;
}

void mesh_gateways_applied(struct agent *a)
{
	if (a->tunnel)
		tunnel_vclient_names(a->tunnel, vclient_stale, a);
}

/* An endpoint of be, preferring the VIP's family; as sock_lb would pick. */
static int mesh_wp_pick(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			const struct route_backend *be, struct waypoint_dst *out)
{
	struct agent *a = arg;
	const struct sl_frontend *pick;
	const struct sl_service *svc;
	const struct sl_be_val *slot;
	const struct sl_workload *w;
	const char *kind;
	char buf[TUNNEL_NAME_MAX];
	struct tunnel_addr avoid = out->avoid;

	(void)cl;
	if (!a->model || !a->tunnel)
		return -ENOENT;
	svc = model_find_service(a->model, be->ns, be->name);
	pick = model_service_frontend(a->model, svc, be->port, vip->ip.family);
	if (!pick)
		return -ENOENT;
	/* a retry's pick: when the draw is the endpoint that failed, the next
	 * slot that is another (the slots may repeat endpoints); the same one
	 * only when there is no other. Istio's previous_hosts predicate
	 * redraws up to five times and may still land on it. */
	{
		size_t at = (size_t)random() % pick->n_slots;

		slot = &pick->slots[at];
		for (size_t i = 0; i < pick->n_slots; i++) {
			slot = &pick->slots[(at + i) % pick->n_slots];
			if (!avoid.port || slot->family != avoid.ip.family || ntohs(slot->port) != avoid.port ||
			    memcmp(&slot->addr, &avoid.ip.addr, sizeof(slot->addr)))
				break;
		}
	}
	memset(out, 0, sizeof(*out));
	out->addr.ip.family = slot->family;
	out->addr.ip.addr = slot->addr;
	out->addr.port = ntohs(slot->port);
	w = model_workload_by_ip(a->model, &out->addr.ip);
	if (w) {
		copy(out->ns, sizeof(out->ns), w->pod->ns);
		copy(out->pod, sizeof(out->pod), w->pod->name);
		copy(out->workload, sizeof(out->workload), workload_of(w->pod, buf, sizeof(buf), &kind));
	}
	/* what the port speaks: the waypoint translates HTTP/1.1 <-> HTTP/2 to it */
	for (size_t i = 0; svc && i < svc->n_ports; i++)
		if (svc->ports[i].port == be->port && svc->ports[i].proto == SL_IPPROTO_TCP)
			out->proto = waypoint_proto_of(svc->ports[i].app_protocol);
	return 0;
}

/* A connection from cl's pod (or Gateway) to the endpoint in *out, picked
 * here unless the waypoint did (mesh_wp_pick). */
static int mesh_wp_upstream(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			    const struct route_backend *be, struct waypoint_dst *out)
{
	struct agent *a = arg;
	const struct sl_workload *w;
	int fd;

	if (!out->addr.port) {
		int r = mesh_wp_pick(arg, cl, vip, be, out);

		if (r)
			return r;
	}
	if (!a->model || !a->tunnel)
		return -ENOENT;
	w = model_workload_by_ip(a->model, &out->addr.ip);
	if (!cl->ns[0])		/* from a Gateway */
		return mesh_gw_upstream(a, cl, &out->addr, w && w->enrolled);
	fd = tunnel_direct_open(a->tunnel, cl->ns, cl->name, &out->addr);
	if (fd != -EXDEV)
		return fd;
	return tunnel_outbound_open(a->tunnel, cl->ns, cl->name, &out->addr);
}

/* AuthorizationPolicies that target the Service, with the request's L7
 * attributes and the client pod's own identity (the waypoint is its agent). */
/* AuthorizationPolicies that target the Service a mesh client addressed (with
 * the client pod's own identity: the waypoint is its agent), or the Gateway
 * whose listener took a Gateway client's request (its address only), with
 * the request's L7 attributes. */
static int mesh_wp_authorize(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			     const struct route_backend *svc, const char *method, const char *path, const char *host,
			     const struct route_header *h, size_t n)
{
	struct agent *a = arg;
	const struct sl_service *s = NULL;
	const char *gw_ns = NULL, *gw_name = NULL;
	struct authz_header hv[WAYPOINT_HEADERS_MAX];
	char principal[256], ns[64], names[WAYPOINT_HEADERS_MAX][128], what[400], ipbuf[64];
	char *values[WAYPOINT_HEADERS_MAX] = { 0 };
	struct authz_peer peer = { .ip = cl->n_ips ? &cl->ips[0] : NULL };
	struct authz_request rq = { .method = method, .path = path, .host = host, .headers = hv };
	struct agent_authz_count *cnt;
	struct authz_decision d;
	bool any = false;

	if (!a->model)
		return 0;
	if (cl->ns[0]) {
		s = model_find_service(a->model, svc->ns, svc->name);
		if (!s)
			return 0;
	} else {
		/* per request: find the listener's Gateway only when some policy
		 * names a Gateway at all (the routes op has just found it too) */
		for (size_t i = 0; i < a->model->res->n_authzs && !any; i++)
			for (size_t j = 0; j < a->model->res->authzs[i].n_targets && !any; j++)
				any = a->model->res->authzs[i].targets[j].kind &&
				      !strcmp(a->model->res->authzs[i].targets[j].kind, "Gateway");
		if (!any || !gateways_gateway_of(a->gateways, vip, host, &gw_ns, &gw_name))
			return 0;	/* no listener takes it: the waypoint answers 404 */
		any = false;
	}
	/* per request: nothing to copy or decide when no policy names it */
	for (size_t i = 0; i < a->model->res->n_authzs && !any; i++)
		any = s ? authz_targets_service(&a->model->res->authzs[i], s)
			: authz_targets_gateway(&a->model->res->authzs[i], gw_ns, gw_name);
	if (!any)
		return 0;
	if (cl->identity && authz_principal(cl->identity, principal, sizeof(principal), ns, sizeof(ns))) {
		peer.principal = principal;
		peer.ns = ns;
	}
	/* authz wants NUL-terminated names and values */
	for (size_t i = 0; i < n && i < WAYPOINT_HEADERS_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "%.*s", (int)h[i].name_len, h[i].name);
		values[i] = strndup(h[i].value, h[i].value_len);
		hv[rq.n_headers].name = names[i];
		hv[rq.n_headers].value = values[i] ? values[i] : "";
		rq.n_headers++;
	}
	if (s)
		authz_decide_request(a->model, a->root_ns, s, svc->port, &peer, &rq, &d);
	else
		authz_decide_gateway_request(a->model, gw_ns, gw_name, &vip->ip, vip->port, &peer, &rq, &d);
	for (size_t i = 0; i < n && i < WAYPOINT_HEADERS_MAX; i++)
		free(values[i]);
	if (d.by && (cnt = authz_count(a, "AuthorizationPolicy", d.by->ns, d.by->name))) {
		if (d.allow)
			cnt->allowed++;
		else
			cnt->denied++;
	}
	if (s)
		snprintf(what, sizeof(what), "%s/%s %s %s to %s/%s", cl->ns, cl->name, method, path, svc->ns,
			 svc->name);
	else
		snprintf(what, sizeof(what), "%s %s %s through Gateway %s/%s",
			 peer.ip ? sl_ip_str(peer.ip, ipbuf) : "?", method, path, gw_ns, gw_name);
	if (d.audit)
		pr_info("policy: audit %s: an AUDIT policy matched", what);
	if (d.allow)
		return 0;
	if (a->polsync)
		polsync_log_deny(a->polsync, what, d.reason);
	return 403;
}

static const struct waypoint_ops waypoint_ops = {
	.routes = mesh_wp_routes,
	.upstream = mesh_wp_upstream,
	.pick = mesh_wp_pick,
	.authorize = mesh_wp_authorize,
};

static const struct tunnel_ops tunnel_ops = {
	.l7_accept = mesh_l7_accept,
	.shortcut_open = mesh_shortcut_open,
	.shortcut_relayed = mesh_shortcut_relayed,
	.shortcut_bytes = mesh_shortcut_bytes,
	.shortcut_close = mesh_shortcut_close,
	.authorize = mesh_authorize,
	.orig_dst = mesh_orig_dst,
	.lookup = mesh_lookup,
	.pod_socket = mesh_pod_socket,
	.client_ctx = mesh_client_ctx,
	.server_ctx = mesh_server_ctx,
	.peer_check = mesh_peer_check,
};

/* ---- pods -> loader, tunnel ---- */

_Static_assert(LOADER_INGRESS_CLSACT == PODS_INGRESS_NO_LINK, "one sentinel for clsact");

static int mesh_attach_ingress(void *arg, int ifindex, int link_fd)
{
	struct agent *a = arg;

	return loader_pod_ingress_attach(a->loader, ifindex, link_fd);
}

static int mesh_detach_ingress(void *arg, int ifindex)
{
	(void)arg;
	return loader_pod_ingress_detach(ifindex);
}

static int mesh_attach_egress(void *arg, int ifindex, int link_fd)
{
	struct agent *a = arg;

	return loader_pod_egress_attach(a->loader, ifindex, link_fd);
}

static int mesh_detach_egress(void *arg, int ifindex)
{
	(void)arg;
	return loader_pod_egress_detach(ifindex);
}

/* The pod's netns in sl_netns_v1: for capture (mesh pods), and for sock_lb's
 * egress policy (every pod set up here). */
static int mesh_enrol(void *arg, uint64_t cookie, const struct pods_pod *pod, bool on)
{
	struct agent *a = arg;
	struct sl_netns_val v = { .flags = pod->mesh ? SL_NETNS_F_ENROLLED : 0 };

	if (!on)
		return loader_netns_del(a->loader, cookie);
	v.pod_id = ++a->next_pod_id;
	for (size_t i = 0; i < pod->n_ips; i++) {
		if (pod->ips[i].family == SL_AF_INET)
			v.ip4 = pod->ips[i].addr;
		else
			v.ip6 = pod->ips[i].addr;
	}
	return loader_netns_set(a->loader, cookie, &v);
}

static enum tunnel_role role_of(uint16_t port)
{
	if (port == SL_PORT_OUTBOUND)
		return TUNNEL_LISTEN_OUTBOUND;
	if (port == SL_PORT_INBOUND)
		return TUNNEL_LISTEN_INBOUND;
	return TUNNEL_LISTEN_HBONE;
}

static void mesh_pod_ready(void *arg, const struct pods_pod *pod)
{
	struct agent *a = arg;
	const struct sl_workload *w = NULL;
	struct tunnel_pod tp = {
		.ns = pod->ns,
		.name = pod->name,
		.service_account = pod->service_account,
		.ips = pod->ips,
		.n_ips = pod->n_ips,
	};
	char buf[TUNNEL_NAME_MAX];
	int err;

	for (size_t i = 0; i < pod->n_ips && !w; i++)
		w = a->model ? model_workload_by_ip(a->model, &pod->ips[i]) : NULL;
	if (w) {
		tp.workload = workload_of(w->pod, buf, sizeof(buf), &tp.workload_kind);
		tp.app = canonical_app(w->pod, tp.workload);
		tp.version = canonical_version(w->pod);
	}
	for (size_t i = 0; i < PODS_L_COUNT && tp.n_listeners < TUNNEL_POD_LISTENERS; i++) {
		if (pod->listeners[i].fd < 0)
			continue;
		tp.listeners[tp.n_listeners].role = role_of(pod->listeners[i].port);
		tp.listeners[tp.n_listeners++].fd = pod->listeners[i].fd;
	}
	err = tunnel_pod_add(a->tunnel, &tp);
	if (err)
		pr_err("mesh: %s/%s: the tunnel does not serve it: %s", pod->ns, pod->name, strerror(-err));
	else
		pr_info("mesh: %s/%s enrolled (netns %s, identity spiffe://.../ns/%s/sa/%s)", pod->ns,
			pod->name, pod->netns, pod->ns, pod->service_account);
}

static void mesh_pod_gone(void *arg, const struct pods_pod *pod)
{
	struct agent *a = arg;

	if (!a->tunnel)
		return;
	if (!tunnel_pod_remove(a->tunnel, pod->ns, pod->name))
		pr_info("mesh: %s/%s left the mesh", pod->ns, pod->name);
}

static const struct pods_ops pods_ops = {
	.attach_ingress = mesh_attach_ingress,
	.detach_ingress = mesh_detach_ingress,
	.attach_egress = mesh_attach_egress,
	.detach_egress = mesh_detach_egress,
	.enrol = mesh_enrol,
	.pod_ready = mesh_pod_ready,
	.pod_gone = mesh_pod_gone,
};

/* ---- lifecycle ---- */

int mesh_start(struct agent *a, struct loop *l, const struct mesh_opts *o, char **err)
{
	int ret;

	ret = identity_new(&a->identity, l, &o->identity, err);
	if (ret)
		return ret;
	ret = tunnel_new(&a->tunnel, l, &tunnel_ops, a, &o->tunnel);
	if (ret) {
		if (asprintf(err, "tunnel: %s", strerror(-ret)) < 0)
			*err = NULL;
		return ret;
	}
	ret = waypoint_new(&a->waypoint, l, &waypoint_ops, a, &o->waypoint);
	if (!ret)
		ret = gateways_new(&a->gateways, l, a->waypoint, &o->gateway);
	if (ret) {
		if (asprintf(err, "waypoint: %s", strerror(-ret)) < 0)
			*err = NULL;
		return ret;
	}
	return mesh_pods_start(a, l, &o->pods, err);
}

int mesh_pods_start(struct agent *a, struct loop *l, const struct pods_opts *o, char **err)
{
	int ret = pods_new(&a->pods, l, o, &pods_ops, a);

	if (ret && asprintf(err, "pods: %s", strerror(-ret)) < 0)
		*err = NULL;
	return ret;
}

void mesh_stop(struct agent *a)
{
	pods_free(a->pods);	/* capture stops first; pod_gone lets the tunnel go of each */
	a->pods = NULL;
	gateways_free(a->gateways);	/* listeners, and the addresses they took */
	a->gateways = NULL;
	waypoint_free(a->waypoint);	/* its upstreams are the tunnel's socketpairs */
	a->waypoint = NULL;
	tunnel_free(a->tunnel);
	a->tunnel = NULL;
	identity_free(a->identity);
	a->identity = NULL;
}

char *mesh_metrics_text(void *arg, const char *query, int *code, size_t *len)
{
	struct agent *a = arg;
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	(void)query;
	if (!f)
		return NULL;
	if (a->tunnel && tunnel_metrics_write(a->tunnel, f))
		*code = 500;
	if (a->waypoint && waypoint_metrics_write(a->waypoint, f))
		*code = 500;
	if (views_policy_metrics(a, f))
		*code = 500;
	if (fclose(f)) {
		free(text);
		return NULL;
	}
	return text;
}
