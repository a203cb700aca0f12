// SPDX-License-Identifier: Apache-2.0
/* policy.c - NetworkPolicy by the spec, and compiled into the kernel's
 * tables (see policy.h for the scheme). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "policy.h"

#define NS_NAME_LABEL	"kubernetes.io/metadata.name"
#define PROTO_SCTP	132

static const char *const dir_names[2] = { [SL_DIR_INGRESS] = "ingress", [SL_DIR_EGRESS] = "egress" };

/* ---- a byte-string -> u32 map (open addressing) for the registry ---- */

struct bmap_ent {
	void *key;			/* NULL: free */
	size_t len;
	uint32_t val;
};

struct bmap {
	struct bmap_ent *v;
	size_t n, cap;
};

static uint64_t hash_bytes(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static struct bmap_ent *bmap_slot(const struct bmap *m, const void *key, size_t len)
{
	size_t i = hash_bytes(key, len) & (m->cap - 1);

	while (m->v[i].key && (m->v[i].len != len || memcmp(m->v[i].key, key, len)))
		i = (i + 1) & (m->cap - 1);
	return &m->v[i];
}

static int bmap_grow(struct bmap *m)
{
	struct bmap old = *m;

	m->cap = old.cap ? old.cap * 2 : 64;
	m->v = calloc(m->cap, sizeof(*m->v));
	if (!m->v) {
		*m = old;
		return -ENOMEM;
	}
	for (size_t i = 0; i < old.cap; i++)
		if (old.v[i].key)
			*bmap_slot(m, old.v[i].key, old.v[i].len) = old.v[i];
	free(old.v);
	return 0;
}

/* The value of key, or 0 when absent. */
static uint32_t bmap_get(const struct bmap *m, const void *key, size_t len)
{
	const struct bmap_ent *e;

	if (!m->cap)
		return 0;
	e = bmap_slot(m, key, len);
	return e->key ? e->val : 0;
}

static int bmap_put(struct bmap *m, const void *key, size_t len, uint32_t val)
{
	struct bmap_ent *e;

	if ((m->n + 1) * 2 > m->cap && bmap_grow(m))
		return -ENOMEM;
	e = bmap_slot(m, key, len);
	if (!e->key) {
		e->key = malloc(len ? len : 1);
		if (!e->key)
			return -ENOMEM;
		memcpy(e->key, key, len);
		e->len = len;
		m->n++;
	}
	e->val = val;
	return 0;
}

static void bmap_free(struct bmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->v[i].key);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* ---- the registry: ids that outlive a compile ---- */

struct policy_registry {
	struct bmap classes;		/* class signature -> identity */
	uint32_t next_class;
	struct bmap eps;		/* "ns/name" -> endpoint id */
	uint32_t next_ep;
	struct bmap slot_names;		/* slot name -> slot */
	struct policy_slot *slots;	/* by slot - 1 */
	size_t n_slots;
};

int policy_registry_new(struct policy_registry **out)
{
	struct policy_registry *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->next_class = SL_POLID_WORLD + 1;
	r->next_ep = 1;
	*out = r;
	return 0;
}

void policy_registry_free(struct policy_registry *r)
{
	if (!r)
		return;
	bmap_free(&r->classes);
	bmap_free(&r->eps);
	bmap_free(&r->slot_names);
	for (size_t i = 0; i < r->n_slots; i++) {
		free(r->slots[i].name);
		free((char *)r->slots[i].ns);
		free((char *)r->slots[i].policy);
	}
	free(r->slots);
	free(r);
}

const struct policy_slot *policy_registry_slot(const struct policy_registry *r, uint32_t slot)
{
	return slot && slot <= r->n_slots ? &r->slots[slot - 1] : NULL;
}

size_t policy_registry_slots(const struct policy_registry *r, const struct policy_slot **out)
{
	*out = r->slots;
	return r->n_slots;
}

static uint32_t reg_id(struct bmap *m, uint32_t *next, const void *key, size_t len)
{
	uint32_t v = bmap_get(m, key, len);

	if (v)
		return v;
	v = (*next)++;
	return bmap_put(m, key, len, v) ? 0 : v;
}

/* The slot of a rule (rule >= 0) or of a default deny (rule -1); 0 when out of memory. */
static uint32_t reg_slot(struct policy_registry *r, const struct sl_netpol *np, int dir, int rule)
{
	char name[600];
	struct policy_slot *s;
	uint32_t v;

	if (rule >= 0)
		snprintf(name, sizeof(name), "%s/%s %s[%d]", np->ns, np->name, dir_names[dir], rule);
	else
		snprintf(name, sizeof(name), "isolated by %s/%s (%s)", np->ns, np->name, dir_names[dir]);
	v = bmap_get(&r->slot_names, name, strlen(name));
	if (v)
		return v;
	if (r->n_slots >= SL_POLSTAT_MAX - 1)
		return 0;
	s = realloc(r->slots, (r->n_slots + 1) * sizeof(*s));
	if (!s)
		return 0;
	r->slots = s;
	s = &r->slots[r->n_slots];
	memset(s, 0, sizeof(*s));
	s->slot = (uint32_t)r->n_slots + 1;
	s->name = strdup(name);
	s->ns = strdup(np->ns);
	s->policy = strdup(np->name);
	s->dir = dir;
	s->rule = rule;
	if (!s->name || !s->ns || !s->policy || bmap_put(&r->slot_names, name, strlen(name), s->slot)) {
		free(s->name);
		free((char *)s->ns);
		free((char *)s->policy);
		return 0;
	}
	r->n_slots++;
	return s->slot;
}

/* ---- the spec ---- */

static const struct sl_namespace *ns_find(const struct sl_model *m, const char *name)
{
	for (size_t i = 0; i < m->res->n_namespaces; i++)
		if (!strcmp(m->res->namespaces[i].name, name))
			return &m->res->namespaces[i];
	return NULL;
}

/* A namespaceSelector against namespace name: its labels, and the label the
 * API server puts on every namespace (kubernetes.io/metadata.name). */
static bool ns_selected(const struct sl_model *m, const struct sl_selector *sel, const char *name)
{
	const struct sl_namespace *ns = ns_find(m, name);
	size_t n = ns ? ns->labels.n : 0;
	struct sl_label stack[32], *v = n + 1 <= 32 ? stack : malloc((n + 1) * sizeof(*v));
	struct sl_labels l = { .v = v, .n = 0 };
	bool has_name = false, ok;

	if (!v)
		return false;
	for (size_t i = 0; i < n; i++) {
		v[l.n++] = ns->labels.v[i];
		has_name |= !strcmp(ns->labels.v[i].key, NS_NAME_LABEL);
	}
	if (!has_name)
		v[l.n++] = (struct sl_label){ .key = (char *)NS_NAME_LABEL, .value = (char *)name };
	ok = selector_match(sel, &l);
	if (v != stack)
		free(v);
	return ok;
}

static bool cidr_in(const struct sl_cidr *inner, const struct sl_cidr *outer)
{
	return inner->ip.family == outer->ip.family && inner->len >= outer->len &&
	       cidr_contains(outer, &inner->ip);
}

static bool ipblock_match(const struct sl_np_peer *p, const struct sl_ip *ip)
{
	if (!cidr_contains(&p->cidr, ip))
		return false;
	for (size_t i = 0; i < p->n_except; i++)
		if (cidr_contains(&p->except[i], ip))
			return false;
	return true;
}

static bool peer_match_pod(const struct sl_model *m, const struct sl_netpol *np, const struct sl_np_peer *p,
			   const struct sl_pod *pod)
{
	if (p->has_ns_sel ? !ns_selected(m, &p->ns_sel, pod->ns) : strcmp(pod->ns, np->ns))
		return false;
	return !p->has_pod_sel || selector_match(&p->pod_sel, &pod->labels);
}

/* Does peer p name the address ip (of pod, or NULL outside the cluster)? */
static bool peer_match(const struct sl_model *m, const struct sl_netpol *np, const struct sl_np_peer *p,
		       const struct sl_ip *ip, const struct sl_pod *pod)
{
	if (p->ip_block)
		return ipblock_match(p, ip);
	return pod && peer_match_pod(m, np, p, pod);
}

/* The number pod gives a named port of proto, 0 if none. */
static uint16_t named_port(const struct sl_pod *pod, const char *name, uint8_t proto)
{
	for (size_t i = 0; pod && i < pod->n_ports; i++)
		if (pod->ports[i].name && pod->ports[i].proto == proto && !strcmp(pod->ports[i].name, name))
			return pod->ports[i].port;
	return 0;
}

/* named: the pod whose containerPorts name the port (the destination). */
static bool port_match(const struct sl_np_port *pp, uint16_t port, uint8_t proto, const struct sl_pod *named)
{
	if (pp->proto != proto)
		return false;
	if (pp->name)
		return named_port(named, pp->name, proto) == port;
	if (!pp->port)
		return true;
	if (pp->end_port)
		return port >= pp->port && port <= pp->end_port;
	return port == pp->port;
}

static bool rule_match(const struct sl_model *m, const struct sl_netpol *np, const struct sl_np_rule *r,
		       const struct sl_ip *peer_ip, const struct sl_pod *peer_pod, uint16_t port, uint8_t proto,
		       const struct sl_pod *dst_pod)
{
	bool ok = !r->n_peers;

	for (size_t i = 0; i < r->n_peers && !ok; i++)
		ok = peer_match(m, np, &r->peers[i], peer_ip, peer_pod);
	if (!ok)
		return false;
	if (!r->n_ports)
		return true;
	for (size_t i = 0; i < r->n_ports; i++)
		if (port_match(&r->ports[i], port, proto, dst_pod))
			return true;
	return false;
}

static bool selects(const struct sl_netpol *np, int dir, const struct sl_pod *pod)
{
	if (strcmp(np->ns, pod->ns) || !(dir == SL_DIR_INGRESS ? np->type_ingress : np->type_egress))
		return false;
	return selector_match(&np->pod_sel, &pod->labels);
}

/* One direction for the pod at ep: allowed or not, and why. */
static bool decide_dir(const struct sl_model *m, int dir, const struct sl_pod *ep, const struct sl_ip *peer_ip,
		       const struct sl_pod *peer_pod, uint16_t port, uint8_t proto, char *why, size_t len)
{
	const struct sl_netpol *first = NULL;
	const struct sl_pod *dst = dir == SL_DIR_INGRESS ? ep : peer_pod;

	for (size_t i = 0; i < m->res->n_netpols; i++) {
		const struct sl_netpol *np = &m->res->netpols[i];
		const struct sl_np_rule *rules = dir == SL_DIR_INGRESS ? np->ingress : np->egress;
		size_t n = dir == SL_DIR_INGRESS ? np->n_ingress : np->n_egress;

		if (!selects(np, dir, ep))
			continue;
		if (!first)
			first = np;
		for (size_t j = 0; j < n; j++) {
			if (rule_match(m, np, &rules[j], peer_ip, peer_pod, port, proto, dst)) {
				snprintf(why, len, "%s/%s %s[%zu]", np->ns, np->name, dir_names[dir], j);
				return true;
			}
		}
	}
	if (!first) {
		snprintf(why, len, "not isolated");
		return true;
	}
	snprintf(why, len, "isolated by %s/%s", first->ns, first->name);
	return false;
}

void policy_decide(const struct sl_model *m, const struct sl_ip *src, const struct sl_ip *dst, uint16_t port,
		   uint8_t proto, struct policy_decision *out)
{
	const struct sl_workload *ws = model_workload_by_ip(m, src), *wd = model_workload_by_ip(m, dst);

	memset(out, 0, sizeof(*out));
	out->src_pod = ws ? ws->pod : NULL;
	out->dst_pod = wd ? wd->pod : NULL;
	if (out->src_pod && out->src_pod == out->dst_pod) {
		out->allow = out->ingress_allow = out->egress_allow = true;
		snprintf(out->ingress, sizeof(out->ingress), "loopback");
		snprintf(out->egress, sizeof(out->egress), "loopback");
		return;
	}
	if (!out->src_pod) {
		out->egress_allow = true;
		snprintf(out->egress, sizeof(out->egress), "source is not a pod");
	} else {
		out->egress_allow = decide_dir(m, SL_DIR_EGRESS, out->src_pod, dst, out->dst_pod, port, proto,
					       out->egress, sizeof(out->egress));
	}
	if (!out->dst_pod) {
		out->ingress_allow = true;
		snprintf(out->ingress, sizeof(out->ingress), "destination is not a pod");
	} else {
		out->ingress_allow = decide_dir(m, SL_DIR_INGRESS, out->dst_pod, src, out->src_pod, port, proto,
						out->ingress, sizeof(out->ingress));
	}
	out->allow = out->ingress_allow && out->egress_allow;
}

int policy_resolve(const struct sl_model *m, const char *what, int family, struct sl_ip *ip)
{
	const char *slash = strchr(what, '/');

	if (!slash)
		return sl_ip_parse(what, ip);
	for (size_t i = 0; i < m->res->n_pods; i++) {
		const struct sl_pod *p = &m->res->pods[i];

		if (strlen(p->ns) != (size_t)(slash - what) || strncmp(p->ns, what, (size_t)(slash - what)) ||
		    strcmp(p->name, slash + 1) || !p->n_ips)
			continue;
		*ip = p->ips[0];
		for (size_t j = 0; j < p->n_ips; j++)
			if (family && p->ips[j].family == family)
				*ip = p->ips[j];
		return 0;
	}
	return -ENOENT;
}

/* ---- compilation ---- */

struct peer_ref {
	const struct sl_netpol *np;
	const struct sl_np_peer *peer;
};

struct nport {				/* an egress named port: (name, protocol) */
	const char *name;
	uint8_t proto;
};

struct klass {
	uint32_t id;
	uint8_t *sig;			/* bits (one per peer) then a u16 per named port */
};

struct atom {				/* an address prefix with its class */
	struct sl_cidr pfx;
	size_t klass;
	bool pod;			/* a pod's address: wins over an equal ipBlock prefix */
};

struct rule_ent {
	struct sl_polrule_key k;
	struct sl_polrule_val v;
	size_t seq;			/* first rule wins a tie */
};

struct cc {				/* compile context */
	const struct sl_model *m;
	struct policy_registry *reg;
	struct peer_ref *peers;
	size_t n_peers, cap_peers;
	struct nport *nports;
	size_t n_nports, cap_nports;
	size_t sig_len, bits_len;
	struct klass *classes;
	size_t n_classes, cap_classes;
	struct bmap class_ix;		/* identity -> index + 1 in classes */
	struct atom *atoms;
	size_t n_atoms, cap_atoms;
	struct rule_ent *rules;
	size_t n_rules, cap_rules;
	size_t *rule_peer_base;		/* per (policy, dir, rule): index of its first peer; flat */
	bool *relevant;			/* per policy: selects a local pod */
};

#define GROW(c, arr, n, cap)									\
	((n) < (cap) ? 0 : grow_arr((void **)&(arr), &(cap), sizeof(*(arr))))

static int grow_arr(void **arr, size_t *cap, size_t size)
{
	size_t c = *cap ? *cap * 2 : 16;
	void *v = realloc(*arr, c * size);

	if (!v)
		return -ENOMEM;
	*arr = v;
	*cap = c;
	return 0;
}

static bool sig_bit(const uint8_t *sig, size_t k)
{
	return sig[k / 8] & (1u << (k % 8));
}

static bool sig_empty(const uint8_t *sig, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (sig[i])
			return false;
	return true;
}

/* The class of signature sig (taken over), found or added. */
static int class_of(struct cc *c, uint8_t *sig, size_t *out)
{
	uint32_t id, ix;

	id = sig_empty(sig, c->sig_len) ? SL_POLID_WORLD : reg_id(&c->reg->classes, &c->reg->next_class, sig, c->sig_len);
	if (!id) {
		free(sig);
		return -ENOMEM;
	}
	ix = bmap_get(&c->class_ix, &id, sizeof(id));
	if (ix) {
		free(sig);
		*out = ix - 1;
		return 0;
	}
	if (GROW(c, c->classes, c->n_classes, c->cap_classes) ||
	    bmap_put(&c->class_ix, &id, sizeof(id), (uint32_t)c->n_classes + 1)) {
		free(sig);
		return -ENOMEM;
	}
	c->classes[c->n_classes] = (struct klass){ .id = id, .sig = sig };
	*out = c->n_classes++;
	return 0;
}

static int add_atom(struct cc *c, const struct sl_cidr *pfx, uint8_t *sig, bool pod)
{
	size_t k;
	int err = class_of(c, sig, &k);

	if (err)
		return err;
	if (GROW(c, c->atoms, c->n_atoms, c->cap_atoms))
		return -ENOMEM;
	c->atoms[c->n_atoms++] = (struct atom){ .pfx = *pfx, .klass = k, .pod = pod };
	return 0;
}

static const struct sl_np_rule *dir_rules(const struct sl_netpol *np, int dir, size_t *n)
{
	*n = dir == SL_DIR_INGRESS ? np->n_ingress : np->n_egress;
	return dir == SL_DIR_INGRESS ? np->ingress : np->egress;
}

static bool dir_typed(const struct sl_netpol *np, int dir)
{
	return dir == SL_DIR_INGRESS ? np->type_ingress : np->type_egress;
}

/* The peers and egress named ports of the policies that select a local pod. */
static int collect_peers(struct cc *c)
{
	const struct sl_resources *r = c->m->res;

	for (size_t i = 0; i < r->n_netpols; i++) {
		const struct sl_netpol *np = &r->netpols[i];

		if (!c->relevant[i])
			continue;
		for (int dir = 0; dir < 2; dir++) {
			size_t n;
			const struct sl_np_rule *rules = dir_rules(np, dir, &n);

			if (!dir_typed(np, dir))
				continue;
			for (size_t j = 0; j < n; j++) {
				for (size_t k = 0; k < rules[j].n_peers; k++) {
					if (GROW(c, c->peers, c->n_peers, c->cap_peers))
						return -ENOMEM;
					c->peers[c->n_peers++] = (struct peer_ref){ np, &rules[j].peers[k] };
				}
				for (size_t k = 0; dir == SL_DIR_EGRESS && k < rules[j].n_ports; k++) {
					const struct sl_np_port *pp = &rules[j].ports[k];
					bool seen = false;

					for (size_t q = 0; pp->name && q < c->n_nports && !seen; q++)
						seen = c->nports[q].proto == pp->proto &&
						       !strcmp(c->nports[q].name, pp->name);
					if (!pp->name || seen)
						continue;
					if (GROW(c, c->nports, c->n_nports, c->cap_nports))
						return -ENOMEM;
					c->nports[c->n_nports++] = (struct nport){ pp->name, pp->proto };
				}
			}
		}
	}
	c->bits_len = (c->n_peers + 7) / 8;
	c->sig_len = c->bits_len + 2 * c->n_nports;
	if (!c->sig_len)
		c->sig_len = 1;		/* every address is WORLD */
	return 0;
}

static int pfx_cmp(const void *a, const void *b)
{
	const struct sl_cidr *x = a, *y = b;

	if (x->ip.family != y->ip.family)
		return x->ip.family < y->ip.family ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(&x->ip.addr, &y->ip.addr, sizeof(x->ip.addr));
}

/* Classes of every ipBlock prefix and every pod address. A pod no peer
 * names needs an entry only inside some prefix (to override it). */
static int build_atoms(struct cc *c)
{
	const struct sl_resources *r = c->m->res;
	struct sl_cidr *pfx = NULL;
	size_t n_pfx = 0, cap_pfx = 0, n_uniq = 0;
	int err = 0;

	for (size_t k = 0; k < c->n_peers; k++) {
		const struct sl_np_peer *p = c->peers[k].peer;

		if (!p->ip_block)
			continue;
		for (size_t e = 0; e <= p->n_except; e++) {
			if (GROW(c, pfx, n_pfx, cap_pfx)) {
				free(pfx);
				return -ENOMEM;
			}
			pfx[n_pfx++] = e ? p->except[e - 1] : p->cidr;
		}
	}
	if (n_pfx)
		qsort(pfx, n_pfx, sizeof(*pfx), pfx_cmp);
	for (size_t i = 0; i < n_pfx && !err; i++) {
		uint8_t *sig;

		if (i && !pfx_cmp(&pfx[i - 1], &pfx[i]))
			continue;
		pfx[n_uniq++] = pfx[i];
		sig = calloc(1, c->sig_len);
		if (!sig) {
			err = -ENOMEM;
			break;
		}
		/* Every address whose longest prefix here is pfx[i] (pods have their own). */
		for (size_t k = 0; k < c->n_peers; k++) {
			const struct sl_np_peer *p = c->peers[k].peer;
			bool in = p->ip_block && cidr_in(&pfx[i], &p->cidr);

			for (size_t e = 0; in && e < p->n_except; e++)
				in = !cidr_in(&pfx[i], &p->except[e]);
			if (in)
				sig[k / 8] |= (uint8_t)(1u << (k % 8));
		}
		err = add_atom(c, &pfx[i], sig, false);
	}
	for (size_t i = 0; i < r->n_pods && !err; i++) {
		const struct sl_pod *pod = &r->pods[i];

		for (size_t j = 0; !pod->host_network && j < pod->n_ips && !err; j++) {
			uint8_t *sig = calloc(1, c->sig_len);
			struct sl_cidr a = { .ip = pod->ips[j], .len = pod->ips[j].family == SL_AF_INET ? 32 : 128 };
			bool inside = false;

			if (!sig) {
				err = -ENOMEM;
				break;
			}
			for (size_t k = 0; k < c->n_peers; k++)
				if (peer_match(c->m, c->peers[k].np, c->peers[k].peer, &pod->ips[j], pod))
					sig[k / 8] |= (uint8_t)(1u << (k % 8));
			for (size_t q = 0; q < c->n_nports; q++) {
				uint16_t p = named_port(pod, c->nports[q].name, c->nports[q].proto);

				sig[c->bits_len + 2 * q] = (uint8_t)(p >> 8);
				sig[c->bits_len + 2 * q + 1] = (uint8_t)p;
			}
			for (size_t q = 0; q < n_uniq && !inside; q++)
				inside = cidr_contains(&pfx[q], &pod->ips[j]);
			if (!inside && sig_empty(sig, c->sig_len)) {
				free(sig);
				continue;
			}
			err = add_atom(c, &a, sig, true);
		}
	}
	free(pfx);
	return err;
}

static int add_rule(struct cc *c, uint32_t ep, uint32_t peer, int dir, uint8_t proto, uint16_t port,
		    unsigned int port_bits, uint32_t slot)
{
	struct rule_ent *e;

	if (GROW(c, c->rules, c->n_rules, c->cap_rules))
		return -ENOMEM;
	if (c->n_rules >= SL_POLRULE_MAX)
		return -E2BIG;
	e = &c->rules[c->n_rules];
	memset(e, 0, sizeof(*e));
	e->k.prefixlen = SL_POLRULE_BITS - 16 + port_bits;
	e->k.ep_id = ep;
	e->k.peer_id = peer;
	e->k.dir = (uint8_t)dir;
	e->k.proto = proto;
	e->k.port = htons(port_bits ? (uint16_t)(port & (0xffff << (16 - port_bits))) : 0);
	e->v.slot = slot;
	e->seq = c->n_rules++;
	return 0;
}

/* port..end (inclusive) as prefixes. */
static int add_range(struct cc *c, uint32_t ep, uint32_t peer, int dir, uint8_t proto, uint32_t lo,
		     uint32_t hi, uint32_t slot)
{
	while (lo <= hi) {
		unsigned int bits = 16;
		int err;

		/* The largest aligned block starting at lo that fits in [lo, hi]. */
		while (bits > 0) {
			uint32_t size = 1u << (16 - bits + 1);

			if ((lo & (size - 1)) || lo + size - 1 > hi)
				break;
			bits--;
		}
		err = add_rule(c, ep, peer, dir, proto, (uint16_t)lo, bits, slot);
		if (err)
			return err;
		lo += 1u << (16 - bits);
	}
	return 0;
}

/* Entries of one port spec for one peer (identity or ANY, with its class for named ports). */
static int add_port(struct cc *c, uint32_t ep, const struct sl_pod *pod, int dir, const struct sl_np_port *pp,
		    uint32_t peer, const struct klass *k, uint32_t slot)
{
	uint16_t port = pp->port;

	if (pp->name) {
		if (dir == SL_DIR_INGRESS) {
			port = named_port(pod, pp->name, pp->proto);
		} else {
			port = 0;
			for (size_t q = 0; k && q < c->n_nports; q++)
				if (c->nports[q].proto == pp->proto && !strcmp(c->nports[q].name, pp->name))
					port = (uint16_t)(k->sig[c->bits_len + 2 * q] << 8 |
							  k->sig[c->bits_len + 2 * q + 1]);
		}
		return port ? add_rule(c, ep, peer, dir, pp->proto, port, 16, slot) : 0;
	}
	if (!port)
		return add_rule(c, ep, peer, dir, pp->proto, 0, 0, slot);
	if (pp->end_port)
		return add_range(c, ep, peer, dir, pp->proto, port, pp->end_port, slot);
	return add_rule(c, ep, peer, dir, pp->proto, port, 16, slot);
}

static bool rule_names_class(const struct cc *c, size_t base, const struct sl_np_rule *r, const struct klass *k)
{
	for (size_t i = 0; i < r->n_peers; i++)
		if (sig_bit(k->sig, base + i))
			return true;
	return false;
}

static int compile_rule(struct cc *c, uint32_t ep, const struct sl_pod *pod, int dir, const struct sl_np_rule *r,
			size_t base, uint32_t slot)
{
	static const uint8_t all_protos[] = { SL_IPPROTO_TCP, SL_IPPROTO_UDP, PROTO_SCTP };
	int err = 0;

	if (!r->n_peers) {
		/* Every peer: one ANY entry per port, except named egress ports,
		 * which resolve per destination class. */
		for (size_t p = 0; !r->n_ports && p < sizeof(all_protos) && !err; p++)
			err = add_rule(c, ep, SL_POLID_ANY, dir, all_protos[p], 0, 0, slot);
		for (size_t p = 0; p < r->n_ports && !err; p++) {
			const struct sl_np_port *pp = &r->ports[p];

			if (!pp->name || dir == SL_DIR_INGRESS) {
				err = add_port(c, ep, pod, dir, pp, SL_POLID_ANY, NULL, slot);
				continue;
			}
			for (size_t ki = 0; ki < c->n_classes && !err; ki++)
				err = add_port(c, ep, pod, dir, pp, c->classes[ki].id, &c->classes[ki], slot);
		}
		return err;
	}
	for (size_t ki = 0; ki < c->n_classes && !err; ki++) {
		const struct klass *k = &c->classes[ki];

		if (!rule_names_class(c, base, r, k))
			continue;
		for (size_t p = 0; !r->n_ports && p < sizeof(all_protos) && !err; p++)
			err = add_rule(c, ep, k->id, dir, all_protos[p], 0, 0, slot);
		for (size_t p = 0; p < r->n_ports && !err; p++)
			err = add_port(c, ep, pod, dir, &r->ports[p], k->id, k, slot);
	}
	return err;
}

static int rule_ent_cmp(const void *a, const void *b)
{
	const struct rule_ent *x = a, *y = b;
	int d = memcmp(&x->k, &y->k, sizeof(x->k));

	return d ? d : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

static bool local_in_scope(const struct sl_workload *w, const char *node, enum policy_scope scope)
{
	if (scope == POLICY_SCOPE_NONE || w->pod->host_network || !w->pod->n_ips)
		return false;
	if (node && !w->local)
		return false;
	return scope == POLICY_SCOPE_ALL || w->enrolled;
}

static int compile_eps(struct cc *c, const char *node, enum policy_scope scope, struct policy *p)
{
	const struct sl_model *m = c->m;
	const struct sl_resources *r = m->res;
	char key[600];
	int err = 0;

	p->eps = calloc(r->n_pods ? r->n_pods : 1, sizeof(*p->eps));
	if (!p->eps)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_pods && !err; i++) {
		const struct sl_workload *w = &m->workloads[i];
		struct policy_ep *e;

		if (!local_in_scope(w, node, scope))
			continue;
		e = &p->eps[p->n_eps++];
		e->pod = w->pod;
		snprintf(key, sizeof(key), "%s/%s", w->pod->ns, w->pod->name);
		e->ep_id = reg_id(&c->reg->eps, &c->reg->next_ep, key, strlen(key));
		if (!e->ep_id)
			return -ENOMEM;
		e->flags = w->enrolled ? SL_EP_F_ENROLLED : SL_EP_F_NO_STEER;
		for (size_t j = 0; j < r->n_netpols; j++) {
			const struct sl_netpol *np = &r->netpols[j];
			bool sel = false;

			for (int dir = 0; dir < 2; dir++) {
				if (!selects(np, dir, w->pod))
					continue;
				sel = true;
				if (!e->isolated_by[dir])
					e->isolated_by[dir] = np;
			}
			if (sel) {
				e->n_selecting++;
				c->relevant[j] = true;
			}
		}
		if (e->isolated_by[SL_DIR_INGRESS])
			e->flags |= SL_EP_F_ISO_IN;
		if (e->isolated_by[SL_DIR_EGRESS])
			e->flags |= SL_EP_F_ISO_OUT;
	}
	return 0;
}

static int compile_rules(struct cc *c, struct policy *p)
{
	const struct sl_resources *r = c->m->res;
	size_t base = 0;
	int err = 0;

	/* Peer bit positions follow collect_peers' order. */
	c->rule_peer_base = calloc(r->n_netpols * 2 + 1, sizeof(*c->rule_peer_base));
	if (!c->rule_peer_base)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_netpols; i++) {
		c->rule_peer_base[2 * i] = base;
		for (int dir = 0; dir < 2; dir++) {
			size_t n;
			const struct sl_np_rule *rules = dir_rules(&r->netpols[i], dir, &n);

			c->rule_peer_base[2 * i + (size_t)dir] = base;
			if (!c->relevant[i] || !dir_typed(&r->netpols[i], dir))
				continue;
			for (size_t j = 0; j < n; j++)
				base += rules[j].n_peers;
		}
	}
	for (size_t e = 0; e < p->n_eps && !err; e++) {
		struct policy_ep *ep = &p->eps[e];

		for (int dir = 0; dir < 2 && !err; dir++) {
			if (!ep->isolated_by[dir])
				continue;
			for (size_t i = 0; i < r->n_netpols && !err; i++) {
				const struct sl_netpol *np = &r->netpols[i];
				size_t n, b = c->rule_peer_base[2 * i + (size_t)dir];
				const struct sl_np_rule *rules = dir_rules(np, dir, &n);

				if (!selects(np, dir, ep->pod))
					continue;
				for (size_t j = 0; j < n && !err; j++) {
					uint32_t slot = reg_slot(c->reg, np, dir, (int)j);

					err = slot ? compile_rule(c, ep->ep_id, ep->pod, dir, &rules[j], b, slot) : -ENOMEM;
					b += rules[j].n_peers;
				}
			}
		}
	}
	return err;
}

