/* SPDX-License-Identifier: Apache-2.0 */
/* mesh.h - capture of enrolled pods' connections into the agent.
 *
 * Maps:
 *   sl_netns_v1    netns cookie -> enrolled pod. Written by: agent (pods).
 *                  Read by: sock_lb. Pinned.
 *   sl_sk_orig_v1  socket storage: a captured socket's original destination.
 *                  Written by: sock_lb connect. Read and deleted by: sockops.
 *                  Pinned because sock_lb and sockops are separate objects.
 *   sl_origdst_v1  (netns cookie, client port, family) -> original destination.
 *                  Written by: sockops at TCP_CONNECT_CB (the first moment the
 *                  client port is known). Read and deleted by: agent on accept.
 */
#ifndef SL_BPF_MESH_H
#define SL_BPF_MESH_H

#include "common.h"
#include "config.h"
#include "metrics.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct sl_netns_val);
	__uint(max_entries, SL_NETNS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_netns_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__type(key, int);
	__type(value, struct sl_orig);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_sk_orig_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sl_origdst_key);
	__type(value, struct sl_orig);
	__uint(max_entries, SL_ORIGDST_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_origdst_v1 SEC(".maps");

#define DNS_PORT	bpf_htons(53)

static __always_inline bool addr_is_loopback(const struct sl_addr *a, __u8 family)
{
	if (family == AF_INET)
		return (bpf_ntohl(a->v4) >> 24) == 127;
	return a->v6[0] == 0 && a->v6[1] == 0 && a->v6[2] == 0 && a->v6[3] == bpf_htonl(1);
}

static __always_inline bool addr_equal(const struct sl_addr *a, const struct sl_addr *b)
{
	return a->v6[0] == b->v6[0] && a->v6[1] == b->v6[1] && a->v6[2] == b->v6[2] &&
	       a->v6[3] == b->v6[3];
}

/* Is the agent's 15001 listener of this netns up? When the agent is away the
 * connect goes where the application meant (fail open) instead of failing. */
static __always_inline bool outbound_listener_up(struct bpf_sock_addr *ctx, __u8 lfamily)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (lfamily == AF_INET) {
		t.ipv4.saddr = bpf_htonl(0x7f000001);
		t.ipv4.daddr = bpf_htonl(0x7f000001);
		t.ipv4.dport = bpf_htons(SL_PORT_OUTBOUND);
		sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	} else {
		t.ipv6.saddr[3] = bpf_htonl(1);
		t.ipv6.daddr[3] = bpf_htonl(1);
		t.ipv6.dport = bpf_htons(SL_PORT_OUTBOUND);
		sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return false;
	bpf_sk_release(sk);
	return true;
}

/* Should this connect() of an enrolled pod go to the agent? dst is where it
 * goes after Service load balancing. TCP only; DNS, loopback, the pod's own
 * addresses and the agent's own sockets (by mark or cgroup) stay untouched. */
static __always_inline bool capture_wanted(struct bpf_sock_addr *ctx, const struct sl_addr *dst,
					   __be16 dport, __u8 family)
{
	struct bpf_sock *sk = ctx->sk;
	struct sl_netns_val *ns;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP || dport == DNS_PORT || !sk)
		return false;
	if ((sk->mark & SL_MARK_MASK) == SL_MARK_AGENT || (sk->mark & SL_MARK_MASK) == SL_MARK_DELIVER)
		return false;
	if (cfg_agent_cgroup_id && bpf_get_current_cgroup_id() == cfg_agent_cgroup_id)
		return false;
	cookie = bpf_get_netns_cookie(ctx);
	ns = bpf_map_lookup_elem(&sl_netns_v1, &cookie);
	if (!ns || !(ns->flags & SL_NETNS_F_ENROLLED))
		return false;
	if (addr_is_loopback(dst, family))
		return false;
	if (addr_equal(dst, family == AF_INET ? &ns->ip4 : &ns->ip6))
		return false;
	return true;
}

/* Remember the original destination on the socket for sockops. */
static __always_inline bool capture_store(struct bpf_sock_addr *ctx, const struct sl_orig *o)
{
	struct sl_orig *st;

	if (!ctx->sk)
		return false;
	st = bpf_sk_storage_get(&sl_sk_orig_v1, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		metrics_inc(SL_CNT_CAP_STORAGE_ERR);
		return false;
	}
	*st = *o;
	return true;
}

#endif
