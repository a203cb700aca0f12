// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* sock_lb - socket-level Service load balancing for every process of the cgroup
 * it is attached to (the kube-proxy replacement).
 *
 * connect4/6 and (unconnected UDP) sendmsg4/6 turn a Service VIP:port into a
 * ready backend's address:targetPort before any packet exists, so no NAT is
 * needed on the wire; getpeername4/6 and recvmsg4/6 turn the backend back
 * into the VIP, so the application sees the address it asked for.
 * IPv4-mapped IPv6 destinations (::ffff:a.b.c.d) are served from the IPv4
 * services. Internal errors fail open (the socket proceeds untranslated).
 *
 * For a pod enrolled in the mesh, connect4/6 then send the TCP connection to
 * the agent's listener in the pod's own netns (127.0.0.1 or ::1, port 15001)
 * and keep where it was going (after load balancing) in socket storage, which
 * sockops turns into an sl_origdst_v1 entry once the client port exists.
 * getpeername still shows the address the application asked for.
 *
 * A pod under NetworkPolicy that is isolated for egress (sl_netns_v1 says
 * which pod a netns is, sl_polep_v1 whether it is isolated) may connect or
 * send only where a rule allows, judged on the backend after load
 * balancing: anything else fails at once with EPERM, before a packet exists.
 */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/metrics.h"
#include "lib/mesh.h"
#include "lib/policy.h"
#include "lib/service.h"
#include "lib/sock.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define V4MAPPED_PREFIX bpf_htonl(0x0000ffff)

static __always_inline bool ip6_is_v4mapped(const __u32 w[4])
{
	return w[0] == 0 && w[1] == 0 && w[2] == V4MAPPED_PREFIX;
}

/* The frontend key of the destination in ctx (IPv4-mapped folded to IPv4). */
static __always_inline void key_from_ctx4(const struct bpf_sock_addr *ctx, struct sl_svc_key *k)
{
	k->vip.v4 = ctx->user_ip4;
	k->port = (__be16)ctx->user_port;
	k->proto = (__u8)ctx->protocol;
	k->family = AF_INET;
}

static __always_inline bool key_from_ctx6(const struct bpf_sock_addr *ctx, struct sl_svc_key *k)
{
	__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	bool mapped = ip6_is_v4mapped(w);

	if (mapped) {
		k->vip.v4 = w[3];
		k->family = AF_INET;
	} else {
		k->vip.v6[0] = w[0];
		k->vip.v6[1] = w[1];
		k->vip.v6[2] = w[2];
		k->vip.v6[3] = w[3];
		k->family = AF_INET6;
	}
	k->port = (__be16)ctx->user_port;
	k->proto = (__u8)ctx->protocol;
	return mapped;
}

/* Write an address of either family into ctx; v4 into a v6 socket as ::ffff:v4. */
static __always_inline void ctx_set4(struct bpf_sock_addr *ctx, const struct sl_addr *a, __be16 port)
{
	ctx->user_ip4 = a->v4;
	ctx->user_port = port;
}

static __always_inline void ctx_set6(struct bpf_sock_addr *ctx, const struct sl_addr *a,
				     __u8 family, __be16 port)
{
	if (family == AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = V4MAPPED_PREFIX;
		ctx->user_ip6[3] = a->v4;
	} else {
		ctx->user_ip6[0] = a->v6[0];
		ctx->user_ip6[1] = a->v6[1];
		ctx->user_ip6[2] = a->v6[2];
		ctx->user_ip6[3] = a->v6[3];
	}
	ctx->user_port = port;
}

/* Refuse as kube-proxy's REJECT rule does: the caller sees ECONNREFUSED. */
static __always_inline int refuse(void)
{
	bpf_set_retval(-ECONNREFUSED);
	return SL_SOCK_REJECT;
}

#define EPERM 1

