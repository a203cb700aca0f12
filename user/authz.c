// SPDX-License-Identifier: Apache-2.0
/* authz.c - see authz.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authz.h"

static const char *const action_names[] = { "ALLOW", "DENY", "AUDIT", "CUSTOM" };

/* Istio's string match: exact, "*" (any non-empty), "prefix*", "*suffix". */
static bool str_match(const char *pattern, const char *s)
{
	size_t pl = strlen(pattern), sl;

	if (!s)
		return false;
	sl = strlen(s);
	if (!strcmp(pattern, "*"))
		return sl > 0;
	if (pl && pattern[pl - 1] == '*')
		return sl >= pl - 1 && !strncmp(pattern, s, pl - 1);
	if (pattern[0] == '*')
		return sl >= pl - 1 && !strcmp(s + sl - (pl - 1), pattern + 1);
	return !strcmp(pattern, s);
}

static bool strs_match(const struct sl_strs *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (str_match(l->v[i], s))
			return true;
	return false;
}

static bool cidrs_match(const struct sl_cidrs *l, const struct sl_ip *ip)
{
	for (size_t i = 0; i < l->n; i++)
		if (cidr_contains(&l->v[i], ip))
			return true;
	return false;
}

static bool source_match(const struct sl_authz_source *f, const struct authz_peer *p)
{
	if (f->principals.n && !strs_match(&f->principals, p->principal))
		return false;
	if (f->not_principals.n && strs_match(&f->not_principals, p->principal))
		return false;
	if (f->namespaces.n && !strs_match(&f->namespaces, p->ns))
		return false;
	if (f->not_namespaces.n && strs_match(&f->not_namespaces, p->ns))
		return false;
	/* At L4 the remote address is the connection's source. */
	if (f->ip_blocks.n && !cidrs_match(&f->ip_blocks, p->ip))
		return false;
	if (f->not_ip_blocks.n && cidrs_match(&f->not_ip_blocks, p->ip))
		return false;
	if (f->remote_ip_blocks.n && !cidrs_match(&f->remote_ip_blocks, p->ip))
		return false;
	if (f->not_remote_ip_blocks.n && cidrs_match(&f->not_remote_ip_blocks, p->ip))
		return false;
	return true;
}

static bool ports_has(const uint16_t *v, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == port)
			return true;
	return false;
}

static bool operation_match(const struct sl_authz_operation *o, uint16_t port)
{
	if (o->n_ports && !ports_has(o->ports, o->n_ports, port))
		return false;
	return !o->n_not_ports || !ports_has(o->not_ports, o->n_not_ports, port);
}

/* A condition's value for an address key: an IP or a CIDR. */
static bool addr_value_match(const char *v, const struct sl_ip *ip)
{
	struct sl_cidr c = { 0 };
	char buf[64];
	const char *slash = strchr(v, '/');

	if (!slash) {
		if (sl_ip_parse(v, &c.ip))
			return false;
		c.len = c.ip.family == SL_AF_INET ? 32 : 128;
		return cidr_contains(&c, ip);
	}
	if ((size_t)(slash - v) >= sizeof(buf))
		return false;
	memcpy(buf, v, (size_t)(slash - v));
	buf[slash - v] = '\0';
	if (sl_ip_parse(buf, &c.ip))
		return false;
	c.len = (uint8_t)atoi(slash + 1);
	for (int i = 0; i < 16; i++) {
		int keep = (int)c.len - 8 * i;

		if (keep <= 0)
			c.ip.addr.octets[i] = 0;
		else if (keep < 8)
			c.ip.addr.octets[i] &= (uint8_t)(0xff << (8 - keep));
	}
	return cidr_contains(&c, ip);
}

static bool cond_values(const struct sl_strs *l, const char *key, const struct authz_peer *p,
			const struct sl_ip *dst_ip, uint16_t port)
{
	char ps[8];

	snprintf(ps, sizeof(ps), "%u", port);
	for (size_t i = 0; i < l->n; i++) {
		const char *v = l->v[i];

		if ((!strcmp(key, "source.ip") || !strcmp(key, "remote.ip")) ? addr_value_match(v, p->ip) :
		    !strcmp(key, "destination.ip")			 ? addr_value_match(v, dst_ip) :
		    !strcmp(key, "destination.port")			 ? !strcmp(v, ps) :
		    !strcmp(key, "source.namespace")			 ? str_match(v, p->ns) :
		    !strcmp(key, "source.principal")			 ? str_match(v, p->principal) :
									   false)
			return true;
	}
	return false;
}

