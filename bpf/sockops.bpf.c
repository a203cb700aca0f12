// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* sockops + sk_msg - TCP socket events of every process in the node's cgroup
 * (and the agent's), and the same-node byte path.
 *
 * TCP_CONNECT_CB: a connect that sock_lb captured (socket storage holds its
 * original destination) now has its client port; publish the destination in
 * sl_origdst_v1 under (netns cookie, client port, listener family), which is
 * what the agent can see from the accepted end (SO_NETNS_COOKIE, getpeername).
 *
 * ACTIVE/PASSIVE_ESTABLISHED_CB: a socket of a same-node mesh hop (both ends in
 * one enrolled pod's netns, see sl_hop_key) goes into sl_socks_v1. From then on
 * sockmap_msg moves what it sends straight into its peer's receive queue
 * (bpf_msg_redirect_hash, BPF_F_INGRESS): no TCP segments, no loopback, no
 * softirq. The hop's TCP connection still carries the handshake, FIN and RST,
 * so half-close and resets behave as over TCP.
 *
 * A socket whose peer is not in the map when it sends (not there yet, or
 * closed) sends through TCP from then on: bytes the peer has not read from its
 * TCP queue would otherwise be overtaken by later ones in its sockmap queue
 * (the kernel reads that one first). On loopback the handshake completes
 * inside connect(), so the peer is normally there before the first send.
 *
 * Direct connections (two pods of this node, nothing for the agent to do
 * after policy) go one step further: once the agent has paired them in
 * sl_hoppair_v1 and delivered what it already took, each app's sends go
 * straight into the other app's socket, past the agent (see sl_hop_pair).
 *
 * Sockets leave sl_socks_v1 by themselves when they close. Always lets the
 * socket proceed.
 */
#include "lib/common.h"
#include "lib/mesh.h"
#include "lib/metrics.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__type(key, struct sl_hop_key);
	__type(value, __u64);
	__uint(max_entries, SL_SOCKS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_socks_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__type(key, int);
	__type(value, struct sl_sk_accel);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_sk_accel_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sl_hop_key);
	__type(value, struct sl_hop_pair);
	__uint(max_entries, SL_SOCKS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);	/* replaced values stay readable (RCU) */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_hoppair_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sl_hop_key);
	__type(value, struct sl_hop_stat);
	__uint(max_entries, SL_SOCKS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_hopstat_v1 SEC(".maps");

static __always_inline void origdst_publish(struct bpf_sock_ops *skops)
{
	struct sl_origdst_key k = {};
	struct bpf_sock *sk = skops->sk;
	struct sl_orig *o;

	if (!sk)
		return;
	o = bpf_sk_storage_get(&sl_sk_orig_v1, sk, 0, 0);
	if (!o)
		return;		/* not a captured socket */
	k.netns_cookie = bpf_get_netns_cookie(skops);
	k.sport = bpf_htons((__u16)skops->local_port);
	k.family = o->listen_family;
	if (bpf_map_update_elem(&sl_origdst_v1, &k, o, BPF_ANY))
		metrics_inc(SL_CNT_ORIG_STORE_ERR);
	else
		metrics_inc(SL_CNT_ORIG_STORED);
	bpf_sk_storage_delete(&sl_sk_orig_v1, sk);
}

static __always_inline bool v4mapped(const struct sl_addr *a)
{
	return a->v6[0] == 0 && a->v6[1] == 0 && a->v6[2] == bpf_htonl(0xffff);
}

/* IPv4-mapped ends are IPv4, so an AF_INET6 socket and its AF_INET peer agree. */
static __always_inline void hop_key_norm(struct sl_hop_key *k)
{
	if (k->family != AF_INET6 || !v4mapped(&k->local) || !v4mapped(&k->remote))
		return;
	k->family = AF_INET;
	k->local.v4 = k->local.v6[3];
	k->remote.v4 = k->remote.v6[3];
	k->local.v6[1] = k->local.v6[2] = k->local.v6[3] = 0;
	k->remote.v6[1] = k->remote.v6[2] = k->remote.v6[3] = 0;
}

/* A socket's own key, from its sockops or sk_msg context: both name the
 * fields alike. local_port is host order; remote_port holds the
 * network-order port in its upper 16 bits. A macro, so that each program
 * reads its own context type directly (the verifier wants ctx loads). */
#define HOP_KEY_OF(ctx, k)							\
	do {									\
		(k)->netns_cookie = bpf_get_netns_cookie(ctx);			\
		(k)->family = (__u8)(ctx)->family;				\
		(k)->lport = bpf_htons((__u16)(ctx)->local_port);		\
		(k)->rport = (__be16)((ctx)->remote_port >> 16);		\
		if ((ctx)->family == AF_INET) {					\
			(k)->local.v4 = (ctx)->local_ip4;			\
			(k)->remote.v4 = (ctx)->remote_ip4;			\
			break;							\
		}								\
		/* constant indices: the verifier takes no offset ctx loads */	\
		(k)->local.v6[0] = (ctx)->local_ip6[0];				\
		(k)->local.v6[1] = (ctx)->local_ip6[1];				\
		(k)->local.v6[2] = (ctx)->local_ip6[2];				\
		(k)->local.v6[3] = (ctx)->local_ip6[3];				\
		(k)->remote.v6[0] = (ctx)->remote_ip6[0];			\
		(k)->remote.v6[1] = (ctx)->remote_ip6[1];			\
		(k)->remote.v6[2] = (ctx)->remote_ip6[2];			\
		(k)->remote.v6[3] = (ctx)->remote_ip6[3];			\
		hop_key_norm(k);						\
	} while (0)

/* The key of k's peer: the same hop seen from the other end. */
static __always_inline void hop_key_swap(const struct sl_hop_key *k, struct sl_hop_key *p)
{
	*p = *k;
	p->local = k->remote;
	p->remote = k->local;
	p->lport = k->rport;
	p->rport = k->lport;
}

/* Which same-node hop this established socket is, or 0. Only enrolled pods'
 * netns: the app -> 15001 hop on loopback (both ends), and the agent's delivery
 * (its socket carries SL_MARK_DELIVER, and the app's accepted end inherits the
 * mark from the SYN: tcp_fwmark_accept is set in every enrolled pod). */
static __always_inline __u32 hop_role(struct bpf_sock *sk, const struct sl_hop_key *k, bool active)
{
	struct sl_netns_val *ns;
	__u64 cookie = k->netns_cookie;
	__u32 mark;

	ns = bpf_map_lookup_elem(&sl_netns_v1, &cookie);
	if (!ns || !(ns->flags & SL_NETNS_F_ENROLLED))
		return 0;
	mark = sk->mark & SL_MARK_MASK;
	if (mark == SL_MARK_DELIVER)
		return active ? SL_ACCEL_ROLE_DELIVER : SL_ACCEL_ROLE_APP_IN;
	if (mark || !addr_is_loopback(&k->local, k->family) || !addr_is_loopback(&k->remote, k->family))
		return 0;
	if (active && k->rport == bpf_htons(SL_PORT_OUTBOUND))
		return SL_ACCEL_ROLE_APP_OUT;
	if (!active && k->lport == bpf_htons(SL_PORT_OUTBOUND))
		return SL_ACCEL_ROLE_AGENT_OUT;
	return 0;
}

static __always_inline void hop_record(struct bpf_sock_ops *o, bool active)
{
	struct sl_hop_key k = {};
	struct bpf_sock *sk = o->sk;
	struct sl_sk_accel *st;
	__u32 role;

	if (!sk)
		return;
	HOP_KEY_OF(o, &k);
	role = hop_role(sk, &k, active);
	if (!role)
		return;
	st = bpf_sk_storage_get(&sl_sk_accel_v1, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		metrics_inc(SL_CNT_SOCK_ADD_ERR);
		return;
	}
	st->role = role;
	if (bpf_sock_hash_update(o, &sl_socks_v1, &k, BPF_ANY)) {
		bpf_sk_storage_delete(&sl_sk_accel_v1, sk);
		metrics_inc(SL_CNT_SOCK_ADD_ERR);
		return;
	}
	metrics_inc(SL_CNT_SOCK_ADDED);
}

SEC("sockops")
int sockops_prog(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		origdst_publish(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		if (cfg_sockmap)
			hop_record(skops, true);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (cfg_sockmap)
			hop_record(skops, false);
		break;
	}
	return 1;
}

/* Every send of a socket in sl_socks_v1 (the map's verdict program). */
SEC("sk_msg")
int sockmap_msg(struct sk_msg_md *msg)
{
	struct sl_hop_key self = {}, peer;
	struct bpf_sock *sk = msg->sk;
	struct sl_sk_accel *st;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&sl_sk_accel_v1, sk, 0, 0);
	if (!st)
		return SK_PASS;
	HOP_KEY_OF(msg, &self);
	hop_key_swap(&self, &peer);
	if (st->role == SL_ACCEL_ROLE_APP_OUT || st->role == SL_ACCEL_ROLE_APP_IN) {
		struct sl_hop_pair *pr = bpf_map_lookup_elem(&sl_hoppair_v1, &self);

		if (pr && pr->relayed == st->redirected_bytes + st->stack_bytes &&
		    bpf_msg_redirect_hash(msg, &sl_socks_v1, &pr->peer, BPF_F_INGRESS) == SK_PASS) {
			struct sl_hop_stat *hs = bpf_map_lookup_elem(&sl_hopstat_v1, &self);

			if (hs) {
				__sync_fetch_and_add(&hs->direct_bytes, msg->size);
				__sync_fetch_and_add(&hs->direct_sends, 1);
			}
			metrics_inc(SL_CNT_SOCK_DIRECT);
			metrics_add(SL_CNT_SOCK_DIRECT_BYTES, msg->size);
			return SK_PASS;
		}
		/* Not paired, the agent still has bytes of ours to deliver, or
		 * the peer app is gone: to the agent, as before. */
	}
	if (st->flags & SL_ACCEL_F_STACK) {
		st->stack_bytes += msg->size;
		metrics_inc(SL_CNT_SOCK_STACK);
		return SK_PASS;
	}
	if (bpf_msg_redirect_hash(msg, &sl_socks_v1, &peer, BPF_F_INGRESS) != SK_PASS) {
		/* No peer: no redirect was set, so SK_PASS sends through TCP. */
		st->flags |= SL_ACCEL_F_STACK;
		st->stack_bytes += msg->size;
		metrics_inc(SL_CNT_SOCK_FALLBACK);
		return SK_PASS;
	}
	st->redirected_bytes += msg->size;
	metrics_inc(SL_CNT_SOCK_REDIRECT);
	metrics_add(SL_CNT_SOCK_BYTES, msg->size);
	return SK_PASS;
}
