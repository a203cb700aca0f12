// SPDX-License-Identifier: Apache-2.0
/* route.c - see route.h.
 *
 * Build, in four passes over the model:
 *
 *   1. every route (HTTPRoute, GRPCRoute, TCPRoute, TLSRoute) is compiled
 *      once into a struct rt_route:
 *      regexes (POSIX ERE), filter checks, backendRefs resolved against the
 *      Services and ReferenceGrants. Problems become the route's conditions.
 *   2. every parentRef is resolved (a Service port for one client namespace,
 *      or the listeners of a Gateway with the hostnames both allow) into
 *      attachments and one status entry.
 *   3. HTTPRoutes and GRPCRoutes whose hostnames meet on one listener: the
 *      older wins (GRPCRoute spec), the other is not accepted there; so
 *      does the older of two TCPRoutes on one TCP listener.
 *   4. attachments with one key form a route_set: one entry per (route, rule,
 *      match), sorted by the spec's precedence, so route_decide() takes the
 *      first entry that matches (after the hostname precedence of Gateway
 *      listeners, which depends on the request's Host).
 *
 * Everything the table keeps lives in one arena (freed at once) except the
 * regexes, which need regfree().
 */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model.h"
#include "route.h"

#define RT_GROUP	"gateway.networking.k8s.io"
#define RT_CHUNK	(32u << 10)
#define RT_MAX_JOINED	8192		/* a repeated header's values joined with "," */
#define RT_MAX_QPARAM	4096		/* one percent-decoded query parameter */
#define RT_MAX_HOST	256		/* a Host without its port, for hostname matching */

/* ---- arena -------------------------------------------------------------- */

struct rt_chunk {
	struct rt_chunk *next;
	size_t used, size;
	max_align_t data[];
};

/* ---- compiled routes ------------------------------------------------------ */

/* One HTTPRouteMatch / GRPCRouteMatch, with what precedence compares. */
struct rt_match {
	const struct sl_http_match *m;	/* NULL: the default match (every request) */
	enum sl_match_type ptype;	/* HTTP path */
	const char *path;		/* EXACT / PREFIX value ("/" by default) */
	size_t plen;			/* PREFIX: length without trailing '/' */
	regex_t *path_re;
	regex_t **hdr_re, **q_re;	/* per entry; NULL unless REGEX */
	bool *hdr_dup, *q_dup;		/* repeats an earlier entry's name: ignored (spec) */
	const char *svc, *meth;		/* gRPC; NULL: any */
	regex_t *svc_re, *meth_re;
	/* precedence keys */
	unsigned pclass;		/* HTTP: 3 Exact, 2 RegularExpression, 1 PathPrefix */
	size_t pkey;			/* HTTP: path length; gRPC: service length */
	size_t mkey;			/* HTTP: method given; gRPC: method length */
	size_t n_hdr, n_q;		/* header / query matches that count */
};

/* Precomputed values of a CORS filter. */
struct rt_cors {
	const char *methods, *headers, *expose;	/* joined ", "; NULL when none */
	char max_age[16];
	bool any_method, any_header, any_expose;
};

/* What the build resolved for one filter. */
struct rt_filter {
	bool mirror_ok;			/* MIRROR: the backendRef resolved */
	const char *mirror_ns;
	struct rt_cors *cors;
};

struct rt_backend {
	const char *ns;
	bool ok;			/* resolved; else its share of requests gets 500 */
	struct rt_filter *fx;		/* per backend filter */
};

struct rt_rule {
	struct rt_match *matches;
	size_t n_matches;		/* at least 1 (the default) */
	struct rt_filter *fx;		/* per rule filter */
	struct rt_backend *be;
	bool invalid;			/* dropped: incompatible filters (PartiallyInvalid) */
};

struct rt_route {
	const struct sl_route *r;
	char *key;			/* "ns/name", for precedence and messages */
	bool has_ts;			/* creationTimestamp parsed */
	int64_t ts_sec;
	int32_t ts_nsec;
	struct rt_rule *rules;
	size_t n_valid;			/* rules not invalid */
	bool ok;			/* accepted as far as the route itself goes */
	const char *acc_reason;
	bool partial;
	bool refs_ok;
	const char *refs_reason;
	char acc_msg[200], refs_msg[200], partial_msg[200];
};

/* Hostnames a listener attachment serves: n == 0 means any. */
struct rt_hosts {
	const char **v;
	size_t n;
};

/* One place a route applies: a Service port (mesh) or a Gateway listener. */
struct rt_att {
	struct rt_route *rr;
	bool listener;
	const char *a, *b, *c;		/* mesh: svc ns, svc name, client ns (NULL: producer)
					 * listener: gateway ns, gateway name, listener name */
	uint16_t port;			/* mesh: the Service port */
	struct rt_hosts hosts;
	size_t status;			/* index into the table's status */
	size_t seq;			/* creation order, for a stable sort */
	bool dropped;			/* lost an HTTPRoute/GRPCRoute hostname conflict, or
					 * a TCP listener to an older TCPRoute */
	const struct rt_route *beaten_by;
};

struct rt_entry {
	const struct rt_route *rr;
	const struct rt_match *mt;
	uint32_t rule, match;
	const struct rt_hosts *hosts;	/* listener sets; NULL for mesh sets */
};

/* An entry's HTTP path by its first segment ("/api/v1" -> "api"), so that a
 * request looks only at the entries that can match its path. */
struct rt_seg {
	const char *s;
	uint32_t len, idx;		/* idx: into route_set.v */
};

struct route_set {
	bool listener;
	const char *a, *b, *c;
	uint16_t port;
	struct rt_entry *v;		/* sorted by precedence */
	size_t n;
	struct rt_seg *segs;		/* Exact and PathPrefix entries, by segment then idx */
	size_t n_segs;
	uint32_t *always;		/* the others (prefix "/", regex, gRPC), by idx */
	size_t n_always;
};

struct rt_consumer {
	const char *ns, *name, *client;
};

struct route_table {
	struct rt_chunk *mem;
	regex_t **regs;
	size_t n_regs, cap_regs;
	const struct sl_resources *res;
	const struct sl_service **svcs;	/* sorted by ns, name */
	size_t n_svcs;
	struct rt_route *routes;
	size_t n_routes;
	struct route_parent_status *st;
	size_t n_st;
	struct rt_att *att;
	size_t n_att, cap_att;
	struct route_set *mesh;		/* sorted by svc ns, svc name, port, client ns (NULL first) */
	size_t n_mesh;
	struct route_set *lsn;		/* sorted by gateway ns, name, listener */
	size_t n_lsn;
	struct rt_consumer *cons;	/* Services with consumer routes, sorted */
	size_t n_cons;
};

static void *rt_alloc(struct route_table *t, size_t n)
{
	struct rt_chunk *c = t->mem;
	size_t al = sizeof(max_align_t);
	void *p;

	if (n > SIZE_MAX - al)
		return NULL;
	n = n ? (n + al - 1) / al * al : al;
	if (!c || c->size - c->used < n) {
		size_t sz = n > RT_CHUNK ? n : RT_CHUNK;

		c = calloc(1, sizeof(*c) + sz);	/* zeroed: allocations start zeroed */
		if (!c)
			return NULL;
		c->size = sz;
		c->next = t->mem;
		t->mem = c;
	}
	p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

static void *rt_calloc(struct route_table *t, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	return rt_alloc(t, n * size);
}

static char *rt_printf(struct route_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *rt_printf(struct route_table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(s = rt_alloc(t, (size_t)n + 1)))
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* "a, b, c" (the CORS headers' form), or NULL for none; *any when one is "*". */
static int rt_join(struct route_table *t, const struct sl_strs *s, const char **out, bool *any)
{
	size_t len = 1;
	char *p;

	*out = NULL;
	*any = false;
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i] && !strcmp(s->v[i], "*"))
			*any = true;
		len += (s->v[i] ? strlen(s->v[i]) : 0) + 2;
	}
	if (!s->n)
		return 0;
	if (!(p = rt_alloc(t, len)))
		return -ENOMEM;
	*out = p;
	for (size_t i = 0; i < s->n; i++) {
		size_t l = s->v[i] ? strlen(s->v[i]) : 0;

		if (i) {
			memcpy(p, ", ", 2);
			p += 2;
		}
		if (l)
			memcpy(p, s->v[i], l);
		p += l;
	}
	*p = '\0';
	return 0;
}

/* ---- small helpers ------------------------------------------------------ */

static bool str_eq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static int str_cmp_null(const char *a, const char *b)	/* NULL sorts first */
{
	if (!a || !b)
		return a ? 1 : b ? -1 : 0;
	return strcmp(a, b);
}

const char *route_kind_str(enum sl_route_kind k)
{
	static const char *const names[] = { [SL_ROUTE_HTTP] = "HTTPRoute", [SL_ROUTE_GRPC] = "GRPCRoute",
					     [SL_ROUTE_TCP] = "TCPRoute", [SL_ROUTE_TLS] = "TLSRoute" };

	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "HTTPRoute";
}

static const char *kind_str(const struct sl_route *r)
{
	return route_kind_str(r->kind);
}

/* TCPRoute and TLSRoute: a connection's bytes go as they are to one backend. */
static bool kind_l4(enum sl_route_kind k)
{
	return k == SL_ROUTE_TCP || k == SL_ROUTE_TLS;
}

static int svc_cmp(const void *pa, const void *pb)
{
	const struct sl_service *a = *(const struct sl_service *const *)pa;
	const struct sl_service *b = *(const struct sl_service *const *)pb;
	int c = strcmp(a->ns, b->ns);

	return c ? c : strcmp(a->name, b->name);
}