/* Does rule r match at L4? l7 rules: as the action says (see authz.h). */
static bool rule_match(const struct sl_authz *a, const struct sl_authz_rule *r, const struct authz_peer *p,
		       const struct sl_ip *dst_ip, uint16_t port)
{
	bool ok = !r->n_from;

	if (r->l7)
		return a->action == SL_AUTHZ_DENY;
	for (size_t i = 0; i < r->n_from && !ok; i++)
		ok = source_match(&r->from[i], p);
	if (!ok)
		return false;
	ok = !r->n_to;
	for (size_t i = 0; i < r->n_to && !ok; i++)
		ok = operation_match(&r->to[i], port);
	if (!ok)
		return false;
	for (size_t i = 0; i < r->n_when; i++) {
		const struct sl_authz_cond *c = &r->when[i];

		if (c->values.n && !cond_values(&c->values, c->key, p, dst_ip, port))
			return false;
		if (c->not_values.n && cond_values(&c->not_values, c->key, p, dst_ip, port))
			return false;
	}
	return true;
}

/* Is pod one of the Service's pods (same namespace, selector matches)? */
static bool service_selects(const struct sl_model *m, const char *ns, const char *name, const struct sl_pod *pod)
{
	for (size_t i = 0; i < m->res->n_services; i++) {
		const struct sl_service *s = &m->res->services[i];

		if (!strcmp(s->ns, ns) && !strcmp(s->name, name) && s->has_selector && !strcmp(pod->ns, ns))
			return labels_match(&s->selector, &pod->labels);
	}
	return false;
}

/* A Service with L7 routes has the waypoint: policies that target it are
 * the waypoint's, judged per request (authz_decide_request), as in Istio
 * ambient; at L4 they would deny what the waypoint let through. */
static bool service_has_waypoint(const struct sl_model *m, const char *ns, const char *name)
{
	for (size_t i = 0; i < m->n_frontends; i++) {
		const struct sl_frontend *f = &m->frontends[i];

		if ((f->flags & SL_SVC_F_L7) && !strcmp(f->svc->ns, ns) && !strcmp(f->svc->name, name))
			return true;
	}
	return false;
}

bool authz_applies(const struct sl_model *m, const char *root_ns, const struct sl_authz *a, const struct sl_pod *pod)
{
	bool root = !strcmp(a->ns, root_ns ? root_ns : AUTHZ_ROOT_NS);

	if (a->n_targets) {
		for (size_t i = 0; i < a->n_targets; i++)
			if (a->targets[i].kind && !strcmp(a->targets[i].kind, "Service") &&
			    !service_has_waypoint(m, a->ns, a->targets[i].name) &&
			    service_selects(m, a->ns, a->targets[i].name, pod))
				return true;
		return false;	/* Gateways and others: not an L4 matter */
	}
	if (!root && strcmp(a->ns, pod->ns))
		return false;
	return !a->has_selector || labels_match(&a->selector, &pod->labels);
}

