// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* pod_ingress - TC ingress on a pod's own interface, inside the pod's netns:
 * enforce the pod's ingress NetworkPolicy, then (enrolled pods) hand new
 * inbound TCP connections to the agent.
 *
 * Policy: a TCP SYN and every UDP datagram to a pod isolated for ingress
 * must match a rule (bpf/lib/policy.h) or is dropped; other TCP packets
 * belong to connections a SYN opened, and UDP replies to the pod's own
 * allowed flows pass (sl_polct_v1). HBONE (15008) to an enrolled pod is the
 * agent's to police: it sees the real port and the verified peer. Later
 * fragments pass: the stack cannot reassemble them without the policed first.
 *
 * A SYN to the pod is assigned (bpf_sk_assign) to the agent's transparent
 * listener on 15006, so the accepted socket's local address is still the
 * pod's ip:port the client dialled; HBONE to 15008 reaches the agent's 15008
 * listener by plain demux. Packets of existing connections (any socket that
 * is not a listener) pass untouched, so only SYNs pay for steering. Non-TCP
 * passes. When the agent's listener is missing (agent down), packets pass to
 * the application as if sluice were not there (fail open).
 */
#include "lib/common.h"
#include "lib/metrics.h"
#include "lib/parse.h"
#include "lib/policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The tuple bpf_skc_lookup_tcp wants, for the packet's flow (or its dport
 * replaced by port). Returns its size. */
static __always_inline __u32 flow_tuple(const struct flow *f, __be16 dport, struct bpf_sock_tuple *t)
{
	if (f->family == AF_INET) {
		t->ipv4.saddr = f->saddr.v4;
		t->ipv4.daddr = f->daddr.v4;
		t->ipv4.sport = f->sport;
		t->ipv4.dport = dport;
		return sizeof(t->ipv4);
	}
	__builtin_memcpy(t->ipv6.saddr, &f->saddr, 16);
	__builtin_memcpy(t->ipv6.daddr, &f->daddr, 16);
	t->ipv6.sport = f->sport;
	t->ipv6.dport = dport;
	return sizeof(t->ipv6);
}

enum steer_result {
	STEER_PASS = 0,		/* not ours, or an existing connection */
	STEER_ASSIGNED,		/* a new connection, given to 15006 */
	STEER_NO_LISTENER,	/* the agent's listener is gone: fail open */
	STEER_ASSIGN_ERR,
};

static __always_inline enum steer_result steer_inbound(struct __sk_buff *skb, const struct flow *f)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 len;
	long err;

	/* HBONE reaches the agent's 15008 listener by plain demux; without one
	 * (agent away) the stack refuses it. Never steer it to 15006. */
	if (f->dport == bpf_htons(SL_PORT_HBONE))
		return STEER_PASS;
	len = flow_tuple(f, f->dport, &t);
	sk = bpf_skc_lookup_tcp(skb, &t, len, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		bool listener = sk->state == BPF_TCP_LISTEN;

		bpf_sk_release(sk);
		/* Established, time-wait or request socket: the stack finds it. */
		if (!listener)
			return STEER_PASS;
	}
	len = flow_tuple(f, bpf_htons(SL_PORT_INBOUND), &t);
	sk = bpf_skc_lookup_tcp(skb, &t, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return STEER_NO_LISTENER;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return STEER_NO_LISTENER;
	}
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return err ? STEER_ASSIGN_ERR : STEER_ASSIGNED;
}

/* Ingress NetworkPolicy for a UDP datagram or a TCP SYN to ep's pod. */
static __always_inline enum pol_verdict police_inbound(const struct sl_polep_val *ep, const struct flow *f)
{
	struct pol_flow pf;
	enum pol_verdict v = POL_NOT_POLICED;

	pol_flow_of(&pf, f, SL_DIR_INGRESS);

	if (f->proto == IPPROTO_TCP && f->dport == bpf_htons(SL_PORT_HBONE) && (ep->flags & SL_EP_F_ENROLLED)) {
		metrics_inc(SL_CNT_POL_HBONE);
		return POL_NOT_POLICED;
	}
	if ((ep->flags & SL_EP_F_ISO_IN) && f->proto == IPPROTO_UDP && pol_ct_reply(&pf)) {
		metrics_inc(SL_CNT_POL_REPLY);
		return POL_ALLOW;
	}
	v = pol_decide(ep, &pf, SL_HOOK_TC_INGRESS);
	if (v != POL_DENY)
		pol_ct_record(ep, &pf);
	return v;
}

SEC("tc")
int pod_ingress_tc(struct __sk_buff *skb)
{
	struct sl_polep_val *ep;
	struct flow f = {};
	enum parse_result p;

	p = parse_flow(skb, &f);
	if (p == PARSE_BAD) {
		/* A first fragment too short for its TCP or UDP header (RFC 1858's
		 * tiny fragment): ports and flags come in the next fragment, which
		 * passes as a later fragment, and the stack reassembles a SYN that
		 * neither policy nor steering saw. No real sender makes one (IPv6
		 * stacks drop it themselves, RFC 8200 4.5). */
		if (f.frag) {
			metrics_inc(SL_CNT_POL_DENY);
			return TC_ACT_SHOT;
		}
		metrics_inc(SL_CNT_IN_BAD_PACKET);
		goto out;
	}
	if (p == PARSE_FRAG) {
		metrics_inc(SL_CNT_POL_FRAGMENT);
		goto out;
	}
	if (p != PARSE_TCP && p != PARSE_UDP)
		goto out;
	/* Only a SYN starts a connection: every other TCP packet is the stack's,
	 * whatever socket it belongs to, neither policed nor steered (no lookup
	 * per packet). Below, TCP means a SYN. */
	if (p == PARSE_TCP && (!f.syn || f.ack))
		goto out;
	ep = pol_endpoint(&f.daddr, f.family);
	if (ep && police_inbound(ep, &f) == POL_DENY)
		return TC_ACT_SHOT;
	/* A fragmented SYN is never steered (the listener wants the reassembled
	 * one), so to a mesh pod it would reach the application past the agent
	 * (PeerAuthentication, AuthorizationPolicy). No stack fragments a SYN. */
	if (p == PARSE_TCP && f.frag && f.dport != bpf_htons(SL_PORT_HBONE) &&
	    !(ep && (ep->flags & SL_EP_F_NO_STEER))) {
		metrics_inc(SL_CNT_POL_DENY);
		return TC_ACT_SHOT;
	}
	/* A fragment is never steered: the listener wants the reassembled SYN. */
	if (p != PARSE_TCP || f.frag || (ep && (ep->flags & SL_EP_F_NO_STEER)))
		goto out;
	switch (steer_inbound(skb, &f)) {
	case STEER_ASSIGNED:
		metrics_inc(SL_CNT_IN_STEERED);
		break;
	case STEER_NO_LISTENER:
		metrics_inc(SL_CNT_IN_NO_LISTENER);
		break;
	case STEER_ASSIGN_ERR:
		metrics_inc(SL_CNT_IN_ASSIGN_ERR);
		break;
	default:
		break;
	}
out:
	/* Steering never drops: policy (above) is the only thing that may. */
	return TC_ACT_OK;
}
