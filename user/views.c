// SPDX-License-Identifier: Apache-2.0
/* views.c - see views.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/counters.h>
#include <sluice/pin.h>

#include "agent.h"
#include "authz.h"
#include "identity.h"
#include "kstatus.h"
#include "kube.h"
#include "loader.h"
#include "model.h"
#include "pods.h"
#include "policy.h"
#include "polsync.h"
#include "route.h"
#include "tunnel.h"
#include "views.h"
#include "waypoint.h"

static json_t *time_or_null(time_t t)
{
	char buf[32];
	struct tm tm;

	if (!t)
		return json_null();
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

static const char *const config_state_names[] = { "empty", "ok", "error" };

static json_t *mesh_json(const struct agent *a)
{
	struct tunnel_stats st = { 0 };
	struct pods_info *pi = NULL;
	size_t npi = 0, captured = 0;

	if (!a->tunnel)
		return json_pack("{s:s, s:s}", "state", "off", "reason", a->mesh_off ? a->mesh_off : "");
	tunnel_stats_get(a->tunnel, &st);
	if (!pods_list(a->pods, &pi, &npi))
		for (size_t i = 0; i < npi; i++)
			captured += pi[i].enrolled;
	free(pi);
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "state", "on", "trust_domain",
			 a->trust_domain ? a->trust_domain : "cluster.local", "pods_enrolled",
			 (json_int_t)npi, "pods_captured", (json_int_t)captured, "connections_open",
			 (json_int_t)st.conns_open, "hbone_out", (json_int_t)st.hbone_clients, "hbone_in",
			 (json_int_t)st.hbone_servers);
}

/* VmRSS and RssAnon of this process in bytes (0 when /proc says nothing). */
static void proc_rss(uint64_t *rss, uint64_t *anon)
{
	char line[128];
	unsigned long long kb;
	FILE *f = fopen("/proc/self/status", "re");

	*rss = *anon = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			*rss = (uint64_t)kb * 1024;
		else if (sscanf(line, "RssAnon: %llu kB", &kb) == 1)
			*anon = (uint64_t)kb * 1024;
	}
	fclose(f);
}

/* Where the agent's memory is, computed on request: the process (the
 * kernel's view), the allocator (glibc, all arenas) and what the data path's
 * objects hold of it. docs/operations.md describes the fields. */
static json_t *memory_json(const struct agent *a)
{
	struct mallinfo2 mi = mallinfo2();
	struct tunnel_mem tm = { 0 };
	struct waypoint_mem wm = { 0 };
	uint64_t rss, anon, from_sys = (uint64_t)mi.arena + mi.hblkhd, in_use = (uint64_t)mi.uordblks + mi.hblkhd;

	proc_rss(&rss, &anon);
	if (a->tunnel)
		tunnel_mem_get(a->tunnel, &tm);
	if (a->waypoint)
		waypoint_mem_get(a->waypoint, &wm);
	return json_pack("{s:I, s:I,"
			 " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
			 " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
			 " s:{s:I, s:I, s:I},"
			 " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
			 "rss_bytes", (json_int_t)rss, "anon_bytes", (json_int_t)anon,
			 "heap", "from_system_bytes", (json_int_t)from_sys, "in_use_bytes",
			 (json_int_t)in_use, "free_bytes", (json_int_t)mi.fordblks,
			 "releasable_bytes", (json_int_t)mi.keepcost, "mmapped_bytes", (json_int_t)mi.hblkhd,
			 "mmapped_chunks", (json_int_t)mi.hblks, "trims", (json_int_t)a->mem_trims,
			 "spares_freed_bytes", (json_int_t)a->mem_spares_freed,
			 "relay", "connections", (json_int_t)tm.conns, "connection_bytes",
			 (json_int_t)tm.conn_bytes, "buffers_in_use", (json_int_t)tm.relay_bufs,
			 "buffers_in_use_bytes", (json_int_t)tm.relay_buf_bytes, "buffers_spare",
			 (json_int_t)tm.spare_bufs, "buffers_spare_bytes", (json_int_t)tm.spare_buf_bytes,
			 "buffers_spare_max", (json_int_t)tm.spare_max, "splice_pipes", (json_int_t)tm.pipes,
			 "splice_pipe_bytes", (json_int_t)tm.pipe_bytes,
			 "hbone", "sessions", (json_int_t)tm.sessions, "session_bytes",
			 (json_int_t)tm.session_bytes, "output_buffer_bytes", (json_int_t)tm.session_out_bytes,
			 "waypoint", "connections", (json_int_t)wm.conns, "http2_connections",
			 (json_int_t)wm.conns_h2, "connection_bytes", (json_int_t)wm.conn_bytes, "buffer_bytes",
			 (json_int_t)wm.buf_bytes, "spare_bytes", (json_int_t)wm.spare_bytes, "http2_upstreams",
			 (json_int_t)wm.h2_upstreams, "http2_upstream_streams", (json_int_t)wm.h2_upstream_streams,
			 "http2_upstream_bytes", (json_int_t)wm.h2_upstream_bytes);
}

static const char *const scope_names[] = { "enrolled", "all", "none" };

/* Pods the scope takes that are not set up yet (netns not found, attach failed). */
static size_t policy_pods_pending(const struct agent *a)
{
	struct pods_info *pi = NULL;
	size_t n = 0, pending = 0;

	if (!a->pods || pods_list(a->pods, &pi, &n))
		return 0;
	for (size_t i = 0; i < n; i++)
		pending += !pi[i].enrolled || !pi[i].ingress_attached || !pi[i].egress_attached;
	free(pi);
	return pending;
}

