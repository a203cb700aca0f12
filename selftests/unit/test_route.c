// SPDX-License-Identifier: Apache-2.0
/* test_route.c - the Gateway API routing engine (route.c): attachment and
 * status, the spec's match precedence, filters, weights, mirrors, CORS.
 *
 * Most tests build struct sl_resources by hand (a small builder below), so
 * they pin route.c alone; the last ones go through YAML (config.c's decoder)
 * as users write it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lib/test.h"
#include "model.h"
#include "route.h"

#define CAP 16

/* ---- a builder of hand-made resources ----------------------------------- */

struct fx {
	struct sl_resources res;
	struct sl_model m;
	void *mem[4096];
	size_t n_mem;
	struct route_table *t;
	struct diags errs;
};

static void *fx_alloc(struct fx *f, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p || f->n_mem >= sizeof(f->mem) / sizeof(f->mem[0]))
		abort();
	f->mem[f->n_mem++] = p;
	return p;
}

static char *fx_str(struct fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *fx_str(struct fx *f, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	char *s;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s = fx_alloc(f, strlen(buf) + 1, 1);
	memcpy(s, buf, strlen(buf) + 1);
	return s;
}

/* The builder's strings are literals; route.c never writes them. */
static char *S(const char *s)
{
	return (char *)s;
}

static struct fx *fx_new(void)
{
	static struct fx f;

	memset(&f, 0, sizeof(f));
	f.res.routes = fx_alloc(&f, CAP, sizeof(struct sl_route));
	f.res.services = fx_alloc(&f, CAP, sizeof(struct sl_service));
	f.res.namespaces = fx_alloc(&f, CAP, sizeof(struct sl_namespace));
	f.res.gateways = fx_alloc(&f, CAP, sizeof(struct sl_gateway));
	f.res.gateway_classes = fx_alloc(&f, CAP, sizeof(struct sl_gateway_class));
	f.res.ref_grants = fx_alloc(&f, CAP, sizeof(struct sl_ref_grant));
	f.m.res = &f.res;
	return &f;
}

static void fx_free(struct fx *f)
{
	route_table_free(f->t);
	f->t = NULL;
	diags_clear(&f->errs);
	for (size_t i = 0; i < f->n_mem; i++)
		free(f->mem[i]);
	f->n_mem = 0;
}

/* A Service with TCP ports (0-terminated), named "p<port>". */
static struct sl_service *svc(struct fx *f, const char *ns, const char *name, ...)
{
	struct sl_service *s = &f->res.services[f->res.n_services++];
	va_list ap;
	int p;

	s->ns = S(ns);
	s->name = S(name);
	s->ports = fx_alloc(f, CAP, sizeof(*s->ports));
	va_start(ap, name);
	while ((p = va_arg(ap, int))) {
		struct sl_service_port *sp = &s->ports[s->n_ports++];

		sp->port = (uint16_t)p;
		sp->proto = SL_IPPROTO_TCP;
		sp->name = fx_str(f, "p%d", p);
		sp->target_port = (uint16_t)p;
	}
	va_end(ap);
	return s;
}

static void nsp(struct fx *f, const char *name, const char *key, const char *value)
{
	struct sl_namespace *n = &f->res.namespaces[f->res.n_namespaces++];

	n->name = S(name);
	if (key) {
		n->labels.v = fx_alloc(f, 1, sizeof(*n->labels.v));
		n->labels.v[0] = (struct sl_label){ S(key), S(value) };
		n->labels.n = 1;
	}
}

static struct sl_route *route(struct fx *f, enum sl_route_kind kind, const char *ns, const char *name,
			      const char *created)
{
	struct sl_route *r = &f->res.routes[f->res.n_routes++];

	r->kind = kind;
	r->ns = S(ns);
	r->name = S(name);
	r->created = S(created);
	r->parents = fx_alloc(f, CAP, sizeof(*r->parents));
	r->hostnames = fx_alloc(f, CAP, sizeof(*r->hostnames));
	r->rules = fx_alloc(f, CAP, sizeof(*r->rules));
	return r;
}

static struct sl_parent_ref *parent_svc(struct sl_route *r, const char *ns, const char *name, uint16_t port)
{
	struct sl_parent_ref *p = &r->parents[r->n_parents++];

	*p = (struct sl_parent_ref){ .group = S(""), .kind = S("Service"), .ns = S(ns), .name = S(name), .port = port };
	return p;
}

static struct sl_parent_ref *parent_gw(struct sl_route *r, const char *ns, const char *name, const char *section,
				       uint16_t port)
{
	struct sl_parent_ref *p = &r->parents[r->n_parents++];

	*p = (struct sl_parent_ref){ .group = S("gateway.networking.k8s.io"), .kind = S("Gateway"), .ns = S(ns),
				     .name = S(name), .section_name = S(section), .port = port };
	return p;
}

static void hostname(struct sl_route *r, const char *h)
{
	r->hostnames[r->n_hostnames++] = S(h);
}

static struct sl_route_rule *rule(struct fx *f, struct sl_route *r)
{
	struct sl_route_rule *ru = &r->rules[r->n_rules++];

	ru->matches = fx_alloc(f, CAP, sizeof(*ru->matches));
	ru->filters = fx_alloc(f, CAP, sizeof(*ru->filters));
	ru->backends = fx_alloc(f, CAP, sizeof(*ru->backends));
	return ru;
}

/* A match; path NULL: no path (the default PathPrefix "/"). */
static struct sl_http_match *match(struct fx *f, struct sl_route_rule *ru, enum sl_match_type type, const char *path)
{
	struct sl_http_match *m = &ru->matches[ru->n_matches++];

	m->has_path = path != NULL;
	m->path_type = path ? type : SL_MATCH_PREFIX;
	m->path = S(path ? path : "/");
	m->headers = fx_alloc(f, CAP, sizeof(*m->headers));
	m->query = fx_alloc(f, CAP, sizeof(*m->query));
	return m;
}

static struct sl_http_match *grpc_match(struct fx *f, struct sl_route_rule *ru, enum sl_match_type type,
					const char *service, const char *method)
{
	struct sl_http_match *m = match(f, ru, SL_MATCH_PREFIX, NULL);

	m->has_grpc = true;
	m->grpc_type = type;
	m->grpc_service = S(service);
	m->grpc_method = S(method);
	return m;
}

static void mhdr(struct sl_http_match *m, enum sl_match_type type, const char *name, const char *value)
{
	m->headers[m->n_headers++] = (struct sl_kv_match){ type, S(name), S(value) };
}

static void mquery(struct sl_http_match *m, enum sl_match_type type, const char *name, const char *value)
{
	m->query[m->n_query++] = (struct sl_kv_match){ type, S(name), S(value) };
}

static struct sl_backend_ref *backend(struct fx *f, struct sl_route_rule *ru, const char *ns, const char *name,
				      uint16_t port, uint32_t weight)
{
	struct sl_backend_ref *b = &ru->backends[ru->n_backends++];

	*b = (struct sl_backend_ref){ .group = S(""), .kind = S("Service"), .ns = S(ns), .name = S(name),
				      .port = port, .weight = weight };
	b->filters = fx_alloc(f, CAP, sizeof(*b->filters));
	return b;
}

static struct sl_route_filter *filter_in(struct fx *f, struct sl_route_filter *v, size_t *n, enum sl_filter_type type)
{
	struct sl_route_filter *g = &v[(*n)++];

	g->type = type;
	g->headers.set = fx_alloc(f, CAP, sizeof(*g->headers.set));
	g->headers.add = fx_alloc(f, CAP, sizeof(*g->headers.add));
	g->headers.remove = fx_alloc(f, CAP, sizeof(*g->headers.remove));
	g->mirror_num = g->mirror_den = 100;
	g->max_age = 5;
	if (type == SL_FILTER_REDIRECT)
		g->status = 302;
	return g;
}

static struct sl_route_filter *rfilter(struct fx *f, struct sl_route_rule *ru, enum sl_filter_type type)
{
	return filter_in(f, ru->filters, &ru->n_filters, type);
}

static struct sl_route_filter *bfilter(struct fx *f, struct sl_backend_ref *b, enum sl_filter_type type)
{
	return filter_in(f, b->filters, &b->n_filters, type);
}

static void hm(struct sl_route_filter *g, enum route_hdr_op op, const char *name, const char *value)
{
	struct sl_header_mod *h = &g->headers;

	if (op == ROUTE_HDR_SET)
		h->set[h->n_set++] = (struct sl_header_kv){ S(name), S(value) };
	else if (op == ROUTE_HDR_ADD)
		h->add[h->n_add++] = (struct sl_header_kv){ S(name), S(value) };
	else
		h->remove[h->n_remove++] = S(name);
}

static void strs(struct fx *f, struct sl_strs *s, ...)
{
	va_list ap;
	const char *v;

	s->v = fx_alloc(f, CAP, sizeof(*s->v));
	va_start(ap, s);
	while ((v = va_arg(ap, const char *)))
		s->v[s->n++] = S(v);
	va_end(ap);
}

static struct sl_gateway *gateway(struct fx *f, const char *ns, const char *name, const char *class_name)
{
	struct sl_gateway *g = &f->res.gateways[f->res.n_gateways++];

	g->ns = S(ns);
	g->name = S(name);
	g->class_name = S(class_name);
	g->listeners = fx_alloc(f, CAP, sizeof(*g->listeners));
	return g;
}

static struct sl_listener *listener(struct fx *f, struct sl_gateway *g, const char *name, const char *proto,
				    uint16_t port, const char *host)
{
	struct sl_listener *l = &g->listeners[g->n_listeners++];

	l->name = S(name);
	l->protocol = S(proto);
	l->port = port;
	l->hostname = S(host);
	l->route_kinds = fx_alloc(f, CAP, sizeof(*l->route_kinds));
	return l;
}

static void gwclass(struct fx *f, const char *name, const char *controller)
{
	struct sl_gateway_class *c = &f->res.gateway_classes[f->res.n_gateway_classes++];

	c->name = S(name);
	c->controller = S(controller);
}

/* ReferenceGrant in ns: from <kind> in from_ns to Service to_name (NULL: any). */
static void grant(struct fx *f, const char *ns, const char *kind, const char *from_ns, const char *to_name)
{
	struct sl_ref_grant *g = &f->res.ref_grants[f->res.n_ref_grants++];

	g->ns = S(ns);
	g->name = S("grant");
	g->from = fx_alloc(f, 1, sizeof(*g->from));
	g->from[0] = (struct sl_ref_grant_from){ S("gateway.networking.k8s.io"), S(kind), S(from_ns) };
	g->n_from = 1;
	g->to = fx_alloc(f, 1, sizeof(*g->to));
	g->to[0] = (struct sl_ref_grant_to){ S(""), S("Service"), S(to_name) };
	g->n_to = 1;
}

static struct route_table *build(struct fx *f)
{
	route_table_free(f->t);
	f->t = NULL;
	diags_clear(&f->errs);
	ASSERT_OK(route_table_build(&f->m, &f->t, &f->errs), "route_table_build");
	return f->t;
}

/* The status entry of route ns/name, parentRef pi. */
static const struct route_parent_status *status(const struct route_table *t, const char *ns, const char *name,
						size_t pi)
{
	for (size_t i = 0; i < route_status_count(t); i++) {
		const struct route_parent_status *st = route_status_at(t, i);

		if (!strcmp(st->route->ns, ns) && !strcmp(st->route->name, name) && st->parent == pi)
			return st;
	}
	return NULL;
}

/* ---- requests ----------------------------------------------------------- */

struct rq {
	struct route_request r;
	struct route_header h[CAP];
	char path[4096];
};

/* method, "path?query", host, then header name/value pairs, NULL-terminated. */
static struct route_request *req(struct rq *q, const char *method, const char *target, const char *host, ...)
{
	const char *name;
	char *qm;
	va_list ap;

	memset(q, 0, sizeof(*q));
	snprintf(q->path, sizeof(q->path), "%s", target);
	if ((qm = strchr(q->path, '?'))) {
		*qm = '\0';
		q->r.query = qm + 1;
	}
	q->r.method = method;
	q->r.path = q->path;
	q->r.host = host;
	q->r.scheme = "http";
	q->r.port = 80;
	q->r.headers = q->h;
	va_start(ap, host);
	while ((name = va_arg(ap, const char *))) {
		const char *value = va_arg(ap, const char *);

		q->h[q->r.n_headers++] = (struct route_header){ name, strlen(name), value, strlen(value) };
	}
	va_end(ap);
	return &q->r;
}

static struct route_decision d;		/* big: keep it off the stack */

/* The value of the first edit op on name (REMOVE: "" when present), or NULL. */
static const char *edit(bool resp, enum route_hdr_op op, const char *name)
{
	const struct route_hdr_edit *v = resp ? d.resp_edits : d.req_edits;
	size_t n = resp ? d.n_resp_edits : d.n_req_edits;

	for (size_t i = 0; i < n; i++)
		if (v[i].op == op && !strcasecmp(v[i].name, name))
			return op == ROUTE_HDR_REMOVE ? "" : v[i].value;
	return NULL;
}

/* Decide, and return the chosen rule's name ("" when none, "404" etc. for RESPOND). */
static const char *pick_rule(const struct route_set *s, struct route_request *r)
{
	static char buf[64];

	route_decide(s, r, 0, &d);
	if (d.action != ROUTE_FORWARD) {
		snprintf(buf, sizeof(buf), "%u", d.status);
		return buf;
	}
	return d.route->rules[d.rule].name ? d.route->rules[d.rule].name : "";
}

static struct sl_route_rule *named_rule(struct fx *f, struct sl_route *r, const char *name)
{
	struct sl_route_rule *ru = rule(f, r);

	ru->name = S(name);
	backend(f, ru, r->ns, "web", 80, 1);
	return ru;
}

/* ---- tests: matching ---------------------------------------------------- */

void test_route_path_matches(void)
{
	struct fx *f = fx_new();
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "paths", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	match(f, named_rule(f, r, "exact"), SL_MATCH_EXACT, "/exact");
	match(f, named_rule(f, r, "prefix"), SL_MATCH_PREFIX, "/foo");
	match(f, named_rule(f, r, "slash"), SL_MATCH_PREFIX, "/bar/");
	match(f, named_rule(f, r, "regex"), SL_MATCH_REGEX, "/v[0-9]+/items");
	if (!build(f) || !ASSERT_OK_PTR(s = route_for_service(f->t, "shop", "shop", "web", 80), "set"))
		goto out;
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/exact", "web", NULL)), "exact", "exact");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/exact/", "web", NULL)), "404", "exact: not with a slash");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/exactly", "web", NULL)), "404", "exact: not a prefix");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/Exact", "web", NULL)), "404", "exact: case-sensitive");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/foo", "web", NULL)), "prefix", "prefix: itself");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/foo/", "web", NULL)), "prefix", "prefix: trailing slash");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/foo/bar", "web", NULL)), "prefix", "prefix: below");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/foobar", "web", NULL)), "404", "prefix: segment-wise");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/foo?x=1", "web", NULL)), "prefix", "prefix: query aside");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/bar", "web", NULL)), "slash", "prefix /bar/ matches /bar");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/bar/x", "web", NULL)), "slash", "prefix /bar/ matches /bar/x");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/barx", "web", NULL)), "404", "prefix /bar/ not /barx");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/v12/items", "web", NULL)), "regex", "regex");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/v12/items/x", "web", NULL)), "404", "regex: full match");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/x/v12/items", "web", NULL)), "404", "regex: anchored");
	ASSERT_EQ(d.route, NULL, "404: no route");
	ASSERT_STREQ(d.reason, "no matching rule", "404 reason");

	/* A rule without matches, and a match without a path: every request. */
	r->rules[0].n_matches = 0;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/anything", "web", NULL)), "exact", "no matches: everything");
