/* SPDX-License-Identifier: Apache-2.0 */
/* policy.h - NetworkPolicy in the kernel: the compiled tables (see abi.h and
 * user/policy.c) and the decision every hook makes with them.
 *
 * Maps (all pinned; written by the agent's policy sync unless said):
 *   sl_polid_v1    LPM: address -> peer identity
 *   sl_polep_v1    local pod address -> endpoint (id, isolation, deny slots)
 *   sl_polrule_v1  LPM: {endpoint, dir, proto, identity, port} -> allowing rule's slot
 *   sl_polport_v1  hash: the single-port and every-port entries again
 *   sl_polrange_v1 hash: {endpoint, dir, proto, identity} -> its port-range blocks
 *   sl_polstat_v1  per-CPU array: slot -> count. Written by: every hook.
 *   sl_polct_v1    LRU: UDP flows let through, for their replies. Written by: TC hooks.
 *   sl_polctport_v1 array: the local ports of those flows, per side, one bit
 *                  each: most non-replies need no LRU lookup. Written by: TC hooks.
 *   sl_polev_v1    ring buffer: denies, for the agent's log. Written by: every hook.
 *
 * A decision costs one hash lookup for a pod that is not isolated. For one
 * that is: the peer's identity (LPM), then its rules: one hash lookup when
 * the endpoint has no port ranges, no rule for every peer and no every-port
 * entry (the flags in sl_polep_v1 say so), at most six otherwise (hash
 * lookups and a scan of at most SL_POLRANGE_N blocks; LPM lookups only for an
 * endpoint with more blocks than that), with 10 rules or 10,000.
 */
#ifndef SL_BPF_POLICY_H
#define SL_BPF_POLICY_H

