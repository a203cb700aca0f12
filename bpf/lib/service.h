/* SPDX-License-Identifier: Apache-2.0 */
/* service.h - Service frontends and their backend slots, and how a backend is
 * chosen: at random among the ready ones (kube-proxy), or the client's earlier
 * choice under sessionAffinity ClientIP.
 *
 * Maps:
 *   sl_svc_v1  VIP:port:proto -> frontend.  Written by: agent sync. Read by: sock_lb.
 *   sl_be_v1   (svc id, slot) -> backend.   Written by: agent sync. Read by: sock_lb.
 *   sl_aff_v1  (netns, svc id) -> choice.   Written by: sock_lb. LRU, pinned so a
 *              restarted agent keeps clients on their backends.
 * The agent grows a frontend by writing slots before count, and shrinks it by
 * lowering count before deleting slots, so a reader never sees a hole.
 */
#ifndef SL_BPF_SERVICE_H
#define SL_BPF_SERVICE_H

#include "common.h"
#include "metrics.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sl_svc_key);
	__type(value, struct sl_svc_val);
	__uint(max_entries, SL_SVC_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_svc_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sl_be_key);
	__type(value, struct sl_be_val);
	__uint(max_entries, SL_BE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_be_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sl_aff_key);
	__type(value, struct sl_sticky_val);
	__uint(max_entries, SL_AFF_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_aff_v1 SEC(".maps");

/* What lb_select() decided. */
enum lb_verdict {
	LB_NOT_SERVICE = 0,	/* not a VIP: leave the socket alone */
	LB_XLATE,		/* translate to *be */
	LB_REFUSE,		/* a VIP with no ready backend */
};

static __always_inline bool be_equal(const struct sl_be_val *a, const struct sl_be_val *b)
{
	return a->addr.v6[0] == b->addr.v6[0] && a->addr.v6[1] == b->addr.v6[1] &&
	       a->addr.v6[2] == b->addr.v6[2] && a->addr.v6[3] == b->addr.v6[3] &&
	       a->port == b->port && a->family == b->family;
}

struct slot_search {
	__u32 svc_id;
	__u32 count;
	const struct sl_be_val *want;
	__s64 found;
};

static long slot_search_cb(__u32 i, void *arg)
{
	struct slot_search *s = arg;
	struct sl_be_key k = { .svc_id = s->svc_id, .slot = i };
	struct sl_be_val *be;

	if (i >= s->count)
		return 1;
	be = bpf_map_lookup_elem(&sl_be_v1, &k);
	if (be && be_equal(be, s->want)) {
		s->found = i;
		return 1;
	}
	return 0;
}

/* Is the remembered backend still one of svc's ready backends? Checks the slot
 * hint first; after a sync moved it, finds its new slot (rare, bounded by count).
 * Updates st->slot. */
static __always_inline bool sticky_still_valid(__u32 svc_id, const struct sl_svc_val *svc,
					       struct sl_sticky_val *st)
{
	struct sl_be_key k = { .svc_id = svc_id, .slot = st->slot };
	struct slot_search s = { .svc_id = svc_id, .count = svc->count, .want = &st->be, .found = -1 };
	struct sl_be_val *be;

	if (st->slot < svc->count) {
		be = bpf_map_lookup_elem(&sl_be_v1, &k);
		if (be && be_equal(be, &st->be))
			return true;
	}
	bpf_loop(svc->count, slot_search_cb, &s, 0);
	if (s.found < 0)
		return false;
	st->slot = (__u32)s.found;
	return true;
}

/* A random ready backend of svc into *out; false if a slot below count is
 * missing (an agent bug: callers fail open). */
static __always_inline bool lb_pick_random(__u32 svc_id, const struct sl_svc_val *svc,
					   struct sl_sticky_val *out)
{
	struct sl_be_key k = { .svc_id = svc_id };
	struct sl_be_val *be;

	k.slot = bpf_get_prandom_u32() % svc->count;
	be = bpf_map_lookup_elem(&sl_be_v1, &k);
	if (!be) {
		metrics_inc(SL_CNT_LB_BAD_SLOT);
		return false;
	}
	out->be = *be;
	out->slot = k.slot;
	return true;
}

/* The backend for this client under sessionAffinity: its earlier choice while
 * that is fresh and still ready, else a new random one, remembered. */
static __always_inline bool lb_pick_affinity(void *ctx, __u32 svc_id, const struct sl_svc_val *svc,
					     struct sl_sticky_val *out)
{
	struct sl_aff_key ak = { .netns_cookie = bpf_get_netns_cookie(ctx), .svc_id = svc_id };
	__u64 now = bpf_ktime_get_boot_ns();
	struct sl_sticky_val *st = bpf_map_lookup_elem(&sl_aff_v1, &ak);

	if (st && now - st->last_used_ns <= (__u64)svc->aff_timeout * 1000000000ULL) {
		*out = *st;
		if (sticky_still_valid(svc_id, svc, out)) {
			metrics_inc(SL_CNT_LB_AFF_HIT);
			goto remember;
		}
	}
	metrics_inc(SL_CNT_LB_AFF_MISS);
	if (!lb_pick_random(svc_id, svc, out))
		return false;
remember:
	out->last_used_ns = now;
	bpf_map_update_elem(&sl_aff_v1, &ak, out, BPF_ANY);
	return true;
}

/* Look up key as a Service frontend and choose a backend into *out.
 * Returns LB_NOT_SERVICE, LB_REFUSE, or LB_XLATE with *out and *svc_id set. */
static __always_inline enum lb_verdict lb_select_flags(void *ctx, const struct sl_svc_key *key,
						       struct sl_sticky_val *out, __u32 *svc_id,
						       __u16 *flags)
{
	struct sl_svc_val *svc = bpf_map_lookup_elem(&sl_svc_v1, key);

	if (!svc)
		return LB_NOT_SERVICE;
	*svc_id = svc->svc_id;
	*flags = svc->flags;
	if (svc->count == 0) {
		metrics_inc(SL_CNT_LB_NO_BACKEND);
		return LB_REFUSE;
	}
	if (svc->flags & SL_SVC_F_AFFINITY) {
		if (!lb_pick_affinity(ctx, svc->svc_id, svc, out))
			return LB_NOT_SERVICE;
	} else if (!lb_pick_random(svc->svc_id, svc, out)) {
		return LB_NOT_SERVICE;
	}
	return LB_XLATE;
}

static __always_inline enum lb_verdict lb_select(void *ctx, const struct sl_svc_key *key,
						 struct sl_sticky_val *out, __u32 *svc_id)
{
	__u16 flags;

	return lb_select_flags(ctx, key, out, svc_id, &flags);
}

/* For an unconnected UDP socket that already sends to this VIP: the backend it
 * was given, while fresh and ready (conntrack keeps a UDP flow on one backend). */
static __always_inline bool lb_udp_flow_valid(const struct sl_svc_key *key,
					      struct sl_sticky_val *st)
{
	struct sl_svc_val *svc = bpf_map_lookup_elem(&sl_svc_v1, key);

	return svc && svc->count && sticky_still_valid(svc->svc_id, svc, st);
}

#endif