void authz_decide(const struct sl_model *m, const char *root_ns, const struct sl_pod *dst, const struct sl_ip *dst_ip,
		  uint16_t port, const struct authz_peer *peer, struct authz_decision *out)
{
	const struct sl_resources *r = m->res;
	const struct sl_authz *first_allow = NULL;
	size_t n_allow = 0;

	memset(out, 0, sizeof(*out));
	out->rule = -1;
	for (size_t i = 0; i < r->n_authzs; i++) {
		const struct sl_authz *a = &r->authzs[i];

		if (a->action != SL_AUTHZ_CUSTOM || !authz_applies(m, root_ns, a, dst))
			continue;
		out->by = a;
		snprintf(out->reason, sizeof(out->reason),
			 "%s/%s: CUSTOM needs an external authorizer, which sluice does not have: denied", a->ns,
			 a->name);
		return;
	}
	for (size_t i = 0; i < r->n_authzs; i++) {
		const struct sl_authz *a = &r->authzs[i];

		if (a->action == SL_AUTHZ_ALLOW || !authz_applies(m, root_ns, a, dst))
			continue;
		for (size_t j = 0; j < a->n_rules; j++) {
			if (!rule_match(a, &a->rules[j], peer, dst_ip, port))
				continue;
			if (a->action == SL_AUTHZ_AUDIT) {
				out->audit = true;
			} else if (a->action == SL_AUTHZ_DENY) {
				out->by = a;
				out->rule = (int)j;
				snprintf(out->reason, sizeof(out->reason), "denied by %s/%s rules[%zu]%s", a->ns, a->name, j,
					 a->rules[j].l7 ? " (L7 fields, enforced as a deny at L4)" : "");
				return;
			}
			break;
		}
	}
	for (size_t i = 0; i < r->n_authzs; i++) {
		const struct sl_authz *a = &r->authzs[i];

		if (a->action != SL_AUTHZ_ALLOW || !authz_applies(m, root_ns, a, dst))
			continue;
		if (!first_allow)
			first_allow = a;
		n_allow++;
		for (size_t j = 0; j < a->n_rules; j++) {
			if (rule_match(a, &a->rules[j], peer, dst_ip, port)) {
				out->allow = true;
				out->by = a;
				out->rule = (int)j;
				snprintf(out->reason, sizeof(out->reason), "allowed by %s/%s rules[%zu]", a->ns, a->name, j);
				return;
			}
		}
	}
	if (!n_allow) {
		out->allow = true;
		snprintf(out->reason, sizeof(out->reason), "no ALLOW policy applies");
		return;
	}
	out->by = first_allow;
	snprintf(out->reason, sizeof(out->reason), "no rule of %zu ALLOW polic%s matched (%s/%s%s)", n_allow,
		 n_allow == 1 ? "y" : "ies", first_allow->ns, first_allow->name, n_allow > 1 ? ", ..." : "");
}

enum sl_mtls_mode authz_mtls_mode(const struct sl_model *m, const char *root_ns, const struct sl_pod *dst,
				  uint16_t port, const struct sl_peerauthn **by)
{
	const struct sl_resources *r = m->res;
	const char *root = root_ns ? root_ns : AUTHZ_ROOT_NS;
	/* Levels, most specific first: port of a workload, workload, namespace, mesh. */
	for (int level = 0; level < 4; level++) {
		for (size_t i = 0; i < r->n_peerauthns; i++) {
			const struct sl_peerauthn *pa = &r->peerauthns[i];
			enum sl_mtls_mode mode = pa->mode;

			switch (level) {
			case 0:
			case 1:
				if (!pa->has_selector || strcmp(pa->ns, dst->ns) ||
				    !labels_match(&pa->selector, &dst->labels))
					continue;
				if (level == 0) {
					mode = SL_MTLS_UNSET;
					for (size_t k = 0; k < pa->n_ports; k++)
						if (pa->ports[k].port == port)
							mode = pa->ports[k].mode;
				}
				break;
			case 2:
				if (pa->has_selector || strcmp(pa->ns, dst->ns) || !strcmp(pa->ns, root))
					continue;
				break;
			default:
				if (pa->has_selector || strcmp(pa->ns, root))
					continue;
				break;
			}
			if (mode == SL_MTLS_UNSET)
				continue;
			*by = pa;
			return mode;
		}
	}
	*by = NULL;
	return SL_MTLS_PERMISSIVE;
}