out:
	fx_free(f);
}

void test_route_header_query_method(void)
{
	struct fx *f = fx_new();
	struct sl_http_match *m;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "hq", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	m = match(f, named_rule(f, r, "hdr"), SL_MATCH_PREFIX, "/h");
	mhdr(m, SL_MATCH_EXACT, "X-Version", "v2");
	mhdr(m, SL_MATCH_EXACT, "x-version", "ignored");	/* repeated name: the first counts */
	m = match(f, named_rule(f, r, "hre"), SL_MATCH_PREFIX, "/r");
	mhdr(m, SL_MATCH_REGEX, "x-user", "(alice|bob)[0-9]*");
	m = match(f, named_rule(f, r, "joined"), SL_MATCH_PREFIX, "/j");
	mhdr(m, SL_MATCH_EXACT, "x-multi", "a,b");
	m = match(f, named_rule(f, r, "query"), SL_MATCH_PREFIX, "/q");
	mquery(m, SL_MATCH_EXACT, "animal", "whale");
	mquery(m, SL_MATCH_REGEX, "n", "[0-9]+");
	m = match(f, named_rule(f, r, "method"), SL_MATCH_PREFIX, "/m");
	m->method = S("POST");
	if (!build(f) || !ASSERT_OK_PTR(s = route_for_service(f->t, "shop", "shop", "web", 80), "set"))
		goto out;
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/h", "web", "x-VERSION", "v2", NULL)), "hdr",
		     "header name case-insensitive");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/h", "web", "x-version", "V2", NULL)), "404",
		     "header value case-sensitive");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/h", "web", NULL)), "404", "header absent");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/r", "web", "X-User", "bob42", NULL)), "hre", "header regex");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/r", "web", "X-User", "bob42x", NULL)), "404",
		     "header regex: full match");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/j", "web", "x-multi", "a", "X-Multi", "b", NULL)), "joined",
		     "repeated header joined with ','");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/j", "web", "x-multi", "a", NULL)), "404", "only one of them");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/q?animal=whale&n=42", "web", NULL)), "query", "query");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/q?n=7&x&animal=%77hale", "web", NULL)), "query",
		     "query: percent-decoded, any order");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/q?animal=whale&animal=dolphin&n=1", "web", NULL)), "query",
		     "query: the first value counts");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/q?animal=dolphin&animal=whale&n=1", "web", NULL)), "404",
		     "query: not the second");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/q?Animal=whale&n=1", "web", NULL)), "404",
		     "query: names exact");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/q?animal=whale&n=4a", "web", NULL)), "404", "query regex");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/q", "web", NULL)), "404", "no query");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/m", "web", NULL)), "method", "method");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/m", "web", NULL)), "404", "other method");
out:
	fx_free(f);
}

void test_route_precedence_within_route(void)
{
	struct fx *f = fx_new();
	struct sl_http_match *m;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "prec", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	/* Written in the reverse of their precedence. */
	match(f, named_rule(f, r, "root"), SL_MATCH_PREFIX, "/");
	match(f, named_rule(f, r, "short"), SL_MATCH_PREFIX, "/api");
	match(f, named_rule(f, r, "long"), SL_MATCH_PREFIX, "/api/v1");
	m = match(f, named_rule(f, r, "query"), SL_MATCH_PREFIX, "/api/v1");
	mquery(m, SL_MATCH_EXACT, "debug", "1");
	m = match(f, named_rule(f, r, "header"), SL_MATCH_PREFIX, "/api/v1");
	mhdr(m, SL_MATCH_EXACT, "x-a", "1");
	m = match(f, named_rule(f, r, "header2"), SL_MATCH_PREFIX, "/api/v1");
	mhdr(m, SL_MATCH_EXACT, "x-a", "1");
	mhdr(m, SL_MATCH_EXACT, "x-b", "1");
	m = match(f, named_rule(f, r, "method"), SL_MATCH_PREFIX, "/api/v1");
	m->method = S("GET");
	match(f, named_rule(f, r, "regex"), SL_MATCH_REGEX, "/api/v1/.*");
	match(f, named_rule(f, r, "exact"), SL_MATCH_EXACT, "/api/v1/x");
	match(f, named_rule(f, r, "first"), SL_MATCH_PREFIX, "/twin");
	match(f, named_rule(f, r, "second"), SL_MATCH_PREFIX, "/twin");
	if (!build(f) || !ASSERT_OK_PTR(s = route_for_service(f->t, "shop", "shop", "web", 80), "set"))
		goto out;
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/api/v1/x", "web", "x-a", "1", "x-b", "1", NULL)), "exact",
		     "Exact first");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/api/v1/y", "web", "x-a", "1", "x-b", "1", NULL)), "regex",
		     "then RegularExpression (implementation-specific)");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/api/v1", "web", "x-a", "1", "x-b", "1", NULL)), "method",
		     "then a method match");
	ASSERT_STREQ(pick_rule(s, req(&q, "PUT", "/api/v1", "web", "x-a", "1", "x-b", "1", NULL)), "header2",
		     "then most headers");
	ASSERT_STREQ(pick_rule(s, req(&q, "PUT", "/api/v1?debug=1", "web", "x-a", "1", NULL)), "header",
		     "headers before query params");
	ASSERT_STREQ(pick_rule(s, req(&q, "PUT", "/api/v1?debug=1", "web", NULL)), "query", "then query params");
	ASSERT_STREQ(pick_rule(s, req(&q, "PUT", "/api/v1", "web", NULL)), "long", "then the longer prefix");
	ASSERT_STREQ(pick_rule(s, req(&q, "PUT", "/api/v2", "web", NULL)), "short", "shorter prefix");
	ASSERT_STREQ(pick_rule(s, req(&q, "PUT", "/other", "web", NULL)), "root", "root");
	ASSERT_STREQ(pick_rule(s, req(&q, "PUT", "/twin", "web", NULL)), "first", "ties: rule order");
out:
	fx_free(f);
}

void test_route_precedence_across_routes(void)
{
	struct fx *f = fx_new();
	struct sl_route *young, *old, *b, *a, *noage, *ex;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	/* Same match everywhere: age, then "ns/name" decide. */
	young = route(f, SL_ROUTE_HTTP, "shop", "young", "2024-03-01T00:00:00Z");
	old = route(f, SL_ROUTE_HTTP, "shop", "old", "2024-03-01T00:00:00.5+01:00");	/* 23:00:00.5 UTC Feb 29 */
	b = route(f, SL_ROUTE_HTTP, "shop", "b", "2024-01-01T00:00:00Z");
	a = route(f, SL_ROUTE_HTTP, "shop", "a", "2024-01-01T00:00:00Z");
	noage = route(f, SL_ROUTE_HTTP, "shop", "0-no-age", NULL);
	ex = route(f, SL_ROUTE_HTTP, "shop", "z-exact", "2030-01-01T00:00:00Z");
	parent_svc(young, NULL, "web", 0);
	parent_svc(old, NULL, "web", 0);
	parent_svc(b, NULL, "web", 0);
	parent_svc(a, NULL, "web", 0);
	parent_svc(noage, NULL, "web", 0);
	parent_svc(ex, NULL, "web", 0);
	match(f, named_rule(f, young, "young"), SL_MATCH_PREFIX, "/t");
	match(f, named_rule(f, old, "old"), SL_MATCH_PREFIX, "/t");
	match(f, named_rule(f, b, "b"), SL_MATCH_PREFIX, "/ab");
	match(f, named_rule(f, a, "a"), SL_MATCH_PREFIX, "/ab");
	match(f, named_rule(f, noage, "noage"), SL_MATCH_PREFIX, "/t");
	match(f, named_rule(f, noage, "noage-ab"), SL_MATCH_PREFIX, "/ab");
	match(f, named_rule(f, ex, "exact"), SL_MATCH_EXACT, "/t");
	if (!build(f) || !ASSERT_OK_PTR(s = route_for_service(f->t, "shop", "shop", "web", 80), "set"))
		goto out;
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/t", "web", NULL)), "exact",
		     "a better match wins over an older route");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/t/x", "web", NULL)), "old", "the oldest route (offsets counted)");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/ab", "web", NULL)), "a", "same age: ns/name order");
	ASSERT_STREQ(d.why, "shop/a rule a", "why names the rule");
	old->created = S("garbage");
	young->created = NULL;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/t/x", "web", NULL)), "noage",
		     "no known age: sorted last, then by name");
out:
	fx_free(f);
}

