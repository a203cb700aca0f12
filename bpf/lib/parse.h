/* SPDX-License-Identifier: Apache-2.0 */
/* parse.h - packet header parsing with a cursor (xdp-tools hdr_cursor), for
 * TC programs: Ethernet, IPv4 (options), IPv6 (extension headers), TCP.
 * Every function checks bounds against data_end before it reads. */
#ifndef SL_BPF_PARSE_H
#define SL_BPF_PARSE_H

#include "common.h"

#ifndef IPV6_EXT_MAX
#define IPV6_EXT_MAX 4		/* extension headers walked before giving up */
#endif

struct cursor {
	void *pos;
	void *end;
};

/* A parsed TCP packet: the 4-tuple as the packet carries it, network order. */
struct flow {
	__u8 family;		/* AF_INET / AF_INET6 */
	struct sl_addr saddr, daddr;
	__be16 sport, dport;
	bool syn, ack;
};

enum parse_result {
	PARSE_TCP = 0,		/* struct flow filled */
	PARSE_OTHER = 1,	/* not TCP, or a non-first fragment: not ours */
	PARSE_BAD = -1,		/* truncated or malformed */
};

static __always_inline enum parse_result parse_tcp_hdr(struct cursor *c, struct flow *f)
{
	struct tcphdr *th = c->pos;

	if ((void *)(th + 1) > c->end)
		return PARSE_BAD;
	if (th->doff < 5)
		return PARSE_BAD;
	f->sport = th->source;
	f->dport = th->dest;
	f->syn = th->syn;
	f->ack = th->ack;
	return PARSE_TCP;
}

static __always_inline enum parse_result parse_ip4(struct cursor *c, struct flow *f)
{
	struct iphdr *ip = c->pos;
	__u32 hl;

	if ((void *)(ip + 1) > c->end)
		return PARSE_BAD;
	hl = ip->ihl * 4;
	if (ip->version != 4 || hl < sizeof(*ip))
		return PARSE_BAD;
	/* Options: a second check after ihl (the first covered 20 bytes only). */
	if (c->pos + hl > c->end)
		return PARSE_BAD;
	if (ip->frag_off & bpf_htons(0x1fff))
		return PARSE_OTHER;	/* no TCP header in a later fragment */
	if (ip->protocol != IPPROTO_TCP)
		return PARSE_OTHER;
	f->family = AF_INET;
	f->saddr.v4 = ip->saddr;
	f->daddr.v4 = ip->daddr;
	c->pos += hl;
	return parse_tcp_hdr(c, f);
}

static __always_inline enum parse_result parse_ip6(struct cursor *c, struct flow *f)
{
	struct ipv6hdr *ip6 = c->pos;
	__u8 next;

	if ((void *)(ip6 + 1) > c->end)
		return PARSE_BAD;
	if (ip6->version != 6)
		return PARSE_BAD;
	f->family = AF_INET6;
	__builtin_memcpy(&f->saddr, &ip6->saddr, 16);
	__builtin_memcpy(&f->daddr, &ip6->daddr, 16);
	next = ip6->nexthdr;
	c->pos = ip6 + 1;
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		struct ipv6_opt_hdr *h = c->pos;

		if (next == IPPROTO_TCP)
			return parse_tcp_hdr(c, f);
		if (next == IPPROTO_FRAGMENT)
			return PARSE_OTHER;	/* fragmented TCP: leave it to the stack */
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS)
			return PARSE_OTHER;
		if ((void *)(h + 1) > c->end)
			return PARSE_BAD;
		next = h->nexthdr;
		c->pos += (h->hdrlen + 1) * 8;
	}
	return next == IPPROTO_TCP ? parse_tcp_hdr(c, f) : PARSE_OTHER;
}

/* Parse an Ethernet frame at skb's data as far as its TCP header. */
static __always_inline enum parse_result parse_flow(struct __sk_buff *skb, struct flow *f)
{
	struct cursor c = { .pos = (void *)(long)skb->data, .end = (void *)(long)skb->data_end };
	struct ethhdr *eth = c.pos;

	if ((void *)(eth + 1) > c.end)
		return PARSE_BAD;
	c.pos = eth + 1;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return parse_ip4(&c, f);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse_ip6(&c, f);
	return PARSE_OTHER;
}

#endif
