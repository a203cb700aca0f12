// SPDX-License-Identifier: Apache-2.0
/* gwplan.c - Gateway and listener conditions, and what is served; see gwplan.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gwplan.h"
#include "ip.h"
#include "model.h"
#include "route.h"

#define GW_GROUP "gateway.networking.k8s.io"

static bool str_eq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static bool str_empty(const char *s)
{
	return !s || !*s;
}

const char *gw_proto_str(enum gw_proto p)
{
	static const char *const names[] = { "none", "HTTP", "HTTPS", "TLS Passthrough", "TCP", "TLS Terminate" };

	return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "?";
}

bool gw_proto_terminates_tls(enum gw_proto p)
{
	return p == GW_PROTO_HTTPS || p == GW_PROTO_TLS_TERMINATE;
}

bool gw_proto_tls(enum gw_proto p)
{
	return gw_proto_terminates_tls(p) || p == GW_PROTO_TLS;
}

/* ---- which Gateways, which addresses ---- */

static bool ours(const struct sl_resources *res, const struct sl_gateway *gw)
{
	for (size_t i = 0; i < res->n_gateway_classes; i++) {
		const struct sl_gateway_class *c = &res->gateway_classes[i];

		if (str_eq(c->name, gw->class_name))
			return str_eq(c->controller, ROUTE_CONTROLLER_NAME);
	}
	return false;
}

static int gw_cmp(const void *pa, const void *pb)
{
	const struct gwplan_gateway *a = pa, *b = pb;
	int c = strcmp(a->gw->ns, b->gw->ns);

	return c ? c : strcmp(a->gw->name, b->gw->name);
}

bool gwplan_pool_addr(const struct sl_cidr *c, size_t i, struct sl_ip *out)
{
	unsigned host_bits = (c->ip.family == SL_AF_INET ? 32u : 128u) - c->len;
	int last = c->ip.family == SL_AF_INET ? 3 : 15;
	unsigned long long carry = (unsigned long long)i + 1;

	/* .1 up to the last address (IPv4: the one before broadcast) */
	if (host_bits < 63) {
		unsigned long long usable = (1ull << host_bits) - 1 - (c->ip.family == SL_AF_INET);

		if (host_bits == 0 || (unsigned long long)i >= usable)
			return false;
	}
	*out = c->ip;
	for (int b = last; b >= 0 && carry; b--) {
		unsigned long long v = out->addr.octets[b] + (carry & 0xff);

		out->addr.octets[b] = (uint8_t)v;
		carry = (carry >> 8) + (v >> 8);
	}
	return true;
}

static void assign_addresses(struct gwplan_gateway *pg, size_t index, const struct sl_cidr *pools,
			     size_t n_pools)
{
	const struct sl_gateway *gw = pg->gw;

	for (size_t j = 0; j < gw->n_addresses && pg->n_ips < GWPLAN_IPS; j++)
		pg->ips[pg->n_ips++] = gw->addresses[j];
	if (gw->n_addresses)
		return;
	for (size_t j = 0; j < n_pools && pg->n_ips < GWPLAN_IPS; j++) {
		if (gwplan_pool_addr(&pools[j], index, &pg->ips[pg->n_ips]))
			pg->n_ips++;
		else
			pg->address_missing = true;
	}
}

/* ---- one listener ---- */