/* Would egress NetworkPolicy deny this socket of a pod reaching dst:dport? */
static __always_inline bool egress_denied(struct bpf_sock_addr *ctx, const struct sl_addr *dst, __be16 dport,
					  __u8 family)
{
	struct bpf_sock *sk = ctx->sk;
	struct sl_polep_val *ep;
	struct sl_netns_val *ns;
	const struct sl_addr *own;
	struct pol_flow f = {};
	__u64 cookie;

	if (sk && ((sk->mark & SL_MARK_MASK) == SL_MARK_AGENT || (sk->mark & SL_MARK_MASK) == SL_MARK_DELIVER))
		return false;	/* the agent polices what it carries */
	cookie = bpf_get_netns_cookie(ctx);
	ns = bpf_map_lookup_elem(&sl_netns_v1, &cookie);
	if (!ns)
		return false;
	own = family == AF_INET ? &ns->ip4 : &ns->ip6;
	ep = pol_endpoint(own, family);
	if (!ep || !(ep->flags & SL_EP_F_ISO_OUT))
		return false;
	if (addr_is_loopback(dst, family) || addr_equal(dst, own))
		return false;	/* never leaves the pod */
	f.saddr = *own;
	f.daddr = *dst;
	f.sport = sk ? bpf_htons((__u16)sk->src_port) : 0;
	f.dport = dport;
	f.family = family;
	f.proto = (__u8)ctx->protocol;
	f.dir = SL_DIR_EGRESS;
	/* A UDP server answering a client its ingress let in (sendmsg from a
	 * bound port): a reply, as the TC hooks see it. */
	if (f.proto == IPPROTO_UDP && f.sport && pol_ct_reply(&f)) {
		metrics_inc(SL_CNT_POL_REPLY);
		return false;
	}
	return pol_decide(ep, &f, SL_HOOK_CONNECT) == POL_DENY;
}

/* Refuse as a firewall would at the socket: the caller sees EPERM. */
static __always_inline int deny(void)
{
	bpf_set_retval(-EPERM);
	return SL_SOCK_REJECT;
}

/* Where a socket goes after load balancing. */
static __always_inline void dest_of(const struct sl_svc_key *key, enum lb_verdict v,
				    const struct sl_sticky_val *choice, const struct sl_addr **a, __be16 *port,
				    __u8 *family)
{
	if (v == LB_XLATE) {
		*a = &choice->be.addr;
		*port = choice->be.port;
		*family = choice->be.family;
	} else {
		*a = &key->vip;
		*port = key->port;
		*family = key->family;
	}
}

/* connect(): choose the backend of key into *choice (LB_XLATE), refuse, or
 * leave the socket alone. */
static __always_inline enum lb_verdict lb_connect(struct bpf_sock_addr *ctx,
						  const struct sl_svc_key *key,
						  struct sl_sticky_val *choice, bool *l7)
{
	enum lb_verdict v;
	__u32 svc_id;
	__u16 flags = 0;

	v = lb_select_flags(ctx, key, choice, &svc_id, &flags);
	*l7 = v != LB_NOT_SERVICE && (flags & SL_SVC_F_L7);
	if (v == LB_XLATE) {
		revnat_store(bpf_get_socket_cookie(ctx), &choice->be, key);
		metrics_inc(SL_CNT_LB_XLATE);
	}
	return v;
}

/* sendmsg() on an unconnected UDP socket: the backend this socket already uses
 * for the VIP while that is fresh and ready, else a new choice. */
static __always_inline enum lb_verdict lb_sendmsg(struct bpf_sock_addr *ctx,
						  const struct sl_svc_key *key,
						  struct sl_sticky_val *choice)
{
	struct sl_sock_key fk = { .cookie = bpf_get_socket_cookie(ctx), .addr = key->vip,
				  .port = key->port, .family = key->family };
	__u64 now = bpf_ktime_get_boot_ns();
	struct sl_sticky_val *st = bpf_map_lookup_elem(&sl_udpfwd_v1, &fk);
	enum lb_verdict v;
	__u32 svc_id;

	if (st && now - st->last_used_ns <= cfg_udp_flow_timeout_ns) {
		*choice = *st;
		if (lb_udp_flow_valid(key, choice)) {
			metrics_inc(SL_CNT_LB_UDP_REUSE);
			goto remember;
		}
	}
	v = lb_select(ctx, key, choice, &svc_id);
	if (v != LB_XLATE)
		return v;
	revnat_store(fk.cookie, &choice->be, key);
remember:
	choice->last_used_ns = now;
	bpf_map_update_elem(&sl_udpfwd_v1, &fk, choice, BPF_ANY);
	metrics_inc(SL_CNT_LB_XLATE);
	return LB_XLATE;
}