static int polid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct sl_polid_key));
}

struct id_ent {
	struct sl_polid_key k;
	struct sl_polid_val v;
	bool pod;
};

/* By key; of two equal keys (a pod's /32 that is also an ipBlock prefix),
 * the pod's first: its class knows its selectors too. */
static int id_ent_cmp(const void *a, const void *b)
{
	const struct id_ent *x = a, *y = b;
	int d = polid_cmp(&x->k, &y->k);

	return d ? d : (int)y->pod - (int)x->pod;
}

static int polep_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct sl_polep_key));
}

static void polid_key(const struct sl_cidr *pfx, struct sl_polid_key *k)
{
	memset(k, 0, sizeof(*k));
	k->prefixlen = SL_POLID_KEY_BITS(pfx->len);
	k->family = pfx->ip.family;
	k->addr = pfx->ip.addr;
}

static void ep_key(const struct sl_ip *ip, struct sl_polep_key *k)
{
	memset(k, 0, sizeof(*k));
	k->addr = ip->addr;
	k->family = ip->family;
}

static int polport_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct sl_polport_key));
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* (endpoint, direction) as one sortable key */
static uint64_t ep_dir(uint32_t ep_id, unsigned int dir)
{
	return (uint64_t)ep_id << 1 | (dir & 1);
}