void test_route_grpc(void)
{
	struct fx *f = fx_new();
	struct sl_route *g, *h;
	struct sl_route_rule *ru;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "api", 9000, 0);
	svc(f, "shop", "web", 80, 0);
	g = route(f, SL_ROUTE_GRPC, "shop", "grpc", "2024-01-01T00:00:00Z");
	parent_svc(g, NULL, "api", 0);
	ru = named_rule(f, g, "svc-method");
	grpc_match(f, ru, SL_MATCH_EXACT, "shop.Cart", "Add");
	ru = named_rule(f, g, "svc");
	grpc_match(f, ru, SL_MATCH_EXACT, "shop.Cart", NULL);
	ru = named_rule(f, g, "longer-svc");
	grpc_match(f, ru, SL_MATCH_EXACT, "shop.CartAdmin", NULL);
	ru = named_rule(f, g, "method-only");
	grpc_match(f, ru, SL_MATCH_EXACT, NULL, "Ping");
	ru = named_rule(f, g, "regex");
	grpc_match(f, ru, SL_MATCH_REGEX, "shop\\.v[0-9]+\\.Orders", "Get.*");
	mhdr(&ru->matches[0], SL_MATCH_EXACT, "x-tenant", "a");
	h = route(f, SL_ROUTE_HTTP, "shop", "http", "2023-01-01T00:00:00Z");
	parent_svc(h, NULL, "api", 0);
	match(f, named_rule(f, h, "http"), SL_MATCH_PREFIX, "/");
	if (!build(f) || !ASSERT_OK_PTR(s = route_for_service(f->t, "shop", "shop", "api", 9000), "set"))
		goto out;
#define GRPC_CT "content-type", "application/grpc+proto"
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/shop.Cart/Add", "api", GRPC_CT, NULL)), "svc-method",
		     "service and method");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/shop.Cart/Remove", "api", GRPC_CT, NULL)), "svc", "service");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/shop.CartAdmin/Add", "api", GRPC_CT, NULL)), "longer-svc",
		     "service exact, not a prefix");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/any.Svc/Ping", "api", GRPC_CT, NULL)), "method-only",
		     "method of any service");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/shop.v2.Orders/GetOne", "api", GRPC_CT, "x-tenant", "a", NULL)),
		     "regex", "regex service and method, and a header");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/shop.v2.Orders/GetOne", "api", GRPC_CT, NULL)), "http",
		     "no GRPCRoute rule matches: the HTTPRoute");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/shop.Cart/Add", "api", NULL)), "http",
		     "not gRPC: HTTPRoutes first");
	/* Without the HTTPRoute, a gRPC request no rule takes is a 404. */
	h->n_parents = 0;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "api", 9000)))
		goto out;
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/other.Svc/X", "api", GRPC_CT, NULL)), "404", "no match: 404");
	ASSERT_STREQ(pick_rule(s, req(&q, "POST", "/not-grpc", "api", GRPC_CT, NULL)), "404", "not a gRPC path");
#undef GRPC_CT
out:
	fx_free(f);
}

/* ---- tests: attachment and status --------------------------------------- */

void test_route_consumer_producer(void)
{
	struct fx *f = fx_new();
	struct sl_route *prod, *cons;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 8080, 0);
	svc(f, "shop", "plain", 80, 0);
	svc(f, "client", "web", 80, 0);
	prod = route(f, SL_ROUTE_HTTP, "shop", "producer", "2024-01-01T00:00:00Z");
	parent_svc(prod, NULL, "web", 0);
	named_rule(f, prod, "producer");
	cons = route(f, SL_ROUTE_HTTP, "client", "consumer", "2024-01-01T00:00:00Z");
	parent_svc(cons, "shop", "web", 80);
	named_rule(f, cons, "consumer");
	if (!build(f))
		goto out;
	ASSERT_TRUE(status(f->t, "client", "consumer", 0)->accepted, "consumer accepted");
	s = route_for_service(f->t, "shop", "shop", "web", 80);
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/", "web", NULL)), "producer", "own namespace: producer");
	s = route_for_service(f->t, "other", "shop", "web", 80);
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/", "web", NULL)), "producer", "other namespace: producer");
	s = route_for_service(f->t, "client", "shop", "web", 80);
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/", "web", NULL)), "consumer", "client namespace: consumer");
	ASSERT_EQ(route_for_service(f->t, "client", "shop", "web", 8080), NULL,
		  "consumer routes replace the producer's on every port");
	ASSERT_OK_PTR(route_for_service(f->t, "other", "shop", "web", 8080), "producer on 8080");
	ASSERT_EQ(route_for_service(f->t, "shop", "shop", "plain", 80), NULL, "no routes: L4");
	ASSERT_TRUE(route_service_has_l7(f->t, "shop", "web"), "web has L7");
	ASSERT_FALSE(route_service_has_l7(f->t, "shop", "plain"), "plain has not");
	ASSERT_FALSE(route_service_has_l7(f->t, "shop", "nope"), "unknown Service");
	ASSERT_EQ(route_for_service(NULL, "a", "b", "c", 1), NULL, "NULL table");
out:
	fx_free(f);
}

void test_route_service_parent_ports(void)
{
	struct fx *f = fx_new();
	struct sl_route *r, *sec, *bad, *missing, *kind;
	const struct route_parent_status *st;
	struct rq q;

	svc(f, "shop", "web", 80, 8080, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "port", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 8080);
	named_rule(f, r, "p");
	sec = route(f, SL_ROUTE_HTTP, "shop", "section", "2024-01-01T00:00:00Z");
	parent_svc(sec, NULL, "web", 0)->section_name = S("p80");
	named_rule(f, sec, "s");
	bad = route(f, SL_ROUTE_HTTP, "shop", "badport", "2024-01-01T00:00:00Z");
	parent_svc(bad, NULL, "web", 9999);
	parent_svc(bad, NULL, "web", 0)->section_name = S("nope");
	named_rule(f, bad, "b");
	missing = route(f, SL_ROUTE_HTTP, "shop", "missing", "2024-01-01T00:00:00Z");
	parent_svc(missing, NULL, "nosvc", 0);
	named_rule(f, missing, "m");
	kind = route(f, SL_ROUTE_HTTP, "shop", "kind", "2024-01-01T00:00:00Z");
	parent_svc(kind, NULL, "web", 0)->group = S("gateway.networking.k8s.io");	/* no such kind there */
	named_rule(f, kind, "k");
	if (!build(f))
		goto out;
	ASSERT_STREQ(pick_rule(route_for_service(f->t, "shop", "shop", "web", 8080), req(&q, "GET", "/", "w", NULL)),
		     "p", "port 8080: the port-scoped route");
	ASSERT_STREQ(pick_rule(route_for_service(f->t, "shop", "shop", "web", 80), req(&q, "GET", "/", "w", NULL)),
		     "s", "port 80: the sectionName route only");
	st = status(f->t, "shop", "badport", 0);
	ASSERT_FALSE(st->accepted, "no port 9999");
	ASSERT_STREQ(st->accepted_reason, "NoMatchingParent", "reason");
	ASSERT_HAS(st->message, "9999", "message");
	ASSERT_STREQ(status(f->t, "shop", "badport", 1)->accepted_reason, "NoMatchingParent", "no port named nope");
	st = status(f->t, "shop", "missing", 0);
	ASSERT_FALSE(st->accepted, "missing Service");
	ASSERT_HAS(st->message, "shop/nosvc not found", "message");
	ASSERT_STREQ(status(f->t, "shop", "kind", 0)->accepted_reason, "NoMatchingParent", "Service needs core group");
	ASSERT_TRUE(status(f->t, "shop", "port", 0)->accepted, "port route accepted");
	ASSERT_TRUE(status(f->t, "shop", "port", 0)->resolved_refs, "and resolved");
	ASSERT_EQ(route_status_count(f->t), 6, "one status per parentRef");
	ASSERT_GE(f->errs.n, 4, "notes for the log");
out:
	fx_free(f);
}

void test_route_bad_regex(void)
{
	struct fx *f = fx_new();
	struct sl_route *r;
	const struct route_parent_status *st;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "re", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	match(f, named_rule(f, r, "ok"), SL_MATCH_PREFIX, "/");
	mhdr(match(f, named_rule(f, r, "bad"), SL_MATCH_PREFIX, "/x"), SL_MATCH_REGEX, "x-a", "(unclosed");
	if (!build(f))
		goto out;
	st = status(f->t, "shop", "re", 0);
	ASSERT_FALSE(st->accepted, "bad regex: not accepted");
	ASSERT_STREQ(st->accepted_reason, "UnsupportedValue", "reason");
	ASSERT_HAS(st->message, "(unclosed", "the regex in the message");
	ASSERT_EQ(route_for_service(f->t, "shop", "shop", "web", 80), NULL, "not used");
	ASSERT_FALSE(route_service_has_l7(f->t, "shop", "web"), "no L7");
	/* The same for paths, query params and gRPC. */
	r->rules[1].matches[0].n_headers = 0;
	mquery(&r->rules[1].matches[0], SL_MATCH_REGEX, "q", "a{2,1}");
	if (build(f))
		ASSERT_FALSE(status(f->t, "shop", "re", 0)->accepted, "bad query regex");
	r->rules[1].matches[0].n_query = 0;
	r->rules[1].matches[0].path_type = SL_MATCH_REGEX;
	r->rules[1].matches[0].path = S("/[z-a]");
	if (build(f))
		ASSERT_FALSE(status(f->t, "shop", "re", 0)->accepted, "bad path regex");
out:
	fx_free(f);
}