static void note(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(char *msg, const char *fmt, ...)
{
	va_list ap;

	if (msg[0])
		return;		/* the first problem is the one shown */
	va_start(ap, fmt);
	vsnprintf(msg, GWPLAN_MSG, fmt, ap);
	va_end(ap);
}

static void not_accepted(struct gwplan_listener *pl, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void not_accepted(struct gwplan_listener *pl, const char *reason, const char *fmt, ...)
{
	va_list ap;

	pl->accepted = false;
	pl->accepted_reason = reason;
	pl->proto = GW_PROTO_NONE;
	if (pl->message[0])
		return;
	va_start(ap, fmt);
	vsnprintf(pl->message, sizeof(pl->message), fmt, ap);
	va_end(ap);
}

static void refs_fail(struct gwplan_listener *pl, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void refs_fail(struct gwplan_listener *pl, const char *reason, const char *fmt, ...)
{
	va_list ap;

	if (!pl->resolved_refs)
		return;
	pl->resolved_refs = false;
	pl->refs_reason = reason;
	if (pl->message[0])
		return;
	va_start(ap, fmt);
	vsnprintf(pl->message, sizeof(pl->message), fmt, ap);
	va_end(ap);
}

/* The protocol and TLS mode: what it is served as, or why not. */
static void listener_proto(struct gwplan_listener *pl)
{
	const struct sl_listener *l = pl->l;
	const char *p = l->protocol ? l->protocol : "";

	if (!strcmp(p, "HTTP")) {
		pl->proto = GW_PROTO_HTTP;
	} else if (!strcmp(p, "HTTPS")) {
		pl->proto = GW_PROTO_HTTPS;
		if (str_eq(l->tls_mode, "Passthrough"))
			not_accepted(pl, "UnsupportedValue",
				     "an HTTPS listener terminates TLS (Passthrough needs protocol TLS)");
	} else if (!strcmp(p, "TLS")) {
		pl->proto = str_eq(l->tls_mode, "Terminate") ? GW_PROTO_TLS_TERMINATE : GW_PROTO_TLS;
		if (!l->tls_mode)
			not_accepted(pl, "UnsupportedValue", "protocol TLS needs tls.mode");
		else if (!str_eq(l->tls_mode, "Passthrough") && !str_eq(l->tls_mode, "Terminate"))
			not_accepted(pl, "UnsupportedValue",
				     "tls.mode %.40s is not supported on a TLS listener (Passthrough, Terminate)",
				     l->tls_mode);
	} else if (!strcmp(p, "TCP")) {
		pl->proto = GW_PROTO_TCP;
	} else {
		not_accepted(pl, "UnsupportedProtocol",
			     "protocol %.40s is not supported (HTTP, HTTPS, TLS, TCP)", p);
	}
}

/* allowedRoutes.kinds: the ones the protocol carries; a kind it cannot is
 * InvalidRouteKinds (the valid ones still count). */
static void listener_kinds(struct gwplan_listener *pl)
{
	const struct sl_listener *l = pl->l;
	bool invalid;

	pl->kinds = route_listener_kinds(l, &invalid);
	if (!invalid)
		return;
	for (size_t i = 0; i < l->n_route_kinds; i++) {
		const struct sl_route_group_kind *k = &l->route_kinds[i];
		struct sl_listener one = *l;

		one.route_kinds = (struct sl_route_group_kind *)k;
		one.n_route_kinds = 1;
		if (!route_listener_kinds(&one, &invalid) || invalid) {
			refs_fail(pl, "InvalidRouteKinds",
				  "allowedRoutes.kinds: %.40s%s%.40s is not a kind protocol %.20s carries",
				  str_empty(k->group) ? "" : k->group, str_empty(k->group) ? "" : "/",
				  k->kind ? k->kind : "", l->protocol ? l->protocol : "");
			return;
		}
	}
}

/* Does a ReferenceGrant in ns let Gateways of gw_ns use Secret name there? */
static bool secret_granted(const struct sl_resources *res, const char *gw_ns, const char *ns, const char *name)
{
	for (size_t i = 0; i < res->n_ref_grants; i++) {
		const struct sl_ref_grant *g = &res->ref_grants[i];
		bool from = false;

		if (!str_eq(g->ns, ns))
			continue;
		for (size_t j = 0; j < g->n_from && !from; j++)
			from = str_eq(g->from[j].group, GW_GROUP) && str_eq(g->from[j].kind, "Gateway") &&
			       str_eq(g->from[j].ns, gw_ns);
		for (size_t j = 0; from && j < g->n_to; j++)
			if (str_empty(g->to[j].group) && str_eq(g->to[j].kind, "Secret") &&
			    (!g->to[j].name || str_eq(g->to[j].name, name)))
				return true;
	}
	return false;
}

static const struct sl_secret *secret_find(const struct sl_resources *res, const char *ns, const char *name)
{
	for (size_t i = 0; i < res->n_secrets; i++)
		if (str_eq(res->secrets[i].ns, ns) && str_eq(res->secrets[i].name, name))
			return &res->secrets[i];
	return NULL;
}

/* HTTPS and TLS Terminate: every certificateRef must resolve; the first
 * that does serves. */
static void listener_certs(struct gwplan_listener *pl, const struct sl_gateway *gw,
			   const struct sl_resources *res)
{
	const struct sl_listener *l = pl->l;

	if (!l->n_certs)
		refs_fail(pl, "InvalidCertificateRef", "no tls.certificateRefs");
	for (size_t i = 0; i < l->n_certs; i++) {
		const struct sl_object_ref *r = &l->certs[i];
		const char *ns = r->ns ? r->ns : gw->ns, *name = r->name ? r->name : "";
		const struct sl_secret *s;

		if ((!str_empty(r->group) && strcmp(r->group, "core")) ||
		    (r->kind && strcmp(r->kind, "Secret"))) {
			refs_fail(pl, "InvalidCertificateRef",
				  "certificateRef %s/%s: kind %.40s is not supported (Secret)", ns, name,
				  r->kind ? r->kind : "");
			continue;
		}
		if (strcmp(ns, gw->ns) && !secret_granted(res, gw->ns, ns, name)) {
			refs_fail(pl, "RefNotPermitted",
				  "certificateRef %s/%s: no ReferenceGrant in %s lets Gateways of %s use it", ns,
				  name, ns, gw->ns);
			continue;
		}
		if (!(s = secret_find(res, ns, name))) {
			refs_fail(pl, "InvalidCertificateRef", "Secret %s/%s not found", ns, name);
			continue;
		}
		if (!s->tls_crt || !s->tls_key) {
			refs_fail(pl, "InvalidCertificateRef", "Secret %s/%s: no tls.crt and tls.key", ns,
				  name);
			continue;
		}
		if (!pl->cert)
			pl->cert = s;
	}
}

static void listener_check(struct gwplan_listener *pl, const struct sl_gateway *gw, const struct sl_model *m,
			   const struct route_table *rt)
{
	const char *name = pl->l->name ? pl->l->name : "";

	pl->accepted = true;
	pl->accepted_reason = "Accepted";
	pl->resolved_refs = true;
	pl->refs_reason = "ResolvedRefs";
	pl->conflict_reason = "NoConflicts";
	listener_proto(pl);
	listener_kinds(pl);
	if (gw_proto_terminates_tls(pl->proto))
		listener_certs(pl, gw, m->res);
	pl->attached = route_listener_attached(rt, gw->ns, gw->name, name);
}

/* ---- conflicts ---- */

struct cand {
	struct gwplan_gateway *g;
	struct gwplan_listener *pl;
};

static int cand_cmp(const void *pa, const void *pb)
{
	const struct cand *a = pa, *b = pb;

	return (int)a->pl->l->port - (int)b->pl->l->port;
}

/* Has the Gateway somewhere to listen: addresses, or every address of the
 * node (no pool and no spec.addresses)? */
static bool placed(const struct gwplan_gateway *pg)
{
	return pg->n_ips || !pg->address_missing;
}

/* Do two Gateways listen on a common address? One on every address meets all. */
static bool addrs_meet(const struct gwplan_gateway *a, const struct gwplan_gateway *b)
{
	if (a == b || !a->n_ips || !b->n_ips)
		return true;
	for (size_t i = 0; i < a->n_ips; i++)
		for (size_t j = 0; j < b->n_ips; j++)
			if (sl_ip_eq(&a->ips[i], &b->ips[j]))
				return true;
	return false;
}

static void conflict(struct cand *x, const struct cand *with, const char *reason)
{
	struct gwplan_listener *pl = x->pl;
	const struct sl_listener *o = with->pl->l;

	/* the first partner is named; a protocol conflict says more than a
	 * hostname one, and replaces it */
	if (pl->conflicted && (!strcmp(reason, "HostnameConflict") || !strcmp(pl->conflict_reason, reason)))
		return;
	pl->conflicted = true;
	pl->conflict_reason = reason;
	pl->message[0] = '\0';
	if (!strcmp(reason, "ProtocolConflict"))
		note(pl->message, "port %u is also %.20s (listener %s/%s %s)", o->port,
		     gw_proto_str(with->pl->proto), with->g->gw->ns, with->g->gw->name, o->name ? o->name : "");
	else
		note(pl->message, "listener %s/%s %s has the same port and hostname", with->g->gw->ns,
		     with->g->gw->name, o->name ? o->name : "");
}

static bool same_hostname(const struct sl_listener *a, const struct sl_listener *b)
{
	if (str_empty(a->hostname) || str_empty(b->hostname))
		return str_empty(a->hostname) && str_empty(b->hostname);
	return !strcasecmp(a->hostname, b->hostname);
}

/* Every pair of accepted listeners on one port whose addresses meet. */
static int find_conflicts(struct gwplan *p)
{
	struct cand *c;
	size_t n = 0, total = 0;

	for (size_t i = 0; i < p->n_gws; i++)
		total += p->gws[i].n_ls;
	if (!total)
		return 0;
	if (!(c = calloc(total, sizeof(*c))))
		return -ENOMEM;
	for (size_t i = 0; i < p->n_gws; i++) {
		if (!placed(&p->gws[i]))
			continue;	/* it listens nowhere */
		for (size_t j = 0; j < p->gws[i].n_ls; j++)
			if (p->gws[i].ls[j].accepted)
				c[n++] = (struct cand){ &p->gws[i], &p->gws[i].ls[j] };
	}
	qsort(c, n, sizeof(*c), cand_cmp);
	for (size_t i = 0, end; i < n; i = end) {
		for (end = i + 1; end < n && c[end].pl->l->port == c[i].pl->l->port; end++)
			;
		for (size_t a = i; a < end; a++)
			for (size_t b = a + 1; b < end; b++) {
				const char *why = NULL;

				if (!addrs_meet(c[a].g, c[b].g))
					continue;
				if (c[a].pl->proto != c[b].pl->proto &&
				    !(gw_proto_tls(c[a].pl->proto) && gw_proto_tls(c[b].pl->proto)))
					why = "ProtocolConflict";
				else if (c[a].pl->proto == GW_PROTO_TCP ||
					 same_hostname(c[a].pl->l, c[b].pl->l))
					why = "HostnameConflict";
				if (why) {
					conflict(&c[a], &c[b], why);
					conflict(&c[b], &c[a], why);
				}
			}
	}
	free(c);
	return 0;
}

/* ---- Gateways ---- */

/* Accepted: True when every listener is valid, True ListenersNotValid when
 * some are, False when none is. A listener is served when valid and its
 * Gateway has somewhere to listen. */
static void gateway_verdict(struct gwplan_gateway *pg)
{
	size_t valid = 0;
	const struct gwplan_listener *first_out = NULL;

	for (size_t i = 0; i < pg->n_ls; i++) {
		struct gwplan_listener *pl = &pg->ls[i];

		if (pl->accepted && !pl->conflicted)
			valid++;
		else if (!first_out)
			first_out = pl;
		pl->serve = pl->accepted && !pl->conflicted && placed(pg);
	}
	pg->accepted = valid > 0;
	pg->accepted_reason = first_out || !pg->n_ls ? "ListenersNotValid" : "Accepted";
	if (!pg->n_ls)
		note(pg->message, "no listeners");
	else if (first_out)
		note(pg->message, "%zu of %zu listeners not valid; %s: %s", pg->n_ls - valid, pg->n_ls,
		     first_out->l->name ? first_out->l->name : "", first_out->message);
	if (pg->address_missing)
		note(pg->message, "an address pool has no address left for it");
}

int gwplan_build(const struct sl_model *m, const struct route_table *rt, const struct sl_cidr *pools,
		 size_t n_pools, struct gwplan **out)
{
	const struct sl_resources *res = m->res;
	struct gwplan *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p || !(p->gws = calloc(res->n_gateways ? res->n_gateways : 1, sizeof(*p->gws))))
		goto nomem;
	for (size_t i = 0; i < res->n_gateways; i++)
		if (res->gateways[i].ns && res->gateways[i].name && ours(res, &res->gateways[i]))
			p->gws[p->n_gws++].gw = &res->gateways[i];
	qsort(p->gws, p->n_gws, sizeof(*p->gws), gw_cmp);
	for (size_t i = 0; i < p->n_gws; i++) {
		struct gwplan_gateway *pg = &p->gws[i];

		assign_addresses(pg, i, pools, n_pools);
		pg->n_ls = pg->gw->n_listeners;
		if (pg->n_ls && !(pg->ls = calloc(pg->n_ls, sizeof(*pg->ls))))
			goto nomem;
		for (size_t j = 0; j < pg->n_ls; j++) {
			pg->ls[j].l = &pg->gw->listeners[j];
			listener_check(&pg->ls[j], pg->gw, m, rt);
		}
	}
	if (find_conflicts(p))
		goto nomem;
	for (size_t i = 0; i < p->n_gws; i++)
		gateway_verdict(&p->gws[i]);
	*out = p;
	return 0;
nomem:
	gwplan_free(p);
	return -ENOMEM;
}

void gwplan_free(struct gwplan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_gws; i++)
		free(p->gws[i].ls);
	free(p->gws);
	free(p);
}