/* Is k in the sorted v[n]? */
static bool u64_in(const uint64_t *v, size_t n, uint64_t k)
{
	return n && bsearch(&k, v, n, sizeof(k), u64_cmp);
}

/* The protocols a rule may name, with the flag an endpoint carries that way
 * when none of its rules names one. */
static const struct {
	uint8_t proto;
	uint32_t none;
} rule_protos[] = {
	{ SL_IPPROTO_TCP, SL_EP_F_NO_TCP },
	{ SL_IPPROTO_UDP, SL_EP_F_NO_UDP },
	{ PROTO_SCTP, SL_EP_F_NO_SCTP },
};

#define N_RULE_PROTOS (sizeof(rule_protos) / sizeof(rule_protos[0]))

static uint64_t ep_dir_proto(uint32_t ep_id, unsigned int dir, uint8_t proto)
{
	return ep_dir(ep_id, dir) << 8 | proto;
}

/* A port-range block of the trie, for its endpoint's sl_polrange_v1 list. */
struct range_ent {
	struct sl_polrange_key k;
	uint32_t prefixlen;
	struct sl_polrange r;
};

static int range_ent_cmp(const void *a, const void *b)
{
	const struct range_ent *x = a, *y = b;
	int c = memcmp(&x->k, &y->k, sizeof(x->k));

	if (c)
		return c;
	if (x->prefixlen != y->prefixlen)
		return x->prefixlen > y->prefixlen ? -1 : 1;	/* longest first: the trie's order */
	return x->r.lo < y->r.lo ? -1 : x->r.lo > y->r.lo;
}