void test_route_backend_refs(void)
{
	struct fx *f = fx_new();
	struct sl_route *r, *g;
	struct sl_route_rule *ru;
	struct sl_backend_ref *b;
	const struct route_parent_status *st;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	svc(f, "db", "store", 5432, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "xns", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	backend(f, ru, "db", "store", 5432, 1);
	if (!build(f))
		goto out;
	st = status(f->t, "shop", "xns", 0);
	ASSERT_TRUE(st->accepted, "invalid refs do not unaccept");
	ASSERT_FALSE(st->resolved_refs, "no grant: not resolved");
	ASSERT_STREQ(st->refs_reason, "RefNotPermitted", "reason");
	s = route_for_service(f->t, "shop", "shop", "web", 80);
	route_decide(s, req(&q, "GET", "/", "web", NULL), 0, &d);
	ASSERT_EQ(d.action, ROUTE_RESPOND, "respond");
	ASSERT_EQ(d.status, 500, "500");
	grant(f, "db", "GRPCRoute", "shop", NULL);	/* the wrong kind */
	grant(f, "db", "HTTPRoute", "shop", "other");	/* the wrong name */
	grant(f, "shop", "HTTPRoute", "shop", NULL);	/* the wrong namespace */
	if (!build(f))
		goto out;
	ASSERT_STREQ(status(f->t, "shop", "xns", 0)->refs_reason, "RefNotPermitted", "grants that do not fit");
	grant(f, "db", "HTTPRoute", "shop", "store");
	if (!build(f))
		goto out;
	ASSERT_TRUE(status(f->t, "shop", "xns", 0)->resolved_refs, "granted");
	s = route_for_service(f->t, "shop", "shop", "web", 80);
	route_decide(s, req(&q, "GET", "/", "web", NULL), 0, &d);
	ASSERT_EQ(d.action, ROUTE_FORWARD, "forward");
	ASSERT_STREQ(d.backend.ns, "db", "backend ns");
	ASSERT_STREQ(d.backend.name, "store", "backend name");
	ASSERT_EQ(d.backend.port, 5432, "backend port");

	b = &ru->backends[0];
	b->kind = S("ServiceImport");
	b->group = S("multicluster.x-k8s.io");
	if (build(f))
		ASSERT_STREQ(status(f->t, "shop", "xns", 0)->refs_reason, "InvalidKind", "kind");
	b->kind = S("Service");
	b->group = S("");
	b->name = S("nope");
	if (build(f))
		ASSERT_STREQ(status(f->t, "shop", "xns", 0)->refs_reason, "BackendNotFound", "missing");
	b->name = S("store");
	b->port = 0;
	if (build(f)) {
		ASSERT_STREQ(status(f->t, "shop", "xns", 0)->refs_reason, "BackendNotFound", "no port");
		ASSERT_HAS(status(f->t, "shop", "xns", 0)->message, "port is required", "message");
	}
	b->port = 1;
	if (build(f))
		ASSERT_HAS(status(f->t, "shop", "xns", 0)->message, "no port 1", "unknown port");
	/* A GRPCRoute needs a grant from GRPCRoute. */
	b->port = 5432;
	g = route(f, SL_ROUTE_GRPC, "shop", "g", "2024-01-01T00:00:00Z");
	parent_svc(g, NULL, "web", 0);
	backend(f, rule(f, g), "db", "store", 5432, 1);
	if (build(f))
		ASSERT_TRUE(status(f->t, "shop", "g", 0)->resolved_refs, "GRPCRoute grant (added above)");
	f->res.n_ref_grants = 3;
	if (build(f))
		ASSERT_TRUE(status(f->t, "shop", "g", 0)->resolved_refs, "the GRPCRoute grant alone");
	f->res.n_ref_grants = 1;
	f->res.ref_grants[0].from[0].kind = S("HTTPRoute");
	f->res.ref_grants[0].to[0].name = NULL;
	if (build(f))
		ASSERT_STREQ(status(f->t, "shop", "g", 0)->refs_reason, "RefNotPermitted", "HTTPRoute grant only");
out:
	fx_free(f);
}

void test_route_gateway_attach(void)
{
	struct fx *f = fx_new();
	struct sl_gateway *gw, *other;
	struct sl_listener *l;
	struct sl_route *r;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	svc(f, "team", "web", 80, 0);
	svc(f, "infra", "web", 80, 0);
	svc(f, "other", "web", 80, 0);
	nsp(f, "team", "gateway-access", "yes");
	nsp(f, "other", NULL, NULL);
	gwclass(f, "sluice", ROUTE_CONTROLLER_NAME);
	gwclass(f, "envoy", "gateway.envoyproxy.io/gatewayclass-controller");
	gw = gateway(f, "infra", "gw", "sluice");
	listener(f, gw, "http", "HTTP", 80, NULL);					/* Same (default) */
	l = listener(f, gw, "all", "HTTP", 8080, "*.example.com");
	l->routes_from = SL_ROUTES_FROM_ALL;
	l = listener(f, gw, "sel", "HTTP", 8081, NULL);
	l->routes_from = SL_ROUTES_FROM_SELECTOR;
	l->routes_selector.match.v = fx_alloc(f, 1, sizeof(struct sl_label));
	l->routes_selector.match.v[0] = (struct sl_label){ S("gateway-access"), S("yes") };
	l->routes_selector.match.n = 1;
	l = listener(f, gw, "byname", "HTTP", 8082, NULL);
	l->routes_from = SL_ROUTES_FROM_SELECTOR;
	l->routes_selector.match.v = fx_alloc(f, 1, sizeof(struct sl_label));
	l->routes_selector.match.v[0] = (struct sl_label){ S("kubernetes.io/metadata.name"), S("other") };
	l->routes_selector.match.n = 1;
	l = listener(f, gw, "tcp", "TCP", 9000, NULL);
	l->routes_from = SL_ROUTES_FROM_ALL;
	l = listener(f, gw, "grpc-only", "HTTP", 9001, NULL);
	l->routes_from = SL_ROUTES_FROM_ALL;
	l->route_kinds[l->n_route_kinds++] = (struct sl_route_group_kind){ NULL, S("GRPCRoute") };
	other = gateway(f, "infra", "envoy-gw", "envoy");
	listener(f, other, "http", "HTTP", 80, NULL);
	gateway(f, "infra", "noclass", "missing");

	/* team: admitted by "all" and "sel", not "http" (Same) nor "tcp" nor "grpc-only". */
	r = route(f, SL_ROUTE_HTTP, "team", "any", "2024-01-01T00:00:00Z");
	parent_gw(r, "infra", "gw", NULL, 0);
	named_rule(f, r, "team");
	r = route(f, SL_ROUTE_HTTP, "team", "sec", "2024-01-01T00:00:00Z");
	parent_gw(r, "infra", "gw", "http", 0);		/* Same only: not allowed */
	parent_gw(r, "infra", "gw", "sel", 8081);		/* name and port */
	parent_gw(r, "infra", "gw", "sel", 80);		/* name and the wrong port */
	parent_gw(r, "infra", "gw", "nope", 0);
	parent_gw(r, "infra", "gw", NULL, 9000);		/* TCP listener: kind not allowed */
	parent_gw(r, "infra", "gw", "grpc-only", 0);
	named_rule(f, r, "sec");
	r = route(f, SL_ROUTE_HTTP, "infra", "same", "2024-01-01T00:00:00Z");
	parent_gw(r, NULL, "gw", "http", 0);
	parent_gw(r, NULL, "envoy-gw", NULL, 0);
	parent_gw(r, NULL, "noclass", NULL, 0);
	parent_gw(r, NULL, "absent", NULL, 0);
	named_rule(f, r, "same");
	r = route(f, SL_ROUTE_HTTP, "other", "byname", "2024-01-01T00:00:00Z");
	parent_gw(r, "infra", "gw", "byname", 0);
	named_rule(f, r, "byname");
	r = route(f, SL_ROUTE_HTTP, "team", "hosts", "2024-01-01T00:00:00Z");
	parent_gw(r, "infra", "gw", "all", 0);
	hostname(r, "foo.example.net");
	named_rule(f, r, "hosts");
	if (!build(f))
		goto out;
#define ST(ns, n, i) status(f->t, ns, n, i)
	ASSERT_TRUE(ST("team", "any", 0)->accepted, "All and Selector listeners admit team");
	ASSERT_OK_PTR(route_for_listener(f->t, "infra", "gw", "all"), "on all");
	ASSERT_OK_PTR(route_for_listener(f->t, "infra", "gw", "sel"), "on sel");
	ASSERT_EQ(route_for_listener(f->t, "infra", "gw", "tcp"), NULL, "not on tcp");
	ASSERT_EQ(route_for_listener(f->t, "infra", "gw", "grpc-only"), NULL, "not on grpc-only");
	ASSERT_OK_PTR(route_for_listener(f->t, "infra", "gw", "byname"), "on byname");
	ASSERT_STREQ(ST("team", "sec", 0)->accepted_reason, "NotAllowedByListeners", "Same from another ns");
	ASSERT_TRUE(ST("team", "sec", 1)->accepted, "sectionName and port");
	ASSERT_STREQ(ST("team", "sec", 2)->accepted_reason, "NoMatchingParent", "wrong port for the section");
	ASSERT_STREQ(ST("team", "sec", 3)->accepted_reason, "NoMatchingParent", "no such listener");
	ASSERT_HAS(ST("team", "sec", 3)->message, "nope", "message names the section");
	ASSERT_STREQ(ST("team", "sec", 4)->accepted_reason, "NotAllowedByListeners", "TCP listener");
	ASSERT_STREQ(ST("team", "sec", 5)->accepted_reason, "NotAllowedByListeners", "kinds: GRPCRoute only");
	ASSERT_TRUE(ST("infra", "same", 0)->accepted, "Same namespace");
	ASSERT_STREQ(ST("infra", "same", 1)->accepted_reason, "NoMatchingParent", "another controller's class");
	ASSERT_HAS(ST("infra", "same", 1)->message, "not sluice's", "message");
	ASSERT_STREQ(ST("infra", "same", 2)->accepted_reason, "NoMatchingParent", "missing class");
	ASSERT_STREQ(ST("infra", "same", 3)->accepted_reason, "NoMatchingParent", "missing Gateway");
	ASSERT_TRUE(ST("other", "byname", 0)->accepted, "selector on kubernetes.io/metadata.name");
	ASSERT_STREQ(ST("team", "hosts", 0)->accepted_reason, "NoMatchingListenerHostname",
		     "foo.example.net does not meet *.example.com");
	ASSERT_STREQ(pick_rule(route_for_listener(f->t, "infra", "gw", "http"), req(&q, "GET", "/", "h", NULL)), "same",
		     "only infra's route on the Same listener");
#undef ST
out:
	fx_free(f);
}

void test_route_listener_hostnames(void)
{
	struct fx *f = fx_new();
	struct sl_gateway *gw;
	struct sl_listener *l;
	struct sl_route *exact, *wild, *none, *deep, *apex;
	const struct route_set *s;
	struct rq q;

	svc(f, "infra", "web", 80, 0);
	gwclass(f, "sluice", ROUTE_CONTROLLER_NAME);
	gw = gateway(f, "infra", "gw", "sluice");
	l = listener(f, gw, "wild", "HTTP", 80, "*.example.com");
	(void)l;
	exact = route(f, SL_ROUTE_HTTP, "infra", "exact", "2024-02-01T00:00:00Z");
	hostname(exact, "foo.example.com");
	hostname(exact, "foo.example.net");		/* ignored: outside the listener's */
	wild = route(f, SL_ROUTE_HTTP, "infra", "wild", "2024-01-01T00:00:00Z");
	hostname(wild, "*.example.com");
	deep = route(f, SL_ROUTE_HTTP, "infra", "deep", "2024-01-01T00:00:00Z");
	hostname(deep, "*.bar.example.com");
	none = route(f, SL_ROUTE_HTTP, "infra", "none", "2023-01-01T00:00:00Z");
	apex = route(f, SL_ROUTE_HTTP, "infra", "apex", "2023-01-01T00:00:00Z");
	hostname(apex, "example.com");
	parent_gw(exact, NULL, "gw", NULL, 0);
	parent_gw(wild, NULL, "gw", NULL, 0);
	parent_gw(deep, NULL, "gw", NULL, 0);
	parent_gw(none, NULL, "gw", NULL, 0);
	parent_gw(apex, NULL, "gw", NULL, 0);
	match(f, named_rule(f, exact, "exact"), SL_MATCH_PREFIX, "/");
	match(f, named_rule(f, wild, "wild"), SL_MATCH_EXACT, "/w");	/* a better match, a worse host */
	match(f, named_rule(f, wild, "wild-all"), SL_MATCH_PREFIX, "/");
	match(f, named_rule(f, deep, "deep"), SL_MATCH_PREFIX, "/");
	match(f, named_rule(f, none, "none"), SL_MATCH_EXACT, "/n");
	if (!build(f) || !ASSERT_OK_PTR(s = route_for_listener(f->t, "infra", "gw", "wild"), "set"))
		goto out;
	ASSERT_STREQ(status(f->t, "infra", "apex", 0)->accepted_reason, "NoMatchingListenerHostname",
		     "example.com is not in *.example.com");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/w", "foo.example.com:8080", NULL)), "exact",
		     "an exact hostname before any match precedence (port ignored)");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/w", "FOO.example.com", NULL)), "exact", "case-insensitive");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/w", "x.example.com", NULL)), "wild", "the wildcard route");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/", "a.bar.example.com", NULL)), "deep", "the longer wildcard");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/n", "x.example.com", NULL)), "none",
		     "no route hostnames: the listener's (*.example.com)");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/", "foo.example.net", NULL)), "404", "outside the listener");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/", NULL, NULL)), "404", "no Host");
out:
	fx_free(f);
}

void test_route_listener_grpc_http_conflict(void)
{
	struct fx *f = fx_new();
	struct sl_gateway *gw;
	struct sl_route *h, *g, *g2;
	const struct route_parent_status *st;

	svc(f, "infra", "web", 80, 0);
	gwclass(f, "sluice", ROUTE_CONTROLLER_NAME);
	gw = gateway(f, "infra", "gw", "sluice");
	listener(f, gw, "l", "HTTP", 80, NULL);
	h = route(f, SL_ROUTE_HTTP, "infra", "http", "2024-01-01T00:00:00Z");
	hostname(h, "*.example.com");
	g = route(f, SL_ROUTE_GRPC, "infra", "grpc", "2024-06-01T00:00:00Z");
	hostname(g, "api.example.com");
	g2 = route(f, SL_ROUTE_GRPC, "infra", "grpc2", "2023-06-01T00:00:00Z");
	hostname(g2, "api.example.org");
	parent_gw(h, NULL, "gw", NULL, 0);
	parent_gw(g, NULL, "gw", NULL, 0);
	parent_gw(g2, NULL, "gw", NULL, 0);
	named_rule(f, h, "h");
	named_rule(f, g, "g");
	named_rule(f, g2, "g2");
	if (!build(f))
		goto out;
	st = status(f->t, "infra", "grpc", 0);
	ASSERT_FALSE(st->accepted, "the younger GRPCRoute loses");
	ASSERT_HAS(st->message, "infra/http", "message names the winner");
	ASSERT_TRUE(status(f->t, "infra", "http", 0)->accepted, "HTTPRoute kept");
	ASSERT_TRUE(status(f->t, "infra", "grpc2", 0)->accepted, "disjoint hostnames: both");
out:
	fx_free(f);
}

