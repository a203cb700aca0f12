// SPDX-License-Identifier: Apache-2.0
/* model.c - resolve decoded objects into Service frontends for one node.
 *
 * Frontend = one cluster IP x one Service port. Its backends come from the
 * Service's EndpointSlices of the IP's family (the slice port named like the
 * Service port gives the targetPort), or, when no slice names the Service and
 * it has a selector, from the matching Pods, as the EndpointSlice controller
 * would derive them (named targetPorts resolved on each Pod). Chosen for the
 * datapath: ready, not terminating, and on this node for
 * internalTrafficPolicy: Local.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define AFFINITY_TIMEOUT_DEFAULT 10800

const char *labels_get(const struct sl_labels *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].key, key))
			return l->v[i].value;
	return NULL;
}

bool labels_match(const struct sl_labels *selector, const struct sl_labels *labels)
{
	for (size_t i = 0; i < selector->n; i++) {
		const char *v = labels_get(labels, selector->v[i].key);

		if (!v || strcmp(v, selector->v[i].value))
			return false;
	}
	return true;
}

bool selector_empty(const struct sl_selector *sel)
{
	return !sel->match.n && !sel->n_exprs;
}

bool selector_match(const struct sl_selector *sel, const struct sl_labels *labels)
{
	if (!labels_match(&sel->match, labels))
		return false;
	for (size_t i = 0; i < sel->n_exprs; i++) {
		const struct sl_sel_expr *x = &sel->exprs[i];
		const char *v = labels_get(labels, x->key);
		bool in = false;

		for (size_t j = 0; v && j < x->n_values; j++)
			in |= !strcmp(v, x->values[j]);
		switch (x->op) {
		case SL_SEL_IN:
			if (!in)
				return false;
			break;
		case SL_SEL_NOT_IN:	/* a missing label is "not in" (apimachinery) */
			if (in)
				return false;
			break;
		case SL_SEL_EXISTS:
			if (!v)
				return false;
			break;
		case SL_SEL_DOES_NOT_EXIST:
			if (v)
				return false;
			break;
		}
	}
	return true;
}

bool cidr_contains(const struct sl_cidr *c, const struct sl_ip *ip)
{
	unsigned int full = c->len / 8, rest = c->len % 8;

	if (ip->family != c->ip.family)
		return false;
	if (memcmp(ip->addr.octets, c->ip.addr.octets, full))
		return false;
	return !rest || !((ip->addr.octets[full] ^ c->ip.addr.octets[full]) & (0xff << (8 - rest)));
}

const char *sl_ip_str(const struct sl_ip *ip, char *buf)
{
	if (!inet_ntop(ip->family == SL_AF_INET6 ? AF_INET6 : AF_INET, &ip->addr, buf, SL_IP_STRLEN))
		snprintf(buf, SL_IP_STRLEN, "?");
	return buf;
}

int sl_ip_parse(const char *s, struct sl_ip *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, &out->addr.v4) == 1) {
		out->family = SL_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &out->addr.v6) == 1) {
		out->family = SL_AF_INET6;
		return 0;
	}
	return -EINVAL;
}

const char *const sl_filter_type_names[SL_FILTER_TYPE_COUNT] = {
	[SL_FILTER_REQUEST_HEADER] = "RequestHeaderModifier",
	[SL_FILTER_RESPONSE_HEADER] = "ResponseHeaderModifier",
	[SL_FILTER_REDIRECT] = "RequestRedirect",
	[SL_FILTER_REWRITE] = "URLRewrite",
	[SL_FILTER_MIRROR] = "RequestMirror",
	[SL_FILTER_CORS] = "CORS",
	[SL_FILTER_EXTENSION] = "ExtensionRef",
};

const char *sl_proto_str(uint8_t proto)
{
	switch (proto) {
	case SL_IPPROTO_TCP:
		return "TCP";
	case SL_IPPROTO_UDP:
		return "UDP";
	case 132:
		return "SCTP";
	default:
		return "?";
	}
}