static json_t *policy_json(const struct agent *a)
{
	const struct policy *p = a->policy;
	size_t ids = 0, eps = 0, rules = 0;

	if (a->polsync)
		polsync_counts(a->polsync, &ids, &eps, &rules);
	return json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I}", "scope",
			 scope_names[a->policy_scope], "in_force", p && !a->polsync_err, "policies",
			 (json_int_t)(p ? p->n_policies : 0), "selecting_local_pods",
			 (json_int_t)(p ? p->n_local_policies : 0), "endpoints", (json_int_t)(p ? p->n_eps : 0),
			 "identities", (json_int_t)(p ? p->n_identities : 0), "map_identities", (json_int_t)ids,
			 "map_endpoints", (json_int_t)eps, "map_rules", (json_int_t)rules, "last_sync_ms",
			 a->last_polsync.ms, "pods_pending", (json_int_t)policy_pods_pending(a));
}

static json_t *sockmap_json(const struct agent *a)
{
	struct loader_sockmap_stats st;
	uint64_t cnt[SL_CNT_MAX] = { 0 };

	loader_sockmap_stats(a->loader, &st);
	loader_counters(a->loader, cnt);
	return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "enabled", st.enabled, "sockets",
			 (json_int_t)st.sockets, "hops", (json_int_t)st.hops, "app_to_app_directions",
			 (json_int_t)st.shortcuts, "redirected", (json_int_t)cnt[SL_CNT_SOCK_REDIRECT],
			 "redirected_bytes", (json_int_t)cnt[SL_CNT_SOCK_BYTES], "direct",
			 (json_int_t)cnt[SL_CNT_SOCK_DIRECT], "direct_bytes", (json_int_t)cnt[SL_CNT_SOCK_DIRECT_BYTES],
			 "fallbacks", (json_int_t)cnt[SL_CNT_SOCK_FALLBACK], "add_errors",
			 (json_int_t)cnt[SL_CNT_SOCK_ADD_ERR]);
}

static json_t *hop_end_json(const struct sl_addr *a, __be16 port, uint8_t family)
{
	struct sl_ip ip = { .family = family, .addr = *a };
	char buf[64];

	return json_pack("{s:s, s:i}", "ip", sl_ip_str(&ip, buf), "port", (int)ntohs(port));
}

json_t *views_sockmap(const struct agent *a)
{
	struct loader_sock *v = NULL;
	json_t *socks = json_array();
	size_t n = 0;

	loader_sockmap_list(a->loader, &v, &n);
	for (size_t i = 0; i < n; i++) {
		const struct sl_hop_key *k = &v[i].key;

		json_array_append_new(socks, json_pack("{s:I, s:o, s:o, s:I, s:b}", "netns_cookie",
						       (json_int_t)k->netns_cookie, "local",
						       hop_end_json(&k->local, k->lport, k->family), "remote",
						       hop_end_json(&k->remote, k->rport, k->family), "socket_cookie",
						       (json_int_t)v[i].cookie, "peer", v[i].peer));
	}
	free(v);
	return json_pack("{s:o, s:o}", "sockmap", sockmap_json(a), "sockets", socks);
}

/* kube_status_json, with the status writer's Lease and writes. */
static json_t *kube_json(const struct agent *a)
{
	json_t *k = kube_status_json(a->kube);

	if (json_is_object(k) && a->kstatus)
		json_object_set_new(k, "status_writer", kstatus_json(a->kstatus));
	return k;
}

json_t *views_status(const struct agent *a)
{
	const struct sl_resources *r = a->model ? a->model->res : NULL;
	json_t *errors = json_array(), *progs = json_array();
	const struct loader_prog_info *pi;
	struct timespec now;
	char buf[1024];
	size_t n;

	for (size_t i = 0; i < a->errors.n; i++)
		json_array_append_new(errors, json_string(diag_str(&a->errors.v[i], buf, sizeof(buf))));
	n = loader_programs(a->loader, &pi);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(progs, json_pack("{s:s, s:s, s:s}", "name", pi[i].name, "attach",
						       pi[i].attach, "pinned_link", pi[i].link_pin));
	clock_gettime(CLOCK_MONOTONIC, &now);
	return json_pack(
		"{s:s, s:s, s:i, s:f,"
		" s:{s:s?, s:I, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:o, s:o},"
		" s:{s:s, s:s, s:o, s:b},"
		" s:{s:I, s:I, s:I, s:I, s:I, s:f, s:o, s:I, s:I, s:I}, s:o, s:o, s:o, s:o, s:o}",
		"version", SL_VERSION, "node", a->node_name, "pid", (int)getpid(), "uptime_s",
		(double)(now.tv_sec - a->started.tv_sec) + (double)(now.tv_nsec - a->started.tv_nsec) / 1e9,
		"config", "source", a->kube ? "kubernetes" : a->config_dir, "generation", (json_int_t)a->generation, "state",
		config_state_names[a->config_state], "last_good_at", time_or_null(a->last_good_at),
		"objects", "namespaces", (json_int_t)(r ? r->n_namespaces : 0), "pods",
		(json_int_t)(r ? r->n_pods : 0), "services", (json_int_t)(r ? r->n_services : 0),
		"endpointslices", (json_int_t)(r ? r->n_slices : 0), "ignored",
		(json_int_t)(r ? r->n_ignored : 0), "errors", errors, "last_error",
		a->errors.n ? json_string(diag_str(&a->errors.v[0], buf, sizeof(buf))) : json_null(),
		"datapath", "bpffs_root", loader_bpffs_root(a->loader), "cgroup", loader_cgroup(a->loader),
		"programs", progs, "reused_pins", loader_reused_pins(a->loader),
		"sync", "generation", (json_int_t)a->sync_generation, "frontends",
		(json_int_t)a->last_sync.frontends, "backends", (json_int_t)a->last_sync.backends,
		"frontends_max", (json_int_t)loader_map_max(a->loader, SL_MAP_SVC), "backends_max",
		(json_int_t)loader_map_max(a->loader, SL_MAP_BE), "last_sync_ms", a->last_sync.ms, "last_sync_at", time_or_null(a->last_sync_at), "updates",
		(json_int_t)a->last_sync.updates, "deletes", (json_int_t)a->last_sync.deletes, "errors",
		(json_int_t)a->last_sync.errors, "mesh", mesh_json(a), "policy", policy_json(a),
		"sockmap", sockmap_json(a), "kubernetes", kube_json(a), "memory", memory_json(a));
}