/* ---- tests: filters ----------------------------------------------------- */

void test_route_header_filters(void)
{
	struct fx *f = fx_new();
	struct sl_route_filter *g;
	struct sl_route_rule *ru;
	struct sl_backend_ref *b;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "hdrs", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	g = rfilter(f, ru, SL_FILTER_REQUEST_HEADER);
	hm(g, ROUTE_HDR_SET, "X-Set", "1");
	hm(g, ROUTE_HDR_ADD, "X-Add", "2");
	hm(g, ROUTE_HDR_REMOVE, "X-Remove", NULL);
	g = rfilter(f, ru, SL_FILTER_RESPONSE_HEADER);
	hm(g, ROUTE_HDR_SET, "X-Resp", "r");
	b = backend(f, ru, "shop", "web", 80, 1);
	g = bfilter(f, b, SL_FILTER_REQUEST_HEADER);
	hm(g, ROUTE_HDR_SET, "X-Backend", "b");
	ru->timeouts = (struct sl_route_timeouts){ 5000, 1000 };
	ru->has_retry = true;
	ru->retry.attempts = 3;
	ru->retry.backoff_ms = 100;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	ASSERT_EQ(route_decide(s, req(&q, "GET", "/p?a=1", "web", NULL), 0, &d), ROUTE_FORWARD, "forward");
	ASSERT_STREQ(edit(false, ROUTE_HDR_SET, "x-set"), "1", "set");
	ASSERT_STREQ(edit(false, ROUTE_HDR_ADD, "x-add"), "2", "add");
	ASSERT_OK_PTR(edit(false, ROUTE_HDR_REMOVE, "x-remove"), "remove");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "x-resp"), "r", "response set");
	ASSERT_STREQ(edit(false, ROUTE_HDR_SET, "x-backend"), "b", "backend filter");
	ASSERT_STREQ(d.req_edits[d.n_req_edits - 1].name, "X-Backend", "backend filters after the rule's");
	ASSERT_STREQ(d.path, "/p?a=1", "path kept with its query");
	ASSERT_STREQ(d.host, "", "host kept");
	ASSERT_EQ(d.request_timeout_ms, 5000, "request timeout");
	ASSERT_EQ(d.backend_timeout_ms, 1000, "backend timeout");
	ASSERT_EQ(d.retry_attempts, 3, "retry");
	ASSERT_EQ(d.retry_backoff_ms, 100, "backoff");
	ASSERT_STREQ(d.why, "shop/hdrs rule 0", "why: rule index");
out:
	fx_free(f);
}

void test_route_edit_overflow(void)
{
	struct fx *f = fx_new();
	struct sl_route_filter *g;
	struct sl_route_rule *ru;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;
	char *longp;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "many", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	g = rfilter(f, ru, SL_FILTER_REQUEST_HEADER);
	g->headers.add = fx_alloc(f, ROUTE_MAX_EDITS + 1, sizeof(*g->headers.add));
	for (int i = 0; i <= ROUTE_MAX_EDITS; i++)
		g->headers.add[g->headers.n_add++] = (struct sl_header_kv){ S("X-Many"), S("v") };
	backend(f, ru, "shop", "web", 80, 1);
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	route_decide(s, req(&q, "GET", "/", "web", NULL), 0, &d);
	ASSERT_EQ(d.action, ROUTE_RESPOND, "too many edits: respond");
	ASSERT_EQ(d.status, 500, "500");
	ASSERT_LE(d.n_req_edits, ROUTE_MAX_EDITS, "bounded");
	ASSERT_STREQ(d.reason, "decision buffer overflow", "reason");
	/* A path longer than the decision's buffer. */
	g->headers.n_add = 1;
	longp = fx_alloc(f, 4000, 1);
	longp[0] = '/';
	memset(longp + 1, 'a', 3000);
	route_decide(s, req(&q, "GET", longp, "web", NULL), 0, &d);
	ASSERT_EQ(d.status, 500, "long path: 500");
out:
	fx_free(f);
}

void test_route_rewrite(void)
{
	static const struct {
		const char *path, *prefix, *repl, *want;
	} table[] = {
		/* The spec's ReplacePrefixMatch table. */
		{ "/foo/bar", "/foo", "/xyz", "/xyz/bar" },
		{ "/foo/bar", "/foo", "/xyz/", "/xyz/bar" },
		{ "/foo/bar", "/foo/", "/xyz", "/xyz/bar" },
		{ "/foo/bar", "/foo/", "/xyz/", "/xyz/bar" },
		{ "/foo", "/foo", "/xyz", "/xyz" },
		{ "/foo/", "/foo", "/xyz", "/xyz/" },
		{ "/foo/bar", "/foo", "", "/bar" },
		{ "/foo/", "/foo", "", "/" },
		{ "/foo", "/foo", "", "/" },
		{ "/foo/", "/foo", "/", "/" },
		{ "/foo", "/foo", "/", "/" },
		/* The brief's (conformance) examples. */
		{ "/prefix/one/two", "/prefix/one", "/one", "/one/two" },
		{ "/prefix/one/two", "/prefix/one", "/", "/two" },
		{ "/a/b?x=1&y", "/a", "/c", "/c/b?x=1&y" },
	};
	struct fx *f = fx_new();
	struct sl_route_filter *g;
	struct sl_route_rule *ru;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;
	char name[160];

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "rw", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	match(f, ru, SL_MATCH_PREFIX, "/");
	g = rfilter(f, ru, SL_FILTER_REWRITE);
	backend(f, ru, "shop", "web", 80, 1);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		ru->matches[0].path = S(table[i].prefix);
		g->path = (struct sl_path_mod){ SL_PATH_MOD_PREFIX, S(table[i].repl) };
		if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
			goto out;
		route_decide(s, req(&q, "GET", table[i].path, "web", NULL), 0, &d);
		snprintf(name, sizeof(name), "%s: %s -> %s", table[i].path, table[i].prefix, table[i].repl);
		ASSERT_STREQ(d.path, table[i].want, name);
	}
	g->path = (struct sl_path_mod){ SL_PATH_MOD_FULL, S("/full") };
	g->hostname = S("new.example.com");
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	route_decide(s, req(&q, "GET", "/a/b?q=1", "web", NULL), 0, &d);
	ASSERT_STREQ(d.path, "/full?q=1", "ReplaceFullPath keeps the query");
	ASSERT_STREQ(d.host, "new.example.com", "hostname");
	ASSERT_EQ(d.action, ROUTE_FORWARD, "forward");
	/* ReplacePrefixMatch needs one PathPrefix match. */
	g->path = (struct sl_path_mod){ SL_PATH_MOD_PREFIX, S("/x") };
	ru->matches[0].path_type = SL_MATCH_EXACT;
	named_rule(f, r, "other");
	if (!build(f))
		goto out;
	ASSERT_TRUE(status(f->t, "shop", "rw", 0)->accepted, "one invalid rule of two: accepted");
	ASSERT_TRUE(status(f->t, "shop", "rw", 0)->partially_invalid, "PartiallyInvalid");
	ASSERT_HAS(status(f->t, "shop", "rw", 0)->message, "ReplacePrefixMatch", "message");
	s = route_for_service(f->t, "shop", "shop", "web", 80);
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/", "web", NULL)), "other", "the invalid rule is dropped");
out:
	fx_free(f);
}

void test_route_redirect(void)
{
	struct fx *f = fx_new();
	struct sl_route_filter *g;
	struct sl_route_rule *ru;
	struct sl_route *r;
	const struct route_set *s;
	struct route_request *rr;
	struct rq q;

	svc(f, "shop", "web", 80, 8080, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "redir", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	match(f, ru, SL_MATCH_PREFIX, "/old");
	g = rfilter(f, ru, SL_FILTER_REDIRECT);
#define DO(target, host, port_)                                                 \
	do {                                                                    \
		if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80))) \
			goto out;                                               \
		rr = req(&q, "GET", target, host, NULL);                        \
		rr->port = port_;                                               \
		route_decide(s, rr, 0, &d);                                     \
	} while (0)
	DO("/old/x?a=1", "web.shop:8080", 8080);
	ASSERT_EQ(d.action, ROUTE_REDIRECT, "redirect");
	ASSERT_EQ(d.status, 302, "302 by default");
	ASSERT_STREQ(d.location, "http://web.shop:8080/old/x?a=1", "defaults: the request's");
	ASSERT_STREQ(d.reason, "redirect", "reason");
	DO("/old", "web.shop", 80);
	ASSERT_STREQ(d.location, "http://web.shop/old", "port 80 left out");
	g->scheme = S("https");
	DO("/old/x", "web.shop:8080", 8080);
	ASSERT_STREQ(d.location, "https://web.shop/old/x", "a scheme given: its well-known port, left out");
	g->port = 8443;
	g->status = 301;
	DO("/old/x", "web.shop:8080", 8080);
	ASSERT_STREQ(d.location, "https://web.shop:8443/old/x", "explicit port");
	ASSERT_EQ(d.status, 301, "301");
	g->port = 443;
	g->hostname = S("example.com");
	g->path = (struct sl_path_mod){ SL_PATH_MOD_PREFIX, S("/new") };
	DO("/old/x/y?z", "web.shop", 80);
	ASSERT_STREQ(d.location, "https://example.com/new/x/y?z", "prefix path, hostname, 443 left out");
	g->path = (struct sl_path_mod){ SL_PATH_MOD_FULL, S("/moved") };
	g->scheme = NULL;
	g->port = 0;
	g->hostname = NULL;
	DO("/old/x", "[fd00::1]:8080", 8080);
	ASSERT_STREQ(d.location, "http://[fd00::1]:8080/moved", "IPv6 host kept, full path");
	g->hostname = S("fd00::2");
	DO("/old/x", "web", 8080);
	ASSERT_STREQ(d.location, "http://[fd00::2]:8080/moved", "IPv6 hostname bracketed");
	g->hostname = NULL;
	DO("/old/x", "web\r\nSet-Cookie: a=b", 8080);
	ASSERT_EQ(d.action, ROUTE_RESPOND, "a Host that would inject a header: no redirect");
	ASSERT_EQ(d.status, 400, "400");
	ASSERT_STREQ(d.location, "", "no Location");
	DO("/old/x", "web", 443);
	rr->scheme = "HTTPS";
	route_decide(s, rr, 0, &d);
	ASSERT_STREQ(d.location, "https://web/moved", "the request's scheme, canonical; 443 left out");
	rr->scheme = "gopher";
	route_decide(s, rr, 0, &d);
	ASSERT_STREQ(d.location, "http://web:443/moved", "an unknown request scheme is http");
	/* Response header modifiers apply to the redirect too. */
	hm(rfilter(f, ru, SL_FILTER_RESPONSE_HEADER), ROUTE_HDR_SET, "X-R", "1");
	DO("/old", "web", 80);
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "x-r"), "1", "resp edits on a redirect");
	ASSERT_EQ(d.action, ROUTE_REDIRECT, "still a redirect");
	/* Not with URLRewrite, nor with backendRefs: the rule is invalid. */
	rfilter(f, ru, SL_FILTER_REWRITE);
	if (build(f)) {
		ASSERT_FALSE(status(f->t, "shop", "redir", 0)->accepted, "redirect + rewrite: the only rule");
		ASSERT_STREQ(status(f->t, "shop", "redir", 0)->accepted_reason, "IncompatibleFilters", "reason");
	}
	ru->n_filters = 2;
	backend(f, ru, "shop", "web", 80, 1);
	if (build(f))
		ASSERT_STREQ(status(f->t, "shop", "redir", 0)->accepted_reason, "IncompatibleFilters",
			     "redirect + backendRefs");
	ru->n_backends = 0;
	/* Twice the same filter. */
	rfilter(f, ru, SL_FILTER_REDIRECT);
	if (build(f))
		ASSERT_HAS(status(f->t, "shop", "redir", 0)->message, "repeated", "repeated filter");
	ru->n_filters = 2;
	g->scheme = S("ftp");
	if (build(f))
		ASSERT_STREQ(status(f->t, "shop", "redir", 0)->accepted_reason, "UnsupportedValue", "scheme ftp");