#include "common.h"
#include "metrics.h"
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct sl_polid_key);
	__type(value, struct sl_polid_val);
	__uint(max_entries, SL_POLID_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polid_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sl_polep_key);
	__type(value, struct sl_polep_val);
	__uint(max_entries, SL_POLEP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polep_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct sl_polrule_key);
	__type(value, struct sl_polrule_val);
	__uint(max_entries, SL_POLRULE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polrule_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sl_polport_key);
	__type(value, struct sl_polrule_val);
	__uint(max_entries, SL_POLRULE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polport_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sl_polrange_key);
	__type(value, struct sl_polrange_val);
	__uint(max_entries, SL_POLRANGE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polrange_v1 SEC(".maps");

/* An array: the agent numbers slots densely from 1, and the verifier inlines
 * a per-CPU array's lookup (no hash per counted packet). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sl_polstat);
	__uint(max_entries, SL_POLSTAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polstat_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sl_polct_key);
	__type(value, struct sl_polct_val);
	__uint(max_entries, SL_POLCT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polct_v1 SEC(".maps");

/* An array: the verifier inlines its lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sl_polct_ports);
	__uint(max_entries, 2);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polctport_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polev_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sl_polev_budget);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_polevrl_v1 SEC(".maps");

/* What a hook knows of a new connection or datagram. local is the policed
 * pod's address (source for egress, destination for ingress). */
struct pol_flow {
	struct sl_addr saddr, daddr;
	__be16 sport, dport;
	__u8 family, proto, dir;
};

/* The policy's view of a parsed packet, judged in dir. */
static __always_inline void pol_flow_of(struct pol_flow *pf, const struct flow *f, __u8 dir)
{
	pf->saddr = f->saddr;
	pf->daddr = f->daddr;
	pf->sport = f->sport;
	pf->dport = f->dport;
	pf->family = f->family;
	pf->proto = f->proto;
	pf->dir = dir;
}

enum pol_verdict {
	POL_NOT_POLICED = 0,	/* not a pod under policy here, or not isolated that way */
	POL_ALLOW,
	POL_DENY,
};

static __always_inline struct sl_polep_val *pol_endpoint(const struct sl_addr *a, __u8 family)
{
	struct sl_polep_key k = {};

	k.addr = *a;
	k.family = family;
	return bpf_map_lookup_elem(&sl_polep_v1, &k);
}

static __always_inline void pol_count(__u32 slot)
{
	struct sl_polstat *s;

	if (!slot)
		return;
	s = bpf_map_lookup_elem(&sl_polstat_v1, &slot);
	if (s)
		s->packets++;	/* per-CPU: no atomic needed */
}

/* May this CPU send one more deny event? A token bucket per CPU: a flood of
 * denied packets is dropped and counted at full speed, but only a trickle
 * of events reaches the agent. The coarse clock (a tick's resolution, far
 * below a token's 20 ms) reads no clock source: under a flood every denied
 * packet asks, and reading the TSC (in a VM a slow read) cost about a tenth
 * of an XDP drop. */
static __always_inline bool pol_event_budget(void)
{
	__u32 zero = 0;
	struct sl_polev_budget *b = bpf_map_lookup_elem(&sl_polevrl_v1, &zero);
	__u64 now = bpf_ktime_get_coarse_ns(), add;

	if (!b)
		return false;
	/* The division only when a token is due: not for every packet of a flood. */
	if (now - b->last_ns >= SL_POLEV_NS_PER_TOKEN) {
		add = (now - b->last_ns) / SL_POLEV_NS_PER_TOKEN;
		b->tokens = b->tokens + add > SL_POLEV_BURST ? SL_POLEV_BURST : b->tokens + add;
		b->last_ns += add * SL_POLEV_NS_PER_TOKEN;
	}
	if (!b->tokens) {
		metrics_inc(SL_CNT_POL_EV_LIMITED);
		return false;
	}
	b->tokens--;
	return true;
}

static __always_inline void pol_event(const struct pol_flow *f, __u32 slot, __u8 hook)
{
	struct sl_polev *ev;

	if (!pol_event_budget())
		return;
	ev = bpf_ringbuf_reserve(&sl_polev_v1, sizeof(*ev), 0);
	if (!ev) {
		metrics_inc(SL_CNT_POL_EV_LOST);
		return;
	}
	ev->saddr = f->saddr;
	ev->daddr = f->daddr;
	ev->sport = f->sport;
	ev->dport = f->dport;
	ev->family = f->family;
	ev->proto = f->proto;
	ev->dir = f->dir;
	ev->hook = hook;
	ev->slot = slot;
	ev->pad = 0;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline __u32 pol_peer_identity(const struct sl_addr *a, __u8 family)
{
	struct sl_polid_key k = {};
	struct sl_polid_val *v;

	k.prefixlen = SL_POLID_KEY_BITS(family == AF_INET ? 32 : 128);
	k.family = family;
	k.addr = *a;
	v = bpf_map_lookup_elem(&sl_polid_v1, &k);
	return v ? v->id : SL_POLID_WORLD;
}

static __always_inline struct sl_polrule_val *pol_rule_lpm(__u32 ep, __u32 peer, __u8 dir, __u8 proto, __be16 port)
{
	struct sl_polrule_key k = {
		.prefixlen = SL_POLRULE_BITS,
		.ep_id = ep,
		.peer_id = peer,
		.dir = dir,
		.proto = proto,
		.port = port,
	};

	return bpf_map_lookup_elem(&sl_polrule_v1, &k);
}

static __always_inline struct sl_polrule_val *pol_rule_port(__u32 ep, __u32 peer, __u8 dir, __u8 proto, __be16 port)
{
	struct sl_polport_key k = { .ep_id = ep, .peer_id = peer, .dir = dir, .proto = proto, .port = port };

	return bpf_map_lookup_elem(&sl_polport_v1, &k);
}

/* Does one of ep's port-range blocks for peer/dir/proto hold port (network
 * order)? The first that does (the longest prefix) gives *slot. */
static __always_inline bool pol_rule_range(__u32 ep, __u32 peer, __u8 dir, __u8 proto, __be16 port, __u32 *slot)
{
	struct sl_polrange_key k = { .ep_id = ep, .peer_id = peer, .dir = dir, .proto = proto };
	struct sl_polrange_val *v = bpf_map_lookup_elem(&sl_polrange_v1, &k);
	__u16 p = bpf_ntohs(port);

	if (!v)
		return false;
	for (__u32 i = 0; i < SL_POLRANGE_N; i++) {
		if (i >= v->n)
			break;
		if (p >= v->r[i].lo && p <= v->r[i].hi) {
			*slot = v->r[i].slot;
			return true;
		}
	}
	return false;
}

static __always_inline bool pol_found(const struct sl_polrule_val *r, __u32 *slot)
{
	if (!r)
		return false;
	*slot = r->slot;
	return true;
}

/* Is there a rule allowing proto/port from peer at ep? Its slot into *slot.
 * An endpoint whose rules are all single ports or every port
 * (SL_EP_F_NO_RANGES) costs hash lookups only, as does one whose ranges are
 * in sl_polrange_v1 (SL_EP_F_RANGE_LIST): its port, its blocks, every port,
 * the trie's order of longest match; else the LPM trie decides. The
 * every-port entry is looked up only when the endpoint has one that way. */
static __always_inline bool pol_rule(const struct sl_polep_val *ep, __u32 peer, __u8 dir, __u8 proto,
				     __be16 port, __u32 *slot)
{
	if (!(ep->flags & (SL_EP_F_NO_RANGES | SL_EP_F_RANGE_LIST)))
		return pol_found(pol_rule_lpm(ep->ep_id, peer, dir, proto, port), slot);
	if (pol_found(pol_rule_port(ep->ep_id, peer, dir, proto, port), slot))
		return true;
	if (!(ep->flags & SL_EP_F_NO_RANGES) && pol_rule_range(ep->ep_id, peer, dir, proto, port, slot))
		return true;
	if (ep->flags & SL_EP_F_DIR(SL_EP_F_NO_ALL_PORTS, dir))
		return false;
	return pol_found(pol_rule_port(ep->ep_id, peer, dir, proto, 0), slot);
}

/* Does no rule of ep in dir name proto (SL_EP_F_NO_TCP and the others)? */
static __always_inline bool pol_proto_unruled(const struct sl_polep_val *ep, __u8 dir, __u8 proto)
{
	__u32 flag = proto == IPPROTO_TCP ? SL_EP_F_NO_TCP :
		     proto == IPPROTO_UDP ? SL_EP_F_NO_UDP :
		     proto == IPPROTO_SCTP ? SL_EP_F_NO_SCTP : 0;

	return ep->flags & SL_EP_F_DIR(flag, dir);
}

/* Is there a rule allowing proto/port from peer (an address of family) at
 * ep (its own rules first, then those for every peer when ep has any)? Its
 * slot into *slot. A protocol no rule names costs no lookup at all. */
static __always_inline bool pol_allowing_rule(const struct sl_polep_val *ep, const struct sl_addr *peer,
					      __u8 family, __u8 dir, __u8 proto, __be16 port, __u32 *slot)
{
	__u32 id;

	if (pol_proto_unruled(ep, dir, proto))
		return false;
	id = pol_peer_identity(peer, family);
	if (pol_rule(ep, id, dir, proto, port, slot))
		return true;
	if (ep->flags & SL_EP_F_DIR(SL_EP_F_NO_ANY_PEER, dir))
		return false;
	return pol_rule(ep, SL_POLID_ANY, dir, proto, port, slot);
}

/* The decision for f at ep (already looked up, isolated for f->dir or not).
 * Counts the deciding slot and reports a deny (ring buffer). */
static __always_inline enum pol_verdict pol_decide(const struct sl_polep_val *ep, const struct pol_flow *f,
						   __u8 hook)
{
	const struct sl_addr *peer = f->dir == SL_DIR_INGRESS ? &f->saddr : &f->daddr;
	__u32 flag = f->dir == SL_DIR_INGRESS ? SL_EP_F_ISO_IN : SL_EP_F_ISO_OUT;
	__u32 slot = 0;

	if (!(ep->flags & flag))
		return POL_NOT_POLICED;
	if (pol_allowing_rule(ep, peer, f->family, f->dir, f->proto, f->dport, &slot)) {
		pol_count(slot);
		metrics_inc(SL_CNT_POL_ALLOW);
		return POL_ALLOW;
	}
	slot = f->dir == SL_DIR_INGRESS ? ep->deny_slot[0] : ep->deny_slot[1];
	pol_count(slot);
	metrics_inc(SL_CNT_POL_DENY);
	pol_event(f, slot, hook);
	return POL_DENY;
}

/* ---- UDP replies (TC hooks only) ---- */

static __always_inline void pol_ct_key(struct sl_polct_key *k, const struct pol_flow *f, bool reverse, __u8 side)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (reverse) {
		k->saddr = f->daddr;
		k->daddr = f->saddr;
		k->sport = f->dport;
		k->dport = f->sport;
	} else {
		k->saddr = f->saddr;
		k->daddr = f->daddr;
		k->sport = f->sport;
		k->dport = f->dport;
	}
	k->family = f->family;
	k->proto = f->proto;
	k->side = side;
}

/* The policed pod's port of f: the destination's at ingress, the source's at
 * egress. A reply's local port is its request's. */
static __always_inline __be16 pol_local_port(const struct pol_flow *f)
{
	return f->dir == SL_DIR_INGRESS ? f->dport : f->sport;
}

/* The word of sl_polctport_v1 that holds port's bit on side (NULL: none). */
static __always_inline __u64 *pol_ct_port_word(__u32 side, __be16 port)
{
	struct sl_polct_ports *p = bpf_map_lookup_elem(&sl_polctport_v1, &side);

	return p ? &p->bits[SL_POLCT_PORT_WORD(port)] : NULL;
}

/* May side have recorded a flow of local port port? false is certain. */
static __always_inline bool pol_ct_port_maybe(__u32 side, __be16 port)
{
	__u64 *w = pol_ct_port_word(side, port);

	return !w || (*w & SL_POLCT_PORT_BIT(port));
}

static __always_inline void pol_ct_port_mark(__u32 side, __be16 port)
{
	__u64 *w = pol_ct_port_word(side, port);

	if (w && !(*w & SL_POLCT_PORT_BIT(port)))	/* read first: no locked write per datagram */
		__sync_fetch_and_or(w, SL_POLCT_PORT_BIT(port));
}

/* Is f a reply to a flow this pod's other hook let through? A pod's
 * ingress reply answers its egress flow, and the other way round. */
static __always_inline bool pol_ct_reply(const struct pol_flow *f)
{
	__u32 side = f->dir == SL_DIR_INGRESS ? SL_DIR_EGRESS : SL_DIR_INGRESS;
	struct sl_polct_key k;
	struct sl_polct_val *v;
	__u64 now;

	if (!pol_ct_port_maybe(side, pol_local_port(f)))
		return false;
	pol_ct_key(&k, f, true, (__u8)side);
	v = bpf_map_lookup_elem(&sl_polct_v1, &k);
	if (!v)
		return false;
	now = bpf_ktime_get_boot_ns();
	if (now - v->last_ns > SL_POLCT_TIMEOUT_NS)
		return false;
	v->last_ns = now;
	return true;
}

/* Remember f (let through at this pod's f->dir hook) so that its replies
 * pass the pod's other hook, when that one is isolated. */
static __always_inline void pol_ct_record(const struct sl_polep_val *ep, const struct pol_flow *f)
{
	__u32 other = f->dir == SL_DIR_INGRESS ? SL_EP_F_ISO_OUT : SL_EP_F_ISO_IN;
	struct sl_polct_val v = { .last_ns = bpf_ktime_get_boot_ns() }, *old;
	struct sl_polct_key k;

	if (f->proto != IPPROTO_UDP || !(ep->flags & other))
		return;
	/* the port's bit before the flow: a reply that finds the flow finds the bit */
	pol_ct_port_mark(f->dir, pol_local_port(f));
	pol_ct_key(&k, f, false, f->dir);
	/* Refresh a known flow in place: an LRU hash update takes a new
	 * element off the free list (evicting when it is empty) for every
	 * datagram, even when the key is already there. */
	old = bpf_map_lookup_elem(&sl_polct_v1, &k);
	if (old) {
		old->last_ns = v.last_ns;
		return;
	}
	bpf_map_update_elem(&sl_polct_v1, &k, &v, BPF_ANY);
}

#endif