static json_t *backend_json(const struct sl_backend *b)
{
	char ip[SL_IP_STRLEN];

	return json_pack("{s:s, s:i, s:s?, s:s?, s:b, s:b, s:b, s:b}", "ip", sl_ip_str(&b->ip, ip), "port",
			 b->port, "pod", b->pod, "node", b->node, "ready", b->ready, "serving", b->serving,
			 "terminating", b->terminating, "chosen", b->chosen);
}

/* Operators read services by name: namespace, name, family, port. */
static int frontend_display_cmp(const void *pa, const void *pb)
{
	const struct sl_frontend *a = *(const struct sl_frontend *const *)pa;
	const struct sl_frontend *b = *(const struct sl_frontend *const *)pb;
	int c = strcmp(a->svc->ns, b->svc->ns);

	if (!c)
		c = strcmp(a->svc->name, b->svc->name);
	if (!c)
		c = (int)a->key.family - (int)b->key.family;
	if (!c)
		c = (int)ntohs(a->key.port) - (int)ntohs(b->key.port);
	return c ? c : (int)a->key.proto - (int)b->key.proto;
}

json_t *views_services(const struct agent *a)
{
	size_t n = a->model ? a->model->n_frontends : 0;
	const struct sl_frontend **order = calloc(n ? n : 1, sizeof(*order));
	json_t *list = json_array();

	if (!order)
		return NULL;
	for (size_t i = 0; i < n; i++)
		order[i] = &a->model->frontends[i];
	qsort(order, n, sizeof(*order), frontend_display_cmp);
	for (size_t i = 0; i < n; i++) {
		const struct sl_frontend *f = order[i];
		struct sl_ip vip = { .family = f->key.family, .addr = f->key.vip };
		json_t *bes = json_array();
		char ip[SL_IP_STRLEN];

		for (size_t j = 0; j < f->n_backends; j++)
			json_array_append_new(bes, backend_json(&f->backends[j]));
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:s, s:i, s:s, s:s?, s:I, s:s, s:i, s:s, s:o}", "namespace",
					f->svc->ns, "name", f->svc->name, "vip", sl_ip_str(&vip, ip), "port",
					ntohs(f->key.port), "protocol", sl_proto_str(f->key.proto), "port_name",
					f->port->name, "svc_id", (json_int_t)sync_svc_id(a->sync, &f->key),
					"affinity", (f->flags & SL_SVC_F_AFFINITY) ? "ClientIP" : "None",
					"affinity_timeout", (int)f->aff_timeout, "traffic_policy",
					(f->flags & SL_SVC_F_LOCAL) ? "Local" : "Cluster", "backends", bes));
	}
	free(order);
	return json_pack("{s:o}", "services", list);
}

/* What pods did for (ns, name): "captured", "pending: why", or NULL when it
 * does not handle the pod. */
static json_t *pod_mesh_state(const struct pods_info *pi, size_t n, const struct sl_pod *p)
{
	char buf[256];

	for (size_t i = 0; i < n; i++) {
		if (strcmp(pi[i].ns, p->ns) || strcmp(pi[i].name, p->name))
			continue;
		if (pi[i].enrolled)
			return json_string("captured");
		snprintf(buf, sizeof(buf), "pending: %s", pi[i].error[0] ? pi[i].error : "setting up");
		return json_string(buf);
	}
	return json_null();
}

