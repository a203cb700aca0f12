/* SPDX-License-Identifier: Apache-2.0 */
/* parse.h - packet header parsing with a cursor (xdp-tools hdr_cursor), for
 * TC and XDP programs: Ethernet, IPv4 (options), IPv6 (extension headers and
 * the fragment header), TCP and UDP.
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

/* A parsed TCP or UDP packet: the 4-tuple as the packet carries it, network order. */
struct flow {
	__u8 family;		/* AF_INET / AF_INET6 */
	__u8 proto;		/* IPPROTO_TCP / IPPROTO_UDP */
	struct sl_addr saddr, daddr;
	__be16 sport, dport;
	bool syn, ack;
	bool frag;		/* the first fragment of a fragmented packet */
};

enum parse_result {
	PARSE_TCP = 0,		/* struct flow filled */
	PARSE_UDP = 2,		/* struct flow filled (no flags) */
	PARSE_FRAG = 3,		/* a later fragment: addresses filled, no ports */
	PARSE_OTHER = 1,	/* neither TCP nor UDP */
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
	f->proto = IPPROTO_TCP;
	return PARSE_TCP;
}

static __always_inline enum parse_result parse_udp_hdr(struct cursor *c, struct flow *f)
{
	struct udphdr *uh = c->pos;

	if ((void *)(uh + 1) > c->end)
		return PARSE_BAD;
	f->sport = uh->source;
	f->dport = uh->dest;
	f->proto = IPPROTO_UDP;
	return PARSE_UDP;
}

static __always_inline enum parse_result parse_l4(struct cursor *c, struct flow *f, __u8 proto)
{
	if (proto == IPPROTO_TCP)
		return parse_tcp_hdr(c, f);
	if (proto == IPPROTO_UDP)
		return parse_udp_hdr(c, f);
	return PARSE_OTHER;
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
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return PARSE_OTHER;
	f->family = AF_INET;
	f->proto = ip->protocol;
	f->saddr.v4 = ip->saddr;
	f->daddr.v4 = ip->daddr;
	if (ip->frag_off & bpf_htons(0x1fff))
		return PARSE_FRAG;	/* no L4 header in a later fragment */
	f->frag = !!(ip->frag_off & bpf_htons(0x2000));	/* more fragments */
	c->pos += hl;
	return parse_l4(c, f, ip->protocol);
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

		if (next == IPPROTO_TCP || next == IPPROTO_UDP)
			return parse_l4(c, f, next);
		if (next == IPPROTO_FRAGMENT) {
			struct frag_hdr *fh = c->pos;

			if ((void *)(fh + 1) > c->end)
				return PARSE_BAD;
			next = fh->nexthdr;
			f->proto = next;
			/* An atomic fragment (offset 0, no M flag: RFC 6946) is a whole
			 * packet to the stack, and so here. */
			f->frag = !!(fh->frag_off & bpf_htons(0x0001));
			if (fh->frag_off & bpf_htons(0xfff8))
				return next == IPPROTO_TCP || next == IPPROTO_UDP ? PARSE_FRAG : PARSE_OTHER;
			c->pos = fh + 1;	/* the first fragment carries the L4 header */
			continue;
		}
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS)
			return PARSE_OTHER;
		if ((void *)(h + 1) > c->end)
			return PARSE_BAD;
		next = h->nexthdr;
		c->pos += (h->hdrlen + 1) * 8;
	}
	return parse_l4(c, f, next);
}

/* Parse an Ethernet frame in [data, end) as far as its TCP or UDP header. */
static __always_inline enum parse_result parse_frame(void *data, void *end, struct flow *f)
{
	struct cursor c = { .pos = data, .end = end };
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

static __always_inline enum parse_result parse_flow(struct __sk_buff *skb, struct flow *f)
{
	return parse_frame((void *)(long)skb->data, (void *)(long)skb->data_end, f);
}

#endif