static int polrange_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct sl_polrange_key));
}

/* sl_polrange_v1 from the port-range blocks of the trie (the n_blocks rule
 * entries at blocks[]), and SL_EP_F_RANGE_LIST on each endpoint with ranges
 * whose every list fits SL_POLRANGE_N blocks (the others keep the trie, and
 * no list). */
static int emit_ranges(struct policy_tables *t, const size_t *blocks, size_t n_blocks)
{
	struct range_ent *v = calloc(n_blocks ? n_blocks : 1, sizeof(*v));
	uint32_t *too_many = calloc(n_blocks ? n_blocks : 1, sizeof(*too_many));	/* ep ids */
	size_t n_too_many = 0, n = 0;
	int err = -ENOMEM;

	t->range_keys = calloc(n_blocks ? n_blocks : 1, sizeof(*t->range_keys));
	t->range_vals = calloc(n_blocks ? n_blocks : 1, sizeof(*t->range_vals));
	if (!v || !too_many || !t->range_keys || !t->range_vals)
		goto out;
	for (size_t i = 0; i < n_blocks; i++) {
		const struct sl_polrule_key *k = &t->rule_keys[blocks[i]];
		uint16_t lo = ntohs(k->port);
		unsigned int bits;

		/* A block is a range's entry: longer than every port, shorter than one. */
		if (k->prefixlen <= SL_POLRULE_BITS - 16 || k->prefixlen >= SL_POLRULE_BITS) {
			err = -EINVAL;
			goto out;
		}
		bits = k->prefixlen - (SL_POLRULE_BITS - 16);

		v[i].k = (struct sl_polrange_key){ .ep_id = k->ep_id, .peer_id = k->peer_id, .dir = k->dir,
						   .proto = k->proto };
		v[i].prefixlen = k->prefixlen;
		v[i].r.lo = lo;
		v[i].r.hi = (uint16_t)(lo + (1u << (16 - bits)) - 1);
		v[i].r.slot = t->rule_vals[blocks[i]].slot;
	}
	if (n_blocks)
		qsort(v, n_blocks, sizeof(*v), range_ent_cmp);
	for (size_t i = 0, j; i < n_blocks; i = j) {
		for (j = i; j < n_blocks && !polrange_cmp(&v[j].k, &v[i].k); j++)
			;
		if (j - i > SL_POLRANGE_N) {
			too_many[n_too_many++] = v[i].k.ep_id;
			continue;
		}
		t->range_keys[n] = v[i].k;
		memset(&t->range_vals[n], 0, sizeof(t->range_vals[n]));
		t->range_vals[n].n = (uint32_t)(j - i);
		for (size_t q = i; q < j; q++)
			t->range_vals[n].r[q - i] = v[q].r;
		n++;
	}
	if (n_too_many)
		qsort(too_many, n_too_many, sizeof(*too_many), u32_cmp);
	/* Lists of an endpoint that stays on the trie are of no use: dropped. */
	t->n_ranges = 0;
	for (size_t i = 0; i < n; i++)
		if (!n_too_many || !bsearch(&t->range_keys[i].ep_id, too_many, n_too_many, sizeof(*too_many), u32_cmp)) {
			t->range_keys[t->n_ranges] = t->range_keys[i];
			t->range_vals[t->n_ranges++] = t->range_vals[i];
		}
	for (size_t i = 0; i < t->n_eps; i++) {
		struct sl_polep_val *e = &t->ep_vals[i];

		if (!(e->flags & SL_EP_F_NO_RANGES) &&
		    (!n_too_many || !bsearch(&e->ep_id, too_many, n_too_many, sizeof(*too_many), u32_cmp)))
			e->flags |= SL_EP_F_RANGE_LIST;
	}
	err = 0;
out:
	free(too_many);
	free(v);
	return err;
}