static const struct sl_service *svc_find(const struct route_table *t, const char *ns, const char *name)
{
	size_t lo = 0, hi = t->n_svcs;

	if (!ns || !name)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct sl_service *s = t->svcs[mid];
		int c = strcmp(ns, s->ns);

		if (!c)
			c = strcmp(name, s->name);
		if (!c)
			return s;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static const struct sl_service_port *svc_port(const struct sl_service *s, uint16_t port)
{
	for (size_t i = 0; i < s->n_ports; i++)
		if (s->ports[i].port == port)
			return &s->ports[i];
	return NULL;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* RFC 3339 ("2024-05-01T10:00:00Z", fractions and offsets too) to UTC
 * seconds; false when it is not one (the route then sorts as youngest). */
static bool parse_ts(const char *s, int64_t *sec, int32_t *nsec)
{
	int y, mo, d, h, mi, se, oh = 0, om = 0;
	int64_t frac = 0, scale = 1000000000;
	const char *p;

	if (!s || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &se) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return false;
	p = s + 19;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh) && p[3] == ':' && digits(p + 4, 2, &om)) {
		int sign = *p == '-' ? -1 : 1;

		oh *= sign;
		om *= sign;
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	*sec = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se -
	       (oh * 3600 + om * 60);
	*nsec = (int32_t)frac;
	return true;
}

/* ---- hostnames (Gateway API "Hostname": exact or "*." + suffix) ---------- */

static bool host_wild(const char *h)
{
	return h[0] == '*' && h[1] == '.';
}

/* Does pat (exact, or "*.suffix") match the concrete name[0..n)? The wildcard
 * stands for one or more labels: "*.example.com" matches "a.example.com" and
 * "a.b.example.com", not "example.com". Case-insensitive. */
static bool host_match(const char *pat, const char *name, size_t n)
{
	size_t pl = strlen(pat);

	if (!host_wild(pat))
		return pl == n && !strncasecmp(pat, name, n);
	return n > pl - 1 && !strncasecmp(name + n - (pl - 1), pat + 1, pl - 1);
}

/* The intersection of a route hostname and a listener hostname (one of the
 * two, the narrower), or NULL when they do not meet. */
static const char *host_meet(const char *h, const char *l)
{
	bool hw = host_wild(h), lw = host_wild(l);

	if (!strcasecmp(h, l))
		return h;
	if (!hw && lw)
		return host_match(l, h, strlen(h)) ? h : NULL;
	if (hw && !lw)
		return host_match(h, l, strlen(l)) ? l : NULL;
	if (hw && lw) {
		if (host_match(l, h + 2, strlen(h + 2)))
			return h;
		if (host_match(h, l + 2, strlen(l + 2)))
			return l;
	}
	return NULL;
}

static bool hosts_meet(const struct rt_hosts *a, const struct rt_hosts *b)
{
	if (!a->n || !b->n)
		return true;
	for (size_t i = 0; i < a->n; i++)
		for (size_t j = 0; j < b->n; j++)
			if (host_meet(a->v[i], b->v[j]))
				return true;
	return false;
}

/* ---- conditions --------------------------------------------------------- */

static void route_reject(struct rt_route *rr, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void route_reject(struct rt_route *rr, const char *reason, const char *fmt, ...)
{
	va_list ap;

	if (!rr->ok)
		return;			/* the first problem is the one reported */
	rr->ok = false;
	rr->acc_reason = reason;
	va_start(ap, fmt);
	vsnprintf(rr->acc_msg, sizeof(rr->acc_msg), fmt, ap);
	va_end(ap);
}

static void refs_fail(struct rt_route *rr, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void refs_fail(struct rt_route *rr, const char *reason, const char *fmt, ...)
{
	va_list ap;

	if (!rr->refs_ok)
		return;
	rr->refs_ok = false;
	rr->refs_reason = reason;
	va_start(ap, fmt);
	vsnprintf(rr->refs_msg, sizeof(rr->refs_msg), fmt, ap);
	va_end(ap);
}

static void rule_invalid(struct rt_route *rr, struct rt_rule *ru, size_t i, const char *what)
{
	const struct sl_route_rule *rule = &rr->r->rules[i];

	if (ru->invalid)
		return;
	ru->invalid = true;
	if (!rr->partial) {
		rr->partial = true;
		if (rule->name)
			snprintf(rr->partial_msg, sizeof(rr->partial_msg), "rule %s dropped: %s", rule->name, what);
		else
			snprintf(rr->partial_msg, sizeof(rr->partial_msg), "rule %zu dropped: %s", i, what);
	}
}

/* ---- compiling ---------------------------------------------------------- */

/* Compile pat (POSIX ERE) into *out. Returns 0, 1 when it does not compile
 * (the route is then not accepted), or -ENOMEM. */
static int re_compile(struct route_table *t, struct rt_route *rr, const char *pat, regex_t **out)
{
	regex_t *re;
	int rc;

	if (t->n_regs == t->cap_regs) {
		size_t cap = t->cap_regs ? t->cap_regs * 2 : 16;
		regex_t **v = realloc(t->regs, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->regs = v;
		t->cap_regs = cap;
	}
	if (!(re = malloc(sizeof(*re))))
		return -ENOMEM;
	rc = regcomp(re, pat ? pat : "", REG_EXTENDED);
	if (rc) {
		char err[96];

		if (rc == REG_ESPACE) {
			free(re);
			return -ENOMEM;
		}
		regerror(rc, re, err, sizeof(err));
		free(re);		/* a failed regcomp leaves nothing to regfree */
		route_reject(rr, "UnsupportedValue", "regular expression \"%.60s\" does not compile: %s",
			     pat ? pat : "", err);
		return 1;
	}
	t->regs[t->n_regs++] = re;
	*out = re;
	return 0;
}

static int compile_kv(struct route_table *t, struct rt_route *rr, const struct sl_kv_match *kv, size_t n,
		      bool icase, regex_t ***res, bool **dup, size_t *count)
{
	if (!n)
		return 0;
	if (!(*res = rt_calloc(t, n, sizeof(**res))) || !(*dup = rt_calloc(t, n, sizeof(**dup))))
		return -ENOMEM;
	for (size_t j = 0; j < n; j++) {
		int rc;

		for (size_t k = 0; k < j && !(*dup)[j]; k++)
			if (kv[k].name && kv[j].name &&
			    !(icase ? strcasecmp(kv[k].name, kv[j].name) : strcmp(kv[k].name, kv[j].name)))
				(*dup)[j] = true;
		if ((*dup)[j])
			continue;
		(*count)++;
		if (kv[j].type == SL_MATCH_PREFIX)
			route_reject(rr, "UnsupportedValue", "%s match %s: type PathPrefix is not valid here",
				     icase ? "header" : "query parameter", kv[j].name ? kv[j].name : "");
		if (kv[j].type == SL_MATCH_REGEX && (rc = re_compile(t, rr, kv[j].value, &(*res)[j])) < 0)
			return rc;
	}
	return 0;
}

static int compile_match(struct route_table *t, struct rt_route *rr, struct rt_match *mt,
			 const struct sl_http_match *m)
{
	int rc;

	mt->m = m;
	if (rr->r->kind == SL_ROUTE_HTTP) {
		mt->ptype = m && m->has_path ? m->path_type : SL_MATCH_PREFIX;
		mt->path = m && m->has_path && m->path && *m->path ? m->path : "/";
		switch (mt->ptype) {
		case SL_MATCH_EXACT:
			mt->pclass = 3;
			mt->pkey = strlen(mt->path);
			break;
		case SL_MATCH_REGEX:
			/* Regex precedence is implementation-specific: after Exact,
			 * before any prefix (a regex is usually written to be narrow). */
			mt->pclass = 2;
			mt->pkey = strlen(mt->path);
			if ((rc = re_compile(t, rr, mt->path, &mt->path_re)) < 0)
				return rc;
			break;
		case SL_MATCH_PREFIX:
		default:
			mt->ptype = SL_MATCH_PREFIX;
			mt->pclass = 1;
			mt->plen = strlen(mt->path);
			while (mt->plen && mt->path[mt->plen - 1] == '/')
				mt->plen--;	/* "a trailing / is ignored" */
			mt->pkey = mt->plen;
			break;
		}
		mt->mkey = m && m->method;
	} else if (m && m->has_grpc) {
		mt->svc = m->grpc_service && *m->grpc_service ? m->grpc_service : NULL;
		mt->meth = m->grpc_method && *m->grpc_method ? m->grpc_method : NULL;
		mt->pkey = mt->svc ? strlen(mt->svc) : 0;
		mt->mkey = mt->meth ? strlen(mt->meth) : 0;
		if (!mt->svc && !mt->meth)
			route_reject(rr, "UnsupportedValue", "a gRPC method match needs a service or a method");
		if (m->grpc_type == SL_MATCH_PREFIX)
			route_reject(rr, "UnsupportedValue", "gRPC method match type PathPrefix is not valid");
		if (m->grpc_type == SL_MATCH_REGEX) {
			if (mt->svc && (rc = re_compile(t, rr, mt->svc, &mt->svc_re)) < 0)
				return rc;
			if (mt->meth && (rc = re_compile(t, rr, mt->meth, &mt->meth_re)) < 0)
				return rc;
		}
	}
	if (!m)
		return 0;
	if ((rc = compile_kv(t, rr, m->headers, m->n_headers, true, &mt->hdr_re, &mt->hdr_dup, &mt->n_hdr)) < 0)
		return rc;
	if (rr->r->kind == SL_ROUTE_HTTP &&
	    (rc = compile_kv(t, rr, m->query, m->n_query, false, &mt->q_re, &mt->q_dup, &mt->n_q)) < 0)
		return rc;
	return 0;
}

/* Is a ReferenceGrant in ns letting route r refer to Service `name` there? */
static bool grant_allows(const struct route_table *t, const struct sl_route *r, const char *ns, const char *name)
{
	for (size_t i = 0; i < t->res->n_ref_grants; i++) {
		const struct sl_ref_grant *g = &t->res->ref_grants[i];
		bool from = false;

		if (!str_eq(g->ns, ns))
			continue;
		for (size_t j = 0; j < g->n_from && !from; j++)
			from = str_eq(g->from[j].group, RT_GROUP) && str_eq(g->from[j].kind, kind_str(r)) &&
			       str_eq(g->from[j].ns, r->ns);
		if (!from)
			continue;
		for (size_t j = 0; j < g->n_to; j++)
			if ((!g->to[j].group || !*g->to[j].group) && str_eq(g->to[j].kind, "Service") &&
			    (!g->to[j].name || str_eq(g->to[j].name, name)))
				return true;
	}
	return false;
}

/* Resolve a backendRef (rule backend or mirror): true when it can carry
 * traffic; otherwise the route's ResolvedRefs says why. */
static bool check_backend(struct route_table *t, struct rt_route *rr, const struct sl_backend_ref *b,
			  const char **ns_out)
{
	const struct sl_route *r = rr->r;
	const char *ns = b->ns ? b->ns : r->ns;
	const char *name = b->name ? b->name : "";
	const struct sl_service *s;

	*ns_out = ns;
	if ((b->group && *b->group && strcmp(b->group, "core")) || (b->kind && strcmp(b->kind, "Service"))) {
		refs_fail(rr, "InvalidKind", "backendRef %s/%s: kind %s%s%s is not supported (only Service)",
			  ns, name, b->group && *b->group ? b->group : "", b->group && *b->group ? "/" : "",
			  b->kind ? b->kind : "Service");
		return false;
	}
	if (!(s = svc_find(t, ns, name))) {
		refs_fail(rr, "BackendNotFound", "backendRef %s/%s: Service not found", ns, name);
		return false;
	}
	if (strcmp(ns, r->ns) && !grant_allows(t, r, ns, name)) {
		refs_fail(rr, "RefNotPermitted",
			  "backendRef %s/%s: no ReferenceGrant in %s lets %s from %s refer to it", ns, name, ns,
			  kind_str(r), r->ns);
		return false;
	}
	if (!b->port) {
		refs_fail(rr, "BackendNotFound", "backendRef %s/%s: port is required for a Service", ns, name);
		return false;
	}
	if (!svc_port(s, b->port)) {
		refs_fail(rr, "BackendNotFound", "backendRef %s/%s: the Service has no port %u", ns, name, b->port);
		return false;
	}
	return true;
}

/* Is the rule's only match a PathPrefix (what ReplacePrefixMatch needs)? */
static bool rule_single_prefix(const struct sl_route_rule *rule)
{
	if (rule->n_matches == 0)
		return true;		/* the API's default: one PathPrefix "/" */
	return rule->n_matches == 1 &&
	       (!rule->matches[0].has_path || rule->matches[0].path_type == SL_MATCH_PREFIX);
}

/* Check and precompute one filter list (a rule's, or a backend's). */
static int compile_filters(struct route_table *t, struct rt_route *rr, struct rt_rule *ru, size_t ri,
			   const struct sl_route_filter *f, size_t n, struct rt_filter **fx_out, bool rule_level)
{
	const struct sl_route_rule *rule = &rr->r->rules[ri];
	size_t count[SL_FILTER_EXTENSION + 1] = { 0 };
	struct rt_filter *fx;
	int rc;

	*fx_out = NULL;
	if (!n)
		return 0;
	if (!(fx = rt_calloc(t, n, sizeof(*fx))))
		return -ENOMEM;
	*fx_out = fx;
	for (size_t i = 0; i < n; i++) {
		const struct sl_route_filter *g = &f[i];

		if ((unsigned)g->type > SL_FILTER_EXTENSION) {
			route_reject(rr, "UnsupportedValue", "filter type %d is not supported", (int)g->type);
			continue;
		}
		count[g->type]++;
		if (rr->r->kind == SL_ROUTE_GRPC &&
		    (g->type == SL_FILTER_REDIRECT || g->type == SL_FILTER_REWRITE || g->type == SL_FILTER_CORS)) {
			route_reject(rr, "UnsupportedValue", "filter %s is not valid in a GRPCRoute",
				     sl_filter_type_names[g->type]);
			continue;
		}
		switch (g->type) {
		case SL_FILTER_REDIRECT:
			if (g->scheme && strcmp(g->scheme, "http") && strcmp(g->scheme, "https"))
				route_reject(rr, "UnsupportedValue", "RequestRedirect scheme \"%.32s\" is not supported",
					     g->scheme);
			if (g->status && g->status != 301 && g->status != 302 && g->status != 303 &&
			    g->status != 307 && g->status != 308)
				route_reject(rr, "UnsupportedValue", "RequestRedirect statusCode %u is not supported",
					     g->status);
			/* and URLRewrite's path checks */
			__attribute__((fallthrough));
		case SL_FILTER_REWRITE:
			if ((unsigned)g->path.type > SL_PATH_MOD_PREFIX)
				route_reject(rr, "UnsupportedValue", "%s path type %d is not supported",
					     sl_filter_type_names[g->type], (int)g->path.type);
			if (g->path.type == SL_PATH_MOD_PREFIX && !rule_single_prefix(rule))
				rule_invalid(rr, ru, ri, "ReplacePrefixMatch needs exactly one PathPrefix match");
			break;
		case SL_FILTER_MIRROR:
			fx[i].mirror_ok = check_backend(t, rr, &g->mirror, &fx[i].mirror_ns);
			break;
		case SL_FILTER_CORS: {
			struct rt_cors *c = rt_calloc(t, 1, sizeof(*c));

			if (!c)
				return -ENOMEM;
			fx[i].cors = c;
			if ((rc = rt_join(t, &g->allow_methods, &c->methods, &c->any_method)) ||
			    (rc = rt_join(t, &g->allow_headers, &c->headers, &c->any_header)) ||
			    (rc = rt_join(t, &g->expose_headers, &c->expose, &c->any_expose)))
				return rc;
			snprintf(c->max_age, sizeof(c->max_age), "%d", g->max_age > 0 ? g->max_age : 5);
			break;
		}
		case SL_FILTER_EXTENSION:
			/* The spec: a custom filter that cannot be resolved MUST NOT be
			 * skipped; the requests it would process get an error (500),
			 * and the reference is unresolved (ResolvedRefs InvalidKind).
			 * The route stays accepted: its other rules still work. */
			refs_fail(rr, "InvalidKind", "ExtensionRef %s is not supported",
				  g->extension ? g->extension : "(unnamed)");
			break;
		default:
			break;
		}
	}
	for (unsigned k = 0; k <= SL_FILTER_EXTENSION; k++)
		if (k != SL_FILTER_MIRROR && k != SL_FILTER_EXTENSION && count[k] > 1) {
			char what[64];

			snprintf(what, sizeof(what), "filter %s repeated", sl_filter_type_names[k]);
			rule_invalid(rr, ru, ri, what);
		}
	if (count[SL_FILTER_REDIRECT] && count[SL_FILTER_REWRITE])
		rule_invalid(rr, ru, ri, "RequestRedirect and URLRewrite together");
	if (rule_level && count[SL_FILTER_REDIRECT] && rule->n_backends)
		rule_invalid(rr, ru, ri, "RequestRedirect together with backendRefs");
	return 0;
}

static int compile_route(struct route_table *t, struct rt_route *rr, const struct sl_route *r)
{
	int rc;

	rr->r = r;
	rr->ok = true;
	rr->acc_reason = "Accepted";
	rr->refs_ok = true;
	rr->refs_reason = "ResolvedRefs";
	rr->has_ts = parse_ts(r->created, &rr->ts_sec, &rr->ts_nsec);
	if (!(rr->key = rt_printf(t, "%s/%s", r->ns ? r->ns : "", r->name ? r->name : "")))
		return -ENOMEM;
	if (r->n_rules && !(rr->rules = rt_calloc(t, r->n_rules, sizeof(*rr->rules))))
		return -ENOMEM;
	for (size_t i = 0; i < r->n_rules; i++) {
		const struct sl_route_rule *rule = &r->rules[i];
		struct rt_rule *ru = &rr->rules[i];

		ru->n_matches = rule->n_matches ? rule->n_matches : 1;
		if (!(ru->matches = rt_calloc(t, ru->n_matches, sizeof(*ru->matches))))
			return -ENOMEM;
		for (size_t j = 0; j < ru->n_matches; j++)
			if ((rc = compile_match(t, rr, &ru->matches[j], rule->n_matches ? &rule->matches[j] : NULL)) < 0)
				return rc;
		if ((rc = compile_filters(t, rr, ru, i, rule->filters, rule->n_filters, &ru->fx, true)) < 0)
			return rc;
		if (rule->n_backends && !(ru->be = rt_calloc(t, rule->n_backends, sizeof(*ru->be))))
			return -ENOMEM;
		for (size_t j = 0; j < rule->n_backends; j++) {
			const struct sl_backend_ref *b = &rule->backends[j];

			ru->be[j].ok = check_backend(t, rr, b, &ru->be[j].ns);
			if ((rc = compile_filters(t, rr, ru, i, b->filters, b->n_filters, &ru->be[j].fx, false)) < 0)
				return rc;
		}
		/* The API allows one rule (v1); v1alpha2 allowed more, without
		 * saying how a connection would choose between them. */
		if (kind_l4(r->kind) && i > 0)
			rule_invalid(rr, ru, i, r->kind == SL_ROUTE_TCP ? "a TCPRoute has one rule" : "a TLSRoute has one rule");
		if (!ru->invalid)
			rr->n_valid++;
	}
	if (r->n_rules && !rr->n_valid)
		route_reject(rr, "IncompatibleFilters", "every rule is invalid (%s)", rr->partial_msg);
	return 0;
}

/* ---- attaching ---------------------------------------------------------- */

static int att_add(struct route_table *t, const struct rt_att *a)
{
	if (t->n_att == t->cap_att) {
		size_t cap = t->cap_att ? t->cap_att * 2 : 64;
		struct rt_att *v = realloc(t->att, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->att = v;
		t->cap_att = cap;
	}
	t->att[t->n_att] = *a;
	t->att[t->n_att].seq = t->n_att;
	t->n_att++;
	return 0;
}

static const struct sl_gateway *gw_find(const struct sl_resources *res, const char *ns, const char *name)
{
	for (size_t i = 0; i < res->n_gateways; i++)
		if (str_eq(res->gateways[i].ns, ns) && str_eq(res->gateways[i].name, name))
			return &res->gateways[i];
	return NULL;
}

static const struct sl_gateway_class *gwc_find(const struct sl_resources *res, const char *name)
{
	for (size_t i = 0; i < res->n_gateway_classes; i++)
		if (str_eq(res->gateway_classes[i].name, name))
			return &res->gateway_classes[i];
	return NULL;
}

/* allowedRoutes.namespaces: may a route in ns attach to listener l of gw? */
static bool listener_allows_ns(const struct sl_resources *res, const struct sl_gateway *gw,
			       const struct sl_listener *l, const char *ns)
{
	const struct sl_namespace *n = NULL;
	struct sl_label lv[64];
	struct sl_labels labels = { lv, 0 };

	switch (l->routes_from) {
	case SL_ROUTES_FROM_ALL:
		return true;
	case SL_ROUTES_FROM_SELECTOR:
		for (size_t i = 0; i < res->n_namespaces && !n; i++)
			if (str_eq(res->namespaces[i].name, ns))
				n = &res->namespaces[i];
		/* Kubernetes sets kubernetes.io/metadata.name on every namespace;
		 * selectors commonly use it, so it is there even without the object. */
		lv[labels.n++] = (struct sl_label){ (char *)"kubernetes.io/metadata.name", (char *)ns };
		for (size_t i = 0; n && i < n->labels.n && labels.n < 64; i++)
			if (strcmp(n->labels.v[i].key, "kubernetes.io/metadata.name"))
				lv[labels.n++] = n->labels.v[i];
		return selector_match(&l->routes_selector, &labels);
	case SL_ROUTES_FROM_SAME:
	default:
		return str_eq(gw->ns, ns);
	}
}

/* The route kinds a listener's protocol can carry at all. A TLS listener
 * in mode Terminate hands on a decrypted byte stream, which a TCPRoute can
 * take as well as a TLSRoute (as Envoy Gateway and Contour do). */
static unsigned listener_proto_kinds(const struct sl_listener *l)
{
	const char *protocol = l->protocol;

	if (str_eq(protocol, "HTTP") || str_eq(protocol, "HTTPS"))
		return ROUTE_KIND_BIT(SL_ROUTE_HTTP) | ROUTE_KIND_BIT(SL_ROUTE_GRPC);
	if (str_eq(protocol, "TLS") && str_eq(l->tls_mode, "Terminate"))
		return ROUTE_KIND_BIT(SL_ROUTE_TLS) | ROUTE_KIND_BIT(SL_ROUTE_TCP);
	if (str_eq(protocol, "TLS"))
		return ROUTE_KIND_BIT(SL_ROUTE_TLS);
	if (str_eq(protocol, "TCP"))
		return ROUTE_KIND_BIT(SL_ROUTE_TCP);
	return 0;
}

unsigned route_listener_kinds(const struct sl_listener *l, bool *invalid)
{
	unsigned can = listener_proto_kinds(l), out = 0;

	*invalid = false;
	if (!l->n_route_kinds)
		return can;
	for (size_t i = 0; i < l->n_route_kinds; i++) {
		const struct sl_route_group_kind *k = &l->route_kinds[i];
		unsigned bit = 0;

		for (unsigned kind = SL_ROUTE_HTTP; kind <= SL_ROUTE_TLS && !bit; kind++)
			if ((!k->group || str_eq(k->group, RT_GROUP)) &&
			    str_eq(k->kind, route_kind_str((enum sl_route_kind)kind)))
				bit = ROUTE_KIND_BIT(kind);
		if (bit & can)
			out |= bit;
		else
			*invalid = true;
	}
	return out;
}

/* allowedRoutes.kinds, or by protocol (route_listener_kinds). */
static bool listener_allows_kind(const struct sl_listener *l, const struct sl_route *r)
{
	bool invalid;

	return route_listener_kinds(l, &invalid) & ROUTE_KIND_BIT(r->kind);
}

/* The hostnames a route serves on a listener: listener hostname and route
 * hostnames intersected. Returns 0 with *out (n 0: any), 1 when they do not
 * meet, or -ENOMEM. */
static int listener_hosts(struct route_table *t, const struct sl_listener *l, const struct sl_route *r,
			  struct rt_hosts *out)
{
	/* a TCP listener has no hostname to meet (the API forbids one) */
	const char *lh = l->hostname && *l->hostname && !str_eq(l->protocol, "TCP") ? l->hostname : NULL;

	*out = (struct rt_hosts){ 0 };
	if (!lh && !r->n_hostnames)
		return 0;
	if (!(out->v = rt_calloc(t, r->n_hostnames ? r->n_hostnames : 1, sizeof(*out->v))))
		return -ENOMEM;
	if (!r->n_hostnames) {
		out->v[out->n++] = lh;
		return 0;
	}
	for (size_t i = 0; i < r->n_hostnames; i++) {
		const char *h = r->hostnames[i] ? r->hostnames[i] : "";
		const char *m = lh ? host_meet(h, lh) : h;

		if (m && *m)
			out->v[out->n++] = m;
	}
	return out->n ? 0 : 1;
}

static void st_fail(struct route_parent_status *st, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void st_fail(struct route_parent_status *st, const char *reason, const char *fmt, ...)
{
	va_list ap;

	st->accepted = false;
	st->accepted_reason = reason;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
}

/* A Service parent (GAMMA). Attachments go to tmp; returns 0 or -ENOMEM. */
static int attach_service(struct route_table *t, struct rt_route *rr, const struct sl_parent_ref *p,
			  struct route_parent_status *st, size_t si)
{
	const struct sl_route *r = rr->r;
	const char *ns = p->ns ? p->ns : r->ns;
	const struct sl_service *s = svc_find(t, ns, p->name);
	const struct sl_service_port *only = NULL;
	size_t n = 0;
	int rc;

	if (kind_l4(r->kind)) {
		st_fail(st, "UnsupportedValue", "a %s with a Service parent (GAMMA) is not supported", kind_str(r));
		return 0;
	}
	if (!s) {
		st_fail(st, "NoMatchingParent", "Service %s/%s not found", ns, p->name ? p->name : "");
		return 0;
	}
	if (p->section_name) {
		for (size_t i = 0; i < s->n_ports && !only; i++)
			if (str_eq(s->ports[i].name, p->section_name))
				only = &s->ports[i];
		if (!only || (p->port && only->port != p->port)) {
			st_fail(st, "NoMatchingParent", "Service %s/%s has no port named %s%s", ns, s->name,
				p->section_name, only ? " with that port number" : "");
			return 0;
		}
	} else if (p->port && !(only = svc_port(s, p->port))) {
		st_fail(st, "NoMatchingParent", "Service %s/%s has no port %u", ns, s->name, p->port);
		return 0;
	}
	if (!rr->ok)
		return 0;
	for (size_t i = 0; i < s->n_ports; i++) {
		const struct sl_service_port *sp = &s->ports[i];
		struct rt_att a = { .rr = rr, .a = s->ns, .b = s->name, .port = sp->port, .status = si };

		if ((only && sp != only) || (sp->proto && sp->proto != SL_IPPROTO_TCP))
			continue;
		/* A route in the Service's namespace is the producer's; from any
		 * other namespace it is a consumer route for clients there. */
		a.c = strcmp(r->ns, s->ns) ? r->ns : NULL;
		if ((rc = att_add(t, &a)) < 0)
			return rc;
		n++;
	}
	if (!n)
		st_fail(st, "NoMatchingParent", "Service %s/%s has no TCP port to route", ns, s->name);
	return 0;
}

static int attach_gateway(struct route_table *t, struct rt_route *rr, const struct sl_parent_ref *p,
			  struct route_parent_status *st, size_t si)
{
	const struct sl_route *r = rr->r;
	const char *ns = p->ns ? p->ns : r->ns;
	const struct sl_gateway *gw = gw_find(t->res, ns, p->name);
	const struct sl_gateway_class *gc;
	size_t named = 0, allowed = 0, n = 0, wrong_proto = 0, bad_mode = 0;
	int rc;

	if (!gw) {
		st_fail(st, "NoMatchingParent", "Gateway %s/%s not found", ns, p->name ? p->name : "");
		return 0;
	}
	if (!(gc = gwc_find(t->res, gw->class_name))) {
		st_fail(st, "NoMatchingParent", "Gateway %s/%s: GatewayClass %s not found", ns, gw->name,
			gw->class_name ? gw->class_name : "(none)");
		return 0;
	}
	if (!str_eq(gc->controller, ROUTE_CONTROLLER_NAME)) {
		st_fail(st, "NoMatchingParent", "Gateway %s/%s: GatewayClass %s is not sluice's (controller %s)",
			ns, gw->name, gc->name, gc->controller ? gc->controller : "(none)");
		return 0;
	}
	for (size_t i = 0; i < gw->n_listeners; i++) {
		const struct sl_listener *l = &gw->listeners[i];
		struct rt_att a = { .rr = rr, .listener = true, .a = gw->ns, .b = gw->name, .c = l->name,
				    .status = si };

		if ((p->section_name && !str_eq(l->name, p->section_name)) || (p->port && l->port != p->port))
			continue;
		named++;
		if (!(listener_proto_kinds(l) & ROUTE_KIND_BIT(r->kind)))
			wrong_proto++;
		if (!listener_allows_ns(t->res, gw, l, r->ns) || !listener_allows_kind(l, r))
			continue;
		allowed++;
		/* a TLS listener without a mode is not served (gwplan) */
		if (r->kind == SL_ROUTE_TLS && !str_eq(l->tls_mode, "Passthrough") &&
		    !str_eq(l->tls_mode, "Terminate")) {
			bad_mode++;
			continue;
		}
		if ((rc = listener_hosts(t, l, r, &a.hosts)) < 0)
			return rc;
		if (rc)
			continue;
		if (rr->ok && (rc = att_add(t, &a)) < 0)
			return rc;
		n++;
	}
	if (!named) {
		char port[24] = "";

		if (p->port)
			snprintf(port, sizeof(port), " on port %u", p->port);
		st_fail(st, "NoMatchingParent", "Gateway %s/%s has no listener%s%s%s", ns, gw->name,
			p->section_name ? " named " : "", p->section_name ? p->section_name : "", port);
	} else if (!allowed && r->kind == SL_ROUTE_TLS && wrong_proto == named) {
		/* the TLSRoute spec's reason for "a Listener of the wrong type" */
		st_fail(st, "UnsupportedValue", "Gateway %s/%s: no listener%s%s of protocol TLS", ns, gw->name,
			p->section_name ? " " : "", p->section_name ? p->section_name : "");
	} else if (!allowed) {
		st_fail(st, "NotAllowedByListeners", "Gateway %s/%s: no listener%s%s admits %s from namespace %s",
			ns, gw->name, p->section_name ? " " : "", p->section_name ? p->section_name : "",
			kind_str(r), r->ns);
	} else if (!n && bad_mode) {
		st_fail(st, "UnsupportedValue", "Gateway %s/%s: a TLSRoute needs a TLS listener in mode Passthrough "
			"or Terminate", ns, gw->name);
	} else if (!n) {
		st_fail(st, "NoMatchingListenerHostname",
			"Gateway %s/%s: no listener hostname meets the route's hostnames", ns, gw->name);
	}
	return 0;
}

/* One parentRef: its status entry, and its attachments when accepted. */
static int attach_parent(struct route_table *t, struct rt_route *rr, size_t pi, size_t si)
{
	const struct sl_route *r = rr->r;
	const struct sl_parent_ref *p = &r->parents[pi];
	struct route_parent_status *st = &t->st[si];
	size_t first = t->n_att;
	bool svc = str_eq(p->kind, "Service") && p->group && (!*p->group || !strcmp(p->group, "core"));
	bool gw = (!p->kind || str_eq(p->kind, "Gateway")) && (!p->group || str_eq(p->group, RT_GROUP));
	int rc = 0;

	st->route = r;
	st->parent = pi;
	st->accepted = true;
	st->accepted_reason = "Accepted";
	if (svc)
		rc = attach_service(t, rr, p, st, si);
	else if (gw)
		rc = attach_gateway(t, rr, p, st, si);
	else
		st_fail(st, "NoMatchingParent", "parentRef kind %s%s%s is not supported (Gateway or core Service)",
			p->group && *p->group ? p->group : "", p->group && *p->group ? "/" : "",
			p->kind ? p->kind : "Gateway");
	if (rc < 0)
		return rc;
	if (!st->accepted) {
		t->n_att = first;	/* not used for this parent */
	} else if (!rr->ok) {
		st->accepted = false;
		st->accepted_reason = rr->acc_reason;
		snprintf(st->message, sizeof(st->message), "%s", rr->acc_msg);
	}
	return 0;
}

static int route_age_cmp(const struct rt_route *a, const struct rt_route *b)
{
	if (a->has_ts != b->has_ts)
		return a->has_ts ? -1 : 1;	/* an unknown age sorts as youngest */
	if (a->has_ts && a->ts_sec != b->ts_sec)
		return a->ts_sec < b->ts_sec ? -1 : 1;
	if (a->has_ts && a->ts_nsec != b->ts_nsec)
		return a->ts_nsec < b->ts_nsec ? -1 : 1;
	return strcmp(a->key, b->key);
}

static bool att_same_listener(const struct rt_att *a, const struct rt_att *b)
{
	return a->listener && b->listener && !strcmp(a->a, b->a) && !strcmp(a->b, b->b) && !str_cmp_null(a->c, b->c);
}

/* A TCP listener (or TLS Terminate) gives each connection to one TCPRoute:
 * the oldest (then alphabetically first); the others are not accepted there. */
static void tcp_route_conflicts(struct route_table *t)
{
	for (size_t i = 0; i < t->n_att; i++) {
		struct rt_att *a = &t->att[i];

		if (!a->listener || a->rr->r->kind != SL_ROUTE_TCP)
			continue;
		for (size_t j = 0; j < t->n_att && !a->dropped; j++) {
			struct rt_att *b = &t->att[j];

			if (b == a || b->dropped || b->rr == a->rr || b->rr->r->kind != SL_ROUTE_TCP ||
			    !att_same_listener(a, b) || route_age_cmp(a->rr, b->rr) < 0)
				continue;
			a->dropped = true;
			a->beaten_by = b->rr;
		}
	}
}

/* GRPCRoute spec: an HTTPRoute and a GRPCRoute on one listener whose
 * hostnames meet: only the older (then alphabetically first) is accepted.
 * And one TCPRoute per TCP listener. */
static void listener_conflicts(struct route_table *t)
{
	tcp_route_conflicts(t);
	for (size_t i = 0; i < t->n_att; i++) {
		struct rt_att *a = &t->att[i];

		if (!a->listener || a->rr->r->kind != SL_ROUTE_GRPC)
			continue;
		for (size_t j = 0; j < t->n_att && !a->dropped; j++) {
			struct rt_att *b = &t->att[j];
			struct rt_att *loser;

			if (!b->listener || b->dropped || b->rr->r->kind != SL_ROUTE_HTTP || strcmp(a->a, b->a) ||
			    strcmp(a->b, b->b) || str_cmp_null(a->c, b->c) || !hosts_meet(&a->hosts, &b->hosts))
				continue;
			loser = route_age_cmp(a->rr, b->rr) < 0 ? b : a;
			loser->dropped = true;
			loser->beaten_by = (loser == a ? b : a)->rr;
		}
	}
	/* A parent whose every attachment was dropped is not accepted. */
	for (size_t s = 0; s < t->n_st; s++) {
		const struct rt_att *lost = NULL;
		bool live = false;

		for (size_t i = 0; i < t->n_att && !live; i++) {
			if (t->att[i].status != s)
				continue;
			if (t->att[i].dropped)
				lost = lost ? lost : &t->att[i];
			else
				live = true;
		}
		if (lost && !live && lost->rr->r->kind == SL_ROUTE_TCP)
			st_fail(&t->st[s], "NotAllowedByListeners",
				"listener %s takes one TCPRoute: TCPRoute %s is older", lost->c ? lost->c : "",
				lost->beaten_by->key);
		else if (lost && !live)
			st_fail(&t->st[s], "NotAllowedByListeners",
				"listener %s: its hostnames meet those of %s %s, which is older", lost->c ? lost->c : "",
				lost->rr->r->kind == SL_ROUTE_GRPC ? "HTTPRoute" : "GRPCRoute", lost->beaten_by->key);
	}
}

/* ---- sets --------------------------------------------------------------- */

static int att_cmp(const void *pa, const void *pb)
{
	const struct rt_att *a = pa, *b = pb;
	int c;

	if (a->listener != b->listener)
		return a->listener ? 1 : -1;
	if ((c = strcmp(a->a, b->a)) || (c = strcmp(a->b, b->b)))
		return c;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	if ((c = str_cmp_null(a->c, b->c)))
		return c;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static bool att_same_key(const struct rt_att *a, const struct rt_att *b)
{
	return a->listener == b->listener && !strcmp(a->a, b->a) && !strcmp(a->b, b->b) && a->port == b->port &&
	       !str_cmp_null(a->c, b->c);
}

#define CMP_DESC(x, y)                                  \
	do {                                            \
		if ((x) != (y))                         \
			return (x) > (y) ? -1 : 1;      \
	} while (0)

/* The spec's precedence. HTTPRoute: Exact path, then the longest path or
 * prefix, a method match, most header matches, most query matches.
 * GRPCRoute: longest service, longest method, most header matches. Then the
 * oldest route, then "ns/name", then rule order (and match order). */
/* The first segment of a path that starts with '/', within its n bytes. */
static void first_seg(const char *p, size_t n, const char **seg, size_t *len)
{
	size_t i = 1;

	while (i < n && p[i] != '/')
		i++;
	*seg = p + 1;
	*len = i ? i - 1 : 0;
}

static int seg_cmp(const void *pa, const void *pb)
{
	const struct rt_seg *a = pa, *b = pb;
	int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);

	if (c)
		return c;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static int set_index(struct route_table *t, struct route_set *s)
{
	if (!s->n)
		return 0;
	s->segs = rt_calloc(t, s->n, sizeof(*s->segs));
	s->always = rt_calloc(t, s->n, sizeof(*s->always));
	if (!s->segs || !s->always)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		const struct rt_match *mt = s->v[i].mt;
		bool http = s->v[i].rr->r->kind != SL_ROUTE_GRPC;
		size_t n = 0, len;
		const char *seg;

		if (http && mt->path && mt->path[0] == '/') {
			if (mt->ptype == SL_MATCH_EXACT)
				n = strlen(mt->path);
			else if (mt->ptype == SL_MATCH_PREFIX)
				n = mt->plen;	/* 0 for "/": every path */
		}
		if (!n) {
			s->always[s->n_always++] = (uint32_t)i;
			continue;
		}
		first_seg(mt->path, n, &seg, &len);
		s->segs[s->n_segs++] = (struct rt_seg){ seg, (uint32_t)len, (uint32_t)i };
	}
	qsort(s->segs, s->n_segs, sizeof(*s->segs), seg_cmp);
	return 0;
}

static int entry_cmp(const void *pa, const void *pb)
{
	const struct rt_entry *a = pa, *b = pb;
	const struct rt_match *x = a->mt, *y = b->mt;
	int c;

	if (a->rr->r->kind != b->rr->r->kind)
		return a->rr->r->kind < b->rr->r->kind ? -1 : 1;
	if (a->rr->r->kind == SL_ROUTE_HTTP) {
		CMP_DESC(x->pclass, y->pclass);
		CMP_DESC(x->pkey, y->pkey);
		CMP_DESC(x->mkey, y->mkey);
		CMP_DESC(x->n_hdr, y->n_hdr);
		CMP_DESC(x->n_q, y->n_q);
	} else {
		CMP_DESC(x->pkey, y->pkey);
		CMP_DESC(x->mkey, y->mkey);
		CMP_DESC(x->n_hdr, y->n_hdr);
	}
	if (a->rr != b->rr && (c = route_age_cmp(a->rr, b->rr)))
		return c;
	if (a->rule != b->rule)
		return a->rule < b->rule ? -1 : 1;
	return a->match < b->match ? -1 : a->match > b->match;
}

static int build_sets(struct route_table *t)
{
	size_t n_groups = 0, n_mesh = 0;

	if (!t->n_att)
		return 0;
	qsort(t->att, t->n_att, sizeof(*t->att), att_cmp);
	for (size_t i = 0; i < t->n_att; i++)
		if (!i || !att_same_key(&t->att[i - 1], &t->att[i])) {
			n_groups++;
			n_mesh += !t->att[i].listener;
		}
	if ((n_mesh && !(t->mesh = rt_calloc(t, n_mesh, sizeof(*t->mesh)))) ||
	    (n_groups > n_mesh && !(t->lsn = rt_calloc(t, n_groups - n_mesh, sizeof(*t->lsn)))) ||
	    (n_mesh && !(t->cons = rt_calloc(t, n_mesh, sizeof(*t->cons)))))
		return -ENOMEM;
	for (size_t i = 0, end; i < t->n_att; i = end) {
		struct route_set *s;
		size_t n = 0;

		for (end = i + 1; end < t->n_att && att_same_key(&t->att[i], &t->att[end]); end++)
			;
		for (size_t k = i; k < end; k++) {
			const struct rt_att *a = &t->att[k];
			bool dup = a->dropped;

			for (size_t q = i; q < k && !dup; q++)
				dup = t->att[q].rr == a->rr && !t->att[q].dropped;
			for (size_t r = 0; !dup && r < a->rr->r->n_rules; r++)
				if (!a->rr->rules[r].invalid)
					n += a->rr->rules[r].n_matches;
		}
		if (!n)
			continue;	/* every attachment dropped */
		s = t->att[i].listener ? &t->lsn[t->n_lsn++] : &t->mesh[t->n_mesh++];
		*s = (struct route_set){ .listener = t->att[i].listener, .a = t->att[i].a, .b = t->att[i].b,
					 .c = t->att[i].c, .port = t->att[i].port };
		if (!(s->v = rt_calloc(t, n, sizeof(*s->v))))
			return -ENOMEM;
		for (size_t k = i; k < end; k++) {
			const struct rt_att *a = &t->att[k];
			bool dup = a->dropped;

			for (size_t q = i; q < k && !dup; q++)
				dup = t->att[q].rr == a->rr && !t->att[q].dropped;
			for (size_t r = 0; !dup && r < a->rr->r->n_rules; r++) {
				const struct rt_rule *ru = &a->rr->rules[r];

				for (size_t m = 0; !ru->invalid && m < ru->n_matches; m++)
					s->v[s->n++] = (struct rt_entry){ .rr = a->rr, .mt = &ru->matches[m],
									  .rule = (uint32_t)r, .match = (uint32_t)m,
									  .hosts = a->listener ? &a->hosts : NULL };
			}
		}
		qsort(s->v, s->n, sizeof(*s->v), entry_cmp);
		if (set_index(t, s))
			return -ENOMEM;
		if (!s->listener && s->c) {
			/* sets are sorted by port before client ns: dedupe by search */
			bool seen = false;

			for (size_t q = 0; q < t->n_cons && !seen; q++)
				seen = !strcmp(t->cons[q].ns, s->a) && !strcmp(t->cons[q].name, s->b) &&
				       !strcmp(t->cons[q].client, s->c);
			if (!seen)
				t->cons[t->n_cons++] = (struct rt_consumer){ s->a, s->b, s->c };
		}
	}
	return 0;
}

/* ---- the table ---------------------------------------------------------- */

void route_table_free(struct route_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_regs; i++) {
		regfree(t->regs[i]);
		free(t->regs[i]);
	}
	free(t->regs);
	free(t->att);
	free(t->svcs);
	while (t->mem) {
		struct rt_chunk *c = t->mem;

		t->mem = c->next;
		free(c);
	}
	free(t);
}

static void note_status(const struct route_table *t, struct diags *errs)
{
	for (size_t i = 0; errs && i < t->n_st; i++) {
		const struct route_parent_status *st = &t->st[i];
		const struct sl_route *r = st->route;
		const struct sl_parent_ref *p = &r->parents[st->parent];

		if (st->accepted && st->resolved_refs && !st->partially_invalid)
			continue;
		diags_add(errs, r->src.file, r->src.line, "%s %s/%s: parentRef %s: %s %s, %s %s: %s", kind_str(r),
			  r->ns, r->name, p->name ? p->name : "", st->accepted ? "Accepted" : "not Accepted",
			  st->accepted_reason, st->resolved_refs ? "ResolvedRefs" : "not ResolvedRefs",
			  st->refs_reason, st->message);
	}
}

int route_table_build(const struct sl_model *m, struct route_table **out, struct diags *errs)
{
	const struct sl_resources *res = m->res;
	struct route_table *t;
	size_t n_st = 0, si = 0;
	int rc = -ENOMEM;

	*out = NULL;
	if (!(t = calloc(1, sizeof(*t))))
		return -ENOMEM;
	t->res = res;
	if (res->n_services) {
		if (!(t->svcs = malloc(res->n_services * sizeof(*t->svcs))))
			goto out;
		for (size_t i = 0; i < res->n_services; i++)
			if (res->services[i].ns && res->services[i].name)
				t->svcs[t->n_svcs++] = &res->services[i];
		qsort(t->svcs, t->n_svcs, sizeof(*t->svcs), svc_cmp);
	}
	for (size_t i = 0; i < res->n_routes; i++) {
		const struct sl_route *r = &res->routes[i];

		if (r->ns && r->name) {
			t->n_routes++;
			n_st += r->n_parents;
		}
	}
	if ((t->n_routes && !(t->routes = rt_calloc(t, t->n_routes, sizeof(*t->routes)))) ||
	    (n_st && !(t->st = rt_calloc(t, n_st, sizeof(*t->st)))))
		goto out;
	t->n_st = n_st;
	for (size_t i = 0, k = 0; i < res->n_routes; i++) {
		const struct sl_route *r = &res->routes[i];
		struct rt_route *rr;

		if (!r->ns || !r->name)
			continue;
		rr = &t->routes[k++];
		if ((rc = compile_route(t, rr, r)) < 0)
			goto out;
		for (size_t p = 0; p < r->n_parents; p++, si++) {
			if ((rc = attach_parent(t, rr, p, si)) < 0)
				goto out;
			t->st[si].partially_invalid = rr->ok && rr->partial;
			t->st[si].resolved_refs = rr->refs_ok;
			t->st[si].refs_reason = rr->refs_reason;
			if (t->st[si].accepted && rr->partial)
				snprintf(t->st[si].message, sizeof(t->st[si].message), "%s", rr->partial_msg);
			if (t->st[si].accepted && !rr->partial && !rr->refs_ok)
				snprintf(t->st[si].message, sizeof(t->st[si].message), "%s", rr->refs_msg);
		}
	}
	listener_conflicts(t);
	rc = -ENOMEM;
	if (build_sets(t) < 0)
		goto out;
	note_status(t, errs);
	*out = t;
	return 0;
out:
	route_table_free(t);
	return rc;
}

/* ---- lookups ------------------------------------------------------------ */

static int mesh_key_cmp(const struct route_set *s, const char *ns, const char *name, uint16_t port,
			const char *client)
{
	int c;

	if ((c = strcmp(ns, s->a)) || (c = strcmp(name, s->b)))
		return c;
	if (port != s->port)
		return port < s->port ? -1 : 1;
	return str_cmp_null(client, s->c);
}

static const struct route_set *mesh_find(const struct route_table *t, const char *ns, const char *name,
					 uint16_t port, const char *client)
{
	size_t lo = 0, hi = t->n_mesh;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = mesh_key_cmp(&t->mesh[mid], ns, name, port, client);

		if (!c)
			return &t->mesh[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct route_set *route_for_service(const struct route_table *t, const char *client_ns,
					  const char *svc_ns, const char *svc_name, uint16_t port)
{
	if (!t || !svc_ns || !svc_name)
		return NULL;
	/* GAMMA: a client namespace with its own (consumer) routes for the
	 * Service gets those instead of the producer's, on every port. */
	if (client_ns && strcmp(client_ns, svc_ns)) {
		for (size_t i = 0; i < t->n_cons; i++)
			if (!strcmp(t->cons[i].ns, svc_ns) && !strcmp(t->cons[i].name, svc_name) &&
			    !strcmp(t->cons[i].client, client_ns))
				return mesh_find(t, svc_ns, svc_name, port, client_ns);
	}
	return mesh_find(t, svc_ns, svc_name, port, NULL);
}

bool route_service_has_l7(const struct route_table *t, const char *svc_ns, const char *svc_name)
{
	size_t lo = 0, hi;

	if (!t || !svc_ns || !svc_name)
		return false;
	hi = t->n_mesh;
	while (lo < hi) {		/* the first set not before (ns, name, 0, NULL) */
		size_t mid = lo + (hi - lo) / 2;

		if (mesh_key_cmp(&t->mesh[mid], svc_ns, svc_name, 0, NULL) > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < t->n_mesh && !strcmp(t->mesh[lo].a, svc_ns) && !strcmp(t->mesh[lo].b, svc_name);
}

bool route_set_gateway(const struct route_set *s, const char **gw_ns, const char **gw_name)
{
	if (!s || !s->listener)
		return false;
	*gw_ns = s->a;
	*gw_name = s->b;
	return true;
}

const struct route_set *route_for_listener(const struct route_table *t, const char *gw_ns,
					   const char *gw_name, const char *listener)
{
	size_t lo = 0, hi;

	if (!t || !gw_ns || !gw_name || !listener)
		return NULL;
	hi = t->n_lsn;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct route_set *s = &t->lsn[mid];
		int c;

		if (!(c = strcmp(gw_ns, s->a)) && !(c = strcmp(gw_name, s->b)))
			c = str_cmp_null(listener, s->c);
		if (!c)
			return s;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

size_t route_status_count(const struct route_table *t)
{
	return t ? t->n_st : 0;
}

const struct route_parent_status *route_status_at(const struct route_table *t, size_t i)
{
	return t && i < t->n_st ? &t->st[i] : NULL;
}

/* ---- deciding: matching ------------------------------------------------- */

/* What route_decide derives from the request once. */
struct rt_req {
	const struct route_request *req;
	const char *path;
	char host[RT_MAX_HOST];		/* Host without port */
	size_t host_len;
	bool host_ok;			/* present and short enough to match hostnames */
	bool grpc;			/* content-type application/grpc* */
	bool grpc_path;			/* path is "/service/method" */
	const char *svc, *meth;
	size_t svc_len, meth_len;
};

static bool name_is(const struct route_header *h, const char *name)
{
	size_t n = strlen(name);

	return h->name && h->name_len == n && !strncasecmp(h->name, name, n);
}

/* The first field called name, or NULL. */
static const struct route_header *hdr_first(const struct route_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (name_is(&req->headers[i], name))
			return &req->headers[i];
	return NULL;
}

/* The value of header name: the field's, or every field's joined with ","
 * (RFC 9110 5.3) in buf. Returns 0, -1 when absent, -2 when it does not fit. */
static int hdr_value(const struct route_request *req, const char *name, char *buf, size_t cap,
		     const char **val, size_t *len)
{
	size_t used = 0;
	int n = 0;

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct route_header *h = &req->headers[i];
		size_t vl = h->value ? h->value_len : 0;

		if (!name_is(h, name))
			continue;
		if (n++ == 0) {
			*val = h->value ? h->value : "";
			*len = vl;
			continue;
		}
		if (n == 2) {		/* a second field: start joining */
			if (*len > cap)
				return -2;
			memcpy(buf, *val, *len);
			used = *len;
		}
		if (used + 1 + vl > cap)
			return -2;
		buf[used++] = ',';
		if (vl)			/* a valueless field may have value NULL */
			memcpy(buf + used, h->value, vl);
		used += vl;
		*val = buf;
		*len = used;
	}
	return n ? 0 : -1;
}

/* A full match of re against s[0..len): POSIX gives the leftmost-longest
 * match, so one covering the whole string is found when it exists. */
static bool re_full(const regex_t *re, const char *s, size_t len)
{
	regmatch_t m = { .rm_so = 0, .rm_eo = (regoff_t)len };

	if (regexec(re, s, 1, &m, REG_STARTEND))
		return false;
	return m.rm_so == 0 && (size_t)m.rm_eo == len;
}

static bool kv_value_match(const struct sl_kv_match *kv, const regex_t *re, const char *v, size_t len)
{
	if (kv->type == SL_MATCH_REGEX)
		return re && re_full(re, v, len);
	return kv->value && strlen(kv->value) == len && !memcmp(kv->value, v, len);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) into dst; the length, or -1 when it does not fit. */
static long pct_decode(const char *s, size_t n, char *dst, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int hi, lo;

		if (c == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)s[i + 2])) >= 0) {
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (o >= cap)
			return -1;
		dst[o++] = c;
	}
	return (long)o;
}

/* The first value of query parameter name (names and values percent-decoded;
 * '+' is left alone, as RFC 3986 has it). false when absent or too long. */
static bool query_get(const char *q, const char *name, char *buf, size_t cap, size_t *len)
{
	size_t nl = strlen(name);

	while (q && *q) {
		const char *end = strchr(q, '&'), *eq;
		size_t pl = end ? (size_t)(end - q) : strlen(q);
		char nbuf[256];
		long dn;

		eq = memchr(q, '=', pl);
		dn = pct_decode(q, eq ? (size_t)(eq - q) : pl, nbuf, sizeof(nbuf));
		if (dn >= 0 && (size_t)dn == nl && !memcmp(nbuf, name, nl)) {
			long dv = eq ? pct_decode(eq + 1, pl - (size_t)(eq + 1 - q), buf, cap) : 0;

			if (dv < 0)
				return false;
			*len = (size_t)dv;
			return true;
		}
		q = end ? end + 1 : NULL;
	}
	return false;
}

static bool path_prefix_match(const char *path, const char *pfx, size_t plen)
{
	return !strncmp(path, pfx, plen) && (path[plen] == '\0' || path[plen] == '/');
}

static bool headers_match(const struct rt_match *mt, const struct route_request *req)
{
	const struct sl_http_match *m = mt->m;
	char buf[RT_MAX_JOINED];

	for (size_t j = 0; j < m->n_headers; j++) {
		const char *v;
		size_t len;

		if (mt->hdr_dup[j])
			continue;
		if (!m->headers[j].name || hdr_value(req, m->headers[j].name, buf, sizeof(buf), &v, &len) ||
		    !kv_value_match(&m->headers[j], mt->hdr_re[j], v, len))
			return false;
	}
	return true;
}

static bool entry_match(const struct rt_entry *e, const struct rt_req *rq)
{
	const struct rt_match *mt = e->mt;
	const struct sl_http_match *m = mt->m;
	const struct route_request *req = rq->req;

	if (e->rr->r->kind == SL_ROUTE_GRPC) {
		if (m && m->has_grpc) {
			if (!rq->grpc_path)
				return false;
			if (mt->svc && !(mt->svc_re ? re_full(mt->svc_re, rq->svc, rq->svc_len)
						    : strlen(mt->svc) == rq->svc_len &&
							      !memcmp(mt->svc, rq->svc, rq->svc_len)))
				return false;
			if (mt->meth && !(mt->meth_re ? re_full(mt->meth_re, rq->meth, rq->meth_len)
						      : strlen(mt->meth) == rq->meth_len &&
								!memcmp(mt->meth, rq->meth, rq->meth_len)))
				return false;
		}
		return !m || headers_match(mt, req);
	}
	switch (mt->ptype) {
	case SL_MATCH_EXACT:
		if (strcmp(rq->path, mt->path))
			return false;
		break;
	case SL_MATCH_REGEX:
		if (!mt->path_re || !re_full(mt->path_re, rq->path, strlen(rq->path)))
			return false;
		break;
	default:
		if (!path_prefix_match(rq->path, mt->path, mt->plen))
			return false;
		break;
	}
	if (!m)
		return true;
	if (m->method && !str_eq(req->method, m->method))
		return false;
	if (!headers_match(mt, req))
		return false;
	for (size_t j = 0; j < m->n_query; j++) {
		char buf[RT_MAX_QPARAM];
		size_t len;

		if (mt->q_dup[j])
			continue;
		if (!m->query[j].name || !query_get(req->query, m->query[j].name, buf, sizeof(buf), &len) ||
		    !kv_value_match(&m->query[j], mt->q_re[j], buf, len))
			return false;
	}
	return true;
}

struct rt_hscore {
	size_t exact, any;		/* characters of the best non-wildcard / any matching hostname */
};

/* Does a listener attachment serve the request's Host, and how specifically? */
static bool host_score(const struct rt_hosts *h, const struct rt_req *rq, struct rt_hscore *sc)
{
	bool found = false;

	*sc = (struct rt_hscore){ 0 };
	if (!h || !h->n)
		return true;
	if (!rq->host_ok)
		return false;
	for (size_t i = 0; i < h->n; i++) {
		size_t l = strlen(h->v[i]);

		if (!host_match(h->v[i], rq->host, rq->host_len))
			continue;
		found = true;
		if (!host_wild(h->v[i]) && l > sc->exact)
			sc->exact = l;
		if (l > sc->any)
			sc->any = l;
	}
	return found;
}

static const struct rt_entry *pick(const struct route_set *s, const struct rt_req *rq, enum sl_route_kind kind)
{
	const struct rt_entry *best = NULL;
	struct rt_hscore best_sc = { 0 };
	size_t lo = 0, hi = 0, j = 0;

	/* the entries of the request's first path segment, merged in
	 * precedence order with those every path may match */
	if (rq->path[0] == '/') {
		struct rt_seg key;
		size_t a = 0, b = s->n_segs, len;

		first_seg(rq->path, strlen(rq->path), &key.s, &len);
		key.len = (uint32_t)len;
		key.idx = 0;
		while (a < b) {
			size_t mid = (a + b) / 2;

			if (seg_cmp(&s->segs[mid], &key) < 0)
				a = mid + 1;
			else
				b = mid;
		}
		lo = hi = a;
		while (hi < s->n_segs && s->segs[hi].len == key.len && !memcmp(s->segs[hi].s, key.s, key.len))
			hi++;
	}
	while (lo < hi || j < s->n_always) {
		size_t i;

		if (j == s->n_always || (lo < hi && s->segs[lo].idx < s->always[j]))
			i = s->segs[lo++].idx;
		else
			i = s->always[j++];
		const struct rt_entry *e = &s->v[i];
		struct rt_hscore sc = { 0 };

		if (e->rr->r->kind != kind)
			continue;
		if (s->listener) {
			/* Hostname precedence comes before the match's; entries
			 * are in match precedence, so the first one wins ties. */
			if (!host_score(e->hosts, rq, &sc))
				continue;
			if (best && (sc.exact < best_sc.exact ||
				     (sc.exact == best_sc.exact && sc.any <= best_sc.any)))
				continue;
		}
		if (!entry_match(e, rq))
			continue;
		if (!s->listener)
			return e;
		best = e;
		best_sc = sc;
	}
	return best;
}

static void req_prepare(struct rt_req *rq, const struct route_request *req)
{
	const struct route_header *ct = hdr_first(req, "content-type");
	const char *h = req->host, *p, *slash;
	size_t n = 0;

	rq->req = req;
	rq->path = req->path ? req->path : "";
	rq->grpc = ct && ct->value && ct->value_len >= 16 && !strncasecmp(ct->value, "application/grpc", 16);
	if (h) {
		/* Hostname matching ignores the port (HTTPRoute hostnames). */
		if (h[0] == '[') {
			const char *rb = strchr(h, ']');

			n = rb ? (size_t)(rb - h) + 1 : strlen(h);
		} else {
			const char *c = strchr(h, ':');

			n = c ? (size_t)(c - h) : strlen(h);
		}
		if (n < sizeof(rq->host)) {
			memcpy(rq->host, h, n);
			rq->host[n] = '\0';
			rq->host_len = n;
			rq->host_ok = true;
		}
	}
	p = rq->path;
	if (p[0] == '/' && (slash = strchr(p + 1, '/')) && slash > p + 1 && slash[1] && !strchr(slash + 1, '/')) {
		rq->grpc_path = true;
		rq->svc = p + 1;
		rq->svc_len = (size_t)(slash - p - 1);
		rq->meth = slash + 1;
		rq->meth_len = strlen(slash + 1);
	}
}

/* ---- deciding: filters -------------------------------------------------- */

struct rt_ctx {
	const struct rt_req *rq;
	const struct rt_entry *e;
	const struct sl_route_rule *rule;
	struct route_decision *out;
	uint32_t rnd;
	unsigned mirror_seq;
	const struct sl_route_filter *redirect;
	bool stop;			/* the decision is made (RESPOND) */
};

static void respond(struct rt_ctx *c, uint16_t status, const char *reason)
{
	c->out->action = ROUTE_RESPOND;
	c->out->status = status;
	c->out->reason = reason;
	c->out->n_mirrors = 0;		/* nothing is forwarded, nothing mirrored */
	c->stop = true;
}

static void overflow(struct rt_ctx *c)
{
	respond(c, 500, "decision buffer overflow");
}

static bool push_edit(struct rt_ctx *c, bool resp, enum route_hdr_op op, const char *name, const char *value)
{
	struct route_decision *o = c->out;
	struct route_hdr_edit *v = resp ? o->resp_edits : o->req_edits;
	size_t *n = resp ? &o->n_resp_edits : &o->n_req_edits;

	if (!name)
		return true;
	if (*n >= ROUTE_MAX_EDITS) {
		overflow(c);
		return false;
	}
	v[(*n)++] = (struct route_hdr_edit){ op, name, op == ROUTE_HDR_REMOVE ? NULL : value ? value : "" };
	return true;
}

static bool header_mod(struct rt_ctx *c, bool resp, const struct sl_header_mod *hm)
{
	for (size_t i = 0; i < hm->n_set; i++)
		if (!push_edit(c, resp, ROUTE_HDR_SET, hm->set[i].name, hm->set[i].value))
			return false;
	for (size_t i = 0; i < hm->n_add; i++)
		if (!push_edit(c, resp, ROUTE_HDR_ADD, hm->add[i].name, hm->add[i].value))
			return false;
	for (size_t i = 0; i < hm->n_remove; i++)
		if (!push_edit(c, resp, ROUTE_HDR_REMOVE, hm->remove[i], NULL))
			return false;
	return true;
}

/* No control characters (CR, LF, NUL...): safe to echo into a response. */
static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* Copy s[0..n) into the decision's strbuf (NUL-terminated), or NULL when full. */
static const char *keep(struct route_decision *o, const char *s, size_t n)
{
	char *d;

	if (n >= sizeof(o->strbuf) - o->strbuf_used)
		return NULL;
	d = o->strbuf + o->strbuf_used;
	memcpy(d, s, n);
	d[n] = '\0';
	o->strbuf_used += n + 1;
	return d;
}

/* The request path modified by pm (ReplaceFullPath / ReplacePrefixMatch),
 * with "?query" when there was one, into dst. false when it does not fit. */
static bool path_modify(const struct rt_ctx *c, const struct sl_path_mod *pm, char *dst, size_t cap)
{
	const struct route_request *req = c->rq->req;
	const char *path = c->rq->path, *repl = pm->value ? pm->value : "", *rest;
	const struct rt_match *mt = c->e->mt;
	size_t rl = strlen(repl), used;
	int n;

	if (pm->type == SL_PATH_MOD_NONE) {
		n = snprintf(dst, cap, "%s%s%s", path, req->query ? "?" : "", req->query ? req->query : "");
		return n >= 0 && (size_t)n < cap;
	}
	if (pm->type == SL_PATH_MOD_FULL) {
		rest = "";
		if (!rl)
			repl = "/", rl = 1;
	} else {
		/* Replace the matched prefix, whole segments (the spec's table):
		 * the rest keeps its leading '/', the replacement loses its
		 * trailing ones, so "/xyz/" + "/bar" is "/xyz/bar", and an empty
		 * result is "/". */
		rest = mt->ptype == SL_MATCH_PREFIX ? path + mt->plen : path;
		while (rl && repl[rl - 1] == '/')
			rl--;
	}
	n = snprintf(dst, cap, "%s%.*s%s%s", rl && repl[0] != '/' ? "/" : "", (int)rl, repl,
		     !rl && !*rest ? "/" : (*rest && *rest != '/' && rl ? "/" : ""), rest);
	if (n < 0 || (size_t)n >= cap)
		return false;
	used = (size_t)n;
	if (req->query) {
		n = snprintf(dst + used, cap - used, "?%s", req->query);
		if (n < 0 || (size_t)n >= cap - used)
			return false;
	}
	return true;
}

static uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

static void mirror(struct rt_ctx *c, const struct sl_route_filter *f, const struct rt_filter *fx)
{
	struct route_decision *o = c->out;
	uint32_t num = f->mirror_num, den = f->mirror_den, draw;

	/* Each mirror draws with its own mix of rnd, so their shares are
	 * independent of each other and of the backend choice. */
	draw = mix32(c->rnd ^ (0x9e3779b9U * ++c->mirror_seq));
	if (!fx || !fx->mirror_ok)
		return;			/* invalid refs are not configured (spec) */
	if (den && num < den && ((uint64_t)draw * den >> 32) >= num)
		return;
	if (o->n_mirrors >= ROUTE_MAX_MIRRORS) {
		overflow(c);
		return;
	}
	o->mirrors[o->n_mirrors++] = (struct route_backend){ fx->mirror_ns, f->mirror.name, f->mirror.port };
}

/* Does the request's Origin (s[0..n)) match the allowOrigins entry pat? A
 * '*' in the host stands for one or more characters, dots included; a
 * missing port is the scheme's (80 http, 443 https). */
static bool origin_match(const char *pat, const char *s, size_t n)
{
	const char *ps = strstr(pat, "://"), *os = NULL, *ph, *oh, *pp, *op, *star;
	size_t phl, ohl, psl, osl, pre, post;
	unsigned long pport = 0, oport = 0;

	if (!strcmp(pat, "*"))
		return true;
	for (size_t i = 0; i + 3 <= n; i++)
		if (!memcmp(s + i, "://", 3)) {
			os = s + i;
			break;
		}
	if (!ps || !os)
		return false;
	psl = (size_t)(ps - pat);
	osl = (size_t)(os - s);
	if (psl != osl || strncasecmp(pat, s, psl))
		return false;
	ph = ps + 3;
	oh = os + 3;
	pp = strrchr(ph, ':');
	if (pp && strchr(pp, ']'))
		pp = NULL;		/* a colon inside an IPv6 literal */
	op = NULL;
	for (const char *q = s + n; q > oh; q--)
		if (q[-1] == ':') {
			op = q - 1;
			break;
		} else if (q[-1] == ']') {
			break;
		}
	phl = pp ? (size_t)(pp - ph) : strlen(ph);
	ohl = op ? (size_t)(op - oh) : (size_t)(s + n - oh);
	if (pp)
		pport = strtoul(pp + 1, NULL, 10);
	if (op) {
		for (const char *q = op + 1; q < s + n; q++) {
			if (*q < '0' || *q > '9')
				return false;
			oport = oport * 10 + (unsigned long)(*q - '0');
			if (oport > 65535)
				return false;
		}
	}
	if (!pport)
		pport = psl == 5 && !strncasecmp(pat, "https", 5) ? 443 : psl == 4 && !strncasecmp(pat, "http", 4) ? 80 : 0;
	if (!oport)
		oport = osl == 5 && !strncasecmp(s, "https", 5) ? 443 : osl == 4 && !strncasecmp(s, "http", 4) ? 80 : 0;
	if (pport != oport)
		return false;
	star = memchr(ph, '*', phl);
	if (!star)
		return phl == ohl && !strncasecmp(ph, oh, phl);
	pre = (size_t)(star - ph);
	post = phl - pre - 1;
	return ohl > pre + post && !strncasecmp(ph, oh, pre) && !strncasecmp(star + 1, oh + ohl - post, post);
}

static void cors(struct rt_ctx *c, const struct sl_route_filter *f, const struct rt_cors *cx)
{
	const struct route_request *req = c->rq->req;
	const struct route_header *origin = hdr_first(req, "origin");
	const struct route_header *acrm = hdr_first(req, "access-control-request-method");
	const struct route_header *acrh = hdr_first(req, "access-control-request-headers");
	bool preflight = str_eq(req->method, "OPTIONS") && origin && acrm;
	bool allowed = false;
	const char *o, *v;

	/* What is echoed must be safe to echo: otherwise not a CORS request. */
	if (!origin || !origin->value || !cx || !printable(origin->value, origin->value_len))
		return;
	if (acrm && (!acrm->value || !printable(acrm->value, acrm->value_len)))
		acrm = NULL, preflight = false;
	if (acrh && (!acrh->value || !printable(acrh->value, acrh->value_len)))
		acrh = NULL;
	for (size_t i = 0; i < f->allow_origins.n && !allowed; i++)
		allowed = f->allow_origins.v[i] && origin_match(f->allow_origins.v[i], origin->value, origin->value_len);
	if (preflight)
		respond(c, 200, "CORS preflight");	/* answered here, allowed or not (spec) */
	if (!allowed)
		return;
	/* Echo the Origin: always valid, and required with credentials. */
	if (!(o = keep(c->out, origin->value, origin->value_len)) ||
	    !push_edit(c, true, ROUTE_HDR_SET, "Access-Control-Allow-Origin", o))
		goto full;
	if (f->allow_credentials && !push_edit(c, true, ROUTE_HDR_SET, "Access-Control-Allow-Credentials", "true"))
		goto full;
	v = cx->any_expose ? (f->allow_credentials ? NULL : "*") : cx->expose;
	if (v && !push_edit(c, true, ROUTE_HDR_SET, "Access-Control-Expose-Headers", v))
		goto full;
	if (!preflight)
		return;
	/* Wildcards: echo what was asked for (allowed with or without
	 * credentials; "*" is not with them). */
	v = cx->methods;
	if (cx->any_method && !(v = keep(c->out, acrm->value ? acrm->value : "", acrm->value ? acrm->value_len : 0)))
		goto full;
	if (v && !push_edit(c, true, ROUTE_HDR_SET, "Access-Control-Allow-Methods", v))
		goto full;
	v = cx->headers;
	if (cx->any_header)
		v = acrh && acrh->value ? keep(c->out, acrh->value, acrh->value_len) : NULL;
	if (cx->any_header && acrh && acrh->value && !v)
		goto full;
	if (v && !push_edit(c, true, ROUTE_HDR_SET, "Access-Control-Allow-Headers", v))
		goto full;
	if (!push_edit(c, true, ROUTE_HDR_SET, "Access-Control-Max-Age", cx->max_age))
		goto full;
	return;
full:
	overflow(c);
}

/* Apply one filter list (the rule's, then the chosen backend's). Sets
 * c->stop when the decision is made; remembers a RequestRedirect. */
static void apply_filters(struct rt_ctx *c, const struct sl_route_filter *f, size_t n, const struct rt_filter *fx)
{
	struct route_decision *o = c->out;

	for (size_t i = 0; i < n && !c->stop; i++) {
		const struct sl_route_filter *g = &f[i];

		switch (g->type) {
		case SL_FILTER_REQUEST_HEADER:
			header_mod(c, false, &g->headers);
			break;
		case SL_FILTER_RESPONSE_HEADER:
			header_mod(c, true, &g->headers);
			break;
		case SL_FILTER_REWRITE:
			if (g->hostname) {
				size_t l = strlen(g->hostname);

				if (l >= sizeof(o->host)) {
					overflow(c);
					break;
				}
				memcpy(o->host, g->hostname, l + 1);
			}
			if (g->path.type != SL_PATH_MOD_NONE && !path_modify(c, &g->path, o->path, sizeof(o->path)))
				overflow(c);
			break;
		case SL_FILTER_REDIRECT:
			if (!c->redirect)
				c->redirect = g;
			break;
		case SL_FILTER_MIRROR:
			mirror(c, g, fx ? &fx[i] : NULL);
			break;
		case SL_FILTER_CORS:
			cors(c, g, fx ? fx[i].cors : NULL);
			break;
		case SL_FILTER_EXTENSION:
		default:
			/* Not skipped (spec): the request gets an error. */
			respond(c, 500, "unsupported ExtensionRef filter");
			break;
		}
	}
}

static uint16_t well_known_port(const char *scheme)
{
	return !strcasecmp(scheme, "https") ? 443 : !strcasecmp(scheme, "http") ? 80 : 0;
}

static void redirect(struct rt_ctx *c, const struct sl_route_filter *f)
{
	const struct route_request *req = c->rq->req;
	struct route_decision *o = c->out;
	/* The request's scheme, spelled canonically; anything but https is http. */
	const char *scheme = f->scheme && *f->scheme ? f->scheme
			     : req->scheme && !strcasecmp(req->scheme, "https") ? "https" : "http";
	const char *host = f->hostname && *f->hostname ? f->hostname : c->rq->host_ok ? c->rq->host : "";
	uint16_t port = req->port;
	char ps[8] = "";
	bool v6;
	int n;

	/* The spec: an explicit port; else, when the filter sets a scheme, that
	 * scheme's well-known port; else the port the request came to. 80 for
	 * http and 443 for https are left out of Location. */
	if (f->port)
		port = f->port;
	else if (f->scheme && *f->scheme && well_known_port(f->scheme))
		port = well_known_port(f->scheme);
	if (port && port != well_known_port(scheme))
		snprintf(ps, sizeof(ps), ":%u", port);
	if (f->path.type != SL_PATH_MOD_NONE) {
		if (!path_modify(c, &f->path, o->path, sizeof(o->path))) {
			overflow(c);
			return;
		}
	}
	v6 = strchr(host, ':') && host[0] != '[';
	n = snprintf(o->location, sizeof(o->location), "%s://%s%s%s%s%s", scheme, v6 ? "[" : "", host, v6 ? "]" : "",
		     ps, o->path);
	if (n < 0 || (size_t)n >= sizeof(o->location)) {
		overflow(c);
		return;
	}
	/* Host and path come from the client: never let them put a control
	 * character (a CR LF, a header of their own) into the answer. */
	for (const char *q = o->location; *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f) {
			o->location[0] = '\0';
			respond(c, 400, "request host or path not valid in a Location");
			return;
		}
	o->action = ROUTE_REDIRECT;
	o->status = f->status ? f->status : 302;
	o->reason = "redirect";
	o->n_mirrors = 0;
	c->stop = true;
}

/* The backendRef of rule that rnd picks by weight: its index, or
 * rule->n_backends when there are none or every weight is 0. */
static size_t weighted_backend(const struct sl_route_rule *rule, uint32_t rnd)
{
	uint64_t total = 0, x;
	size_t bi;

	for (size_t i = 0; i < rule->n_backends; i++)
		total += rule->backends[i].weight;
	if (!total)
		return rule->n_backends;
	/* rnd scaled to [0, total): uniform, and the weights stay exact. The
	 * API caps a weight at 1e6 (16 backends: < 2^24); past 2^32 a modulo. */
	x = total <= UINT32_MAX ? ((uint64_t)rnd * total) >> 32 : rnd % total;
	for (bi = 0; bi < rule->n_backends; bi++) {
		if (x < rule->backends[bi].weight)
			break;
		x -= rule->backends[bi].weight;
	}
	return bi;
}

/* Append s at dst[*off], truncating to cap - 1 as snprintf would: the
 * per-request strings of route_decide without printf. false when cut. */
static bool decide_put(char *dst, size_t cap, size_t *off, const char *s)
{
	size_t l = strlen(s), room = cap - 1 - *off;

	if (l > room) {
		memcpy(dst + *off, s, room);
		*off += room;
		dst[*off] = '\0';
		return false;
	}
	memcpy(dst + *off, s, l + 1);
	*off += l;
	return true;
}

void route_decision_reset(struct route_decision *d)
{
	/* the small fields, and the strings' first bytes: not ~8 KiB a request */
	memset(d, 0, offsetof(struct route_decision, path));
	d->reason = "";
	d->path[0] = d->host[0] = d->location[0] = d->why[0] = d->strbuf[0] = '\0';
}

enum route_action route_decide(const struct route_set *set, const struct route_request *req, uint32_t rnd,
			       struct route_decision *out)
{
	struct rt_req rq = { 0 };
	struct rt_ctx c = { .rq = &rq, .out = out, .rnd = rnd };
	const struct rt_entry *e = NULL;
	const struct sl_route_rule *rule;
	const struct rt_rule *ru;
	const struct sl_route *r;
	size_t bi;

	route_decision_reset(out);
	if (set && req) {
		req_prepare(&rq, req);
		/* HTTPRoutes and GRPCRoutes are never merged: a gRPC request
		 * tries the GRPCRoutes first, anything else the HTTPRoutes. */
		e = pick(set, &rq, rq.grpc ? SL_ROUTE_GRPC : SL_ROUTE_HTTP);
		if (!e)
			e = pick(set, &rq, rq.grpc ? SL_ROUTE_HTTP : SL_ROUTE_GRPC);
	}
	if (!e) {
		out->action = ROUTE_RESPOND;
		out->status = 404;
		out->reason = "no matching rule";
		snprintf(out->why, sizeof(out->why), "no matching rule");
		return out->action;
	}
	r = e->rr->r;
	rule = &r->rules[e->rule];
	ru = &e->rr->rules[e->rule];
	c.e = e;
	c.rule = rule;
	out->route = r;
	out->rule = e->rule;
	{
		char num[12];
		size_t off = 0, k = sizeof(num) - 1;
		uint32_t v = e->rule;

		num[k] = '\0';
		do
			num[--k] = (char)('0' + v % 10);
		while ((v /= 10));
		if (decide_put(out->why, sizeof(out->why), &off, e->rr->key))
			if (decide_put(out->why, sizeof(out->why), &off, " rule "))
				decide_put(out->why, sizeof(out->why), &off, rule->name ? rule->name : num + k);
	}
	out->request_timeout_ms = rule->timeouts.request_ms;
	out->backend_timeout_ms = rule->timeouts.backend_request_ms;
	if (rule->has_retry) {
		out->retry_attempts = rule->retry.attempts;
		out->retry_backoff_ms = rule->retry.backoff_ms;
		out->retry_codes = rule->retry.codes;
		out->n_retry_codes = rule->retry.n_codes;
	}
	{
		/* the path as it came, and "?query": path_modify's SL_PATH_MOD_NONE */
		size_t off = 0;

		if (!decide_put(out->path, sizeof(out->path), &off, rq.path) ||
		    (req->query && (!decide_put(out->path, sizeof(out->path), &off, "?") ||
				    !decide_put(out->path, sizeof(out->path), &off, req->query))))
			overflow(&c);
	}
	if (!c.stop)
		apply_filters(&c, rule->filters, rule->n_filters, ru->fx);
	if (!c.stop && c.redirect)
		redirect(&c, c.redirect);
	if (c.stop)
		return out->action;
	bi = weighted_backend(rule, rnd);
	if (bi >= rule->n_backends) {
		respond(&c, 500, rule->n_backends ? "every backendRef has weight 0" : "no backendRefs");
		return out->action;
	}
	if (!ru->be[bi].ok) {
		respond(&c, 500, "invalid backendRef");
		return out->action;
	}
	out->backend = (struct route_backend){ ru->be[bi].ns, rule->backends[bi].name, rule->backends[bi].port };
	apply_filters(&c, rule->backends[bi].filters, rule->backends[bi].n_filters, ru->be[bi].fx);
	if (!c.stop && c.redirect)
		redirect(&c, c.redirect);
	if (c.stop) {
		out->backend = (struct route_backend){ 0 };
		return out->action;
	}
	out->action = ROUTE_FORWARD;
	out->status = 0;
	return out->action;
}

/* ---- deciding: TCPRoute and TLSRoute ------------------------------------ */

/* The entry a connection of kind takes: for TLS the most specific hostname
 * that takes sni (exact, then the longest wildcard, then routes without
 * hostnames), then the oldest route; for TCP the oldest route. */
static const struct rt_entry *pick_l4(const struct route_set *s, enum sl_route_kind kind, const char *sni)
{
	const struct rt_entry *best = NULL;
	struct rt_hscore best_sc = { 0 };
	struct rt_req rq = { 0 };
	size_t n = sni ? strlen(sni) : 0;

	if (n && n < sizeof(rq.host)) {
		memcpy(rq.host, sni, n + 1);
		rq.host_len = n;
		rq.host_ok = true;
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct rt_entry *e = &s->v[i];
		struct rt_hscore sc = { 0 };

		if (e->rr->r->kind != kind)
			continue;
		if (kind == SL_ROUTE_TCP)
			return e;	/* entries are oldest first */
		if (!host_score(e->hosts, &rq, &sc))
			continue;
		if (best && (sc.exact < best_sc.exact || (sc.exact == best_sc.exact && sc.any <= best_sc.any)))
			continue;
		best = e;
		best_sc = sc;
	}
	return best;
}

bool route_decide_l4(const struct route_set *set, enum sl_route_kind kind, const char *sni, uint32_t rnd,
		     struct route_l4_decision *out)
{
	const struct rt_entry *e = set && kind_l4(kind) ? pick_l4(set, kind, sni) : NULL;
	const struct sl_route_rule *rule;
	size_t bi;

	memset(out, 0, sizeof(*out));
	if (!e) {
		out->reason = kind == SL_ROUTE_TLS ? "no TLSRoute takes this server name" : "no route";
		snprintf(out->why, sizeof(out->why), "no route");
		return false;
	}
	rule = &e->rr->r->rules[e->rule];
	out->route = e->rr->r;
	if (rule->name)
		snprintf(out->why, sizeof(out->why), "%s rule %s", e->rr->key, rule->name);
	else
		snprintf(out->why, sizeof(out->why), "%s rule %u", e->rr->key, e->rule);
	/* the spec: an invalid backend's share of connections is refused */
	bi = weighted_backend(rule, rnd);
	if (bi >= rule->n_backends) {
		out->reason = rule->n_backends ? "every backendRef has weight 0" : "no backendRefs";
		return false;
	}
	if (!e->rr->rules[e->rule].be[bi].ok) {
		out->reason = "invalid backendRef";
		return false;
	}
	out->backend = (struct route_backend){ e->rr->rules[e->rule].be[bi].ns, rule->backends[bi].name,
					       rule->backends[bi].port };
	out->forward = true;
	out->reason = "";
	return true;
}

size_t route_listener_attached(const struct route_table *t, const char *gw_ns, const char *gw_name,
			       const char *listener)
{
	size_t n = 0;

	for (size_t i = 0; t && i < t->n_att; i++) {
		const struct rt_att *a = &t->att[i];
		bool dup = false;

		if (!a->listener || a->dropped || !str_eq(a->a, gw_ns) || !str_eq(a->b, gw_name) ||
		    !str_eq(a->c, listener))
			continue;
		for (size_t j = 0; j < i && !dup; j++)	/* one route through two parentRefs */
			dup = t->att[j].rr == a->rr && !t->att[j].dropped && att_same_listener(&t->att[j], a);
		n += !dup;
	}
	return n;
}