json_t *views_workloads(const struct agent *a)
{
	const struct sl_resources *r = a->model ? a->model->res : NULL;
	json_t *list = json_array();
	struct pods_info *pi = NULL;
	size_t npi = 0;
	const char *td = a->trust_domain ? a->trust_domain : "cluster.local";

	if (a->pods && pods_list(a->pods, &pi, &npi))
		npi = 0;

	for (size_t i = 0; r && i < r->n_pods; i++) {
		const struct sl_pod *p = &r->pods[i];
		const struct sl_workload *w = &a->model->workloads[i];
		json_t *ips = json_array(), *labels = json_object();
		char ip[SL_IP_STRLEN], id[SL_SPIFFE_URI_MAX + 1];

		snprintf(id, sizeof(id), "spiffe://%s/ns/%s/sa/%s", td, p->ns, p->service_account);
		for (size_t j = 0; j < p->n_ips; j++)
			json_array_append_new(ips, json_string(sl_ip_str(&p->ips[j], ip)));
		for (size_t j = 0; j < p->labels.n; j++)
			json_object_set_new(labels, p->labels.v[j].key, json_string(p->labels.v[j].value));
		json_array_append_new(list, json_pack("{s:s, s:s, s:s?, s:o, s:s, s:s, s:b, s:b, s:b, s:o, s:o}",
						      "namespace", p->ns, "name", p->name, "node", p->node,
						      "ips", ips, "service_account", p->service_account,
						      "identity", id,
						      "local", w->local, "enrolled", w->enrolled, "ready",
						      p->ready && !p->terminating, "mesh",
						      w->local && w->enrolled ? pod_mesh_state(pi, npi, p) : json_null(),
						      "labels", labels));
	}
	free(pi);
	return json_pack("{s:o}", "workloads", list);
}

static const char *const counter_names[SL_CNT_MAX] = {
#define SL_COUNTER_NAME(name, num, str, help) [num] = str,
	SL_COUNTERS(SL_COUNTER_NAME)
#undef SL_COUNTER_NAME
};

json_t *views_maps(const struct agent *a)
{
	struct loader_map_info *mi = NULL;
	uint64_t cnt[SL_CNT_MAX];
	json_t *maps = json_array(), *counters = json_object();
	size_t n = 0;

	if (!loader_maps_info(a->loader, &mi, &n))
		for (size_t i = 0; i < n; i++)
			json_array_append_new(maps, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "name",
							      mi[i].name, "type", mi[i].type, "entries",
							      (json_int_t)mi[i].entries, "max_entries",
							      (json_int_t)mi[i].max_entries, "key_size",
							      (json_int_t)mi[i].key_size, "value_size",
							      (json_int_t)mi[i].value_size, "pinned", mi[i].pin));
	free(mi);
	if (!loader_counters(a->loader, cnt))
		for (int i = 0; i < SL_CNT_MAX; i++)
			if (counter_names[i])
				json_object_set_new(counters, counter_names[i], json_integer((json_int_t)cnt[i]));
	return json_pack("{s:o, s:o}", "maps", maps, "counters", counters);
}

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static json_t *addr_json(const struct tunnel_addr *t)
{
	char ip[SL_IP_STRLEN];

	return json_pack("{s:s, s:i}", "ip", sl_ip_str(&t->ip, ip), "port", t->port);
}

struct conn_list {
	json_t *list;
	double now_ms;		/* wall clock, once per listing */
};

static int conn_json(void *arg, const struct tunnel_conn_info *c)
{
	const struct conn_list *cl = arg;

	json_array_append_new(
		cl->list, json_pack("{s:I, s:s, s:s, s:s, s:o, s:o,"
			       " s:{s:o, s:o, s:o, s:o}, s:{s:o, s:o, s:o, s:o, s:o},"
			       " s:I, s:I, s:I, s:f, s:b}",
			       "id", (json_int_t)c->id, "direction", tunnel_dir_str(c->dir), "path",
			       tunnel_path_str(c->path), "state", c->state, "src", addr_json(&c->src), "dst",
			       addr_json(&c->dst), "source", "namespace", str_or_null(c->src_ns), "name",
			       str_or_null(c->src_name), "workload", str_or_null(c->src_workload),
			       "identity", str_or_null(c->src_identity), "destination", "namespace",
			       str_or_null(c->dst_ns), "name", str_or_null(c->dst_name), "workload",
			       str_or_null(c->dst_workload), "identity", str_or_null(c->dst_identity),
			       "service", str_or_null(c->dst_service), "bytes_sent",
			       (json_int_t)c->bytes_to_dst, "bytes_received", (json_int_t)c->bytes_to_src,
			       "buffered", (json_int_t)c->buffered, "age_s",
			       (cl->now_ms - (double)c->start_ms) / 1e3, "app_to_app", c->shortcut));
	return 0;
}

json_t *views_connections(const struct agent *a)
{
	json_t *list = json_array();
	struct tunnel_stats st = { 0 };
	struct timespec now;

	if (a->tunnel) {
		struct conn_list cl = { .list = list };

		clock_gettime(CLOCK_REALTIME, &now);
		cl.now_ms = (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6;
		tunnel_conn_foreach(a->tunnel, conn_json, &cl);
		tunnel_stats_get(a->tunnel, &st);
	}
	return json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "connections",
			 list, "stats", "open", (json_int_t)st.conns_open, "total",
			 (json_int_t)st.conns_total, "failed", (json_int_t)st.conns_failed,
			 "hbone_clients", (json_int_t)st.hbone_clients, "hbone_clients_total",
			 (json_int_t)st.hbone_clients_total, "hbone_servers", (json_int_t)st.hbone_servers,
			 "hbone_servers_total", (json_int_t)st.hbone_servers_total, "hbone_setup_failed",
			 (json_int_t)st.hbone_setup_failed, "streams", (json_int_t)st.streams_open,
			 "accept_errors", (json_int_t)st.accept_errors, "hbone_peer_limited",
			 (json_int_t)st.hbone_peer_limited);
}