bool authz_principal(const char *id, char *principal, size_t plen, char *ns, size_t nslen)
{
	const char *p, *e;

	if (!id || strncmp(id, "spiffe://", 9))
		return false;
	snprintf(principal, plen, "%s", id + 9);
	p = strstr(id + 9, "/ns/");
	if (!p)
		return false;
	p += 4;
	e = strchr(p, '/');
	snprintf(ns, nslen, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
	return true;
}

const char *authz_action_str(enum sl_authz_action a)
{
	return a <= SL_AUTHZ_CUSTOM ? action_names[a] : "?";
}

/* ---- L7: the waypoint (see authz.h) ---- */

/* What an L7 policy names: a Service (kind Service, core group) or a
 * Gateway (kind Gateway, gateway.networking.k8s.io), and the addresses a
 * request to it arrives on (destination.ip). */
struct l7_target {
	const char *kind, *group, *ns, *name;
	const struct sl_ip *ips;
	size_t n_ips;
};

/* Does a's targetRefs name kind/group ns/name? ("" group: the core group,
 * which a targetRef may also leave out.) */
static bool targets(const struct sl_authz *a, const char *kind, const char *group, const char *ns, const char *name)
{
	if (!a || !ns || !name || !a->ns || strcmp(a->ns, ns))
		return false;
	for (size_t i = 0; i < a->n_targets; i++) {
		const struct sl_target_ref *t = &a->targets[i];

		if (t->kind && t->name && !strcmp(t->kind, kind) && !strcmp(t->group ? t->group : "", group) &&
		    !strcmp(t->name, name))
			return true;
	}
	return false;
}

bool authz_targets_service(const struct sl_authz *a, const struct sl_service *svc)
{
	return svc && targets(a, "Service", "", svc->ns, svc->name);
}

bool authz_targets_gateway(const struct sl_authz *a, const char *ns, const char *name)
{
	return targets(a, "Gateway", "gateway.networking.k8s.io", ns, name);
}

static bool targets_l7(const struct sl_authz *a, const struct l7_target *t)
{
	return targets(a, t->kind, t->group, t->ns, t->name);
}

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool unreserved(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

/* RFC 3986 5.2.4 in place (the output never overtakes the input); the new length. */
static size_t remove_dot_segments(char *s, size_t n)
{
	size_t r = 0, w = 0;

	while (r < n) {
		const char *in = s + r;
		size_t left = n - r;

		if (left >= 3 && !memcmp(in, "../", 3)) {
			r += 3;
		} else if (left >= 2 && !memcmp(in, "./", 2)) {
			r += 2;
		} else if (left >= 3 && !memcmp(in, "/./", 3)) {
			r += 2;
		} else if (left == 2 && !memcmp(in, "/.", 2)) {
			s[++r] = '/';
		} else if ((left >= 4 && !memcmp(in, "/../", 4)) || (left == 3 && !memcmp(in, "/..", 3))) {
			r += 2;
			if (left == 3)
				s[r] = '/';
			else
				r++;
			while (w > 0 && s[w - 1] != '/')
				w--;
			if (w > 0)
				w--;
		} else if ((left == 1 && in[0] == '.') || (left == 2 && !memcmp(in, "..", 2))) {
			r = n;
		} else {
			size_t k = in[0] == '/';

			while (k < left && in[k] != '/')
				k++;
			memmove(s + w, in, k);
			w += k;
			r += k;
		}
	}
	return w;
}

bool authz_normalize_path(const char *path, char *out, size_t outlen)
{
	size_t n = strcspn(path, "?#"), o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = path[i];

		if (c == '%' && i + 2 < n && hexval((unsigned char)path[i + 1]) >= 0 &&
		    hexval((unsigned char)path[i + 2]) >= 0) {
			int v = hexval((unsigned char)path[i + 1]) * 16 + hexval((unsigned char)path[i + 2]);

			if (!v)
				return false;
			if (unreserved(v)) {
				c = (char)v;
				i += 2;
			}
		} else if (c == '\\') {
			c = '/';
		}
		if (o + 1 >= outlen)
			return false;
		out[o++] = c;
	}
	if (!outlen)
		return false;
	out[remove_dot_segments(out, o)] = '\0';
	return true;
}

struct l7_ctx {
	const struct l7_target *t;
	uint16_t port;
	const struct authz_peer *peer;
	const struct authz_request *req;
	const char *path;		/* normalized; NULL when the request has none */
	bool unk;			/* what cannot be checked counts as matching (DENY) */
	bool oom;
};

static bool bytes_eq(const char *a, const char *b, size_t n, bool icase)
{
	if (!icase)
		return !memcmp(a, b, n);
	for (size_t i = 0; i < n; i++) {
		int x = (unsigned char)a[i], y = (unsigned char)b[i];

		if ((x >= 'A' && x <= 'Z' ? x + 32 : x) != (y >= 'A' && y <= 'Z' ? y + 32 : y))
			return false;
	}
	return true;
}

/* Istio's string match as its proxies apply it: "*" any value (any_empty: an
 * empty one too; paths need one character), "*abc" suffix (tried before a
 * trailing '*'), "abc*" prefix, else exact. s NULL: absent, matches nothing. */
static bool l7_match_n(const char *pat, const char *s, size_t sl, bool icase, bool any_empty)
{
	size_t pl = strlen(pat);

	if (!s)
		return false;
	if (!strcmp(pat, "*"))
		return any_empty || sl > 0;
	if (pat[0] == '*')
		return sl >= pl - 1 && bytes_eq(s + sl - (pl - 1), pat + 1, pl - 1, icase);
	if (pl && pat[pl - 1] == '*')
		return sl >= pl - 1 && bytes_eq(s, pat, pl - 1, icase);
	return sl == pl && bytes_eq(s, pat, pl, icase);
}

static bool l7_match(const char *pat, const char *s, bool icase, bool any_empty)
{
	return l7_match_n(pat, s, s ? strlen(s) : 0, icase, any_empty);
}

/* Envoy's URI template characters (RFC 3986 pchar without '*' and '='). */
static bool tmpl_char(char c)
{
	return c && (unreserved((unsigned char)c) || strchr("%!$&'()+,;:@", c));
}

/* A path template ({*}: one or more template characters of one segment;
 * {**}: any number of them and '/', the last operator), as Envoy's
 * uri_template matcher reads Istio's. */
static bool path_template_match(const char *t, const char *s)
{
	while (*t) {
		if (!strncmp(t, "{**}", 4)) {
			size_t rl = strlen(t + 4), sl = strlen(s);

			if (sl < rl || strcmp(s + sl - rl, t + 4))
				return false;
			for (size_t i = 0; i < sl - rl; i++)
				if (s[i] != '/' && !tmpl_char(s[i]))
					return false;
			return true;
		}
		if (!strncmp(t, "{*}", 3)) {
			size_t n = 0;

			while (tmpl_char(s[n]))
				n++;
			if (!n)
				return false;
			s += n;
			t += 3;
			continue;
		}
		if (*t++ != *s++)
			return false;
	}
	return !*s;
}

static bool paths_match(const struct sl_strs *l, const char *path)
{
	for (size_t i = 0; path && i < l->n; i++) {
		const char *p = l->v[i];

		if ((strstr(p, "{*}") || strstr(p, "{**}")) ? path_template_match(p, path) : l7_match(p, path, false, false))
			return true;
	}
	return false;
}

/* Length of host without a ":port" ("[v6]:port" too). */
static size_t host_len_sans_port(const char *h)
{
	size_t n = strlen(h);
	const char *c = strrchr(h, ':'), *e = h[0] == '[' ? strchr(h, ']') : NULL;

	if (!c || (h[0] == '[' ? (!e || c < e) : strchr(h, ':') != c))
		return n;
	for (const char *p = c + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return n;
	return (size_t)(c - h);
}

static bool hosts_match(const struct sl_strs *l, const char *host)
{
	size_t bare = host ? host_len_sans_port(host) : 0;

	for (size_t i = 0; host && i < l->n; i++)
		if (l7_match(l->v[i], host, true, true) || l7_match_n(l->v[i], host, bare, true, true))
			return true;
	return false;
}

static bool strs_match_l7(const struct sl_strs *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (l7_match(l->v[i], s, false, true))
			return true;
	return false;
}

/* A header's value: repeated ones joined with ',' into *tmp (the caller
 * frees it). Host/:authority, :method and :path come from the request when
 * the list does not hold them. NULL: absent. */
static const char *header_value(struct l7_ctx *x, const char *name, char **tmp)
{
	const struct authz_request *q = x->req;
	const char *one = NULL;
	size_t n = 0, len = 0;

	*tmp = NULL;
	for (size_t i = 0; i < q->n_headers; i++) {
		if (q->headers[i].name && !strcasecmp(q->headers[i].name, name)) {
			one = q->headers[i].value ? q->headers[i].value : "";
			len += strlen(one) + 1;
			n++;
		}
	}
	if (!n) {
		if (!strcasecmp(name, "host") || !strcasecmp(name, ":authority"))
			return q->host;
		if (!strcasecmp(name, ":method"))
			return q->method;
		if (!strcasecmp(name, ":path"))
			return q->path;
		return NULL;
	}
	if (n == 1)
		return one;
	*tmp = malloc(len);
	if (!*tmp) {
		x->oom = true;
		return NULL;
	}
	len = 0;
	for (size_t i = 0; i < q->n_headers; i++) {
		if (q->headers[i].name && !strcasecmp(q->headers[i].name, name)) {
			const char *v = q->headers[i].value ? q->headers[i].value : "";
			size_t vl = strlen(v);

			if (len)
				(*tmp)[len++] = ',';
			memcpy(*tmp + len, v, vl);
			len += vl;
		}
	}
	(*tmp)[len] = '\0';
	return *tmp;
}

/* What the waypoint cannot check: as the action says. */
static bool unknown(const struct l7_ctx *x, bool *via_unk)
{
	*via_unk = x->unk;
	return x->unk;
}

static bool source_match_l7(const struct sl_authz_source *f, const struct l7_ctx *x, bool *via_unk)
{
	if (!source_match(f, x->peer))
		return false;
	if (f->request_principals.n || f->not_request_principals.n)
		return unknown(x, via_unk);	/* no JWT authentication here */
	return true;
}

static bool operation_match_l7(const struct sl_authz_operation *o, const struct l7_ctx *x)
{
	const struct authz_request *q = x->req;

	if (!operation_match(o, x->port))
		return false;
	if (o->hosts.n && !hosts_match(&o->hosts, q->host))
		return false;
	if (o->not_hosts.n && hosts_match(&o->not_hosts, q->host))
		return false;
	if (o->methods.n && !strs_match_l7(&o->methods, q->method))
		return false;
	if (o->not_methods.n && strs_match_l7(&o->not_methods, q->method))
		return false;
	if (o->paths.n && !paths_match(&o->paths, x->path))
		return false;
	return !o->not_paths.n || !paths_match(&o->not_paths, x->path);
}

static const char *const l4_cond_keys[] = { "source.ip", "remote.ip", "source.namespace", "source.principal",
					    "destination.ip", "destination.port", NULL };

/* An L4 key's values at the waypoint: destination.ip is the target's. */
static bool cond_values_svc(const struct sl_strs *l, const char *key, const struct l7_ctx *x)
{
	if (strcmp(key, "destination.ip"))
		return cond_values(l, key, x->peer, NULL, x->port);
	for (size_t i = 0; i < x->t->n_ips; i++)
		if (cond_values(l, key, x->peer, &x->t->ips[i], x->port))
			return true;
	return false;
}

static bool when_match_l7(const struct sl_authz_cond *c, struct l7_ctx *x, bool *via_unk)
{
	if (c->header) {
		char *tmp;
		const char *h = header_value(x, c->header, &tmp);
		bool ok = (!c->values.n || strs_match_l7(&c->values, h)) &&
			  (!c->not_values.n || !strs_match_l7(&c->not_values, h));

		free(tmp);
		return ok;
	}
	for (const char *const *k = l4_cond_keys; *k; k++)
		if (!strcmp(*k, c->key))
			return (!c->values.n || cond_values_svc(&c->values, c->key, x)) &&
			       (!c->not_values.n || !cond_values_svc(&c->not_values, c->key, x));
	return unknown(x, via_unk);	/* request.auth.*, connection.sni, ... */
}

/* Does rule r match the request? *via_unk: only thanks to what cannot be checked. */
static bool rule_match_l7(const struct sl_authz_rule *r, struct l7_ctx *x, bool *via_unk)
{
	bool ok = !r->n_from, u = false, any_u = false;

	for (size_t i = 0; i < r->n_from && !ok; i++) {
		u = false;
		ok = source_match_l7(&r->from[i], x, &u);
	}
	if (!ok)
		return false;
	any_u |= u;
	ok = !r->n_to;
	for (size_t i = 0; i < r->n_to && !ok; i++)
		ok = operation_match_l7(&r->to[i], x);
	if (!ok)
		return false;
	for (size_t i = 0; i < r->n_when; i++) {
		u = false;
		if (!when_match_l7(&r->when[i], x, &u))
			return false;
		any_u |= u;
	}
	*via_unk = any_u;
	return true;
}

static void decide_request(const struct sl_model *m, const struct l7_target *tg, uint16_t port,
			   const struct authz_peer *peer, const struct authz_request *req, struct authz_decision *out)
{
	const struct sl_resources *r = m->res;
	const struct sl_authz *first_allow = NULL;
	struct l7_ctx x = { .t = tg, .port = port, .peer = peer, .req = req };
	size_t n_allow = 0, n_any = 0;
	char *path = NULL;

	memset(out, 0, sizeof(*out));
	out->rule = -1;
	for (size_t i = 0; i < r->n_authzs; i++) {
		const struct sl_authz *a = &r->authzs[i];

		if (!targets_l7(a, tg))
			continue;
		n_any++;
		if (a->action != SL_AUTHZ_CUSTOM)
			continue;
		out->by = a;
		snprintf(out->reason, sizeof(out->reason),
			 "%s/%s: CUSTOM needs an external authorizer, which sluice does not have: denied", a->ns,
			 a->name);
		return;
	}
	if (!n_any) {
		out->allow = true;
		snprintf(out->reason, sizeof(out->reason), "no policy targets %s %s/%s", tg->kind, tg->ns, tg->name);
		return;
	}
	if (req->path) {
		size_t len = strlen(req->path) + 1;

		path = malloc(len);
		if (!path || !authz_normalize_path(req->path, path, len)) {
			snprintf(out->reason, sizeof(out->reason), "%s: denied",
				 path ? "the path holds %00, which Istio refuses (400)" : "out of memory");
			free(path);
			return;
		}
		x.path = path;
	}
	for (size_t i = 0; i < r->n_authzs; i++) {
		const struct sl_authz *a = &r->authzs[i];

		if (a->action == SL_AUTHZ_ALLOW || a->action == SL_AUTHZ_CUSTOM || !targets_l7(a, tg))
			continue;
		x.unk = a->action == SL_AUTHZ_DENY;
		for (size_t j = 0; j < a->n_rules; j++) {
			bool u = false;

			if (!rule_match_l7(&a->rules[j], &x, &u))
				continue;
			if (a->action == SL_AUTHZ_AUDIT) {
				out->audit = true;
			} else {
				out->by = a;
				out->rule = (int)j;
				snprintf(out->reason, sizeof(out->reason), "denied by %s/%s rules[%zu]%s", a->ns, a->name, j,
					 u ? " (requestPrincipals or when keys the waypoint cannot check count as matching)"
					   : "");
				goto out;
			}
			break;
		}
	}
	for (size_t i = 0; i < r->n_authzs; i++) {
		const struct sl_authz *a = &r->authzs[i];

		if (a->action != SL_AUTHZ_ALLOW || !targets_l7(a, tg))
			continue;
		if (!first_allow)
			first_allow = a;
		n_allow++;
		x.unk = false;
		for (size_t j = 0; j < a->n_rules; j++) {
			bool u = false;

			if (rule_match_l7(&a->rules[j], &x, &u)) {
				out->allow = true;
				out->by = a;
				out->rule = (int)j;
				snprintf(out->reason, sizeof(out->reason), "allowed by %s/%s rules[%zu]", a->ns, a->name, j);
				goto out;
			}
		}
	}
	if (!n_allow) {
		out->allow = true;
		snprintf(out->reason, sizeof(out->reason), "no ALLOW policy targets %s %s/%s", tg->kind, tg->ns, tg->name);
	} else {
		out->by = first_allow;
		snprintf(out->reason, sizeof(out->reason), "no rule of %zu ALLOW polic%s matched (%s/%s%s)", n_allow,
			 n_allow == 1 ? "y" : "ies", first_allow->ns, first_allow->name, n_allow > 1 ? ", ..." : "");
	}
out:
	free(path);
	if (x.oom) {
		out->allow = false;
		out->rule = -1;
		snprintf(out->reason, sizeof(out->reason), "out of memory while matching headers: denied");
	}
}

void authz_decide_request(const struct sl_model *m, const char *root_ns, const struct sl_service *svc, uint16_t port,
			  const struct authz_peer *peer, const struct authz_request *req, struct authz_decision *out)
{
	struct l7_target t = { .kind = "Service", .group = "", .ns = svc->ns, .name = svc->name,
			       .ips = svc->cluster_ips, .n_ips = svc->n_cluster_ips };

	(void)root_ns;	/* targetRefs policies apply in their own namespace only */
	decide_request(m, &t, port, peer, req, out);
}

void authz_decide_gateway_request(const struct sl_model *m, const char *gw_ns, const char *gw_name,
				  const struct sl_ip *addr, uint16_t port, const struct authz_peer *peer,
				  const struct authz_request *req, struct authz_decision *out)
{
	struct l7_target t = { .kind = "Gateway", .group = "gateway.networking.k8s.io", .ns = gw_ns,
			       .name = gw_name, .ips = addr, .n_ips = addr ? 1 : 0 };

	decide_request(m, &t, port, peer, req, out);
}