/* sl_polport_v1 from the rule entries of one port or every port, and the
 * endpoints' flags for lookups a decision may skip: SL_EP_F_NO_RANGES on
 * those with no other kind, SL_EP_F_NO_ANY_PEER, SL_EP_F_NO_ALL_PORTS and
 * SL_EP_F_NO_TCP/UDP/SCTP per direction without such entries; then
 * sl_polrange_v1 from the others. */
static int emit_ports(struct policy_tables *t)
{
	size_t cap = t->n_rules ? t->n_rules : 1, n = 0, n_ranged = 0, n_any = 0, n_all = 0;
	struct {
		struct sl_polport_key k;
		struct sl_polrule_val v;
	} *v = calloc(cap, sizeof(*v));
	uint32_t *ranged = calloc(cap, sizeof(*ranged));	/* ep ids with ranges */
	size_t *blocks = calloc(cap, sizeof(*blocks));		/* their entries' indexes */
	uint64_t *any = calloc(cap, sizeof(*any));		/* ep_dir()s with rules for every peer */
	uint64_t *all = calloc(cap, sizeof(*all));		/* ep_dir()s with entries of every port */
	uint64_t *named = calloc(cap, sizeof(*named));		/* ep_dir_proto()s of every entry */
	int err = -ENOMEM;

	t->port_keys = calloc(cap, sizeof(*t->port_keys));
	t->port_vals = calloc(cap, sizeof(*t->port_vals));
	if (!v || !ranged || !blocks || !any || !all || !named || !t->port_keys || !t->port_vals)
		goto out;
	for (size_t i = 0; i < t->n_rules; i++) {
		const struct sl_polrule_key *k = &t->rule_keys[i];

		named[i] = ep_dir_proto(k->ep_id, k->dir, k->proto);
		if (k->peer_id == SL_POLID_ANY)
			any[n_any++] = ep_dir(k->ep_id, k->dir);
		if (k->prefixlen != SL_POLRULE_BITS && k->prefixlen != SL_POLRULE_BITS - 16) {
			blocks[n_ranged] = i;
			ranged[n_ranged++] = k->ep_id;
			continue;
		}
		if (!k->port)
			all[n_all++] = ep_dir(k->ep_id, k->dir);
		memset(&v[n], 0, sizeof(v[n]));
		v[n].k = (struct sl_polport_key){ .ep_id = k->ep_id, .peer_id = k->peer_id, .dir = k->dir,
						  .proto = k->proto, .port = k->port };
		v[n++].v = t->rule_vals[i];
	}
	if (n)
		qsort(v, n, sizeof(*v), polport_cmp);
	for (size_t i = 0; i < n; i++) {
		t->port_keys[i] = v[i].k;
		t->port_vals[i] = v[i].v;
	}
	t->n_ports = n;
	if (n_ranged)
		qsort(ranged, n_ranged, sizeof(*ranged), u32_cmp);
	if (n_any)
		qsort(any, n_any, sizeof(*any), u64_cmp);
	if (n_all)
		qsort(all, n_all, sizeof(*all), u64_cmp);
	if (t->n_rules)
		qsort(named, t->n_rules, sizeof(*named), u64_cmp);
	for (size_t i = 0; i < t->n_eps; i++) {
		struct sl_polep_val *e = &t->ep_vals[i];

		if (!n_ranged || !bsearch(&e->ep_id, ranged, n_ranged, sizeof(*ranged), u32_cmp))
			e->flags |= SL_EP_F_NO_RANGES;
		for (unsigned int dir = SL_DIR_INGRESS; dir <= SL_DIR_EGRESS; dir++) {
			if (!u64_in(any, n_any, ep_dir(e->ep_id, dir)))
				e->flags |= SL_EP_F_DIR(SL_EP_F_NO_ANY_PEER, dir);
			if (!u64_in(all, n_all, ep_dir(e->ep_id, dir)))
				e->flags |= SL_EP_F_DIR(SL_EP_F_NO_ALL_PORTS, dir);
			for (size_t p = 0; p < N_RULE_PROTOS; p++)
				if (!u64_in(named, t->n_rules, ep_dir_proto(e->ep_id, dir, rule_protos[p].proto)))
					e->flags |= SL_EP_F_DIR(rule_protos[p].none, dir);
		}
	}
	err = emit_ranges(t, blocks, n_ranged);
out:
	free(named);
	free(blocks);
	free(all);
	free(any);
	free(ranged);
	free(v);
	return err;
}

