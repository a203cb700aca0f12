// SPDX-License-Identifier: Apache-2.0
/* views.c - see views.h. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/counters.h>

#include "agent.h"
#include "identity.h"
#include "loader.h"
#include "model.h"
#include "pods.h"
#include "tunnel.h"
#include "views.h"

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
		" s:{s:I, s:I, s:I, s:f, s:o, s:I, s:I, s:I}, s:o}",
		"version", SL_VERSION, "node", a->node_name, "pid", (int)getpid(), "uptime_s",
		(double)(now.tv_sec - a->started.tv_sec) + (double)(now.tv_nsec - a->started.tv_nsec) / 1e9,
		"config", "source", a->config_dir, "generation", (json_int_t)a->generation, "state",
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
		"last_sync_ms", a->last_sync.ms, "last_sync_at", time_or_null(a->last_sync_at), "updates",
		(json_int_t)a->last_sync.updates, "deletes", (json_int_t)a->last_sync.deletes, "errors",
		(json_int_t)a->last_sync.errors, "mesh", mesh_json(a));
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
			       " s:I, s:I, s:I, s:f}",
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
			       (cl->now_ms - (double)c->start_ms) / 1e3));
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
	return json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "connections",
			 list, "stats", "open", (json_int_t)st.conns_open, "total",
			 (json_int_t)st.conns_total, "failed", (json_int_t)st.conns_failed,
			 "hbone_clients", (json_int_t)st.hbone_clients, "hbone_clients_total",
			 (json_int_t)st.hbone_clients_total, "hbone_servers", (json_int_t)st.hbone_servers,
			 "hbone_servers_total", (json_int_t)st.hbone_servers_total, "hbone_setup_failed",
			 (json_int_t)st.hbone_setup_failed, "streams", (json_int_t)st.streams_open,
			 "accept_errors", (json_int_t)st.accept_errors);
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