json_t *views_certs(const struct agent *a)
{
	struct identity_cert_info *ci = NULL;
	json_t *list = json_array();
	size_t n = 0;

	if (a->identity && identity_certs(a->identity, &ci, &n))
		n = 0;
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:o}", "identity",
						      ci[i].id, "mode", identity_mode_str(ci[i].mode), "serial",
						      ci[i].serial, "not_before", time_or_null(ci[i].not_before),
						      "not_after", time_or_null(ci[i].not_after), "next_renewal",
						      time_or_null(ci[i].next_renewal), "source", ci[i].source,
						      "error", str_or_null(ci[i].error)));
	free(ci);
	return json_pack("{s:o, s:o}", "certs", list, "mesh", a->mesh_off ? json_sprintf("off: %s", a->mesh_off) : json_string("on"));
}

/* ---- NetworkPolicy ---- */

static json_t *selector_json(const struct sl_selector *sel)
{
	json_t *o = json_object(), *ml = json_object(), *ex = json_array();

	for (size_t i = 0; i < sel->match.n; i++)
		json_object_set_new(ml, sel->match.v[i].key, json_string(sel->match.v[i].value));
	for (size_t i = 0; i < sel->n_exprs; i++) {
		static const char *const ops[] = { "In", "NotIn", "Exists", "DoesNotExist" };
		json_t *vals = json_array();

		for (size_t j = 0; j < sel->exprs[i].n_values; j++)
			json_array_append_new(vals, json_string(sel->exprs[i].values[j]));
		json_array_append_new(ex, json_pack("{s:s, s:s, s:o}", "key", sel->exprs[i].key, "operator",
						    ops[sel->exprs[i].op], "values", vals));
	}
	json_object_set_new(o, "matchLabels", ml);
	json_object_set_new(o, "matchExpressions", ex);
	return o;
}

/* The counter slot of a rule (or default deny) by name, 0 when never compiled. */
static uint64_t slot_count(const struct agent *a, const char *ns, const char *name, int dir, int rule,
			   uint32_t *slot_out)
{
	const struct policy_slot *slots;
	size_t n = a->polreg ? policy_registry_slots(a->polreg, &slots) : 0;

	*slot_out = 0;
	for (size_t i = 0; i < n; i++) {
		if (slots[i].dir != dir || slots[i].rule != rule || strcmp(slots[i].ns, ns) ||
		    strcmp(slots[i].policy, name))
			continue;
		*slot_out = slots[i].slot;
		return a->polsync ? polsync_slot_count(a->polsync, slots[i].slot) : 0;
	}
	return 0;
}

static const struct agent_authz_count *authz_counted(const struct agent *a, const char *kind, const char *ns,
						    const char *name)
{
	for (size_t i = 0; i < a->n_authz_counts; i++)
		if (!strcmp(a->authz_counts[i].kind, kind) && !strcmp(a->authz_counts[i].ns, ns) &&
		    !strcmp(a->authz_counts[i].name, name))
			return &a->authz_counts[i];
	return NULL;
}

/* Local pods a security.istio.io policy applies to. */
static json_t *local_pods_json(const struct agent *a, const struct sl_authz *az, const struct sl_peerauthn *pa)
{
	json_t *v = json_array();
	char name[320];

	for (size_t i = 0; a->model && i < a->model->res->n_pods; i++) {
		const struct sl_workload *w = &a->model->workloads[i];
		bool in;

		if (!w->local)
			continue;
		if (az) {
			in = authz_applies(a->model, a->root_ns, az, w->pod);
		} else {
			const struct sl_peerauthn *by = NULL;

			authz_mtls_mode(a->model, a->root_ns, w->pod, 0, &by);
			in = by == pa;
		}
		if (!in)
			continue;
		snprintf(name, sizeof(name), "%s/%s", w->pod->ns, w->pod->name);
		json_array_append_new(v, json_string(name));
	}
	return v;
}

static json_t *authz_json(const struct agent *a)
{
	const struct sl_resources *r = a->model ? a->model->res : NULL;
	json_t *v = json_array();

	for (size_t i = 0; r && i < r->n_authzs; i++) {
		const struct sl_authz *az = &r->authzs[i];
		const struct agent_authz_count *c = authz_counted(a, "AuthorizationPolicy", az->ns, az->name);
		size_t l7 = 0;

		for (size_t j = 0; j < az->n_rules; j++)
			l7 += az->rules[j].l7;
		json_array_append_new(v, json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:I, s:I, s:I}", "namespace", az->ns,
						   "name", az->name, "action", authz_action_str(az->action), "rules",
						   (json_int_t)az->n_rules, "l7_rules", (json_int_t)l7, "local_pods",
						   local_pods_json(a, az, NULL), "allowed", (json_int_t)(c ? c->allowed : 0),
						   "denied", (json_int_t)(c ? c->denied : 0), "audited",
						   (json_int_t)(c ? c->audited : 0)));
	}
	return v;
}

static json_t *peerauthn_json(const struct agent *a)
{
	static const char *const modes[] = { "UNSET", "PERMISSIVE", "STRICT", "DISABLE" };
	const struct sl_resources *r = a->model ? a->model->res : NULL;
	json_t *v = json_array();

	for (size_t i = 0; r && i < r->n_peerauthns; i++) {
		const struct sl_peerauthn *pa = &r->peerauthns[i];
		const struct agent_authz_count *c = authz_counted(a, "PeerAuthentication", pa->ns, pa->name);

		json_array_append_new(v, json_pack("{s:s, s:s, s:s, s:o, s:I}", "namespace", pa->ns, "name", pa->name,
						   "mode", modes[pa->mode], "local_pods", local_pods_json(a, NULL, pa),
						   "plaintext_refused", (json_int_t)(c ? c->denied : 0)));
	}
	return v;
}