/* Key-sorted parallel arrays from the compile's entries. */
static int emit_tables(struct cc *c, struct policy *p)
{
	struct policy_tables *t = &p->t;
	size_t n_ep_keys = 0;
	struct {
		struct sl_polep_key k;
		struct sl_polep_val v;
	} *eps;
	struct id_ent *ids;

	ids = calloc(c->n_atoms ? c->n_atoms : 1, sizeof(*ids));
	for (size_t e = 0; e < p->n_eps; e++)
		n_ep_keys += p->eps[e].pod->n_ips;
	eps = calloc(n_ep_keys ? n_ep_keys : 1, sizeof(*eps));
	t->id_keys = calloc(c->n_atoms ? c->n_atoms : 1, sizeof(*t->id_keys));
	t->id_vals = calloc(c->n_atoms ? c->n_atoms : 1, sizeof(*t->id_vals));
	t->ep_keys = calloc(n_ep_keys ? n_ep_keys : 1, sizeof(*t->ep_keys));
	t->ep_vals = calloc(n_ep_keys ? n_ep_keys : 1, sizeof(*t->ep_vals));
	t->rule_keys = calloc(c->n_rules ? c->n_rules : 1, sizeof(*t->rule_keys));
	t->rule_vals = calloc(c->n_rules ? c->n_rules : 1, sizeof(*t->rule_vals));
	if (!ids || !eps || !t->id_keys || !t->id_vals || !t->ep_keys || !t->ep_vals || !t->rule_keys ||
	    !t->rule_vals) {
		free(ids);
		free(eps);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->n_atoms; i++) {
		polid_key(&c->atoms[i].pfx, &ids[i].k);
		ids[i].v.id = c->classes[c->atoms[i].klass].id;
		ids[i].pod = c->atoms[i].pod;
	}
	qsort(ids, c->n_atoms, sizeof(*ids), id_ent_cmp);
	for (size_t i = 0; i < c->n_atoms; i++) {
		if (t->n_ids && !polid_cmp(&t->id_keys[t->n_ids - 1], &ids[i].k))
			continue;	/* the pod's entry came first */
		t->id_keys[t->n_ids] = ids[i].k;
		t->id_vals[t->n_ids++] = ids[i].v;
	}
	n_ep_keys = 0;
	for (size_t e = 0; e < p->n_eps; e++) {
		const struct policy_ep *ep = &p->eps[e];

		for (size_t j = 0; j < ep->pod->n_ips; j++) {
			ep_key(&ep->pod->ips[j], &eps[n_ep_keys].k);
			eps[n_ep_keys].v.ep_id = ep->ep_id;
			eps[n_ep_keys].v.flags = ep->flags;
			for (int dir = 0; dir < 2; dir++)
				if (ep->isolated_by[dir])
					eps[n_ep_keys].v.deny_slot[dir] = reg_slot(c->reg, ep->isolated_by[dir], dir, -1);
			n_ep_keys++;
		}
	}
	qsort(eps, n_ep_keys, sizeof(*eps), polep_cmp);
	for (size_t i = 0; i < n_ep_keys; i++) {
		t->ep_keys[t->n_eps] = eps[i].k;
		t->ep_vals[t->n_eps++] = eps[i].v;
	}
	if (c->n_rules)
		qsort(c->rules, c->n_rules, sizeof(*c->rules), rule_ent_cmp);
	for (size_t i = 0; i < c->n_rules; i++) {
		if (t->n_rules && !memcmp(&t->rule_keys[t->n_rules - 1], &c->rules[i].k, sizeof(c->rules[i].k)))
			continue;
		t->rule_keys[t->n_rules] = c->rules[i].k;
		t->rule_vals[t->n_rules++] = c->rules[i].v;
	}
	free(ids);
	free(eps);
	return emit_ports(t);
}