static int str_cmp_null(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static int ip_cmp(const struct sl_ip *a, const struct sl_ip *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(&a->addr, &b->addr, sizeof(a->addr));
}

/* ---- duplicate detection: sort (ns, name) references, compare neighbours ---- */

struct obj_ref {
	const char *ns, *name;
	const struct sl_src *src;
};

static int obj_ref_cmp(const void *pa, const void *pb)
{
	const struct obj_ref *a = pa, *b = pb;
	int c = str_cmp_null(a->ns, b->ns);

	return c ? c : strcmp(a->name, b->name);
}

static void check_dups(struct obj_ref *refs, size_t n, const char *kind, struct diags *errs)
{
	qsort(refs, n, sizeof(*refs), obj_ref_cmp);
	for (size_t i = 1; i < n; i++) {
		if (obj_ref_cmp(&refs[i - 1], &refs[i]))
			continue;
		diags_add(errs, refs[i].src->file, refs[i].src->line,
			  "%s %s%s%s: defined twice (also at %s:%d)", kind, refs[i].ns ? refs[i].ns : "",
			  refs[i].ns ? "/" : "", refs[i].name, refs[i - 1].src->file, refs[i - 1].src->line);
	}
}

/* Objects of one kind defined twice (same namespace and name). */
static int check_all_dups(const struct sl_resources *r, struct diags *errs)
{
	size_t max = r->n_namespaces, i;
	struct obj_ref *refs;

	max = r->n_pods > max ? r->n_pods : max;
	max = r->n_services > max ? r->n_services : max;
	max = r->n_slices > max ? r->n_slices : max;
	refs = calloc(max ? max : 1, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	for (i = 0; i < r->n_namespaces; i++)
		refs[i] = (struct obj_ref){ NULL, r->namespaces[i].name, &r->namespaces[i].src };
	check_dups(refs, r->n_namespaces, "Namespace", errs);
	for (i = 0; i < r->n_pods; i++)
		refs[i] = (struct obj_ref){ r->pods[i].ns, r->pods[i].name, &r->pods[i].src };
	check_dups(refs, r->n_pods, "Pod", errs);
	for (i = 0; i < r->n_services; i++)
		refs[i] = (struct obj_ref){ r->services[i].ns, r->services[i].name, &r->services[i].src };
	check_dups(refs, r->n_services, "Service", errs);
	for (i = 0; i < r->n_slices; i++)
		refs[i] = (struct obj_ref){ r->slices[i].ns, r->slices[i].name, &r->slices[i].src };
	check_dups(refs, r->n_slices, "EndpointSlice", errs);
	free(refs);
	return 0;
}

/* ---- address claims: two objects with one IP ---- */

struct ip_claim {
	struct sl_ip ip;
	const char *kind, *ns, *name;
	const struct sl_src *src;
};

static int ip_claim_cmp(const void *pa, const void *pb)
{
	const struct ip_claim *a = pa, *b = pb;

	return ip_cmp(&a->ip, &b->ip);
}

static int check_ip_claims(const struct sl_resources *r, struct diags *errs)
{
	size_t n = 0, cap = 0;
	struct ip_claim *c;
	char ipb[SL_IP_STRLEN];

	for (size_t i = 0; i < r->n_services; i++)
		cap += r->services[i].n_cluster_ips;
	for (size_t i = 0; i < r->n_pods; i++)
		cap += r->pods[i].host_network ? 0 : r->pods[i].n_ips;
	c = calloc(cap ? cap : 1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_services; i++) {
		const struct sl_service *s = &r->services[i];

		for (size_t j = 0; j < s->n_cluster_ips; j++)
			c[n++] = (struct ip_claim){ s->cluster_ips[j], "Service", s->ns, s->name, &s->src };
	}
	for (size_t i = 0; i < r->n_pods; i++) {
		const struct sl_pod *p = &r->pods[i];

		for (size_t j = 0; !p->host_network && j < p->n_ips; j++)
			c[n++] = (struct ip_claim){ p->ips[j], "Pod", p->ns, p->name, &p->src };
	}
	qsort(c, n, sizeof(*c), ip_claim_cmp);
	for (size_t i = 1; i < n; i++) {
		if (ip_cmp(&c[i - 1].ip, &c[i].ip))
			continue;
		diags_add(errs, c[i].src->file, c[i].src->line,
			  "%s %s/%s: IP %s is already claimed by %s %s/%s (%s:%d)", c[i].kind, c[i].ns,
			  c[i].name, sl_ip_str(&c[i].ip, ipb), c[i - 1].kind, c[i - 1].ns, c[i - 1].name,
			  c[i - 1].src->file, c[i - 1].src->line);
	}
	free(c);
	return 0;
}

/* ---- resolution ---- */

/* Slices by (ns, service), for a binary search per Service. */
static int slice_ptr_cmp(const void *pa, const void *pb)
{
	const struct sl_endpoint_slice *a = *(const struct sl_endpoint_slice *const *)pa;
	const struct sl_endpoint_slice *b = *(const struct sl_endpoint_slice *const *)pb;
	int c = strcmp(a->ns, b->ns);

	return c ? c : str_cmp_null(a->service, b->service);
}

/* Pods by namespace, for selector-derived endpoints. */
static int pod_ptr_cmp(const void *pa, const void *pb)
{
	const struct sl_pod *a = *(const struct sl_pod *const *)pa;
	const struct sl_pod *b = *(const struct sl_pod *const *)pb;

	return strcmp(a->ns, b->ns);
}

struct index {
	const struct sl_endpoint_slice **slices;
	size_t n_slices;
	const struct sl_pod **pods;
	size_t n_pods;
};

/* [*first, *end) of items whose (ns[, service]) equals the probe. */
static void slice_range(const struct index *ix, const char *ns, const char *svc, size_t *first,
			size_t *end)
{
	struct sl_endpoint_slice probe = { .ns = (char *)ns, .service = (char *)svc };
	const struct sl_endpoint_slice *pp = &probe;
	size_t lo = 0, hi = ix->n_slices;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (slice_ptr_cmp(&ix->slices[mid], &pp) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*first = lo;
	while (lo < ix->n_slices && !slice_ptr_cmp(&ix->slices[lo], &pp))
		lo++;
	*end = lo;
}

static void pod_range(const struct index *ix, const char *ns, size_t *first, size_t *end)
{
	struct sl_pod probe = { .ns = (char *)ns };
	const struct sl_pod *pp = &probe;
	size_t lo = 0, hi = ix->n_pods;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (pod_ptr_cmp(&ix->pods[mid], &pp) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*first = lo;
	while (lo < ix->n_pods && !pod_ptr_cmp(&ix->pods[lo], &pp))
		lo++;
	*end = lo;
}

struct be_list {
	struct sl_backend *v;
	size_t n, cap;
};

static int be_push(struct be_list *l, const struct sl_backend *b)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct sl_backend *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *b;
	return 0;
}

static int backend_cmp(const void *pa, const void *pb)
{
	const struct sl_backend *a = pa, *b = pb;
	int c = ip_cmp(&a->ip, &b->ip);

	return c ? c : (int)a->port - (int)b->port;
}

/* One endpoint listed by two slices (as during a slice rebalance) counts once. */
static size_t dedup_sorted(struct sl_backend *v, size_t n)
{
	size_t out = 0;

	for (size_t i = 0; i < n; i++)
		if (!out || backend_cmp(&v[out - 1], &v[i]))
			v[out++] = v[i];
	return out;
}

static const struct sl_slice_port *slice_port_for(const struct sl_endpoint_slice *sl,
						  const struct sl_service_port *sp)
{
	for (size_t i = 0; i < sl->n_ports; i++)
		if (sl->ports[i].proto == sp->proto && !str_cmp_null(sl->ports[i].name, sp->name))
			return &sl->ports[i];
	return NULL;
}

/* The port a Pod serves a Service port on: the number, or the named container port. */
static uint16_t pod_target_port(const struct sl_pod *p, const struct sl_service_port *sp)
{
	if (!sp->target_port_name)
		return sp->target_port ? sp->target_port : sp->port;
	for (size_t i = 0; i < p->n_ports; i++)
		if (p->ports[i].name && p->ports[i].proto == sp->proto &&
		    !strcmp(p->ports[i].name, sp->target_port_name))
			return p->ports[i].port;
	return 0;
}

static const struct sl_ip *pod_ip_of_family(const struct sl_pod *p, uint8_t family)
{
	for (size_t i = 0; i < p->n_ips; i++)
		if (p->ips[i].family == family)
			return &p->ips[i];
	return NULL;
}

static int collect_backends(const struct index *ix, const struct sl_service *s,
			    const struct sl_service_port *sp, uint8_t family, struct be_list *out)
{
	size_t first, end;
	int err;

	slice_range(ix, s->ns, s->name, &first, &end);
	if (first == end && s->has_selector && s->selector.n) {
		pod_range(ix, s->ns, &first, &end);
		for (size_t i = first; i < end; i++) {
			const struct sl_pod *p = ix->pods[i];
			const struct sl_ip *ip = pod_ip_of_family(p, family);
			struct sl_backend b = { .pod = p->name, .node = p->node };

			if (!ip || !labels_match(&s->selector, &p->labels))
				continue;
			b.ip = *ip;
			b.port = pod_target_port(p, sp);
			if (!b.port)
				continue;	/* the Pod has no port of that name: not an endpoint */
			b.ready = p->ready && !p->terminating;
			b.serving = p->ready;
			b.terminating = p->terminating;
			err = be_push(out, &b);
			if (err)
				return err;
		}
		return 0;
	}
	for (size_t i = first; i < end; i++) {
		const struct sl_endpoint_slice *sl = ix->slices[i];
		const struct sl_slice_port *port;

		if (sl->family != family || !(port = slice_port_for(sl, sp)))
			continue;
		for (size_t j = 0; j < sl->n_endpoints; j++) {
			const struct sl_endpoint *e = &sl->endpoints[j];
			/* Consumers use the first address only (EndpointSlice API). */
			struct sl_backend b = { .port = port->port, .pod = e->pod, .node = e->node,
						.ready = e->ready, .serving = e->serving,
						.terminating = e->terminating };

			if (!e->n_addrs || e->addrs[0].family != family)
				continue;
			b.ip = e->addrs[0];
			err = be_push(out, &b);
			if (err)
				return err;
		}
	}
	return 0;
}

static int frontend_cmp(const void *pa, const void *pb)
{
	const struct sl_frontend *a = pa, *b = pb;

	return memcmp(&a->key, &b->key, sizeof(a->key));
}

static int build_frontend(struct sl_model *m, const struct index *ix, const struct sl_service *s,
			  const struct sl_service_port *sp, const struct sl_ip *vip, struct diags *errs)
{
	struct sl_frontend *f = &m->frontends[m->n_frontends];
	struct be_list bl = { 0 };
	size_t n_chosen = 0;
	int err;

	memset(f, 0, sizeof(*f));
	f->svc = s;
	f->port = sp;
	f->key.vip = vip->addr;
	f->key.port = htons(sp->port);
	f->key.proto = sp->proto;
	f->key.family = vip->family;
	if (s->affinity_client_ip) {
		f->flags |= SL_SVC_F_AFFINITY;
		f->aff_timeout = s->affinity_timeout ? s->affinity_timeout : AFFINITY_TIMEOUT_DEFAULT;
	}
	if (s->itp_local)
		f->flags |= SL_SVC_F_LOCAL;

	err = collect_backends(ix, s, sp, vip->family, &bl);
	if (err) {
		free(bl.v);
		return err;
	}
	if (bl.n) {
		qsort(bl.v, bl.n, sizeof(*bl.v), backend_cmp);
		bl.n = dedup_sorted(bl.v, bl.n);
	}
	for (size_t i = 0; i < bl.n; i++) {
		struct sl_backend *b = &bl.v[i];

		b->chosen = b->ready && !b->terminating &&
			    (!s->itp_local || (b->node && !strcmp(b->node, m->node_name)));
		n_chosen += b->chosen;
	}
	if (n_chosen > SL_BE_PER_SVC_MAX) {
		diags_add(errs, s->src.file, s->src.line,
			  "Service %s/%s: port %u: %zu ready endpoints, more than the %d one frontend holds",
			  s->ns, s->name, sp->port, n_chosen, SL_BE_PER_SVC_MAX);
		n_chosen = 0;
	}
	f->slots = calloc(n_chosen ? n_chosen : 1, sizeof(*f->slots));
	if (!f->slots) {
		free(bl.v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < bl.n && f->n_slots < n_chosen; i++) {
		const struct sl_backend *b = &bl.v[i];

		if (!b->chosen)
			continue;
		f->slots[f->n_slots++] = (struct sl_be_val){ .addr = b->ip.addr, .port = htons(b->port),
							     .family = b->ip.family };
	}
	f->backends = bl.v;
	f->n_backends = bl.n;
	m->n_backends_total += f->n_slots;
	m->n_frontends++;
	return 0;
}

static int build_index(const struct sl_resources *r, struct index *ix)
{
	ix->slices = calloc(r->n_slices ? r->n_slices : 1, sizeof(*ix->slices));
	ix->pods = calloc(r->n_pods ? r->n_pods : 1, sizeof(*ix->pods));
	if (!ix->slices || !ix->pods)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_slices; i++)
		if (r->slices[i].service)
			ix->slices[ix->n_slices++] = &r->slices[i];
	for (size_t i = 0; i < r->n_pods; i++)
		ix->pods[ix->n_pods++] = &r->pods[i];
	qsort(ix->slices, ix->n_slices, sizeof(*ix->slices), slice_ptr_cmp);
	qsort(ix->pods, ix->n_pods, sizeof(*ix->pods), pod_ptr_cmp);
	return 0;
}

static const struct sl_namespace *find_namespace(const struct sl_resources *r, const char *name)
{
	for (size_t i = 0; i < r->n_namespaces; i++)
		if (!strcmp(r->namespaces[i].name, name))
			return &r->namespaces[i];
	return NULL;
}

static const char *dataplane_label(const struct sl_labels *l)
{
	const char *v = labels_get(l, SL_LABEL_DATAPLANE);

	return v ? v : labels_get(l, SL_LABEL_DATAPLANE_ISTIO);
}

static bool pod_enrolled(const struct sl_resources *r, const struct sl_pod *p)
{
	const char *v = dataplane_label(&p->labels);
	const struct sl_namespace *ns;

	if (v)
		return !strcmp(v, SL_DATAPLANE_AMBIENT);
	if (p->host_network)
		return false;	/* shares the node's netns: nothing to capture in */
	ns = find_namespace(r, p->ns);
	v = ns ? dataplane_label(&ns->labels) : NULL;
	return v && !strcmp(v, SL_DATAPLANE_AMBIENT);
}

static int workload_ip_cmp(const void *pa, const void *pb)
{
	const struct sl_workload_ip *a = pa, *b = pb;

	return ip_cmp(&a->ip, &b->ip);
}

static int build_workloads(struct sl_model *m)
{
	const struct sl_resources *r = m->res;
	size_t n_ips = 0;

	m->workloads = calloc(r->n_pods ? r->n_pods : 1, sizeof(*m->workloads));
	for (size_t i = 0; i < r->n_pods; i++)
		n_ips += r->pods[i].n_ips;
	m->by_ip = calloc(n_ips ? n_ips : 1, sizeof(*m->by_ip));
	if (!m->workloads || !m->by_ip)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_pods; i++) {
		const struct sl_pod *p = &r->pods[i];
		struct sl_workload *w = &m->workloads[i];

		w->pod = p;
		w->enrolled = pod_enrolled(r, p);
		w->local = p->node && !strcmp(p->node, m->node_name);
		for (size_t j = 0; !p->host_network && j < p->n_ips; j++)
			m->by_ip[m->n_by_ip++] = (struct sl_workload_ip){ p->ips[j], w };
	}
	qsort(m->by_ip, m->n_by_ip, sizeof(*m->by_ip), workload_ip_cmp);
	return 0;
}

const struct sl_workload *model_workload_by_ip(const struct sl_model *m, const struct sl_ip *ip)
{
	struct sl_workload_ip probe = { .ip = *ip };
	const struct sl_workload_ip *hit;

	hit = bsearch(&probe, m->by_ip, m->n_by_ip, sizeof(*m->by_ip), workload_ip_cmp);
	return hit ? hit->wl : NULL;
}

static int validate(const struct sl_resources *r, struct diags *errs)
{
	/* Checks within one object (ports, names, IPs) are config.c's. */
	int err = check_all_dups(r, errs);

	return err ? err : check_ip_claims(r, errs);
}

static int svc_name_cmp(const void *pa, const void *pb)
{
	const struct sl_service *a = *(const struct sl_service *const *)pa;
	const struct sl_service *b = *(const struct sl_service *const *)pb;
	int c = strcmp(a->ns, b->ns);

	return c ? c : strcmp(a->name, b->name);
}

static int index_services(struct sl_model *m)
{
	const struct sl_resources *r = m->res;

	if (!r->n_services)
		return 0;
	m->svc_by_name = malloc(r->n_services * sizeof(*m->svc_by_name));
	if (!m->svc_by_name)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_services; i++)
		if (r->services[i].ns && r->services[i].name)
			m->svc_by_name[m->n_svc_by_name++] = &r->services[i];
	qsort(m->svc_by_name, m->n_svc_by_name, sizeof(*m->svc_by_name), svc_name_cmp);
	return 0;
}

int model_build(struct sl_resources *res, const char *node_name, struct sl_model **out,
		struct diags *errs)
{
	struct index ix = { 0 };
	struct sl_model *m;
	size_t n_errs = errs->n, cap = 0;
	int err;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		resources_free(res);
		return -ENOMEM;
	}
	m->res = res;
	m->node_name = strdup(node_name ? node_name : "");
	err = m->node_name ? validate(res, errs) : -ENOMEM;
	if (err)
		goto out;
	if (errs->n > n_errs) {
		err = -EINVAL;
		goto out;
	}
	err = build_index(res, &ix);
	if (!err)
		err = build_workloads(m);
	if (err)
		goto out;
	for (size_t i = 0; i < res->n_services; i++)
		cap += res->services[i].n_cluster_ips * res->services[i].n_ports;
	m->frontends = calloc(cap ? cap : 1, sizeof(*m->frontends));
	if (!m->frontends) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < res->n_services && !err; i++) {
		const struct sl_service *s = &res->services[i];

		if (s->headless || !s->n_cluster_ips || s->type == SL_SVC_EXTERNAL_NAME) {
			m->n_headless += s->headless;
			continue;
		}
		for (size_t j = 0; j < s->n_cluster_ips && !err; j++)
			for (size_t k = 0; k < s->n_ports && !err; k++)
				err = build_frontend(m, &ix, s, &s->ports[k], &s->cluster_ips[j], errs);
	}
	if (!err && errs->n > n_errs)
		err = -EINVAL;
	/* Pods' Services, for metrics' destination_service: the first that lists them. */
	for (size_t i = 0; !err && i < m->n_frontends; i++) {
		const struct sl_frontend *f = &m->frontends[i];

		for (size_t j = 0; j < f->n_backends; j++) {
			const struct sl_workload *w = model_workload_by_ip(m, &f->backends[j].ip);

			if (w && !w->service)
				m->workloads[w - m->workloads].service = f->svc;
		}
	}
	if (!err)
		qsort(m->frontends, m->n_frontends, sizeof(*m->frontends), frontend_cmp);
	if (!err)
		err = index_services(m);