json_t *views_policies(const struct agent *a)
{
	const struct sl_resources *r = a->model ? a->model->res : NULL;
	const struct policy *p = a->policy;
	json_t *pols = json_array(), *eps = json_array();
	char ip[SL_IP_STRLEN];

	for (size_t i = 0; r && i < r->n_netpols; i++) {
		const struct sl_netpol *np = &r->netpols[i];
		json_t *types = json_array(), *rules = json_array(), *denies = json_object();

		if (np->type_ingress)
			json_array_append_new(types, json_string("Ingress"));
		if (np->type_egress)
			json_array_append_new(types, json_string("Egress"));
		for (int dir = 0; dir < 2; dir++) {
			size_t n = dir == SL_DIR_INGRESS ? np->n_ingress : np->n_egress;
			const char *dn = dir == SL_DIR_INGRESS ? "ingress" : "egress";
			uint32_t slot;
			uint64_t c;

			for (size_t j = 0; j < n; j++) {
				const struct sl_np_rule *ru = dir == SL_DIR_INGRESS ? &np->ingress[j] : &np->egress[j];
				char name[32];

				c = slot_count(a, np->ns, np->name, dir, (int)j, &slot);
				snprintf(name, sizeof(name), "%s[%zu]", dn, j);
				json_array_append_new(rules, json_pack("{s:s, s:I, s:I, s:I, s:I}", "rule", name, "peers",
								       (json_int_t)ru->n_peers, "ports",
								       (json_int_t)ru->n_ports, "slot", (json_int_t)slot,
								       "allowed", (json_int_t)c));
			}
			c = slot_count(a, np->ns, np->name, dir, -1, &slot);
			json_object_set_new(denies, dn, json_integer((json_int_t)c));
		}
		json_array_append_new(pols, json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o}", "namespace", np->ns,
						      "name", np->name, "source", np->src.file, "line", np->src.line,
						      "podSelector", selector_json(&np->pod_sel), "policyTypes", types,
						      "rules", rules, "denied_as_isolating", denies));
	}
	for (size_t i = 0; p && i < p->n_eps; i++) {
		const struct policy_ep *e = &p->eps[i];
		json_t *ips = json_array();

		for (size_t j = 0; j < e->pod->n_ips; j++)
			json_array_append_new(ips, json_string(sl_ip_str(&e->pod->ips[j], ip)));
		json_array_append_new(eps, json_pack("{s:s, s:s, s:o, s:I, s:b, s:b, s:s?, s:s?, s:b}", "namespace",
						     e->pod->ns, "name", e->pod->name, "ips", ips, "endpoint",
						     (json_int_t)e->ep_id, "isolated_ingress",
						     !!(e->flags & SL_EP_F_ISO_IN), "isolated_egress",
						     !!(e->flags & SL_EP_F_ISO_OUT), "ingress_isolated_by",
						     e->isolated_by[0] ? e->isolated_by[0]->name : NULL,
						     "egress_isolated_by", e->isolated_by[1] ? e->isolated_by[1]->name : NULL,
						     "enrolled", !!(e->flags & SL_EP_F_ENROLLED)));
	}
	return json_pack("{s:o, s:o, s:o, s:o, s:o}", "policy", policy_json(a), "policies", pols, "endpoints", eps,
			 "authorization", authz_json(a), "peer_authentication", peerauthn_json(a));
}

/* The value of key in a query string (a=b&c=d, %XX decoded) into out. */
static bool query_get(const char *q, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);

	for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		size_t o = 0;

		if (strncmp(p, key, kl) || p[kl] != '=')
			continue;
		for (p += kl + 1; *p && *p != '&' && o + 1 < len; p++) {
			unsigned int c;

			if (*p == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &c) == 1) {
				out[o++] = (char)c;
				p += 2;
			} else {
				out[o++] = *p == '+' ? ' ' : *p;
			}
		}
		out[o] = '\0';
		return true;
	}
	return false;
}

static const char *kernel_verdict(const struct agent *a, int dir, const struct sl_ip *local, const struct sl_ip *peer,
				  uint16_t port, uint8_t proto, const char **slot_name)
{
	const struct policy_slot *ps;
	uint32_t slot;
	int r;

	*slot_name = NULL;
	if (!a->policy)
		return "no policy compiled";
	r = policy_lookup(a->policy, dir, local, peer, port, proto, &slot);
	if (r < 0)
		return "not policed on this node";
	ps = a->polreg ? policy_registry_slot(a->polreg, slot) : NULL;
	*slot_name = ps ? ps->name : NULL;
	return r ? "allow" : "deny";
}