/* An enrolled pod's TCP connect: to the agent's 15001 (returns true), with
 * the original destination stored. vip is what the application asked for.
 * A Service with L7 routes (l7) is captured on its VIP whatever the backend
 * choice (even none, or the pod itself): the agent routes each request. */
static __always_inline bool capture(struct bpf_sock_addr *ctx, const struct sl_svc_key *vip,
				    enum lb_verdict v, const struct sl_sticky_val *choice, __u8 lfamily,
				    bool l7)
{
	struct sl_orig o = {};

	if (l7) {
		o.addr = v == LB_XLATE ? choice->be.addr : vip->vip;
		o.port = v == LB_XLATE ? choice->be.port : vip->port;
		o.family = v == LB_XLATE ? choice->be.family : vip->family;
		o.flags = SL_ORIG_F_SERVICE;
		o.vip = vip->vip;
		o.vip_port = vip->port;
		o.vip_family = vip->family;
		if (!capture_wanted(ctx, &o.vip, o.vip_port, o.vip_family))
			return false;
		o.listen_family = lfamily;
		goto store;
	}
	if (v == LB_XLATE) {
		o.addr = choice->be.addr;
		o.port = choice->be.port;
		o.family = choice->be.family;
		o.flags = SL_ORIG_F_SERVICE;
		o.vip = vip->vip;
		o.vip_port = vip->port;
		o.vip_family = vip->family;
	} else {
		o.addr = vip->vip;
		o.port = vip->port;
		o.family = vip->family;
	}
	o.listen_family = lfamily;
	if (!capture_wanted(ctx, &o.addr, o.port, o.family))
		return false;
store:
	if (!outbound_listener_up(ctx, lfamily)) {
		metrics_inc(SL_CNT_CAP_NO_LISTENER);
		return false;
	}
	if (!capture_store(ctx, &o))
		return false;
	metrics_inc(SL_CNT_CAP_REDIRECT);
	return true;
}

/* The agent's 15001 listener as a peer address, for revnat. */
static __always_inline void outbound_listener(struct sl_be_val *l, __u8 lfamily)
{
	__builtin_memset(l, 0, sizeof(*l));
	if (lfamily == AF_INET)
		l->addr.v4 = bpf_htonl(0x7f000001);
	else
		l->addr.v6[3] = bpf_htonl(1);
	l->port = bpf_htons(SL_PORT_OUTBOUND);
	l->family = lfamily;
}

SEC("cgroup/connect4")
int sock_lb_connect4(struct bpf_sock_addr *ctx)
{
	struct sl_svc_key key = {};
	struct sl_sticky_val choice = {};
	struct sl_be_val l;
	enum lb_verdict v;
	bool l7 = false;

	const struct sl_addr *dst;
	__be16 dport;
	__u8 dfam;

	key_from_ctx4(ctx, &key);
	v = lb_connect(ctx, &key, &choice, &l7);
	if (v == LB_REFUSE && !l7)
		return refuse();
	dest_of(&key, v, &choice, &dst, &dport, &dfam);
	if (v != LB_REFUSE && egress_denied(ctx, dst, dport, dfam))
		return deny();
	if (capture(ctx, &key, v, &choice, AF_INET, l7)) {
		outbound_listener(&l, AF_INET);
		revnat_store(bpf_get_socket_cookie(ctx), &l, &key);
		ctx_set4(ctx, &l.addr, l.port);
	} else if (v == LB_XLATE) {
		ctx_set4(ctx, &choice.be.addr, choice.be.port);
	} else if (v == LB_REFUSE) {
		return refuse();
	}
	return SL_SOCK_PROCEED;
}

