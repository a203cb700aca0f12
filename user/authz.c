// SPDX-License-Identifier: Apache-2.0
/* authz.c - see authz.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

bool authz_applies(const struct sl_model *m, const char *root_ns, const struct sl_authz *a, const struct sl_pod *pod)
{
	bool root = !strcmp(a->ns, root_ns ? root_ns : AUTHZ_ROOT_NS);

	if (a->n_targets) {
		for (size_t i = 0; i < a->n_targets; i++)
			if (a->targets[i].kind && !strcmp(a->targets[i].kind, "Service") &&
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