/* ?from=<ns/pod|ip>&to=<ns/pod|ip>&port=N[&protocol=TCP|UDP][&family=4|6] */
json_t *views_policy_check(const struct agent *a, const char *q, int *code)
{
	char from[300] = "", to[300] = "", port_s[16] = "", proto_s[16] = "TCP", fam_s[8] = "";
	struct sl_ip src, dst;
	struct policy_decision d;
	const char *kin, *keg, *sin = NULL, *seg = NULL;
	char sb[SL_IP_STRLEN], db[SL_IP_STRLEN];
	uint8_t proto;
	long port;
	int fam = 0;

	if (!query_get(q, "from", from, sizeof(from)) || !query_get(q, "to", to, sizeof(to)) ||
	    !query_get(q, "port", port_s, sizeof(port_s))) {
		*code = 400;
		return json_pack("{s:s}", "error", "want ?from=<ns/pod|ip>&to=<ns/pod|ip>&port=N[&protocol=UDP]");
	}
	query_get(q, "protocol", proto_s, sizeof(proto_s));
	if (query_get(q, "family", fam_s, sizeof(fam_s)))
		fam = !strcmp(fam_s, "6") ? SL_AF_INET6 : SL_AF_INET;
	port = strtol(port_s, NULL, 10);
	proto = !strcasecmp(proto_s, "UDP") ? SL_IPPROTO_UDP : !strcasecmp(proto_s, "SCTP") ? 132 : SL_IPPROTO_TCP;
	if (port < 1 || port > 65535) {
		*code = 400;
		return json_pack("{s:s}", "error", "port: 1 to 65535");
	}
	if (!a->model) {
		*code = 503;
		return json_pack("{s:s}", "error", "no configuration in force yet");
	}
	/* The destination's family decides the source's address, so a dual-stack
	 * pod checked against an IPv6 address uses its IPv6 one. */
	if (policy_resolve(a->model, to, fam, &dst)) {
		*code = 404;
		return json_pack("{s:s, s:s}", "error", "no such pod or address", "to", to);
	}
	if (policy_resolve(a->model, from, dst.family, &src) || src.family != dst.family) {
		*code = 404;
		return json_pack("{s:s, s:s}", "error", "no such pod or address of that family", "from", from);
	}
	policy_decide(a->model, &src, &dst, (uint16_t)port, proto, &d);
	kin = d.dst_pod ? kernel_verdict(a, SL_DIR_INGRESS, &dst, &src, (uint16_t)port, proto, &sin) : "-";
	keg = d.src_pod ? kernel_verdict(a, SL_DIR_EGRESS, &src, &dst, (uint16_t)port, proto, &seg) : "-";
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:{s:b, s:s, s:s, s:s?}, s:{s:b, s:s, s:s, s:s?}}",
			 "verdict", d.allow ? "allow" : "deny", "from", from, "to", to, "src_ip", sl_ip_str(&src, sb),
			 "port", (int)port, "protocol", sl_proto_str(proto), "dst_ip", sl_ip_str(&dst, db),
			 "egress", "allow", d.egress_allow, "reason", d.egress, "this_node", keg, "this_node_rule", seg,
			 "ingress", "allow", d.ingress_allow, "reason", d.ingress, "this_node", kin, "this_node_rule",
			 sin);
}

int views_policy_metrics(const struct agent *a, FILE *f)
{
	const struct policy_slot *slots;
	size_t n = a->polreg ? policy_registry_slots(a->polreg, &slots) : 0;

	fprintf(f, "# HELP sluice_networkpolicy_verdicts_total New connections and UDP datagrams decided by a "
		   "NetworkPolicy rule (allow) or by isolation with no rule matching (deny), kernel and agent.\n"
		   "# TYPE sluice_networkpolicy_verdicts_total counter\n");
	for (size_t i = 0; i < n; i++) {
		const struct policy_slot *s = &slots[i];
		uint64_t c = a->polsync ? polsync_slot_count(a->polsync, s->slot) : 0;
		char rule[16];

		if (s->rule >= 0)
			snprintf(rule, sizeof(rule), "%d", s->rule);
		else
			snprintf(rule, sizeof(rule), "default-deny");
		fprintf(f,
			"sluice_networkpolicy_verdicts_total{namespace=\"%s\",policy=\"%s\",direction=\"%s\","
			"rule=\"%s\",verdict=\"%s\"} %llu\n",
			s->ns, s->policy, s->dir == SL_DIR_INGRESS ? "ingress" : "egress", rule,
			s->rule >= 0 ? "allow" : "deny", (unsigned long long)c);
	}
	fprintf(f, "# HELP sluice_authorization_decisions_total Connections the agent judged by an "
		   "AuthorizationPolicy or PeerAuthentication (the deciding policy).\n"
		   "# TYPE sluice_authorization_decisions_total counter\n");
	for (size_t i = 0; i < a->n_authz_counts; i++) {
		const struct agent_authz_count *c = &a->authz_counts[i];

		fprintf(f, "sluice_authorization_decisions_total{kind=\"%s\",namespace=\"%s\",policy=\"%s\",decision=\"allow\"} %llu\n",
			c->kind, c->ns, c->name, (unsigned long long)c->allowed);
		fprintf(f, "sluice_authorization_decisions_total{kind=\"%s\",namespace=\"%s\",policy=\"%s\",decision=\"deny\"} %llu\n",
			c->kind, c->ns, c->name, (unsigned long long)c->denied);
	}
	return ferror(f) ? -EIO : 0;
}

/* ---- Gateway API routes ---- */