#undef DO
out:
	fx_free(f);
}

static long lmax(long a, long b)
{
	return a > b ? a : b;
}

void test_route_weights(void)
{
	struct fx *f = fx_new();
	struct sl_route_rule *ru;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;
	unsigned n_a = 0, n_b = 0, n_c = 0, n_500 = 0, n = 4096;

	svc(f, "shop", "web", 80, 0);
	svc(f, "shop", "a", 80, 0);
	svc(f, "shop", "b", 80, 0);
	svc(f, "shop", "c", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "w", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	backend(f, ru, "shop", "a", 80, 3);
	backend(f, ru, "shop", "b", 80, 1);
	backend(f, ru, "shop", "c", 80, 0);
	backend(f, ru, "shop", "missing", 80, 4);
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	req(&q, "GET", "/", "web", NULL);
	for (unsigned i = 0; i < n; i++) {
		uint32_t rnd = (uint32_t)((uint64_t)i * 0x100000000ULL / n);

		route_decide(s, &q.r, rnd, &d);
		if (d.action == ROUTE_RESPOND && d.status == 500)
			n_500++;
		else if (!strcmp(d.backend.name, "a"))
			n_a++;
		else if (!strcmp(d.backend.name, "b"))
			n_b++;
		else
			n_c++;
	}
	/* Evenly spaced rnd values: the shares are exact. */
	ASSERT_EQ(n_a, n * 3 / 8, "a: 3/8");
	ASSERT_EQ(n_b, n / 8, "b: 1/8");
	ASSERT_EQ(n_c, 0, "weight 0: never");
	ASSERT_EQ(n_500, n / 2, "the missing backend's share: 500");
	/* route_pick_next(), from any start: after every request each share is
	 * within 3 of exact, where random draws stray by ~sqrt(n) */
	static const uint32_t starts[] = { 0, 0xdeadbeef, UINT32_MAX, 0x9E3779B9u * 7 };
	for (size_t k = 0; k < sizeof(starts) / sizeof(starts[0]); k++) {
		uint32_t seq = starts[k];
		long worst = 0;	/* in eighths of a request */

		n_a = n_b = 0;
		for (unsigned i = 1; i <= 1000; i++) {
			route_decide(s, &q.r, route_pick_next(&seq), &d);
			n_a += d.action == ROUTE_FORWARD && !strcmp(d.backend.name, "a");
			n_b += d.action == ROUTE_FORWARD && !strcmp(d.backend.name, "b");
			worst = lmax(worst, labs(8L * n_a - 3L * i));
			worst = lmax(worst, labs(8L * n_b - (long)i));
		}
		if (worst > 3 * 8)
			fprintf(stderr, "start %#x: off by %ld/8\n", starts[k], worst);
		ASSERT_TRUE(worst <= 3 * 8, "route_pick_next: shares within 3 requests of exact");
	}
	ASSERT_FALSE(status(f->t, "shop", "w", 0)->resolved_refs, "missing: ResolvedRefs false");
	route_decide(s, &q.r, UINT32_MAX, &d);
	ASSERT_EQ(d.status, 500, "the last share");
	for (size_t i = 0; i < ru->n_backends; i++)
		ru->backends[i].weight = 0;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	route_decide(s, &q.r, 12345, &d);
	ASSERT_EQ(d.status, 500, "all weights 0: 500");
	ASSERT_EQ(d.action, ROUTE_RESPOND, "respond");
	ru->n_backends = 0;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	route_decide(s, &q.r, 12345, &d);
	ASSERT_EQ(d.status, 500, "no backendRefs: 500");
	ASSERT_STREQ(d.reason, "no backendRefs", "reason");
	ASSERT_EQ(d.route, &f->res.routes[0], "the route is still named");
out:
	fx_free(f);
}

void test_route_mirror(void)
{
	struct fx *f = fx_new();
	struct sl_route_filter *m1, *m2, *m3;
	struct sl_route_rule *ru;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;
	unsigned c1 = 0, c2 = 0, both = 0, n = 20000;
	uint32_t x = 12345;

	svc(f, "shop", "web", 80, 0);
	svc(f, "shop", "shadow", 80, 0);
	svc(f, "shop", "shadow2", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "m", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	m1 = rfilter(f, ru, SL_FILTER_MIRROR);
	m1->mirror = (struct sl_backend_ref){ .group = S(""), .kind = S("Service"), .name = S("shadow"), .port = 80 };
	m1->mirror_num = 50;
	m2 = rfilter(f, ru, SL_FILTER_MIRROR);
	m2->mirror = (struct sl_backend_ref){ .group = S(""), .kind = S("Service"), .name = S("shadow2"), .port = 80 };
	m2->mirror_num = 1;
	m2->mirror_den = 4;
	m3 = rfilter(f, ru, SL_FILTER_MIRROR);
	m3->mirror = (struct sl_backend_ref){ .group = S(""), .kind = S("Service"), .name = S("gone"), .port = 80 };
	backend(f, ru, "shop", "web", 80, 1);
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	ASSERT_FALSE(status(f->t, "shop", "m", 0)->resolved_refs, "a missing mirror: ResolvedRefs false");
	req(&q, "GET", "/", "web", NULL);
	for (unsigned i = 0; i < n; i++) {
		bool a = false, b = false;

		x = x * 1664525u + 1013904223u;
		route_decide(s, &q.r, x, &d);
		if (!ASSERT_EQ(d.action, ROUTE_FORWARD, "forward"))
			break;
		for (size_t k = 0; k < d.n_mirrors; k++) {
			a |= !strcmp(d.mirrors[k].name, "shadow");
			b |= !strcmp(d.mirrors[k].name, "shadow2");
			ASSERT_STREQ(d.mirrors[k].ns, "shop", "mirror ns: the route's");
			ASSERT_NEQ(strcmp(d.mirrors[k].name, "gone"), 0, "invalid mirror skipped");
		}
		c1 += a;
		c2 += b;
		both += a && b;
	}
	ASSERT_GE(c1, n * 47 / 100, "50% mirrored (low)");
	ASSERT_LE(c1, n * 53 / 100, "50% mirrored (high)");
	ASSERT_GE(c2, n * 22 / 100, "1/4 mirrored (low)");
	ASSERT_LE(c2, n * 28 / 100, "1/4 mirrored (high)");
	ASSERT_GE(both, n * 10 / 100, "independent draws (low)");
	ASSERT_LE(both, n * 15 / 100, "independent draws (high)");
	m1->mirror_num = 0;
	m2->mirror_num = 4;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	route_decide(s, &q.r, 99, &d);
	ASSERT_EQ(d.n_mirrors, 1, "0%: never, 100%: always");
	ASSERT_STREQ(d.mirrors[0].name, "shadow2", "the 100% one");
out:
	fx_free(f);
}

void test_route_cors(void)
{
	struct fx *f = fx_new();
	struct sl_route_filter *c, *c2;
	struct sl_route_rule *ru;
	struct sl_route *r;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "cors", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = rule(f, r);
	match(f, ru, SL_MATCH_PREFIX, "/cors-1");
	c = rfilter(f, ru, SL_FILTER_CORS);
	strs(f, &c->allow_origins, "https://www.foo.com", "https://*.bar.com", "http://local:8080", NULL);
	strs(f, &c->allow_methods, "GET", "OPTIONS", NULL);
	strs(f, &c->allow_headers, "x-header-1", "x-header-2", NULL);
	strs(f, &c->expose_headers, "x-header-3", "x-header-4", NULL);
	c->allow_credentials = true;
	c->max_age = 3600;
	backend(f, ru, "shop", "web", 80, 1);
	ru = rule(f, r);
	match(f, ru, SL_MATCH_PREFIX, "/cors-2");
	c2 = rfilter(f, ru, SL_FILTER_CORS);
	strs(f, &c2->allow_origins, "*", NULL);
	strs(f, &c2->allow_methods, "*", NULL);
	strs(f, &c2->allow_headers, "*", NULL);
	strs(f, &c2->expose_headers, "*", NULL);
	backend(f, ru, "shop", "web", 80, 1);
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
#define PRE(path, origin) req(&q, "OPTIONS", path, "web", "Origin", origin, "Access-Control-Request-Method", "GET", \
			      "Access-Control-Request-Headers", "x-header-1", NULL)
	route_decide(s, PRE("/cors-1", "https://www.foo.com"), 0, &d);
	ASSERT_EQ(d.action, ROUTE_RESPOND, "preflight answered");
	ASSERT_EQ(d.status, 200, "200");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), "https://www.foo.com", "origin echoed");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-methods"), "GET, OPTIONS", "methods");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-headers"), "x-header-1, x-header-2", "headers");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-expose-headers"), "x-header-3, x-header-4", "expose");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-max-age"), "3600", "max age");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-credentials"), "true", "credentials");
	route_decide(s, PRE("/cors-1", "https://xpto.www.bar.com"), 0, &d);
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), "https://xpto.www.bar.com",
		     "'*' takes any number of labels");
	route_decide(s, PRE("/cors-1", "https://bar.com"), 0, &d);
	ASSERT_EQ(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), NULL, "'*' needs something");
	route_decide(s, PRE("/cors-1", "https://www.foo.com:443"), 0, &d);
	ASSERT_OK_PTR(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), "default port spelled out");
	route_decide(s, PRE("/cors-1", "http://www.foo.com"), 0, &d);
	ASSERT_EQ(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), NULL, "another scheme");
	route_decide(s, PRE("/cors-1", "http://local:8080"), 0, &d);
	ASSERT_OK_PTR(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), "explicit port");
	route_decide(s, PRE("/cors-1", "http://local"), 0, &d);
	ASSERT_EQ(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), NULL, "port 80 is not 8080");
	route_decide(s, PRE("/cors-1", "https://foobar.com"), 0, &d);
	ASSERT_EQ(d.action, ROUTE_RESPOND, "disallowed preflight: answered");
	ASSERT_EQ(d.status, 200, "200");
	ASSERT_EQ(d.n_resp_edits, 0, "without CORS headers");
	/* Simple requests go to the backend, with the headers when allowed. */
	route_decide(s, req(&q, "GET", "/cors-1", "web", "Origin", "https://www.foo.com", NULL), 0, &d);
	ASSERT_EQ(d.action, ROUTE_FORWARD, "simple request forwarded");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), "https://www.foo.com", "origin");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-credentials"), "true", "credentials");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-expose-headers"), "x-header-3, x-header-4", "expose");
	ASSERT_EQ(edit(true, ROUTE_HDR_SET, "access-control-allow-methods"), NULL, "no methods");
	route_decide(s, req(&q, "GET", "/cors-1", "web", "Origin", "https://foobar.com", NULL), 0, &d);
	ASSERT_EQ(d.action, ROUTE_FORWARD, "disallowed simple request forwarded");
	ASSERT_EQ(d.n_resp_edits, 0, "without CORS headers");
	route_decide(s, req(&q, "OPTIONS", "/cors-1", "web", "Origin", "https://www.foo.com", NULL), 0, &d);
	ASSERT_EQ(d.action, ROUTE_FORWARD, "OPTIONS without Access-Control-Request-Method: not a preflight");
	route_decide(s, req(&q, "GET", "/cors-2", "web", "Origin", "https://a.b\r\nX-Evil: 1", NULL), 0, &d);
	ASSERT_EQ(d.n_resp_edits, 0, "an Origin with CR LF is never echoed (even for '*')");
	/* Wildcards without credentials. */
	route_decide(s, req(&q, "OPTIONS", "/cors-2", "web", "Origin", "https://foobar.com:12345",
			    "Access-Control-Request-Method", "PUT", NULL), 0, &d);
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-origin"), "https://foobar.com:12345", "any origin");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-methods"), "PUT", "method echoed");
	ASSERT_EQ(edit(true, ROUTE_HDR_SET, "access-control-allow-headers"), NULL, "nothing asked, nothing allowed");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-expose-headers"), "*", "expose *");
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-max-age"), "5", "max age 5 by default");
	ASSERT_EQ(edit(true, ROUTE_HDR_SET, "access-control-allow-credentials"), NULL, "no credentials");
	c2->allow_credentials = true;
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	route_decide(s, PRE("/cors-2", "https://a.b"), 0, &d);
	ASSERT_STREQ(edit(true, ROUTE_HDR_SET, "access-control-allow-headers"), "x-header-1", "headers echoed");
	ASSERT_EQ(edit(true, ROUTE_HDR_SET, "access-control-expose-headers"), NULL, "no '*' with credentials");