SEC("cgroup/connect6")
int sock_lb_connect6(struct bpf_sock_addr *ctx)
{
	struct sl_svc_key key = {};
	struct sl_sticky_val choice = {};
	bool mapped = key_from_ctx6(ctx, &key);
	struct sl_be_val l;
	enum lb_verdict v;
	bool l7 = false;
	__u8 lfamily = mapped ? AF_INET : AF_INET6;

	const struct sl_addr *dst;
	__be16 dport;
	__u8 dfam;

	v = lb_connect(ctx, &key, &choice, &l7);
	if (v == LB_REFUSE && !l7)
		return refuse();
	dest_of(&key, v, &choice, &dst, &dport, &dfam);
	if (v != LB_REFUSE && egress_denied(ctx, dst, dport, dfam))
		return deny();
	if (v == LB_XLATE && mapped)
		metrics_inc(SL_CNT_LB_V4MAPPED);
	if (capture(ctx, &key, v, &choice, lfamily, l7)) {
		outbound_listener(&l, lfamily);
		revnat_store(bpf_get_socket_cookie(ctx), &l, &key);
		ctx_set6(ctx, &l.addr, l.family, l.port);
	} else if (v == LB_XLATE) {
		ctx_set6(ctx, &choice.be.addr, choice.be.family, choice.be.port);
	} else if (v == LB_REFUSE) {
		return refuse();
	}
	return SL_SOCK_PROCEED;
}

SEC("cgroup/sendmsg4")
int sock_lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct sl_svc_key key = {};
	struct sl_sticky_val choice = {};
	const struct sl_addr *dst;
	enum lb_verdict v;
	__be16 dport;
	__u8 dfam;

	key_from_ctx4(ctx, &key);
	v = lb_sendmsg(ctx, &key, &choice);
	if (v == LB_REFUSE)
		return refuse();
	dest_of(&key, v, &choice, &dst, &dport, &dfam);
	if (egress_denied(ctx, dst, dport, dfam))
		return deny();
	switch (v) {
	case LB_XLATE:
		ctx_set4(ctx, &choice.be.addr, choice.be.port);
		break;
	default:
		break;
	}
	return SL_SOCK_PROCEED;
}

SEC("cgroup/sendmsg6")
int sock_lb_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct sl_svc_key key = {};
	struct sl_sticky_val choice = {};
	bool mapped = key_from_ctx6(ctx, &key);
	const struct sl_addr *dst;
	enum lb_verdict v;
	__be16 dport;
	__u8 dfam;

	v = lb_sendmsg(ctx, &key, &choice);
	if (v == LB_REFUSE)
		return refuse();
	dest_of(&key, v, &choice, &dst, &dport, &dfam);
	if (egress_denied(ctx, dst, dport, dfam))
		return deny();
	switch (v) {
	case LB_XLATE:
		if (mapped)
			metrics_inc(SL_CNT_LB_V4MAPPED);
		ctx_set6(ctx, &choice.be.addr, choice.be.family, choice.be.port);
		break;
	default:
		break;
	}
	return SL_SOCK_PROCEED;
}

/* getpeername/recvmsg: show the VIP for a translated peer. Always proceeds. */
static __always_inline int revnat4(struct bpf_sock_addr *ctx)
{
	struct sl_addr peer = {};	/* { .v4 = x } would leave v6[1..3] undefined */
	struct sl_sock_val *v;

	peer.v4 = ctx->user_ip4;
	v = revnat_lookup(bpf_get_socket_cookie(ctx), &peer, (__be16)ctx->user_port, AF_INET);
	if (v) {
		ctx_set4(ctx, &v->addr, v->port);
		metrics_inc(SL_CNT_LB_REVNAT);
	}
	return SL_SOCK_PROCEED;
}

static __always_inline int revnat6(struct bpf_sock_addr *ctx)
{
	struct sl_svc_key peer = {};
	struct sl_sock_val *v;

	key_from_ctx6(ctx, &peer);
	v = revnat_lookup(bpf_get_socket_cookie(ctx), &peer.vip, peer.port, peer.family);
	if (v) {
		ctx_set6(ctx, &v->addr, v->family, v->port);
		metrics_inc(SL_CNT_LB_REVNAT);
	}
	return SL_SOCK_PROCEED;
}

SEC("cgroup/getpeername4")
int sock_lb_getpeername4(struct bpf_sock_addr *ctx)
{
	return revnat4(ctx);
}

SEC("cgroup/getpeername6")
int sock_lb_getpeername6(struct bpf_sock_addr *ctx)
{
	return revnat6(ctx);
}

SEC("cgroup/recvmsg4")
int sock_lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return revnat4(ctx);
}

SEC("cgroup/recvmsg6")
int sock_lb_recvmsg6(struct bpf_sock_addr *ctx)
{
	return revnat6(ctx);
}