json_t *views_routes(const struct agent *a)
{
	json_t *routes = json_array();
	size_t n = a->routes ? route_status_count(a->routes) : 0;
	json_t *cur = NULL;
	const struct sl_route *last = NULL;

	for (size_t i = 0; i < n; i++) {
		const struct route_parent_status *ps = route_status_at(a->routes, i);
		const struct sl_route *r = ps->route;
		const struct sl_parent_ref *pr = &r->parents[ps->parent];

		if (r != last) {
			json_t *hosts = json_array();

			for (size_t h = 0; h < r->n_hostnames; h++)
				json_array_append_new(hosts, json_string(r->hostnames[h]));
			cur = json_array();
			json_array_append_new(routes,
					      json_pack("{s:s, s:s, s:s, s:o, s:i, s:o, s:s, s:i}", "kind",
							route_kind_str(r->kind), "namespace", r->ns, "name",
							r->name, "hostnames", hosts, "rules", (int)r->n_rules,
							"parents", cur, "file", r->src.file, "line", r->src.line));
			last = r;
		}
		json_array_append_new(cur, json_pack("{s:s, s:s, s:s, s:s?, s:i, s:b, s:s, s:b, s:s, s:s}",
						     "kind", pr->kind ? pr->kind : "Gateway", "namespace",
						     pr->ns ? pr->ns : r->ns, "name", pr->name,
						     "section", pr->section_name, "port", pr->port,
						     "accepted", ps->accepted, "accepted_reason",
						     ps->accepted_reason ? ps->accepted_reason : "",
						     "resolved_refs", ps->resolved_refs, "refs_reason",
						     ps->refs_reason ? ps->refs_reason : "", "message",
						     ps->message));
	}
	return json_pack("{s:o}", "routes", routes);
}

static json_t *edits_json(const struct route_hdr_edit *e, size_t n)
{
	static const char *const ops[] = { "set", "add", "remove" };
	json_t *arr = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s?}", "op", ops[e[i].op], "name",
						     e[i].name, "value", e[i].value));
	return arr;
}

/* ?service=ns/name&port=N&method=M&path=P[&from=NS][&host=H][&h0=k:v...] */
json_t *views_route_check(const struct agent *a, const char *q, int *code)
{
	static const char *const actions[] = { "forward", "redirect", "respond" };
	static struct route_decision d;	/* large; the status socket runs on one thread */
	char svc[300] = "", port_s[16] = "80", method[16] = "GET", path[2048] = "/", from[64] = "";
	char host[256] = "", hv[WAYPOINT_HEADER_ARGS][512];
	struct route_header hdrs[WAYPOINT_HEADER_ARGS];
	const struct route_set *set;
	char *slash, *query;
	size_t nh = 0;
	long port;

	if (!query_get(q, "service", svc, sizeof(svc)) || !(slash = strchr(svc, '/'))) {
		*code = 400;
		return json_pack("{s:s}", "error", "want ?service=<ns>/<name>&port=N&method=M&path=P[&from=NS][&h0=k:v]");
	}
	*slash = 0;
	query_get(q, "port", port_s, sizeof(port_s));
	query_get(q, "method", method, sizeof(method));
	query_get(q, "path", path, sizeof(path));
	query_get(q, "host", host, sizeof(host));
	if (!query_get(q, "from", from, sizeof(from)))
		snprintf(from, sizeof(from), "%s", svc);
	for (int i = 0; i < WAYPOINT_HEADER_ARGS; i++) {
		char key[8], *colon;

		snprintf(key, sizeof(key), "h%d", i);
		if (!query_get(q, key, hv[nh], sizeof(hv[nh])))
			break;
		colon = strchr(hv[nh], ':');
		if (!colon)
			continue;
		*colon = 0;
		hdrs[nh] = (struct route_header){ hv[nh], strlen(hv[nh]), colon + 1 + strspn(colon + 1, " "),
						  strlen(colon + 1 + strspn(colon + 1, " ")) };
		nh++;
	}
	port = strtol(port_s, NULL, 10);
	if (port < 1 || port > 65535) {
		*code = 400;
		return json_pack("{s:s}", "error", "port: 1 to 65535");
	}
	if (!a->routes) {
		*code = 503;
		return json_pack("{s:s}", "error", "no configuration in force yet");
	}
	set = route_for_service(a->routes, from, svc, slash + 1, (uint16_t)port);
	if (!set)
		return json_pack("{s:s, s:s, s:i, s:s, s:s}", "service", svc, "name", slash + 1, "port",
				 (int)port, "from", from, "result", "no routes: plain L4 to the Service");
	query = strchr(path, '?');
	if (query)
		*query++ = 0;
	{
		struct route_request rq = {
			.method = method, .path = path, .query = query, .host = host[0] ? host : NULL,
			.scheme = "http", .port = (uint16_t)port, .headers = hdrs, .n_headers = nh,
		};

		route_decide(set, &rq, (uint32_t)random(), &d);
	}
	return json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:i, s:s?, s:s?, s:i, s:s, s:s, s:o, s:o, s:s?}",
			 "service", svc, "name", slash + 1, "port", (int)port, "from", from, "result",
			 "routed", "action", actions[d.action], "status", d.status, "backend_namespace",
			 d.action == ROUTE_FORWARD ? d.backend.ns : NULL, "backend", d.action == ROUTE_FORWARD ? d.backend.name : NULL,
			 "backend_port", d.backend.port, "path", d.path, "rule", d.why,
			 "request_edits", edits_json(d.req_edits, d.n_req_edits), "response_edits",
			 edits_json(d.resp_edits, d.n_resp_edits), "location",
			 d.action == ROUTE_REDIRECT ? d.location : NULL);
}