#undef PRE
out:
	fx_free(f);
}

void test_route_extension_ref(void)
{
	struct fx *f = fx_new();
	struct sl_route_rule *ru;
	struct sl_route *r;
	const struct route_parent_status *st;
	const struct route_set *s;
	struct rq q;

	svc(f, "shop", "web", 80, 0);
	r = route(f, SL_ROUTE_HTTP, "shop", "ext", "2024-01-01T00:00:00Z");
	parent_svc(r, NULL, "web", 0);
	ru = named_rule(f, r, "ext");
	match(f, ru, SL_MATCH_PREFIX, "/ext");
	rfilter(f, ru, SL_FILTER_EXTENSION)->extension = S("example.com/Auth/strict");
	match(f, named_rule(f, r, "plain"), SL_MATCH_PREFIX, "/");
	if (!build(f) || !(s = route_for_service(f->t, "shop", "shop", "web", 80)))
		goto out;
	st = status(f->t, "shop", "ext", 0);
	/* The spec: an unresolvable custom filter is not skipped; its
	 * requests get an error, the reference is unresolved. */
	ASSERT_TRUE(st->accepted, "accepted");
	ASSERT_FALSE(st->resolved_refs, "unresolved");
	ASSERT_STREQ(st->refs_reason, "InvalidKind", "InvalidKind");
	ASSERT_HAS(st->message, "example.com/Auth/strict", "message");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/ext/a", "web", NULL)), "500", "its rule: 500");
	ASSERT_STREQ(pick_rule(s, req(&q, "GET", "/a", "web", NULL)), "plain", "other rules work");
out:
	fx_free(f);
}

void test_route_null_and_empty(void)
{
	struct fx *f = fx_new();
	struct rq q;

	ASSERT_EQ(route_decide(NULL, req(&q, "GET", "/", "x", NULL), 1, &d), ROUTE_RESPOND, "no set: respond");
	ASSERT_EQ(d.status, 404, "404");
	if (!build(f))
		goto out;
	ASSERT_EQ(route_status_count(f->t), 0, "nothing");
	ASSERT_EQ(route_status_at(f->t, 0), NULL, "past the end");
	ASSERT_EQ(route_for_listener(f->t, "a", "b", "c"), NULL, "no listener sets");
	route_table_free(NULL);
out:
	fx_free(f);
}

/* ---- tests: TCPRoute and TLSRoute --------------------------------------- */

/* A TCPRoute or TLSRoute on gw's listener section, one rule, backends
 * name:weight pairs (port 443), NULL-terminated. */
static struct sl_route *l4_route(struct fx *f, enum sl_route_kind kind, const char *name, const char *created,
				 const char *section, ...)
{
	struct sl_route *r = route(f, kind, "team", name, created);
	struct sl_route_rule *ru = rule(f, r);
	const char *be;
	va_list ap;

	parent_gw(r, "infra", "gw", section, 0);
	va_start(ap, section);
	while ((be = va_arg(ap, const char *))) {
		unsigned w = va_arg(ap, unsigned);

		backend(f, ru, strchr(be, '/') ? "other" : "team", strchr(be, '/') ? strchr(be, '/') + 1 : be, 443, w);
	}
	va_end(ap);
	return r;
}

static struct sl_gateway *l4_gateway(struct fx *f)
{
	struct sl_gateway *gw;
	struct sl_listener *l;

	svc(f, "team", "db", 443, 0);
	svc(f, "team", "a", 443, 0);
	svc(f, "team", "b", 443, 0);
	svc(f, "other", "x", 443, 0);
	gwclass(f, "sluice", ROUTE_CONTROLLER_NAME);
	gw = gateway(f, "infra", "gw", "sluice");
	listener(f, gw, "tcp", "TCP", 9000, NULL)->routes_from = SL_ROUTES_FROM_ALL;
	l = listener(f, gw, "tls", "TLS", 443, "*.example.com");
	l->routes_from = SL_ROUTES_FROM_ALL;
	l->tls_mode = S("Passthrough");
	l = listener(f, gw, "tls-open", "TLS", 8443, NULL);
	l->routes_from = SL_ROUTES_FROM_ALL;
	l->tls_mode = S("Passthrough");
	l = listener(f, gw, "tls-term", "TLS", 9443, NULL);
	l->routes_from = SL_ROUTES_FROM_ALL;
	l->tls_mode = S("Terminate");
	listener(f, gw, "http", "HTTP", 80, NULL)->routes_from = SL_ROUTES_FROM_ALL;
	l = listener(f, gw, "http-tcp", "HTTP", 81, NULL);
	l->routes_from = SL_ROUTES_FROM_ALL;
	l->route_kinds[l->n_route_kinds++] = (struct sl_route_group_kind){ NULL, S("TCPRoute") };
	listener(f, gw, "tcp2", "TCP", 9001, NULL)->routes_from = SL_ROUTES_FROM_ALL;
	return gw;
}

void test_route_tcp_tls_attach(void)
{
	struct fx *f = fx_new();
	struct sl_route *r;
	bool invalid;

	l4_gateway(f);
	l4_route(f, SL_ROUTE_TCP, "db", "2024-01-01T00:00:00Z", "tcp", "db", 1u, NULL);
	l4_route(f, SL_ROUTE_TCP, "db-younger", "2024-02-01T00:00:00Z", "tcp", "a", 1u, NULL);
	l4_route(f, SL_ROUTE_TCP, "db-http", "2024-01-01T00:00:00Z", "http", "db", 1u, NULL);
	l4_route(f, SL_ROUTE_TCP, "db-http-kinds", "2024-01-01T00:00:00Z", "http-tcp", "db", 1u, NULL);
	l4_route(f, SL_ROUTE_TCP, "missing", "2024-01-01T00:00:00Z", "tcp", "nope", 1u, NULL);
	r = l4_route(f, SL_ROUTE_TCP, "two-rules", "2024-03-01T00:00:00Z", "tcp2", "db", 1u, NULL);
	backend(f, rule(f, r), "team", "a", 443, 1);
	r = route(f, SL_ROUTE_TCP, "team", "mesh", NULL);
	parent_svc(r, "team", "db", 443);
	backend(f, rule(f, r), "team", "db", 443, 1);
	hostname(l4_route(f, SL_ROUTE_TLS, "tls-a", "2024-05-01T00:00:00Z", "tls", "a", 1u, NULL), "a.example.com");
	hostname(l4_route(f, SL_ROUTE_TLS, "tls-out", "2024-01-01T00:00:00Z", "tls", "a", 1u, NULL), "a.example.net");
	hostname(l4_route(f, SL_ROUTE_TLS, "tls-term", "2024-01-01T00:00:00Z", "tls-term", "a", 1u, NULL), "a.example.com");
	l4_route(f, SL_ROUTE_TCP, "db-term", "2024-01-01T00:00:00Z", "tls-term", "db", 1u, NULL);
	hostname(l4_route(f, SL_ROUTE_TLS, "tls-http", "2024-01-01T00:00:00Z", "http", "a", 1u, NULL), "a.example.com");
	hostname(l4_route(f, SL_ROUTE_TLS, "tls-cross", "2024-01-01T00:00:00Z", "tls-open", "other/x", 1u, NULL),
		 "x.example.org");
	if (!build(f))
		goto out;
#define ST(n) status(f->t, "team", n, 0)
	ASSERT_TRUE(ST("db")->accepted && ST("db")->resolved_refs, "TCPRoute on a TCP listener");
	ASSERT_FALSE(ST("db-younger")->accepted, "a younger TCPRoute on the same listener");
	ASSERT_STREQ(ST("db-younger")->accepted_reason, "NotAllowedByListeners", "reason");
	ASSERT_HAS(ST("db-younger")->message, "team/db", "names the older route");
	ASSERT_STREQ(ST("db-http")->accepted_reason, "NotAllowedByListeners", "TCPRoute on HTTP");
	ASSERT_STREQ(ST("db-http-kinds")->accepted_reason, "NotAllowedByListeners",
		     "kinds lists TCPRoute, but HTTP cannot carry it");
	ASSERT_STREQ(ST("missing")->refs_reason, "BackendNotFound", "missing backend");
	ASSERT_TRUE(ST("two-rules")->accepted, "two rules: accepted");
	ASSERT_TRUE(ST("two-rules")->partially_invalid, "rule 1 dropped (PartiallyInvalid)");
	ASSERT_HAS(ST("two-rules")->message, "one rule", "message");
	ASSERT_STREQ(ST("mesh")->accepted_reason, "UnsupportedValue", "TCPRoute with a Service parent");
	ASSERT_TRUE(ST("tls-a")->accepted, "TLSRoute a.example.com on *.example.com");
	ASSERT_STREQ(ST("tls-out")->accepted_reason, "NoMatchingListenerHostname", "outside the listener's");
	ASSERT_TRUE(ST("tls-term")->accepted, "TLSRoute on a TLS listener in mode Terminate");
	ASSERT_TRUE(ST("db-term")->accepted, "TCPRoute on a TLS listener in mode Terminate");
	ASSERT_STREQ(ST("tls-http")->accepted_reason, "UnsupportedValue", "a listener of the wrong type (spec)");
	ASSERT_TRUE(ST("tls-cross")->accepted, "cross-namespace backend: still accepted");
	ASSERT_STREQ(ST("tls-cross")->refs_reason, "RefNotPermitted", "no ReferenceGrant");
	ASSERT_EQ(route_listener_attached(f->t, "infra", "gw", "tcp"), 1, "db: one TCPRoute per TCP listener");
	ASSERT_EQ(route_listener_attached(f->t, "infra", "gw", "tls"), 1, "tls-a");
	ASSERT_EQ(route_listener_attached(f->t, "infra", "gw", "http"), 0, "nothing on http");
	ASSERT_EQ(route_listener_kinds(&f->res.gateways[0].listeners[5], &invalid), 0, "http-tcp takes nothing");
	ASSERT_TRUE(invalid, "InvalidRouteKinds");
	ASSERT_EQ(route_listener_kinds(&f->res.gateways[0].listeners[1], &invalid), ROUTE_KIND_BIT(SL_ROUTE_TLS),
		  "TLS takes TLSRoute");
	ASSERT_EQ(route_listener_kinds(&f->res.gateways[0].listeners[3], &invalid),
		  ROUTE_KIND_BIT(SL_ROUTE_TLS) | ROUTE_KIND_BIT(SL_ROUTE_TCP), "TLS Terminate: TLSRoute, TCPRoute");
	ASSERT_EQ(route_listener_attached(f->t, "infra", "gw", "tls-term"), 2, "tls-term and db-term");
	ASSERT_EQ(route_listener_kinds(&f->res.gateways[0].listeners[4], &invalid),
		  ROUTE_KIND_BIT(SL_ROUTE_HTTP) | ROUTE_KIND_BIT(SL_ROUTE_GRPC), "HTTP: HTTPRoute, GRPCRoute");
	/* with a grant for TLSRoutes of team, the cross-namespace backend resolves */
	grant(f, "other", "TLSRoute", "team", "x");
	if (!build(f))
		goto out;
	ASSERT_TRUE(ST("tls-cross")->resolved_refs, "ReferenceGrant from TLSRoute");
	f->res.ref_grants[0].from[0].kind = S("HTTPRoute");
	if (!build(f))
		goto out;
	ASSERT_STREQ(ST("tls-cross")->refs_reason, "RefNotPermitted", "a grant for HTTPRoutes does not do");
#undef ST
out:
	fx_free(f);
}