out:
	free(ix.slices);
	free(ix.pods);
	if (err) {
		model_free(m);
		return err;
	}
	*out = m;
	return 0;
}

void model_free(struct sl_model *m)
{
	if (!m)
		return;
	free(m->svc_by_name);
	for (size_t i = 0; m->frontends && i < m->n_frontends; i++) {
		free(m->frontends[i].backends);
		free(m->frontends[i].slots);
	}
	free(m->frontends);
	free(m->workloads);
	free(m->by_ip);
	free(m->node_name);
	resources_free(m->res);
	free(m);
}

const struct sl_frontend *model_find_frontend(const struct sl_model *m, const struct sl_svc_key *k)
{
	struct sl_frontend probe = { .key = *k };

	return bsearch(&probe, m->frontends, m->n_frontends, sizeof(*m->frontends), frontend_cmp);
}

const struct sl_service *model_find_service(const struct sl_model *m, const char *ns, const char *name)
{
	struct sl_service probe = { .ns = (char *)ns, .name = (char *)name };
	const struct sl_service *pp = &probe;
	const struct sl_service *const *hit;

	if (!m || !ns || !name || !m->n_svc_by_name)
		return NULL;
	hit = bsearch(&pp, m->svc_by_name, m->n_svc_by_name, sizeof(*m->svc_by_name), svc_name_cmp);
	return hit ? *hit : NULL;
}

const struct sl_frontend *model_service_frontend(const struct sl_model *m, const struct sl_service *s,
						 uint16_t port, uint8_t family)
{
	const struct sl_frontend *other = NULL;

	for (size_t i = 0; s && i < s->n_cluster_ips; i++) {
		struct sl_svc_key k;
		const struct sl_frontend *f;

		memset(&k, 0, sizeof(k));
		k.vip = s->cluster_ips[i].addr;
		k.port = htons(port);
		k.proto = SL_IPPROTO_TCP;
		k.family = s->cluster_ips[i].family;
		f = model_find_frontend(m, &k);
		if (!f || !f->n_slots)
			continue;
		if (k.family == family)
			return f;
		if (!other)
			other = f;
	}
	return other;
}