static void cc_free(struct cc *c)
{
	for (size_t i = 0; i < c->n_classes; i++)
		free(c->classes[i].sig);
	free(c->classes);
	bmap_free(&c->class_ix);
	free(c->peers);
	free(c->nports);
	free(c->atoms);
	free(c->rules);
	free(c->rule_peer_base);
	free(c->relevant);
}

int policy_compile(const struct sl_model *m, const char *node, enum policy_scope scope,
		   struct policy_registry *reg, struct policy **out, struct diags *errs)
{
	struct cc c = { .m = m, .reg = reg };
	struct policy *p = calloc(1, sizeof(*p));
	int err;

	*out = NULL;
	c.relevant = calloc(m->res->n_netpols + 1, sizeof(*c.relevant));
	if (!p || !c.relevant) {
		free(p);
		cc_free(&c);
		return -ENOMEM;
	}
	p->model = m;
	p->scope = scope;
	p->n_policies = m->res->n_netpols;
	err = compile_eps(&c, node, scope, p);
	if (!err)
		err = collect_peers(&c);
	if (!err)
		err = build_atoms(&c);
	if (!err)
		err = compile_rules(&c, p);
	if (!err)
		err = emit_tables(&c, p);
	for (size_t i = 0; i < m->res->n_netpols; i++)
		p->n_local_policies += c.relevant[i];
	p->n_identities = c.n_classes;
	cc_free(&c);
	if (err == -E2BIG)
		diags_add(errs, NULL, 0, "NetworkPolicy: more than %d compiled rule entries (sl_polrule_v1 is full)",
			  SL_POLRULE_MAX);
	else if (err && err != -ENOMEM)
		diags_add(errs, NULL, 0, "NetworkPolicy: compile failed: %s", strerror(-err));
	if (err) {
		policy_free(p);
		return err;
	}
	*out = p;
	return 0;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	free(p->t.id_keys);
	free(p->t.id_vals);
	free(p->t.ep_keys);
	free(p->t.ep_vals);
	free(p->t.rule_keys);
	free(p->t.rule_vals);
	free(p->t.port_keys);
	free(p->t.port_vals);
	free(p->t.range_keys);
	free(p->t.range_vals);
	free(p->eps);
	free(p);
}