void test_route_tcp_tls_decide(void)
{
	struct fx *f = fx_new();
	const struct route_set *s;
	struct route_l4_decision dd;
	struct sl_route *r;

	l4_gateway(f);
	l4_route(f, SL_ROUTE_TCP, "db", "2024-01-01T00:00:00Z", "tcp", "db", 1u, "a", 3u, "nope", 1u, "b", 0u, NULL);
	hostname(l4_route(f, SL_ROUTE_TLS, "exact", "2024-05-01T00:00:00Z", "tls", "a", 1u, NULL), "a.example.com");
	hostname(l4_route(f, SL_ROUTE_TLS, "wild", "2024-01-01T00:00:00Z", "tls", "b", 1u, NULL), "*.example.com");
	hostname(l4_route(f, SL_ROUTE_TLS, "deep", "2024-06-01T00:00:00Z", "tls", "db", 1u, NULL), "*.x.example.com");
	l4_route(f, SL_ROUTE_TLS, "any", "2024-01-01T00:00:00Z", "tls-open", "db", 1u, NULL);
	r = l4_route(f, SL_ROUTE_TLS, "zero", "2024-01-01T00:00:00Z", "tls-open", "a", 0u, NULL);
	hostname(r, "zero.example.org");
	if (!build(f) || !ASSERT_OK_PTR(s = route_for_listener(f->t, "infra", "gw", "tcp"), "tcp set"))
		goto out;
	/* weights 1:3:1:0 of 5: [0, 1/5) db, [1/5, 4/5) a, [4/5, 1) nope (refused) */
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TCP, NULL, 0, &dd), "rnd 0: forward");
	ASSERT_STREQ(dd.backend.name, "db", "rnd 0: db");
	ASSERT_EQ(dd.backend.port, 443, "port");
	ASSERT_STREQ(dd.why, "team/db rule 0", "why");
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TCP, NULL, 0x80000000u, &dd), "rnd 1/2");
	ASSERT_STREQ(dd.backend.name, "a", "rnd 1/2: a");
	ASSERT_FALSE(route_decide_l4(s, SL_ROUTE_TCP, NULL, 0xf0000000u, &dd), "rnd 15/16: the missing one's share");
	ASSERT_STREQ(dd.reason, "invalid backendRef", "refused");
	ASSERT_FALSE(route_decide_l4(s, SL_ROUTE_TLS, "a.example.com", 0, &dd), "no TLSRoute on a TCP listener");
	if (!ASSERT_OK_PTR(s = route_for_listener(f->t, "infra", "gw", "tls"), "tls set"))
		goto out;
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TLS, "a.example.com", 0, &dd), "exact");
	ASSERT_STREQ(dd.backend.name, "a", "exact beats the older wildcard");
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TLS, "A.Example.COM", 0, &dd), "case");
	ASSERT_STREQ(dd.backend.name, "a", "case-insensitive");
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TLS, "b.example.com", 0, &dd), "wildcard");
	ASSERT_STREQ(dd.backend.name, "b", "*.example.com");
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TLS, "y.x.example.com", 0, &dd), "longer wildcard");
	ASSERT_STREQ(dd.backend.name, "db", "*.x.example.com beats *.example.com");
	ASSERT_FALSE(route_decide_l4(s, SL_ROUTE_TLS, "example.com", 0, &dd), "the apex is not *.example.com");
	ASSERT_FALSE(route_decide_l4(s, SL_ROUTE_TLS, "a.example.net", 0, &dd), "another domain");
	ASSERT_FALSE(route_decide_l4(s, SL_ROUTE_TLS, NULL, 0, &dd), "no SNI, no route without hostnames");
	ASSERT_STREQ(dd.reason, "no TLSRoute takes this server name", "reason");
	if (!ASSERT_OK_PTR(s = route_for_listener(f->t, "infra", "gw", "tls-open"), "tls-open set"))
		goto out;
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TLS, NULL, 0, &dd), "no SNI: the route without hostnames");
	ASSERT_STREQ(dd.backend.name, "db", "any");
	ASSERT_TRUE(route_decide_l4(s, SL_ROUTE_TLS, "whatever.example", 0, &dd), "any name");
	ASSERT_FALSE(route_decide_l4(s, SL_ROUTE_TLS, "zero.example.org", 0, &dd), "exact route, weight 0");
	ASSERT_STREQ(dd.reason, "every backendRef has weight 0", "refused");
	ASSERT_FALSE(route_decide_l4(NULL, SL_ROUTE_TCP, NULL, 0, &dd), "no set");
out:
	fx_free(f);
}

/* ---- tests: from YAML --------------------------------------------------- */

static int yaml_build(struct fx *f, struct sl_model **m, const char *yaml)
{
	struct sl_resources *r = config_resources_new();

	*m = NULL;
	if (!ASSERT_OK_PTR(r, "resources") ||
	    !ASSERT_OK(config_decode_buf(r, "t.yaml", yaml, strlen(yaml), &f->errs), "decode")) {
		for (size_t i = 0; i < f->errs.n; i++) {
			char buf[512];

			printf("  %s\n", diag_str(&f->errs.v[i], buf, sizeof(buf)));
		}
		resources_free(r);
		return -1;
	}
	if (!ASSERT_OK(model_build(r, "node-1", m, &f->errs), "model"))
		return -1;
	return route_table_build(*m, &f->t, &f->errs);
}

static const char yaml_mesh[] =
	"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
	"spec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80}, {name: admin, port: 9090}]\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: web-v2, namespace: shop}\n"
	"spec:\n  clusterIP: 10.96.0.11\n  ports: [{name: http, port: 80}]\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: store, namespace: db}\n"
	"spec:\n  clusterIP: 10.96.0.12\n  ports: [{port: 5432}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: web, namespace: shop, creationTimestamp: '2024-01-01T00:00:00Z'}\n"
	"spec:\n"
	"  parentRefs: [{group: '', kind: Service, name: web, port: 80}]\n"
	"  rules:\n"
	"  - name: canary\n"
	"    matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-canary, value: 'true'}]}]\n"
	"    filters:\n"
	"    - type: RequestHeaderModifier\n"
	"      requestHeaderModifier: {set: [{name: x-route, value: canary}]}\n"
	"    backendRefs: [{name: web-v2, port: 80}]\n"
	"  - matches: [{path: {type: PathPrefix, value: /api}}]\n"
	"    filters:\n"
	"    - type: URLRewrite\n"
	"      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}\n"
	"    - type: RequestMirror\n"
	"      requestMirror: {backendRef: {name: web-v2, port: 80}, percent: 100}\n"
	"    backendRefs: [{name: web, port: 80, weight: 1}, {name: web-v2, port: 80, weight: 0}]\n"
	"    timeouts: {request: 10s, backendRequest: 2s}\n"
	"  - matches: [{path: {type: Exact, value: /old}}]\n"
	"    filters:\n"
	"    - type: RequestRedirect\n"
	"      requestRedirect: {scheme: https, statusCode: 301}\n"
	"  - matches: [{path: {type: PathPrefix, value: /db}}]\n"
	"    backendRefs: [{name: store, namespace: db, port: 5432}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
	"metadata: {name: shop-to-db, namespace: db}\n"
	"spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n"
	"  to: [{group: '', kind: Service}]\n";

void test_route_yaml_mesh(void)
{
	struct fx *f = fx_new();
	struct sl_model *m = NULL;
	const struct route_parent_status *st;
	const struct route_set *s;
	struct rq q;

	if (!ASSERT_OK(yaml_build(f, &m, yaml_mesh), "build"))
		goto out;
	st = status(f->t, "shop", "web", 0);
	if (!ASSERT_OK_PTR(st, "status"))
		goto out;
	ASSERT_TRUE(st->accepted, "accepted");
	ASSERT_TRUE(st->resolved_refs, "resolved (granted)");
	ASSERT_EQ(route_for_service(f->t, "shop", "shop", "web", 9090), NULL, "port-scoped to 80");
	if (!ASSERT_OK_PTR(s = route_for_service(f->t, "shop", "shop", "web", 80), "set"))
		goto out;
	route_decide(s, req(&q, "GET", "/api/x", "web", "X-Canary", "true", NULL), 7, &d);
	ASSERT_STREQ(d.why, "shop/web rule canary", "canary");
	ASSERT_STREQ(d.backend.name, "web-v2", "canary backend");
	ASSERT_STREQ(edit(false, ROUTE_HDR_SET, "x-route"), "canary", "header set");
	route_decide(s, req(&q, "GET", "/api/x?y=1", "web", NULL), 7, &d);
	ASSERT_STREQ(d.why, "shop/web rule 1", "rule 1");
	ASSERT_STREQ(d.backend.name, "web", "weight 0 never chosen");
	ASSERT_STREQ(d.path, "/v1/x?y=1", "rewritten");
	ASSERT_EQ(d.n_mirrors, 1, "mirrored");
	ASSERT_EQ(d.request_timeout_ms, 10000, "timeout");
	ASSERT_EQ(d.backend_timeout_ms, 2000, "backend timeout");
	route_decide(s, req(&q, "GET", "/old", "web", NULL), 7, &d);
	ASSERT_EQ(d.action, ROUTE_REDIRECT, "redirect");
	ASSERT_EQ(d.status, 301, "301");
	ASSERT_STREQ(d.location, "https://web/old", "location");
	route_decide(s, req(&q, "GET", "/db", "web", NULL), 7, &d);
	ASSERT_STREQ(d.backend.ns, "db", "cross-namespace backend");
	route_decide(s, req(&q, "GET", "/nothing", "web", NULL), 7, &d);
	ASSERT_EQ(d.status, 404, "no rule: 404");
out:
	route_table_free(f->t);
	f->t = NULL;
	model_free(m);
	fx_free(f);
}

static const char yaml_gateway[] =
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: team, labels: {shared-gateway: 'true'}}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: team}\n"
	"spec:\n  clusterIP: 10.96.0.20\n  ports: [{port: 8080}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sluice}\n"
	"spec: {controllerName: sluice.io/gateway-controller}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
	"spec:\n  gatewayClassName: sluice\n  listeners:\n"
	"  - name: http\n    protocol: HTTP\n    port: 80\n    hostname: '*.example.com'\n"
	"    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {shared-gateway: 'true'}}}}\n"
	"  - name: same\n    protocol: HTTP\n    port: 8080\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: web, namespace: team}\n"
	"spec:\n"
	"  parentRefs: [{name: gw, namespace: infra, sectionName: http}, {name: gw, namespace: infra, sectionName: same}]\n"
	"  hostnames: [web.example.com]\n"
	"  rules: [{backendRefs: [{name: web, port: 8080}]}]\n";

void test_route_yaml_gateway(void)
{
	struct fx *f = fx_new();
	struct sl_model *m = NULL;
	const struct route_set *s;
	struct rq q;

	if (!ASSERT_OK(yaml_build(f, &m, yaml_gateway), "build"))
		goto out;
	ASSERT_TRUE(status(f->t, "team", "web", 0)->accepted, "selector admits team");
	ASSERT_STREQ(status(f->t, "team", "web", 1)->accepted_reason, "NotAllowedByListeners", "Same does not");
	if (!ASSERT_OK_PTR(s = route_for_listener(f->t, "infra", "gw", "http"), "set"))
		goto out;
	route_decide(s, req(&q, "GET", "/", "web.example.com", NULL), 0, &d);
	ASSERT_EQ(d.action, ROUTE_FORWARD, "forward");
	ASSERT_STREQ(d.backend.name, "web", "backend");
	ASSERT_EQ(d.backend.port, 8080, "port");
	route_decide(s, req(&q, "GET", "/", "api.example.com", NULL), 0, &d);
	ASSERT_EQ(d.status, 404, "another host: 404");
out:
	route_table_free(f->t);
	f->t = NULL;
	model_free(m);
	fx_free(f);
}