/* ---- lookups over the compiled tables, as the kernel does them ---- */

static uint32_t peer_identity(const struct policy_tables *t, const struct sl_ip *ip)
{
	unsigned int max = ip->family == SL_AF_INET ? 32 : 128;

	for (int len = (int)max; len >= 0; len--) {
		struct sl_cidr c = { .ip = *ip, .len = (uint8_t)len };
		struct sl_polid_key k;
		const struct sl_polid_key *hit;

		for (int i = 0; i < 16; i++) {	/* clear the host bits, as the trie ignores them */
			int keep = len - 8 * i;

			if (keep <= 0)
				c.ip.addr.octets[i] = 0;
			else if (keep < 8)
				c.ip.addr.octets[i] &= (uint8_t)(0xff << (8 - keep));
		}
		polid_key(&c, &k);
		hit = bsearch(&k, t->id_keys, t->n_ids, sizeof(k), polid_cmp);
		if (hit)
			return t->id_vals[hit - t->id_keys].id;
	}
	return SL_POLID_WORLD;
}

static int rule_key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct sl_polrule_key));
}

static const struct sl_polrule_val *rule_find(const struct policy_tables *t, uint32_t ep, uint32_t peer, int dir,
					      uint8_t proto, uint16_t port)
{
	for (int bits = 16; bits >= 0; bits--) {
		struct sl_polrule_key k = {
			.prefixlen = SL_POLRULE_BITS - 16 + (uint32_t)bits,
			.ep_id = ep,
			.peer_id = peer,
			.dir = (uint8_t)dir,
			.proto = proto,
			.port = htons(bits ? (uint16_t)(port & (0xffff << (16 - bits))) : 0),
		};
		const struct sl_polrule_key *hit = bsearch(&k, t->rule_keys, t->n_rules, sizeof(k), rule_key_cmp);

		if (hit)
			return &t->rule_vals[hit - t->rule_keys];
	}
	return NULL;
}

static const struct sl_polrule_val *port_find(const struct policy_tables *t, uint32_t ep, uint32_t peer, int dir,
					      uint8_t proto, uint16_t port)
{
	struct sl_polport_key k = { .ep_id = ep, .peer_id = peer, .dir = (uint8_t)dir, .proto = proto,
				    .port = htons(port) };
	const struct sl_polport_key *hit = bsearch(&k, t->port_keys, t->n_ports, sizeof(k), polport_cmp);

	return hit ? &t->port_vals[hit - t->port_keys] : NULL;
}

static bool range_find(const struct policy_tables *t, uint32_t ep, uint32_t peer, int dir, uint8_t proto,
		       uint16_t port, uint32_t *slot)
{
	struct sl_polrange_key k = { .ep_id = ep, .peer_id = peer, .dir = (uint8_t)dir, .proto = proto };
	const struct sl_polrange_key *hit = bsearch(&k, t->range_keys, t->n_ranges, sizeof(k), polrange_cmp);
	const struct sl_polrange_val *v = hit ? &t->range_vals[hit - t->range_keys] : NULL;

	for (uint32_t i = 0; v && i < v->n && i < SL_POLRANGE_N; i++)
		if (port >= v->r[i].lo && port <= v->r[i].hi) {
			*slot = v->r[i].slot;
			return true;
		}
	return false;
}

static bool found(const struct sl_polrule_val *r, uint32_t *slot)
{
	if (r)
		*slot = r->slot;
	return r;
}

/* As the kernel's pol_proto_unruled(). */
static bool proto_unruled(const struct sl_polep_val *ep, int dir, uint8_t proto)
{
	for (size_t p = 0; p < N_RULE_PROTOS; p++)
		if (rule_protos[p].proto == proto)
			return ep->flags & SL_EP_F_DIR(rule_protos[p].none, dir);
	return false;
}

/* As the kernel's pol_rule(): the hash tables for endpoints without ranges
 * or with SL_EP_F_RANGE_LIST (port, range blocks, every port), the LPM trie
 * for the others; the every-port entry only when there is one. */
static bool rule_pick(const struct policy_tables *t, const struct sl_polep_val *ep, uint32_t peer, int dir,
		      uint8_t proto, uint16_t port, uint32_t *slot)
{
	if (!(ep->flags & (SL_EP_F_NO_RANGES | SL_EP_F_RANGE_LIST)))
		return found(rule_find(t, ep->ep_id, peer, dir, proto, port), slot);
	if (found(port_find(t, ep->ep_id, peer, dir, proto, port), slot))
		return true;
	if (!(ep->flags & SL_EP_F_NO_RANGES) && range_find(t, ep->ep_id, peer, dir, proto, port, slot))
		return true;
	if (ep->flags & SL_EP_F_DIR(SL_EP_F_NO_ALL_PORTS, dir))
		return false;
	return found(port_find(t, ep->ep_id, peer, dir, proto, 0), slot);
}

int policy_lookup(const struct policy *p, int dir, const struct sl_ip *local, const struct sl_ip *peer,
		  uint16_t port, uint8_t proto, uint32_t *slot)
{
	const struct policy_tables *t = &p->t;
	const struct sl_polep_key *hit;
	const struct sl_polep_val *ep;
	struct sl_polep_key k;
	uint32_t id, rslot = 0;
	bool allowed;

	*slot = 0;
	ep_key(local, &k);
	hit = bsearch(&k, t->ep_keys, t->n_eps, sizeof(k), polep_cmp);
	if (!hit)
		return -ENOENT;
	ep = &t->ep_vals[hit - t->ep_keys];
	if (!(ep->flags & (dir == SL_DIR_INGRESS ? SL_EP_F_ISO_IN : SL_EP_F_ISO_OUT)))
		return 1;
	allowed = false;
	if (!proto_unruled(ep, dir, proto)) {
		id = peer_identity(t, peer);
		allowed = rule_pick(t, ep, id, dir, proto, port, &rslot);
		if (!allowed && !(ep->flags & SL_EP_F_DIR(SL_EP_F_NO_ANY_PEER, dir)))
			allowed = rule_pick(t, ep, SL_POLID_ANY, dir, proto, port, &rslot);
	}
	if (allowed) {
		*slot = rslot;
		return 1;
	}
	*slot = ep->deny_slot[dir];
	return 0;
}
